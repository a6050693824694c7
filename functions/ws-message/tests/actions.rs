//! `ws-message` tests: real `ApiGatewayWebsocketProxyRequest` message events through the
//! function's `LambdaFunction`, against a fresh embedded DynamoDB per test. Pushes (typing
//! relays, resume replays) go to a recording `PushClient`; the real management API is
//! exercised by the end-to-end socket tests through the local gateway.

use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::clock::{Clock, ManualClock};
use shared::domain::{
    new_id, CommentText, Connection, DisplayName, Notification, PostId, PostText, User, UserId,
    Username,
};
use shared::error::Error;
use shared::events::Event;
use shared::function::LambdaFunction;
use shared::push::testing::RecordingPush;
use shared::replay::{time_cursor, RESUME_WINDOW};
use shared::store::dynamo::Item;
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::NewMessage;
use shared::store::{NewComment, NewPost};
use shared::store::{NewUser, ProfileUpdate};
use shared::testkit::ws::{connection_id, WsEvent, WsResponse};
use shared::testkit::TestDb;
use ws_message::State;

struct Harness {
    db: TestDb,
    store: DynamoStore,
    push: Arc<RecordingPush>,
    clock: Arc<ManualClock>,
    function: Arc<dyn LambdaFunction>,
}

impl Harness {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`Harness::start`] with configuration overrides.
    async fn start_with(config: &[(&str, &str)]) -> Self {
        let db = TestDb::start().await;
        let store = db.store();
        let push = Arc::new(RecordingPush::new());
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let state = State::from_parts(
            db.config_with(config),
            Arc::new(store.clone()),
            push.clone(),
            clock.clone(),
        );
        Self {
            function: ws_message::lambda_function(Arc::new(state)),
            db,
            store,
            push,
            clock,
        }
    }

    async fn user(&self, username: &str) -> User {
        self.store
            .create_user(NewUser {
                id: new_id(),
                username: Username::parse(username).unwrap(),
                display_name: DisplayName::parse(username).unwrap(),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
                created_at: Utc::now(),
            })
            .await
            .unwrap()
    }

    async fn update(&self, user: &User, update: ProfileUpdate) {
        self.store.update_profile(user.id, &update).await.unwrap();
    }

    async fn follow(&self, follower: &User, followee: &User) {
        self.store
            .follow(follower.id, followee.id, Utc::now())
            .await
            .unwrap();
    }

    /// Registers a connection the way `ws-connect` does.
    async fn connect(&self, user: &User) -> String {
        let id = connection_id();
        let now = self.clock.now();
        self.store
            .add_connection(
                &Connection {
                    connection_id: id.clone(),
                    user_id: user.id,
                    connected_at: now,
                    user_agent: None,
                    expires_at: (now + Duration::hours(2)).timestamp(),
                },
                10,
            )
            .await
            .unwrap();
        id
    }

    async fn send(&self, connection: &str, frame: Value) -> WsResponse {
        self.send_raw(connection, &frame.to_string()).await
    }

    async fn send_raw(&self, connection: &str, body: &str) -> WsResponse {
        let response = WsEvent::message(connection, body)
            .send(&self.function)
            .await;
        assert_eq!(response.status, 200, "{response:?}");
        response
    }

    /// Sends a frame and returns its reply.
    async fn reply(&self, connection: &str, frame: Value) -> Value {
        self.send(connection, frame).await.json()
    }
}

/// Asserts an `error` reply with `code`, echoing `request_id`, in the envelope every event
/// has, with the data of the one error mapping (`Event::error`).
fn assert_error(reply: &Value, code: &str, request_id: Option<&str>) {
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], code, "{reply}");
    assert_eq!(reply["data"]["request_id"], json!(request_id), "{reply}");
    assert!(
        reply["data"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{reply}"
    );
    assert!(
        reply["event_id"].is_string() && reply["occurred_at"].is_string(),
        "{reply}"
    );
}

fn subscribe(channel: &str) -> Value {
    json!({"action": "subscribe", "request_id": "s1", "channel": channel})
}

fn typing(to: UserId, state: &str) -> Value {
    json!({"action": "typing", "request_id": "t1", "to": to, "state": state})
}

// ---- ping and malformed frames ---------------------------------------------------------------

