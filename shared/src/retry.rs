//! One retry policy for every call the push tier repeats: posts to connections, SQS
//! batches, DynamoDB batch reads. Exponential backoff with full jitter.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based): uniform in
    /// `[0, min(max_delay, base_delay · 2^(attempt-1))]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponential = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exponential.min(self.max_delay);
        if ceiling.is_zero() {
            return ceiling;
        }
        ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_within_its_cap() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(25),
        };
        for _ in 0..50 {
            assert!(policy.delay(1) <= Duration::from_millis(10));
            assert!(policy.delay(2) <= Duration::from_millis(20));
            assert!(policy.delay(3) <= Duration::from_millis(25));
            assert!(policy.delay(40) <= Duration::from_millis(25));
        }
        let instant = RetryPolicy {
            base_delay: Duration::ZERO,
            ..policy
        };
        assert_eq!(instant.delay(3), Duration::ZERO);
    }
}
