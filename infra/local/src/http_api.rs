//! API Gateway HTTP API emulation: matches the template's routes, builds the payload 2.0
//! event exactly as API Gateway does, invokes the function and maps its response back —
//! including API Gateway's own answers (404 `Not Found`, 413, 500 `Internal Server Error`,
//! CORS preflight).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, Utc};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use lambda_local::HttpRequestEvent;
use serde_json::{json, Value};
use shared::function::LambdaFunction;

use crate::ids;
use crate::template::{CorsConfiguration, HttpRoute};

/// API Gateway's HTTP API payload limit.
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// The `apiId` local events carry.
pub const HTTP_API_ID: &str = "local-http";

/// A route with its function resolved.
#[derive(Clone)]
pub struct BoundRoute {
    pub route: HttpRoute,
    pub function: Arc<dyn LambdaFunction>,
}

/// The HTTP API: its route table and CORS configuration.
pub struct HttpApi {
    paths: matchit::Router<Vec<BoundRoute>>,
    default_route: Option<BoundRoute>,
    cors: Option<CorsConfiguration>,
}

impl HttpApi {
    pub fn new(routes: Vec<BoundRoute>, cors: Option<CorsConfiguration>) -> Result<Self, String> {
        let mut by_path: BTreeMap<String, Vec<BoundRoute>> = BTreeMap::new();
        let mut default_route = None;
        for bound in routes {
            if bound.route.path == "$default" {
                default_route = Some(bound);
            } else {
                by_path
                    .entry(matchit_path(&bound.route.path))
                    .or_default()
                    .push(bound);
            }
        }
        let mut paths = matchit::Router::new();
        for (path, routes) in by_path {
            paths
                .insert(path.clone(), routes)
                .map_err(|e| format!("HTTP route path {path} conflicts with another: {e}"))?;
        }
        Ok(Self {
            paths,
            default_route,
            cors,
        })
    }

    /// An axum router serving every request through this API.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .fallback(serve_request)
            .with_state(Arc::new(self))
    }

    /// The route for `method path` and its decoded path parameters. An exact method wins
    /// over `ANY`; `$default` catches everything else.
    fn find(&self, method: &Method, path: &str) -> Option<(&BoundRoute, BTreeMap<String, String>)> {
        if let Ok(matched) = self.paths.at(path) {
            let routes = matched.value;
            let chosen = routes
                .iter()
                .find(|r| r.route.method == method.as_str())
                .or_else(|| routes.iter().find(|r| r.route.method == "ANY"));
            if let Some(route) = chosen {
                let params = matched
                    .params
                    .iter()
                    .map(|(name, value)| (name.to_owned(), percent_decode(value)))
                    .collect();
                return Some((route, params));
            }
        }
        self.default_route.as_ref().map(|r| (r, BTreeMap::new()))
    }
}

