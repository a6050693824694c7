//! Structured JSON logs for Lambda (CloudWatch) and the CloudWatch Embedded Metric Format.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once per cold start. `filter` is an `EnvFilter` directive
/// such as `info` or `shared=debug,info` (from `Config::log_filter`).
pub fn init(filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests, the local gateway hosting many functions) is harmless.
    let _ignored_if_already_set = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
