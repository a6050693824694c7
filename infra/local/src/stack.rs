//! The whole local stack in one process: embedded dynoxide (DynamoDB + Streams, TTL sweeps),
//! SQS (moto, or any endpoint), the gateway (HTTP + WebSocket + `@connections`) and the
//! event-source mappings, all wired from `template.yaml`.
//!
//! Start order follows the dependencies: storage, queues, gateway ports (the functions need
//! the management endpoint), functions, gateway, pollers. Stop is the reverse, so
//! `$disconnect` handlers still have their table when the sockets close.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use lambda_local::EmbeddedDynamo;
use shared::auth::{Jwks, PublicKey, SigningKey};
use shared::aws::local_sdk_config;
use shared::metering::RequestMeter;
use tokio::task::JoinHandle;

use crate::functions::{FunctionRegistry, LocalEndpoints};
use crate::gateway::{BoundGateway, Gateway, GatewayOptions, GatewayUrls};
use crate::latency::LatencyModel;
use crate::moto::{MotoServer, Queues};
use crate::sqs_poller::SqsPollerHandle;
use crate::stream_poller::StreamPollerHandle;
use crate::template::Template;

mod keys;
mod mappings;
mod queues;
mod storage;

use keys::AccessKeys;
use storage::Storage;

/// File name of the development signing key inside the state directory: an Ed25519 private
/// JWK, generated on the first start and reused after, so tokens survive a restart over the
/// persistent `.ripple/` state (gitignored).
pub const SIGNING_KEY_FILE: &str = "jwt-signing-key.json";

/// Name of the Secrets Manager secret (in moto) `api-auth` reads its signing key from,
/// as `JWT_SIGNING_KEY_SECRET` names it on AWS.
pub const SIGNING_KEY_SECRET_NAME: &str = "ripple/jwt-signing-key";

/// File name of the persistent database inside the state directory.
pub const DATABASE_FILE: &str = "dynamodb.sqlite";

/// How functions are invoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeMode {
    /// Linked handlers, called in-process (default).
    InProcess,
    /// POST to `cargo lambda watch` at this base URL.
    CargoLambda(String),
}

/// Everything `ripple-local` can be told.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub template: PathBuf,
    pub gateway: GatewayOptions,
    pub invoke: InvokeMode,
    /// Where the persistent database lives (`.ripple/`).
    pub state_dir: PathBuf,
    pub in_memory: bool,
    /// Delete the persistent database before starting.
    pub reset: bool,
    pub ttl_sweep_interval: Duration,
    /// Use this SQS endpoint instead of spawning moto.
    pub sqs_endpoint: Option<String>,
    pub moto_server: PathBuf,
    pub table_name: String,
    /// The key `api-auth` signs access tokens with. `None`: the development key of
    /// `state_dir` ([`SIGNING_KEY_FILE`], created once), or a fresh one in memory.
    pub signing_key: Option<SigningKey>,
    /// Public keys published in the JWKS besides the signing key's: a previous key still
    /// accepted during a rotation.
    pub previous_public_keys: Vec<PublicKey>,
    /// Extra function environment (`--env KEY=VALUE`), over everything else.
    pub environment: Vec<(String, String)>,
    pub stream_poll_interval: Duration,
    /// Overrides the fan-out queue's `VisibilityTimeout` (tests shorten redelivery).
    pub visibility_timeout: Option<Duration>,
    /// AWS-modelled timing (stream and SQS delivery delays, `@connections` delay and
    /// throttle); [`LatencyModel::default`] is local speed, [`LatencyModel::aws`] the
    /// published figures. Overrides `gateway.latency`.
    pub latency: LatencyModel,
    /// Fault injection: invoke every stream batch twice.
    pub duplicate_stream_batches: bool,
    /// Fault injection: start with the SQS pollers paused.
    pub pause_sqs: bool,
    /// Counts the SDK requests of the in-process functions (not the emulated AWS
    /// machinery: pollers, gateway). Ignored with `--invoke cargo-lambda`.
    pub meter: Option<RequestMeter>,
    pub verbose: bool,
}

impl StackOptions {
    /// The same options with AWS-modelled timing (e.g. `LatencyModel::aws()`).
    pub fn with_latency(mut self, latency: LatencyModel) -> Self {
        self.latency = latency;
        self
    }

