//! One generic REST function. A function crate declares only its `State` (the fields its
//! handlers read), how those fields come out of the [`ApiParts`] every REST function shares,
//! its routes, and its handlers ([`RestState`]); the functions that write and push share one
//! state, [`WriterState`], and declare only their routes and handlers. Everything else is here, once: the
//! constructors, the [`FunctionState`] the cold start and the local gateway build it with,
//! the router built once per cold start, the Lambda runtime loop of its `main.rs`
//! ([`RestFunction::run`]) and the in-process adapter of the gateway and the route tests
//! ([`lambda_function`]).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use lambda_http::{Body, Request, Response};

use super::Router;
use crate::auth::SigningKey;
use crate::auth::TokenService;
use crate::aws::ClientSet;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Result;
use crate::function::{BoxError, FunctionState, HttpFunction, LambdaFunction};
use crate::store::rate_limit::Budgets;
use crate::store::DynamoStore;

/// The parts every REST function's `State` is built from: its configuration, the
/// access-token service, the clock and the single-table store (every handler's one store).
pub struct ApiParts {
    pub config: Config,
    pub tokens: TokenService,
    pub clock: Arc<dyn Clock>,
    pub store: Arc<DynamoStore>,
}

impl ApiParts {
    /// DynamoDB store over `dynamodb` (the client of the function's set), tokens from
    /// `config.jwt`, and the given clock.
    pub fn new(
        config: Config,
        dynamodb: &aws_sdk_dynamodb::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let store = Arc::new(DynamoStore::new(dynamodb.clone(), &config.table_name));
        Ok(Self {
            tokens: TokenService::new(&config.jwt)?,
            config,
            clock,
            store,
        })
    }

    /// The same parts, issuing tokens signed with `key` (`api-auth` only).
    pub fn signing_with(mut self, key: &SigningKey) -> Result<Self> {
        self.tokens = self.tokens.with_signing_key(key)?;
        Ok(self)
    }

    /// The per-user budgets of the rate-limited actions, over the store and the clock.
    pub fn budgets(&self) -> Budgets {
        Budgets::new(
            self.store.clone(),
            self.config.rate_limits,
            self.clock.clone(),
        )
    }

    /// The writer push over `clients` (off without `WS_MANAGEMENT_ENDPOINT`).
    #[cfg(feature = "push")]
    pub fn writer_push(
        &self,
        clients: &crate::aws::WriterClients,
    ) -> crate::writer_push::WriterPush {
        crate::writer_push::WriterPush::from_clients(
            &self.config,
            clients,
            self.store.clone(),
            self.clock.clone(),
        )
    }
}

/// What a REST function crate declares about its `State`.
pub trait RestState: Sized + Send + Sync + 'static {
    /// The only clients this function is given.
    type Clients: ClientSet;

    /// The state over the shared parts and the function's clients.
    fn from_parts(parts: ApiParts, clients: &Self::Clients) -> Result<Self>;

    /// The function's routes (the contract tests compare them with `template.yaml` and
    /// `openapi.yaml`).
    fn router() -> Router<Self>;

    /// The parts at cold start. `api-auth` adds the signing key it reads through its
    /// clients first.
    fn load_parts(
        config: Config,
        clients: &Self::Clients,
    ) -> impl Future<Output = Result<ApiParts>> + Send {
        std::future::ready(ApiParts::new(
            config,
            clients.dynamodb(),
            Arc::new(SystemClock),
        ))
    }

    /// Production state: the DynamoDB store and the system clock.
    fn new(config: Config, clients: &Self::Clients) -> Result<Self> {
        Self::with_clock(config, clients, Arc::new(SystemClock))
    }

    /// The DynamoDB store and the given clock (tests move a `ManualClock`).
    fn with_clock(config: Config, clients: &Self::Clients, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::from_parts(ApiParts::new(config, clients.dynamodb(), clock)?, clients)
    }
}

impl<S: RestState> FunctionState for S {
    type Clients = S::Clients;

    fn build(config: Config, clients: &S::Clients) -> Result<Self> {
        S::new(config, clients)
    }

    async fn load(config: Config, clients: &S::Clients) -> Result<Self> {
        S::from_parts(S::load_parts(config, clients).await?, clients)
    }
}

/// A REST function: its state and its router, built once per cold start.
pub struct RestFunction<S> {
    router: Router<S>,
    state: Arc<S>,
}

impl<S: Send + Sync + 'static> std::fmt::Debug for RestFunction<S> {
    /// The routes, not the state (it holds the configuration's secrets).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestFunction")
            .field("state", &std::any::type_name::<S>())
            .field("routes", &self.router.routes())
            .finish()
    }
}

impl<S: RestState> RestFunction<S> {
    pub fn new(state: Arc<S>) -> Self {
        Self {
            router: S::router(),
            state,
        }
    }

    /// Handles one API Gateway request; every error is already a JSON error response.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.router.handle(Arc::clone(&self.state), request).await
    }

    /// The whole of a REST function's `main.rs`: the cold start, then the runtime loop.
    pub async fn run() -> std::result::Result<(), BoxError> {
        let state = crate::function::cold_start::<S>().await?;
        let function = &Self::new(Arc::new(state));
        lambda_http::run(lambda_http::service_fn(move |request| async move {
            Ok::<_, Infallible>(function.handle(request).await)
        }))
        .await
    }
}

/// The function over `state` as the local gateway and the route tests invoke it: the same
/// `lambda_http` (de)serialisation as `lambda_http::run`.
pub fn lambda_function<S: RestState>(state: Arc<S>) -> Arc<dyn LambdaFunction> {
    let function = Arc::new(RestFunction::new(state));
    HttpFunction::new(move |request| {
        let function = Arc::clone(&function);
        async move { Ok(function.handle(request).await) }
    })
}

/// The state of the REST functions that write and push (`api-posts`, `api-users`,
/// `api-messages`): they hold the same parts and differ only in their routes, which `R`
/// declares ([`WriterRoutes`]). A function crate names it `pub type State = WriterState<R>`.
#[cfg(feature = "push")]
pub struct WriterState<R> {
    pub tokens: TokenService,
    pub clock: Arc<dyn Clock>,
    /// The one store every handler reads and writes.
    pub store: Arc<DynamoStore>,
    /// The per-user budgets of the rate-limited actions.
    pub budgets: Budgets,
    /// Pushes the events of a write to small audiences before the response (off without
    /// `WS_MANAGEMENT_ENDPOINT`).
    pub writer: crate::writer_push::WriterPush,
    routes: std::marker::PhantomData<fn() -> R>,
}

/// The routes of a function whose state is a [`WriterState`].
#[cfg(feature = "push")]
pub trait WriterRoutes: Sized + 'static {
    /// The function's routes (see [`RestState::router`]).
    fn router() -> Router<WriterState<Self>>;
}

#[cfg(feature = "push")]
impl<R> WriterState<R> {
    /// The same state with another writer push (tests record what it posts).
    pub fn with_writer_push(mut self, writer: crate::writer_push::WriterPush) -> Self {
        self.writer = writer;
        self
    }
}

#[cfg(feature = "push")]
impl<R: WriterRoutes> RestState for WriterState<R> {
    type Clients = crate::aws::WriterClients;

    fn from_parts(parts: ApiParts, clients: &crate::aws::WriterClients) -> Result<Self> {
        Ok(Self {
            store: parts.store.clone(),
            budgets: parts.budgets(),
            writer: parts.writer_push(clients),
            tokens: parts.tokens,
            clock: parts.clock,
            routes: std::marker::PhantomData,
        })
    }

    fn router() -> Router<Self> {
        R::router()
    }
}
