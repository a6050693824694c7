//! The in-process invocation contract between the local gateway and a function.
//!
//! On AWS the Lambda runtime hands a function its event as JSON and serialises whatever
//! the handler returns. The local gateway does the same thing without the runtime loop:
//! it synthesises the very JSON event API Gateway or an event-source mapping would send
//! and calls [`LambdaFunction::invoke`]. Every function crate exposes its handler through
//! one of the adapters below, so the gateway runs exactly the code that runs on AWS.
//!
//! [`FunctionState`] is how every function's state is built from the configuration and
//! the one typed set of SDK clients it is given ([`crate::aws`]); [`cold_start`] is the
//! whole start-up of a `main.rs`.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use lambda_http::{Body, Request, Response, Service};
use lambda_runtime::{Context, LambdaEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::aws::ClientSet;
use crate::config::Config;

/// The error type the Lambda runtime accepts from a handler.
pub type BoxError = lambda_runtime::Error;

/// A function's state, built once per cold start from its configuration and exactly the
/// SDK clients of [`FunctionState::Clients`] (`api-auth`'s set is
/// [`crate::aws::DynamoClients`]: it has no SQS or management client to hold).
pub trait FunctionState: Sized + Send + Sync + 'static {
    /// The only clients this function is given.
    type Clients: ClientSet;

    /// The state over `clients`; fails on configuration the function cannot run without.
    fn build(config: Config, clients: &Self::Clients) -> crate::Result<Self>;

    /// The state at cold start: [`FunctionState::build`], unless the function must read
    /// something through its clients first (`api-auth` reads its signing key from Secrets
    /// Manager). What [`cold_start`] and the local gateway call.
    fn load(
        config: Config,
        clients: &Self::Clients,
    ) -> impl Future<Output = crate::Result<Self>> + Send {
        std::future::ready(Self::build(config, clients))
    }
}

/// The whole start-up of a Lambda `main.rs`: the typed configuration from the environment,
/// the JSON log subscriber, the function's clients and its state. Every error (a missing or
/// malformed variable, a missing endpoint or queue) is returned, so the cold start fails
/// with it: Lambda reports an init error and never routes an invocation to the instance.
pub async fn cold_start<S: FunctionState>() -> Result<S, BoxError> {
    let config = Config::from_vars(std::env::vars())?;
    crate::telemetry::init(&config.log_filter);
    let clients = crate::aws::from_env::<S::Clients>(&config).await?;
    Ok(S::load(config, &clients).await?)
}

/// The whole `main.rs` of a function of typed events (WebSocket, DynamoDB stream, SQS): the
/// [`cold_start`] of the state `handler` takes, then the Lambda runtime loop over it.
pub async fn run<S, E, R, F, Fut>(handler: F) -> Result<(), BoxError>
where
    S: FunctionState,
    E: DeserializeOwned,
    R: Serialize,
    F: Fn(Arc<S>, LambdaEvent<E>) -> Fut,
    Fut: Future<Output = Result<R, BoxError>>,
{
    let state = Arc::new(cold_start::<S>().await?);
    lambda_runtime::run(lambda_runtime::service_fn(|event| {
        handler(Arc::clone(&state), event)
    }))
    .await
}

/// A function as the local gateway (or a test) invokes it: JSON event in, JSON response out.
#[async_trait]
pub trait LambdaFunction: Send + Sync {
    async fn invoke(&self, event: Value, context: Context) -> Result<Value, BoxError>;
}

/// The boxed future an HTTP handler closure returns.
pub type HttpFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, BoxError>> + Send>>;

/// Adapts an HTTP handler (`lambda_http::Request` → `Response<Body>`) into a
/// [`LambdaFunction`] by going through `lambda_http`'s own event/response
/// (de)serialisation, the same path `lambda_http::run` takes.
pub struct HttpFunction {
    handler: Arc<dyn Fn(Request) -> HttpFuture + Send + Sync>,
}

impl HttpFunction {
    // Callers only ever need the trait object (the gateway's registry holds
    // `Arc<dyn LambdaFunction>`), so the constructor hands out exactly that.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<F, Fut>(handler: F) -> Arc<dyn LambdaFunction>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Body>, BoxError>> + Send + 'static,
    {
        Arc::new(Self {
            handler: Arc::new(move |request| Box::pin(handler(request))),
        })
    }
}

#[async_trait]
impl LambdaFunction for HttpFunction {
    async fn invoke(&self, event: Value, context: Context) -> Result<Value, BoxError> {
        let payload: lambda_http::request::LambdaRequest = serde_json::from_value(event)?;
        let handler = Arc::clone(&self.handler);
        let mut adapter = lambda_http::Adapter::from(lambda_http::service_fn(move |request| {
            let handler = Arc::clone(&handler);
            async move { handler(request).await }
        }));
        let response = adapter.call(LambdaEvent::new(payload, context)).await?;
        Ok(serde_json::to_value(response)?)
    }
}

/// The boxed future a typed handler closure returns.
pub type TypedFuture<R> = Pin<Box<dyn Future<Output = Result<R, BoxError>> + Send>>;

/// Adapts a handler of a typed event (`aws_lambda_events` WebSocket, DynamoDB stream or
/// SQS event) into a [`LambdaFunction`], deserialising and serialising exactly as
/// `lambda_runtime::run` does.
pub struct TypedFunction<E, R> {
    handler: Arc<dyn Fn(LambdaEvent<E>) -> TypedFuture<R> + Send + Sync>,
    _types: PhantomData<fn(E) -> R>,
}

impl<E, R> TypedFunction<E, R>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    // Callers only ever need the trait object (the gateway's registry holds
    // `Arc<dyn LambdaFunction>`), so the constructor hands out exactly that.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<F, Fut>(handler: F) -> Arc<dyn LambdaFunction>
    where
        F: Fn(LambdaEvent<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, BoxError>> + Send + 'static,
    {
        Arc::new(Self {
            handler: Arc::new(move |event| Box::pin(handler(event))),
            _types: PhantomData,
        })
    }

    /// `handler` over `state`, built once per cold start: how every function of typed
    /// events is exposed (`lambda_function(state)` of its crate).
    pub fn serving<S, F, Fut>(state: Arc<S>, handler: F) -> Arc<dyn LambdaFunction>
    where
        S: Send + Sync + 'static,
        F: Fn(Arc<S>, LambdaEvent<E>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, BoxError>> + Send + 'static,
    {
        Self::new(move |event| handler(Arc::clone(&state), event))
    }
}

#[async_trait]
impl<E, R> LambdaFunction for TypedFunction<E, R>
where
    E: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
{
    async fn invoke(&self, event: Value, context: Context) -> Result<Value, BoxError> {
        let payload: E = serde_json::from_value(event)?;
        let response = (self.handler)(LambdaEvent::new(payload, context)).await?;
        Ok(serde_json::to_value(response)?)
    }
}
