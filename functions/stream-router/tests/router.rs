//! `stream-router` against a real dynoxide table and its real stream, with moto as the
//! fan-out queue: items are written through the real stores, the stream records they
//! produce are handed to the function exactly as Lambda would, and a recording push client
//! shows who received what.

mod support;

use std::sync::Arc;

use lambda_local::StreamReader;
use serde_json::{json, Value};
use shared::domain::{CommentText, Follow, PostId, PostText, Subscription, UserId};
use shared::fanout::Audience;
use shared::fanout::QueueMessage;
use shared::function::LambdaFunction;
use shared::store::dynamo::{to_item, with_gsi1, with_gsi3};
use shared::store::keys;
use shared::store::NewMessage;
use shared::store::ProfileUpdate;
use shared::store::{NewComment, NewPost, PostEdit};
use support::{event_ids, failures, invoke, now, Harness, FAST_RETRY};

fn router(harness: &Harness) -> Arc<dyn LambdaFunction> {
    stream_router::lambda_function(Arc::new(harness.state()))
}

async fn post(harness: &Harness, author: UserId, text: &str) -> shared::domain::Post {
    harness
        .store
        .create_post(NewPost {
            author,
            text: PostText::parse(text).unwrap(),
            media_url: None,
            created_at: now(),
        })
        .await
        .unwrap()
}

/// A follow item written behind the store's back, as a follow racing a block could leave it.
async fn stray_follow(harness: &Harness, follower: UserId, followee: UserId) {
    #[derive(serde::Serialize)]
    struct FollowItem {
        #[serde(flatten)]
        follow: Follow,
        entity: &'static str,
    }
    let item = with_gsi1(
        to_item(
            &keys::follow(follower, followee),
            &FollowItem {
                follow: Follow {
                    follower_id: follower,
                    followee_id: followee,
                    created_at: now(),
                },
                entity: "follow",
            },
        )
        .unwrap(),
        &keys::follower_entry(follower, followee),
    );
    let item = with_gsi3(item, &keys::follower_fanout_entry(follower, followee));
    harness.store.table.put(item).await.unwrap();
}

#[tokio::test]
async fn a_post_reaches_the_author_and_online_followers_but_no_stranger_or_blocked_user() {
    let harness = Harness::start(&[]).await;
    let (a, b, c, d) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
        harness.user("dave").await,
    );
    let now = now();
    harness.store.follow(b, a, now).await.unwrap();
    harness.store.block(a, d, now).await.unwrap();
    stray_follow(&harness, d, a).await;
    let a1 = harness.connect(a, "a1=").await;
    let b1 = harness.connect(b, "b1=").await;
    let b2 = harness.connect(b, "b2=").await;
    let c1 = harness.connect(c, "c1=").await;
    let d1 = harness.connect(d, "d1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await; // set-up records are not what this test is about

    let post = post(&harness, a, "hello followers").await;
    let response = invoke(&function, stream.next_event().await).await;

    assert!(failures(&response).is_empty(), "{response}");
    let mut ids = Vec::new();
    for connection in [&a1, &b1, &b2] {
        let events = harness.push.events_of_type(connection, "post_created");
        assert_eq!(events.len(), 1, "{connection}: {events:?}");
        assert_eq!(events[0]["data"]["id"], post.id.to_string());
        assert_eq!(events[0]["data"]["text"], "hello followers");
        ids.extend(event_ids(&events));
    }
    assert!(
        ids.windows(2).all(|pair| pair[0] == pair[1]),
        "one event id everywhere: {ids:?}"
    );
    assert!(
        harness.push.events_to(&c1).is_empty(),
        "a stranger got {:?}",
        harness.push.events_to(&c1)
    );
    assert!(
        harness.push.events_to(&d1).is_empty(),
        "a blocked user got {:?}",
        harness.push.events_to(&d1)
    );
}

