//! The realtime acceptance suite, end to end: each test starts its own local stack
//! (`ripple-local` over the repository's `template.yaml`: in-memory dynoxide, the real moto
//! server, the real DynamoDB-stream and SQS pollers), acts through REST over HTTP and real
//! WebSocket clients, and checks what the sockets receive and what the table holds. No
//! handler is called directly.
//!
//! Run: `cargo test -p ripple-tests --test realtime -- --test-threads=2` (needs `make tools`
//! for `.venv/bin/moto_server`, and `node` for the JavaScript client check).

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use ripple_tests::realtime::{
    eventually, repository_root, RealtimeStack, User, WsClient, QUIET, WAIT,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// How long a `user_offline` may take: the production grace period (10 s, not configurable)
/// plus SQS delivery of the delayed presence check, the worker's write and the stream router
/// pushing from that write.
const PRESENCE_WAIT: Duration = Duration::from_secs(25);

/// How long the big fan-out test lets the stream router work through the records of its
/// set-up (hundreds of registrations, follows and connections) before it posts.
const BACKLOG_WAIT: Duration = Duration::from_secs(120);

/// The production presence grace period (`shared::store::PRESENCE_GRACE`).
const PRESENCE_GRACE: Duration = Duration::from_secs(10);

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {value}"))
        .with_timezone(&Utc)
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
}

/// A post event about `post_id` of type `kind`.
fn is_post_event(kind: &'static str, post_id: String) -> impl Fn(&Value) -> bool {
    move |event| event["type"] == kind && event["data"]["id"] == post_id.as_str()
}

/// An event of type `kind` whose `data.user_id` is `user`.
fn is_presence(kind: &'static str, user: &User) -> impl Fn(&Value) -> bool {
    let user_id = user.id.clone();
    move |event| event["type"] == kind && event["data"]["user_id"] == user_id.as_str()
}

/// A UUIDv7 of the millisecond `ms` (the smallest one): a resume cursor for that moment.
fn cursor_at(ms: i64) -> String {
    let ms = u64::try_from(ms).expect("a time after 1970");
    uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10])
        .into_uuid()
        .to_string()
}

// ---- 1. posts ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_reaches_every_socket_of_followers_and_author_but_not_strangers_or_the_blocked() {
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let c = stack.register("carol").await;
    let d = stack.register("dave").await;
    stack.follow(&b, &a).await;
    // D followed A before A blocked D: the block must cut D off, not just the missing follow.
    stack.follow(&d, &a).await;
    stack.block(&a, &d).await;

    let a1 = stack.connect(&a).await;
    let a2 = stack.connect(&a).await;
    let b1 = stack.connect(&b).await;
    let b2 = stack.connect(&b).await;
    let c1 = stack.connect(&c).await;
    let d1 = stack.connect(&d).await;

    let post = stack.post(&a, "hello, followers").await;
    let responded = Instant::now();
    let post_id = text(&post, "/id").to_owned();

    let mut event_ids = BTreeSet::new();
    for socket in [&b1, &b2, &a2, &a1] {
        let frame = socket
            .next_frame_where(
                "post_created",
                WAIT,
                is_post_event("post_created", post_id.clone()),
            )
            .await;
        let latency = frame.received_at.saturating_duration_since(responded);
        eprintln!(
            "latency REST response → post_created on {}: {:.1} ms",
            socket.label,
            latency.as_secs_f64() * 1000.0
        );
        assert_eq!(frame.json["data"]["author_id"], a.id.as_str());
        event_ids.insert(text(&frame.json, "/event_id").to_owned());
    }
    assert_eq!(event_ids.len(), 1, "one event id everywhere: {event_ids:?}");

    c1.assert_no_event("post_created", QUIET).await;
    d1.assert_no_event("post_created", Duration::ZERO).await;
    for socket in [&b1, &b2, &a1, &a2] {
        socket.assert_no_event("post_created", Duration::ZERO).await;
    }
    stack.stop().await;
}

