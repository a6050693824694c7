//! Delivery guarantees under faults (issue 12), end to end through the local stack: real
//! sockets on the local gateway, the real stream and SQS pollers, moto, in-memory dynoxide.
//! Each test injects one fault and ends with "nothing lost": every socket (after a
//! reconnect and `resume` from its last cursor where the fault closed it) holds every event
//! it should, exactly once after dropping repeats by `event_id`, and REST shows the data.
//!
//! - `$disconnect` dropped: a socket dies silently; a DM and a notification are written;
//!   the user reconnects and resumes.
//! - Duplicated and bisected stream batches: every batch delivered twice and every batch of
//!   several records failing once it ran (so Lambda's bisection redelivers its halves).
//! - 30 % of `@connections` POSTs failing during a burst of posts, comments and DMs.
//! - Push-worker invocations killed (messages not deleted: redelivered after the visibility
//!   timeout), once a few milliseconds into a `fanout` chunk and once after its pushes but
//!   before the delete, while posts go to an audience above the router's inline bound.
//! - A queue message that always fails: redelivered up to `maxReceiveCount`, then in the DLQ
//!   (the `FanoutDlqDepthAlarm` metric is ≥ 1) while the rest of its batch was delivered;
//!   a redrive after the fix delivers it.
//! - The gateway's WebSocket side restarted: every socket closes, events are written while
//!   it is down, clients reconnect on the same port and resume.
//!
//! Run: `cargo test -p ripple-tests --test faults` (needs `make tools` for moto).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::stream::{self, StreamExt};
use ripple_tests::realtime::{
    check_deliveries, event_ids, eventually, DeliveryKey, RealtimeStack, User, WsClient, QUIET,
    WAIT,
};
use serde_json::{json, Value};

/// REST calls in flight at once while a test sets up.
const CONCURRENCY: usize = 8;

/// How long a fault scenario may take to deliver everything (retries, re-enqueues with
/// their 1 s, 2 s, 4 s delays, visibility timeouts).
const SETTLE: Duration = Duration::from_secs(30);

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

