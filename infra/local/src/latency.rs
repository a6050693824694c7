//! AWS-modelled timing for the local stack (`--aws-latency`): the delays AWS adds between a
//! write and the function that reacts to it, and the account-wide throttle of `@connections`.
//!
//! Locally a stream record reaches the router within one poll interval and an SQS message
//! within milliseconds, so a local run says nothing about what users of the deployed stack
//! see. With a [`LatencyModel`] the local stack injects the published distributions instead
//! (figures and sources: `docs/local-aws-model.md`):
//!
//! - **stream**: a record becomes visible to the stream poller a drawn delay after its write
//!   (estimated from the poll window it was read in), never before an earlier record of its
//!   shard (visibility = max(own draw,
//!   previous record's visibility)), so per-shard order holds;
//! - **sqs**: a message is delivered to the function no earlier than its `SentTimestamp` plus
//!   a drawn delay;
//! - **management**: every `@connections` call (POST, GET, DELETE) answers after a drawn delay;
//! - **management rate limit**: an account-wide token bucket in front of `@connections`;
//!   beyond it, calls are answered `429 LimitExceededException`.
//!
//! A [`Distribution`] is given by percentiles and sampled by inverse transform: the logarithm
//! of the latency is interpolated linearly in the standard-normal quantile of the
//! probability, i.e. piecewise log-normal. Through two percentiles that is exactly a
//! log-normal; through three (p50/p90/p99 of the stream) it passes through all three, and
//! beyond the outermost percentiles it extends the nearest segment (a log-normal tail).
//! Draws come from a seeded RNG ([`LatencyModel::seed`]), one stream of numbers per consumer,
//! so a run is reproducible up to the order in which concurrent callers draw.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Draws are clamped to these probabilities, which bounds the tails (z = ±4.75).
const PROBABILITY_FLOOR: f64 = 1e-6;

/// A latency description that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LatencyError(String);

fn error(message: impl Into<String>) -> LatencyError {
    LatencyError(message.into())
}

/// One point of a distribution: `percent` % of draws are at most `value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percentile {
    pub percent: f64,
    pub value: Duration,
}

/// A latency distribution fitted to percentiles (piecewise log-normal; see the module docs).
/// Its only constructors validate: percents strictly increasing within (0, 100), values
/// positive and non-decreasing.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    percentiles: Vec<Percentile>,
    /// (standard-normal quantile of the percent, ln of the value in ms), per percentile.
    knots: Vec<(f64, f64)>,
}

impl Distribution {
    /// The distribution through `percentiles` (`(percent, value)` pairs). One pair is a
    /// constant delay.
    pub fn from_percentiles(percentiles: &[(f64, Duration)]) -> Result<Self, LatencyError> {
        if percentiles.is_empty() {
            return Err(error(
                "a latency distribution needs at least one percentile",
            ));
        }
        let mut knots = Vec::with_capacity(percentiles.len());
        let mut points = Vec::with_capacity(percentiles.len());
        for (index, &(percent, value)) in percentiles.iter().enumerate() {
            if !(percent > 0.0 && percent < 100.0) {
                return Err(error(format!("percentile p{percent} is outside (0, 100)")));
            }
            if value.is_zero() {
                return Err(error(format!("p{percent} must be a positive duration")));
            }
            if let Some(previous) = index.checked_sub(1).map(|i| percentiles[i]) {
                if percent <= previous.0 {
                    return Err(error("percentiles must be strictly increasing"));
                }
                if value < previous.1 {
                    return Err(error(format!(
                        "p{percent} ({value:?}) is below p{} ({:?})",
                        previous.0, previous.1
                    )));
                }
            }
            knots.push((probit(percent / 100.0), milliseconds(value).ln()));
            points.push(Percentile { percent, value });
        }
        Ok(Self {
            percentiles: points,
            knots,
        })
    }

    /// DynamoDB Streams → Lambda: p50 213 ms, p90 341 ms, p99 552 ms.
    pub fn dynamodb_streams_to_lambda() -> Self {
        Self::published(&[(50.0, 213), (90.0, 341), (99.0, 552)])
    }

    /// SQS → Lambda: p50 16 ms, p99 105 ms.
    pub fn sqs_to_lambda() -> Self {
        Self::published(&[(50.0, 16), (99.0, 105)])
    }

    /// One `@connections` call from a function in the same region: p50 20 ms, p99 80 ms.
    /// AWS publishes no percentiles for the management API; this is an assumption (a
    /// SigV4 HTTPS call over a kept-alive connection plus API Gateway's own processing),
    /// explained in `docs/local-aws-model.md`.
    pub fn management_api_call() -> Self {
        Self::published(&[(50.0, 20), (99.0, 80)])
    }