// ---- 2. likes ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_like_notifies_the_author_and_updates_room_subscribers_but_a_self_like_notifies_nobody() {
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let watcher = stack.register("watcher").await;
    let post = stack.post(&a, "like me").await;
    let post_id = text(&post, "/id").to_owned();
    let channel = format!("post:{post_id}");

    let a1 = stack.connect(&a).await;
    let room = stack.connect(&watcher).await;
    room.subscribe(&channel).await;
    a1.subscribe(&channel).await;

    let liked = stack.like(&b, &post_id).await;
    assert_eq!(liked["like_count"], 1, "{liked}");
    let notification = a1.next_event_of_type("new_notification", WAIT).await;
    assert_eq!(notification["data"]["type"], "like", "{notification}");
    assert_eq!(notification["data"]["actor_id"], b.id.as_str());
    assert_eq!(notification["data"]["post_id"], post_id.as_str());
    assert!(
        notification["cursor"].is_string(),
        "resumable: {notification}"
    );
    assert_eq!(liked["like_version"], 1, "{liked}");
    let update = room.next_event_of_type("like_updated", WAIT).await;
    assert_eq!(
        update["data"],
        json!({"post_id": post_id, "like_count": 1, "version": 1})
    );

    // A likes their own post: the room sees the count, A gets no notification.
    let liked = stack.like(&a, &post_id).await;
    assert_eq!(liked["like_count"], 2, "{liked}");
    let update = room.next_event_of_type("like_updated", WAIT).await;
    assert_eq!(update["data"]["like_count"], 2);
    assert_eq!(update["data"]["version"], 2);
    // A's own subscription proves A's socket has seen the same stream batch.
    a1.next_event_where("like_updated 2 on A's socket", WAIT, |e| {
        e["type"] == "like_updated" && e["data"]["like_count"] == 2
    })
    .await;
    a1.assert_no_event("new_notification", QUIET).await;
    let notifications = stack.call(&a, "GET", "/notifications", None, 200).await;
    assert_eq!(
        notifications["items"].as_array().map(Vec::len),
        Some(1),
        "only B's like notified A: {notifications}"
    );
    stack.stop().await;
}

// ---- 3. comments ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_comment_reaches_the_room_and_notifies_the_post_author() {
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let watcher = stack.register("watcher").await;
    let post = stack.post(&a, "comment on me").await;
    let post_id = text(&post, "/id").to_owned();

    let a1 = stack.connect(&a).await;
    let room = stack.connect(&watcher).await;
    room.subscribe(&format!("post:{post_id}")).await;

    let comment = stack.comment(&b, &post_id, "nice one").await;
    let comment_id = text(&comment, "/id").to_owned();

    let event = room.next_event_of_type("new_comment", WAIT).await;
    assert_eq!(event["data"]["id"], comment_id.as_str(), "{event}");
    assert_eq!(event["data"]["text"], "nice one");
    let notification = a1.next_event_of_type("new_notification", WAIT).await;
    assert_eq!(notification["data"]["type"], "comment", "{notification}");
    assert_eq!(notification["data"]["comment_id"], comment_id.as_str());
    assert_eq!(notification["data"]["actor_id"], b.id.as_str());
    // The author is not subscribed to the room: no new_comment for A.
    a1.assert_no_event("new_comment", QUIET).await;
    stack.stop().await;
}

// ---- 4. direct messages --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_reaches_the_recipient_and_the_senders_sockets_or_becomes_a_request() {
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let p = stack.register("private_pat").await;
    stack.update_profile(&p, json!({"is_private": true})).await;

    let a1 = stack.connect(&a).await;
    let a2 = stack.connect(&a).await;
    let b1 = stack.connect(&b).await;
    let p1 = stack.connect(&p).await;

    let message = stack.message(&a, &b, "hi bob").await;
    let message_id = text(&message, "/id").to_owned();
    for socket in [&b1, &a2, &a1] {
        let event = socket.next_event_of_type("new_message", WAIT).await;
        assert_eq!(
            event["data"]["id"],
            message_id.as_str(),
            "{}: {event}",
            socket.label
        );
        assert_eq!(event["data"]["text"], "hi bob");
        assert_eq!(event["cursor"], message_id.as_str());
    }

    // P is private and does not follow A: a message request, not a message.
    let request = stack.message(&a, &p, "hi pat").await;
    assert_eq!(request["status"], "requested", "{request}");
    let request_id = text(&request, "/id").to_owned();
    let event = p1.next_event_of_type("message_request", WAIT).await;
    assert_eq!(event["data"]["id"], request_id.as_str(), "{event}");
    assert_eq!(event["data"]["from"], a.id.as_str());
    let own = a2
        .next_event_where("A's copy of the request", WAIT, |e| {
            e["type"] == "new_message" && e["data"]["id"] == request_id.as_str()
        })
        .await;
    assert_eq!(own["data"]["status"], "requested");
    p1.assert_no_event("new_message", QUIET).await;
    b1.assert_no_event("message_request", Duration::ZERO).await;
    stack.stop().await;
}

