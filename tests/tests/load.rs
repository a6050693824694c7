//! Load test (issue 12): N real sockets on the local gateway (default 200,
//! `RIPPLE_LOAD_SOCKETS` overrides; `make load` runs 1,000 with an optimised build), two
//! per user, a fixed follow graph and a fixed set of actions drawn from a seeded random
//! generator: posts, likes and comments on posts whose rooms sockets joined, direct
//! messages and follows, run concurrently over REST.
//!
//! From the actions alone the test computes what every socket must receive — `post_created`
//! (author and followers), `new_comment` (room members), `new_message` (both sides),
//! `new_notification` (the liked or commented post's author unless it is the actor, the
//! DM's recipient, the followee; checked against `GET /notifications`) — and asserts per
//! socket: nothing missing, nothing extra, no event twice after dropping repeats by
//! `event_id`, no `error`. `like_updated` may be coalesced per stream batch, so only each
//! room member's last like count per post is checked (it must be the final count), and no
//! socket gets one for a room it did not join. Presence and replies are not counted.
//!
//! It prints the sockets, the expected deliveries, deliveries per second and the time from
//! the first action to the last delivery.
//!
//! Run: `cargo test -p ripple-tests --test load -- --nocapture` (needs `make tools`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ripple_tests::bench::seed::Seeder;
use ripple_tests::realtime::{
    check_deliveries, event_ids, DeliveryKey, RealtimeStack, User, WsClient, NOT_DELIVERIES, QUIET,
    WAIT,
};
use serde_json::{json, Value};

/// Sockets when `RIPPLE_LOAD_SOCKETS` is not set.
const DEFAULT_SOCKETS: usize = 200;

/// Each user follows this many others, drawn at random.
const FOLLOWS_PER_USER: usize = 5;

/// REST calls in flight at once.
const CONCURRENCY: usize = 16;

/// The seed of the follow graph, the rooms and the actions.
const SEED: u64 = 0x5249_5050_4c45;

fn sockets_wanted() -> usize {
    std::env::var("RIPPLE_LOAD_SOCKETS")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(DEFAULT_SOCKETS)
        .max(4)
}

/// One REST action of the load.
#[derive(Debug, Clone, Copy)]
enum Action {
    Post { author: usize },
    Like { user: usize, room: usize },
    Comment { user: usize, room: usize },
    Message { from: usize, to: usize },
    Follow { follower: usize, followee: usize },
}

/// The fixed workload: who follows whom, the rooms each socket joins, the actions.
struct Plan {
    users: usize,
    /// `follows[u]`: the users `u` follows.
    follows: Vec<BTreeSet<usize>>,
    /// Authors of the room posts (created before the sockets connect).
    room_authors: Vec<usize>,
    /// `rooms[s]`: the rooms socket `s` joins.
    rooms: Vec<BTreeSet<usize>>,
    actions: Vec<Action>,
}

impl Plan {
    fn new(sockets: usize, rng: &mut StdRng) -> Self {
        let users = sockets.div_ceil(2);
        let follows: Vec<BTreeSet<usize>> = (0..users)
            .map(|u| {
                let mut others: Vec<usize> = (0..users).filter(|&o| o != u).collect();
                others.shuffle(rng);
                others.into_iter().take(FOLLOWS_PER_USER).collect()
            })
            .collect();
        let room_count = (users / 10).max(5);
        let room_authors: Vec<usize> = (0..room_count).map(|_| rng.gen_range(0..users)).collect();
        let rooms: Vec<BTreeSet<usize>> = (0..sockets)
            .map(|_| {
                let joined = [0, 0, 1, 1, 2][rng.gen_range(0..5)];
                (0..joined).map(|_| rng.gen_range(0..room_count)).collect()
            })
            .collect();

        let mut actions = Vec::new();
        let mut authors = BTreeSet::new();
        for _ in 0..users / 2 {
            let author = rng.gen_range(0..users);
            authors.insert(author);
            actions.push(Action::Post { author });
        }
        let mut liked = HashSet::new();
        while liked.len() < users {
            let (user, room) = (rng.gen_range(0..users), rng.gen_range(0..room_count));
            if liked.insert((user, room)) {
                actions.push(Action::Like { user, room });
            }
        }
        for _ in 0..users / 2 {
            let (user, room) = (rng.gen_range(0..users), rng.gen_range(0..room_count));
            actions.push(Action::Comment { user, room });
        }
        for _ in 0..users / 2 {
            let from = rng.gen_range(0..users);
            let to = (from + rng.gen_range(1..users)) % users;
            actions.push(Action::Message { from, to });
        }
        // New follows only of users who do not post now, so every post's audience is the
        // graph above whatever order the actions run in.
        let mut follows_now = follows.clone();
        let quiet_users: Vec<usize> = (0..users).filter(|u| !authors.contains(u)).collect();
        let mut added = 0;
        while added < users / 10 && !quiet_users.is_empty() {
            let follower = rng.gen_range(0..users);
            let followee = quiet_users[rng.gen_range(0..quiet_users.len())];
            if follower != followee && follows_now[follower].insert(followee) {
                actions.push(Action::Follow { follower, followee });
                added += 1;
            }
        }
        actions.shuffle(rng);
        Self {
            users,
            follows,
            room_authors,
            rooms,
            actions,
        }
    }