    fn published(points: &[(f64, u64)]) -> Self {
        let points: Vec<(f64, Duration)> = points
            .iter()
            .map(|&(percent, ms)| (percent, Duration::from_millis(ms)))
            .collect();
        Self::from_percentiles(&points).unwrap_or_else(|problem| {
            unreachable!("the published figures are a valid distribution: {problem}")
        })
    }

    /// The percentiles the distribution was fitted to.
    pub fn percentiles(&self) -> &[Percentile] {
        &self.percentiles
    }

    /// The value below which `probability` (0..1) of draws fall.
    pub fn quantile(&self, probability: f64) -> Duration {
        let probability = probability.clamp(PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR);
        let z = probit(probability);
        let ln_ms = match self.knots.as_slice() {
            [] => 0.0,
            [(_, only)] => *only,
            knots => {
                // The segment holding z, or the outermost one extended.
                let upper = knots
                    .iter()
                    .position(|&(knot_z, _)| knot_z >= z)
                    .unwrap_or(knots.len() - 1)
                    .max(1);
                let (z0, y0) = knots[upper - 1];
                let (z1, y1) = knots[upper];
                y0 + (y1 - y0) * (z - z0) / (z1 - z0)
            }
        };
        Duration::from_secs_f64(ln_ms.exp() / 1000.0)
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl Rng) -> Duration {
        self.quantile(rng.gen::<f64>())
    }
}

impl fmt::Display for Distribution {
    /// `p50=213ms,p90=341ms,p99=552ms`, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, point) in self.percentiles.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "p{}={}ms", point.percent, milliseconds(point.value))?;
        }
        Ok(())
    }
}

impl FromStr for Distribution {
    type Err = LatencyError;

    /// `p50=213,p90=341,p99=552` (milliseconds, an `ms` suffix allowed; `p99.9=…` too).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let points = text
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (name, value) = part
                    .split_once('=')
                    .ok_or_else(|| error(format!("expected pNN=MS, got `{part}`")))?;
                let percent: f64 = name
                    .strip_prefix('p')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| {
                        error(format!("expected a percentile like p50, got `{name}`"))
                    })?;
                let value = value.trim();
                let ms: f64 = value
                    .strip_suffix("ms")
                    .unwrap_or(value)
                    .trim()
                    .parse()
                    .map_err(|_| error(format!("expected milliseconds, got `{value}`")))?;
                if !(ms.is_finite() && ms > 0.0 && ms <= 3_600_000.0) {
                    return Err(error(format!("{ms} ms is not a latency (0 < ms <= 1 h)")));
                }
                Ok((percent, Duration::from_secs_f64(ms / 1000.0)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_percentiles(&points)
    }
}

fn milliseconds(value: Duration) -> f64 {
    value.as_secs_f64() * 1000.0
}

/// The standard-normal quantile function (Acklam's rational approximation, relative error
/// below 1.2e-9), for `p` in (0, 1).
fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const LOW: f64 = 0.024_25;
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// A token bucket: `per_second` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl RateLimit {
    /// API Gateway's default account-level throttle per Region: 10,000 requests per second
    /// with a bucket of 5,000, shared by every API of the account (`@connections` included).
    pub const AWS_ACCOUNT_DEFAULT: Self = Self {
        per_second: 10_000,
        burst: 5_000,
    };

    /// `per_second` with the default burst scaled to it (half a second of tokens, at least 1).
    pub fn per_second(per_second: u32) -> Self {
        Self {
            per_second,
            burst: (per_second / 2).max(1),
        }
    }
}

/// Everything the AWS-modelled timing does; [`LatencyModel::default`] does nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyModel {
    /// Delay before a stream record is visible to the stream poller.
    pub stream: Option<Distribution>,
    /// Delay between an SQS message's send and its delivery to the function.
    pub sqs: Option<Distribution>,
    /// Delay of each `@connections` call.
    pub management: Option<Distribution>,
    /// Account-wide throttle of `@connections` calls (429 `LimitExceededException` beyond).
    pub management_rate_limit: Option<RateLimit>,
    /// Seed of every draw (the same seed, the same draws for the same order of calls).
    pub seed: u64,
}

impl LatencyModel {
    /// All of it, with the published figures (`--aws-latency`).
    pub fn aws() -> Self {
        Self {
            stream: Some(Distribution::dynamodb_streams_to_lambda()),
            sqs: Some(Distribution::sqs_to_lambda()),
            management: Some(Distribution::management_api_call()),
            management_rate_limit: Some(RateLimit::AWS_ACCOUNT_DEFAULT),
            seed: 0,
        }
    }

    /// The same model with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// True when nothing is injected.
    pub fn is_off(&self) -> bool {
        self.stream.is_none()
            && self.sqs.is_none()
            && self.management.is_none()
            && self.management_rate_limit.is_none()
    }