// ---- 5. typing -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typing_is_relayed_with_an_expiry_never_across_a_block_and_never_stored() {
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let d = stack.register("dave").await;
    stack.block(&a, &d).await;

    let a1 = stack.connect(&a).await;
    let b1 = stack.connect(&b).await;
    let d1 = stack.connect(&d).await;

    // Relayed to B with expires_at = occurred_at + 5 s.
    a1.send(&json!({"action": "typing", "to": b.id, "state": "start"}))
        .await;
    let typing = b1.next_event_of_type("user_typing", WAIT).await;
    assert_eq!(typing["data"]["from"], a.id.as_str(), "{typing}");
    assert_eq!(typing["data"]["state"], "start");
    let expires_after = time(&typing["data"]["expires_at"]) - time(&typing["occurred_at"]);
    assert_eq!(expires_after, chrono::Duration::seconds(5), "{typing}");

    // Never across a block, in either direction (fresh sockets: one typing frame per second
    // per connection, and the throttle is checked first).
    let a2 = stack.connect(&a).await;
    let refused = a2
        .request(json!({"action": "typing", "to": d.id, "state": "start"}))
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let refused = d1
        .request(json!({"action": "typing", "to": a.id, "state": "start"}))
        .await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    d1.assert_no_event("user_typing", QUIET).await;
    for socket in [&a1, &a2] {
        socket.assert_no_event("user_typing", Duration::ZERO).await;
    }

    // 50 typing frames leave the table's item count unchanged. Each frame either reaches B
    // or is refused with rate_limited (one per second per connection): together all 50.
    let a3 = stack.connect(&a).await;
    let before = stack.settled_item_count().await;
    let relayed_before = b1.events_of_type("user_typing").len();
    for i in 0..50 {
        a3.send(&json!({
            "action": "typing",
            "request_id": format!("t{i}"),
            "to": b.id,
            "state": if i % 2 == 0 { "start" } else { "stop" },
        }))
        .await;
    }
    eventually("all 50 typing frames relayed or refused", WAIT, || async {
        let refused = a3
            .events_of_type("error")
            .iter()
            .filter(|e| e["data"]["code"] == "rate_limited")
            .count();
        let relayed = b1.events_of_type("user_typing").len() - relayed_before;
        refused + relayed == 50
    })
    .await;
    let relayed = b1.events_of_type("user_typing").len() - relayed_before;
    assert!(relayed >= 1, "the first frame is relayed");
    let other_errors: Vec<Value> = a3
        .events_of_type("error")
        .into_iter()
        .filter(|e| e["data"]["code"] != "rate_limited")
        .collect();
    assert!(other_errors.is_empty(), "{other_errors:?}");
    assert_eq!(stack.item_count().await, before, "typing wrote an item");
    stack.stop().await;
}

// ---- 6. presence ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_reaches_mutuals_is_debounced_on_reconnect_and_hidden_when_switched_off() {
    let stack = RealtimeStack::start().await;
    let watcher = stack.register("watcher").await;
    let a = stack.register("alice").await;
    let f = stack.register("flaky_fred").await;
    let e = stack.register("hidden_eve").await;
    let stranger = stack.register("stranger").await;
    for user in [&a, &f, &e] {
        stack.follow(&watcher, user).await;
        stack.follow(user, &watcher).await;
    }
    // A stranger follows A one way: not a mutual, sees nothing.
    stack.follow(&stranger, &a).await;
    stack
        .update_profile(&e, json!({"show_presence": false}))
        .await;

    let w1 = stack.connect(&watcher).await;
    let s1 = stack.connect(&stranger).await;
    let a1 = stack.connect(&a).await;
    w1.next_event_where("alice online", WAIT, is_presence("user_online", &a))
        .await;
    let f1 = stack.connect(&f).await;
    w1.next_event_where("fred online", WAIT, is_presence("user_online", &f))
        .await;
    let e1 = stack.connect(&e).await;

    // A leaves; F drops and reconnects at once; E leaves.
    a1.close().await;
    f1.close().await;
    let f2 = stack.connect(&f).await;
    let reconnected_at = Instant::now();
    e1.close().await;

    w1.next_event_where(
        "alice offline after the grace period",
        PRESENCE_WAIT,
        is_presence("user_offline", &a),
    )
    .await;
    // F's presence check ran at about the same time as A's; wait out its grace period
    // anyway, then a quiet period: neither offline nor a second online for F.
    let until_checked =
        (reconnected_at + PRESENCE_GRACE + QUIET).saturating_duration_since(Instant::now());
    w1.assert_nothing_where("presence of the reconnected F", until_checked, |event| {
        event["data"]["user_id"] == f.id.as_str()
            && (event["type"] == "user_offline" || event["type"] == "user_online")
    })
    .await;
    w1.assert_nothing_where(
        "presence of E (show_presence off)",
        Duration::ZERO,
        |event| event["data"]["user_id"] == e.id.as_str(),
    )
    .await;
    s1.assert_nothing_where("presence for a one-way follower", Duration::ZERO, |event| {
        event["type"] == "user_online" || event["type"] == "user_offline"
    })
    .await;
    drop(f2);
    stack.stop().await;
}