/// API Gateway `{proxy+}` → matchit `{*proxy}`.
fn matchit_path(path: &str) -> String {
    path.split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                Some(name) => format!("{{*{name}}}"),
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// API Gateway's own JSON error answers.
fn gateway_message(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

async fn serve_request(
    State(api): State<Arc<HttpApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let request_id = ids::request_id();
    let origin = request
        .headers()
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned);
    let mut response = match (&api.cors, is_preflight(&request)) {
        (Some(cors), true) => preflight(cors, request.headers()),
        _ => invoke_route(&api, peer, request, &request_id).await,
    };
    if let (Some(cors), Some(origin)) = (&api.cors, origin) {
        apply_cors(cors, &origin, response.headers_mut());
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", value);
    }
    response
}

async fn invoke_route(
    api: &HttpApi,
    peer: SocketAddr,
    request: Request,
    request_id: &str,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some((route, path_parameters)) = api.find(&parts.method, parts.uri.path()) else {
        return gateway_message(StatusCode::NOT_FOUND, "Not Found");
    };
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return gateway_message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    let incoming = IncomingRequest {
        method: &parts.method,
        path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
        source_ip: peer.ip().to_string(),
        source_port: peer.port(),
    };
    let event = http_event(
        &incoming,
        &route.route.route_key(),
        &path_parameters,
        request_id,
        Utc::now(),
    );
    match route
        .function
        .invoke(event, lambda_runtime::Context::default())
        .await
    {
        Ok(output) => map_response(output).unwrap_or_else(|problem| {
            tracing::warn!(request_id, "malformed function response: {problem}");
            gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }),
        Err(_) => gateway_message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}

/// The parts of an HTTP request an event is built from.
pub struct IncomingRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub source_ip: String,
    pub source_port: u16,
}

/// The API Gateway HTTP API payload format 2.0 event for `request`: headers lower-cased and
/// repeats comma-joined, cookies split out, the forwarding headers API Gateway adds, the
/// body as text or base64 by its content type.
pub fn http_event(
    request: &IncomingRequest<'_>,
    route_key: &str,
    path_parameters: &BTreeMap<String, String>,
    request_id: &str,
    now: DateTime<Utc>,
) -> Value {
    let mut event = HttpRequestEvent::new(request.method.clone(), request.path, request.raw_query)
        .api("000000000000", HTTP_API_ID)
        .route(route_key, path_parameters.clone())
        .source_ip(&request.source_ip)
        .request_id(request_id)
        .time(now);
    for (name, value) in request.headers {
        event = event.header(name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
    }
    event
        .default_header("x-forwarded-for", &request.source_ip)
        .replace_header("x-forwarded-port", &request.source_port.to_string())
        .replace_header("x-forwarded-proto", "http")
        .body_bytes(request.body)
        .to_json()
}

/// Maps a payload 2.0 function response to the HTTP response API Gateway sends. A response
/// without `statusCode` is, as on AWS, a 200 JSON body.
pub fn map_response(output: Value) -> Result<Response, String> {
    let Some(status) = output.get("statusCode") else {
        let body = match output {
            Value::String(text) => text,
            other => other.to_string(),
        };
        return Ok((
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    };
    let status = status
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("statusCode {status} is not an HTTP status"))?;
    let mut headers = HeaderMap::new();
    if let Some(single) = output.get("headers").and_then(Value::as_object) {
        for (name, value) in single {
            append_header(&mut headers, name, &header_text(value))?;
        }
    }
    if let Some(multi) = output.get("multiValueHeaders").and_then(Value::as_object) {
        for (name, values) in multi {
            headers.remove(name.as_str());
            for value in values.as_array().into_iter().flatten() {
                append_header(&mut headers, name, &header_text(value))?;
            }
        }
    }
    for cookie in output
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        append_header(&mut headers, "set-cookie", &header_text(cookie))?;
    }
    let body = match output.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) if output["isBase64Encoded"] == json!(true) => STANDARD
            .decode(text)
            .map_err(|e| format!("isBase64Encoded body is not base64: {e}"))?,
        Some(Value::String(text)) => text.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

fn header_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn append_header(headers: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("invalid response header name {name:?}"))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("invalid value for header {name}"))?;
    headers.append(name, value);
    Ok(())
}

// ---- CORS --------------------------------------------------------------------------------

fn is_preflight(request: &Request) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(http::header::ORIGIN)
        && request
            .headers()
            .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn origin_allowed(cors: &CorsConfiguration, origin: &str) -> bool {
    cors.allow_origins.iter().any(|allowed| {
        if allowed == "*" {
            return true;
        }
        // `https://*.example.com` allows any subdomain, as in API Gateway.
        match allowed.split_once('*') {
            Some((prefix, suffix)) => {
                origin.len() > prefix.len() + suffix.len()
                    && origin
                        .to_ascii_lowercase()
                        .starts_with(&prefix.to_ascii_lowercase())
                    && origin
                        .to_ascii_lowercase()
                        .ends_with(&suffix.to_ascii_lowercase())
            }
            None => allowed.eq_ignore_ascii_case(origin),
        }
    })
}

/// API Gateway answers preflight requests itself (no function is invoked).
fn preflight(cors: &CorsConfiguration, headers: &HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let origin = headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .unwrap_or_default();
    if !origin_allowed(cors, origin) {
        return response;
    }
    let requested = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let list_or_requested = |configured: &[String], requested: String| {
        if configured.iter().any(|c| c == "*") {
            requested
        } else {
            configured.join(",")
        }
    };
    let methods = list_or_requested(
        &cors.allow_methods,
        requested(http::header::ACCESS_CONTROL_REQUEST_METHOD),
    );
    let allow_headers = list_or_requested(
        &cors.allow_headers,
        requested(http::header::ACCESS_CONTROL_REQUEST_HEADERS),
    );
    let out = response.headers_mut();
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            if !value.is_empty() {
                out.insert(name, value);
            }
        }
    };
    set(http::header::ACCESS_CONTROL_ALLOW_METHODS, &methods);
    set(http::header::ACCESS_CONTROL_ALLOW_HEADERS, &allow_headers);
    if let Some(max_age) = cors.max_age {
        set(http::header::ACCESS_CONTROL_MAX_AGE, &max_age.to_string());
    }
    response
}

