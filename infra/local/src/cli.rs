//! `ripple-local`'s flags (parsed by `main.rs` with clap) and how they become
//! [`StackOptions`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use crate::gateway::GatewayOptions;
use crate::latency::{Distribution, LatencyModel, RateLimit};
use crate::stack::{InvokeMode, StackOptions};
use crate::web_app::WebAppFiles;
use crate::websocket::{WebSocketFaults, WebSocketLimits};

/// Default `cargo lambda watch` address.
pub const CARGO_LAMBDA_DEFAULT_URL: &str = "http://127.0.0.1:9000";

/// Ripple's local stack: API Gateway HTTP + WebSocket emulation, `@connections`, DynamoDB
/// (embedded dynoxide), SQS (moto) and the stream / SQS event sources, from template.yaml.
#[derive(Debug, Clone, Parser)]
#[command(name = "ripple-local", version)]
pub struct Args {
    /// The SAM template with the routes and event sources.
    #[arg(long, default_value = "template.yaml")]
    pub template: PathBuf,
    /// Address both APIs listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// HTTP API port (0: any free port).
    #[arg(long, default_value_t = 3000)]
    pub http_port: u16,
    /// WebSocket API + management API port (0: any free port).
    #[arg(long, default_value_t = 3001)]
    pub ws_port: u16,
    /// WebSocket stage (default: the template's AWS::ApiGatewayV2::Stage).
    #[arg(long)]
    pub stage: Option<String>,
    /// `in-process` (default), or `cargo-lambda[=URL]` to POST events to `cargo lambda watch`.
    #[arg(long, default_value = "in-process", value_parser = parse_invoke)]
    pub invoke: InvokeMode,
    /// Directory of the persistent database.
    #[arg(long, default_value = ".ripple")]
    pub state_dir: PathBuf,
    /// Keep the database in memory (nothing persists).
    #[arg(long)]
    pub in_memory: bool,
    /// Delete the persistent database before starting.
    #[arg(long)]
    pub reset: bool,
    /// Seconds between TTL sweeps (dynoxide deletes expired items only when swept).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl_sweep_secs: u64,
    /// Use this SQS endpoint instead of starting moto_server.
    #[arg(long)]
    pub sqs_endpoint: Option<String>,
    /// The moto_server executable.
    #[arg(
        long,
        env = "RIPPLE_MOTO_SERVER",
        default_value = ".venv/bin/moto_server"
    )]
    pub moto_server: PathBuf,
    /// DynamoDB table name.
    #[arg(long, default_value = "ripple")]
    pub table_name: String,
    /// Extra function environment variable, KEY=VALUE (repeatable).
    #[arg(long = "env", value_parser = parse_key_value)]
    pub environment: Vec<(String, String)>,
    /// WebSocket idle timeout in seconds (AWS: 600).
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Maximum WebSocket connection duration in seconds (AWS: 7200).
    #[arg(long, default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connection_secs: u64,
    /// DynamoDB stream poll interval in milliseconds.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub stream_poll_interval_ms: u64,
    /// Override the fan-out queue's VisibilityTimeout (seconds), e.g. to see redelivery fast.
    #[arg(long)]
    pub visibility_timeout_secs: Option<u64>,
    /// Fault: never invoke `$disconnect`.
    #[arg(long)]
    pub drop_disconnect: bool,
    /// Fault: answer this percentage of `@connections` POSTs with 500.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub fail_post_percent: u8,
    /// Fault: deliver every DynamoDB stream batch twice.
    #[arg(long)]
    pub duplicate_stream_batches: bool,
    /// Fault: start with the SQS poller paused.
    #[arg(long)]
    pub pause_sqs: bool,
    /// Model AWS timing with the published figures: turns on --stream-latency,
    /// --sqs-latency, --management-latency and --management-rps with their defaults
    /// (docs/local-aws-model.md). Each of those flags still overrides its part.
    #[arg(long, help_heading = "AWS-modelled timing")]
    pub aws_latency: bool,
    /// Delay before a stream record reaches its function, as percentiles in ms, or `off`
    /// [preset: p50=213,p90=341,p99=552, DynamoDB Streams -> Lambda].
    #[arg(long, value_name = "PERCENTILES|off", value_parser = parse_distribution, help_heading = "AWS-modelled timing")]
    pub stream_latency: Option<Setting<Distribution>>,
    /// Delay from an SQS send to its delivery to the function, as percentiles in ms, or
    /// `off` [preset: p50=16,p99=105, SQS -> Lambda].
    #[arg(long, value_name = "PERCENTILES|off", value_parser = parse_distribution, help_heading = "AWS-modelled timing")]
    pub sqs_latency: Option<Setting<Distribution>>,
    /// Delay of each @connections call (POST, GET, DELETE), as percentiles in ms, or `off`
    /// [preset: p50=20,p99=80, an assumed same-region call].
    #[arg(long, value_name = "PERCENTILES|off", value_parser = parse_distribution, help_heading = "AWS-modelled timing")]
    pub management_latency: Option<Setting<Distribution>>,
    /// Account-wide @connections throttle in requests per second (beyond it: 429
    /// LimitExceededException), or `off` [preset: 10000, API Gateway's account default].
    #[arg(long, value_name = "RPS|off", value_parser = parse_rate, help_heading = "AWS-modelled timing")]
    pub management_rps: Option<Setting<u32>>,
    /// Token-bucket size of the @connections throttle [default: 5000 at 10000 rps, else
    /// half the rate].
    #[arg(long, value_name = "REQUESTS", value_parser = clap::value_parser!(u32).range(1..), help_heading = "AWS-modelled timing")]
    pub management_burst: Option<u32>,
    /// Seed of every modelled delay (the same seed draws the same delays).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "SEED",
        help_heading = "AWS-modelled timing"
    )]
    pub latency_seed: u64,
    /// The web app's folder, served at /app/ on the HTTP API port.
    #[arg(long, default_value = "clients/web")]
    pub web_root: PathBuf,
    /// The folder of the realtime client the web app imports, served at /app/lib/.
    #[arg(long, default_value = "clients/js")]
    pub web_lib: PathBuf,
    /// Do not serve the web app.
    #[arg(long)]
    pub no_web_app: bool,
    /// Log every event and response.
    #[arg(long)]
    pub verbose: bool,
}