    /// The sockets of user `u`.
    fn sockets_of(&self, u: usize) -> impl Iterator<Item = usize> + '_ {
        (2 * u..2 * u + 2).filter(|&s| s < self.rooms.len())
    }

    fn followers_of(&self, author: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.users).filter(move |&u| self.follows[u].contains(&author))
    }

    /// Notifications each user gets from the actions (who the store notifies).
    fn notification_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.users];
        for action in &self.actions {
            match *action {
                Action::Like { user, room } | Action::Comment { user, room } => {
                    let author = self.room_authors[room];
                    if author != user {
                        counts[author] += 1;
                    }
                }
                Action::Message { to, .. } => counts[to] += 1,
                Action::Follow { followee, .. } => counts[followee] += 1,
                Action::Post { .. } => {}
            }
        }
        counts
    }
}

fn id(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

fn key(kind: &str, id: &str) -> DeliveryKey {
    (kind.to_owned(), id.to_owned())
}

/// A UUIDv7 of the millisecond `ms`: the cursor of that moment (ids compare with it).
fn cursor_at(ms: i64) -> String {
    let ms = u64::try_from(ms).expect("a time after 1970");
    uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10])
        .into_uuid()
        .to_string()
}

/// Runs one action; returns the created item (post, comment, message) if any.
async fn run(stack: &RealtimeStack, users: &[User], rooms: &[String], action: Action) -> Value {
    match action {
        Action::Post { author } => stack.post(&users[author], "load post").await,
        Action::Like { user, room } => stack.like(&users[user], &rooms[room]).await,
        Action::Comment { user, room } => {
            stack
                .comment(&users[user], &rooms[room], "load comment")
                .await
        }
        Action::Message { from, to } => stack.message(&users[from], &users[to], "load dm").await,
        Action::Follow { follower, followee } => {
            stack.follow(&users[follower], &users[followee]).await;
            Value::Null
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_socket_gets_exactly_its_events_under_load() {
    let socket_count = sockets_wanted();
    let mut rng = StdRng::seed_from_u64(SEED);
    let plan = Plan::new(socket_count, &mut rng);
    if socket_count > 500 {
        // Two file descriptors per socket in this process (client and gateway side).
        let limit = ripple_tests::bench::lean::raise_open_file_limit().expect("open-file limit");
        assert!(
            limit as usize > 3 * socket_count,
            "open-file limit {limit} is too low"
        );
    }
    let stack = RealtimeStack::start_with(|options| {
        // The workload is fixed and spread over many users; the per-user budgets stay.
        options
            .environment
            .push(("RATE_LIMIT_POSTS_PER_MINUTE".into(), "1000".into()));
    })
    .await;
    let set_up = Instant::now();

    // Users and follows straight through the store; the room posts over REST.
    let seeder = Seeder::new(&stack).expect("seeder");
    let users = seeder.users("load", plan.users).await.expect("users");
    for author in 0..plan.users {
        let followers: Vec<User> = plan
            .followers_of(author)
            .map(|u| users[u].clone())
            .collect();
        seeder
            .follow(&followers, &users[author])
            .await
            .expect("follows");
    }
    let rooms: Vec<String> = stream::iter(&plan.room_authors)
        .map(|&author| {
            let users = &users;
            let stack = &stack;
            async move { id(&stack.post(&users[author], "a room").await) }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    // The router handles records in order: once a sentinel sees the edit of its own post,
    // the set-up's records (follow notifications, room posts) are behind it and cannot
    // reach the load's sockets.
    let sentinel = stack.register("sentinel").await;
    let watch = stack.connect(&sentinel).await;
    let marker = id(&stack.post(&sentinel, "marker").await);
    stack
        .call(
            &sentinel,
            "PATCH",
            &format!("/posts/{marker}"),
            Some(json!({"text": "marker, edited"})),
            200,
        )
        .await;
    watch
        .next_event_where("the marker's edit", Duration::from_secs(120), |event| {
            event["type"] == "post_updated" && event["data"]["id"] == marker.as_str()
        })
        .await;

    let sockets: Vec<WsClient> = stream::iter(0..socket_count)
        .map(|s| stack.connect(&users[s / 2]))
        .buffered(CONCURRENCY * 2)
        .collect()
        .await;
    stream::iter(sockets.iter().zip(&plan.rooms))
        .for_each_concurrent(CONCURRENCY * 2, |(socket, joined)| {
            let rooms = &rooms;
            async move {
                for &room in joined {
                    socket.subscribe(&format!("post:{}", rooms[room])).await;
                }
            }
        })
        .await;
    let baselines: Vec<HashSet<String>> = sockets.iter().map(event_ids).collect();
    eprintln!(
        "load: set-up of {} users, {} follows, {} rooms, {socket_count} sockets: {:.1} s",
        plan.users,
        plan.follows.iter().map(BTreeSet::len).sum::<usize>(),
        rooms.len(),
        set_up.elapsed().as_secs_f64()
    );

    // The load.
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let results: Vec<(usize, Value)> = stream::iter(plan.actions.iter().enumerate())
        .map(|(n, &action)| {
            let (stack, users, rooms) = (&stack, &users, &rooms);
            async move { (n, run(stack, users, rooms, action).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let requests_done = started.elapsed();
    let created: HashMap<usize, Value> = results.into_iter().collect();

    // What each socket must get.
    let mut expected: Vec<BTreeSet<DeliveryKey>> = vec![BTreeSet::new(); socket_count];
    for (n, action) in plan.actions.iter().enumerate() {
        let item = &created[&n];
        let mut to_users = |users: &mut dyn Iterator<Item = usize>, delivery: DeliveryKey| {
            for user in users {
                for socket in plan.sockets_of(user) {
                    expected[socket].insert(delivery.clone());
                }
            }
        };
        match *action {
            Action::Post { author } => to_users(
                &mut std::iter::once(author).chain(plan.followers_of(author)),
                key("post_created", &id(item)),
            ),
            Action::Comment { room, .. } => {
                for (socket, joined) in plan.rooms.iter().enumerate() {
                    if joined.contains(&room) {
                        expected[socket].insert(key("new_comment", &id(item)));
                    }
                }
            }
            Action::Message { from, to } => {
                assert_eq!(item["status"], "sent", "public users: {item}");
                to_users(&mut [from, to].into_iter(), key("new_message", &id(item)));
            }
            Action::Like { .. } | Action::Follow { .. } => {}
        }
    }
    let since = cursor_at(started_at.timestamp_millis() - 1);
    let notifications: Vec<BTreeSet<String>> = stream::iter(&users)
        .map(|user| {
            let stack = &stack;
            let since = &since;
            async move {
                stack
                    .notification_ids(user)
                    .await
                    .into_iter()
                    .filter(|id| id > since)
                    .collect::<BTreeSet<String>>()
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let counts = plan.notification_counts();
    for (user, ids) in notifications.iter().enumerate() {
        assert_eq!(ids.len(), counts[user], "notifications of user {user}");
        for socket in plan.sockets_of(user) {
            expected[socket].extend(ids.iter().map(|id| key("new_notification", id)));
        }
    }
    let expected_deliveries: usize = expected.iter().map(BTreeSet::len).sum();

    // Wait for all of it, then for anything extra.
    let deadline = Instant::now() + WAIT * 6 + Duration::from_millis(60 * socket_count as u64);
    loop {
        let missing = sockets
            .iter()
            .zip(&baselines)
            .zip(&expected)
            .filter(|((socket, baseline), expected)| {
                check_deliveries(socket, baseline, expected).is_err()
            })
            .count();
        if missing == 0 {
            break;
        }
        if Instant::now() > deadline {
            let problems: Vec<String> = sockets
                .iter()
                .zip(&baselines)
                .zip(&expected)
                .filter_map(|((socket, baseline), expected)| {
                    check_deliveries(socket, baseline, expected).err()
                })
                .take(10)
                .collect();
            panic!(
                "{missing} of {socket_count} sockets still differ; the first:\n{}",
                problems.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The counted deliveries, and apart from them the coalesced like counts.
    let last_arrival = |likes: bool| {
        sockets
            .iter()
            .flat_map(WsClient::frames)
            .filter(|frame| {
                let kind = frame.json["type"].as_str().unwrap_or_default();
                !NOT_DELIVERIES.contains(&kind) && (kind == "like_updated") == likes
            })
            .map(|frame| frame.received_at)
            .max()
    };
    let last_delivery = last_arrival(false).expect("deliveries arrived");
    let last_like_update = last_arrival(true);
    let span = last_delivery.saturating_duration_since(started);
    tokio::time::sleep(QUIET).await;
    let problems: Vec<String> = sockets
        .iter()
        .zip(&baselines)
        .zip(&expected)
        .filter_map(|((socket, baseline), expected)| {
            check_deliveries(socket, baseline, expected).err()
        })
        .collect();
    assert!(
        problems.is_empty(),
        "after a quiet period:\n{}",
        problems.join("\n")
    );

    // Likes: each room member is left with the final count; nobody else hears of it.
    let final_counts: Vec<Option<u64>> = stream::iter(&rooms)
        .map(|room| {
            let stack = &stack;
            let reader = &users[0];
            async move {
                stack
                    .call(reader, "GET", &format!("/posts/{room}"), None, 200)
                    .await["like_count"]
                    .as_u64()
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let room_index: BTreeMap<&str, usize> = rooms
        .iter()
        .enumerate()
        .map(|(n, room)| (room.as_str(), n))
        .collect();
    for (socket, joined) in sockets.iter().zip(&plan.rooms) {
        let mut shown: BTreeMap<usize, (Option<u64>, Option<u64>)> = BTreeMap::new();
        for event in socket.deliveries() {
            if event["type"] != "like_updated" {
                continue;
            }
            let post = event["data"]["post_id"].as_str().unwrap_or_default();
            let room = *room_index
                .get(post)
                .unwrap_or_else(|| panic!("{}: like_updated for {post}", socket.label));
            assert!(
                joined.contains(&room),
                "{}: not in room {room}",
                socket.label
            );
            let version = event["data"]["version"].as_u64();
            let count = event["data"]["like_count"].as_u64();
            let entry = shown.entry(room).or_insert((version, count));
            // The highest version when events carry one, else the last one.
            if version.is_none() || version >= entry.0 {
                *entry = (version, count);
            }
        }
        for &room in joined {
            let liked = final_counts[room].unwrap_or_default() > 0;
            let last = shown.get(&room).and_then(|(_, count)| *count);
            if liked {
                assert_eq!(
                    last, final_counts[room],
                    "{}: like count of room {room}",
                    socket.label
                );
            }
        }
    }

    let repeats: usize = sockets.iter().map(WsClient::repeated_deliveries).sum();
    eprintln!(
        "load: {socket_count} sockets ({} users), {} actions (REST done in {:.2} s), \
         {expected_deliveries} expected deliveries, all received; {repeats} repeats dropped \
         by event_id",
        plan.users,
        plan.actions.len(),
        requests_done.as_secs_f64()
    );
    eprintln!(
        "load: first action to last delivery {:.2} s, {:.0} deliveries/s; \
         to the last like_updated {:.2} s",
        span.as_secs_f64(),
        expected_deliveries as f64 / span.as_secs_f64().max(0.001),
        last_like_update.map_or(0.0, |at| at
            .saturating_duration_since(started)
            .as_secs_f64()),
    );
    stack.stop().await;
}
