//! The function registry: handler name (the cargo binary, e.g. `api-auth`) → something
//! that takes a Lambda event as JSON and returns the function's JSON response.
//!
//! By default the gateway links every function crate and calls its handler in-process
//! ([`IN_PROCESS_FUNCTIONS`]); with `--invoke cargo-lambda` each event is POSTed to a running
//! `cargo lambda watch` instead ([`RemoteFunction`]). Either way the gateway builds the same
//! events, and every invocation goes through [`LoggedFunction`] for the one-line log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lambda_runtime::Context;
use serde_json::Value;
use shared::aws::{local_sdk_config, ClientSet, Endpoints};
use shared::config::Config;
use shared::function::{BoxError, FunctionState, LambdaFunction};
use shared::metering::RequestMeter;

use crate::template::Template;

/// The future of a [`FunctionBuilder`].
pub type BuildFuture = std::pin::Pin<
    Box<dyn std::future::Future<Output = shared::error::Result<Arc<dyn LambdaFunction>>> + Send>,
>;

/// Builds one function's handler from its configuration, the SDK configuration and the
/// endpoint overrides: the function's own client set, then its state (which may read
/// through its clients first: `api-auth` reads its signing key from Secrets Manager).
pub type FunctionBuilder = fn(Config, SdkConfig, Endpoints) -> BuildFuture;

/// The state of `S` over exactly its client set, as its `main.rs` builds it on Lambda
/// (`shared::function::cold_start`).
pub async fn local_state<S: FunctionState>(
    config: Config,
    sdk: &SdkConfig,
    endpoints: &Endpoints,
) -> shared::error::Result<Arc<S>> {
    let clients = S::Clients::from_sdk_config(sdk, &config, endpoints)?;
    Ok(Arc::new(S::load(config, &clients).await?))
}

/// A function crate with the standard shape (`State: FunctionState`,
/// `lambda_function(state)`), as every Ripple function has.
macro_rules! standard_function {
    ($krate:ident) => {
        |config, sdk, endpoints| {
            Box::pin(async move {
                Ok($krate::lambda_function(
                    local_state::<$krate::State>(config, &sdk, &endpoints).await?,
                ))
            })
        }
    };
}

/// Variables the local stack sets only for the functions whose template environment
/// declares them (with an intrinsic value the gateway cannot resolve), exactly as a deploy
/// does: the JWKS goes to the verifying functions only, the signing key's secret name to
/// `api-auth` only, and the functions that verify nothing get no key variable at all.
pub const TEMPLATE_SCOPED_VARIABLES: &[&str] = &["JWT_PUBLIC_KEYS", "JWT_SIGNING_KEY_SECRET"];

/// Every handler the gateway can run in-process, by handler name. Adding a function is one
/// line here (plus its crate in `infra/local/Cargo.toml`).
pub const IN_PROCESS_FUNCTIONS: &[(&str, FunctionBuilder)] = &[
    ("api-auth", standard_function!(api_auth)),
    ("api-users", standard_function!(api_users)),
    ("api-posts", standard_function!(api_posts)),
    ("api-messages", standard_function!(api_messages)),
    ("api-notifications", standard_function!(api_notifications)),
    ("ws-connect", standard_function!(ws_connect)),
    ("ws-disconnect", standard_function!(ws_disconnect)),
    ("ws-message", standard_function!(ws_message)),
    ("stream-router", standard_function!(stream_router)),
    ("push-worker", standard_function!(push_worker)),
];

/// Where the in-process functions' SDK clients point.
#[derive(Debug, Clone)]
pub struct LocalEndpoints {
    pub dynamodb: String,
    pub sqs: String,
    /// Secrets Manager (moto): where `api-auth` reads its signing key.
    pub secrets_manager: String,
    /// Counts the functions' SDK requests (benchmark, request-bound tests).
    pub meter: Option<RequestMeter>,
}

/// Functions by handler name, each wrapped for logging.
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    functions: BTreeMap<String, Arc<dyn LambdaFunction>>,
    verbose: bool,
}

impl std::fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("verbose", &self.verbose)
            .finish()
    }
}