    /// Defaults for `template`: AWS limits, in-process functions, moto from `.venv`.
    pub fn new(template: impl Into<PathBuf>) -> Self {
        Self {
            template: template.into(),
            gateway: GatewayOptions::default(),
            invoke: InvokeMode::InProcess,
            state_dir: PathBuf::from(".ripple"),
            in_memory: false,
            reset: false,
            ttl_sweep_interval: Duration::from_secs(30),
            sqs_endpoint: None,
            moto_server: PathBuf::from(".venv/bin/moto_server"),
            table_name: "ripple".to_owned(),
            signing_key: None,
            previous_public_keys: Vec::new(),
            environment: Vec::new(),
            stream_poll_interval: Duration::from_millis(50),
            visibility_timeout: None,
            latency: LatencyModel::default(),
            duplicate_stream_batches: false,
            pause_sqs: false,
            meter: None,
            verbose: false,
        }
    }
}

/// The running stack.
pub struct LocalStack {
    pub urls: GatewayUrls,
    pub dynamodb_endpoint: String,
    /// The database file, `None` in memory.
    pub database_path: Option<PathBuf>,
    pub sqs_endpoint: String,
    pub queues: Queues,
    pub table_name: String,
    /// The JWKS the verifying functions are given (`JWT_PUBLIC_KEYS`).
    pub jwks: Jwks,
    /// Where the signing key came from (the banner).
    pub signing_key_source: String,
    signing_key: SigningKey,
    /// With `--invoke cargo-lambda`: the environment `cargo lambda watch` needs.
    pub cargo_lambda_environment: Option<String>,
    /// The AWS-modelled timing in effect.
    pub latency: LatencyModel,
    gateway: Option<Gateway>,
    stream_pollers: Vec<StreamPollerHandle>,
    sqs_pollers: Vec<SqsPollerHandle>,
    ttl_sweeper: JoinHandle<()>,
    moto: Option<MotoServer>,
    dynamo: Option<EmbeddedDynamo>,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        Self::start_with_functions(options, FunctionRegistry::new()).await
    }

    /// [`start`](Self::start) with `extra` functions registered over the built-in ones
    /// (tests run their own handlers behind the real gateway and pollers this way).
    pub async fn start_with_functions(
        options: StackOptions,
        extra: FunctionRegistry,
    ) -> anyhow::Result<Self> {
        let template = Template::from_file(&options.template)?;
        if options.invoke == InvokeMode::InProcess {
            // Fail before starting anything when a route has no handler.
            let mut available = FunctionRegistry::in_process_names();
            available.extend(extra.names());
            template.check_handlers(&available)?;
        }
        let sdk = local_sdk_config();

        // Storage.
        let storage = Storage::start(&options, &sdk).await?;

        // Queues, and the access-token keys in Secrets Manager (moto serves every service on
        // one port).
        let (moto, sqs_endpoint) = queues::start_sqs(&options).await?;
        let secrets_endpoint = sqs_endpoint.clone();
        let keys = AccessKeys::publish(&options, &sdk, &secrets_endpoint).await?;
        let (sqs, queues) = queues::create_queues(&options, &template, &sdk, &sqs_endpoint).await?;

        // Gateway ports, then the functions that need them, then serving.
        let gateway_options = GatewayOptions {
            latency: options.latency.clone(),
            ..options.gateway.clone()
        };
        let bound = BoundGateway::bind(gateway_options, &template).await?;
        let urls = bound.urls();
        let endpoints = LocalEndpoints {
            dynamodb: storage.endpoint.clone(),
            sqs: sqs_endpoint.clone(),
            secrets_manager: secrets_endpoint,
            meter: options.meter.clone(),
        };
        let environment = function_environment(&options, &keys.jwks, &urls, &queues, &endpoints);
        let cargo_lambda_environment = matches!(options.invoke, InvokeMode::CargoLambda(_))
            .then(|| shell_environment(&environment));
        let registry = function_registry(&options, &template, &environment, &endpoints)
            .await?
            .merge(&extra)
            .verbose(options.verbose);
        let gateway = bound.serve(&template, &registry)?;

        // Event-source mappings.
        let stream_clients = storage.stream_poller_clients(&sdk, &sqs);
        let stream_pollers = mappings::spawn_stream_pollers(
            &options,
            &template,
            &registry,
            &stream_clients,
            &queues,
        )
        .await?;
        let sqs_pollers =
            mappings::spawn_sqs_pollers(&options, &template, &registry, &sqs, &queues).await?;

        Ok(Self {
            urls,
            dynamodb_endpoint: storage.endpoint,
            database_path: storage.database_path,
            sqs_endpoint,
            queues,
            table_name: options.table_name,
            jwks: keys.jwks,
            signing_key_source: keys.source,
            signing_key: keys.signing_key,
            cargo_lambda_environment,
            latency: options.latency,
            gateway: Some(gateway),
            stream_pollers,
            sqs_pollers,
            ttl_sweeper: storage.ttl_sweeper,
            moto,
            dynamo: Some(storage.dynamo),
        })
    }

    /// The development signing key `api-auth` was given: the benchmark and tests mint
    /// tokens with it instead of registering every user through `api-auth`.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing_key
    }

    /// The gateway (connections, fault switches).
    pub fn gateway(&self) -> Option<&Gateway> {
        self.gateway.as_ref()
    }

    /// The gateway, to stop and start its WebSocket side (fault injection).
    pub fn gateway_mut(&mut self) -> Option<&mut Gateway> {
        self.gateway.as_mut()
    }

    /// The stream pollers (their fault switches).
    pub fn stream_pollers(&self) -> &[StreamPollerHandle] {
        &self.stream_pollers
    }

    /// The SQS pollers (pause/resume for fault injection).
    pub fn sqs_pollers(&self) -> &[SqsPollerHandle] {
        &self.sqs_pollers
    }

    /// Process id of the moto server this stack started, if any.
    pub fn moto_pid(&self) -> Option<u32> {
        self.moto.as_ref().map(MotoServer::pid)
    }

    /// What `make dev` prints.
    pub fn banner(&self) -> String {
        let storage = match &self.database_path {
            Some(path) => path.display().to_string(),
            None => "in memory".to_owned(),
        };
        let sqs = match self.moto_pid() {
            Some(pid) => format!("{} (moto_server pid {pid})", self.sqs_endpoint),
            None => self.sqs_endpoint.clone(),
        };
        let kids: Vec<&str> = self.jwks.keys().iter().map(|key| key.kid()).collect();
        let cargo_lambda = match &self.cargo_lambda_environment {
            Some(environment) => format!("  cargo lambda watch environment:\n    {environment}\n"),
            None => String::new(),
        };
        let web_app = match self.gateway.as_ref().and_then(Gateway::web_app_url) {
            Some(url) => format!("  Web app:         {url}\n"),
            None => String::new(),
        };
        format!(
            "ripple-local is running\n\
             {web_app}  \
             HTTP API:        {}\n  \
             WebSocket API:   {}\n  \
             Management API:  {}\n  \
             DynamoDB:        {} (table {}, {storage})\n  \
             SQS:             {sqs}\n  \
             Fan-out queue:   {}\n  \
             Fan-out DLQ:     {}\n  \
             Stream failures: {}\n  \
             Token keys:      {} (JWKS kids {}; secret {SIGNING_KEY_SECRET_NAME})\n  \
             AWS latency:     {}\n\
             {cargo_lambda}\
             Press Ctrl-C to stop.",
            self.urls.http_url(),
            self.urls.websocket_url(),
            self.urls.management_endpoint(),
            self.dynamodb_endpoint,
            self.table_name,
            self.queues.fanout.url,
            self.queues.fanout_dlq.url,
            self.queues.stream_failures.url,
            self.signing_key_source,
            kids.join(", "),
            self.latency.describe(),
        )
    }

    /// Stops everything it started, in reverse order; moto is gone when this returns.
    pub async fn stop(mut self) {
        for poller in self.sqs_pollers.drain(..) {
            poller.shutdown().await;
        }
        for poller in self.stream_pollers.drain(..) {
            poller.shutdown().await;
        }
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        self.ttl_sweeper.abort();
        if let Some(moto) = self.moto.take() {
            moto.shutdown().await;
        }
        if let Some(dynamo) = self.dynamo.take() {
            // Joining the server thread blocks; keep it off the async workers.
            let _joined = tokio::task::spawn_blocking(move || drop(dynamo)).await;
        }
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        self.ttl_sweeper.abort();
    }
}