    /// One line for the banner.
    pub fn describe(&self) -> String {
        if self.is_off() {
            return "off (local speed)".to_owned();
        }
        let show = |distribution: &Option<Distribution>| {
            distribution
                .as_ref()
                .map_or_else(|| "off".to_owned(), Distribution::to_string)
        };
        let limit = self.management_rate_limit.map_or_else(
            || "off".to_owned(),
            |limit| format!("{} rps (burst {})", limit.per_second, limit.burst),
        );
        format!(
            "stream {}, sqs {}, @connections {} limit {limit}, seed {}",
            show(&self.stream),
            show(&self.sqs),
            show(&self.management),
            self.seed
        )
    }
}

/// Which consumer a [`Delays`] draws for: each has its own stream of random numbers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DelaySite {
    Stream,
    Sqs,
    Management,
}

/// Draws from one distribution with a seeded RNG of its own; safe to share.
#[derive(Debug)]
pub(crate) struct Delays {
    distribution: Distribution,
    rng: Mutex<StdRng>,
}

impl Delays {
    pub(crate) fn new(distribution: Distribution, seed: u64, site: DelaySite) -> Self {
        // Distinct, fixed offsets so the sites' draws are independent for one seed.
        let offset: u64 = match site {
            DelaySite::Stream => 0x5354_5245_414d,
            DelaySite::Sqs => 0x0053_5153,
            DelaySite::Management => 0x4d47_4d54,
        };
        Self {
            distribution,
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ offset)),
        }
    }

    pub(crate) fn draw(&self) -> Duration {
        // Drawing cannot leave the RNG half-updated, so a poisoned lock is still usable.
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        self.distribution.sample(&mut *rng)
    }
}

/// What `@connections` does before answering: the account-wide throttle, then the call's
/// delay. The default does neither.
#[derive(Debug, Default)]
pub(crate) struct ManagementTiming {
    delays: Option<Delays>,
    throttle: Option<TokenBucket>,
}

impl ManagementTiming {
    pub(crate) fn new(model: &LatencyModel) -> Self {
        Self {
            delays: model
                .management
                .clone()
                .map(|distribution| Delays::new(distribution, model.seed, DelaySite::Management)),
            throttle: model.management_rate_limit.map(TokenBucket::new),
        }
    }

    /// Takes a token from the bucket on arrival (false: throttled), then waits the call's
    /// drawn delay (a throttled answer travels too). Never blocks a thread.
    pub(crate) async fn admit(&self) -> bool {
        let admitted = self.throttle.as_ref().is_none_or(TokenBucket::try_acquire);
        if let Some(delays) = &self.delays {
            tokio::time::sleep(delays.draw()).await;
        }
        admitted
    }
}

