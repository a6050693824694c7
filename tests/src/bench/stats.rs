//! Percentiles of latency samples, and the JSON shape every latency series shares.

use std::time::Duration;

use serde_json::{json, Value};

/// The latency bounds of the product target: < 100 ms, > 95 % within 500 ms.
pub const TARGET: Duration = Duration::from_millis(100);
pub const TARGET_TAIL: Duration = Duration::from_millis(500);

/// Percentiles of one series.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub samples: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Share of samples within [`TARGET`] / [`TARGET_TAIL`], 0..=1.
    pub within_target: f64,
    pub within_tail: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Self {
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

    /// `{"p50_ms", "p95_ms", "p99_ms", "within_100ms", "within_500ms", "samples", "max_ms"}`.
    pub fn to_json(&self) -> Value {
        json!({
            "samples": self.samples,
            "p50_ms": round(ms(self.p50), 1),
            "p95_ms": round(ms(self.p95), 1),
            "p99_ms": round(ms(self.p99), 1),
            "max_ms": round(ms(self.max), 1),
            "within_100ms": round(self.within_target, 4),
            "within_500ms": round(self.within_tail, 4),
        })
    }
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// `value` rounded to `digits` decimals (JSON and tables stay readable).
pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_and_shares() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let summary = Summary::of(&samples);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p95, Duration::from_millis(95));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.within_target, 1.0);
        let slow: Vec<Duration> = (1..=10).map(|i| Duration::from_millis(i * 100)).collect();
        let summary = Summary::of(&slow);
        assert_eq!(summary.within_target, 0.1);
        assert_eq!(summary.within_tail, 0.5);
        assert_eq!(Summary::of(&[]).samples, 0);
    }
}
