//! The whole local stack in one process: embedded dynoxide (DynamoDB + Streams, TTL sweeps),
//! SQS (moto, or any endpoint), the gateway (HTTP + WebSocket + `@connections`) and the
//! event-source mappings, all wired from `template.yaml`.
//!
//! Start order follows the dependencies: storage, queues, gateway ports (the functions need
//! the management endpoint), functions, gateway, pollers. Stop is the reverse, so
//! `$disconnect` handlers still have their table when the sockets close.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use shared::auth::keys::{Jwks, PublicKey, SigningKey};
use shared::aws::local_sdk_config;
use shared::metering::RequestMeter;
use shared::testkit::EmbeddedDynamo;
use tokio::task::JoinHandle;

use crate::functions::{FunctionRegistry, LocalEndpoints};
use crate::gateway::{BoundGateway, Gateway, GatewayOptions, GatewayUrls};
use crate::latency::LatencyModel;
use crate::moto::{self, MotoServer, QueueSettings, Queues};
use crate::sqs_poller::{self, SqsPollerConfig, SqsPollerHandle};
use crate::stream_poller::{self, StreamPollerClients, StreamPollerConfig, StreamPollerHandle};
use crate::template::Template;

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

        // Storage.
        let (database, database_path) = open_database(&options)?;
        let dynamo = EmbeddedDynamo::start(database.clone()).context("starting dynoxide")?;
        let dynamodb_endpoint = dynamo.endpoint();
        let sdk = local_sdk_config();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&dynamodb_endpoint)
                .build(),
        );
        shared::store::create_table(&dynamodb, &options.table_name)
            .await
            .with_context(|| format!("creating table {}", options.table_name))?;
        let ttl_sweeper = spawn_ttl_sweeper(database, options.ttl_sweep_interval);

        // Queues.
        let moto = match &options.sqs_endpoint {
            Some(_) => None,
            None => Some(MotoServer::start(&options.moto_server).await?),
        };
        let sqs_endpoint = match (&options.sqs_endpoint, &moto) {
            (Some(endpoint), _) => endpoint.clone(),
            (None, Some(moto)) => moto.endpoint().to_owned(),
            (None, None) => unreachable!("moto is started whenever no endpoint is given"),
        };
        // Access-token keys: the private key into Secrets Manager (moto serves every service
        // on one port), for api-auth to read as on AWS; the JWKS to the verifying functions.
        let (signing_key, signing_key_source) = signing_key(&options)?;
        let secrets_endpoint = sqs_endpoint.clone();
        let secrets = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .endpoint_url(&secrets_endpoint)
                .build(),
        );
        moto::put_signing_key(&secrets, SIGNING_KEY_SECRET_NAME, &signing_key).await?;
        let jwks = Jwks::new(
            std::iter::once(signing_key.public_key())
                .chain(options.previous_public_keys.iter().cloned())
                .collect(),
        )
        .context("the JWKS of the signing key and the previous public keys")?;
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .endpoint_url(&sqs_endpoint)
                .build(),
        );
        let queue_settings = queue_settings(&template, options.visibility_timeout);
        let queues = moto::ensure_queues(&sqs, &queue_settings).await?;

        // Gateway ports, then the functions that need them, then serving.
        let gateway_options = GatewayOptions {
            latency: options.latency.clone(),
            ..options.gateway.clone()
        };
        let bound = BoundGateway::bind(gateway_options, &template).await?;
        let urls = bound.urls();
        let mut environment = BTreeMap::from([
            ("TABLE_NAME".to_owned(), options.table_name.clone()),
            ("JWT_PUBLIC_KEYS".to_owned(), jwks.to_json().to_string()),
            (
                "JWT_SIGNING_KEY_SECRET".to_owned(),
                SIGNING_KEY_SECRET_NAME.to_owned(),
            ),
            (
                "AWS_ENDPOINT_URL_SECRETS_MANAGER".to_owned(),
                secrets_endpoint.clone(),
            ),
            (
                "WS_MANAGEMENT_ENDPOINT".to_owned(),
                urls.management_endpoint(),
            ),
            ("FANOUT_QUEUE_URL".to_owned(), queues.fanout.url.clone()),
            (
                "AWS_ENDPOINT_URL_DYNAMODB".to_owned(),
                dynamodb_endpoint.clone(),
            ),
            (
                "AWS_ENDPOINT_URL_DYNAMODB_STREAMS".to_owned(),
                dynamodb_endpoint.clone(),
            ),
            ("AWS_ENDPOINT_URL_SQS".to_owned(), sqs_endpoint.clone()),
        ]);
        environment.extend(options.environment.iter().cloned());
        let cargo_lambda_environment = matches!(options.invoke, InvokeMode::CargoLambda(_))
            .then(|| shell_environment(&environment));
        let registry = match &options.invoke {
            InvokeMode::InProcess => {
                FunctionRegistry::in_process(
                    &template,
                    &environment,
                    &LocalEndpoints {
                        dynamodb: dynamodb_endpoint.clone(),
                        sqs: sqs_endpoint.clone(),
                        secrets_manager: secrets_endpoint.clone(),
                        meter: options.meter.clone(),
                    },
                )
                .await?
            }
            InvokeMode::CargoLambda(url) => FunctionRegistry::cargo_lambda(&template, url),
        }
        .merge(&extra)
        .verbose(options.verbose);
        let gateway = bound.serve(&template, &registry)?;

        // Event-source mappings.
        let mut stream_pollers = Vec::new();
        for source in &template.stream_sources {
            let function = &template.functions[&source.function];
            let mut config = StreamPollerConfig::new(&function.handler, &options.table_name);
            config.poll_interval = options.stream_poll_interval;
            config.batch_size = usize::try_from(source.batch_size)?;
            config.maximum_batching_window = source.maximum_batching_window;
            config.bisect_batch_on_function_error = source.bisect_batch_on_function_error;
            config.maximum_retry_attempts = source.maximum_retry_attempts;
            config.maximum_record_age = source.maximum_record_age;
            if let Some(timeout) = function.timeout {
                config.function_timeout = timeout;
            }
            config.report_batch_item_failures = source.report_batch_item_failures;
            config.on_failure_queue_url = source
                .on_failure_queue
                .as_ref()
                .map(|_| queues.stream_failures.url.clone());
            config.filter = source.filter.clone();
            config.visibility_delay = options.latency.stream.clone();
            config.latency_seed = options.latency.seed;
            config.deliver_each_batch_twice = options.duplicate_stream_batches;
            config.verbose = options.verbose;
            let clients = StreamPollerClients {
                dynamodb: dynamodb.clone(),
                streams: aws_sdk_dynamodbstreams::Client::from_conf(
                    aws_sdk_dynamodbstreams::config::Builder::from(&sdk)
                        .endpoint_url(&dynamodb_endpoint)
                        .build(),
                ),
                sqs: Some(sqs.clone()),
            };
            let handler = registry
                .unlogged(&function.handler)
                .with_context(|| format!("{} is not registered", function.handler))?;
            stream_pollers.push(stream_poller::spawn(config, clients, handler).await?);
        }
        let mut sqs_pollers = Vec::new();
        for source in &template.sqs_sources {
            let function = &template.functions[&source.function];
            let queue_url = queue_url(&template, &queues, &source.queue)?;
            let mut config = SqsPollerConfig::new(&function.handler, queue_url);
            config.batch_size = usize::try_from(source.batch_size)?;
            config.maximum_batching_window = source.maximum_batching_window;
            config.report_batch_item_failures = source.report_batch_item_failures;
            if let Some(concurrency) = source.maximum_concurrency {
                config.maximum_concurrency = usize::try_from(concurrency)?;
            }
            if let Some(timeout) = function.timeout {
                config.function_timeout = timeout;
            }
            config.delivery_delay = options.latency.sqs.clone();
            config.latency_seed = options.latency.seed;
            config.start_paused = options.pause_sqs;
            config.verbose = options.verbose;
            let handler = registry
                .unlogged(&function.handler)
                .with_context(|| format!("{} is not registered", function.handler))?;
            sqs_pollers.push(sqs_poller::spawn(config, sqs.clone(), handler).await?);
        }

        Ok(Self {
            urls,
            dynamodb_endpoint,
            database_path,
            sqs_endpoint,
            queues,
            table_name: options.table_name,
            jwks,
            signing_key_source,
            signing_key,
            cargo_lambda_environment,
            latency: options.latency,
            gateway: Some(gateway),
            stream_pollers,
            sqs_pollers,
            ttl_sweeper,
            moto,
            dynamo: Some(dynamo),
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

/// The signing key of `options`: given, else the development key of the state directory
/// (created on the first start, reused after), else (in memory) a fresh one. Also says
/// where it came from, for the banner.
fn signing_key(options: &StackOptions) -> anyhow::Result<(SigningKey, String)> {
    if let Some(key) = &options.signing_key {
        return Ok((key.clone(), format!("given key {}", key.kid())));
    }
    if options.in_memory {
        let key = SigningKey::generate("local-memory")?;
        return Ok((key, "fresh in-memory key".to_owned()));
    }
    let path = options.state_dir.join(SIGNING_KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(json) => SigningKey::from_jwk_json(&json)
            .with_context(|| format!("reading the signing key {}", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&options.state_dir)
                .with_context(|| format!("creating {}", options.state_dir.display()))?;
            let kid = format!("local-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            let key = SigningKey::generate(&kid)?;
            write_private_file(&path, &key.to_private_jwk_json())?;
            key
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", path.display()));
        }
    };
    Ok((key, format!("development key {}", path.display())))
}

/// Writes `contents` to a new file only its owner can read.
fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    let mut file = open
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn open_database(options: &StackOptions) -> anyhow::Result<(dynoxide::Database, Option<PathBuf>)> {
    if options.in_memory {
        let database = shared::testkit::open_dynoxide(None).map_err(anyhow::Error::msg)?;
        return Ok((database, None));
    }
    std::fs::create_dir_all(&options.state_dir)
        .with_context(|| format!("creating {}", options.state_dir.display()))?;
    let path = options.state_dir.join(DATABASE_FILE);
    if options.reset {
        remove_database_files(&path)?;
    }
    let text = path
        .to_str()
        .with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
    let database = shared::testkit::open_dynoxide(Some(text)).map_err(anyhow::Error::msg)?;
    Ok((database, Some(path)))
}

/// The database and SQLite's journal files next to it.
fn remove_database_files(path: &Path) -> anyhow::Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("removing {}", file.display()))
            }
        }
    }
    Ok(())
}