impl FunctionRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Dump every event and response (`--verbose`).
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// Registers `function` under `name` (tests register fakes this way).
    pub fn with(mut self, name: &str, function: Arc<dyn LambdaFunction>) -> Self {
        self.functions.insert(name.to_owned(), function);
        self
    }

    /// `self` plus every function of `other` (which wins on a name clash).
    pub fn merge(mut self, other: &FunctionRegistry) -> Self {
        for (name, function) in &other.functions {
            self.functions.insert(name.clone(), Arc::clone(function));
        }
        self
    }

    /// The in-process handlers the template invokes, each built with its own configuration:
    /// `environment` (local values such as `TABLE_NAME`, `WS_MANAGEMENT_ENDPOINT`) over the
    /// plain variables the template gives that function. Handlers the template names but the
    /// gateway does not know are left out; [`Template::check_handlers`] reports them.
    pub async fn in_process(
        template: &Template,
        environment: &BTreeMap<String, String>,
        endpoints: &LocalEndpoints,
    ) -> anyhow::Result<Self> {
        let mut registry = Self::new();
        let sdk = local_sdk_config();
        for function in template.invoked_functions() {
            let resource = &template.functions[function];
            let Some((_, build)) = IN_PROCESS_FUNCTIONS
                .iter()
                .find(|(name, _)| *name == resource.handler)
            else {
                continue;
            };
            if registry.functions.contains_key(&resource.handler) {
                continue;
            }
            let mut variables = resource.environment.clone();
            variables.extend(
                environment
                    .iter()
                    .filter(|(name, _)| {
                        !TEMPLATE_SCOPED_VARIABLES.contains(&name.as_str())
                            || resource.declared_variables.contains(*name)
                    })
                    .map(|(name, value)| (name.clone(), value.clone())),
            );
            let config = Config::from_vars(variables).map_err(|e| {
                anyhow::anyhow!("configuring {} ({function}): {e}", resource.handler)
            })?;
            let overrides = Endpoints {
                dynamodb: Some(endpoints.dynamodb.clone()),
                dynamodb_streams: Some(endpoints.dynamodb.clone()),
                sqs: Some(endpoints.sqs.clone()),
                secrets_manager: Some(endpoints.secrets_manager.clone()),
                meter: endpoints.meter.clone(),
            };
            let handler = build(config, sdk.clone(), overrides)
                .await
                .map_err(|e| anyhow::anyhow!("starting {} ({function}): {e}", resource.handler))?;
            registry = registry.with(&resource.handler, handler);
        }
        Ok(registry)
    }

    /// Every handler the template invokes, forwarded to `cargo lambda watch` at `base_url`.
    pub fn cargo_lambda(template: &Template, base_url: &str) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        template
            .invoked_handlers()
            .into_iter()
            .fold(Self::new(), |registry, name| {
                let remote = RemoteFunction {
                    client: client.clone(),
                    url: format!(
                        "{}/2015-03-31/functions/{name}/invocations",
                        base_url.trim_end_matches('/')
                    ),
                };
                registry.with(name, Arc::new(remote))
            })
    }

    /// Names of the handlers [`IN_PROCESS_FUNCTIONS`] can build.
    pub fn in_process_names() -> BTreeSet<String> {
        IN_PROCESS_FUNCTIONS
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect()
    }

    pub fn names(&self) -> BTreeSet<String> {
        self.functions.keys().cloned().collect()
    }

    /// The handler `name`, wrapped so each invocation is logged.
    pub fn get(&self, name: &str) -> Option<Arc<dyn LambdaFunction>> {
        let inner = self.functions.get(name)?;
        Some(Arc::new(LoggedFunction {
            name: name.to_owned(),
            inner: Arc::clone(inner),
            verbose: self.verbose,
        }))
    }

    /// The handler `name` without the invocation log line, for callers that log invocations
    /// themselves (the event-source pollers).
    pub fn unlogged(&self, name: &str) -> Option<Arc<dyn LambdaFunction>> {
        self.functions.get(name).cloned()
    }

    /// The handler of the template function `logical_id`.
    pub fn for_function(
        &self,
        template: &Template,
        logical_id: &str,
    ) -> anyhow::Result<Arc<dyn LambdaFunction>> {
        let handler = &template
            .function(logical_id)
            .ok_or_else(|| anyhow::anyhow!("{logical_id} is not a function of the template"))?
            .handler;
        self.get(handler)
            .ok_or_else(|| anyhow::anyhow!("{logical_id} (handler `{handler}`) is not registered"))
    }
}