/// A token bucket shared by every caller of `@connections` (the account-level throttle).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    /// (tokens available, when they were counted).
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        Self::starting_at(limit, Instant::now())
    }

    fn starting_at(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            state: Mutex::new((f64::from(limit.burst), now)),
        }
    }

    /// Takes one token if there is one.
    pub(crate) fn try_acquire(&self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (tokens, counted_at) = *state;
        let refill = now.saturating_duration_since(counted_at).as_secs_f64()
            * f64::from(self.limit.per_second);
        let available = (tokens + refill).min(f64::from(self.limit.burst));
        let latest = now.max(counted_at);
        if available >= 1.0 {
            *state = (available - 1.0, latest);
            true
        } else {
            *state = (available, latest);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The empirical `percent` percentile of sorted draws.
    fn empirical(sorted: &[Duration], percent: f64) -> f64 {
        let index = ((sorted.len() as f64) * percent / 100.0) as usize;
        milliseconds(sorted[index.min(sorted.len() - 1)])
    }

    fn draws(distribution: &Distribution, count: usize, seed: u64) -> Vec<Duration> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut draws: Vec<Duration> = (0..count).map(|_| distribution.sample(&mut rng)).collect();
        draws.sort();
        draws
    }

    fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
        assert!(
            (actual - expected).abs() <= expected * tolerance,
            "{what}: {actual:.1} ms, expected {expected} ms ± {:.0} %",
            tolerance * 100.0
        );
    }

    #[test]
    fn stream_draws_hit_the_published_percentiles() {
        let sorted = draws(&Distribution::dynamodb_streams_to_lambda(), 200_000, 7);
        assert_close(empirical(&sorted, 50.0), 213.0, 0.02, "p50");
        assert_close(empirical(&sorted, 90.0), 341.0, 0.02, "p90");
        assert_close(empirical(&sorted, 99.0), 552.0, 0.03, "p99");
        // The tail is bounded (the clamp) and the floor positive.
        assert!(milliseconds(sorted[0]) > 20.0, "{:?}", sorted[0]);
        assert!(milliseconds(sorted[sorted.len() - 1]) < 2_500.0);
    }

    #[test]
    fn sqs_draws_are_the_log_normal_through_p50_and_p99() {
        let distribution = Distribution::sqs_to_lambda();
        let sorted = draws(&distribution, 200_000, 11);
        assert_close(empirical(&sorted, 50.0), 16.0, 0.02, "p50");
        assert_close(empirical(&sorted, 99.0), 105.0, 0.04, "p99");
        // Log-normal: sigma = ln(105/16) / z(0.99) = 0.809, so p90 = 16 e^(0.809 z(0.9)).
        let sigma = (105.0f64 / 16.0).ln() / probit(0.99);
        let p90 = 16.0 * (sigma * probit(0.9)).exp();
        assert_close(milliseconds(distribution.quantile(0.9)), p90, 0.001, "p90");
        assert_close(empirical(&sorted, 90.0), p90, 0.03, "empirical p90");
    }

    #[test]
    fn quantiles_pass_through_every_percentile_and_are_monotonic() {
        let distribution = Distribution::dynamodb_streams_to_lambda();
        for point in distribution.percentiles() {
            assert_close(
                milliseconds(distribution.quantile(point.percent / 100.0)),
                milliseconds(point.value),
                0.001,
                &format!("p{}", point.percent),
            );
        }
        let mut previous = Duration::ZERO;
        for step in 1..1000 {
            let value = distribution.quantile(f64::from(step) / 1000.0);
            assert!(value >= previous, "quantile decreases at {step}");
            previous = value;
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_delays() {
        let first = Delays::new(Distribution::sqs_to_lambda(), 42, DelaySite::Sqs);
        let again = Delays::new(Distribution::sqs_to_lambda(), 42, DelaySite::Sqs);
        let other_site = Delays::new(Distribution::sqs_to_lambda(), 42, DelaySite::Stream);
        let run = |delays: &Delays| (0..20).map(|_| delays.draw()).collect::<Vec<_>>();
        let first = run(&first);
        assert_eq!(first, run(&again));
        assert_ne!(first, run(&other_site));
    }

    #[test]
    fn distributions_parse_and_print() {
        let parsed: Distribution = "p50=213,p90=341ms, p99=552".parse().unwrap();
        assert_eq!(parsed, Distribution::dynamodb_streams_to_lambda());
        assert_eq!(parsed.to_string(), "p50=213ms,p90=341ms,p99=552ms");
        assert_eq!(parsed.to_string().parse::<Distribution>().unwrap(), parsed);
        let constant: Distribution = "p50=5".parse().unwrap();
        assert_eq!(constant.quantile(0.001), Duration::from_millis(5));
        assert_eq!(constant.quantile(0.999), Duration::from_millis(5));
        for bad in [
            "",
            "213",
            "p50",
            "p0=1",
            "p100=1",
            "p50=0",
            "p50=-3",
            "p50=x",
            "p90=10,p50=5",
            "p50=10,p90=5",
            "p50=10,p50=12",
            "q50=10",
        ] {
            assert!(bad.parse::<Distribution>().is_err(), "`{bad}` parsed");
        }
    }

    #[test]
    fn the_bucket_answers_no_beyond_its_burst_and_refills_at_its_rate() {
        let start = Instant::now();
        let bucket = TokenBucket::starting_at(
            RateLimit {
                per_second: 100,
                burst: 20,
            },
            start,
        );
        let granted = (0..50).filter(|_| bucket.try_acquire_at(start)).count();
        assert_eq!(granted, 20, "the burst, then nothing at the same instant");
        // 100 per second: 5 tokens in 50 ms.
        let later = start + Duration::from_millis(50);
        let refilled = (0..50).filter(|_| bucket.try_acquire_at(later)).count();
        assert_eq!(refilled, 5);
        // Never more than the burst however long it rested.
        let rested = later + Duration::from_secs(60);
        let after_rest = (0..50).filter(|_| bucket.try_acquire_at(rested)).count();
        assert_eq!(after_rest, 20);
    }

    #[test]
    fn the_aws_model_turns_everything_on_and_the_default_nothing() {
        assert!(LatencyModel::default().is_off());
        let aws = LatencyModel::aws().with_seed(3);
        assert!(!aws.is_off());
        assert_eq!(aws.seed, 3);
        assert_eq!(
            aws.management_rate_limit,
            Some(RateLimit::AWS_ACCOUNT_DEFAULT)
        );
        assert!(aws.describe().contains("10000 rps"), "{}", aws.describe());
        assert_eq!(RateLimit::per_second(300).burst, 150);
        assert_eq!(RateLimit::per_second(1).burst, 1);
    }
}
