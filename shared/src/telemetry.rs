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

/// CloudWatch Embedded Metric Format: one JSON log line that CloudWatch turns into metrics
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
/// The push tier emits one per invocation: fan-out size, path taken, push latency, gone count.
pub mod emf {
    use serde_json::{json, Map, Value};

    /// Namespace of every Ripple metric.
    pub const NAMESPACE: &str = "Ripple";

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Unit {
        Count,
        Milliseconds,
    }

    impl Unit {
        fn as_str(self) -> &'static str {
            match self {
                Self::Count => "Count",
                Self::Milliseconds => "Milliseconds",
            }
        }
    }

    /// One metric value.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Metric {
        pub name: &'static str,
        pub value: f64,
        pub unit: Unit,
    }

    impl Metric {
        pub fn count(name: &'static str, value: usize) -> Self {
            Self {
                name,
                // Counts per invocation are far below 2^53.
                value: value as f64,
                unit: Unit::Count,
            }
        }

        pub fn milliseconds(name: &'static str, value: std::time::Duration) -> Self {
            Self {
                name,
                value: value.as_secs_f64() * 1000.0,
                unit: Unit::Milliseconds,
            }
        }
    }

    /// The EMF document: metrics under one dimension set, plus free-form `properties`
    /// (searchable in Logs Insights, not metrics).
    pub fn document(
        timestamp_ms: i64,
        dimensions: &[(&str, &str)],
        metrics: &[Metric],
        properties: Map<String, Value>,
    ) -> Value {
        let mut root = properties;
        for (name, value) in dimensions {
            root.insert((*name).to_owned(), json!(value));
        }
        for metric in metrics {
            root.insert(metric.name.to_owned(), json!(metric.value));
        }
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                    "Metrics": metrics
                        .iter()
                        .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
                        .collect::<Vec<_>>(),
                }],
            }),
        );
        Value::Object(root)
    }

    /// Where [`emit`] writes documents.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Sink {
        /// One stdout line, where the Lambda log agent picks it up (the default).
        Stdout = 0,
        /// One stderr line: for hosts that run the functions in-process and keep stdout for
        /// themselves (the local gateway prints its URLs there, the benchmark its report).
        Stderr = 1,
        /// Dropped.
        Discard = 2,
    }

    static SINK: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(Sink::Stdout as u8);

    /// Chooses where documents go, for the whole process. Lambda functions never call it.
    pub fn set_sink(sink: Sink) {
        SINK.store(sink as u8, std::sync::atomic::Ordering::Relaxed);
    }

    /// Writes the document as one line to the configured [`Sink`].
    pub fn emit(document: &Value) {
        match SINK.load(std::sync::atomic::Ordering::Relaxed) {
            0 => println!("{document}"),
            1 => eprintln!("{document}"),
            _ => {}
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn document_declares_every_metric_and_dimension() {
            let doc = document(
                1_700_000_000_000,
                &[("Function", "stream-router")],
                &[
                    Metric::count("FanoutConnections", 3),
                    Metric::milliseconds("PushLatency", std::time::Duration::from_millis(12)),
                ],
                Map::new(),
            );
            assert_eq!(doc["Function"], "stream-router");
            assert_eq!(doc["FanoutConnections"], 3.0);
            assert_eq!(doc["PushLatency"], 12.0);
            let declared = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(declared["Namespace"], NAMESPACE);
            assert_eq!(declared["Dimensions"][0][0], "Function");
            assert_eq!(declared["Metrics"][1]["Unit"], "Milliseconds");
            assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        }
    }
}