fn key(kind: &str, id: &str) -> DeliveryKey {
    (kind.to_owned(), id.to_owned())
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

/// The ids of the events of type `kind` among `socket`'s deliveries.
fn delivered(socket: &WsClient, kind: &str) -> BTreeSet<String> {
    socket
        .deliveries()
        .iter()
        .filter(|event| event["type"] == kind)
        .filter_map(|event| event["data"]["id"].as_str().map(str::to_owned))
        .collect()
}

/// The ids in `ids` newer than the cursor `since` (UUIDv7 text order is time order).
fn newer_than(ids: &BTreeSet<String>, since: &str) -> BTreeSet<String> {
    ids.iter()
        .filter(|id| id.as_str() > since)
        .cloned()
        .collect()
}

/// Waits until every socket holds exactly what `expected` says (see [`check_deliveries`]),
/// then a quiet period for late extras; fails with every socket's difference.
async fn await_exact(
    sockets: &[&WsClient],
    baselines: &[HashSet<String>],
    expected: &[BTreeSet<DeliveryKey>],
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let problems = differences(sockets, baselines, expected);
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not within {timeout:?}:\n{}",
            problems.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(QUIET).await;
    let problems = differences(sockets, baselines, expected);
    assert!(
        problems.is_empty(),
        "after a quiet period:\n{}",
        problems.join("\n")
    );
}

fn differences(
    sockets: &[&WsClient],
    baselines: &[HashSet<String>],
    expected: &[BTreeSet<DeliveryKey>],
) -> Vec<String> {
    sockets
        .iter()
        .zip(baselines)
        .zip(expected)
        .filter_map(|((socket, baseline), expected)| {
            check_deliveries(socket, baseline, expected).err()
        })
        .collect()
}

/// The like count a room member is left with: the `like_updated` with the highest
/// `version` when events carry one, else the last one kept (repeats by `event_id` dropped).
fn shown_like_count(socket: &WsClient, post_id: &str) -> Option<u64> {
    let updates: Vec<Value> = socket
        .deliveries()
        .into_iter()
        .filter(|event| event["type"] == "like_updated" && event["data"]["post_id"] == post_id)
        .collect();
    let versioned = updates
        .iter()
        .all(|event| event["data"]["version"].is_u64());
    let shown = if versioned {
        updates
            .iter()
            .max_by_key(|event| event["data"]["version"].as_u64())
    } else {
        updates.last()
    };
    shown.and_then(|event| event["data"]["like_count"].as_u64())
}

// ---- 1. $disconnect dropped ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_that_died_without_disconnect_misses_nothing_after_resume() {
    // A 410 within the handshake window (30 s in production) keeps a connection; a
    // one-second window lets the dead socket's removal show here.
    let stack = RealtimeStack::start_with(|options| {
        options
            .environment
            .push(("WS_HANDSHAKE_WINDOW_SECONDS".into(), "1".into()))
    })
    .await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let post = stack.post(&b, "bob's post").await;

    // B's socket has seen a notification: its cursor is where B resumes from.
    let (b1, b_connection) = stack.connect_with_id(&b).await;
    stack.follow(&a, &b).await;
    b1.next_event_of_type("new_notification", WAIT).await;
    let since = b1.last_cursor().expect("the notification carries a cursor");
    // The router may push a copy of it after the writer did: let it land on the live socket
    // (a push to the dead one would answer 410 and remove the connection before we look).
    tokio::time::sleep(QUIET).await;

    // B's socket dies and the gateway loses the $disconnect.
    stack.faults().drop_disconnect.store(true, Ordering::SeqCst);
    b1.kill().await;
    eventually("the gateway notices the dead socket", WAIT, || async {
        !stack.open_connection_ids().contains(&b_connection)
    })
    .await;
    assert!(
        stack.connection_item_exists(&b_connection).await,
        "no $disconnect ran: the connection item is still there"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // While B is away: a DM (with its notification) and a like notification.
    let message = stack.message(&a, &b, "are you there?").await;
    stack.like(&a, &id(&post)).await;
    // The pushes to the dead connection answer 410, which removes it.
    eventually("the dead connection is removed by a push", WAIT, || async {
        !stack.connection_item_exists(&b_connection).await
    })
    .await;

    let (b2, _resumed) = stack.connect_and_resume(&b, &since).await;
    let notifications = newer_than(&stack.notification_ids(&b).await, &since);
    assert_eq!(
        notifications.len(),
        2,
        "the DM and the like notified B: {notifications:?}"
    );
    // The replay starts a minute before the cursor (ids are minted before commit): what B
    // had comes again and is dropped by event_id; everything newer is exactly the missed.
    assert_eq!(
        newer_than(&delivered(&b2, "new_notification"), &since),
        notifications
    );
    let messages = stack.message_ids(&b, &a).await;
    assert_eq!(messages, BTreeSet::from([id(&message)]), "REST has the DM");
    assert_eq!(delivered(&b2, "new_message"), messages);
    assert_eq!(b2.events_of_type("error"), Vec::<Value>::new());
    stack.stop().await;
}

// ---- 2. duplicated and bisected stream batches ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicated_and_bisected_stream_batches_leave_each_event_once_after_dedup() {
    // The router is the one delivering: the writer push is off.
    let stack = RealtimeStack::start_with(|options| {
        options
            .environment
            .push(("WRITER_PUSH_MAX_CONNECTIONS".into(), "0".into()));
    })
    .await;
    let users = register_all(&stack, "dup", 4).await;
    let (a, b, c, d) = (&users[0], &users[1], &users[2], &users[3]);
    let sockets: Vec<WsClient> = join_all(users.iter().map(|user| stack.connect(user))).await;
    let (a1, b1, c1, d1) = (&sockets[0], &sockets[1], &sockets[2], &sockets[3]);
    stack.follow(b, a).await;
    stack.follow(c, a).await;
    let room_post = stack.post(a, "the room").await;
    let room_id = id(&room_post);
    for socket in [c1, d1] {
        socket.subscribe(&format!("post:{room_id}")).await;
    }
    // Set-up deliveries are in before the faults start: two follows, the room post.
    eventually("the set-up reached the sockets", WAIT, || async {
        a1.events_of_type("new_notification").len() == 2
            && [a1, b1, c1]
                .iter()
                .all(|s| !s.events_of_type("post_created").is_empty())
    })
    .await;
    tokio::time::sleep(QUIET).await;
    let baselines: Vec<HashSet<String>> = sockets.iter().map(event_ids).collect();

    let faults = stack.stream_faults();
    faults.duplicate_batches.store(true, Ordering::SeqCst);
    faults
        .fail_multi_record_batches
        .store(true, Ordering::SeqCst);

    // A burst, all at once, so the stream batches hold several records.
    let (p1, p2, cb1, cb2, cc, _lb, _ld, m_db, m_ca) = tokio::join!(
        stack.post(a, "first"),
        stack.post(a, "second"),
        stack.comment(b, &room_id, "b one"),
        stack.comment(b, &room_id, "b two"),
        stack.comment(c, &room_id, "c one"),
        stack.like(b, &room_id),
        stack.like(d, &room_id),
        stack.message(d, b, "d to b"),
        stack.message(c, a, "c to a"),
    );
    let posts: Vec<DeliveryKey> = [&p1, &p2]
        .iter()
        .map(|p| key("post_created", &id(p)))
        .collect();
    let comments: Vec<DeliveryKey> = [&cb1, &cb2, &cc]
        .iter()
        .map(|c| key("new_comment", &id(c)))
        .collect();
    // Notifications: A for the comments, likes and C's DM; B for D's DM.
    let a_notifications = stack.notification_ids(a).await;
    let b_notifications = stack.notification_ids(b).await;
    let fresh = |all: &BTreeSet<String>, baseline: &HashSet<String>, socket: &WsClient| {
        // Notifications the socket had before the burst are in its baseline by event id;
        // their ids are told apart by what the socket had received.
        let before: HashSet<String> = socket
            .events()
            .iter()
            .filter(|e| e["type"] == "new_notification")
            .filter(|e| {
                e["event_id"]
                    .as_str()
                    .is_some_and(|id| baseline.contains(id))
            })
            .filter_map(|e| e["data"]["id"].as_str().map(str::to_owned))
            .collect();
        all.iter()
            .filter(|id| !before.contains(*id))
            .map(|id| key("new_notification", id))
            .collect::<Vec<_>>()
    };
    let mut expected: Vec<BTreeSet<DeliveryKey>> = vec![BTreeSet::new(); 4];
    expected[0].extend(posts.iter().cloned());
    expected[0].extend(fresh(&a_notifications, &baselines[0], a1));
    expected[0].insert(key("new_message", &id(&m_ca)));
    expected[1].extend(posts.iter().cloned());
    expected[1].extend(fresh(&b_notifications, &baselines[1], b1));
    expected[1].insert(key("new_message", &id(&m_db)));
    expected[2].extend(posts.iter().cloned());
    expected[2].extend(comments.iter().cloned());
    expected[2].insert(key("new_message", &id(&m_ca)));
    expected[3].extend(comments.iter().cloned());
    expected[3].insert(key("new_message", &id(&m_db)));
    assert_eq!(
        expected[0]
            .iter()
            .filter(|(kind, _)| kind == "new_notification")
            .count(),
        6,
        "A is notified of 3 comments, 2 likes and 1 DM"
    );

    let refs: Vec<&WsClient> = sockets.iter().collect();
    await_exact(&refs, &baselines, &expected, SETTLE).await;

    let errors = faults.injected_errors.load(Ordering::SeqCst);
    let duplicated = faults.duplicated_batches.load(Ordering::SeqCst);
    let repeats: usize = sockets.iter().map(WsClient::repeated_deliveries).sum();
    eprintln!(
        "{errors} batches failed and were bisected, {duplicated} delivered twice; \
         the sockets dropped {repeats} repeats"
    );
    assert!(errors >= 1, "a batch of several records was failed");
    assert!(duplicated >= 1, "a batch was delivered twice");
    assert!(
        repeats >= 1,
        "the sockets saw repeats (the faults reached them)"
    );

    // The room shows the final like count.
    let final_count = stack
        .call(a, "GET", &format!("/posts/{room_id}"), None, 200)
        .await["like_count"]
        .as_u64();
    assert_eq!(final_count, Some(2));
    for socket in [c1, d1] {
        assert_eq!(
            shown_like_count(socket, &room_id),
            final_count,
            "{}: {:?}",
            socket.label,
            socket.events_of_type("like_updated")
        );
    }
    for socket in [a1, b1] {
        assert!(
            socket.events_of_type("like_updated").is_empty(),
            "{}: not in the room",
            socket.label
        );
    }
    stack.stop().await;
}