#[tokio::test]
async fn a_retried_batch_pushes_the_same_event_ids_again() {
    let harness = Harness::start(&[]).await;
    let (a, b) = (harness.user("alice").await, harness.user("bob").await);
    harness.store.follow(b, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    post(&harness, a, "once").await;
    let batch = stream.next_event().await;
    invoke(&function, batch.clone()).await;
    invoke(&function, batch).await;

    let events = harness.push.events_of_type(&b1, "post_created");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_id"], events[1]["event_id"]);
    assert_eq!(
        events[0], events[1],
        "a redelivered record is the very same event"
    );
}

#[tokio::test]
async fn likes_and_comments_go_to_the_post_room_and_notifications_to_the_author() {
    let harness = Harness::start(&[]).await;
    let (a, b, c) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
    );
    let a1 = harness.connect(a, "a1=").await;
    let c1 = harness.connect(c, "c1=").await;
    let post = post(&harness, a, "like me").await;
    let room = format!("post:{}", post.id);
    harness
        .store
        .subscribe(
            &Subscription {
                channel: room.clone(),
                connection_id: c1.clone(),
                user_id: c,
            },
            now().timestamp() + 8100,
        )
        .await
        .unwrap();
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    harness.store.like(&post, b, now()).await.unwrap();
    let comment = harness
        .store
        .add_comment(
            &post,
            NewComment {
                author: b,
                text: CommentText::parse("nice").unwrap(),
                created_at: now(),
            },
        )
        .await
        .unwrap();
    // The author liking their own post: a count change, no notification.
    let liked = harness.store.get_post(post.id).await.unwrap().unwrap();
    harness.store.like(&liked, a, now()).await.unwrap();
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");

    // Two likes in one batch: the room is told the latest count once.
    let likes = harness.push.events_of_type(&c1, "like_updated");
    assert_eq!(
        likes.iter().map(|e| e["data"].clone()).collect::<Vec<_>>(),
        [json!({"post_id": post.id, "like_count": 2, "version": 2})]
    );
    let comments = harness.push.events_of_type(&c1, "new_comment");
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["data"]["id"], comment.id.to_string());
    // The author is not subscribed to the room: only their notifications reach them.
    let notifications = harness.push.events_of_type(&a1, "new_notification");
    let mut kinds: Vec<&str> = notifications
        .iter()
        .filter_map(|n| n["data"]["type"].as_str())
        .collect();
    // Two notification items: processed concurrently, so in either order.
    kinds.sort_unstable();
    assert_eq!(kinds, ["comment", "like"], "{notifications:?}");
    assert!(notifications.iter().all(|n| n["cursor"].is_string()));
    assert!(harness.push.events_of_type(&a1, "like_updated").is_empty());
}