#[tokio::test]
async fn ping_is_answered_with_pong_carrying_server_time_and_request_id() {
    let harness = Harness::start().await;
    let alice = harness.user("alice").await;
    let connection = harness.connect(&alice).await;
    let reply = harness
        .reply(&connection, json!({"action": "ping", "request_id": "p-1"}))
        .await;
    assert_eq!(reply["type"], "pong");
    assert_eq!(reply["data"]["request_id"], "p-1");
    assert_eq!(
        reply["data"]["server_time"],
        shared::domain::format_time(harness.clock.now())
    );
}

#[tokio::test]
async fn garbage_frames_get_error_events_and_the_connection_keeps_working() {
    let harness = Harness::start().await;
    let alice = harness.user("alice").await;
    let connection = harness.connect(&alice).await;

    let cases: [(&str, &str, Option<&str>); 7] = [
        (
            r#"{"action":"dance","request_id":"g1"}"#,
            "validation_failed",
            Some("g1"),
        ),
        (
            r#"{"action":"subscribe","request_id":"g2"}"#,
            "validation_failed",
            Some("g2"),
        ),
        (
            r#"{"action":"subscribe","request_id":"g3","channel":"room:1"}"#,
            "validation_failed",
            Some("g3"),
        ),
        (
            r#"{"action":"typing","request_id":"g4","to":"bob","state":"start"}"#,
            "validation_failed",
            Some("g4"),
        ),
        (
            r#"{"action":"resume","request_id":"g5","since":"yesterday"}"#,
            "validation_failed",
            Some("g5"),
        ),
        ("this is not json", "validation_failed", None),
        (r#"[1,2,3]"#, "validation_failed", None),
    ];
    for (body, code, request_id) in cases {
        let reply = harness.send_raw(&connection, body).await.json();
        assert_error(&reply, code, request_id);
        assert_eq!(reply["data"]["code"], Error::validation("x").code());
    }
    let oversize = json!({"action": "ping", "request_id": "g6", "pad": "x".repeat(5000)});
    assert_error(
        &harness.send(&connection, oversize).await.json(),
        "payload_too_large",
        None,
    );

    let reply = harness
        .reply(
            &connection,
            json!({"action": "ping", "request_id": "after"}),
        )
        .await;
    assert_eq!(reply["type"], "pong");
}

#[tokio::test]
async fn frames_from_an_unregistered_connection_are_refused() {
    let harness = Harness::start().await;
    let post = PostId::new();
    let reply = harness
        .reply(&connection_id(), subscribe(&format!("post:{post}")))
        .await;
    assert_error(&reply, "unauthorized", Some("s1"));
    // A keep-alive is the client's check too: a socket the push tier forgot reconnects.
    let reply = harness
        .reply(
            &connection_id(),
            json!({"action": "ping", "request_id": "p-9"}),
        )
        .await;
    assert_error(&reply, "unauthorized", Some("p-9"));
}

// ---- subscribe / unsubscribe --------------------------------------------------------------------

#[tokio::test]
async fn subscribing_to_a_visible_post_joins_its_room_and_unsubscribing_leaves_it() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let post = harness
        .store
        .create_post(NewPost {
            author: alice.id,
            text: PostText::parse("hello").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let connection = harness.connect(&bob).await;
    let channel = format!("post:{}", post.id);

    let reply = harness.reply(&connection, subscribe(&channel)).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(
        reply["data"],
        json!({"channel": channel, "request_id": "s1"})
    );
    let members = harness.store.room_members(&channel).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0].connection_id.as_str(), members[0].user_id),
        (connection.as_str(), bob.id)
    );

    for _ in 0..2 {
        let reply = harness
            .reply(
                &connection,
                json!({"action": "unsubscribe", "request_id": "u1", "channel": channel}),
            )
            .await;
        assert_eq!(reply["type"], "unsubscribed", "{reply}");
        assert_eq!(reply["data"]["request_id"], "u1");
        assert!(harness
            .store
            .room_members(&channel)
            .await
            .unwrap()
            .is_empty());
    }
}