fn parse_invoke(value: &str) -> Result<InvokeMode, String> {
    match value.split_once('=') {
        None if value == "in-process" => Ok(InvokeMode::InProcess),
        None if value == "cargo-lambda" => {
            Ok(InvokeMode::CargoLambda(CARGO_LAMBDA_DEFAULT_URL.to_owned()))
        }
        Some(("cargo-lambda", url)) if url.starts_with("http://") || url.starts_with("https://") => {
            Ok(InvokeMode::CargoLambda(url.to_owned()))
        }
        _ => Err(format!(
            "expected `in-process`, `cargo-lambda` or `cargo-lambda=http://HOST:PORT`, got `{value}`"
        )),
    }
}

/// A modelled part set explicitly: `off`, or on with this value.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting<T> {
    Off,
    On(T),
}

impl<T> Setting<T> {
    fn into_option(self) -> Option<T> {
        match self {
            Self::Off => None,
            Self::On(value) => Some(value),
        }
    }
}

fn parse_distribution(value: &str) -> Result<Setting<Distribution>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Setting::Off);
    }
    value
        .parse()
        .map(Setting::On)
        .map_err(|error| format!("{error} (expected e.g. `p50=213,p90=341,p99=552` or `off`)"))
}

fn parse_rate(value: &str) -> Result<Setting<u32>, String> {
    if value.eq_ignore_ascii_case("off") {
        return Ok(Setting::Off);
    }
    match value.parse::<u32>() {
        Ok(rate) if rate > 0 => Ok(Setting::On(rate)),
        _ => Err(format!(
            "expected requests per second (at least 1) or `off`, got `{value}`"
        )),
    }
}

