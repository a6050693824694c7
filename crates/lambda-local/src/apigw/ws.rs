//! API Gateway WebSocket API events as an `ApiGatewayWebsocketProxyRequest`: `$connect`
//! (with the handshake's headers and query string), a message on its selected route, and
//! `$disconnect` (with the close code and reason). The local gateway sends them for real
//! sockets; function tests invoke the WebSocket functions with them.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::{
    ApiGatewayWebsocketProxyRequest, ApiGatewayWebsocketProxyRequestContext,
};
use aws_lambda_events::query_map::QueryMap;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::apigw::http::query_values;
use crate::ids;

/// The WebSocket API an event comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsApi {
    pub api_id: String,
    pub stage: String,
}

/// The connection an event is about, as API Gateway remembers it from the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConnection {
    pub connection_id: String,
    pub connected_at: DateTime<Utc>,
    pub source_ip: String,
    /// The handshake's `User-Agent` (empty when it had none).
    pub user_agent: String,
    /// The handshake's `Host` without the port.
    pub domain_name: String,
}

/// A message's payload: text as sent, binary frames base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsBody {
    Text(String),
    /// Already base64-encoded.
    Base64(String),
}

impl WsConnection {
    /// `$connect`: the handshake's headers (in order, repeats kept) and raw query string.
    pub fn connect_event(
        &self,
        api: &WsApi,
        headers: &[(String, String)],
        raw_query: &str,
        request_id: &str,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut request = ApiGatewayWebsocketProxyRequest::default();
        request.headers = single_value_headers(headers);
        request.multi_value_headers = multi_value_headers(headers);
        let query = query_values(raw_query);
        request.query_string_parameters = QueryMap::from(query.clone());
        request.multi_value_query_string_parameters = QueryMap::from(query);
        request.request_context = self.context(api, "$connect", "CONNECT", request_id);
        request
    }

    /// A message on `route_key` (the route the selection expression chose).
    pub fn message_event(
        &self,
        api: &WsApi,
        route_key: &str,
        body: WsBody,
        request_id: &str,
    ) -> ApiGatewayWebsocketProxyRequest {
        let mut request = ApiGatewayWebsocketProxyRequest::default();
        request.request_context = self.context(api, route_key, "MESSAGE", request_id);
        request.request_context.message_id = Some(ids::request_id());
        let (body, encoded) = match body {
            WsBody::Text(text) => (text, false),
            WsBody::Base64(data) => (data, true),
        };
        request.body = Some(body);
        request.is_base64_encoded = encoded;
        request
    }

    /// `$disconnect` with the close `code` and `reason`; it carries the headers API Gateway
    /// sends on it (`Host`, empty `x-api-key` and `x-restapi`).
    pub fn disconnect_event(
        &self,
        api: &WsApi,
        code: u16,
        reason: &str,
        request_id: &str,
    ) -> ApiGatewayWebsocketProxyRequest {
        let headers = [
            ("Host".to_owned(), self.domain_name.clone()),
            ("x-api-key".to_owned(), String::new()),
            ("x-restapi".to_owned(), String::new()),
        ];
        let mut request = ApiGatewayWebsocketProxyRequest::default();
        request.headers = single_value_headers(&headers);
        request.multi_value_headers = multi_value_headers(&headers);
        request.request_context = self.context(api, "$disconnect", "DISCONNECT", request_id);
        request.request_context.disconnect_status_code = Some(i64::from(code));
        request.request_context.disconnect_reason = Some(reason.to_owned());
        request
    }

    /// The `requestContext` every WebSocket event carries.
    fn context(
        &self,
        api: &WsApi,
        route_key: &str,
        event_type: &str,
        request_id: &str,
    ) -> ApiGatewayWebsocketProxyRequestContext {
        let now = Utc::now();
        let mut context = ApiGatewayWebsocketProxyRequestContext::default();
        context.route_key = Some(route_key.to_owned());
        context.event_type = Some(event_type.to_owned());
        context.extended_request_id = Some(request_id.to_owned());
        context.request_time = Some(ids::clf_time(now));
        context.message_direction = Some("IN".to_owned());
        context.stage = Some(api.stage.clone());
        context.connected_at = self.connected_at.timestamp_millis();
        context.request_time_epoch = now.timestamp_millis();
        context.identity.source_ip = Some(self.source_ip.clone());
        context.identity.user_agent = Some(self.user_agent.clone());
        context.request_id = Some(request_id.to_owned());
        context.domain_name = Some(self.domain_name.clone());
        context.connection_id = Some(self.connection_id.clone());
        context.apiid = Some(api.api_id.clone());
        context
    }
}