#[tokio::test]
async fn post_channels_follow_the_visibility_rule() {
    let harness = Harness::start().await;
    let (alice, bob, carol) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
    );
    harness
        .update(
            &alice,
            ProfileUpdate {
                is_private: Some(true),
                ..Default::default()
            },
        )
        .await;
    let post = harness
        .store
        .create_post(NewPost {
            author: alice.id,
            text: PostText::parse("private").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let channel = format!("post:{}", post.id);
    let bob_connection = harness.connect(&bob).await;
    let carol_connection = harness.connect(&carol).await;

    // A private author's post is hidden as a missing one is (the REST answer too).
    assert_error(
        &harness.reply(&bob_connection, subscribe(&channel)).await,
        "not_found",
        Some("s1"),
    );
    assert_error(
        &harness
            .reply(
                &bob_connection,
                subscribe(&format!("post:{}", PostId::new())),
            )
            .await,
        "not_found",
        Some("s1"),
    );
    harness
        .store
        .block(alice.id, carol.id, Utc::now())
        .await
        .unwrap();
    assert_error(
        &harness.reply(&carol_connection, subscribe(&channel)).await,
        "not_found",
        Some("s1"),
    );
    assert!(harness
        .store
        .room_members(&channel)
        .await
        .unwrap()
        .is_empty());

    harness.follow(&bob, &alice).await;
    assert_eq!(
        harness.reply(&bob_connection, subscribe(&channel)).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn presence_channels_need_a_mutual_follow_who_shows_presence() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let connection = harness.connect(&bob).await;
    let channel = format!("presence:{}", alice.id);

    assert_error(
        &harness.reply(&connection, subscribe(&channel)).await,
        "forbidden",
        Some("s1"),
    );
    harness.follow(&bob, &alice).await;
    assert_error(
        &harness.reply(&connection, subscribe(&channel)).await,
        "forbidden",
        Some("s1"),
    );
    harness.follow(&alice, &bob).await;
    harness
        .update(
            &alice,
            ProfileUpdate {
                show_presence: Some(false),
                ..Default::default()
            },
        )
        .await;
    assert_error(
        &harness.reply(&connection, subscribe(&channel)).await,
        "forbidden",
        Some("s1"),
    );
    assert_error(
        &harness
            .reply(
                &connection,
                subscribe(&format!("presence:{}", UserId::new())),
            )
            .await,
        "not_found",
        Some("s1"),
    );
    assert!(harness
        .store
        .room_members(&channel)
        .await
        .unwrap()
        .is_empty());

    harness
        .update(
            &alice,
            ProfileUpdate {
                show_presence: Some(true),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        harness.reply(&connection, subscribe(&channel)).await["type"],
        "subscribed"
    );
}

// ---- typing -------------------------------------------------------------------------------------

#[tokio::test]
async fn typing_is_relayed_to_every_connection_of_the_recipient_with_expires_at() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let alice_connection = harness.connect(&alice).await;
    let alice_other = harness.connect(&alice).await;
    let bob_phone = harness.connect(&bob).await;
    let bob_laptop = harness.connect(&bob).await;

    let response = harness
        .send(&alice_connection, typing(bob.id, "start"))
        .await;
    assert_eq!(response.body, None, "a relayed typing has no reply");
    let now = harness.clock.now();
    for connection in [&bob_phone, &bob_laptop] {
        let events = harness.push.events_of_type(connection, "user_typing");
        assert_eq!(events.len(), 1, "{connection}");
        assert_eq!(events[0]["data"]["from"], alice.id.to_string());
        assert_eq!(events[0]["data"]["state"], "start");
        assert_eq!(
            events[0]["data"]["expires_at"],
            shared::domain::format_time(now + Duration::seconds(5))
        );
    }
    assert!(
        harness.push.events_to(&alice_other).is_empty(),
        "the sender's devices are not told"
    );

    harness.clock.advance(Duration::seconds(1));
    harness
        .send(&alice_connection, typing(bob.id, "stop"))
        .await;
    assert_eq!(
        harness.push.events_of_type(&bob_phone, "user_typing")[1]["data"]["state"],
        "stop"
    );
}

#[tokio::test]
async fn typing_is_refused_when_either_side_blocks_the_other() {
    let harness = Harness::start().await;
    let (alice, bob, carol) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
    );
    let alice_connection = harness.connect(&alice).await;
    let bob_connection = harness.connect(&bob).await;
    let carol_connection = harness.connect(&carol).await;
    harness
        .store
        .block(alice.id, bob.id, Utc::now())
        .await
        .unwrap();
    harness
        .store
        .block(carol.id, alice.id, Utc::now())
        .await
        .unwrap();

    assert_error(
        &harness
            .reply(&alice_connection, typing(bob.id, "start"))
            .await,
        "forbidden",
        Some("t1"),
    );
    assert_error(
        &harness
            .reply(&bob_connection, typing(alice.id, "start"))
            .await,
        "forbidden",
        Some("t1"),
    );
    harness.clock.advance(Duration::seconds(1));
    assert_error(
        &harness
            .reply(&alice_connection, typing(carol.id, "start"))
            .await,
        "forbidden",
        Some("t1"),
    );
    assert!(harness.push.events_to(&bob_connection).is_empty());
    assert!(harness.push.events_to(&alice_connection).is_empty());
    assert!(harness.push.events_to(&carol_connection).is_empty());
}

#[tokio::test]
async fn typing_to_a_private_user_needs_a_follow_or_an_accepted_thread() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    harness
        .update(
            &bob,
            ProfileUpdate {
                is_private: Some(true),
                ..Default::default()
            },
        )
        .await;
    let alice_connection = harness.connect(&alice).await;
    let bob_connection = harness.connect(&bob).await;

    assert_error(
        &harness
            .reply(&alice_connection, typing(bob.id, "start"))
            .await,
        "forbidden",
        Some("t1"),
    );
    harness.clock.advance(Duration::seconds(1));
    assert_error(
        &harness
            .reply(&alice_connection, typing(new_id(), "start"))
            .await,
        "not_found",
        Some("t1"),
    );

    // Bob accepts Alice's message request: the thread is accepted, typing is allowed.
    let request = NewMessage::new(alice.id, bob.id, "hi", None, Utc::now()).unwrap();
    harness.store.send_message(request).await.unwrap();
    harness
        .store
        .accept_message_request(bob.id, alice.id)
        .await
        .unwrap();
    harness.clock.advance(Duration::seconds(1));
    assert_eq!(
        harness
            .send(&alice_connection, typing(bob.id, "start"))
            .await
            .body,
        None
    );
    assert_eq!(
        harness
            .push
            .events_of_type(&bob_connection, "user_typing")
            .len(),
        1
    );
}

