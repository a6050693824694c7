//! `bench_realtime`: how long an event takes from the REST response to the screen, measured
//! end to end through one in-process local stack (in-memory dynoxide, the real moto server,
//! the real stream and SQS pollers, the WebSocket gateway) with real sockets, all on
//! 127.0.0.1.
//!
//! One run measures, one scenario after the other (closed loop: one sample in flight):
//! 1. `post_created` to a small audience (the stream router pushes directly);
//! 2. `post_created` to an audience above `FANOUT_DIRECT_MAX_CONNECTIONS` (through the SQS
//!    fan-out queue and the push worker);
//! 3. `new_message` of a DM (direct), and `user_typing` (relayed by `ws-message`, no stream);
//! 4. the REST round trips of the writes themselves,
//!
//! and prints percentiles and the ratios between them. Local figures are relative: the stream
//! poll interval sets the local floor (on AWS it is Lambda's stream polling), so compare
//! ratios, not milliseconds. See "Benchmarks" in `docs/realtime.md`.
//!
//! Run: `cargo run -p ripple-tests --release --bin bench_realtime -- --help` (needs
//! `make tools` for `.venv/bin/moto_server`), or `make bench`.

use std::io::Write;
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::stream::{self, StreamExt};
use futures::FutureExt;
use rand::Rng;
use ripple_tests::realtime::{eventually, RealtimeStack, User, WsClient};
use serde_json::{json, Value};

/// How long the first event of a scenario may take: it waits behind the stream records of
/// the scenario's set-up (registrations, follows, connections).
const BACKLOG_WAIT: Duration = Duration::from_secs(120);

/// Minimum spacing of two typing frames on one connection: the server allows one per second
/// (`ws_message::typing::TYPING_INTERVAL`); the margin absorbs scheduling jitter.
const TYPING_SPACING: Duration = Duration::from_millis(1200);

/// Sockets the typing sender rotates through (at most the per-user connection limit).
const TYPING_SOCKETS: usize = 10;

/// Concurrent registrations / handshakes during set-up.
const SETUP_CONCURRENCY: usize = 8;

/// The latency bounds of the product target (issue 5): < 100 ms, > 95 % within 500 ms.
const TARGET: Duration = Duration::from_millis(100);
const TARGET_TAIL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench_realtime",
    about = "Realtime latency benchmark: REST response → WebSocket event, through one local stack"
)]
struct Args {
    /// Posts measured on the direct path (small audience).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    posts: u32,
    /// Followers of the direct-path author, one open socket each.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    followers: u32,
    /// Posts measured on the SQS path (large audience).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    sqs_posts: u32,
    /// Followers of the SQS-path author.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=100))]
    sqs_followers: u32,
    /// Open sockets per SQS-path follower (audience = sqs-followers × this).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=50))]
    sockets_per_follower: u32,
    /// `FANOUT_DIRECT_MAX_CONNECTIONS` for the run: audiences above it go through SQS.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    fanout_threshold: u32,
    /// DMs measured (`new_message` on the recipient's socket).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    messages: u32,
    /// Typing frames measured (`user_typing` on the recipient's socket).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    typing: u32,
    /// Unmeasured samples before each scenario (first-call effects).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=100))]
    warmup: u32,
    /// The local stream poller's interval (the local latency floor of stream-borne events).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=5_000))]
    stream_poll_ms: u64,
    /// Pause between samples; a random 0..stream-poll-ms is added so samples do not lock
    /// onto the poller's phase.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pace_ms: u64,
    /// Longest wait for one event (a missing event aborts the run).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    timeout_secs: u64,
    /// Print the results as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// Copy the in-process functions' stdout (CloudWatch EMF metric lines, one per
    /// invocation) to stderr instead of discarding it.
    #[arg(long)]
    function_logs: bool,
}

impl Args {
    fn count(value: u32) -> usize {
        usize::try_from(value).unwrap_or(usize::MAX)
    }