/// dynoxide has no background TTL: expired items are deleted only when swept.
fn spawn_ttl_sweeper(database: dynoxide::Database, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let database = database.clone();
            match tokio::task::spawn_blocking(move || database.sweep_ttl()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(deleted)) => tracing::info!("TTL sweep deleted {deleted} expired items"),
                Ok(Err(error)) => tracing::warn!("TTL sweep failed: {error}"),
                Err(error) => tracing::warn!("TTL sweep task failed: {error}"),
            }
        }
    })
}

/// Queue names and behaviour from the template: the SQS event source's queue is the fan-out
/// queue (its redrive target the DLQ), the stream's on-failure destination the failure queue.
fn queue_settings(template: &Template, visibility_timeout: Option<Duration>) -> QueueSettings {
    let mut settings = QueueSettings::default();
    let fanout = template
        .sqs_sources
        .first()
        .and_then(|source| template.queues.get(&source.queue));
    if let Some(fanout) = fanout {
        settings.fanout_queue_name = fanout.name.clone();
        if let Some(seconds) = fanout.visibility_timeout_seconds {
            settings.visibility_timeout = Duration::from_secs(seconds.into());
        }
        if let Some(redrive) = &fanout.redrive {
            settings.max_receive_count = redrive.max_receive_count;
            if let Some(dlq) = template.queues.get(&redrive.dead_letter_queue) {
                settings.fanout_dlq_name = dlq.name.clone();
            }
        }
    }
    let stream_failures = template
        .stream_sources
        .iter()
        .find_map(|source| template.queues.get(source.on_failure_queue.as_ref()?));
    if let Some(queue) = stream_failures {
        settings.stream_failure_queue_name = queue.name.clone();
    }
    if let Some(timeout) = visibility_timeout {
        settings.visibility_timeout = timeout;
    }
    settings
}

/// The URL of the template queue `logical_id` among the queues the stack created.
fn queue_url(template: &Template, queues: &Queues, logical_id: &str) -> anyhow::Result<String> {
    let name = template
        .queues
        .get(logical_id)
        .map(|q| q.name.as_str())
        .unwrap_or(logical_id);
    [&queues.fanout, &queues.fanout_dlq, &queues.stream_failures]
        .into_iter()
        .find(|queue| queue.name == name)
        .map(|queue| queue.url.clone())
        .with_context(|| {
            format!("queue {logical_id} is not the fan-out, DLQ or stream-failure queue")
        })
}

#[cfg(test)]
mod tests {
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