#[tokio::test]
async fn a_second_typing_frame_within_a_second_is_refused_and_not_relayed() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let alice_connection = harness.connect(&alice).await;
    let bob_connection = harness.connect(&bob).await;
    let relayed = || harness.push.events_of_type(&bob_connection, "user_typing");

    assert_eq!(
        harness
            .send(&alice_connection, typing(bob.id, "start"))
            .await
            .body,
        None
    );
    assert_eq!(relayed().len(), 1);

    harness.clock.advance(Duration::milliseconds(999));
    let refused = harness
        .reply(
            &alice_connection,
            json!({"action": "typing", "request_id": "t-too-soon", "to": bob.id, "state": "stop"}),
        )
        .await;
    assert_error(&refused, "rate_limited", Some("t-too-soon"));
    assert_eq!(relayed().len(), 1, "a refused frame is not relayed");

    // The window is measured from the last ACCEPTED frame: one second after it, the next
    // frame is relayed.
    harness.clock.advance(Duration::milliseconds(1));
    assert_eq!(
        harness
            .send(&alice_connection, typing(bob.id, "stop"))
            .await
            .body,
        None
    );
    let events = relayed();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["data"]["state"], "stop");
}

#[tokio::test]
async fn the_typing_limit_of_one_connection_does_not_affect_another() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let alice_phone = harness.connect(&alice).await;
    let alice_tablet = harness.connect(&alice).await;
    let bob_connection = harness.connect(&bob).await;

    for connection in [&alice_phone, &alice_tablet] {
        assert_eq!(
            harness.send(connection, typing(bob.id, "start")).await.body,
            None,
            "{connection}"
        );
    }
    // Both connections have now used their second: each is refused on its own.
    for connection in [&alice_phone, &alice_tablet] {
        assert_error(
            &harness.reply(connection, typing(bob.id, "start")).await,
            "rate_limited",
            Some("t1"),
        );
    }
    assert_eq!(
        harness
            .push
            .events_of_type(&bob_connection, "user_typing")
            .len(),
        2
    );
}

/// Every item of the table in a stable order, for "nothing was written" comparisons.
async fn table_contents(db: &TestDb) -> Vec<Item> {
    let key = |item: &Item| {
        ["pk", "sk"].map(|name| {
            item.get(name)
                .and_then(|value| value.as_s().ok())
                .cloned()
                .unwrap_or_default()
        })
    };
    let mut items = db.scan_all().await;
    items.sort_by_key(key);
    items
}