#[tokio::test]
async fn a_direct_message_reaches_both_sides_and_a_request_is_a_request() {
    let harness = Harness::start(&[]).await;
    let (a, b, p) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("priv").await,
    );
    harness.store.follow(a, b, now()).await.unwrap();
    harness.store.follow(b, a, now()).await.unwrap();
    harness
        .store
        .update_profile(
            p,
            &ProfileUpdate {
                is_private: Some(true),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    let a1 = harness.connect(a, "a1=").await;
    let a2 = harness.connect(a, "a2=").await;
    let b1 = harness.connect(b, "b1=").await;
    let p1 = harness.connect(p, "p1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    let sent = harness
        .store
        .send_message(NewMessage::new(a, b, "hi bob", None, now()).unwrap())
        .await
        .unwrap()
        .message;
    let request = harness
        .store
        .send_message(NewMessage::new(a, p, "hi stranger", None, now()).unwrap())
        .await
        .unwrap()
        .message;
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");

    for connection in [&b1, &a1, &a2] {
        let messages = harness.push.events_of_type(connection, "new_message");
        assert!(
            messages
                .iter()
                .any(|m| m["data"]["id"] == sent.id.to_string()
                    && m["cursor"] == sent.id.to_string()),
            "{connection}: {messages:?}"
        );
    }
    let requests = harness.push.events_of_type(&p1, "message_request");
    assert_eq!(requests.len(), 1, "{:?}", harness.push.events_to(&p1));
    assert_eq!(requests[0]["data"]["id"], request.id.to_string());
    assert!(harness.push.events_of_type(&p1, "new_message").is_empty());
    // The sender sees their own request message as a message.
    assert!(harness
        .push
        .events_of_type(&a1, "new_message")
        .iter()
        .any(|m| m["data"]["id"] == request.id.to_string()));
}

#[tokio::test]
async fn an_audience_above_the_threshold_is_queued_in_chunks_for_the_push_worker() {
    let harness = Harness::start(&[("FANOUT_DIRECT_MAX_CONNECTIONS", "2")]).await;
    let author = harness.user("alice").await;
    harness.connect(author, "author=").await;
    let mut expected = vec!["author=".to_owned()];
    for n in 0..4 {
        let follower = harness.user(&format!("fan{n}")).await;
        harness.store.follow(follower, author, now()).await.unwrap();
        expected.push(harness.connect(follower, &format!("fan{n}=")).await);
    }
    expected.sort();
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    let post = post(&harness, author, "to the many").await;
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");

    assert!(
        harness.push.delivered().is_empty(),
        "nothing is pushed directly: {:?}",
        harness.push.delivered()
    );
    let mut queued = Vec::new();
    for message in harness.receive_push_messages().await {
        match QueueMessage::parse(message.body().unwrap_or_default()).unwrap() {
            QueueMessage::Fanout(chunk) => {
                assert_eq!(chunk.event.kind(), "post_created");
                assert_eq!(
                    chunk.event.event_id,
                    shared::events::Event::post_created(&post).event_id
                );
                queued.extend(chunk.connection_ids);
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    queued.sort();
    assert_eq!(queued, expected);
}

#[tokio::test]
async fn a_poisoned_record_is_reported_alone_and_the_others_are_still_delivered() {
    let harness = Harness::start(&[]).await;
    let (a, b) = (harness.user("alice").await, harness.user("bob").await);
    harness.store.follow(b, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    post(&harness, a, "first").await;
    post(&harness, a, "second").await;
    let mut event = stream.next_event().await;
    let records = event["Records"].as_array_mut().unwrap();
    let mut poison = records
        .iter()
        .find(|r| r["dynamodb"]["NewImage"]["entity"]["S"] == "post")
        .cloned()
        .unwrap();
    poison["dynamodb"]["NewImage"]["id"] = json!({"S": "not-a-uuid"});
    poison["dynamodb"]["SequenceNumber"] = json!("poisoned-0001");
    records.insert(1, poison);

    let response = invoke(&function, event).await;

    assert_eq!(failures(&response), ["poisoned-0001"]);
    let mut texts: Vec<String> = harness
        .push
        .events_of_type(&b1, "post_created")
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    // Different items are processed concurrently: no order between them.
    texts.sort();
    assert_eq!(texts, ["first", "second"]);
}

#[tokio::test]
async fn a_failed_record_holds_back_the_later_records_of_its_item_only() {
    let harness = Harness::start(&[]).await;
    let (a, b) = (harness.user("alice").await, harness.user("bob").await);
    harness.store.follow(b, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    let edited = post(&harness, a, "before").await;
    harness
        .store
        .edit_post(PostEdit {
            post: edited.id,
            editor: a,
            text: PostText::parse("after").unwrap(),
            now: now(),
        })
        .await
        .unwrap();
    post(&harness, a, "other").await;
    let mut event = stream.next_event().await;
    let records = event["Records"].as_array_mut().unwrap();
    let post_records: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| r["dynamodb"]["NewImage"]["entity"]["S"] == "post")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(post_records.len(), 3, "insert, edit, other insert");
    // The insert of the edited post cannot be read: its edit must not overtake it.
    records[post_records[0]]["dynamodb"]["NewImage"]["author_id"] = json!({"S": "garbage"});
    let sequence = |i: usize| {
        records[i]["dynamodb"]["SequenceNumber"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (insert, edit) = (sequence(post_records[0]), sequence(post_records[1]));

    let response = invoke(&function, event).await;

    assert_eq!(failures(&response), [insert, edit], "the edit is held back");
    assert!(harness.push.events_of_type(&b1, "post_updated").is_empty());
    let texts: Vec<String> = harness
        .push
        .events_of_type(&b1, "post_created")
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts, ["other"], "another item is not held back");
}

#[tokio::test]
async fn an_author_with_many_followers_is_deferred_to_a_push_worker() {
    let harness = Harness::start(&[("FANOUT_INLINE_MAX_FOLLOWERS", "3")]).await;
    let author = harness.user("star").await;
    for n in 0..4 {
        let follower = harness.user(&format!("fan{n}")).await;
        harness.store.follow(follower, author, now()).await.unwrap();
        harness.connect(follower, &format!("fan{n}=")).await;
    }
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    let post = post(&harness, author, "to the crowd").await;
    let response = invoke(&function, stream.next_event().await).await;

    assert!(failures(&response).is_empty(), "{response}");
    assert!(harness.push.delivered().is_empty(), "resolved elsewhere");
    let (messages, feed_tasks) = harness.receive_split().await;
    assert_eq!(
        feed_tasks,
        [shared::feed::FeedTask::Distribute {
            post_id: post.id,
            author_id: author,
            created_at: post.created_at,
        }],
        "the post's feed task is queued for the worker, not carried out here"
    );
    assert_eq!(messages.len(), 1);
    match QueueMessage::parse(messages[0].body().unwrap_or_default()).unwrap() {
        QueueMessage::Audience(work) => {
            assert_eq!(
                work.event.event_id,
                shared::events::Event::post_created(&post).event_id
            );
            assert_eq!(work.audiences, [Audience::AuthorAndFollowers(author)]);
        }
        other => panic!("unexpected message {other:?}"),
    }
}

#[tokio::test]
async fn undeliverable_connections_hold_the_record_back_then_go_round_alone_and_gone_ones_removed()
{
    let harness = Harness::start(&[]).await;
    let (a, b) = (harness.user("alice").await, harness.user("bob").await);
    harness.store.follow(b, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let b2 = harness.connect(b, "b2=").await;
    harness.push.mark_gone(&b2);
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    post(&harness, a, "gone").await;
    let event = stream.next_event().await;
    let response = invoke(&function, event.clone()).await;
    assert!(
        failures(&response).is_empty(),
        "gone counts as delivered: {response}"
    );
    assert_eq!(harness.push.events_of_type(&b1, "post_created").len(), 1);
    assert!(harness.store.get_connection(&b2).await.unwrap().is_none());
    assert_eq!(
        harness.store.connections_of_user(b).await.unwrap(),
        std::slice::from_ref(&b1)
    );

    // Throttled on every attempt, and no later record of the post waits in the batch:
    // only that connection goes round again, through the queue after a short delay; the
    // record is settled (reporting it would cost the batch a retry attempt and push to
    // everyone else a second time).
    let b3 = harness.connect(b, "b3=").await;
    harness
        .push
        .fail(&b1, shared::push::PushError::Retryable("throttled".into()));
    let response = invoke(&function, event.clone()).await;
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(harness.push.attempts(&b1), 1 + FAST_RETRY.attempts as usize);
    assert_eq!(harness.push.events_of_type(&b3, "post_created").len(), 1);
    assert_eq!(harness.delayed_messages().await, 1);
    let mut retried = Vec::new();
    for _ in 0..50 {
        retried.extend(harness.receive_push_messages().await);
        if !retried.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    match QueueMessage::parse(retried[0].body().unwrap_or_default()).unwrap() {
        QueueMessage::Fanout(chunk) => {
            assert_eq!(chunk.connection_ids, std::slice::from_ref(&b1));
            assert_eq!(chunk.attempt, 1);
        }
        other => panic!("unexpected message {other:?}"),
    }
}

#[tokio::test]
async fn a_failed_post_created_holds_back_its_edit_and_like_so_every_socket_ends_on_the_latest_state(
) {
    let harness = Harness::start(&[]).await;
    let (a, b, c) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
    );
    harness.store.follow(b, a, now()).await.unwrap();
    harness.store.follow(c, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let c1 = harness.connect(c, "c1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    // Bob's socket fails while the post is created; then the author edits it and Carol
    // likes it — three records of one item in one batch.
    let post = post(&harness, a, "first draft").await;
    let room = format!("post:{}", post.id);
    for (user, connection) in [(b, &b1), (c, &c1)] {
        harness
            .store
            .subscribe(
                &Subscription {
                    channel: room.clone(),
                    connection_id: connection.clone(),
                    user_id: user,
                },
                now().timestamp() + 8100,
            )
            .await
            .unwrap();
    }
    harness
        .store
        .edit_post(PostEdit {
            post: post.id,
            editor: a,
            text: PostText::parse("final text").unwrap(),
            now: now(),
        })
        .await
        .unwrap();
    let edited = harness.store.get_post(post.id).await.unwrap().unwrap();
    harness.store.like(&edited, c, now()).await.unwrap();
    harness
        .push
        .fail(&b1, shared::push::PushError::Retryable("5xx".into()));
    let batch = stream.next_event().await;

    let response = invoke(&function, batch.clone()).await;
    assert!(!failures(&response).is_empty(), "{response}");
    assert!(
        harness.push.events_to(&b1).is_empty(),
        "nothing of the item overtakes the failed post_created"
    );
    assert_eq!(harness.delayed_messages().await, 0, "no out-of-band retry");

    // Lambda redelivers from the failed record: Carol's socket, which got post_created, is
    // skipped (the marker); Bob's socket is back.
    harness.push.recover(&b1);
    let response = invoke(&function, batch).await;
    assert!(failures(&response).is_empty(), "{response}");
    for connection in [&b1, &c1] {
        let events = harness.push.events_to(connection);
        let post_events: Vec<&str> = events
            .iter()
            .filter(|e| e["type"] != "new_notification")
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(
            post_events,
            ["post_created", "post_updated", "like_updated"],
            "{connection}: in the item's order, each once"
        );
        let screen = screen_after(&events);
        assert_eq!(screen.0, "final text", "{connection}");
        assert_eq!(screen.1, 1, "{connection}");
    }
}

/// A client's view of one post after applying `events` in arrival order, naively (the last
/// text and count received win): what a screen shows when order is not kept.
fn screen_after(events: &[Value]) -> (String, i64) {
    let mut text = String::new();
    let mut likes = 0;
    for event in events {
        match event["type"].as_str() {
            Some("post_created" | "post_updated") => {
                text = event["data"]["text"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
            }
            Some("like_updated") => likes = event["data"]["like_count"].as_i64().unwrap_or(0),
            _ => {}
        }
    }
    (text, likes)
}

#[tokio::test]
async fn presence_is_announced_once_to_mutuals_and_a_disconnect_schedules_a_delayed_check() {
    let harness = Harness::start(&[]).await;
    let (a, b, c) = (
        harness.user("alice").await,
        harness.user("bob").await,
        harness.user("carol").await,
    );
    harness.store.follow(a, b, now()).await.unwrap();
    harness.store.follow(b, a, now()).await.unwrap();
    // Carol follows alice, but alice does not follow back: not a mutual.
    harness.store.follow(c, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let c1 = harness.connect(c, "c1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    // The connection's record writes the presence item; that item's record announces.
    harness.connect(a, "a1=").await;
    invoke(&function, stream.next_event().await).await;
    assert!(harness.push.events_of_type(&b1, "user_online").is_empty());
    invoke(&function, stream.next_event().await).await;
    let online = harness.push.events_of_type(&b1, "user_online");
    assert_eq!(online.len(), 1, "{:?}", harness.push.events_to(&b1));
    assert_eq!(online[0]["data"]["user_id"], a.to_string());
    assert!(harness.push.events_to(&c1).is_empty());

    // A second device: already online, nothing to tell.
    harness.connect(a, "a2=").await;
    invoke(&function, stream.next_event().await).await;
    assert_eq!(harness.push.events_of_type(&b1, "user_online").len(), 1);

    // Closing a connection announces nothing yet: a check waits out the grace period.
    harness.store.remove_connection("a1=").await.unwrap();
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");
    assert!(harness.push.events_of_type(&b1, "user_offline").is_empty());
    assert_eq!(harness.delayed_messages().await, 1);
    assert!(
        harness.receive_push_messages().await.is_empty(),
        "the check is not visible before its delay"
    );
}

/// Alice gone with `watchers` mutuals online; the push worker's check then records her
/// offline, and the router handles the stream record of that write. Returns alice, the
/// watchers' connections, the router and the stream (read past that record).
async fn alice_recorded_offline(
    harness: &Harness,
    watchers: usize,
) -> (UserId, Vec<String>, Arc<dyn LambdaFunction>, StreamReader) {
    let (a, connections) = harness.alice_gone_with_mutuals(watchers).await;
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;
    let function = router(harness);

    // What the push worker does once the grace period is over.
    assert!(harness
        .store
        .announce_offline(a, "disconnect:a1=", now())
        .await
        .unwrap());
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");
    (a, connections, function, stream)
}

#[tokio::test]
async fn the_workers_offline_announcement_is_pushed_to_mutuals_from_the_stream() {
    let harness = Harness::start(&[]).await;
    let (a, watchers, function, mut stream) = alice_recorded_offline(&harness, 1).await;

    let offline = harness.push.events_of_type(&watchers[0], "user_offline");
    assert_eq!(offline.len(), 1, "{:?}", harness.push.delivered());
    assert_eq!(offline[0]["data"]["user_id"], a.to_string());
    assert_eq!(
        offline[0]["event_id"],
        shared::events::Event::user_offline(a, "disconnect:a1=", now())
            .event_id
            .to_string()
    );

    // Coming back is pushed by the router where it writes it, never a second time from
    // the presence record that write produces.
    harness.connect(a, "a2=").await;
    invoke(&function, stream.next_event().await).await;
    let presence_back_online = stream.next_event().await;
    assert!(
        presence_back_online["Records"]
            .as_array()
            .is_some_and(|records| records
                .iter()
                .any(|r| r["dynamodb"]["NewImage"]["entity"]["S"] == "presence")),
        "the router's own write is on the stream: {presence_back_online}"
    );
    invoke(&function, presence_back_online).await;
    assert_eq!(
        harness
            .push
            .events_of_type(&watchers[0], "user_online")
            .len(),
        1
    );
    assert_eq!(
        harness
            .push
            .events_of_type(&watchers[0], "user_offline")
            .len(),
        1
    );
}

#[tokio::test]
async fn an_offline_announcement_to_many_watchers_goes_through_the_queue() {
    let harness = Harness::start(&[("FANOUT_DIRECT_MAX_CONNECTIONS", "2")]).await;
    let (a, mut watchers, _, _) = alice_recorded_offline(&harness, 3).await;

    assert!(harness.push.delivered().is_empty());
    let mut queued = Vec::new();
    for message in harness.receive_push_messages().await {
        match QueueMessage::parse(message.body().unwrap_or_default()).unwrap() {
            QueueMessage::Fanout(chunk) => {
                let expected = shared::events::Event::user_offline(a, "disconnect:a1=", now());
                assert_eq!(chunk.event.event_id, expected.event_id);
                assert_eq!(chunk.event.body, expected.body);
                queued.extend(chunk.connection_ids);
            }
            other => panic!("unexpected message {other:?}"),
        }
    }
    queued.sort();
    watchers.sort();
    assert_eq!(queued, watchers);
}

#[tokio::test]
async fn presence_is_not_announced_for_a_user_who_hides_it() {
    let harness = Harness::start(&[]).await;
    let (a, b) = (harness.user("alice").await, harness.user("bob").await);
    harness.store.follow(a, b, now()).await.unwrap();
    harness.store.follow(b, a, now()).await.unwrap();
    harness
        .store
        .update_profile(
            a,
            &ProfileUpdate {
                show_presence: Some(false),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    harness.connect(a, "a1=").await;
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");
    assert!(
        harness.push.events_to(&b1).is_empty(),
        "{:?}",
        harness.push.events_to(&b1)
    );
    // The state is still tracked, so turning presence on later starts from the truth.
    assert!(!harness
        .store
        .announce_online(a, "connect:other=", now())
        .await
        .unwrap());
}

#[tokio::test]
async fn a_connection_deleted_by_ttl_is_released_like_a_disconnect() {
    let harness = Harness::start(&[]).await;
    let a = harness.user("alice").await;
    let a1 = harness.connect(a, "a1=").await;
    let channel = format!("post:{}", PostId::new());
    harness
        .store
        .subscribe(
            &Subscription {
                channel: channel.clone(),
                connection_id: a1.clone(),
                user_id: a,
            },
            now().timestamp() + 8100,
        )
        .await
        .unwrap();
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    // What DynamoDB's TTL does: delete the item alone, leaving the user's set and the room.
    harness
        .store
        .table
        .delete(&keys::connection(&a1))
        .await
        .unwrap();
    let mut event = stream.next_event().await;
    for record in event["Records"].as_array_mut().unwrap() {
        record["userIdentity"] =
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
    }
    let response = invoke(&function, event).await;

    assert!(failures(&response).is_empty(), "{response}");
    assert!(harness
        .store
        .connections_of_user(a)
        .await
        .unwrap()
        .is_empty());
    assert!(harness
        .store
        .room_members(&channel)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        harness.delayed_messages().await,
        1,
        "a presence check was scheduled"
    );
}

#[tokio::test]
async fn marking_many_notifications_read_is_one_event_per_batch_not_one_per_notification() {
    let harness = Harness::start(&[]).await;
    let a = harness.user("alice").await;
    let a1 = harness.connect(a, "a1=").await;
    for i in 0..30 {
        let fan = harness.user(&format!("fan{i}")).await;
        harness.store.follow(fan, a, now()).await.unwrap();
    }
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    let marked = harness.store.mark_all_read(a).await.unwrap();
    assert_eq!(marked, 30);
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");

    let reads = harness.push.events_of_type(&a1, "notification_read");
    assert_eq!(reads.len(), 1, "one event for the batch: {reads:?}");
    let ids = reads[0]["data"]["notification_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 30);
    let unread = harness
        .store
        .notifications(a, false, &shared::store::page::PageRequest::first(100))
        .await
        .unwrap();
    let mut expected: Vec<String> = unread.items.iter().map(|n| n.id.to_string()).collect();
    let mut told: Vec<String> = ids
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    expected.sort();
    told.sort();
    assert_eq!(told, expected);
}

#[tokio::test]
async fn deleting_a_post_sends_post_deleted_only_and_a_users_comment_deletion_is_told() {
    let harness = Harness::start(&[]).await;
    let (a, b) = (harness.user("alice").await, harness.user("bob").await);
    harness.store.follow(b, a, now()).await.unwrap();
    let b1 = harness.connect(b, "b1=").await;
    let post = post(&harness, a, "soon gone").await;
    harness
        .store
        .subscribe(
            &Subscription {
                channel: format!("post:{}", post.id),
                connection_id: b1.clone(),
                user_id: b,
            },
            now().timestamp() + 8100,
        )
        .await
        .unwrap();
    let mut comments = Vec::new();
    for i in 0..5 {
        let comment = harness
            .store
            .add_comment(
                &post,
                NewComment {
                    author: b,
                    text: CommentText::parse(&format!("c{i}")).unwrap(),
                    created_at: now(),
                },
            )
            .await
            .unwrap();
        comments.push(comment);
    }
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    // Bob deletes one of his comments: told once, from the post item.
    let current = harness.store.get_post(post.id).await.unwrap().unwrap();
    harness
        .store
        .delete_comment(&current, comments[0].id, b)
        .await
        .unwrap();
    invoke(&function, stream.next_event().await).await;
    let deleted = harness.push.events_of_type(&b1, "comment_deleted");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["data"]["comment_id"], comments[0].id.to_string());

    // Alice deletes the post: its four remaining comments go with it, silently.
    harness.store.delete_post(post.id, a).await.unwrap();
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(harness.push.events_of_type(&b1, "post_deleted").len(), 1);
    assert_eq!(
        harness.push.events_of_type(&b1, "comment_deleted").len(),
        1,
        "no comment_deleted per comment of a deleted post"
    );
}

/// Subscribes `connection` of `user` to the post's room behind the checks, as a member who
/// subscribed while the post was still visible to them.
async fn join_room(harness: &Harness, post: &shared::domain::Post, user: UserId, connection: &str) {
    harness
        .store
        .subscribe(
            &Subscription {
                channel: format!("post:{}", post.id),
                connection_id: connection.to_owned(),
                user_id: user,
            },
            now().timestamp() + 8100,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn room_members_are_checked_when_an_event_is_sent_not_only_when_they_joined() {
    let harness = Harness::start(&[]).await;
    let [alice, bob, carol, dave, erin, frank] =
        ["alice", "bob", "carol", "dave", "erin", "frank"].map(|name| harness.user(name));
    let (alice, bob, carol, dave, erin, frank) = (
        alice.await,
        bob.await,
        carol.await,
        dave.await,
        erin.await,
        frank.await,
    );
    harness.store.follow(dave, alice, now()).await.unwrap();
    let post = post(&harness, alice, "room").await;
    let mut sockets = Vec::new();
    for (user, name) in [(bob, "b1="), (carol, "c1="), (dave, "d1="), (erin, "e1=")] {
        let socket = harness.connect(user, name).await;
        join_room(&harness, &post, user, &socket).await;
        sockets.push(socket);
    }
    let [b1, c1, d1, e1] = [0, 1, 2, 3].map(|i| sockets[i].clone());
    let function = router(&harness);
    let mut stream = harness.db.stream_reader().await;
    stream.read().await;

    // After they joined: alice blocks bob; erin blocks frank, who then comments.
    harness.store.block(alice, bob, now()).await.unwrap();
    harness.store.block(erin, frank, now()).await.unwrap();
    harness
        .store
        .add_comment(
            &post,
            NewComment {
                author: frank,
                text: CommentText::parse("hi").unwrap(),
                created_at: now(),
            },
        )
        .await
        .unwrap();
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");
    let told = |socket: &str, kind: &str| harness.push.events_of_type(socket, kind).len();
    assert_eq!(told(&c1, "new_comment"), 1);
    assert_eq!(told(&d1, "new_comment"), 1);
    assert_eq!(told(&b1, "new_comment"), 0, "blocked by the author");
    assert_eq!(told(&e1, "new_comment"), 0, "in a block with the commenter");

    // Alice goes private, then likes her post: only her follower in the room is told.
    harness
        .store
        .update_profile(
            alice,
            &ProfileUpdate {
                is_private: Some(true),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    let current = harness.store.get_post(post.id).await.unwrap().unwrap();
    harness.store.like(&current, alice, now()).await.unwrap();
    let response = invoke(&function, stream.next_event().await).await;
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(told(&d1, "like_updated"), 1, "a follower");
    for (socket, who) in [(&b1, "blocked"), (&c1, "no follower"), (&e1, "no follower")] {
        assert_eq!(told(socket, "like_updated"), 0, "{who}");
    }
}