    fn sqs_audience(&self) -> usize {
        Self::count(self.sqs_followers) * Self::count(self.sockets_per_follower)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    fn stream_poll(&self) -> Duration {
        Duration::from_millis(self.stream_poll_ms)
    }

    /// The audiences must fall on the intended sides of the threshold, or the comparison
    /// of the two paths means nothing.
    fn validate(&self) -> Result<(), String> {
        if self.followers > self.fanout_threshold {
            return Err(format!(
                "--followers {} must not exceed --fanout-threshold {} (the direct path)",
                self.followers, self.fanout_threshold
            ));
        }
        if self.sqs_audience() <= Self::count(self.fanout_threshold) {
            return Err(format!(
                "--sqs-followers × --sockets-per-follower = {} must exceed --fanout-threshold {} \
                 (the SQS path)",
                self.sqs_audience(),
                self.fanout_threshold
            ));
        }
        Ok(())
    }

    /// Function environment of the run: the threshold, and limits raised so that the
    /// benchmark's own volume is never refused (rate limits are not what is measured).
    fn environment(&self) -> Vec<(String, String)> {
        let connections_per_user = Self::count(self.sockets_per_follower)
            .max(TYPING_SOCKETS)
            .max(10);
        [
            (
                "FANOUT_DIRECT_MAX_CONNECTIONS",
                self.fanout_threshold.to_string(),
            ),
            ("MAX_CONNECTIONS_PER_USER", connections_per_user.to_string()),
            ("RATE_LIMIT_POSTS_PER_MINUTE", "1000000".to_owned()),
            ("RATE_LIMIT_MESSAGES_PER_MINUTE", "1000000".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(message) = args.validate() {
        eprintln!("bench_realtime: {message}");
        return std::process::ExitCode::from(2);
    }
    let report_output = match take_stdout(args.function_logs) {
        Ok(output) => output,
        Err(e) => {
            eprintln!("bench_realtime: cannot redirect the functions' stdout: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench_realtime: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args, report_output))
}

/// The in-process functions write CloudWatch EMF metric lines, on stdout as on Lambda; here
/// they go to stderr (`--function-logs`) or nowhere, so stdout carries the report alone
/// (`--json` can be piped). Returns the report's handle on stdout.
fn take_stdout(function_logs: bool) -> std::io::Result<std::fs::File> {
    use shared::telemetry::emf::{set_sink, Sink};
    set_sink(if function_logs {
        Sink::Stderr
    } else {
        Sink::Discard
    });
    std::io::stdout().flush()?;
    Ok(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
}

async fn run(args: Args, mut output: std::fs::File) -> std::process::ExitCode {
    let started = Instant::now();
    progress(&format!(
        "starting the local stack (stream poll {} ms, fan-out threshold {})",
        args.stream_poll_ms, args.fanout_threshold
    ));
    let stack = RealtimeStack::start_with(|options| {
        options.stream_poll_interval = args.stream_poll();
        options.environment.extend(args.environment());
    })
    .await;
    // A failed wait panics (the support module reports what the socket did receive); catch
    // it so that the stack, moto included, is still stopped.
    let measured = AssertUnwindSafe(measure(&stack, &args))
        .catch_unwind()
        .await;
    stack.stop().await;
    let Ok(mut report) = measured else {
        eprintln!("bench_realtime: the run failed (see the panic above)");
        return std::process::ExitCode::FAILURE;
    };
    report.duration = started.elapsed();
    let text = if args.json {
        format!("{}\n", report.to_json(&args))
    } else {
        report.to_table(&args)
    };
    match output.write_all(text.as_bytes()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_realtime: cannot write the report: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn progress(message: &str) {
    eprintln!("bench_realtime: {message}");
}

// ---- the scenarios --------------------------------------------------------------------------

/// Everything one run measured.
struct Report {
    direct: PostSamples,
    queued: PostSamples,
    messages: Vec<Duration>,
    message_round_trips: Vec<Duration>,
    typing: Vec<Duration>,
    direct_path: String,
    queue_path: String,
    duration: Duration,
}

/// Samples of one `post_created` scenario.
#[derive(Default)]
struct PostSamples {
    /// REST response → `post_created` on each socket (posts × sockets samples).
    each_socket: Vec<Duration>,
    /// REST response → `post_created` on the last socket to get it (one sample per post).
    last_socket: Vec<Duration>,
    /// `POST /posts` request sent → response read.
    rest: Vec<Duration>,
}

async fn measure(stack: &RealtimeStack, args: &Args) -> Report {
    let pacer = Pacer::new(args);
    let timeout = args.timeout();
    let warmup = Args::count(args.warmup);

    // 1. Direct path: a small audience, one socket per follower.
    progress(&format!(
        "direct path: {} followers with a socket each",
        args.followers
    ));
    let author = stack.register("bench_direct_author").await;
    let followers = register_followers(stack, &author, "bench_fan", args.followers).await;
    let direct_sockets = connect_all(stack, &followers, 1).await;
    let direct_path = verify_direct_path(stack, &author, &direct_sockets).await;
    measure_posts(stack, &author, &direct_sockets, warmup, &pacer, timeout).await;
    progress(&format!("direct path: measuring {} posts", args.posts));
    let direct = measure_posts(
        stack,
        &author,
        &direct_sockets,
        Args::count(args.posts),
        &pacer,
        timeout,
    )
    .await;

    // 2. SQS path: an audience above the threshold.
    progress(&format!(
        "SQS path: {} followers × {} sockets",
        args.sqs_followers, args.sockets_per_follower
    ));
    let big_author = stack.register("bench_sqs_author").await;
    let big_followers =
        register_followers(stack, &big_author, "bench_crowd", args.sqs_followers).await;
    let queued_sockets = connect_all(
        stack,
        &big_followers,
        Args::count(args.sockets_per_follower),
    )
    .await;
    let queue_path = verify_queue_path(stack, &big_author, &queued_sockets).await;
    measure_posts(stack, &big_author, &queued_sockets, warmup, &pacer, timeout).await;
    progress(&format!("SQS path: measuring {} posts", args.sqs_posts));
    let queued = measure_posts(
        stack,
        &big_author,
        &queued_sockets,
        Args::count(args.sqs_posts),
        &pacer,
        timeout,
    )
    .await;

    // 3. DMs and typing between two users with no other sockets around.
    let sender = stack.register("bench_sender").await;
    let recipient = stack.register("bench_recipient").await;
    let recipient_socket = stack.connect(&recipient).await;
    // The first message waits behind the set-up's stream records.
    measure_messages(
        stack,
        &sender,
        &recipient,
        &recipient_socket,
        1,
        &pacer,
        BACKLOG_WAIT,
    )
    .await;
    measure_messages(
        stack,
        &sender,
        &recipient,
        &recipient_socket,
        warmup,
        &pacer,
        timeout,
    )
    .await;
    progress(&format!("DMs: measuring {} messages", args.messages));
    let (messages, message_round_trips) = measure_messages(
        stack,
        &sender,
        &recipient,
        &recipient_socket,
        Args::count(args.messages),
        &pacer,
        timeout,
    )
    .await;

    let typing_sockets: Vec<WsClient> =
        connect_all(stack, std::slice::from_ref(&sender), TYPING_SOCKETS).await;
    let mut typist = Typist::new(&typing_sockets, &sender, &recipient, &recipient_socket);
    for _ in 0..warmup {
        typist.measure_one(timeout).await;
        pacer.pause().await;
    }
    progress(&format!("typing: measuring {} frames", args.typing));
    let mut typing = Vec::with_capacity(Args::count(args.typing));
    for _ in 0..args.typing {
        typing.push(typist.measure_one(timeout).await);
        pacer.pause().await;
    }

    Report {
        direct,
        queued,
        messages,
        message_round_trips,
        typing,
        direct_path,
        queue_path,
        duration: Duration::ZERO,
    }
}

/// Registers `count` users named `{prefix}_{i}` who follow `author`.
async fn register_followers(
    stack: &RealtimeStack,
    author: &User,
    prefix: &str,
    count: u32,
) -> Vec<User> {
    stream::iter(0..count)
        .map(|i| async move {
            let follower = stack.register(&format!("{prefix}_{i:03}")).await;
            stack.follow(&follower, author).await;
            follower
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await
}

/// Opens `per_user` sockets for each of `users`.
async fn connect_all(stack: &RealtimeStack, users: &[User], per_user: usize) -> Vec<WsClient> {
    stream::iter(
        users
            .iter()
            .flat_map(|user| std::iter::repeat_n(user, per_user)),
    )
    .map(|user| stack.connect(user))
    .buffer_unordered(SETUP_CONCURRENCY)
    .collect()
    .await
}

/// A `post_created` event about `post_id`.
fn is_post_created(post_id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |event| event["type"] == "post_created" && event["data"]["id"] == post_id
}

fn id_of(body: &Value) -> String {
    body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

/// Posts as `author` and waits until every socket has the post; returns the REST round trip
/// and each socket's latency from the REST response.
async fn post_and_collect(
    stack: &RealtimeStack,
    author: &User,
    sockets: &[WsClient],
    text: &str,
    timeout: Duration,
) -> (Duration, Vec<Duration>) {
    let sent = Instant::now();
    let post = stack.post(author, text).await;
    let responded = Instant::now();
    let post_id = id_of(&post);
    let mut latencies = Vec::with_capacity(sockets.len());
    for socket in sockets {
        // The reader task stamps each frame on arrival, so waiting for the sockets one
        // after the other does not skew their times.
        let frame = socket
            .next_frame_where("post_created", timeout, is_post_created(&post_id))
            .await;
        latencies.push(frame.received_at.saturating_duration_since(responded));
    }
    (responded - sent, latencies)
}

async fn measure_posts(
    stack: &RealtimeStack,
    author: &User,
    sockets: &[WsClient],
    count: usize,
    pacer: &Pacer,
    timeout: Duration,
) -> PostSamples {
    let mut samples = PostSamples::default();
    for i in 0..count {
        let (rest, latencies) =
            post_and_collect(stack, author, sockets, &format!("bench post {i}"), timeout).await;
        samples.rest.push(rest);
        samples
            .last_socket
            .push(latencies.iter().copied().max().unwrap_or_default());
        samples.each_socket.extend(latencies);
        pacer.pause().await;
    }
    samples
}

/// Proves the small audience is pushed directly: with the push worker's queue poller paused,
/// every socket still receives the post. (Also drains the set-up's stream backlog.)
async fn verify_direct_path(stack: &RealtimeStack, author: &User, sockets: &[WsClient]) -> String {
    let poller = stack.push_worker_poller();
    poller.pause();
    post_and_collect(stack, author, sockets, "direct path check", BACKLOG_WAIT).await;
    poller.resume();
    format!(
        "direct: {} sockets received the post while the push worker's queue poller was paused",
        sockets.len()
    )
}

/// Proves the large audience goes through SQS: with the push worker's queue poller paused,
/// the post waits in the fan-out queue and no socket has it; resumed, every socket gets it.
async fn verify_queue_path(stack: &RealtimeStack, author: &User, sockets: &[WsClient]) -> String {
    eventually("the fan-out queue is empty", BACKLOG_WAIT, || async {
        stack.fanout_queue_depth().await == 0
    })
    .await;
    let poller = stack.push_worker_poller();
    poller.pause();
    let post = stack.post(author, "queue path check").await;
    let post_id = id_of(&post);
    // Waits behind the set-up's stream records (connections, follows).
    eventually(
        "the post's fan-out chunks wait in the queue",
        BACKLOG_WAIT,
        || async { stack.fanout_queue_depth().await >= 1 },
    )
    .await;
    let chunks = stack.fanout_queue_depth().await;
    let early = sockets
        .iter()
        .filter(|socket| {
            socket
                .events_of_type("post_created")
                .iter()
                .any(is_post_created(&post_id))
        })
        .count();
    assert_eq!(
        early, 0,
        "sockets got the post while the queue poller was paused: not the SQS path"
    );
    poller.resume();
    for socket in sockets {
        socket
            .next_frame_where("post_created", BACKLOG_WAIT, is_post_created(&post_id))
            .await;
    }
    format!(
        "sqs: {} sockets; the post waited as {chunks} fan-out message(s) while the queue poller \
         was paused, no socket had it, and every socket got it once resumed",
        sockets.len()
    )
}

/// Sends `count` DMs and returns (REST response → `new_message` on the recipient's socket,
/// `POST /conversations/{id}/messages` round trip).
async fn measure_messages(
    stack: &RealtimeStack,
    sender: &User,
    recipient: &User,
    recipient_socket: &WsClient,
    count: usize,
    pacer: &Pacer,
    timeout: Duration,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut pushes = Vec::with_capacity(count);
    let mut round_trips = Vec::with_capacity(count);
    for i in 0..count {
        let sent = Instant::now();
        let message = stack
            .message(sender, recipient, &format!("bench message {i}"))
            .await;
        let responded = Instant::now();
        let message_id = id_of(&message);
        let frame = recipient_socket
            .next_frame_where("new_message", timeout, |event| {
                event["type"] == "new_message" && event["data"]["id"] == message_id.as_str()
            })
            .await;
        pushes.push(frame.received_at.saturating_duration_since(responded));
        round_trips.push(responded - sent);
        pacer.pause().await;
    }
    (pushes, round_trips)
}

/// Sends typing frames from a rotation of the sender's sockets (the server allows one per
/// second per connection) and times their relay to the recipient.
struct Typist<'a> {
    sockets: &'a [WsClient],
    last_sent: Vec<Option<Instant>>,
    next: usize,
    to: String,
    from: String,
    recipient_socket: &'a WsClient,
    start: bool,
}

impl<'a> Typist<'a> {
    fn new(
        sockets: &'a [WsClient],
        sender: &User,
        recipient: &User,
        recipient_socket: &'a WsClient,
    ) -> Self {
        Self {
            sockets,
            last_sent: vec![None; sockets.len()],
            next: 0,
            to: recipient.id.clone(),
            from: sender.id.clone(),
            recipient_socket,
            start: true,
        }
    }

    /// One typing frame: ws frame sent → `user_typing` on the recipient's socket. States
    /// alternate, so each relay is told apart from the previous one.
    async fn measure_one(&mut self, timeout: Duration) -> Duration {
        let index = self.next;
        self.next = (self.next + 1) % self.sockets.len();
        if let Some(last) = self.last_sent[index] {
            tokio::time::sleep_until((last + TYPING_SPACING).into()).await;
        }
        let state = if self.start { "start" } else { "stop" };
        self.start = !self.start;
        let sent = Instant::now();
        self.last_sent[index] = Some(sent);
        self.sockets[index]
            .send(&json!({"action": "typing", "to": self.to, "state": state}))
            .await;
        let from = self.from.as_str();
        let frame = self
            .recipient_socket
            .next_frame_where("user_typing", timeout, |event| {
                event["type"] == "user_typing"
                    && event["data"]["from"] == from
                    && event["data"]["state"] == state
            })
            .await;
        frame.received_at.saturating_duration_since(sent)
    }
}

/// The pause between samples: `--pace-ms` plus a random share of the stream poll interval,
/// so that successive samples land at random phases of the poller.
struct Pacer {
    pace: Duration,
    jitter_ms: u64,
}

impl Pacer {
    fn new(args: &Args) -> Self {
        Self {
            pace: Duration::from_millis(args.pace_ms),
            jitter_ms: args.stream_poll_ms,
        }
    }

    async fn pause(&self) {
        let jitter = rand::thread_rng().gen_range(0..self.jitter_ms.max(1));
        tokio::time::sleep(self.pace + Duration::from_millis(jitter)).await;
    }
}

// ---- statistics and output ------------------------------------------------------------------

/// Percentiles of one series.
#[derive(Debug, Clone, Copy)]
struct Summary {
    samples: usize,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    max: Duration,
    /// Share of samples within [`TARGET`] / [`TARGET_TAIL`], 0..=1.
    within_target: f64,
    within_tail: f64,
}

impl Summary {
    fn of(samples: &[Duration]) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let share = |bound: Duration| {
            if sorted.is_empty() {
                0.0
            } else {
                sorted.iter().filter(|d| **d <= bound).count() as f64 / sorted.len() as f64
            }
        };
        Self {
            samples: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or_default(),
            within_target: share(TARGET),
            within_tail: share(TARGET_TAIL),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn ratio(numerator: Duration, denominator: Duration) -> f64 {
    if denominator.is_zero() {
        f64::NAN
    } else {
        numerator.as_secs_f64() / denominator.as_secs_f64()
    }
}

/// One row of the table.
struct Row {
    name: &'static str,
    description: &'static str,
    summary: Summary,
}

impl Report {
    fn rows(&self) -> Vec<Row> {
        let row = |name, description, samples: &[Duration]| Row {
            name,
            description,
            summary: Summary::of(samples),
        };
        vec![
            row(
                "post_direct_each",
                "post_created, direct path: REST response → each follower socket",
                &self.direct.each_socket,
            ),
            row(
                "post_direct_last",
                "post_created, direct path: REST response → last socket of the post",
                &self.direct.last_socket,
            ),
            row(
                "post_sqs_each",
                "post_created, SQS path: REST response → each follower socket",
                &self.queued.each_socket,
            ),
            row(
                "post_sqs_last",
                "post_created, SQS path: REST response → last socket of the post",
                &self.queued.last_socket,
            ),
            row(
                "dm_new_message",
                "new_message (direct): REST response → recipient socket",
                &self.messages,
            ),
            row(
                "typing_relay",
                "user_typing: ws frame sent → recipient socket (no stream)",
                &self.typing,
            ),
            row(
                "rest_post",
                "REST POST /posts round trip (direct-path posts)",
                &self.direct.rest,
            ),
            row(
                "rest_message",
                "REST POST /conversations/{id}/messages round trip",
                &self.message_round_trips,
            ),
        ]
    }

    fn ratios(&self, args: &Args) -> Vec<(&'static str, f64)> {
        let direct_last = Summary::of(&self.direct.last_socket);
        let direct_each = Summary::of(&self.direct.each_socket);
        let queued_last = Summary::of(&self.queued.last_socket);
        let messages = Summary::of(&self.messages);
        let typing = Summary::of(&self.typing);
        let rest_post = Summary::of(&self.direct.rest);
        let rest_message = Summary::of(&self.message_round_trips);
        vec![
            (
                "SQS-path p95 / direct p95 (last socket per post)",
                ratio(queued_last.p95, direct_last.p95),
            ),
            (
                "SQS-path p50 / direct p50 (last socket per post)",
                ratio(queued_last.p50, direct_last.p50),
            ),
            (
                "typing p50 / post_created direct p50 (each socket)",
                ratio(typing.p50, direct_each.p50),
            ),
            (
                "new_message p50 / post_created direct p50 (each socket)",
                ratio(messages.p50, direct_each.p50),
            ),
            (
                "post_created direct p50 / REST POST /posts p50",
                ratio(direct_each.p50, rest_post.p50),
            ),
            (
                "new_message p50 / REST POST messages p50",
                ratio(messages.p50, rest_message.p50),
            ),
            (
                "post_created direct p50 / stream poll interval",
                ratio(direct_each.p50, args.stream_poll()),
            ),
        ]
    }

    fn conditions(&self, args: &Args) -> Vec<(&'static str, Value)> {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let build = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        vec![
            ("build", json!(build)),
            ("cores", json!(cores)),
            ("stream_poll_ms", json!(args.stream_poll_ms)),
            (
                "fanout_direct_max_connections",
                json!(args.fanout_threshold),
            ),
            ("direct_audience_sockets", json!(args.followers)),
            ("sqs_audience_sockets", json!(args.sqs_audience())),
            ("pace_ms", json!(args.pace_ms)),
            ("pace_jitter_ms", json!(args.stream_poll_ms)),
            ("warmup_per_scenario", json!(args.warmup)),
            (
                "run_seconds",
                json!((self.duration.as_secs_f64() * 10.0).round() / 10.0),
            ),
        ]
    }

    fn to_table(&self, args: &Args) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Ripple realtime latency — one run, one in-process local stack (127.0.0.1 only)"
        );
        let conditions: Vec<String> = self
            .conditions(args)
            .into_iter()
            .map(|(name, value)| match value {
                Value::String(text) => format!("{name}={text}"),
                other => format!("{name}={other}"),
            })
            .collect();
        let _ = writeln!(out, "conditions: {}", conditions.join(", "));
        let _ = writeln!(out, "path check: {}", self.direct_path);
        let _ = writeln!(out, "path check: {}", self.queue_path);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7}",
            "series (ms)", "n", "p50", "p95", "p99", "max", "≤100ms", "≤500ms"
        );
        for row in self.rows() {
            let s = row.summary;
            let _ = writeln!(
                out,
                "{:<18} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>6.1}% {:>6.1}%",
                row.name,
                s.samples,
                ms(s.p50),
                ms(s.p95),
                ms(s.p99),
                ms(s.max),
                s.within_target * 100.0,
                s.within_tail * 100.0
            );
        }
        let _ = writeln!(out);
        for row in self.rows() {
            let _ = writeln!(out, "  {:<18} {}", row.name, row.description);
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "ratios (this run):");
        for (name, value) in self.ratios(args) {
            let _ = writeln!(out, "  {name:<58} {value:>6.2}");
        }
        out
    }

    fn to_json(&self, args: &Args) -> Value {
        let conditions: serde_json::Map<String, Value> = self
            .conditions(args)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let series: Vec<Value> = self
            .rows()
            .into_iter()
            .map(|row| {
                let s = row.summary;
                json!({
                    "name": row.name,
                    "description": row.description,
                    "samples": s.samples,
                    "p50_ms": ms(s.p50),
                    "p95_ms": ms(s.p95),
                    "p99_ms": ms(s.p99),
                    "max_ms": ms(s.max),
                    "within_100ms": s.within_target,
                    "within_500ms": s.within_tail,
                })
            })
            .collect();
        let ratios: Vec<Value> = self
            .ratios(args)
            .into_iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect();
        json!({
            "conditions": conditions,
            "path_checks": [self.direct_path, self.queue_path],
            "series": series,
            "ratios": ratios,
        })
    }
}
