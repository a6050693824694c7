//! Fan-out acceptance (issue 10), end to end through the local stack: real sockets, the
//! real stream and SQS pollers, moto, in-memory dynoxide.
//!
//! - Many small-audience posts with the AWS-modelled timing on (stream, SQS and
//!   `@connections` delays drawn from the published distributions): every event arrives,
//!   and a post's `post_created` always arrives before its `post_updated`.
//! - 30 % of `@connections` POSTs failing: every socket still gets every event soon after
//!   the last post, and no socket gets the same event twice (only the connections that
//!   failed are pushed again).
//! - An author above the router's inline bound: the audience is resolved by a push worker
//!   from the online index and still reaches every online follower's socket.
//! - An author with 20,000 followers written through the store (`RIPPLE_FANOUT_FOLLOWERS`
//!   raises it, e.g. to 100,000 with `--profile bench-stack`), 50 of them online: each of
//!   the 50 sockets gets the post exactly once.
//!
//! Run: `cargo test -p ripple-tests --test fanout` (needs `make tools` for moto).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use ripple_local::latency::LatencyModel;
use ripple_local::websocket::WebSocketFaults;
use ripple_tests::bench::seed::Seeder;
use ripple_tests::realtime::{RealtimeStack, User, WsClient, WAIT};
use serde_json::{json, Value};

/// REST calls in flight at once while a test generates load.
const CONCURRENCY: usize = 16;