// ---- 7. refused subscriptions and malformed frames ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_subscriptions_and_garbage_frames_get_errors_and_the_socket_stays_usable() {
    let stack = RealtimeStack::start().await;
    let p = stack.register("private_pat").await;
    let x = stack.register("outsider").await;
    stack.update_profile(&p, json!({"is_private": true})).await;
    let post = stack.post(&p, "followers only").await;
    let post_id = text(&post, "/id").to_owned();

    let x1 = stack.connect(&x).await;
    let refused = x1
        .request(json!({"action": "subscribe", "channel": format!("post:{post_id}")}))
        .await;
    assert_eq!(refused["type"], "error", "{refused}");
    // Hidden as a missing post is (the visibility policy: never reveal it exists).
    assert_eq!(refused["data"]["code"], "not_found", "{refused}");

    let missing = uuid::Uuid::now_v7();
    let refused = x1
        .request(json!({"action": "subscribe", "channel": format!("post:{missing}")}))
        .await;
    assert_eq!(refused["data"]["code"], "not_found", "{refused}");

    // Frames whose request id cannot be read: one at a time, each answered by an error.
    let oversize = json!({"action": "ping", "request_id": "big", "padding": "x".repeat(5000)});
    for (garbage, code) in [
        (Message::text("this is not json"), "validation_failed"),
        (Message::text("[1, 2, 3]"), "validation_failed"),
        (Message::text(r#"{"no_action": true}"#), "validation_failed"),
        (
            Message::binary(vec![0u8, 159, 146, 150]),
            "validation_failed",
        ),
        (Message::text(oversize.to_string()), "payload_too_large"),
    ] {
        let shown: String = format!("{garbage:?}").chars().take(80).collect();
        x1.send_message(garbage).await;
        let error = x1.next_event_of_type("error", WAIT).await;
        assert_eq!(error["data"]["code"], code, "{shown}: {error}");
    }
    // Frames with one: the error carries it.
    for frame in [
        json!({"action": "dance"}),
        json!({"action": "subscribe"}),
        json!({"action": "subscribe", "channel": "kitchen:sink"}),
        json!({"action": "ping", "extra": 1}),
        json!({"action": "resume", "since": "yesterday"}),
    ] {
        let error = x1.request(frame.clone()).await;
        assert_eq!(error["type"], "error", "{frame}: {error}");
        assert_eq!(
            error["data"]["code"], "validation_failed",
            "{frame}: {error}"
        );
    }
    // Still open and working.
    let pong = x1.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    assert!(pong["data"]["server_time"].is_string(), "{pong}");
    assert!(!x1.is_closed());
    stack.stop().await;
}

// ---- 8. resume -----------------------------------------------------------------------------

/// Every message writes its `message` notification in the same transaction, so the five
/// items B misses are a like notification, two messages and the two notifications of those
/// messages: three notifications and two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_replays_exactly_the_missed_notifications_and_messages_in_order() {
    let stack = RealtimeStack::start().await;
    let b = stack.register("bob").await;
    let a = stack.register("alice").await;
    let c = stack.register("carol").await;
    let post = stack.post(&b, "bob's post").await;
    let post_id = text(&post, "/id").to_owned();

    // B sees a follow notification live: its cursor is the last one B saw.
    let b1 = stack.connect(&b).await;
    stack.follow(&a, &b).await;
    let seen = b1.next_event_of_type("new_notification", WAIT).await;
    assert_eq!(seen["data"]["type"], "follow", "{seen}");
    let since = text(&seen, "/cursor").to_owned();
    b1.close().await;

    // While B is away.
    let c1 = stack.connect(&c).await;
    stack.like(&a, &post_id).await;
    let first = stack.message(&c, &b, "are you there?").await;
    let second = stack.message(&c, &b, "hello?").await;
    // The stream router handles records in order: once C's own socket has the edit of C's
    // later post, every event above has been pushed (to nobody of B's), so none can still
    // arrive live on B's next socket and blur what the replay sent. An edit, because only
    // the router pushes `post_updated` (the post's `post_created` comes from the writer
    // push right away, ahead of the router).
    let marker = stack.post(&c, "sync marker").await;
    let marker_id = text(&marker, "/id").to_owned();
    stack
        .call(
            &c,
            "PATCH",
            &format!("/posts/{marker_id}"),
            Some(json!({"text": "sync marker, edited"})),
            200,
        )
        .await;
    c1.next_event_where(
        "the edit of C's marker post",
        WAIT,
        is_post_event("post_updated", marker_id),
    )
    .await;
    let notifications = stack
        .call(&b, "GET", "/notifications?limit=100", None, 200)
        .await;
    let missed_notifications: BTreeSet<String> = notifications["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| text(n, "/id").to_owned())
        .filter(|id| *id > since)
        .collect();
    assert_eq!(missed_notifications.len(), 3, "{notifications}");
    let missed_messages: BTreeSet<String> = [&first, &second]
        .iter()
        .map(|m| text(m, "/id").to_owned())
        .collect();
    // UUIDv7 text order is time order: the replay order.
    let expected: Vec<String> = missed_notifications
        .union(&missed_messages)
        .cloned()
        .collect();

    let b2 = stack.connect(&b).await;
    let resumed = b2
        .request(json!({"action": "resume", "since": since}))
        .await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["gap"], false, "{resumed}");
    // The replayed events were posted, in `replay` frames, before the reply: all on the
    // socket already. The replay starts a minute before `since` (ids are minted before
    // commit), so what B saw comes again and is dropped by event_id; the rest is exactly
    // what B missed.
    let all_replayed = replayed_events(&b2.raw_frames());
    assert_eq!(resumed["data"]["replayed"], all_replayed.len(), "{resumed}");
    let replayed: Vec<Value> = all_replayed
        .into_iter()
        .filter(|event| text(event, "/cursor") > since.as_str())
        .collect();
    let cursors: Vec<String> = replayed
        .iter()
        .map(|event| text(event, "/cursor").to_owned())
        .collect();
    assert_eq!(cursors, expected, "exactly the missed five, oldest first");
    for event in &replayed {
        let expected_type = if missed_messages.contains(text(event, "/cursor")) {
            "new_message"
        } else {
            "new_notification"
        };
        assert_eq!(event["type"], expected_type, "{event}");
    }
    let event_ids: HashSet<&str> = replayed.iter().map(|e| text(e, "/event_id")).collect();
    assert_eq!(event_ids.len(), 5, "no duplicate events");
    assert_eq!(
        resumed["cursor"],
        expected[4].as_str(),
        "caught up to the last"
    );

    // A cursor older than the 24-hour retention: a gap, nothing replayed.
    let ancient = cursor_at(Utc::now().timestamp_millis() - 25 * 3600 * 1000);
    let frames_before = b2.raw_frames().len();
    let gap = b2
        .request(json!({"action": "resume", "since": ancient}))
        .await;
    assert_eq!(gap["type"], "resumed", "{gap}");
    assert_eq!(gap["data"]["gap"], true, "{gap}");
    assert_eq!(gap["data"]["replayed"], 0, "{gap}");
    assert_eq!(
        b2.raw_frames().len(),
        frames_before + 1,
        "only the resumed reply"
    );
    stack.stop().await;
}

