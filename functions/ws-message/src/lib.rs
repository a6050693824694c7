//! `ws-message`: every WebSocket message route — `subscribe`, `unsubscribe`, `typing`,
//! `ping`, `resume` and `$default` (non-JSON or unknown actions).
//!
//! | action | reply (route response) | other effects |
//! |---|---|---|
//! | `subscribe {channel}` | `subscribed {channel}` | room membership stored |
//! | `unsubscribe {channel}` | `unsubscribed {channel}` | membership removed (idempotent) |
//! | `typing {to, state}` | none | `user_typing` posted to the recipient's connections |
//! | `ping` | `pong {server_time}`; `error unauthorized` if the connection is not registered | — |
//! | `resume {since}` | `resumed {gap, replayed, feed_new_posts}` | missed events posted first, in order, in `replay` frames |
//! | anything else | `error {code, message, request_id}` | — |
//!
//! `subscribe` and `resume` spend the caller's per-minute budget
//! (`RATE_LIMIT_SUBSCRIBES_PER_MINUTE`, `RATE_LIMIT_RESUMES_PER_MINUTE`) before any
//! authorization read or replay: over it, the reply is `error {code: rate_limited,
//! request_id, retry_after}`.
//!
//! **Replies travel as the route response.** Every action route is two-way in
//! `template.yaml` (and in the local gateway), so the body this function returns is sent on
//! the caller's socket by API Gateway — no management-API call per reply. The management API
//! (through `shared::push::DirectPush`: retries, gone connections removed) carries only what
//! is not a reply: typing relays to other users, and the events a `resume` replays, which are
//! posted in order before the function returns — so the closing `resumed` reply always
//! arrives after them. Those audiences are one user's few connections, so there is no
//! fan-out queue here. Every reply echoes the frame's `request_id`. Errors use the `error`
//! event of `shared::events::Event::error` (code and message from `shared::error::Error`)
//! and leave the connection open.
//!
//! The caller is identified by their connection (stored by `ws-connect` after the token was
//! verified): one `GetItem` per frame, `ping` included — a keep-alive is also the client's
//! check that the push tier still knows its connection.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use lambda_runtime::LambdaEvent;
use shared::aws::PushClients;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::domain::Connection;
use shared::error::{Error, Result};
use shared::events::Event;
use shared::function::{BoxError, FunctionState, LambdaFunction, TypedFunction};
use shared::push::{DirectPush, PushClient};
use shared::store::Budgets;
use shared::store::DynamoStore;

mod action;
mod frame;

pub use action::{
    Action, Ping, Received, Resume, Subscribe, Typing, TypingLimiter, Unsubscribe, TYPING_INTERVAL,
};
pub use frame::{Frame, Route, MAX_FRAME_BYTES, MAX_REQUEST_ID_CHARS};

/// Everything a handler needs, built once per cold start.
pub struct State {
    /// Connections and rooms, the profiles, follows and blocks that authorize them, and
    /// what `resume` replays (notifications, messages, the home feed's `feed_new_posts`).
    store: Arc<DynamoStore>,
    /// The per-user budgets of `subscribe` and `resume`.
    budgets: Budgets,
    /// Typing relays and `resume` replays (the direct push path only).
    push: DirectPush,
    clock: Arc<dyn Clock>,
    /// The 1-per-second typing limit of this container's connections (in memory: typing is
    /// never written to DynamoDB; see [`TypingLimiter`] for the trade-off).
    typing: TypingLimiter,
}

impl State {
    /// State over the given store, push client and clock.
    pub fn from_parts(
        config: Config,
        store: Arc<DynamoStore>,
        push: Arc<dyn PushClient>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let mut push = DirectPush::new(push, store.clone()).with_clock(Arc::clone(&clock));
        push.handshake_window = config.ws_handshake_window;
        let budgets = Budgets::new(store.clone(), config.rate_limits, clock.clone());
        Self {
            store,
            budgets,
            push,
            clock,
            typing: TypingLimiter::default(),
        }
    }
}

impl FunctionState for State {
    type Clients = PushClients;

    /// DynamoDB stores, the management API (`WS_MANAGEMENT_ENDPOINT` is required) and the
    /// system clock.
    fn build(config: Config, clients: &PushClients) -> Result<Self> {
        let (store, push) = shared::push::pushing_parts(&config, clients)?;
        Ok(Self::from_parts(config, store, push, Arc::new(SystemClock)))
    }
}

/// The function as the local gateway and the tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::serving(state, handle)
}

/// Handles one message. Always 200: the outcome, error or not, is the reply's body.
#[tracing::instrument(
    skip(state, event),
    fields(
        request_id = %event.payload.request_context.request_id.as_deref().unwrap_or_default(),
        route_key = %event.payload.request_context.route_key.as_deref().unwrap_or_default(),
    )
)]
pub async fn handle(
    state: Arc<State>,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> std::result::Result<ApiGatewayProxyResponse, BoxError> {
    let state = state.as_ref();
    let request = &event.payload;
    let frame = Frame::read(request.body.as_deref(), request.is_base64_encoded);
    let request_id = frame.request_id.clone();
    let reply = match process(state, request, frame).await {
        Ok(reply) => reply,
        Err(error) => {
            error.log(
                request
                    .request_context
                    .request_id
                    .as_deref()
                    .unwrap_or_default(),
            );
            Some(Event::error(
                &error,
                request_id.as_deref(),
                state.clock.now(),
            ))
        }
    };
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = 200;
    response.body = reply
        .map(|event| event.to_json())
        .transpose()?
        .map(Body::Text);
    Ok(response)
}

/// Runs one frame; `Ok(None)` when there is nothing to reply.
async fn process(
    state: &State,
    request: &ApiGatewayWebsocketProxyRequest,
    frame: Frame,
) -> Result<Option<Event>> {
    let context = &request.request_context;
    let route_key = context.route_key.as_deref().unwrap_or_default();
    let action = routed_action(route_key, frame.action)?;
    let at = state.clock.now();
    // Every action, ping included, needs a registered connection: a socket whose record
    // the push tier removed (a 410 it took for gone) must learn it, or it would sit there
    // receiving nothing. `unauthorized` tells the client to reconnect.
    let caller = caller(state, context.connection_id.as_deref()).await?;
    let received = Received {
        caller,
        request_id: frame.request_id,
        at,
    };
    action.apply(state, received).await
}

/// The frame's action, if it came on a route this function serves and that API Gateway
/// could have picked for it; any other route is a deployment mistake, not a client's.
fn routed_action(route_key: &str, action: Result<Action>) -> Result<Action> {
    let route = Route::parse(route_key)
        .ok_or_else(|| Error::invariant(format!("ws-message invoked for route {route_key:?}")))?;
    let action = action?;
    if !action.arrives_on(route) {
        return Err(Error::invariant(format!(
            "route {route_key:?} delivered a {:?} frame",
            action.route()
        )));
    }
    Ok(action)
}

/// The caller's connection; a connection `ws-connect` did not register (or that expired)
/// cannot act.
async fn caller(state: &State, connection_id: Option<&str>) -> Result<Connection> {
    let connection_id = connection_id
        .ok_or_else(|| Error::invariant("message event without requestContext.connectionId"))?;
    state
        .store
        .get_connection(connection_id)
        .await?
        .ok_or_else(|| Error::unauthorized("this connection is not registered; reconnect"))
}