/// The ids of the `post_created` events a socket received, each once.
fn created_ids(socket: &WsClient) -> Vec<String> {
    let mut ids: Vec<String> = socket
        .events_of_type("post_created")
        .iter()
        .filter_map(|event| event["data"]["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Registers `count` users named `{prefix}{n}`, concurrently.
async fn register_all(stack: &RealtimeStack, prefix: &str, count: usize) -> Vec<User> {
    stream::iter(0..count)
        .map(|n| {
            let name = format!("{prefix}{n}");
            async move { stack.register(&name).await }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await
}

/// Each of `users` follows the `per_user` authors after it (in a ring), so every author has
/// `per_user` followers. Returns, per user, the ids of the authors they follow.
async fn follow_ring(stack: &RealtimeStack, users: &[User], per_user: usize) -> Vec<Vec<String>> {
    let pairs: Vec<(usize, usize)> = (0..users.len())
        .flat_map(|i| (1..=per_user).map(move |k| (i, (i + k) % users.len())))
        .collect();
    stream::iter(pairs.iter().copied())
        .for_each_concurrent(CONCURRENCY, |(i, j)| stack.follow(&users[i], &users[j]))
        .await;
    (0..users.len())
        .map(|i| {
            (1..=per_user)
                .map(|k| users[(i + k) % users.len()].id.clone())
                .collect()
        })
        .collect()
}

/// Every socket's expected `post_created` ids: its own posts and those of whom it follows.
fn expected_posts(
    users: &[User],
    follows: &[Vec<String>],
    posts_by_author: &HashMap<String, Vec<String>>,
) -> Vec<Vec<String>> {
    users
        .iter()
        .zip(follows)
        .map(|(user, followees)| {
            let mut ids: Vec<String> = std::iter::once(&user.id)
                .chain(followees)
                .flat_map(|author| posts_by_author.get(author).cloned().unwrap_or_default())
                .collect();
            ids.sort();
            ids
        })
        .collect()
}

/// Posts `per_author` posts for every user, concurrently; returns post ids by author id.
async fn post_all(
    stack: &RealtimeStack,
    authors: &[User],
    per_author: usize,
) -> HashMap<String, Vec<String>> {
    let jobs: Vec<(usize, usize)> = (0..authors.len())
        .flat_map(|a| (0..per_author).map(move |n| (a, n)))
        .collect();
    let posted: Vec<(String, String)> = stream::iter(jobs)
        .map(|(a, n)| async move {
            let post = stack.post(&authors[a], &format!("post {n}")).await;
            let id = post["id"].as_str().unwrap_or_default().to_owned();
            (authors[a].id.clone(), id)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut by_author: HashMap<String, Vec<String>> = HashMap::new();
    for (author, id) in posted {
        by_author.entry(author).or_default().push(id);
    }
    by_author
}

/// Waits until every socket has every expected post; returns how long that took.
async fn await_all(sockets: &[WsClient], expected: &[Vec<String>], timeout: Duration) -> Duration {
    let started = std::time::Instant::now();
    let complete = || {
        sockets
            .iter()
            .zip(expected)
            .all(|(socket, ids)| created_ids(socket) == *ids)
    };
    while !complete() {
        if started.elapsed() > timeout {
            let missing: Vec<(String, usize)> = sockets
                .iter()
                .zip(expected)
                .map(|(socket, ids)| {
                    let got = created_ids(socket);
                    let absent = ids.iter().filter(|id| !got.contains(id)).count();
                    (socket.label.clone(), absent)
                })
                .filter(|(_, absent)| *absent > 0)
                .collect();
            panic!("not every post_created within {timeout:?}; missing per socket: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn small_audiences_get_every_post_in_order_with_aws_modelled_latency() {
    let stack = RealtimeStack::start_with(|options| {
        options.latency = LatencyModel::aws().with_seed(10);
        options
            .environment
            .push(("RATE_LIMIT_POSTS_PER_MINUTE".into(), "100".into()));
    })
    .await;
    let users = register_all(&stack, "author", 100).await;
    let follows = follow_ring(&stack, &users, 3).await;
    let sockets: Vec<WsClient> = stream::iter(&users)
        .map(|user| stack.connect(user))
        .buffered(CONCURRENCY)
        .collect()
        .await;

    let posts = post_all(&stack, &users, 10).await;
    assert_eq!(posts.values().map(Vec::len).sum::<usize>(), 1000);
    let expected = expected_posts(&users, &follows, &posts);
    await_all(&sockets, &expected, Duration::from_secs(60)).await;

    // One post edited at once: everyone who got it sees the creation, then the edit.
    let author = &users[0];
    let post = stack.post(author, "before").await;
    let post_id = post["id"].as_str().unwrap_or_default().to_owned();
    stack
        .call(
            author,
            "PATCH",
            &format!("/posts/{post_id}"),
            Some(json!({"text": "after"})),
            200,
        )
        .await;
    let audience: Vec<&WsClient> = std::iter::once(&sockets[0])
        .chain(
            follows
                .iter()
                .enumerate()
                .filter(|(_, followees)| followees.contains(&author.id))
                .map(|(i, _)| &sockets[i]),
        )
        .collect();
    assert_eq!(audience.len(), 4);
    for socket in audience {
        let updated = socket
            .next_frame_where("the edit", WAIT, |event| {
                event["type"] == "post_updated" && event["data"]["id"] == post_id.as_str()
            })
            .await;
        let created = socket
            .next_frame_where("the creation", WAIT, |event| {
                event["type"] == "post_created" && event["data"]["id"] == post_id.as_str()
            })
            .await;
        assert!(
            created.received_at <= updated.received_at,
            "{}: post_created arrived after post_updated",
            socket.label
        );
        assert_eq!(updated.json["data"]["text"], "after");
    }
    stack.stop().await;
}

/// The `event_id`s a socket received more than once, as raw frames.
fn repeated_event_ids(socket: &WsClient) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for frame in socket.raw_frames() {
        let event: Value = serde_json::from_str(&frame).unwrap_or(Value::Null);
        if let Some(id) = event["event_id"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    seen.into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn with_30_percent_of_pushes_failing_every_socket_gets_every_event_once() {
    let faults = Arc::new(WebSocketFaults::default());
    let stack = RealtimeStack::start_with(|options| {
        options.gateway.faults = Arc::clone(&faults);
        options
            .environment
            .push(("RATE_LIMIT_POSTS_PER_MINUTE".into(), "100".into()));
        // The push tier's own retries are under test. With the writer push on, a stream
        // record can outrun the writer's delivery marker locally (20 ms polls) and the
        // router pushes a copy with the same event_id, which clients drop (realtime.md).
        options
            .environment
            .push(("WRITER_PUSH_MAX_CONNECTIONS".into(), "0".into()));
    })
    .await;
    let users = register_all(&stack, "user", 40).await;
    let follows = follow_ring(&stack, &users, 5).await;
    let sockets: Vec<WsClient> = stream::iter(&users)
        .map(|user| stack.connect(user))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    faults.fail_post_percent.store(30, Ordering::Relaxed);

    let posts = post_all(&stack, &users, 5).await;
    let expected = expected_posts(&users, &follows, &posts);
    // A liveness bound, not a speed assertion (speed is `make bench`'s): this suite runs
    // its four stacks at once, one of them seeding 20,000 follows, and on a loaded 2-core
    // machine the drain of 200 posts through a 30 %-failing @connections has taken over
    // the 15 s this bound used to be, while alone it passes well inside it.
    let took = await_all(&sockets, &expected, Duration::from_secs(60)).await;
    eprintln!("with 30 % of pushes failing, every socket had every post {took:?} after the last");

    faults.fail_post_percent.store(0, Ordering::Relaxed);
    for socket in &sockets {
        assert_eq!(
            repeated_event_ids(socket),
            Vec::<String>::new(),
            "{}: a connection that got an event was pushed it again",
            socket.label
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn an_author_above_the_inline_bound_reaches_every_online_follower_through_a_worker() {
    let stack = RealtimeStack::start_with(|options| {
        options
            .environment
            .push(("FANOUT_INLINE_MAX_FOLLOWERS".into(), "5".into()));
    })
    .await;
    let author = stack.register("star").await;
    let fans = register_all(&stack, "fan", 30).await;
    stream::iter(&fans)
        .for_each_concurrent(CONCURRENCY, |fan| stack.follow(fan, &author))
        .await;
    // Only some are online; the rest cost nothing.
    let online: Vec<WsClient> = stream::iter(fans.iter().step_by(3))
        .map(|fan| stack.connect(fan))
        .buffered(CONCURRENCY)
        .collect()
        .await;

    let post = stack.post(&author, "to the crowd").await;
    let post_id = post["id"].as_str().unwrap_or_default().to_owned();
    for socket in &online {
        socket
            .next_event_where("the post", WAIT, |event| {
                event["type"] == "post_created" && event["data"]["id"] == post_id.as_str()
            })
            .await;
    }
    stack.stop().await;
}

/// Followers of the big author in `make test`; `RIPPLE_FANOUT_FOLLOWERS` raises it.
const BIG_AUDIENCE_FOLLOWERS: usize = 20_000;
const BIG_AUDIENCE_ONLINE: usize = 50;

fn big_audience_followers() -> usize {
    std::env::var("RIPPLE_FANOUT_FOLLOWERS")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(BIG_AUDIENCE_FOLLOWERS)
        .max(BIG_AUDIENCE_ONLINE)
}

/// How long the crowd post may take to reach every online follower (see its test).
const BIG_AUDIENCE_WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_post_to_a_big_audience_reaches_each_online_socket_once() {
    let followers = big_audience_followers();
    let stack = RealtimeStack::start().await;
    let seeder = Seeder::new(&stack).expect("seeder");
    let author = stack.register("crowd_star").await;
    let started = std::time::Instant::now();
    seeder
        .offline_followers(&author, followers - BIG_AUDIENCE_ONLINE)
        .await
        .expect("offline followers");
    let fans = seeder
        .users("crowdfan", BIG_AUDIENCE_ONLINE)
        .await
        .expect("online followers");
    seeder.follow(&fans, &author).await.expect("follows");
    eprintln!("seeded {followers} followers in {:?}", started.elapsed());
    let sockets: Vec<WsClient> = stream::iter(&fans)
        .map(|fan| stack.connect(fan))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    // The seeding's stream records (filtered, but read) drain first: a warm-up post
    // arrives behind them.
    let warm_up = stack.post(&author, "warming up").await;
    sockets[0]
        .next_event_where("the warm-up post", Duration::from_secs(120), |event| {
            event["type"] == "post_created" && event["data"]["id"] == warm_up["id"]
        })
        .await;

    let post = stack.post(&author, "to the crowd").await;
    let posted = std::time::Instant::now();
    let post_id = post["id"].as_str().unwrap_or_default().to_owned();
    // A liveness bound, not a latency check (`make bench` measures that): dynoxide's stream
    // reads slow down with the 20,000 follows' records behind them, and on a loaded 2-core
    // machine the router can take well over the usual 10 s to reach the post.
    for socket in &sockets {
        socket
            .next_event_where("the crowd post", BIG_AUDIENCE_WAIT, |event| {
                event["type"] == "post_created" && event["data"]["id"] == post_id.as_str()
            })
            .await;
    }
    eprintln!(
        "{followers} followers, {BIG_AUDIENCE_ONLINE} online: the last socket got the post {:?} after the REST response",
        posted.elapsed()
    );
    // Long enough for a second copy (writer push, router, a worker retry) to show up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for socket in &sockets {
        let copies = socket
            .raw_frames()
            .iter()
            .filter(|frame| frame.contains("post_created") && frame.contains(post_id.as_str()))
            .count();
        assert_eq!(
            copies, 1,
            "{}: the post arrived {copies} times",
            socket.label
        );
    }
    stack.stop().await;
}
