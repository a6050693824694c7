//! REST response → WebSocket frame, per event type, closed loop (one sample in flight):
//! - `post_created_direct`: a post to a small audience (one socket per follower; every
//!   socket is a sample);
//! - `new_message`: a DM, on the recipient's socket;
//! - `new_notification`: a comment on the recipient's post, on the recipient's socket;
//!
//! plus the REST round trips of those writes (what the push path adds to them shows there).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use rand::Rng;
use serde_json::{json, Value};

use super::stats::Summary;
use super::{progress, BenchStack};
use crate::realtime::{User, WsClient};

/// How many samples of each series, and how they are spaced.
#[derive(Debug, Clone, Copy)]
pub struct LatencyPlan {
    pub posts: usize,
    pub followers: usize,
    pub messages: usize,
    pub notifications: usize,
    pub warmup: usize,
    /// Pause between samples; a random 0..jitter is added so that samples do not lock onto
    /// a poller's phase.
    pub pace: Duration,
    pub jitter: Duration,
    pub timeout: Duration,
}

/// One run's latency series, by name.
pub struct LatencyResult {
    pub series: Vec<(&'static str, &'static str, Summary)>,
}

impl LatencyResult {
    pub fn get(&self, name: &str) -> Option<Summary> {
        self.series
            .iter()
            .find(|(series, _, _)| *series == name)
            .map(|(_, _, summary)| *summary)
    }

    pub fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (name, description, summary) in &self.series {
            let mut value = summary.to_json();
            value["description"] = json!(description);
            map.insert((*name).to_owned(), value);
        }
        Value::Object(map)
    }
}

/// The series `measure` produces, in order: name and description.
const SERIES: [(&str, &str); 6] = [
    (
        "post_created_direct",
        "post_created to a small audience: REST response → each follower socket",
    ),
    (
        "new_message",
        "new_message of a DM: REST response → recipient socket",
    ),
    (
        "new_notification",
        "new_notification of a comment: REST response → post author's socket",
    ),
    ("rest_post", "REST POST /posts round trip"),
    (
        "rest_message",
        "REST POST /conversations/{id}/messages round trip",
    ),
    ("rest_comment", "REST POST /posts/{id}/comments round trip"),
];

/// The users and sockets the samples are taken with.
struct Cast {
    author: User,
    sockets: Vec<WsClient>,
    sender: User,
    recipient: User,
    recipient_socket: WsClient,
}

