//! `make bench`: the realtime benchmark (`src/bin/bench_realtime.rs` is its thin shell).
//!
//! One run starts the whole local stack twice — at local speed and with the AWS latency
//! model — and measures, each figure next to the one it is compared with:
//! - [`latency`]: REST response → WebSocket frame, per event type;
//! - [`fanout`]: one post to K online sockets, against the raw `@connections` ceiling of
//!   the same gateway;
//! - [`cost`]: requests and DynamoDB units per operation, through the
//!   [`shared::metering::RequestMeter`], in dollars;
//! - [`scaling`]: a seeded simulation of time-to-last-delivery on AWS, checked against the
//!   AWS-modelled local run at K = 5,000.
//!
//! [`report`] merges the results into `docs/benchmarks.{json,md}` and writes
//! `docs/cost.md` and `docs/scaling.md`.

pub mod cost;
pub mod docs;
pub mod fanout;
pub mod latency;
pub mod lean;
pub mod report;
pub mod scaling;
pub mod seed;
pub mod stats;

use std::time::{Duration, Instant};

use shared::metering::{MeterSnapshot, RequestMeter};

use crate::realtime::RealtimeStack;

/// How the stack is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Local speed: the stream poller's interval is the only added delay.
    Local,
    /// `ripple-local`'s AWS latency model (stream, SQS, `@connections`, throttle).
    AwsModelled,
}

impl Profile {
    /// The key of this profile in `benchmarks.json`.
    pub fn key(self) -> &'static str {
        match self {
            Profile::Local => "local",
            Profile::AwsModelled => "aws_modelled",
        }
    }

    /// How long the functions must be silent before the stack counts as settled: longer
    /// than the model's stream-delay tail.
    fn quiet_window(self) -> Duration {
        match self {
            Profile::Local => Duration::from_millis(600),
            Profile::AwsModelled => Duration::from_millis(2500),
        }
    }
}

/// Function environment of a run: limits raised so that the benchmark's own volume is
/// never refused (rate limits are not what is measured).
pub fn bench_environment(extra: &[(&str, String)]) -> Vec<(String, String)> {
    let mut environment: Vec<(String, String)> = shared::config::RATE_LIMIT_VARIABLES
        .iter()
        .map(|(name, _)| *name)
        .chain(["AUTH_REGISTER_ATTEMPTS_PER_IP"])
        .map(|name| (name.to_owned(), "1000000".to_owned()))
        .collect();
    environment.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone())),
    );
    environment
}

/// One local stack whose functions' SDK clients are metered.
pub struct BenchStack {
    pub stack: RealtimeStack,
    pub meter: RequestMeter,
    pub profile: Profile,
}

impl BenchStack {
    pub async fn start(
        profile: Profile,
        stream_poll: Duration,
        environment: Vec<(String, String)>,
    ) -> Self {
        let meter = RequestMeter::new();
        let stack = RealtimeStack::start_with(|options| {
            options.stream_poll_interval = stream_poll;
            options.environment.extend(environment);
            options.meter = Some(meter.clone());
            apply_profile(profile, options);
        })
        .await;
        Self {
            stack,
            meter,
            profile,
        }
    }

    /// Waits until the functions have made no request for the profile's quiet window and
    /// the fan-out queue is empty: everything the set-up caused has been processed.
    pub async fn settle(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let window = self.profile.quiet_window();
        let mut last = self.meter.snapshot().total_requests();
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.meter.snapshot().total_requests();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= window && self.stack.fanout_queue_depth().await == 0
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("the stack did not settle within {limit:?}");
            }
        }
    }

    /// What `action` cost: the meter's difference from a settled stack before it to a
    /// settled stack after it.
    pub async fn metered<F, Fut, T>(&self, action: F) -> anyhow::Result<(T, MeterSnapshot)>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<T>>,
    {
        self.settle(Duration::from_secs(300)).await?;
        let before = self.meter.snapshot();
        let value = action().await?;
        self.settle(Duration::from_secs(300)).await?;
        Ok((value, self.meter.snapshot().since(&before)))
    }

    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

/// Applies `profile`'s timing to the stack options.
fn apply_profile(profile: Profile, options: &mut ripple_local::stack::StackOptions) {
    match profile {
        Profile::Local => {}
        Profile::AwsModelled => {
            options.latency = ripple_local::latency::LatencyModel::aws();
        }
    }
}

/// Progress on stderr (stdout carries the report).
pub fn progress(message: &str) {
    eprintln!("bench_realtime: {message}");
}