#[tokio::test]
async fn fifty_typing_frames_leave_every_item_of_the_table_unchanged() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let alice_connection = harness.connect(&alice).await;
    let bob_connection = harness.connect(&bob).await;
    let before = table_contents(&harness.db).await;

    // A frame every half second: every other one is relayed, the rest are refused, so both
    // paths run 25 times.
    let mut refused = 0;
    for i in 0..50 {
        let state = if i % 2 == 0 { "start" } else { "stop" };
        let response = harness.send(&alice_connection, typing(bob.id, state)).await;
        if response.body.is_some() {
            assert_error(&response.json(), "rate_limited", Some("t1"));
            refused += 1;
        }
        harness.clock.advance(Duration::milliseconds(500));
    }

    assert_eq!(refused, 25);
    assert_eq!(
        harness
            .push
            .events_of_type(&bob_connection, "user_typing")
            .len(),
        25
    );
    let after = table_contents(&harness.db).await;
    assert_eq!(
        after.len(),
        before.len(),
        "typing created or deleted an item"
    );
    assert_eq!(after, before, "typing modified an item");
}

// ---- resume -------------------------------------------------------------------------------------

#[tokio::test]
async fn resume_replays_exactly_the_missed_notifications_and_messages_in_order() {
    let harness = Harness::start().await;
    let (alice, bob, carol, dave) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
        harness.user("dave").await,
    );
    let post = harness
        .store
        .create_post(NewPost {
            author: bob.id,
            text: PostText::parse("bob's post").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    // What Bob saw before going offline: Carol's follow; his cursor is its notification.
    harness.follow(&carol, &bob).await;
    harness.follow(&bob, &alice).await;
    let seen = latest_notification(&harness, &bob).await;
    let bob_connection = harness.connect(&bob).await;

    // While Bob is offline: 3 notifications and 2 messages, interleaved.
    harness.follow(&dave, &bob).await;
    let message_1 = NewMessage::new(alice.id, bob.id, "first", None, Utc::now()).unwrap();
    let message_1 = harness.store.send_message(message_1).await.unwrap().message;
    harness
        .store
        .like(&post, carol.id, Utc::now())
        .await
        .unwrap();
    let message_2 =
        NewMessage::new(bob.id, carol.id, "from bob's phone", None, Utc::now()).unwrap();
    let message_2 = harness.store.send_message(message_2).await.unwrap().message;
    let comment = NewComment {
        author: dave.id,
        text: CommentText::parse("nice").unwrap(),
        created_at: Utc::now(),
    };
    harness.store.add_comment(&post, comment).await.unwrap();
    // Alice (whom Bob follows) posts twice; the push worker's feed task writes each into
    // her followers' feeds.
    let feeds = shared::feed::FeedMaterializer::new(
        Arc::new(harness.store.clone()),
        shared::config::FeedLimits::default(),
    );
    for text in ["one", "two"] {
        let post = harness
            .store
            .create_post(NewPost {
                author: alice.id,
                text: PostText::parse(text).unwrap(),
                media_url: None,
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        feeds
            .apply(&shared::feed::FeedTask::Distribute {
                post_id: post.id,
                author_id: post.author_id,
                created_at: post.created_at,
            })
            .await
            .unwrap();
    }

    let reply = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r1", "since": seen.id}),
        )
        .await;

    let frames = harness.push.events_to(&bob_connection);
    assert!(
        frames.iter().all(|frame| frame["type"] == "replay"),
        "missed events travel in replay frames: {frames:?}"
    );
    assert_eq!(frames.len(), 1, "six small events fit one frame");
    let all_replayed = unpack_replay(&frames);
    // The replay starts REPLAY_LAG before the cursor: what Bob had (the follow he saw) comes
    // again, and he drops it by event_id; the rest is exactly what he missed.
    let seen_event = Event::new_notification(&seen).event_id.to_string();
    assert_eq!(
        all_replayed[0]["event_id"],
        json!(seen_event),
        "the lag's overlap"
    );
    let replayed: Vec<Value> = all_replayed
        .into_iter()
        .filter(|event| event["cursor"].as_str().unwrap() > seen.id.to_string().as_str())
        .collect();
    let kinds: Vec<&str> = replayed
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    // Alice's message notified Bob too: it is one of the notifications.
    let notifications: Vec<Notification> = notifications_after(&harness, &bob, &seen).await;
    let mut expected: Vec<Event> = notifications.iter().map(Event::new_notification).collect();
    expected.push(Event::message_for(&message_1, bob.id));
    expected.push(Event::message_for(&message_2, bob.id));
    expected.sort_by_key(|event| event.cursor);
    assert_eq!(
        notifications
            .iter()
            .map(|n| n.kind.as_str())
            .collect::<Vec<_>>(),
        vec!["comment", "like", "message", "follow"],
        "newest first"
    );
    assert_eq!(replayed.len(), 6, "{kinds:?}");
    let expected_ids: Vec<String> = expected.iter().map(|e| e.event_id.to_string()).collect();
    let replayed_ids: Vec<String> = replayed
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        replayed_ids, expected_ids,
        "same ids as the live pushes, oldest first: {kinds:?}"
    );
    let cursors: Vec<&str> = replayed
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "in order: {cursors:?}"
    );

    assert_eq!(reply["type"], "resumed", "{reply}");
    assert_eq!(
        reply["data"],
        json!({"gap": false, "replayed": 7, "feed_new_posts": 2, "request_id": "r1"})
    );
    assert_eq!(reply["cursor"], json!(cursors.last().unwrap()));

    // Resuming from that cursor replays nothing Bob has not seen (only the lag's overlap
    // again, which he drops by event_id).
    harness.push.clear();
    let again = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r2", "since": reply["cursor"]}),
        )
        .await;
    let repeated = unpack_replay(&harness.push.events_to(&bob_connection));
    assert!(repeated
        .iter()
        .all(|event| event["cursor"].as_str() <= reply["cursor"].as_str()));
    assert_eq!(again["data"]["gap"], false);
    assert_eq!(again["cursor"], reply["cursor"]);
}

