//! `push-worker` against a real dynoxide table and moto: messages are put on the fan-out
//! queue by the real `SqsEventQueue`, received from moto and handed to the function as the
//! `SqsEvent` Lambda would build; a recording push client stands in for API Gateway.

#[path = "../../stream-router/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use shared::domain::UserId;
use shared::events::Event;
use shared::fanout::Audience;
use shared::fanout::{AudienceWork, EventQueue, FanoutChunk, PresenceCheck, QueueMessage};
use shared::function::LambdaFunction;
use shared::push::PushError;
use shared::store::keys;
use shared::store::PresenceRecord;
use support::{event_ids, failures, invoke, now, sqs_event, Harness, FAST_RETRY};

const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:ripple-push";

fn worker(harness: &Harness) -> Arc<dyn LambdaFunction> {
    push_worker::lambda_function(Arc::new(harness.state()))
}

/// Waits (bounded) until `count` messages are visible on the queue, and receives them.
async fn receive_delayed(harness: &Harness, count: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let mut messages = Vec::new();
    for _ in 0..100 {
        messages.extend(harness.receive_all().await);
        if messages.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    messages
}

/// A user's presence item as the stream router will see it: `(online, cause)`.
async fn presence_of(harness: &Harness, user: UserId) -> (bool, String) {
    let record: PresenceRecord = harness
        .store
        .table
        .get_as(&keys::presence(user))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no presence item"));
    (record.online, record.cause)
}

/// Receives what is on the queue and invokes the worker with it, as the event-source mapping does.
async fn deliver_queue(
    harness: &Harness,
    function: &Arc<dyn LambdaFunction>,
) -> (Vec<aws_sdk_sqs::types::Message>, Value) {
    let messages = harness.receive_all().await;
    let response = invoke(function, sqs_event(QUEUE_ARN, &messages)).await;
    (messages, response)
}

fn sample_event(author: UserId) -> Event {
    Event::post_created(&shared::domain::Post {
        id: shared::domain::new_id(),
        author_id: author,
        text: "fan-out".into(),
        media_url: None,
        created_at: now(),
        edited_at: None,
        like_count: 0,
        like_version: 0,
        comment_count: 0,
    })
}

#[tokio::test]
async fn a_fanout_chunk_reaches_every_connection_and_gone_connections_are_deleted() {
    let harness = Harness::start(&[]).await;
    let user = harness.user("alice").await;
    let mut connections = Vec::new();
    for n in 0..5 {
        connections.push(harness.connect(user, &format!("c{n}=")).await);
    }
    harness.push.mark_gone("c3=");
    let event = sample_event(user);
    harness
        .queue
        .enqueue_fanout(&event, &connections)
        .await
        .unwrap();

    let (messages, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert_eq!(messages.len(), 1);
    assert!(failures(&response).is_empty(), "{response}");
    for connection in connections.iter().filter(|c| *c != "c3=") {
        let events = harness.push.events_to(connection);
        assert_eq!(
            event_ids(&events),
            [event.event_id.to_string()],
            "{connection}"
        );
        assert_eq!(events[0]["type"], "post_created");
    }
    assert!(
        harness.store.get_connection("c3=").await.unwrap().is_none(),
        "the gone connection is deleted"
    );
    assert!(!harness
        .store
        .connections_of_user(user)
        .await
        .unwrap()
        .contains(&"c3=".to_owned()));
}

#[tokio::test]
async fn only_the_connections_still_failing_are_re_enqueued_after_a_short_delay() {
    let harness = Harness::start(&[]).await;
    let user = harness.user("alice").await;
    let healthy = harness.connect(user, "ok=").await;
    let throttled = harness.connect(user, "slow=").await;
    harness.push.fail(
        &throttled,
        PushError::Retryable("LimitExceededException".into()),
    );
    let function = worker(&harness);
    let first = sample_event(user);
    let second = sample_event(user);
    harness
        .queue
        .enqueue_fanout(&first, std::slice::from_ref(&healthy))
        .await
        .unwrap();
    harness
        .queue
        .enqueue_fanout(&second, &[throttled.clone(), healthy.clone()])
        .await
        .unwrap();

    let (messages, response) = deliver_queue(&harness, &function).await;

    assert_eq!(messages.len(), 2);
    assert!(
        failures(&response).is_empty(),
        "the message is settled by re-enqueuing, not redelivered: {response}"
    );
    assert_eq!(
        harness.push.attempts(&throttled),
        FAST_RETRY.attempts as usize,
        "retried before giving up"
    );
    assert_eq!(
        harness.delayed_messages().await,
        1,
        "the retry waits a moment"
    );
    let retried = receive_delayed(&harness, 1).await;
    assert_eq!(retried.len(), 1);
    match QueueMessage::parse(retried[0].body().unwrap_or_default()).unwrap() {
        QueueMessage::Fanout(chunk) => {
            assert_eq!(chunk.connection_ids, std::slice::from_ref(&throttled));
            assert_eq!(chunk.attempt, 1);
            assert_eq!(chunk.event.event_id, second.event_id);
        }
        other => panic!("unexpected {other:?}"),
    }

    // The throttling is over: the retry reaches the throttled connection only.
    harness.push.recover(&throttled);
    let response = invoke(&function, sqs_event(QUEUE_ARN, &retried)).await;
    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(
        event_ids(&harness.push.events_to(&throttled)),
        [second.event_id.to_string()]
    );
    let ids = event_ids(&harness.push.events_to(&healthy));
    assert_eq!(
        ids.len(),
        2,
        "the healthy connection got each event once: {ids:?}"
    );
    assert!(
        harness
            .store
            .get_connection(&throttled)
            .await
            .unwrap()
            .is_some(),
        "a throttled connection is kept"
    );
}

#[tokio::test]
async fn a_chunk_failing_past_its_re_enqueues_is_left_to_redelivery_and_the_dlq() {
    let harness = Harness::start(&[]).await;
    let user = harness.user("alice").await;
    let throttled = harness.connect(user, "slow=").await;
    harness
        .push
        .fail(&throttled, PushError::Retryable("throttled".into()));
    let chunk = FanoutChunk {
        event: sample_event(user),
        connection_ids: vec![throttled],
        attempt: push_worker::MAX_REENQUEUES,
    };
    harness
        .queue
        .enqueue_retry(&chunk, Duration::ZERO)
        .await
        .unwrap();

    let (messages, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert_eq!(
        failures(&response),
        [messages[0].message_id().unwrap_or_default()]
    );
    assert!(
        harness.receive_all().await.is_empty(),
        "nothing re-enqueued"
    );
}

#[tokio::test]
async fn an_audience_work_item_reaches_the_online_followers_only() {
    let harness = Harness::start(&[]).await;
    let author = harness.user("author").await;
    let mut online = Vec::new();
    // More followers than a direct lookup takes, so the online index is consulted.
    for n in 0..120 {
        let follower = harness.user(&format!("fan{n}")).await;
        harness.store.follow(follower, author, now()).await.unwrap();
        if n % 40 == 0 {
            online.push(harness.connect(follower, &format!("f{n}=")).await);
        }
    }
    let event = sample_event(author);
    harness
        .queue
        .enqueue_audience(&AudienceWork {
            event: event.clone(),
            audiences: vec![Audience::AuthorAndFollowers(author)],
        })
        .await
        .unwrap();

    let (_, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert!(failures(&response).is_empty(), "{response}");
    let mut reached: Vec<String> = harness
        .push
        .delivered()
        .into_iter()
        .map(|(connection, _)| connection)
        .collect();
    reached.sort();
    assert_eq!(reached, online);
    for connection in &online {
        assert_eq!(
            event_ids(&harness.push.events_to(connection)),
            [event.event_id.to_string()]
        );
    }
}

#[tokio::test]
async fn malformed_messages_are_dropped_without_holding_up_the_batch() {
    let harness = Harness::start(&[]).await;
    let user = harness.user("alice").await;
    let connection = harness.connect(user, "c=").await;
    let event = sample_event(user);
    for body in [
        "not json",
        r#"{"version":2,"kind":"fanout"}"#,
        r#"{"version":1,"kind":"teleport"}"#,
    ] {
        harness
            .sqs
            .send_message()
            .queue_url(&harness.queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    harness
        .queue
        .enqueue_fanout(&event, std::slice::from_ref(&connection))
        .await
        .unwrap();

    let (messages, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert_eq!(messages.len(), 4);
    assert!(
        failures(&response).is_empty(),
        "malformed bodies are not retried: {response}"
    );
    assert_eq!(
        event_ids(&harness.push.events_to(&connection)),
        [event.event_id.to_string()]
    );
}

fn check(user: UserId) -> PresenceCheck {
    PresenceCheck {
        user_id: user,
        connection_id: "a1=".into(),
        disconnected_at: now(),
    }
}

#[tokio::test]
async fn a_user_still_away_after_the_grace_period_is_recorded_offline_once() {
    let harness = Harness::start(&[]).await;
    let (a, watchers) = harness.alice_gone_with_mutuals(1).await;
    let b1 = &watchers[0];
    let function = worker(&harness);
    // The router schedules it with the grace period as delay; here it is due at once.
    harness
        .queue
        .schedule_presence_check(&check(a), Duration::ZERO)
        .await
        .unwrap();

    let (messages, response) = deliver_queue(&harness, &function).await;
    assert_eq!(messages.len(), 1);
    assert!(failures(&response).is_empty(), "{response}");
    // The write is the announcement; the stream router pushes it (its own tests), so the
    // worker neither pushes nor queues anything.
    assert_eq!(
        presence_of(&harness, a).await,
        (false, "disconnect:a1=".into())
    );
    assert!(
        harness.push.delivered().is_empty(),
        "{:?}",
        harness.push.events_to(b1)
    );
    assert!(harness.receive_all().await.is_empty());

    // A redelivered check rewrites the same state; a later check of another disconnect
    // finds her already offline and leaves the record as it was.
    let response = invoke(&function, sqs_event(QUEUE_ARN, &messages)).await;
    assert!(failures(&response).is_empty(), "{response}");
    let mut other = check(a);
    other.connection_id = "a0=".into();
    harness
        .queue
        .schedule_presence_check(&other, Duration::ZERO)
        .await
        .unwrap();
    deliver_queue(&harness, &function).await;
    assert_eq!(
        presence_of(&harness, a).await,
        (false, "disconnect:a1=".into())
    );
    assert!(harness.push.delivered().is_empty());
}

#[tokio::test]
async fn a_reconnect_within_the_grace_period_announces_nothing() {
    let harness = Harness::start(&[]).await;
    let (a, watchers) = harness.alice_gone_with_mutuals(1).await;
    let b1 = &watchers[0];
    harness.connect(a, "a2=").await;
    // The reconnect's own announcement finds her still online: nothing to tell.
    assert!(!harness
        .store
        .announce_online(a, "connect:a2=", now())
        .await
        .unwrap());
    harness
        .queue
        .schedule_presence_check(&check(a), Duration::ZERO)
        .await
        .unwrap();

    let (_, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(presence_of(&harness, a).await, (true, "connect:a1=".into()));
    assert!(
        harness.push.events_to(b1).is_empty(),
        "{:?}",
        harness.push.events_to(b1)
    );
}

#[tokio::test]
async fn a_connection_whose_disconnect_was_lost_is_pruned_at_the_check_and_the_user_goes_offline() {
    let harness = Harness::start(&[]).await;
    let (a, _) = harness.alice_gone_with_mutuals(1).await;
    // Her laptop's socket died too, but its `$disconnect` never came: its id is still in
    // her set, and API Gateway answers 410 for it.
    harness.connect(a, "a-laptop=").await;
    harness.push.mark_gone("a-laptop=");
    harness
        .queue
        .schedule_presence_check(&check(a), Duration::ZERO)
        .await
        .unwrap();

    let (_, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert!(failures(&response).is_empty(), "{response}");
    assert!(harness
        .store
        .connections_of_user(a)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        presence_of(&harness, a).await,
        (false, "disconnect:a1=".into()),
        "offline at the first check, not at the laptop's TTL"
    );
}

#[tokio::test]
async fn a_live_connection_survives_the_check_and_keeps_the_user_online() {
    let harness = Harness::start(&[]).await;
    let (a, _) = harness.alice_gone_with_mutuals(1).await;
    harness.connect(a, "a-phone=").await;
    harness
        .queue
        .schedule_presence_check(&check(a), Duration::ZERO)
        .await
        .unwrap();

    let (_, response) = deliver_queue(&harness, &worker(&harness)).await;

    assert!(failures(&response).is_empty(), "{response}");
    assert_eq!(
        harness.store.connections_of_user(a).await.unwrap(),
        ["a-phone="]
    );
    assert_eq!(presence_of(&harness, a).await, (true, "connect:a1=".into()));
}
