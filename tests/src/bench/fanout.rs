//! Fan-out efficiency: one post to K online sockets, against the raw `@connections`
//! ceiling of the same gateway.
//!
//! deliveries/s = K / (last delivery − REST response). The ceiling is the same K frames of
//! the same size POSTed by the bench itself straight to the management endpoint, with the
//! push tier's concurrency and no function involved: K / (last delivery − first POST).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;

use super::lean::{Arrivals, Fleet};
use super::stats::{ms, round};
use super::{progress, BenchStack};
use crate::realtime::User;

/// Concurrent `@connections` calls of the ceiling run: what one push-tier invocation uses.
pub const CEILING_CONCURRENCY: usize = shared::push::DEFAULT_PUSH_CONCURRENCY;

/// One fan-out measurement.
#[derive(Debug, Clone)]
pub struct FanoutResult {
    pub connections: usize,
    pub delivered: usize,
    pub rest_ms: f64,
    pub first_delivery_ms: f64,
    pub last_delivery_ms: f64,
    pub deliveries_per_s: f64,
    pub ceiling_delivered: usize,
    pub ceiling_last_ms: f64,
    pub ceiling_per_s: f64,
    pub ratio: f64,
    /// Frames of the post a socket received more than once.
    pub duplicates: usize,
    /// The ratio of every repetition at this K (this result is the median one).
    pub ratio_runs: Vec<f64>,
}

impl FanoutResult {
    pub fn to_json(&self) -> Value {
        json!({
            "connections": self.connections,
            "delivered": self.delivered,
            "deliveries_per_s": round(self.deliveries_per_s, 1),
            "ceiling_per_s": round(self.ceiling_per_s, 1),
            "ratio": round(self.ratio, 3),
            "last_delivery_ms": round(self.last_delivery_ms, 1),
            "first_delivery_ms": round(self.first_delivery_ms, 1),
            "ceiling_last_delivery_ms": round(self.ceiling_last_ms, 1),
            "ceiling_concurrency": CEILING_CONCURRENCY,
            "rest_ms": round(self.rest_ms, 1),
            "duplicate_frames": self.duplicates,
            "ratio_runs": self.ratio_runs.iter().map(|r| round(*r, 3)).collect::<Vec<_>>(),
        })
    }
}

/// One audience under test: `author` is followed by the first `k` sockets of `fleet`;
/// `connection_ids` are the fleet's connections (the ceiling run pushes to `k` of them).
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub fleet: &'a Fleet,
    pub connection_ids: &'a [String],
    pub author: &'a User,
    pub k: usize,
    pub timeout: Duration,
}

/// [`measure`] `repeats` times (each a post and its ceiling run, alternating, so a burst
/// of noise on this shared machine hits both sides of one ratio): the median result by
/// ratio, with every repetition's ratio attached. One 200 ms delivery is a single sample
/// of scheduler noise; the median of a few is the figure that repeats.
pub async fn measure_repeated(
    bench: &BenchStack,
    target: &Target<'_>,
    repeats: usize,
) -> anyhow::Result<FanoutResult> {
    warm_up(bench, target).await?;
    let mut runs = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        runs.push(measure(bench, target).await?);
    }
    runs.sort_by(|a, b| a.ratio.total_cmp(&b.ratio));
    let ratio_runs: Vec<f64> = runs.iter().map(|run| run.ratio).collect();
    let mut median = runs.swap_remove(runs.len() / 2);
    median.ratio_runs = ratio_runs;
    Ok(median)
}

/// One unmeasured post to the audience. A settled stack can still have a stream backlog:
/// the set-up's records (users, follows) never invoke a function (`FilterCriteria`), so the
/// functions are quiet while the poller is still reading them, and a post written then
/// waits behind them — as on AWS, but that is the set-up's cost, not the fan-out's.
async fn warm_up(bench: &BenchStack, target: &Target<'_>) -> anyhow::Result<()> {
    let posted = post_and_wait(bench, target, "warm-up").await?;
    progress(&format!(
        "fan-out K={}: warm-up post reached {} sockets",
        target.k,
        posted.arrivals.times.len()
    ));
    Ok(())
}

/// One post by the target's author, on a settled stack, and its arrivals.
struct Posted {
    /// The post's text carries it; the fleet watched for it.
    nonce: String,
    /// When the request went out and when its response was read.
    sent: Instant,
    responded: Instant,
    arrivals: Arrivals,
}