// ---- 3. 30 % of @connections failing -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_30_percent_of_pushes_failing_every_socket_ends_with_every_event_once() {
    let stack = RealtimeStack::start().await;
    let users = register_all(&stack, "flaky", 6).await;
    // Each user follows the next two (a ring); users 0 and 1 have a second socket.
    for (n, user) in users.iter().enumerate() {
        for step in 1..=2 {
            stack.follow(user, &users[(n + step) % users.len()]).await;
        }
    }
    let owners: Vec<usize> = vec![0, 0, 1, 1, 2, 3, 4, 5];
    let sockets: Vec<WsClient> =
        join_all(owners.iter().map(|&owner| stack.connect(&users[owner]))).await;
    let room_post = stack.post(&users[5], "the room").await;
    let room_id = id(&room_post);
    // Sockets 1 (user 0) and 6 (user 4) are in the post's room.
    for socket in [&sockets[1], &sockets[6]] {
        socket.subscribe(&format!("post:{room_id}")).await;
    }
    eventually(
        "the room post reached its author and followers",
        WAIT,
        || async {
            // Users 3 and 4 follow user 5; user 5 is the author.
            [5usize, 6, 7]
                .iter()
                .all(|&s| !sockets[s].events_of_type("post_created").is_empty())
        },
    )
    .await;
    tokio::time::sleep(QUIET).await;
    let baselines: Vec<HashSet<String>> = sockets.iter().map(event_ids).collect();
    let burst_started = chrono::Utc::now();

    stack.faults().fail_post_percent.store(30, Ordering::SeqCst);
    let stack_ref = &stack;
    let posts: Vec<Value> = join_all(users.iter().map(|user| async move {
        stack_ref
            .post(user, &format!("{} under faults", user.username))
            .await
    }))
    .await;
    let comments: Vec<Value> = join_all([1usize, 2, 3].iter().map(|&n| {
        let (users, room_id) = (&users, &room_id);
        async move {
            stack_ref
                .comment(&users[n], room_id, &format!("comment {n}"))
                .await
        }
    }))
    .await;
    // DMs around the ring: n writes to n + 1.
    let messages: Vec<Value> = join_all((0..users.len()).map(|n| {
        let users = &users;
        async move {
            stack_ref
                .message(&users[n], &users[(n + 1) % users.len()], &format!("dm {n}"))
                .await
        }
    }))
    .await;

    let count = users.len();
    let mut per_user: Vec<BTreeSet<DeliveryKey>> = vec![BTreeSet::new(); count];
    for (author, post) in posts.iter().enumerate() {
        // The author and the two users before it in the ring (its followers).
        for user in [
            author,
            (author + count - 1) % count,
            (author + count - 2) % count,
        ] {
            per_user[user].insert(key("post_created", &id(post)));
        }
    }
    for (n, message) in messages.iter().enumerate() {
        per_user[n].insert(key("new_message", &id(message)));
        per_user[(n + 1) % count].insert(key("new_message", &id(message)));
    }
    let burst_cursor = cursor_at(burst_started.timestamp_millis() - 1);
    for (n, user) in users.iter().enumerate() {
        for notification in newer_than(&stack.notification_ids(user).await, &burst_cursor) {
            per_user[n].insert(key("new_notification", &notification));
        }
    }
    // Comments on user 5's post and the DM from user 4 notify user 5.
    assert_eq!(
        per_user[5]
            .iter()
            .filter(|(kind, _)| kind == "new_notification")
            .count(),
        4
    );
    let mut expected: Vec<BTreeSet<DeliveryKey>> = owners
        .iter()
        .map(|&owner| per_user[owner].clone())
        .collect();
    for socket in [1usize, 6] {
        expected[socket].extend(comments.iter().map(|c| key("new_comment", &id(c))));
    }

    // Retries and re-enqueues deliver what they can while the faults last …
    let refs: Vec<&WsClient> = sockets.iter().collect();
    let deadline = Instant::now() + SETTLE;
    while !differences(&refs, &baselines, &expected).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stack.faults().fail_post_percent.store(0, Ordering::SeqCst);
    // … and a resume brings the resumable rest (notifications, DMs) to a socket still
    // missing some.
    let mut resumed = 0;
    for (socket, (baseline, expected)) in refs.iter().zip(baselines.iter().zip(&expected)) {
        if check_deliveries(socket, baseline, expected).is_err() {
            let reply = socket
                .request(json!({"action": "resume", "since": burst_cursor}))
                .await;
            assert_eq!(reply["type"], "resumed", "{reply}");
            resumed += 1;
        }
    }
    eprintln!(
        "{resumed} of {} sockets needed a resume after the faults",
        refs.len()
    );
    await_exact(&refs, &baselines, &expected, WAIT).await;
    for post in &posts {
        stack
            .call(&users[0], "GET", &format!("/posts/{}", id(post)), None, 200)
            .await;
    }
    stack.stop().await;
}

