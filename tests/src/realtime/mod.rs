//! Support of the realtime end-to-end suite (`tests/tests/realtime.rs`): the whole local
//! stack ([`ripple_local::stack::LocalStack`] over the repository's `template.yaml`, in-memory
//! dynoxide, the real moto server, the real stream and SQS pollers) driven only from the
//! outside — REST over HTTP to the gateway's HTTP API, WebSocket clients on its WebSocket API,
//! and reads of the table through its DynamoDB endpoint.
//!
//! Every wait is bounded: a missing event fails the test with what the socket did receive,
//! never hangs it.
//!
//! Here: the stack, its users and [`RealtimeStack::start`]. The stack's REST helpers are in
//! `rest`, its sockets and fault switches in `gateway`, table and queue reads in `table`,
//! the recording client [`WsClient`] in `client`, and the delivery checks and
//! [`eventually`] in `delivery`.

mod client;
mod delivery;
mod gateway;
mod rest;
mod table;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ripple_local::stack::{LocalStack, StackOptions};
use serde_json::Value;
use shared::domain::UserId;
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use client::{Frame, WsClient, NOT_DELIVERIES};
pub use delivery::{check_deliveries, delivery_counts, event_ids, eventually, DeliveryKey};

/// Longest wait for something that should happen promptly (an event, a reply, a cleanup).
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a socket must stay quiet for "nothing arrives" to hold. Events arrive within
/// tens of milliseconds locally, so this is generous without slowing the suite much.
pub const QUIET: Duration = Duration::from_millis(1500);

/// The subprotocol clients offer first (the access token is the second).
pub const SUBPROTOCOL: &str = "ripple.v1";

/// Password of every test user.
pub const PASSWORD: &str = "correct horse battery staple";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The repository root (`tests/..`).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The moto server `make tools` installs; the suite cannot run without it.
pub fn moto_server() -> PathBuf {
    let path = repository_root().join(".venv/bin/moto_server");
    assert!(
        path.is_file(),
        "{} is missing: run `make tools` (the realtime suite runs the real moto server for SQS)",
        path.display()
    );
    path
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl User {
    /// The id as a user id (what the table's keys are built from).
    pub fn user_id(&self) -> UserId {
        UserId::parse(&self.id, "id")
            .unwrap_or_else(|e| panic!("{}'s id {} is not a UUID: {e}", self.username, self.id))
    }
}

/// An HTTP response of the gateway's HTTP API.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
}

/// The local stack with the clients the tests use on it.
pub struct RealtimeStack {
    pub stack: LocalStack,
    http: Client<HttpConnector, Full<Bytes>>,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
}

/// With `RUST_LOG` set, the stack's logs (and each span's time when it closes) go to the
/// test's output: `RUST_LOG=stream_router=debug cargo test … -- --nocapture`.
fn log_when_asked() {
    use tracing_subscriber::fmt::format::FmtSpan;
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        // Another test of the same binary may have installed it already.
        let _already_installed = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::CLOSE)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_test_writer()
            .try_init();
    }
}

impl RealtimeStack {
    /// The stack with production settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The stack with `configure` applied to its options (fault flags, environment).
    pub async fn start_with(configure: impl FnOnce(&mut StackOptions)) -> Self {
        log_when_asked();
        let mut options = StackOptions::new(repository_root().join("template.yaml"));
        options.in_memory = true;
        options.moto_server = moto_server();
        // Ports chosen by the OS: tests run in parallel.
        options.gateway = ripple_local::gateway::GatewayOptions::default();
        options.stream_poll_interval = Duration::from_millis(20);
        // Every suite registers its users from 127.0.0.1; the per-address registration
        // limit is the security suite's to test (it sets its own, after this).
        options.environment.push((
            "AUTH_REGISTER_ATTEMPTS_PER_IP".to_owned(),
            "1000000".to_owned(),
        ));
        configure(&mut options);
        let stack = tokio::time::timeout(Duration::from_secs(60), LocalStack::start(options))
            .await
            .expect("the local stack started within a minute")
            .expect("the local stack starts");
        let sdk = shared::aws::local_sdk_config();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&stack.dynamodb_endpoint)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .endpoint_url(&stack.sqs_endpoint)
                .build(),
        );
        Self {
            stack,
            http: Client::builder(TokioExecutor::new()).build_http(),
            dynamodb,
            sqs,
        }
    }

    /// Stops everything the stack started (moto included).
    pub async fn stop(self) {
        self.stack.stop().await;
    }
}