async fn post_and_wait(
    bench: &BenchStack,
    target: &Target<'_>,
    label: &str,
) -> anyhow::Result<Posted> {
    bench.settle(Duration::from_secs(300)).await?;
    let nonce = Uuid::new_v4().simple().to_string();
    target.fleet.watch(&nonce, target.k);
    let sent = Instant::now();
    bench
        .stack
        .post(target.author, &format!("{label} {nonce}"))
        .await;
    let responded = Instant::now();
    let arrivals = target.fleet.wait(target.timeout).await;
    Ok(Posted {
        nonce,
        sent,
        responded,
        arrivals,
    })
}

/// `author` (followed by the first `k` sockets of `fleet`) posts once; then the ceiling
/// run pushes the same frame size to `k` of `connection_ids`.
pub async fn measure(bench: &BenchStack, target: &Target<'_>) -> anyhow::Result<FanoutResult> {
    let Target {
        fleet,
        connection_ids,
        k,
        timeout,
        ..
    } = *target;
    let Posted {
        nonce,
        sent,
        responded,
        arrivals,
    } = post_and_wait(bench, target, "fan-out").await?;
    let delivered = arrivals.times.len();
    let since = |at: Option<Instant>| at.map_or(f64::NAN, |t| ms(t - responded));
    let last_delivery_ms = since(arrivals.last());
    let first_delivery_ms = since(arrivals.times.first().copied());
    progress(&format!(
        "fan-out K={k}: {delivered} delivered, last {last_delivery_ms:.0} ms after the REST response"
    ));
    let frame = arrivals
        .first_frame
        .ok_or_else(|| anyhow::anyhow!("no socket received the fan-out post (K={k})"))?;

    bench.settle(Duration::from_secs(300)).await?;
    let ceiling_nonce = Uuid::new_v4().simple().to_string();
    let payload = frame.replace(&nonce, &ceiling_nonce);
    let (ceiling_delivered, ceiling_last_ms) = ceiling(
        bench,
        fleet,
        &connection_ids[..k.min(connection_ids.len())],
        &payload,
        &ceiling_nonce,
        timeout,
    )
    .await?;
    let deliveries_per_s = delivered as f64 / (last_delivery_ms / 1000.0);
    let ceiling_per_s = ceiling_delivered as f64 / (ceiling_last_ms / 1000.0);
    Ok(FanoutResult {
        connections: k,
        delivered,
        rest_ms: ms(responded - sent),
        first_delivery_ms,
        last_delivery_ms,
        deliveries_per_s,
        ceiling_delivered,
        ceiling_last_ms,
        ceiling_per_s,
        ratio: deliveries_per_s / ceiling_per_s,
        duplicates: arrivals.duplicates,
        ratio_runs: Vec::new(),
    })
}

/// POSTs `payload` to every connection, `CEILING_CONCURRENCY` at a time; returns
/// (deliveries, ms from the first POST to the last delivery).
async fn ceiling(
    bench: &BenchStack,
    fleet: &Fleet,
    connection_ids: &[String],
    payload: &str,
    marker: &str,
    timeout: Duration,
) -> anyhow::Result<(usize, f64)> {
    let sdk = shared::aws::local_sdk_config();
    let management = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk)
            .endpoint_url(bench.stack.stack.urls.management_endpoint())
            .build(),
    );
    let bytes = aws_smithy_types::Blob::new(payload.as_bytes().to_vec());
    fleet.watch(marker, connection_ids.len());
    let started = Instant::now();
    let failures = stream::iter(connection_ids)
        .map(|id| {
            management
                .post_to_connection()
                .connection_id(id)
                .data(bytes.clone())
                .send()
        })
        .buffer_unordered(CEILING_CONCURRENCY)
        .filter(|result| std::future::ready(result.is_err()))
        .count()
        .await;
    let arrivals = fleet.wait(timeout).await;
    if failures > 0 {
        progress(&format!("ceiling: {failures} @connections calls failed"));
    }
    let last = arrivals.last().map_or(f64::NAN, |t| ms(t - started));
    progress(&format!(
        "ceiling K={}: {} delivered, last {last:.0} ms after the first POST",
        connection_ids.len(),
        arrivals.times.len()
    ));
    Ok((arrivals.times.len(), last))
}