#[tokio::test]
async fn a_long_resume_is_a_handful_of_frames_in_order() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    harness.follow(&alice, &bob).await;
    harness.follow(&bob, &alice).await;
    let bob_connection = harness.connect(&bob).await;
    let since = time_cursor(harness.clock.now() - Duration::minutes(5));
    // Alice's follow notification, then 240 messages, each with its notification: 481
    // missed events.
    for i in 0..240 {
        let message =
            NewMessage::new(alice.id, bob.id, &format!("m{i}"), None, Utc::now()).unwrap();
        harness.store.send_message(message).await.unwrap();
    }

    let reply = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r1", "since": since}),
        )
        .await;

    let frames = harness.push.events_to(&bob_connection);
    let events = unpack_replay(&frames);
    assert_eq!(events.len(), 481);
    assert_eq!(reply["data"]["replayed"], 481);
    assert!(
        frames.len() <= 16,
        "{} @connections calls for 481 events",
        frames.len()
    );
    let cursors: Vec<&str> = events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first"
    );
}

/// The events of `replay` frames, in order.
fn unpack_replay(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .flat_map(|frame| {
            frame["data"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn resume_replays_an_item_minted_before_the_cursor_but_committed_after_it() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    harness.follow(&alice, &bob).await;
    harness.follow(&bob, &alice).await;
    let bob_connection = harness.connect(&bob).await;
    // Alice's message W: its id was minted when her request began. Bob meanwhile received
    // an event minted 5 s after W (another thread's message, pushed from a faster shard) and
    // went away before W was committed or pushed: his cursor is past W's id.
    let late = NewMessage::new(alice.id, bob.id, "minted first", None, Utc::now()).unwrap();
    let late = harness.store.send_message(late).await.unwrap().message;
    let (seconds, nanos) = late.id.as_uuid().get_timestamp().unwrap().to_unix();
    let minted_at = chrono::DateTime::from_timestamp(seconds as i64, nanos).unwrap();
    let bobs_cursor = time_cursor(minted_at + Duration::seconds(5));
    assert!(late.id.as_uuid() < bobs_cursor);

    let reply = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r1", "since": bobs_cursor}),
        )
        .await;

    let replayed = unpack_replay(&harness.push.events_to(&bob_connection));
    let slow_event = Event::message_for(&late, bob.id).event_id.to_string();
    assert!(
        replayed
            .iter()
            .any(|event| event["event_id"] == json!(slow_event)),
        "the late-committed message is replayed: {replayed:?}"
    );
    assert_eq!(reply["data"]["gap"], false);
}

#[tokio::test]
async fn resume_beyond_the_window_is_a_gap_with_a_fresh_cursor() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    harness.follow(&alice, &bob).await;
    let bob_connection = harness.connect(&bob).await;
    let too_old = time_cursor(harness.clock.now() - RESUME_WINDOW - Duration::minutes(1));

    let reply = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r1", "since": too_old}),
        )
        .await;

    assert_eq!(reply["type"], "resumed", "{reply}");
    assert_eq!(reply["data"]["gap"], true);
    assert_eq!(reply["data"]["replayed"], 0);
    assert_eq!(reply["cursor"], json!(time_cursor(harness.clock.now())));
    assert!(
        harness.push.events_to(&bob_connection).is_empty(),
        "a gap replays nothing"
    );

    let from_the_future = time_cursor(harness.clock.now() + Duration::hours(1));
    let reply = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r2", "since": from_the_future}),
        )
        .await;
    assert_eq!(reply["data"]["gap"], true);
}

