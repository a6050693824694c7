//! `writer_push_latency`: what the writer push adds to the REST latency of the writes that use
//! it, and what it does for delivery — a by-hand measurement through one in-process local
//! stack per mode (in-memory dynoxide, moto, the stream poller, the WebSocket gateway, real
//! sockets on 127.0.0.1).
//!
//! Two stacks, one after the other: the writer push on (the default) and off
//! (`WRITER_PUSH_MAX_CONNECTIONS=0`, so only the stream router delivers). In each, closed loop
//! (one sample in flight): `--samples` posts by an author whose `--followers` followers each
//! hold one socket, then as many DMs to a recipient with one socket. Reported per mode: p50 /
//! p95 of the REST round trip, and of REST response → event on a follower's / the
//! recipient's socket (negative when the event arrived before the response was read: the
//! writer pushed it before answering).
//!
//! `make bench` runs it after the realtime benchmark (optimised build) and it writes its
//! table to `docs/benchmarks.md` (between the `writer-push` markers) and
//! `docs/benchmarks.json` (`"writer_push"`), next to the goal: the writer push adds at most
//! 15 ms p50 to a REST write. By hand: `cargo run -p ripple-tests --profile bench-stack
//! --bin writer_push_latency -- --samples 100` (needs `make tools` for
//! `.venv/bin/moto_server`; `--docs` elsewhere, or `--print-only`). The stream poll interval
//! (`--stream-poll-ms`, 20 by default like the tests) is the local stand-in for Lambda's
//! stream latency.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ripple_tests::bench::report;
use ripple_tests::realtime::{repository_root, RealtimeStack, User, WsClient};
use serde_json::{json, Value};

const EVENT_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "writer_push_latency",
    about = "REST latency and delivery with and without the writer push"
)]
struct Args {
    /// Posts and DMs measured per mode.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    samples: u32,
    /// Followers of the author, one socket each.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    followers: u32,
    /// How often the local stream poller reads the stream.
    #[arg(long, default_value_t = 20)]
    stream_poll_ms: u64,
    /// Where `benchmarks.md` and `benchmarks.json` are updated.
    #[arg(long, default_value_os_t = repository_root().join("docs"))]
    docs: PathBuf,
    /// Print the table only; write no document.
    #[arg(long)]
    print_only: bool,
}

/// What the writer push may add to a REST write's p50 (issue 10).
const GOAL_DELTA_P50_MS: f64 = 15.0;
const BEGIN: &str = "<!-- writer-push:begin -->";
const END: &str = "<!-- writer-push:end -->";

/// Milliseconds, signed (an event may arrive before the response is read).
#[derive(Debug, Default)]
struct Series(Vec<f64>);

impl Series {
    fn push(&mut self, ms: f64) {
        self.0.push(ms);
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// Signed milliseconds from `from` to `to`.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    match to.checked_duration_since(from) {
        Some(after) => after.as_secs_f64() * 1000.0,
        None => -(from.duration_since(to).as_secs_f64() * 1000.0),
    }
}

#[derive(Debug, Default)]
struct Measured {
    post_rest: Series,
    post_delivery: Series,
    dm_rest: Series,
    dm_delivery: Series,
}

