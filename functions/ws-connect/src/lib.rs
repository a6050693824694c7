//! `ws-connect`: the WebSocket API's `$connect` route.
//!
//! | outcome | status | headers |
//! |---|---|---|
//! | valid token, under the per-user limit | 200 | `Sec-WebSocket-Protocol: ripple.v1` when the client offered it |
//! | missing, malformed, expired or foreign token | 401 (handshake rejected) | — |
//! | the user already has `MAX_CONNECTIONS_PER_USER` open connections | 429 | `Retry-After` |
//!
//! The access token comes from `?token=` or, for browsers (which cannot set
//! `Authorization` on a WebSocket), from the subprotocol list
//! `Sec-WebSocket-Protocol: ripple.v1, <token>`. When the client offered `ripple.v1` the
//! response selects it: a browser fails the handshake if the server does not pick one of the
//! offered subprotocols. The token itself is never echoed, logged or stored.
//!
//! The connection is stored through `DynamoStore::add_connection` (one transaction: the
//! connection item and its entry in the user's connection set, whose size condition enforces
//! the per-user limit even under concurrent handshakes). Its `expires_at` (the table's TTL)
//! is API Gateway's two-hour cap plus a margin, so a connection whose `$disconnect` never
//! arrived disappears by itself.

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use chrono::{DateTime, Duration, Utc};
use http::header::{HeaderName, HeaderValue, RETRY_AFTER, SEC_WEBSOCKET_PROTOCOL, USER_AGENT};
use lambda_runtime::LambdaEvent;
use shared::auth::TokenService;
use shared::aws::DynamoClients;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::domain::{Connection, UserId};
use shared::error::{Error, Result};
use shared::function::{BoxError, FunctionState, LambdaFunction, TypedFunction};
use shared::http::ApiParts;
use shared::store::DynamoStore;

/// The subprotocol of this protocol version; clients offer it first, the token second.
pub const SUBPROTOCOL: &str = "ripple.v1";

/// How long a connection item lives: API Gateway closes every connection after 2 hours;
/// the margin covers clock skew and a late `$disconnect`.
pub const CONNECTION_TTL: Duration = Duration::minutes(2 * 60 + 15);

/// Longest user agent stored (it is informational; browsers send ~150 characters).
const MAX_USER_AGENT_CHARS: usize = 256;

/// Longest token accepted before verification (real tokens are ~250 characters).
const MAX_TOKEN_CHARS: usize = 4096;

/// Everything the handler needs, built once per cold start.
pub struct State {
    config: Config,
    /// Where the connection is recorded.
    store: Arc<DynamoStore>,
    tokens: TokenService,
    clock: Arc<dyn Clock>,
}

impl FunctionState for State {
    type Clients = DynamoClients;

    /// The DynamoDB store, tokens from `config.jwt`, the system clock.
    fn build(config: Config, clients: &DynamoClients) -> Result<Self> {
        let parts = ApiParts::new(config, &clients.dynamodb, Arc::new(SystemClock))?;
        Ok(Self {
            store: parts.store,
            config: parts.config,
            tokens: parts.tokens,
            clock: parts.clock,
        })
    }
}

/// The function as the local gateway and the tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::serving(state, handle)
}