#[tokio::test]
async fn resume_stops_when_the_caller_is_gone() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let bob_connection = harness.connect(&bob).await;
    let since = time_cursor(harness.clock.now() - Duration::seconds(1));
    harness.follow(&alice, &bob).await;
    harness.push.mark_gone(&bob_connection);
    // Past the handshake window: a 410 now means gone.
    harness
        .clock
        .advance(shared::store::HANDSHAKE_WINDOW + Duration::seconds(1));

    let response = harness
        .send(
            &bob_connection,
            json!({"action": "resume", "request_id": "r1", "since": since}),
        )
        .await;

    assert_eq!(response.body, None);
    assert_eq!(
        harness.store.get_connection(&bob_connection).await.unwrap(),
        None,
        "gone connection removed"
    );
}

async fn latest_notification(harness: &Harness, user: &User) -> Notification {
    let page = harness
        .store
        .notifications(user.id, false, &PageRequest::first(1))
        .await
        .unwrap();
    page.items.into_iter().next().expect("a notification")
}

async fn notifications_after(
    harness: &Harness,
    user: &User,
    seen: &Notification,
) -> Vec<Notification> {
    let page = harness
        .store
        .notifications(user.id, false, &PageRequest::first(100))
        .await
        .unwrap();
    page.items.into_iter().filter(|n| n.id > seen.id).collect()
}

#[tokio::test]
async fn resume_leaves_out_what_a_blocked_user_sent_as_the_rest_lists_do() {
    let harness = Harness::start().await;
    let (bob, carol, mallory) = (
        harness.user("bob").await,
        harness.user("carol").await,
        harness.user("mallory").await,
    );
    let since = shared::replay::time_cursor(Utc::now() - Duration::seconds(1));
    let bob_connection = harness.connect(&bob).await;
    harness.follow(&carol, &bob).await;
    harness.follow(&mallory, &bob).await;
    for (from, text) in [(&mallory, "hi bob"), (&carol, "hello"), (&mallory, "again")] {
        let message = NewMessage::new(from.id, bob.id, text, None, Utc::now()).unwrap();
        harness.store.send_message(message).await.unwrap();
    }
    // Mallory blocked by Bob — and the other direction must hide just as well.
    harness
        .store
        .block(bob.id, mallory.id, Utc::now())
        .await
        .unwrap();

    let reply = harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r1", "since": since.to_string()}),
        )
        .await;
    assert_eq!(reply["type"], "resumed", "{reply}");
    let replayed = unpack_replay(&harness.push.events_to(&bob_connection));
    let mallory_id = mallory.id.to_string();
    for event in &replayed {
        assert!(
            !event.to_string().contains(&mallory_id),
            "an event from mallory was replayed: {event}"
        );
    }
    // Carol's follow notification, her message and its notification are still there.
    let kinds: Vec<&str> = replayed
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(replayed.len(), 3, "{kinds:?}");
    assert!(kinds.contains(&"new_message"), "{kinds:?}");
    let carol_id = carol.id.to_string();
    assert!(replayed.iter().all(|e| e.to_string().contains(&carol_id)));

    // The other direction: Carol blocks Bob.
    harness
        .store
        .block(carol.id, bob.id, Utc::now())
        .await
        .unwrap();
    harness.push.clear();
    harness
        .reply(
            &bob_connection,
            json!({"action": "resume", "request_id": "r2", "since": since.to_string()}),
        )
        .await;
    let replayed = unpack_replay(&harness.push.events_to(&bob_connection));
    assert!(
        replayed.is_empty(),
        "a block either way hides: {replayed:?}"
    );
}