/// Waits for the event of `kind` about item `id` on `socket`; returns when it arrived.
async fn arrival(socket: &WsClient, kind: &str, id: &str) -> Instant {
    socket
        .next_frame_where(&format!("{kind} {id}"), EVENT_WAIT, |event| {
            event["type"] == kind && event["data"]["id"] == id
        })
        .await
        .received_at
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

async fn measure(args: &Args, writer_push: bool) -> Measured {
    let poll = Duration::from_millis(args.stream_poll_ms);
    let stack = RealtimeStack::start_with(|options| {
        options.stream_poll_interval = poll;
        // The rate limits are not what is measured.
        for (name, value) in [
            ("RATE_LIMIT_POSTS_PER_MINUTE", "1000000"),
            ("RATE_LIMIT_MESSAGES_PER_MINUTE", "1000000"),
        ] {
            options
                .environment
                .push((name.to_owned(), value.to_owned()));
        }
        if !writer_push {
            options
                .environment
                .push(("WRITER_PUSH_MAX_CONNECTIONS".to_owned(), "0".to_owned()));
        }
    })
    .await;
    let author = stack.register("author").await;
    let mut followers: Vec<User> = Vec::new();
    for n in 0..args.followers {
        let follower = stack.register(&format!("follower{n}")).await;
        stack.follow(&follower, &author).await;
        followers.push(follower);
    }
    let mut sockets = Vec::new();
    for follower in &followers {
        sockets.push(stack.connect(follower).await);
    }
    let (sender, recipient) = (
        stack.register("sender").await,
        stack.register("recipient").await,
    );
    let inbox = stack.connect(&recipient).await;
    let watcher = &sockets[0];

    // Warm-up: the set-up's stream records drain, connections and code paths are warm.
    for n in 0..5 {
        let post = stack.post(&author, &format!("warm-up {n}")).await;
        arrival(watcher, "post_created", &id_of(&post)).await;
        let message = stack.message(&sender, &recipient, "warm-up").await;
        arrival(&inbox, "new_message", &id_of(&message)).await;
    }

    let mut measured = Measured::default();
    for n in 0..args.samples {
        let started = Instant::now();
        let post = stack.post(&author, &format!("post {n}")).await;
        let responded = Instant::now();
        let arrived = arrival(watcher, "post_created", &id_of(&post)).await;
        measured.post_rest.push(signed_ms(started, responded));
        measured.post_delivery.push(signed_ms(responded, arrived));

        let started = Instant::now();
        let message = stack.message(&sender, &recipient, &format!("dm {n}")).await;
        let responded = Instant::now();
        let arrived = arrival(&inbox, "new_message", &id_of(&message)).await;
        measured.dm_rest.push(signed_ms(started, responded));
        measured.dm_delivery.push(signed_ms(responded, arrived));
    }
    stack.stop().await;
    measured
}

/// One compared series: (name, what, writer push on, stream only).
type Compared<'a> = (&'a str, &'a str, &'a Series, &'a Series);

fn series_json(on: &Series, off: &Series) -> Value {
    let round = |v: f64| (v * 10.0).round() / 10.0;
    json!({
        "writer_push_p50_ms": round(on.percentile(50.0)),
        "writer_push_p95_ms": round(on.percentile(95.0)),
        "stream_only_p50_ms": round(off.percentile(50.0)),
        "stream_only_p95_ms": round(off.percentile(95.0)),
        "delta_p50_ms": round(on.percentile(50.0) - off.percentile(50.0)),
    })
}

fn table(rows: &[Compared]) -> String {
    let mut out = String::from(
        "| series | what | writer push p50 (ms) | p95 | stream only p50 | p95 | Δ p50 |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, what, on, off) in rows {
        let _ = writeln!(
            out,
            "| `{name}` | {what} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} |",
            on.percentile(50.0),
            on.percentile(95.0),
            off.percentile(50.0),
            off.percentile(95.0),
            on.percentile(50.0) - off.percentile(50.0),
        );
    }
    out
}

/// The Markdown section and the JSON value of one run.
fn documents(args: &Args, rows: &[Compared], conditions: &Value) -> (String, Value) {
    let rest = &rows[..2];
    let worst = rest
        .iter()
        .map(|(_, _, on, off)| on.percentile(50.0) - off.percentile(50.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let met = worst <= GOAL_DELTA_P50_MS;
    let mut section = String::from("## Writer push: what it adds to a REST write\n\n");
    let _ = writeln!(
        section,
        "Written by `tests/src/bin/writer_push_latency.rs` (run by `make bench`). Machine: {}.\n",
        report::machine_line(conditions)
    );
    let _ = writeln!(
        section,
        "Two local stacks one after the other: the writer push on (default) and off \
         (`WRITER_PUSH_MAX_CONNECTIONS=0`, the stream router alone delivers). Closed loop, {} \
         samples per series after 5 warm-up rounds; an author with {} followers (one socket \
         each) posts, a sender DMs a recipient with one socket; stream poll {} ms. A negative \
         delivery time means the event was on the socket before the REST response was read.\n",
        args.samples, args.followers, args.stream_poll_ms
    );
    section.push_str(&table(rows));
    let _ = writeln!(
        section,
        "\nGoal: the writer push adds ≤ {GOAL_DELTA_P50_MS:.0} ms p50 to a REST write: worst Δ p50 {worst:+.1} ms, {}",
        if met { "**met**" } else { "**missed**" }
    );
    let mut series = serde_json::Map::new();
    for (name, _, on, off) in rows {
        series.insert((*name).to_owned(), series_json(on, off));
    }
    let value = json!({
        "writer_push": {
            "conditions": conditions,
            "samples": args.samples,
            "followers": args.followers,
            "stream_poll_ms": args.stream_poll_ms,
            "series": series,
            "goal_delta_p50_ms": GOAL_DELTA_P50_MS,
            "worst_rest_delta_p50_ms": (worst * 10.0).round() / 10.0,
            "met": met,
        }
    });
    (section, value)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // The functions' metric lines would bury the report.
    shared::telemetry::emf::set_sink(shared::telemetry::emf::Sink::Discard);
    let off = measure(&args, false).await;
    let on = measure(&args, true).await;
    let rows: [Compared; 4] = [
        (
            "rest_post",
            "POST /posts round trip",
            &on.post_rest,
            &off.post_rest,
        ),
        (
            "rest_message",
            "DM send round trip",
            &on.dm_rest,
            &off.dm_rest,
        ),
        (
            "post_created",
            "REST response → follower socket",
            &on.post_delivery,
            &off.post_delivery,
        ),
        (
            "new_message",
            "REST response → recipient socket",
            &on.dm_delivery,
            &off.dm_delivery,
        ),
    ];
    let conditions = report::conditions(json!({}));
    let (section, value) = documents(&args, &rows, &conditions);
    println!("{section}");
    if !args.print_only {
        report::merge_json_keys(&args.docs.join("benchmarks.json"), &value, &["writer_push"])?;
        report::merge_markdown_between(&args.docs.join("benchmarks.md"), BEGIN, END, &section)?;
        eprintln!("writer_push_latency: wrote {}", args.docs.display());
    }
    Ok(())
}
