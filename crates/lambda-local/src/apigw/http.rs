//! API Gateway HTTP API requests (payload format 2.0) as an `ApiGatewayV2httpRequest`: what
//! the local gateway hands a REST function for a real HTTP request, and what a function's
//! tests invoke it with.

use std::collections::{BTreeMap, HashMap};

use aws_lambda_events::apigw::{
    ApiGatewayV2httpRequest, ApiGatewayV2httpRequestContext,
    ApiGatewayV2httpRequestContextHttpDescription,
};
use aws_lambda_events::query_map::QueryMap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::Value;

use crate::ids;

/// Keys `ApiGatewayV2httpRequest` serialises for Lambda authorizer payloads only (deprecated
/// there); a payload 2.0 request has none of them, so [`HttpRequestEvent::to_json`] drops them.
const AUTHORIZER_ONLY_KEYS: [&str; 6] = [
    "type",
    "methodArn",
    "httpMethod",
    "identitySource",
    "authorizationToken",
    "resource",
];

/// One HTTP API request under construction (no authorizer: Ripple's functions check their
/// own tokens). Defaults: route `$default`, stage `$default`, a fresh request id, now,
/// source IP 127.0.0.1, domain from the `host` header (else `localhost`).
#[derive(Debug, Clone)]
pub struct HttpRequestEvent {
    method: Method,
    raw_path: String,
    raw_query: String,
    route_key: String,
    path_parameters: HashMap<String, String>,
    /// Lower-cased names; repeated headers comma-joined (payload 2.0 has no multi-value
    /// headers), cookies `; `-joined.
    headers: BTreeMap<String, String>,
    body: Option<(String, bool)>,
    source_ip: String,
    request_id: String,
    time: DateTime<Utc>,
    account_id: String,
    api_id: String,
}

impl HttpRequestEvent {
    /// `method raw_path?raw_query`; `raw_query` is kept as sent and decoded into
    /// `queryStringParameters` (repeated keys comma-joined, as API Gateway does).
    pub fn new(method: Method, raw_path: &str, raw_query: &str) -> Self {
        Self {
            method,
            raw_path: raw_path.to_owned(),
            raw_query: raw_query.to_owned(),
            route_key: "$default".to_owned(),
            path_parameters: HashMap::new(),
            headers: BTreeMap::new(),
            body: None,
            source_ip: "127.0.0.1".to_owned(),
            request_id: ids::request_id(),
            time: Utc::now(),
            account_id: "000000000000".to_owned(),
            api_id: "local-http".to_owned(),
        }
    }

    /// The matched route (`POST /posts/{post_id}`) and its decoded path parameters.
    pub fn route(
        mut self,
        route_key: &str,
        path_parameters: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        self.route_key = route_key.to_owned();
        self.path_parameters = path_parameters.into_iter().collect();
        self
    }

