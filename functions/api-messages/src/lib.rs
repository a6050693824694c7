//! `api-messages`: direct messages, conversations and message requests. (Routes are being written.)

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};

use lambda_http::{Body, Request, Response};
use shared::auth::TokenService;
use shared::aws::Clients;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::error::Result;
use shared::function::LambdaFunction;
use shared::http::Router;

/// Everything a handler needs, built once per cold start.
pub struct State {
    pub config: Config,
    pub tokens: TokenService,
    pub clock: Arc<dyn Clock>,
}

impl State {
    /// Production state: DynamoDB stores and the system clock.
    pub fn new(config: Config, clients: &Clients) -> Result<Self> {
        Self::with_clock(config, clients, Arc::new(SystemClock))
    }

    /// DynamoDB stores and the given clock (tests move a `ManualClock`).
    pub fn with_clock(config: Config, _clients: &Clients, clock: Arc<dyn Clock>) -> Result<Self> {
        Ok(Self {
            tokens: TokenService::new(&config.jwt)?,
            config,
            clock,
        })
    }
}

/// The function's routes.
pub fn router() -> Router<State> {
    Router::new()
}

static ROUTER: LazyLock<Router<State>> = LazyLock::new(router);

/// Handles one API Gateway request; every error is already a JSON error response.
pub async fn handle(state: &Arc<State>, request: Request) -> Result<Response<Body>, Infallible> {
    Ok(ROUTER.handle(Arc::clone(state), request).await)
}

/// The handler as the local gateway and the route tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    shared::http::lambda_function(&ROUTER, state)
}