/// CORS headers on every response to an allowed origin; as on API Gateway, the
/// configuration overrides any CORS headers the function returned.
fn apply_cors(cors: &CorsConfiguration, origin: &str, headers: &mut HeaderMap) {
    let cors_headers = [
        http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
    ];
    for name in &cors_headers {
        headers.remove(name);
    }
    if !origin_allowed(cors, origin) {
        return;
    }
    let wildcard = cors.allow_origins.iter().any(|o| o == "*") && !cors.allow_credentials;
    let allow_origin = if wildcard { "*" } else { origin };
    if let Ok(value) = HeaderValue::from_str(allow_origin) {
        headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    if !wildcard {
        headers.append(http::header::VARY, HeaderValue::from_static("origin"));
    }
    if cors.allow_credentials {
        headers.insert(
            http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(&cors.expose_headers.join(",")) {
        if !value.is_empty() {
            headers.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> CorsConfiguration {
        CorsConfiguration {
            allow_origins: vec![
                "https://app.example".into(),
                "https://*.preview.example".into(),
            ],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["authorization".into(), "content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            max_age: Some(600),
            allow_credentials: false,
        }
    }

    #[test]
    fn the_event_has_the_payload_2_0_shape_and_lambda_http_accepts_it() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("localhost:3000"));
        headers.append("x-multi", HeaderValue::from_static("a"));
        headers.append("x-multi", HeaderValue::from_static("b"));
        headers.append("cookie", HeaderValue::from_static("a=1; b=2"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let params = BTreeMap::from([("post_id".to_owned(), "p 1".to_owned())]);
        let request = IncomingRequest {
            method: &Method::POST,
            path: "/posts/p%201",
            raw_query: "tag=a&tag=b&q=hello%20world",
            headers: &headers,
            body: br#"{"x":1}"#,
            source_ip: "127.0.0.1".into(),
            source_port: 5555,
        };
        let now = Utc::now();
        let event = http_event(&request, "POST /posts/{post_id}", &params, "rid=", now);
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
        assert_eq!(event["requestContext"]["stage"], "$default");
        assert_eq!(event["requestContext"]["timeEpoch"], now.timestamp_millis());
        assert_eq!(event["body"], r#"{"x":1}"#);
        assert_eq!(event["isBase64Encoded"], false);
        let parsed: lambda_http::request::LambdaRequest = serde_json::from_value(event).unwrap();
        assert!(matches!(
            parsed,
            lambda_http::request::LambdaRequest::ApiGatewayV2(_)
        ));
    }

    #[test]
    fn binary_bodies_are_base64_encoded() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("image/png"));
        let request = IncomingRequest {
            method: &Method::PUT,
            path: "/avatar",
            raw_query: "",
            headers: &headers,
            body: &[0x89, 0x50],
            source_ip: "127.0.0.1".into(),
            source_port: 5555,
        };
        let event = http_event(
            &request,
            "PUT /avatar",
            &BTreeMap::new(),
            "rid=",
            Utc::now(),
        );
        assert_eq!(event["body"], STANDARD.encode([0x89, 0x50]));
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["headers"]["x-forwarded-port"], "5555");
    }

    #[test]
    fn responses_map_status_headers_cookies_and_base64_bodies() {
        let response = map_response(json!({
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-one": "1"},
            "multiValueHeaders": {"x-many": ["a", "b"]},
            "cookies": ["s=1; HttpOnly", "t=2"],
            "body": STANDARD.encode("hello"),
            "isBase64Encoded": true
        }))
        .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let headers = response.headers();
        assert_eq!(headers["x-one"], "1");
        assert_eq!(headers.get_all("x-many").iter().count(), 2);
        assert_eq!(headers.get_all("set-cookie").iter().count(), 2);
        let plain = map_response(json!({"hello": "world"})).unwrap();
        assert_eq!(plain.status(), StatusCode::OK);
        assert!(map_response(json!({"statusCode": "nope"})).is_err());
    }

    #[test]
    fn cors_allows_configured_and_wildcard_subdomain_origins_only() {
        let cors = cors();
        assert!(origin_allowed(&cors, "https://app.example"));
        assert!(origin_allowed(&cors, "https://pr-1.preview.example"));
        assert!(!origin_allowed(&cors, "https://evil.example"));
        let mut headers = HeaderMap::new();
        headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        apply_cors(&cors, "https://evil.example", &mut headers);
        assert!(headers.get("access-control-allow-origin").is_none());
        apply_cors(&cors, "https://app.example", &mut headers);
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example"
        );
        assert_eq!(headers["access-control-expose-headers"], "x-request-id");
    }

    #[test]
    fn greedy_paths_become_catch_alls() {
        assert_eq!(matchit_path("/files/{proxy+}"), "/files/{*proxy}");
        assert_eq!(matchit_path("/posts/{post_id}"), "/posts/{post_id}");
    }
}