/// A UUIDv7 of the millisecond `ms` (the smallest one): a resume cursor for that moment.
fn cursor_at(ms: i64) -> String {
    let ms = u64::try_from(ms).expect("a time after 1970");
    uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10])
        .into_uuid()
        .to_string()
}

// ---- 4. push worker killed mid-batch -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_push_worker_killed_mid_batch_is_redelivered_and_each_follower_gets_the_post_once() {
    const FOLLOWERS: usize = 40;
    let stack = RealtimeStack::start_with(|options| {
        // Above 5 followers a worker resolves the audience; above 10 connections it is
        // pushed from a `fanout` chunk by another invocation. The writer push is off.
        for (name, value) in [
            ("FANOUT_INLINE_MAX_FOLLOWERS", "5"),
            ("FANOUT_DIRECT_MAX_CONNECTIONS", "10"),
            ("WRITER_PUSH_MAX_CONNECTIONS", "0"),
        ] {
            options.environment.push((name.into(), value.into()));
        }
        options.visibility_timeout = Some(Duration::from_secs(2));
    })
    .await;
    let author = stack.register("star").await;
    let a1 = stack.connect(&author).await;
    let fans = register_all(&stack, "fan", FOLLOWERS).await;
    stream::iter(&fans)
        .for_each_concurrent(CONCURRENCY, |fan| stack.follow(fan, &author))
        .await;
    let mut sockets: Vec<WsClient> = stream::iter(&fans)
        .map(|fan| stack.connect(fan))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    eventually("the follows are through the stream", WAIT, || async {
        a1.events_of_type("new_notification").len() == FOLLOWERS
    })
    .await;
    eventually("the fan-out queue drained", WAIT, || async {
        stack.fanout_queue_depth().await == 0
    })
    .await;
    sockets.push(a1);

    // Two posts, each pushed from a `fanout` chunk whose invocation is killed: the first a
    // few milliseconds in (mid-push), the second once its pushes are done but before the
    // poller deletes the message (the crash between the work and the delete, so every
    // socket surely gets that chunk twice).
    let faults = stack.push_worker_faults();
    let mut post_ids = Vec::new();
    for (n, kill_after) in [Duration::from_millis(5), Duration::from_secs(5)]
        .into_iter()
        .enumerate()
    {
        faults.kill_invocations("\"kind\":\"fanout\"", 1, kill_after);
        let post_id = id(&stack.post(&author, &format!("post {n}")).await);
        for socket in &sockets {
            socket
                .next_event_where("the post", SETTLE, |event| {
                    event["type"] == "post_created" && event["data"]["id"] == post_id.as_str()
                })
                .await;
        }
        eventually("the chunk's invocation was killed", WAIT, || async {
            faults.killed() == n as u64 + 1
        })
        .await;
        post_ids.push(post_id);
    }
    // Past a visibility timeout: any further copy would be in.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let repeats: usize = sockets.iter().map(WsClient::repeated_deliveries).sum();
    eprintln!(
        "{} invocations killed; {repeats} repeats dropped by event_id",
        faults.killed()
    );
    let expected: BTreeSet<String> = post_ids.iter().cloned().collect();
    for socket in &sockets {
        assert_eq!(
            delivered(socket, "post_created"),
            expected,
            "{}",
            socket.label
        );
        let copies = socket
            .deliveries()
            .iter()
            .filter(|e| e["type"] == "post_created")
            .count();
        assert_eq!(copies, 2, "{}: each post once after dedup", socket.label);
        let second = socket
            .events()
            .iter()
            .filter(|e| e["type"] == "post_created" && e["data"]["id"] == post_ids[1].as_str())
            .count();
        assert!(
            second >= 2,
            "{}: the redelivered chunk reached it again",
            socket.label
        );
    }
    let post_id = &post_ids[1];
    stack
        .call(&fans[0], "GET", &format!("/posts/{post_id}"), None, 200)
        .await;
    eventually("the queue is drained", WAIT, || async {
        stack.fanout_queue_depth().await == 0
    })
    .await;
    stack.stop().await;
}