impl Cast {
    /// An author followed by `plan.followers` connected followers, and a DM sender and a
    /// connected recipient; waits for the stack to settle.
    async fn set_up(bench: &BenchStack, plan: &LatencyPlan, tag: &str) -> Self {
        let stack = &bench.stack;
        let author = stack.register(&format!("{tag}_author")).await;
        let followers: Vec<User> = stream::iter(0..plan.followers)
            .map(|i| {
                let author = &author;
                async move {
                    let follower = stack.register(&format!("{tag}_fan{i}")).await;
                    stack.follow(&follower, author).await;
                    follower
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        let mut sockets = Vec::with_capacity(followers.len());
        for follower in &followers {
            sockets.push(stack.connect(follower).await);
        }
        let sender = stack.register(&format!("{tag}_sender")).await;
        let recipient = stack.register(&format!("{tag}_recipient")).await;
        let recipient_socket = stack.connect(&recipient).await;
        let settle = bench.settle(Duration::from_secs(120)).await;
        if let Err(error) = settle {
            progress(&format!("latency set-up: {error}"));
        }
        Self {
            author,
            sockets,
            sender,
            recipient,
            recipient_socket,
        }
    }
}

/// The three series on `bench`'s stack.
pub async fn measure(bench: &BenchStack, plan: &LatencyPlan, tag: &str) -> LatencyResult {
    let stack = &bench.stack;
    let cast = Cast::set_up(bench, plan, tag).await;
    progress(&format!(
        "{tag}: {} posts to {} sockets",
        plan.posts,
        cast.sockets.len()
    ));
    posts(bench, plan, &cast.author, &cast.sockets, plan.warmup).await;
    let (post_each, post_rest) = posts(bench, plan, &cast.author, &cast.sockets, plan.posts).await;
    progress(&format!("{tag}: {} DMs", plan.messages));
    messages(
        bench,
        plan,
        &cast.sender,
        &cast.recipient,
        &cast.recipient_socket,
        plan.warmup,
    )
    .await;
    let (dm, dm_rest) = messages(
        bench,
        plan,
        &cast.sender,
        &cast.recipient,
        &cast.recipient_socket,
        plan.messages,
    )
    .await;
    progress(&format!(
        "{tag}: {} comment notifications",
        plan.notifications
    ));
    let post = stack.post(&cast.recipient, "a post to comment on").await;
    let post_id = id_of(&post);
    notifications(
        bench,
        plan,
        &cast.sender,
        &post_id,
        &cast.recipient_socket,
        plan.warmup,
    )
    .await;
    let (notification, comment_rest) = notifications(
        bench,
        plan,
        &cast.sender,
        &post_id,
        &cast.recipient_socket,
        plan.notifications,
    )
    .await;
    let samples = [
        post_each,
        dm,
        notification,
        post_rest,
        dm_rest,
        comment_rest,
    ];
    LatencyResult {
        series: SERIES
            .iter()
            .zip(&samples)
            .map(|(&(name, description), samples)| (name, description, Summary::of(samples)))
            .collect(),
    }
}

async fn pause(plan: &LatencyPlan) {
    let jitter_ms = u64::try_from(plan.jitter.as_millis()).unwrap_or(0).max(1);
    let jitter = rand::thread_rng().gen_range(0..jitter_ms);
    tokio::time::sleep(plan.pace + Duration::from_millis(jitter)).await;
}

fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

/// (REST response → frame on each socket, REST round trips).
async fn posts(
    bench: &BenchStack,
    plan: &LatencyPlan,
    author: &User,
    sockets: &[WsClient],
    count: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut pushes = Vec::with_capacity(count * sockets.len());
    let mut round_trips = Vec::with_capacity(count);
    for i in 0..count {
        let sent = Instant::now();
        let post = bench.stack.post(author, &format!("bench post {i}")).await;
        let responded = Instant::now();
        let post_id = id_of(&post);
        for socket in sockets {
            // Frames are stamped on arrival by the reader task: waiting for the sockets one
            // after the other does not skew their times.
            let frame = socket
                .next_frame_where("post_created", plan.timeout, |event| {
                    event["type"] == "post_created" && event["data"]["id"] == post_id.as_str()
                })
                .await;
            pushes.push(frame.received_at.saturating_duration_since(responded));
        }
        round_trips.push(responded - sent);
        pause(plan).await;
    }
    (pushes, round_trips)
}

async fn messages(
    bench: &BenchStack,
    plan: &LatencyPlan,
    sender: &User,
    recipient: &User,
    socket: &WsClient,
    count: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    sample_pushes(plan, socket, count, "new_message", "id", |i| async move {
        bench
            .stack
            .message(sender, recipient, &format!("bench message {i}"))
            .await
    })
    .await
}

async fn notifications(
    bench: &BenchStack,
    plan: &LatencyPlan,
    commenter: &User,
    post_id: &str,
    author_socket: &WsClient,
    count: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    sample_pushes(
        plan,
        author_socket,
        count,
        "new_notification",
        "comment_id",
        |i| async move {
            bench
                .stack
                .comment(commenter, post_id, &format!("bench comment {i}"))
                .await
        },
    )
    .await
}

/// `count` closed-loop samples of a write (`write(i)`, answering the written item) and the
/// `event_type` frame whose `data[id_field]` is its id on `socket`: push latencies (REST
/// response → frame) and REST round trips.
async fn sample_pushes<W, F>(
    plan: &LatencyPlan,
    socket: &WsClient,
    count: usize,
    event_type: &str,
    id_field: &str,
    write: W,
) -> (Vec<Duration>, Vec<Duration>)
where
    W: Fn(usize) -> F,
    F: std::future::Future<Output = Value>,
{
    let mut pushes = Vec::with_capacity(count);
    let mut round_trips = Vec::with_capacity(count);
    for i in 0..count {
        let sent = Instant::now();
        let written = write(i).await;
        let responded = Instant::now();
        let id = id_of(&written);
        let frame = socket
            .next_frame_where(event_type, plan.timeout, |event| {
                event["type"] == event_type && event["data"][id_field] == id.as_str()
            })
            .await;
        pushes.push(frame.received_at.saturating_duration_since(responded));
        round_trips.push(responded - sent);
        pause(plan).await;
    }
    (pushes, round_trips)
}