/// Handles one `$connect`. Every failure is a status code (API Gateway rejects the
/// handshake with it); nothing here is an invocation error.
#[tracing::instrument(skip(state, event), fields(request_id = %request_id(&event.payload)))]
pub async fn handle(
    state: Arc<State>,
    event: LambdaEvent<ApiGatewayWebsocketProxyRequest>,
) -> std::result::Result<ApiGatewayProxyResponse, BoxError> {
    let state = state.as_ref();
    let request = &event.payload;
    let request_id = request_id(request);
    let credentials = Credentials::from_request(request);
    match connect(state, request, &credentials).await {
        Ok(user) => {
            tracing::info!(%user, connection_id = ?request.request_context.connection_id, "connected");
            let mut response = response(200, None);
            if credentials.subprotocol_offered {
                response.headers.insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(SUBPROTOCOL),
                );
            }
            Ok(response)
        }
        Err(error) => {
            error.log(&request_id);
            let mut response = response(
                error.status(),
                Some(error.http_body(&request_id).to_string()),
            );
            if let Some(seconds) = error.retry_after() {
                response
                    .headers
                    .insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

async fn connect(
    state: &State,
    request: &ApiGatewayWebsocketProxyRequest,
    credentials: &Credentials,
) -> Result<UserId> {
    let token = credentials.token.as_deref().ok_or_else(|| {
        Error::unauthorized("an access token is required (?token= or Sec-WebSocket-Protocol)")
    })?;
    if token.len() > MAX_TOKEN_CHARS {
        return Err(Error::unauthorized("invalid or expired access token"));
    }
    let user = state.tokens.verify(token)?;
    let context = &request.request_context;
    let connection_id = context
        .connection_id
        .clone()
        .ok_or_else(|| Error::invariant("$connect event without requestContext.connectionId"))?;
    let connected_at = DateTime::<Utc>::from_timestamp_millis(context.connected_at)
        .filter(|_| context.connected_at > 0)
        .unwrap_or_else(|| state.clock.now());
    let connection = Connection {
        connection_id,
        user_id: user,
        connected_at,
        user_agent: user_agent(request),
        expires_at: (connected_at + CONNECTION_TTL).timestamp(),
    };
    state
        .store
        .add_connection(&connection, state.config.max_connections_per_user)
        .await?;
    Ok(user)
}

/// Where the client put its token, and whether it speaks `ripple.v1` as a subprotocol.
#[derive(Default)]
struct Credentials {
    token: Option<String>,
    subprotocol_offered: bool,
}

impl Credentials {
    /// The subprotocol list wins over the query string: a browser that offers `ripple.v1`
    /// puts its token right after it.
    fn from_request(request: &ApiGatewayWebsocketProxyRequest) -> Self {
        let offered: Vec<String> = request
            .headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|protocol| protocol.trim().to_owned())
            .filter(|protocol| !protocol.is_empty())
            .collect();
        let subprotocol_offered = offered.iter().any(|protocol| protocol == SUBPROTOCOL);
        let from_subprotocol = subprotocol_offered
            .then(|| offered.into_iter().find(|protocol| protocol != SUBPROTOCOL))
            .flatten();
        let from_query = request
            .query_string_parameters
            .first("token")
            .filter(|token| !token.is_empty())
            .map(str::to_owned);
        Self {
            token: from_subprotocol.or(from_query),
            subprotocol_offered,
        }
    }
}

fn user_agent(request: &ApiGatewayWebsocketProxyRequest) -> Option<String> {
    let header = request
        .headers
        .get(USER_AGENT)
        .and_then(|value| value.to_str().ok());
    let agent = request
        .request_context
        .identity
        .user_agent
        .as_deref()
        .or(header)?
        .trim();
    (!agent.is_empty()).then(|| agent.chars().take(MAX_USER_AGENT_CHARS).collect())
}

fn request_id(request: &ApiGatewayWebsocketProxyRequest) -> String {
    request
        .request_context
        .request_id
        .clone()
        .unwrap_or_default()
}

fn response(status: u16, body: Option<String>) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status);
    if body.is_some() {
        response.headers.insert(
            HeaderName::from_static("content-type"),
            HeaderValue::from_static("application/json"),
        );
    }
    response.body = body.map(Body::Text);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_with(
        headers: &[(&str, &str)],
        query: Option<&str>,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut event = serde_json::json!({
            "headers": headers.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "requestContext": {"connectedAt": 0, "requestTimeEpoch": 0, "routeKey": "$connect"},
        });
        if let Some(token) = query {
            event["queryStringParameters"] = serde_json::json!({ "token": token });
        }
        serde_json::from_value(event).unwrap()
    }

    #[test]
    fn token_after_the_subprotocol_wins_over_the_query_string() {
        let request = request_with(
            &[("Sec-WebSocket-Protocol", "ripple.v1, header-token")],
            Some("query-token"),
        );
        let credentials = Credentials::from_request(&request);
        assert_eq!(credentials.token.as_deref(), Some("header-token"));
        assert!(credentials.subprotocol_offered);
    }

    #[test]
    fn query_token_is_used_without_a_subprotocol() {
        let request = request_with(&[], Some("query-token"));
        let credentials = Credentials::from_request(&request);
        assert_eq!(credentials.token.as_deref(), Some("query-token"));
        assert!(!credentials.subprotocol_offered);
    }

    #[test]
    fn foreign_subprotocols_are_neither_a_token_nor_selected() {
        let request = request_with(&[("Sec-WebSocket-Protocol", "graphql-ws, chat")], None);
        let credentials = Credentials::from_request(&request);
        assert_eq!(credentials.token, None);
        assert!(!credentials.subprotocol_offered);
    }

    #[test]
    fn user_agent_is_truncated() {
        let long = "x".repeat(MAX_USER_AGENT_CHARS + 50);
        let request = request_with(&[("User-Agent", &long)], None);
        assert_eq!(
            user_agent(&request).map(|a| a.len()),
            Some(MAX_USER_AGENT_CHARS)
        );
    }
}