    /// Adds a header; a repeated name is joined to the earlier values.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = name.to_ascii_lowercase();
        let separator = if name == "cookie" { "; " } else { "," };
        self.headers
            .entry(name)
            .and_modify(|existing| {
                existing.push_str(separator);
                existing.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
        self
    }

    /// Sets a header unless the request already has it.
    pub fn default_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| value.to_owned());
        self
    }

    /// Sets a header, replacing any value it had.
    pub fn replace_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(name.to_ascii_lowercase(), value.to_owned());
        self
    }

    /// A text body, passed as is.
    pub fn text_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some((body.into(), false));
        self
    }

    /// A body as API Gateway passes it: text (by the `content-type` header set so far: none,
    /// `text/*`, JSON, XML, JavaScript, forms, YAML) as is, anything else base64-encoded.
    /// An empty body is none.
    pub fn body_bytes(mut self, body: &[u8]) -> Self {
        if body.is_empty() {
            self.body = None;
            return self;
        }
        let content_type = self
            .headers
            .get("content-type")
            .map(|c| c.to_ascii_lowercase())
            .unwrap_or_default();
        let textual = content_type.is_empty()
            || content_type.starts_with("text/")
            || ["json", "xml", "javascript", "x-www-form-urlencoded", "yaml"]
                .iter()
                .any(|kind| content_type.contains(kind));
        self.body = Some(match std::str::from_utf8(body) {
            Ok(text) if textual => (text.to_owned(), false),
            _ => (STANDARD.encode(body), true),
        });
        self
    }

    /// The caller's address (`requestContext.http.sourceIp`).
    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    pub fn request_id(mut self, request_id: &str) -> Self {
        self.request_id = request_id.to_owned();
        self
    }

    /// When the request arrived (`requestContext.time` / `timeEpoch`).
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.time = time;
        self
    }

    /// The account and API the request reached.
    pub fn api(mut self, account_id: &str, api_id: &str) -> Self {
        self.account_id = account_id.to_owned();
        self.api_id = api_id.to_owned();
        self
    }

    /// The typed request.
    pub fn build(self) -> ApiGatewayV2httpRequest {
        let mut headers = self.headers;
        let cookies: Vec<String> = headers
            .remove("cookie")
            .map(|cookie| {
                cookie
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let domain_name = headers
            .get("host")
            .map(|host| host.split(':').next().unwrap_or_default().to_owned())
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let domain_prefix = domain_name.split('.').next().unwrap_or_default().to_owned();

        let mut http = ApiGatewayV2httpRequestContextHttpDescription::default();
        http.method = self.method;
        http.path = Some(self.raw_path.clone());
        http.protocol = Some("HTTP/1.1".to_owned());
        http.source_ip = Some(self.source_ip);
        http.user_agent = Some(headers.get("user-agent").cloned().unwrap_or_default());

        let mut context = ApiGatewayV2httpRequestContext::default();
        context.route_key = Some(self.route_key.clone());
        context.account_id = Some(self.account_id);
        context.stage = Some("$default".to_owned());
        context.request_id = Some(self.request_id);
        context.apiid = Some(self.api_id);
        context.domain_name = Some(domain_name);
        context.domain_prefix = Some(domain_prefix);
        context.time = Some(ids::clf_time(self.time));
        context.time_epoch = self.time.timestamp_millis();
        context.http = http;

        let mut request = ApiGatewayV2httpRequest::default();
        request.version = Some("2.0".to_owned());
        request.route_key = Some(self.route_key);
        request.raw_path = Some(self.raw_path);
        request.query_string_parameters = query_map(&self.raw_query);
        request.raw_query_string = Some(self.raw_query);
        request.cookies = (!cookies.is_empty()).then_some(cookies);
        request.headers = header_map(&headers);
        request.path_parameters = self.path_parameters;
        request.request_context = context;
        if let Some((body, encoded)) = self.body {
            request.body = Some(body);
            request.is_base64_encoded = encoded;
        }
        request
    }

    /// The event JSON Lambda delivers (authorizer-only keys left out).
    pub fn to_json(self) -> Value {
        let mut event = serde_json::to_value(self.build())
            .unwrap_or_else(|e| unreachable!("an ApiGatewayV2httpRequest serialises: {e}"));
        if let Value::Object(fields) = &mut event {
            for key in AUTHORIZER_ONLY_KEYS {
                fields.remove(key);
            }
        }
        event
    }
}

/// Decoded query parameters; repeated keys keep every value (serialised comma-joined).
fn query_map(raw: &str) -> QueryMap {
    QueryMap::from(query_values(raw))
}

/// Decoded query parameters with every value of each key (HTTP and WebSocket events).
pub(crate) fn query_values(raw: &str) -> HashMap<String, Vec<String>> {
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        values
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    values
}

/// Headers as a `HeaderMap`, one (joined) value per name; a name or value HTTP cannot carry
/// is left out (only text that arrived as a header, or a test's own, reaches here).
pub(crate) fn header_map<'a>(
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            map.append(name, value);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_event_has_the_payload_2_0_shape_and_lambda_http_accepts_it() {
        let now = Utc::now();
        let event =
            HttpRequestEvent::new(Method::POST, "/posts/p%201", "tag=a&tag=b&q=hello%20world")
                .route(
                    "POST /posts/{post_id}",
                    [("post_id".to_owned(), "p 1".to_owned())],
                )
                .header("Host", "localhost:3000")
                .header("x-multi", "a")
                .header("x-multi", "b")
                .header("cookie", "a=1; b=2")
                .header("content-type", "application/json")
                .body_bytes(br#"{"x":1}"#)
                .request_id("rid=")
                .time(now)
                .to_json();
        assert_eq!(event["version"], "2.0");
        assert_eq!(event["routeKey"], "POST /posts/{post_id}");
        assert_eq!(event["rawPath"], "/posts/p%201");
        assert_eq!(event["rawQueryString"], "tag=a&tag=b&q=hello%20world");
        assert_eq!(event["headers"]["x-multi"], "a,b");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(
            event["queryStringParameters"],
            json!({"tag": "a,b", "q": "hello world"})
        );
        assert_eq!(event["pathParameters"], json!({"post_id": "p 1"}));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(event["requestContext"]["domainName"], "localhost");
        assert_eq!(event["requestContext"]["requestId"], "rid=");
        assert_eq!(event["requestContext"]["stage"], "$default");
        assert_eq!(event["requestContext"]["timeEpoch"], now.timestamp_millis());
        assert_eq!(event["body"], r#"{"x":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
        assert!(event.get("httpMethod").is_none(), "{event}");
        let parsed: ApiGatewayV2httpRequest = serde_json::from_value(event).unwrap();
        assert_eq!(parsed.request_context.http.method, Method::POST);
    }

    #[test]
    fn binary_bodies_are_base64_encoded_and_text_is_not() {
        let binary = HttpRequestEvent::new(Method::PUT, "/x", "")
            .header("content-type", "image/png")
            .body_bytes(&[0x89, 0x50])
            .to_json();
        assert_eq!(binary["body"], STANDARD.encode([0x89, 0x50]));
        assert_eq!(binary["isBase64Encoded"], true);
        let empty = HttpRequestEvent::new(Method::GET, "/x", "").to_json();
        assert!(empty.get("body").is_none());
        assert!(empty.get("queryStringParameters").is_none());
        assert_eq!(empty["isBase64Encoded"], false);
    }
}