/// The event JSON Lambda delivers for `request`.
///
/// `aws_lambda_events` serialises both query maps with every value of a key (arrays);
/// API Gateway's `queryStringParameters` holds one value per key (the last), and an event
/// without a query string has neither map, so both are set right here.
pub fn to_json(request: &ApiGatewayWebsocketProxyRequest) -> Value {
    let mut event = serde_json::to_value(request)
        .unwrap_or_else(|e| unreachable!("an ApiGatewayWebsocketProxyRequest serialises: {e}"));
    if let Value::Object(fields) = &mut event {
        let multi =
            fields
                .remove("multiValueQueryStringParameters")
                .and_then(|multi| match multi {
                    Value::Object(multi) if !multi.is_empty() => Some(multi),
                    _ => None,
                });
        fields.remove("queryStringParameters");
        if let Some(multi) = multi {
            let single: Map<String, Value> = multi
                .iter()
                .filter_map(|(key, values)| Some((key.clone(), values.as_array()?.last()?.clone())))
                .collect();
            fields.insert("queryStringParameters".into(), Value::Object(single));
            fields.insert(
                "multiValueQueryStringParameters".into(),
                Value::Object(multi),
            );
        }
    }
    event
}

/// `headers` with the last value of each name (what `headers` holds on AWS).
fn single_value_headers(headers: &[(String, String)]) -> HeaderMap {
    let last: BTreeMap<&str, &str> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut map = HeaderMap::new();
    for (name, value) in last {
        if let Some((name, value)) = header(name, value) {
            map.insert(name, value);
        }
    }
    map
}

/// `headers` with every value of each name (`multiValueHeaders`).
fn multi_value_headers(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let Some((name, value)) = header(name, value) {
            map.append(name, value);
        }
    }
    map
}

/// A header HTTP can carry; `None` for one it cannot (only text that arrived as a header,
/// or a test's own, reaches here).
fn header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_bytes(name.as_bytes()).ok()?,
        HeaderValue::from_str(value).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection() -> WsConnection {
        WsConnection {
            connection_id: "abc=".into(),
            connected_at: Utc::now(),
            source_ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
            domain_name: "localhost".into(),
        }
    }

    fn api() -> WsApi {
        WsApi {
            api_id: "local-ws".into(),
            stage: "dev".into(),
        }
    }

    /// Round trip through JSON, as the function reads it.
    fn delivered(request: &ApiGatewayWebsocketProxyRequest) -> ApiGatewayWebsocketProxyRequest {
        serde_json::from_value(to_json(request)).expect("the function's type reads it")
    }

    #[test]
    fn connect_carries_the_handshake_headers_and_query() {
        let headers = [
            ("host".to_owned(), "localhost:3001".to_owned()),
            ("x-multi".to_owned(), "a".to_owned()),
            ("x-multi".to_owned(), "b".to_owned()),
        ];
        let request = connection().connect_event(&api(), &headers, "token=t%201&x=1&x=2", "r1");
        let json = to_json(&request);
        assert_eq!(json["queryStringParameters"]["token"], "t 1");
        assert_eq!(json["queryStringParameters"]["x"], "2");
        assert_eq!(
            json["multiValueQueryStringParameters"]["x"],
            serde_json::json!(["1", "2"])
        );
        assert_eq!(json["headers"]["x-multi"], "b");
        let event = delivered(&request);
        let context = &event.request_context;
        assert_eq!(context.route_key.as_deref(), Some("$connect"));
        assert_eq!(context.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(context.connection_id.as_deref(), Some("abc="));
        assert_eq!(context.stage.as_deref(), Some("dev"));
        assert_eq!(context.identity.user_agent.as_deref(), Some("ua"));
        assert_eq!(event.query_string_parameters.first("token"), Some("t 1"));
        assert_eq!(
            event.headers.get("x-multi").map(|v| v.as_bytes()),
            Some(&b"b"[..])
        );
        let multi: Vec<_> = event
            .multi_value_headers
            .get_all("x-multi")
            .iter()
            .collect();
        assert_eq!(multi.len(), 2);
    }

    #[test]
    fn messages_and_disconnects_carry_their_context() {
        let message = delivered(&connection().message_event(
            &api(),
            "typing",
            WsBody::Base64("AAE=".into()),
            "r2",
        ));
        assert_eq!(message.request_context.route_key.as_deref(), Some("typing"));
        assert_eq!(
            message.request_context.event_type.as_deref(),
            Some("MESSAGE")
        );
        assert!(message.request_context.message_id.is_some());
        assert_eq!(message.body.as_deref(), Some("AAE="));
        let json =
            to_json(&connection().message_event(&api(), "ping", WsBody::Text("{}".into()), "r4"));
        assert!(json.get("queryStringParameters").is_none(), "{json}");
        assert!(message.is_base64_encoded);

        let gone = delivered(&connection().disconnect_event(&api(), 1001, "Going away", "r3"));
        assert_eq!(gone.request_context.disconnect_status_code, Some(1001));
        assert_eq!(
            gone.request_context.disconnect_reason.as_deref(),
            Some("Going away")
        );
        assert_eq!(gone.request_context.request_id.as_deref(), Some("r3"));
        assert_eq!(
            gone.headers.get("host").map(|v| v.as_bytes()),
            Some(&b"localhost"[..])
        );
    }
}
