//! Calls WebSocket functions the way API Gateway does: an `ApiGatewayWebsocketProxyRequest`
//! JSON event in (`$connect`, `$disconnect`, or a message routed by
//! `$request.body.action`), the function's `ApiGatewayProxyResponse` JSON out, through the
//! same (de)serialisation as on Lambda.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

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

/// One WebSocket event under construction.
#[derive(Debug, Clone)]
pub struct WsEvent {
    route_key: String,
    event_type: &'static str,
    connection_id: String,
    connected_at_ms: i64,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    is_base64_encoded: bool,
}

impl WsEvent {
    fn new(route_key: &str, event_type: &'static str, connection_id: &str) -> Self {
        Self {
            route_key: route_key.to_owned(),
            event_type,
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
        Self::new("$connect", "CONNECT", connection_id)
            .header("Host", "ws.ripple.test")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("User-Agent", "ripple-test/1.0")
    }

    /// `$disconnect` (status 1000, as after a normal close).
    pub fn disconnect(connection_id: &str) -> Self {
        Self::new("$disconnect", "DISCONNECT", connection_id)
    }

    /// A text message; the route is selected from its `action` like API Gateway does.
    pub fn message(connection_id: &str, body: impl Into<String>) -> Self {
        let body = body.into();
        let mut event = Self::new(route_for(&body), "MESSAGE", connection_id);
        event.body = Some(body);
        event
    }

    /// A binary frame (API Gateway hands it over base64-encoded).
    pub fn binary_message(connection_id: &str, bytes: &[u8]) -> Self {
        let mut event = Self::new("$default", "MESSAGE", connection_id);
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

    /// The `ApiGatewayWebsocketProxyRequest` JSON API Gateway would send.
    pub fn event(&self) -> Value {
        let now = chrono::Utc::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut context = json!({
            "routeKey": self.route_key,
            "eventType": self.event_type,
            "extendedRequestId": request_id,
            "requestTime": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "messageDirection": "IN",
            "stage": "test",
            "connectedAt": self.connected_at_ms,
            "requestTimeEpoch": now.timestamp_millis(),
            "identity": {
                "sourceIp": "127.0.0.1",
                "userAgent": self.header_value("user-agent"),
            },
            "requestId": request_id,
            "domainName": "ws.ripple.test",
            "connectionId": self.connection_id,
            "apiId": "ripple-ws-test",
        });
        match self.event_type {
            "MESSAGE" => context["messageId"] = json!(format!("m{}", connection_id())),
            "DISCONNECT" => {
                context["disconnectStatusCode"] = json!(1000);
                context["disconnectReason"] = json!("Client closed the connection");
            }
            _ => {}
        }
        let mut event = json!({
            "requestContext": context,
            "isBase64Encoded": self.is_base64_encoded,
        });
        if let Some(body) = &self.body {
            event["body"] = json!(body);
        }
        // Only `$connect` carries the handshake's headers and query string.
        if self.event_type == "CONNECT" {
            let headers: serde_json::Map<String, Value> = self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), json!(value)))
                .collect();
            let multi: serde_json::Map<String, Value> = self
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), json!([value])))
                .collect();
            event["headers"] = Value::Object(headers);
            event["multiValueHeaders"] = Value::Object(multi);
            if !self.query.is_empty() {
                let query: serde_json::Map<String, Value> = self
                    .query
                    .iter()
                    .map(|(name, value)| (name.clone(), json!(value)))
                    .collect();
                let multi: serde_json::Map<String, Value> = self
                    .query
                    .iter()
                    .map(|(name, value)| (name.clone(), json!([value])))
                    .collect();
                event["queryStringParameters"] = Value::Object(query);
                event["multiValueQueryStringParameters"] = Value::Object(multi);
            }
        }
        event
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
        let headers = response["headers"]
            .as_object()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        (
                            k.to_ascii_lowercase(),
                            v.as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        WsResponse {
            status,
            headers,
            body: response["body"].as_str().map(str::to_owned),
        }
    }
}