// ---- 5. redelivery, then the DLQ -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_keeps_failing_lands_in_the_dlq_while_its_batch_is_delivered() {
    let stack = RealtimeStack::start_with(|options| {
        options
            .environment
            .push(("FANOUT_INLINE_MAX_FOLLOWERS".into(), "2".into()));
        options
            .environment
            .push(("WRITER_PUSH_MAX_CONNECTIONS".into(), "0".into()));
        options.visibility_timeout = Some(Duration::from_secs(1));
    })
    .await;
    let authors = register_all(&stack, "author", 3).await;
    let fans = register_all(&stack, "reader", 9).await;
    // Fans 3k..3k+3 follow author k: three followers each, above the inline bound.
    join_all(
        fans.iter()
            .enumerate()
            .map(|(n, fan)| stack.follow(fan, &authors[n / 3])),
    )
    .await;
    let sockets: Vec<WsClient> = join_all(fans.iter().map(|fan| stack.connect(fan))).await;
    eventually("the follows' feed work is done", WAIT, || async {
        stack.fanout_queue_depth().await == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Three posts wait in the queue together; the second one's work always fails.
    stack.push_worker_poller().pause();
    let texts: Vec<String> = (0..3)
        .map(|n| format!("post {n} {}", uuid::Uuid::new_v4()))
        .collect();
    let mut posts = Vec::new();
    for (author, text) in authors.iter().zip(&texts) {
        posts.push(id(&stack.post(author, text).await));
    }
    eventually("the three audiences are queued", WAIT, || async {
        stack.fanout_queue_depth().await >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let faults = stack.push_worker_faults();
    faults.poison(Some(&texts[1]));
    stack.push_worker_poller().resume();

    let is_post = |post_id: &str| {
        let post_id = post_id.to_owned();
        move |event: &Value| {
            event["type"] == "post_created" && event["data"]["id"] == post_id.as_str()
        }
    };
    for (n, socket) in sockets.iter().enumerate() {
        if n / 3 != 1 {
            socket
                .next_event_where("its author's post", WAIT, is_post(&posts[n / 3]))
                .await;
        }
    }
    // maxReceiveCount (5) receives, 1 s apart, then SQS moves it.
    eventually("the poisoned message is in the DLQ", SETTLE, || async {
        stack.fanout_dlq_depth().await >= 1
    })
    .await;
    let dlq_depth = stack.fanout_dlq_depth().await;
    let batches = faults.poisoned_batches();
    eprintln!("DLQ depth {dlq_depth}; batches with the poisoned message: {batches:?}");
    assert!(batches.len() >= 2, "it was redelivered: {batches:?}");
    assert!(
        batches[0].others >= 1,
        "it shared its first batch with other messages: {batches:?}"
    );
    for socket in &sockets[3..6] {
        socket.assert_no_event("post_created", Duration::ZERO).await;
    }

    // The fix, then an operator's redrive: the post reaches its followers, once.
    faults.poison(None);
    let moved = stack.redrive_fanout_dlq().await;
    assert!(moved >= 1);
    for socket in &sockets[3..6] {
        socket
            .next_event_where("the redriven post", SETTLE, is_post(&posts[1]))
            .await;
    }
    eventually("the DLQ is empty", WAIT, || async {
        stack.fanout_dlq_depth().await == 0
    })
    .await;
    tokio::time::sleep(QUIET).await;
    for (n, socket) in sockets.iter().enumerate() {
        assert_eq!(
            delivered(socket, "post_created"),
            BTreeSet::from([posts[n / 3].clone()]),
            "{}",
            socket.label
        );
    }
    for (author, post) in authors.iter().zip(&posts) {
        stack
            .call(author, "GET", &format!("/posts/{post}"), None, 200)
            .await;
    }
    stack.stop().await;
}

// ---- 6. the gateway restarted --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_reconnect_and_resume_after_the_gateway_restarts_and_miss_nothing() {
    let mut stack = RealtimeStack::start().await;
    let users = register_all(&stack, "restart", 3).await;
    let (a, b, c) = (&users[0], &users[1], &users[2]);
    stack.follow(c, a).await;
    let sockets: Vec<WsClient> = join_all(users.iter().map(|user| stack.connect(user))).await;
    // Something with a cursor on every socket.
    stack.follow(b, a).await;
    stack.message(c, b, "before the restart").await;
    let b_id = b.id.clone();
    sockets[0]
        .next_event_where("B's follow", WAIT, |event| {
            event["type"] == "new_notification" && event["data"]["actor_id"] == b_id.as_str()
        })
        .await;
    sockets[1].next_event_of_type("new_message", WAIT).await;
    sockets[1]
        .next_event_of_type("new_notification", WAIT)
        .await;
    sockets[2].next_event_of_type("new_message", WAIT).await;
    let cursors: Vec<String> = sockets
        .iter()
        .map(|socket| socket.last_cursor().expect("a cursor"))
        .collect();

    stack.stop_websocket().await;
    for socket in &sockets {
        assert!(socket.is_closed(), "{}: the outage closed it", socket.label);
    }
    let refused = tokio::net::TcpStream::connect(stack.stack.urls.websocket_address).await;
    assert!(refused.is_err(), "nothing listens while it is down");

    // While it is down.
    let post = stack.post(a, "during the outage").await;
    let post_id = id(&post);
    stack.message(b, a, "b to a, offline").await;
    stack.like(c, &post_id).await;
    stack.comment(c, &post_id, "c comments").await;
    stack.message(a, c, "a to c, offline").await;

    stack.start_websocket().await;
    let mut resumed: HashMap<String, WsClient> = HashMap::new();
    for (user, since) in users.iter().zip(&cursors) {
        let (socket, _reply) = stack.connect_and_resume(user, since).await;
        resumed.insert(user.id.clone(), socket);
    }
    for (user, since) in users.iter().zip(&cursors) {
        let socket = &resumed[&user.id];
        let notifications = newer_than(&stack.notification_ids(user).await, since);
        let mut messages = BTreeSet::new();
        for other in users.iter().filter(|other| other.id != user.id) {
            messages.extend(newer_than(&stack.message_ids(user, other).await, since));
        }
        assert!(!notifications.is_empty() || !messages.is_empty());
        // Newer than the cursor: the replay's one-minute lag repeats what it had.
        assert_eq!(
            newer_than(&delivered(socket, "new_notification"), since),
            notifications,
            "{}",
            user.username
        );
        assert_eq!(
            newer_than(&delivered(socket, "new_message"), since),
            messages,
            "{}",
            user.username
        );
        assert_eq!(socket.events_of_type("error"), Vec::<Value>::new());
    }
    // A: B's DM, C's like and comment; the post is in REST and in C's feed.
    assert_eq!(
        newer_than(&stack.notification_ids(a).await, &cursors[0]).len(),
        3
    );
    stack
        .call(b, "GET", &format!("/posts/{post_id}"), None, 200)
        .await;
    eventually("the post is in its follower's feed", WAIT, || async {
        stack.call(c, "GET", "/feed", None, 200).await["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|p| p["id"] == post_id.as_str()))
    })
    .await;
    // The restarted side pushes live again.
    let live = stack.message(b, c, "after the restart").await;
    resumed[&c.id]
        .next_event_where("a live DM", WAIT, |event| {
            event["type"] == "new_message" && event["data"]["id"] == live["id"]
        })
        .await;
    stack.stop().await;
}
