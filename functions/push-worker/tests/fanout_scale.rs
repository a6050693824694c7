//! The fan-out bound at scale (issue 10, acceptance 1): a post by an author with F followers,
//! O of them online, costs at most F/1000 + O/100 + 10 DynamoDB requests across the stream
//! router and the push worker, reads nothing per offline follower, and reaches every online
//! follower. Requests are counted by the SDK interceptor (`shared::metering`), not guessed.
//!
//! `make test` runs it at F = 20,000 (debug). The same test at F = 100,000, optimised, with
//! the router's time for the record printed: `RIPPLE_FANOUT_FOLLOWERS=100000 cargo test
//! --profile bench-stack -p push-worker --test fanout_scale -- --nocapture` (the profile is
//! release without whole-program LTO). `tests/tests/fanout.rs` has the same shape end to end:
//! real sockets through the local gateway, 50 of them online.

#[path = "../../stream-router/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use shared::domain::PostText;
use shared::fanout::QueueMessage;
use shared::metering::RequestMeter;
use shared::store::NewPost;
use support::{failures, invoke, now, sqs_event, Harness};

const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:ripple-push";

/// Followers in `make test`; `RIPPLE_FANOUT_FOLLOWERS` raises it for the release run.
const DEFAULT_FOLLOWERS: usize = 20_000;
const ONLINE: usize = 50;

fn followers() -> usize {
    std::env::var("RIPPLE_FANOUT_FOLLOWERS")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(DEFAULT_FOLLOWERS)
}

#[tokio::test]
async fn a_post_to_many_followers_costs_what_its_online_followers_cost() {
    let followers = followers();
    let harness = Harness::start(&[]).await;
    let author = harness.user("star").await;
    let seeding = Instant::now();
    harness.db.seed_followers(author, followers - ONLINE).await;
    eprintln!(
        "seeded {} followers in {:?}",
        followers - ONLINE,
        seeding.elapsed()
    );
    let mut online = Vec::with_capacity(ONLINE);
    for n in 0..ONLINE {
        let fan = harness.user(&format!("fan{n}")).await;
        harness.store.follow(fan, author, now()).await.unwrap();
        online.push(harness.connect(fan, &format!("fan{n}=")).await);
    }
    let mut stream = harness.db.stream_reader_from_now().await;
    stream.read().await;
    let meter = RequestMeter::new();
    let state = Arc::new(harness.metered_state(&meter));
    let router = stream_router::lambda_function(Arc::clone(&state));
    let worker = push_worker::lambda_function(state);

    harness
        .store
        .create_post(NewPost {
            author,
            text: PostText::parse("to the crowd").unwrap(),
            media_url: None,
            created_at: now(),
        })
        .await
        .unwrap();
    let records = stream.next_event().await;
    let started = Instant::now();
    let response = invoke(&router, records).await;
    let router_time = started.elapsed();
    assert!(failures(&response).is_empty(), "{response}");
    let router_requests = meter.snapshot().dynamodb_requests();
    // The post's feed task (writing 20,000 feed entries) is the feed's cost, measured by
    // `make bench`'s feed section; this test counts the push.
    let (feed_tasks, work): (Vec<_>, Vec<_>) =
        harness.receive_all().await.into_iter().partition(|m| {
            matches!(
                QueueMessage::parse(m.body().unwrap_or_default()),
                Ok(QueueMessage::Feed(_))
            )
        });
    assert_eq!(
        feed_tasks.len(),
        1,
        "the router queued the post's feed task"
    );
    assert_eq!(
        work.len(),
        1,
        "the router deferred the audience to a worker"
    );
    let started = Instant::now();
    let response = invoke(&worker, sqs_event(QUEUE_ARN, &work)).await;
    let worker_time = started.elapsed();
    assert!(failures(&response).is_empty(), "{response}");

    for connection in &online {
        assert_eq!(
            harness
                .push
                .events_of_type(connection, "post_created")
                .len(),
            1,
            "{connection}"
        );
    }
    assert_eq!(harness.push.delivered().len(), ONLINE, "nobody else");
    let counted = meter.snapshot();
    let bound = followers / 1000 + ONLINE / 100 + 10;
    eprintln!(
        "fan-out of one post: {followers} followers, {ONLINE} online: {} DynamoDB requests \
         (router {router_requests}, bound {bound}), {:.1} read units, {} SQS requests; \
         router {router_time:?}, worker {worker_time:?}; {:?}",
        counted.dynamodb_requests(),
        counted.dynamodb_read_units,
        counted.sqs_requests(),
        counted.requests
    );
    assert!(
        counted.dynamodb_requests() as usize <= bound,
        "{} DynamoDB requests for F = {followers}, O = {ONLINE} exceed the bound {bound}: {:?}",
        counted.dynamodb_requests(),
        counted.requests
    );
    assert!(
        router_requests <= 4,
        "the router only probes (and reads markers): {router_requests} requests"
    );
    // No read per offline follower: connection sets are read for the online ones (and the
    // author) only — one BatchGetItem of ≤ 100 keys; the other one is the router's read of
    // the batch's delivery markers (the writer push's).
    assert_eq!(counted.operation_requests("DynamoDB", "BatchGetItem"), 2);
}