fn parse_key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, val)) if !key.is_empty() => Ok((key.to_owned(), val.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{value}`")),
    }
}

impl Args {
    /// The timing the flags ask for: the preset (or nothing), each flag over its part.
    pub fn latency_model(&self) -> LatencyModel {
        let mut model = if self.aws_latency {
            LatencyModel::aws()
        } else {
            LatencyModel::default()
        };
        let choose = |flag: &Option<Setting<Distribution>>, preset: Option<Distribution>| {
            flag.clone().map_or(preset, Setting::into_option)
        };
        model.stream = choose(&self.stream_latency, model.stream.take());
        model.sqs = choose(&self.sqs_latency, model.sqs.take());
        model.management = choose(&self.management_latency, model.management.take());
        if let Some(rate) = &self.management_rps {
            model.management_rate_limit = rate.clone().into_option().map(|per_second| {
                if per_second == RateLimit::AWS_ACCOUNT_DEFAULT.per_second {
                    RateLimit::AWS_ACCOUNT_DEFAULT
                } else {
                    RateLimit::per_second(per_second)
                }
            });
        }
        if let (Some(limit), Some(burst)) =
            (&mut model.management_rate_limit, self.management_burst)
        {
            limit.burst = burst;
        }
        model.seed = self.latency_seed;
        model
    }

    /// The web app's folders, unless switched off or absent (run from outside the repository).
    fn web_app_files(&self) -> Option<WebAppFiles> {
        if self.no_web_app {
            return None;
        }
        if !self.web_root.is_dir() {
            tracing::warn!(
                "no web app: {} is not a folder (run from the repository root, or pass --web-root)",
                self.web_root.display()
            );
            return None;
        }
        Some(WebAppFiles {
            root: self.web_root.clone(),
            library: self.web_lib.clone(),
        })
    }

    pub fn stack_options(&self) -> StackOptions {
        let mut options = StackOptions::new(&self.template);
        options.gateway = GatewayOptions {
            http_address: SocketAddr::new(self.host, self.http_port),
            websocket_address: SocketAddr::new(self.host, self.ws_port),
            stage: self.stage.clone(),
            limits: WebSocketLimits {
                idle_timeout: Duration::from_secs(self.idle_timeout_secs),
                max_duration: Duration::from_secs(self.max_connection_secs),
                ..WebSocketLimits::default()
            },
            faults: Arc::new(WebSocketFaults::new(
                self.drop_disconnect,
                self.fail_post_percent,
            )),
            // Set by the stack from `options.latency`.
            latency: LatencyModel::default(),
            web_app: self.web_app_files(),
        };
        options.invoke = self.invoke.clone();
        options.state_dir = self.state_dir.clone();
        options.in_memory = self.in_memory;
        options.reset = self.reset;
        options.ttl_sweep_interval = Duration::from_secs(self.ttl_sweep_secs);
        options.sqs_endpoint = self.sqs_endpoint.clone();
        options.moto_server = self.moto_server.clone();
        options.table_name = self.table_name.clone();
        options.environment = self.environment.clone();
        options.stream_poll_interval = Duration::from_millis(self.stream_poll_interval_ms);
        options.visibility_timeout = self.visibility_timeout_secs.map(Duration::from_secs);
        options.duplicate_stream_batches = self.duplicate_stream_batches;
        options.pause_sqs = self.pause_sqs;
        options.latency = self.latency_model();
        options.verbose = self.verbose;
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoke_modes_parse_with_the_cargo_lambda_default() {
        assert_eq!(parse_invoke("in-process"), Ok(InvokeMode::InProcess));
        assert_eq!(
            parse_invoke("cargo-lambda"),
            Ok(InvokeMode::CargoLambda(CARGO_LAMBDA_DEFAULT_URL.into()))
        );
        assert_eq!(
            parse_invoke("cargo-lambda=http://127.0.0.1:9100"),
            Ok(InvokeMode::CargoLambda("http://127.0.0.1:9100".into()))
        );
        assert!(parse_invoke("lambda").is_err());
        assert!(parse_invoke("cargo-lambda=localhost:9000").is_err());
    }

    #[test]
    fn flags_become_stack_options() {
        let args = Args::try_parse_from([
            "ripple-local",
            "--http-port",
            "0",
            "--idle-timeout-secs",
            "2",
            "--fail-post-percent",
            "25",
            "--drop-disconnect",
            "--env",
            "RATE_LIMIT_POSTS_PER_MINUTE=1000",
            "--in-memory",
        ])
        .unwrap();
        let options = args.stack_options();
        assert_eq!(options.gateway.http_address.port(), 0);
        assert_eq!(options.gateway.websocket_address.port(), 3001);
        assert_eq!(options.gateway.limits.idle_timeout, Duration::from_secs(2));
        assert!(options
            .gateway
            .faults
            .drop_disconnect
            .load(std::sync::atomic::Ordering::Relaxed));
        assert_eq!(
            options.environment,
            [("RATE_LIMIT_POSTS_PER_MINUTE".to_owned(), "1000".to_owned())]
        );
        assert!(options.in_memory);
        assert!(Args::try_parse_from(["ripple-local", "--fail-post-percent", "101"]).is_err());
        assert!(options.latency.is_off(), "AWS timing is off by default");
    }

    #[test]
    fn the_aws_latency_preset_turns_every_part_on_and_flags_override_it() {
        let preset = Args::try_parse_from(["ripple-local", "--aws-latency"]).unwrap();
        assert_eq!(preset.stack_options().latency, LatencyModel::aws());

        let tuned = Args::try_parse_from([
            "ripple-local",
            "--aws-latency",
            "--stream-latency",
            "p50=100,p99=300",
            "--sqs-latency",
            "off",
            "--management-rps",
            "500",
            "--latency-seed",
            "9",
        ])
        .unwrap()
        .latency_model();
        assert_eq!(tuned.stream, Some("p50=100,p99=300".parse().unwrap()));
        assert_eq!(tuned.sqs, None);
        assert_eq!(tuned.management, LatencyModel::aws().management);
        assert_eq!(
            tuned.management_rate_limit,
            Some(RateLimit::per_second(500))
        );
        assert_eq!(tuned.seed, 9);

        // A single part without the preset.
        let only_throttle = Args::try_parse_from([
            "ripple-local",
            "--management-rps",
            "10000",
            "--management-burst",
            "20",
        ])
        .unwrap()
        .latency_model();
        assert_eq!(only_throttle.stream, None);
        assert_eq!(
            only_throttle.management_rate_limit,
            Some(RateLimit {
                per_second: 10_000,
                burst: 20
            })
        );
        let no_throttle =
            Args::try_parse_from(["ripple-local", "--aws-latency", "--management-rps", "off"])
                .unwrap()
                .latency_model();
        assert_eq!(no_throttle.management_rate_limit, None);

        for bad in [
            ["--stream-latency", "p50=0"],
            ["--stream-latency", "fast"],
            ["--management-rps", "0"],
            ["--management-rps", "-5"],
            ["--management-burst", "0"],
        ] {
            let parsed = Args::try_parse_from(["ripple-local", bad[0], bad[1]]);
            assert!(parsed.is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn the_web_app_is_served_from_a_folder_that_exists_unless_switched_off() {
        let folder = tempfile::tempdir().unwrap();
        let root = folder.path().to_str().unwrap();
        let options = |extra: &[&str]| {
            let mut argv = vec!["ripple-local", "--web-root", root, "--web-lib", "lib"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).unwrap().stack_options()
        };
        assert_eq!(
            options(&[]).gateway.web_app,
            Some(WebAppFiles {
                root: root.into(),
                library: "lib".into()
            })
        );
        assert_eq!(options(&["--no-web-app"]).gateway.web_app, None);
        let missing = folder.path().join("missing");
        let argv = ["ripple-local", "--web-root", missing.to_str().unwrap()];
        assert_eq!(
            Args::try_parse_from(argv)
                .unwrap()
                .stack_options()
                .gateway
                .web_app,
            None
        );
    }
}