/// Forwards events to `cargo lambda watch` (the Lambda Invoke API on port 9000).
#[derive(Clone)]
pub struct RemoteFunction {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
}

#[async_trait]
impl LambdaFunction for RemoteFunction {
    async fn invoke(&self, event: Value, _context: Context) -> Result<Value, BoxError> {
        let request = http::Request::post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(&event)?)))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("cannot reach cargo lambda at {}: {e}", self.url))?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() || function_error {
            return Err(format!(
                "{} answered {status}: {}",
                self.url,
                String::from_utf8_lossy(&body)
            )
            .into());
        }
        if body.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&body)?)
    }
}

/// Logs one line per invocation — function, route or event source, outcome, duration,
/// request id — like `sam local`, and with `verbose` the event and response too.
pub struct LoggedFunction {
    name: String,
    inner: Arc<dyn LambdaFunction>,
    verbose: bool,
}

/// How long a function may run before the (emulated) Lambda deadline.
const INVOCATION_DEADLINE: Duration = Duration::from_secs(30);

#[async_trait]
impl LambdaFunction for LoggedFunction {
    async fn invoke(&self, event: Value, mut context: Context) -> Result<Value, BoxError> {
        if context.request_id.is_empty() {
            context.request_id = uuid::Uuid::new_v4().to_string();
        }
        if context.invoked_function_arn.is_empty() {
            // No event source: the default region and account.
            context.invoked_function_arn = crate::event_source::function_arn("", &self.name);
        }
        if context.deadline == 0 {
            let deadline = chrono::Utc::now() + INVOCATION_DEADLINE;
            context.deadline = u64::try_from(deadline.timestamp_millis()).unwrap_or_default();
        }
        let trigger = trigger(&event);
        let request_id = event["requestContext"]["requestId"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| context.request_id.clone());
        if self.verbose {
            tracing::info!(function = %self.name, %request_id, "event: {event}");
        }
        let started = Instant::now();
        let result = self.inner.invoke(event, context).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(response) => {
                tracing::info!(
                    "REPORT {} {trigger} {} {duration_ms:.1} ms request_id={request_id}",
                    self.name,
                    outcome(response)
                );
                if self.verbose {
                    tracing::info!(function = %self.name, %request_id, "response: {response}");
                }
            }
            Err(error) => tracing::warn!(
                "REPORT {} {trigger} failed: {error} {duration_ms:.1} ms request_id={request_id}",
                self.name
            ),
        }
        result
    }
}

/// What caused an invocation: the route key, or the event source and batch size.
fn trigger(event: &Value) -> String {
    if let Some(route) = event["requestContext"]["routeKey"].as_str() {
        return route.to_owned();
    }
    if let Some(records) = event["Records"].as_array() {
        let source = records
            .first()
            .and_then(|r| r["eventSource"].as_str().or(r["EventSource"].as_str()))
            .unwrap_or("event source");
        return format!("{source} ({} records)", records.len());
    }
    "direct".to_owned()
}

/// The status of a response: HTTP status, or reported batch item failures.
fn outcome(response: &Value) -> String {
    if let Some(status) = response["statusCode"].as_u64() {
        return format!("status={status}");
    }
    if let Some(failures) = response["batchItemFailures"].as_array() {
        return format!("batch_item_failures={}", failures.len());
    }
    "ok".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn triggers_and_outcomes_name_routes_sources_and_failures() {
        assert_eq!(
            trigger(&json!({"requestContext": {"routeKey": "GET /health"}})),
            "GET /health"
        );
        assert_eq!(
            trigger(&json!({"Records": [{"eventSource": "aws:sqs"}, {}]})),
            "aws:sqs (2 records)"
        );
        assert_eq!(outcome(&json!({"statusCode": 401})), "status=401");
        assert_eq!(
            outcome(&json!({"batchItemFailures": [{"itemIdentifier": "1"}]})),
            "batch_item_failures=1"
        );
    }

    #[test]
    fn every_in_process_name_is_unique() {
        let names: BTreeSet<_> = IN_PROCESS_FUNCTIONS.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), IN_PROCESS_FUNCTIONS.len());
    }
}