/// The events the `replay` frames among `frames` carried, in order.
fn replayed_events(frames: &[String]) -> Vec<Value> {
    frames
        .iter()
        .filter_map(|frame| serde_json::from_str::<Value>(frame).ok())
        .filter(|frame| frame["type"] == "replay")
        .flat_map(|frame| {
            frame["data"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// 480 missed events, resumed with AWS-modelled latency on: they arrive in a handful of
/// `replay` frames. The time from `resume` to `resumed` is printed, not asserted (timing is
/// measured, never a test condition); the frame count bounds it structurally.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_of_480_missed_events_is_a_handful_of_frames_with_aws_latency() {
    use shared::store::NewMessage;
    let stack = RealtimeStack::start_with(|options| {
        options.latency = ripple_local::latency::LatencyModel::aws().with_seed(12);
    })
    .await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    stack.follow(&a, &b).await;
    stack.follow(&b, &a).await;
    let since = cursor_at(Utc::now().timestamp_millis());
    // Written straight to the table (the stream delivers them to nobody: Bob is away).
    let sdk = shared::aws::local_sdk_config();
    let store = shared::store::DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&stack.stack.dynamodb_endpoint)
                .build(),
        ),
        &stack.stack.table_name,
    );
    let (alice, bob) = (a.user_id(), b.user_id());
    stream::iter(0..240)
        .for_each_concurrent(8, |i| {
            let store = &store;
            async move {
                let message = NewMessage::new(alice, bob, &format!("m{i}"), None, Utc::now())
                    .expect("a valid message");
                store.send_message(message).await.expect("sent");
            }
        })
        .await;

    let b1 = stack.connect(&b).await;
    let started = Instant::now();
    let resumed = b1
        .request(json!({"action": "resume", "since": since}))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(resumed["data"]["gap"], false, "{resumed}");
    let frames = b1
        .raw_frames()
        .iter()
        .filter(|frame| frame.contains(r#""type":"replay""#))
        .count();
    let events = replayed_events(&b1.raw_frames());
    assert_eq!(resumed["data"]["replayed"], events.len());
    assert!(events.len() >= 480, "{} events", events.len());
    assert!(frames <= 16, "{frames} replay frames");
    eprintln!(
        "resume of {} events with AWS-modelled latency: {} frames, resumed after {elapsed:?}",
        events.len(),
        frames
    );
    stack.stop().await;
}

// ---- 9. stale connections ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_that_died_without_disconnect_is_removed_by_the_next_push() {
    // A 410 within the handshake window leaves a connection in place; a one-second window
    // lets this test see the removal without waiting the production 30 s.
    let stack = RealtimeStack::start_with(|options| {
        options
            .environment
            .push(("WS_HANDSHAKE_WINDOW_SECONDS".into(), "1".into()))
    })
    .await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    stack.follow(&b, &a).await;

    let a1 = stack.connect(&a).await;
    let (b1, b_connection) = stack.connect_with_id(&b).await;
    assert!(stack.connection_item_exists(&b_connection).await);
    assert!(stack.user_connection_ids(&b).await.contains(&b_connection));

    // B's socket dies and the gateway loses the $disconnect.
    stack
        .faults()
        .drop_disconnect
        .store(true, std::sync::atomic::Ordering::SeqCst);
    b1.kill().await;
    eventually("the gateway notices the dead socket", WAIT, || async {
        !stack.open_connection_ids().contains(&b_connection)
    })
    .await;
    tokio::time::sleep(QUIET).await;
    assert!(
        stack.connection_item_exists(&b_connection).await,
        "no $disconnect ran: the connection item is still there"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The next push to B answers 410 and removes the connection (past its handshake).
    let post = stack.post(&a, "anyone there?").await;
    a1.next_event_where(
        "the post on A's socket",
        WAIT,
        is_post_event("post_created", text(&post, "/id").to_owned()),
    )
    .await;
    eventually("B's connection item is deleted", WAIT, || async {
        !stack.connection_item_exists(&b_connection).await
    })
    .await;
    assert!(
        !stack.user_connection_ids(&b).await.contains(&b_connection),
        "and it left B's connection set"
    );
    stack.stop().await;
}

/// A push that races the handshake — `ws-connect` stored the connection, but API Gateway
/// does not take posts for it until `$connect` has returned — answers 410. That 410 must not
/// remove the live connection: before the handshake window, it was removed, and the socket
/// silently received nothing more (and its `ping`s were still answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_racing_the_handshake_leaves_the_live_connection_registered() {
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    stack.follow(&a, &b).await;
    stack.follow(&b, &a).await;
    let since = cursor_at(Utc::now().timestamp_millis());
    stack
        .faults()
        .handshake_delay_ms
        .store(1500, std::sync::atomic::Ordering::SeqCst);

    // Bob connects; while his handshake is still open, Alice messages him.
    let (b1, during) = tokio::join!(stack.connect(&b), async {
        eventually("bob's connection is stored", WAIT, || async {
            !stack.user_connection_ids(&b).await.is_empty()
        })
        .await;
        stack.message(&a, &b, "during your handshake").await
    });
    stack
        .faults()
        .handshake_delay_ms
        .store(0, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(QUIET).await;

    let connections = stack.user_connection_ids(&b).await;
    assert_eq!(
        connections.len(),
        1,
        "the live connection is still registered"
    );
    let pong = b1.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    let after = stack.message(&a, &b, "after your handshake").await;
    b1.next_event_where("the next message, live", WAIT, |event| {
        event["type"] == "new_message" && event["data"]["id"] == after["id"]
    })
    .await;
    // The message that met the 410 is not lost: the resume the client sends on connect
    // brings it.
    let resumed = b1
        .request(json!({"action": "resume", "since": since}))
        .await;
    assert_eq!(resumed["data"]["gap"], false, "{resumed}");
    let replayed = replayed_events(&b1.raw_frames());
    assert!(
        replayed
            .iter()
            .any(|event| event["type"] == "new_message" && event["data"]["id"] == during["id"]),
        "{replayed:?}"
    );
    stack.stop().await;
}

// ---- 10. big fan-out -----------------------------------------------------------------------

/// The queue path is proven by pausing the push worker's SQS poller: with it paused, no
/// follower receives the post (a direct push would arrive within milliseconds) while the
/// fan-out queue holds the chunks; once resumed, every socket gets the post exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_to_300_connected_followers_goes_through_the_queue_and_reaches_each_once() {
    const FOLLOWERS: usize = 300;
    let stack = RealtimeStack::start().await;
    let a = stack.register("alice").await;
    let started = Instant::now();
    let followers: Vec<User> = stream::iter(0..FOLLOWERS)
        .map(|i| {
            let stack = &stack;
            let a = &a;
            async move {
                let follower = stack.register(&format!("fan_{i:03}")).await;
                stack.follow(&follower, a).await;
                follower
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let sockets: Vec<WsClient> = stream::iter(&followers)
        .map(|follower| stack.connect(follower))
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!(
        "set-up of {FOLLOWERS} followers with sockets: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The set-up left thousands of stream records (registrations, follows, connections) for
    // the router. It handles them in order, so once A's socket has the read receipt of one
    // more follower's notification, the backlog is gone and the post is next in line. (The
    // notification itself comes from the writer push right away, ahead of the router; only
    // the router pushes `notification_read`.)
    let a1 = stack.connect(&a).await;
    let last = stack.register("last_fan").await;
    stack.follow(&last, &a).await;
    let last_id = last.id.clone();
    let notification = a1
        .next_event_where("the last follower's notification", BACKLOG_WAIT, |event| {
            event["type"] == "new_notification" && event["data"]["actor_id"] == last_id.as_str()
        })
        .await;
    let notification_id = text(&notification, "/data/id").to_owned();
    stack
        .call(
            &a,
            "POST",
            &format!("/notifications/{notification_id}/read"),
            None,
            204,
        )
        .await;
    a1.next_event_where(
        "the read receipt (stream backlog drained)",
        BACKLOG_WAIT,
        |event| {
            event["type"] == "notification_read"
                && event["data"]["notification_ids"][0] == notification_id.as_str()
        },
    )
    .await;
    eprintln!(
        "set-up and stream backlog: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut sockets = sockets;
    sockets.push(a1);
    // The follows' feed tasks (one backfill each) go through the same queue.
    eventually("the fan-out queue drained", BACKLOG_WAIT, || async {
        stack.fanout_queue_depth().await == 0
    })
    .await;

    stack.push_worker_poller().pause();
    let post = stack.post(&a, "hello, all 300 of you").await;
    let post_id = text(&post, "/id").to_owned();
    eventually("the fan-out chunks wait in the queue", WAIT, || async {
        stack.fanout_queue_depth().await >= 2
    })
    .await;
    tokio::time::sleep(QUIET).await;
    for socket in &sockets {
        socket.assert_no_event("post_created", Duration::ZERO).await;
    }

    let resumed_at = Instant::now();
    stack.push_worker_poller().resume();
    for socket in &sockets {
        socket
            .next_event_where(
                "the post",
                WAIT,
                is_post_event("post_created", post_id.clone()),
            )
            .await;
    }
    eprintln!(
        "{} sockets received the post {:.1} ms after the SQS poller resumed",
        sockets.len(),
        resumed_at.elapsed().as_secs_f64() * 1000.0
    );
    tokio::time::sleep(QUIET).await;
    for socket in &sockets {
        socket.assert_no_event("post_created", Duration::ZERO).await;
    }
    eventually("the queue is drained", WAIT, || async {
        stack.fanout_queue_depth().await == 0
    })
    .await;
    stack.stop().await;
}

// ---- 11. duplicate stream batches ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_duplicated_stream_batch_repeats_only_the_event_id_which_the_js_client_drops() {
    // The router's repeat is under test: the writer push (whose marker makes the router skip
    // what it delivered) is off.
    let stack = RealtimeStack::start_with(|options| {
        options.duplicate_stream_batches = true;
        options
            .environment
            .push(("WRITER_PUSH_MAX_CONNECTIONS".into(), "0".into()));
    })
    .await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let watcher = stack.register("watcher").await;
    let post = stack.post(&a, "like me twice").await;
    let post_id = text(&post, "/id").to_owned();

    let a1 = stack.connect(&a).await;
    let room = stack.connect(&watcher).await;
    room.subscribe(&format!("post:{post_id}")).await;

    stack.like(&b, &post_id).await;
    // Every batch is delivered twice, so the notification is pushed twice.
    let first = a1.next_event_of_type("new_notification", WAIT).await;
    let second = a1.next_event_of_type("new_notification", WAIT).await;
    room.next_event_of_type("like_updated", WAIT).await;
    tokio::time::sleep(QUIET).await;

    let notifications = a1.events_of_type("new_notification");
    let ids: HashSet<&str> = notifications
        .iter()
        .map(|event| text(event, "/event_id"))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "a repeat carries the same id: {notifications:?}"
    );
    assert_eq!(first, second, "the repeat is the same event");
    let updates = room.events_of_type("like_updated");
    let ids: HashSet<&str> = updates.iter().map(|e| text(e, "/event_id")).collect();
    assert_eq!(ids.len(), 1, "{updates:?}");

    let stored = stack.notification_items(&a).await;
    assert_eq!(stored.len(), 1, "one notification item: {stored:?}");

    // The JavaScript client, fed exactly the frames A's socket received, emits it once.
    let delivered = replay_through_js_client(&a1.raw_frames()).await;
    let emitted: Vec<&Value> = delivered
        .iter()
        .filter(|event| event["type"] == "new_notification")
        .collect();
    assert_eq!(emitted.len(), 1, "the JS client dedupes: {delivered:?}");
    assert_eq!(emitted[0]["event_id"], first["event_id"]);
    stack.stop().await;
}

/// Runs `clients/js/ripple-client.js` in node over a socket double that delivers `frames`
/// in order; returns the events the client emitted (`{type, event_id}` each).
async fn replay_through_js_client(frames: &[String]) -> Vec<Value> {
    const SCRIPT: &str = r#"
const { RippleClient } = await import(process.env.RIPPLE_CLIENT_URL);
const frames = JSON.parse(process.env.RIPPLE_FRAMES);
class RecordedSocket {
  constructor(url, protocols) { this.readyState = 0; RecordedSocket.last = this; }
  send() {}
  close() { this.readyState = 3; }
}
const client = new RippleClient({ url: 'ws://recorded.invalid/prod', token: 'token', WebSocket: RecordedSocket });
const delivered = [];
client.on('event', (event) => delivered.push({ type: event.type, event_id: event.event_id }));
client.connect();
await new Promise((resolve) => setTimeout(resolve, 10));
const socket = RecordedSocket.last;
socket.readyState = 1;
socket.onopen({});
for (const data of frames) socket.onmessage({ data });
client.close();
console.log(JSON.stringify(delivered));
"#;
    let module = repository_root().join("clients/js/ripple-client.js");
    assert!(module.is_file(), "{} is missing", module.display());
    let output = tokio::time::timeout(
        WAIT,
        tokio::process::Command::new("node")
            .args(["--input-type=module", "-e", SCRIPT])
            .env("RIPPLE_CLIENT_URL", format!("file://{}", module.display()))
            .env(
                "RIPPLE_FRAMES",
                serde_json::to_string(frames).unwrap_or_default(),
            )
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("node finished within the wait")
    .expect("node is installed (the JavaScript client check runs it)");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "node printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