// ---- per-user budgets --------------------------------------------------------------------------

/// The `retry_after` of a `rate_limited` reply, checked to be within one window.
fn retry_after(reply: &Value) -> u64 {
    let seconds = reply["data"]["retry_after"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retry_after: {reply}"));
    assert!((1..=60).contains(&seconds), "{reply}");
    seconds
}

#[tokio::test]
async fn subscribes_over_the_users_budget_are_refused_before_any_read() {
    let harness = Harness::start_with(&[("RATE_LIMIT_SUBSCRIBES_PER_MINUTE", "2")]).await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let post = harness
        .store
        .create_post(NewPost {
            author: alice.id,
            text: PostText::parse("hello").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    let channel = format!("post:{}", post.id);
    // The budget is the user's, across their connections.
    let (first, second) = (harness.connect(&bob).await, harness.connect(&bob).await);
    assert_eq!(
        harness.reply(&first, subscribe(&channel)).await["type"],
        "subscribed"
    );
    assert_eq!(
        harness.reply(&second, subscribe(&channel)).await["type"],
        "subscribed"
    );
    harness.store.unsubscribe(&second, &channel).await.unwrap();
    let refused = harness
        .reply(
            &second,
            json!({"action": "subscribe", "request_id": "s-over", "channel": channel}),
        )
        .await;
    assert_error(&refused, "rate_limited", Some("s-over"));
    retry_after(&refused);
    assert_eq!(
        harness.store.room_members(&channel).await.unwrap().len(),
        1,
        "nothing joined over budget"
    );
    // A channel that does not exist is refused the same way: the budget goes first.
    let missing = harness
        .reply(&second, subscribe(&format!("post:{}", PostId::new())))
        .await;
    assert_error(&missing, "rate_limited", Some("s1"));
    // Another user is not affected; a new window restores the budget.
    let alice_connection = harness.connect(&alice).await;
    assert_eq!(
        harness.reply(&alice_connection, subscribe(&channel)).await["type"],
        "subscribed"
    );
    harness.clock.advance(Duration::seconds(61));
    assert_eq!(
        harness.reply(&second, subscribe(&channel)).await["type"],
        "subscribed"
    );
}

#[tokio::test]
async fn resumes_over_the_users_budget_replay_nothing() {
    let harness = Harness::start_with(&[("RATE_LIMIT_RESUMES_PER_MINUTE", "1")]).await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let since = time_cursor(harness.clock.now() - Duration::seconds(5));
    harness.follow(&alice, &bob).await;
    harness.clock.advance(Duration::seconds(2));
    let bob_connection = harness.connect(&bob).await;
    let resume =
        |request_id: &str| json!({"action": "resume", "request_id": request_id, "since": since});

    let first = harness.reply(&bob_connection, resume("r1")).await;
    assert_eq!(first["type"], "resumed", "{first}");
    assert_eq!(first["data"]["replayed"], 1, "{first}");
    let pushed = harness.push.events_to(&bob_connection).len();

    let refused = harness.reply(&bob_connection, resume("r2")).await;
    assert_error(&refused, "rate_limited", Some("r2"));
    retry_after(&refused);
    assert_eq!(
        harness.push.events_to(&bob_connection).len(),
        pushed,
        "nothing replayed over budget"
    );
    harness.clock.advance(Duration::seconds(61));
    let again = harness.reply(&bob_connection, resume("r3")).await;
    assert_eq!(again["type"], "resumed", "{again}");
}

#[tokio::test]
async fn the_typing_limit_tells_how_long_to_wait() {
    let harness = Harness::start().await;
    let (alice, bob) = (harness.user("alice").await, harness.user("bob").await);
    let connection = harness.connect(&alice).await;
    harness.send(&connection, typing(bob.id, "start")).await;
    let refused = harness.reply(&connection, typing(bob.id, "stop")).await;
    assert_error(&refused, "rate_limited", Some("t1"));
    assert_eq!(refused["data"]["retry_after"], 1, "{refused}");
    // Other errors carry no retry_after.
    let other = harness.reply(&connection, subscribe("nonsense")).await;
    assert!(other["data"].get("retry_after").is_none(), "{other}");
}