/// `KEY=value` pairs for a shell (none is secret: the private key is in Secrets Manager).
/// JSON values are single-quoted.
fn shell_environment(environment: &BTreeMap<String, String>) -> String {
    environment
        .iter()
        .map(|(key, value)| {
            if value.contains(['"', ' ', '{']) {
                format!("{key}='{value}'")
            } else {
                format!("{key}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The functions of `template`: linked in-process, or behind `cargo lambda watch`.
async fn function_registry(
    options: &StackOptions,
    template: &Template,
    environment: &BTreeMap<String, String>,
    endpoints: &LocalEndpoints,
) -> anyhow::Result<FunctionRegistry> {
    Ok(match &options.invoke {
        InvokeMode::InProcess => {
            FunctionRegistry::in_process(template, environment, endpoints).await?
        }
        InvokeMode::CargoLambda(url) => FunctionRegistry::cargo_lambda(template, url),
    })
}

/// The environment every function gets: the table, the keys, and the local endpoints the
/// SDK and the functions' own settings read; `--env` values last, over everything else.
fn function_environment(
    options: &StackOptions,
    jwks: &Jwks,
    urls: &GatewayUrls,
    queues: &Queues,
    endpoints: &LocalEndpoints,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::from([
        ("TABLE_NAME".to_owned(), options.table_name.clone()),
        ("JWT_PUBLIC_KEYS".to_owned(), jwks.to_json().to_string()),
        (
            "JWT_SIGNING_KEY_SECRET".to_owned(),
            SIGNING_KEY_SECRET_NAME.to_owned(),
        ),
        (
            "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(),
            endpoints.secrets_manager.clone(),
        ),
        (
            "WS_MANAGEMENT_ENDPOINT".to_owned(),
            urls.management_endpoint(),
        ),
        ("FANOUT_QUEUE_URL".to_owned(), queues.fanout.url.clone()),
        (
            "AWS_ENDPOINT_URL_DYNAMODB".to_owned(),
            endpoints.dynamodb.clone(),
        ),
        (
            "AWS_ENDPOINT_URL_DYNAMODB_STREAMS".to_owned(),
            endpoints.dynamodb.clone(),
        ),
        ("AWS_ENDPOINT_URL_SQS".to_owned(), endpoints.sqs.clone()),
    ]);
    environment.extend(options.environment.iter().cloned());
    environment
}

#[cfg(test)]
mod tests {
    use super::keys::signing_key;
    use super::queues::queue_settings;
    use super::*;

    #[test]
    fn the_development_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StackOptions::new("template.yaml");
        options.state_dir = dir.path().join("state");
        let (first, _) = signing_key(&options).unwrap();
        let (again, source) = signing_key(&options).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        assert!(source.contains(SIGNING_KEY_FILE), "{source}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let file = options.state_dir.join(SIGNING_KEY_FILE);
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key file is private: {mode:o}");
        }
        options.in_memory = true;
        let (fresh, _) = signing_key(&options).unwrap();
        assert_ne!(fresh.public_key(), first.public_key());
    }

    #[test]
    fn queue_settings_come_from_the_event_sources_and_redrive_policy() {
        let template = Template::parse(
            r#"
Resources:
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/push-worker
      Events:
        Queue:
          Type: SQS
          Properties: { Queue: !GetAtt Fanout.Arn }
  Router:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/stream-router
      Events:
        Stream:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Table.StreamArn
            DestinationConfig: { OnFailure: { Destination: !GetAtt Failures.Arn } }
  Table: { Type: AWS::DynamoDB::Table }
  Fanout:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 180
      RedrivePolicy: { deadLetterTargetArn: !GetAtt Dlq.Arn, maxReceiveCount: 3 }
  Dlq: { Type: AWS::SQS::Queue }
  Failures: { Type: AWS::SQS::Queue, Properties: { QueueName: stream-failures } }
"#,
        )
        .unwrap();
        let settings = queue_settings(&template, None);
        assert_eq!(settings.fanout_queue_name, "Fanout");
        assert_eq!(settings.fanout_dlq_name, "Dlq");
        assert_eq!(settings.stream_failure_queue_name, "stream-failures");
        assert_eq!(settings.max_receive_count, 3);
        assert_eq!(settings.visibility_timeout, Duration::from_secs(180));
        let shortened = queue_settings(&template, Some(Duration::from_secs(2)));
        assert_eq!(shortened.visibility_timeout, Duration::from_secs(2));
    }
}
