//! Calls WebSocket functions the way API Gateway does: an `ApiGatewayWebsocketProxyRequest`
//! JSON event in (`$connect`, `$disconnect`, or a message routed by
//! `$request.body.action`), the function's `ApiGatewayProxyResponse` JSON out, through the
//! same (de)serialisation as on Lambda.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use lambda_local::{WsApi, WsBody, WsConnection};
use rand::RngCore;
use serde_json::Value;

use crate::function::LambdaFunction;

/// The action routes of the WebSocket API in `template.yaml`; any other message goes to
/// `$default`, as with API Gateway's route selection on `$request.body.action`.
pub const ACTION_ROUTES: [&str; 5] = ["subscribe", "unsubscribe", "typing", "ping", "resume"];

/// A fresh API Gateway-like connection id: 16 URL-safe characters ending in `=`.
pub fn connection_id() -> String {
    let mut bytes = [0u8; 11];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// The route API Gateway selects for a message body.
pub fn route_for(body: &str) -> &'static str {
    let action = serde_json::from_str::<Value>(body).ok().and_then(|value| {
        value
            .get("action")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    action
        .and_then(|action| ACTION_ROUTES.iter().find(|route| **route == action))
        .copied()
        .unwrap_or("$default")
}

/// A decoded WebSocket integration response.
#[derive(Debug, Clone)]
pub struct WsResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    /// The body as sent back on the socket (`None` when the function returned none).
    pub body: Option<String>,
}

impl WsResponse {
    /// The body as JSON (panics if there is none or it is not JSON: test helper).
    pub fn json(&self) -> Value {
        let body = self
            .body
            .as_deref()
            .unwrap_or_else(|| panic!("response has no body (status {})", self.status));
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"))
    }
}

/// Which event a [`WsEvent`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    Message,
    Disconnect,
}

/// One WebSocket event under construction.
#[derive(Debug, Clone)]
pub struct WsEvent {
    route_key: String,
    kind: Kind,
    connection_id: String,
    connected_at_ms: i64,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    is_base64_encoded: bool,
}

impl WsEvent {
    fn new(route_key: &str, kind: Kind, connection_id: &str) -> Self {
        Self {
            route_key: route_key.to_owned(),
            kind,
            connection_id: connection_id.to_owned(),
            connected_at_ms: chrono::Utc::now().timestamp_millis(),
            query: Vec::new(),
            headers: Vec::new(),
            body: None,
            is_base64_encoded: false,
        }
    }

    /// `$connect` with the headers every browser handshake carries.
    pub fn connect(connection_id: &str) -> Self {
        Self::new("$connect", Kind::Connect, connection_id)
            .header("Host", "ws.ripple.test")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("User-Agent", "ripple-test/1.0")
    }

    /// `$disconnect` (status 1000, as after a normal close).
    pub fn disconnect(connection_id: &str) -> Self {
        Self::new("$disconnect", Kind::Disconnect, connection_id)
    }

    /// A text message; the route is selected from its `action` like API Gateway does.
    pub fn message(connection_id: &str, body: impl Into<String>) -> Self {
        let body = body.into();
        let mut event = Self::new(route_for(&body), Kind::Message, connection_id);
        event.body = Some(body);
        event
    }

    /// A binary frame (API Gateway hands it over base64-encoded).
    pub fn binary_message(connection_id: &str, bytes: &[u8]) -> Self {
        let mut event = Self::new("$default", Kind::Message, connection_id);
        event.body = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        event.is_base64_encoded = true;
        event
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Overrides `requestContext.connectedAt` (epoch milliseconds).
    pub fn connected_at_ms(mut self, at: i64) -> Self {
        self.connected_at_ms = at;
        self
    }

    /// The `ApiGatewayWebsocketProxyRequest` JSON API Gateway would send (built by
    /// [`lambda_local::WsConnection`]): only `$connect` carries the handshake's headers and
    /// query string; `$disconnect` reports a normal close (1000).
    pub fn event(&self) -> Value {
        let api = WsApi {
            api_id: "ripple-ws-test".to_owned(),
            stage: "test".to_owned(),
        };
        let connection = WsConnection {
            connection_id: self.connection_id.clone(),
            connected_at: chrono::DateTime::from_timestamp_millis(self.connected_at_ms)
                .unwrap_or_else(|| panic!("connectedAt {} is out of range", self.connected_at_ms)),
            source_ip: "127.0.0.1".to_owned(),
            user_agent: self
                .header_value("user-agent")
                .unwrap_or_default()
                .to_owned(),
            domain_name: "ws.ripple.test".to_owned(),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let request = match self.kind {
            Kind::Connect => {
                let query = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(&self.query)
                    .finish();
                connection.connect_event(&api, &self.headers, &query, &request_id)
            }
            Kind::Disconnect => {
                connection.disconnect_event(&api, 1000, "Client closed the connection", &request_id)
            }
            Kind::Message => {
                let body = self.body.clone().unwrap_or_default();
                let body = if self.is_base64_encoded {
                    WsBody::Base64(body)
                } else {
                    WsBody::Text(body)
                };
                connection.message_event(&api, &self.route_key, body, &request_id)
            }
        };
        lambda_local::apigw::ws::to_json(&request)
    }

    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Invokes `function` with this event and decodes its response.
    pub async fn send(&self, function: &Arc<dyn LambdaFunction>) -> WsResponse {
        let response = function
            .invoke(self.event(), lambda_runtime::Context::default())
            .await
            .unwrap_or_else(|e| panic!("{} failed to invoke: {e}", self.route_key));
        let status = response["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("response without statusCode: {response}"))
            as u16;
        let headers = super::response_headers(&response);
        WsResponse {
            status,
            headers,
            body: response["body"].as_str().map(str::to_owned),
        }
    }
}
