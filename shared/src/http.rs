//! The REST plumbing every `api-*` function shares: a method + path-template router
//! (`matchit`, the same `{param}` syntax as API Gateway), request extraction with clear
//! 400s, and the one place where an [`Error`] becomes an HTTP response.
//!
//! Request bodies: JSON objects of at most [`MAX_BODY_BYTES`]. Unknown fields are
//! rejected (400) so a typo such as `dispaly_name` never silently does nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use crate::auth::TokenService;
use crate::domain::UserId;
use crate::error::{Error, Result};
use crate::store::PageRequest;

mod rest;

pub use rest::{lambda_function, ApiParts, RestFunction, RestState};
#[cfg(feature = "push")]
pub use rest::{WriterRoutes, WriterState};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a handler sees of a request.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    /// The matched route template, e.g. `/posts/{post_id}`.
    pub route: &'static str,
    pub params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub request_id: String,
    /// The caller's address as API Gateway saw it (`requestContext.http.sourceIp`): the
    /// subject of per-IP limits. `unknown` when the event has none (hand-built events).
    pub source_ip: String,
}

impl ApiRequest {
    /// A path parameter that must be an id of the kind `T` (a 400 naming it otherwise).
    pub fn path_id<T: crate::domain::Id>(&self, name: &str) -> Result<T> {
        let raw = self
            .params
            .get(name)
            .ok_or_else(|| Error::invariant(format!("route has no {{{name}}} parameter")))?;
        crate::domain::parse_id(raw, name)
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A boolean query flag: absent → false; `true`/`false` accepted; anything else 400.
    pub fn query_flag(&self, name: &str) -> Result<bool> {
        match self.query(name) {
            None => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(_) => Err(Error::validation(format!("{name} must be true or false"))),
        }
    }

    /// `?limit=` and `?cursor=`.
    pub fn page(&self) -> Result<PageRequest> {
        PageRequest::from_query(self.query("limit"), self.query("cursor"))
    }

    /// The JSON body as `T`; malformed JSON, wrong types and unknown fields are 400s.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        if self.body.is_empty() {
            return Err(Error::validation("request body must be a JSON object"));
        }
        let value: Value = serde_json::from_slice(&self.body)
            .map_err(|e| Error::validation(format!("request body is not valid JSON: {e}")))?;
        // serde reads a struct from a JSON array too (`["x"]` would fill the first field), so
        // the object shape is checked before the fields.
        if !value.is_object() {
            return Err(Error::validation("request body must be a JSON object"));
        }
        serde_json::from_value(value).map_err(|e| {
            // serde's message names the field and the expected type, never internal state.
            Error::validation(format!("invalid request body: {e}"))
        })
    }

    /// The JSON body, or `T::default()` when there is none.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            self.json()
        }
    }

    /// For action routes that take no input: no body, or an empty JSON object. Anything
    /// else is a 400, so a client that sends fields expecting them to matter learns at once.
    pub fn expect_no_body(&self) -> Result<()> {
        #[derive(Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NoBody {}
        self.json_or_default::<NoBody>().map(|_| ())
    }

    /// The token of an `Authorization: Bearer …` header.
    pub fn bearer_token(&self) -> Result<&str> {
        let header = self
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or_else(|| Error::unauthorized("missing Authorization header"))?
            .to_str()
            .map_err(|_| Error::unauthorized("malformed Authorization header"))?;
        let (scheme, token) = header
            .split_once(' ')
            .ok_or_else(|| Error::unauthorized("Authorization must be `Bearer <token>`"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(Error::unauthorized(
                "Authorization must be `Bearer <token>`",
            ));
        }
        Ok(token.trim())
    }
}

// The token service is `crate::auth`'s; reading a request's token is HTTP's business, so it
// lives here and `auth` does not depend on this module.
impl TokenService {
    /// The authenticated user of a request (`Authorization: Bearer <token>`), recorded as
    /// the `caller` of the request's span ([`Router::handle`]).
    pub fn authenticate(&self, request: &ApiRequest) -> Result<UserId> {
        let caller = self.verify(request.bearer_token()?)?;
        tracing::Span::current().record("caller", tracing::field::display(caller));
        Ok(caller)
    }
}

/// What a handler returns.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub body: Option<Value>,
    /// `Cache-Control: public, max-age=N` for a public, slowly changing document (the
    /// JWKS); `None` (every other response) sends no caching header.
    pub public_max_age_seconds: Option<u32>,
}

impl ApiResponse {
    pub fn ok(body: impl Serialize) -> Result<Self> {
        Self::with_status(StatusCode::OK, body)
    }

    pub fn created(body: impl Serialize) -> Result<Self> {
        Self::with_status(StatusCode::CREATED, body)
    }

    pub fn with_status(status: StatusCode, body: impl Serialize) -> Result<Self> {
        Ok(Self {
            status,
            body: Some(serde_json::to_value(body)?),
            public_max_age_seconds: None,
        })
    }

    pub fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: None,
            public_max_age_seconds: None,
        }
    }

    /// The same response, cacheable by anyone for `seconds`.
    pub fn cacheable_for(mut self, seconds: u32) -> Self {
        self.public_max_age_seconds = Some(seconds);
        self
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Result<ApiResponse>> + Send>>;
type Handler<S> = Arc<dyn Fn(Arc<S>, ApiRequest) -> HandlerFuture + Send + Sync>;

/// A function's routes: method + API Gateway path template → handler.
pub struct Router<S> {
    paths: matchit::Router<usize>,
    /// Per path template: the methods it serves.
    routes: Vec<(&'static str, HashMap<Method, Handler<S>>)>,
}

impl<S: Send + Sync + 'static> Default for Router<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Send + Sync + 'static> Router<S> {
    pub fn new() -> Self {
        Self {
            paths: matchit::Router::new(),
            routes: Vec::new(),
        }
    }

    /// Adds a route. Panics on a malformed or conflicting template: routes are static
    /// program text, so that is a programming error caught by the first test.
    pub fn route<F, Fut>(mut self, method: Method, path: &'static str, handler: F) -> Self
    where
        F: Fn(Arc<S>, ApiRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ApiResponse>> + Send + 'static,
    {
        let handler: Handler<S> = Arc::new(move |state, request| Box::pin(handler(state, request)));
        let index = match self.routes.iter().position(|(p, _)| *p == path) {
            Some(index) => index,
            None => {
                self.routes.push((path, HashMap::new()));
                let index = self.routes.len() - 1;
                if let Err(error) = self.paths.insert(path, index) {
                    panic!("invalid route {path}: {error}");
                }
                index
            }
        };
        let previous = self.routes[index].1.insert(method.clone(), handler);
        assert!(previous.is_none(), "route {method} {path} registered twice");
        self
    }

    /// Every `(METHOD, path template)` served, sorted (the template and OpenAPI tests
    /// compare against this).
    pub fn routes(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .routes
            .iter()
            .flat_map(|(path, methods)| {
                methods
                    .keys()
                    .map(move |method| (method.to_string(), (*path).to_owned()))
            })
            .collect();
        all.sort();
        all
    }

    /// Handles one API Gateway request end to end. Never fails: every error becomes a
    /// JSON error response carrying the request id.
    ///
    /// Everything logged while handling it is inside one `request` span: `request_id`,
    /// `method`, the matched `route` template, and the `caller` once a token is verified
    /// (`TokenService::authenticate`), so handlers open no span of their own.
    pub async fn handle(&self, state: Arc<S>, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        let span = tracing::info_span!(
            "request",
            request_id,
            method = %request.method(),
            route = tracing::field::Empty,
            caller = tracing::field::Empty,
        );
        self.handle_in(state, request, request_id)
            .instrument(span)
            .await
    }

    async fn handle_in(
        &self,
        state: Arc<S>,
        request: Request,
        request_id: String,
    ) -> Response<Body> {
        let started = std::time::Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let result = self.dispatch(state, request, &request_id).await;
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                error.log(&request_id);
                error_response(&error, &request_id)
            }
        };
        tracing::info!(
            request_id,
            method = %method,
            path,
            status = response.status().as_u16(),
            duration_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }

    async fn dispatch(
        &self,
        state: Arc<S>,
        request: Request,
        request_id: &str,
    ) -> Result<Response<Body>> {
        let path = request.uri().path().to_owned();
        let matched = self
            .paths
            .at(&path)
            .map_err(|_| Error::not_found(format!("no route for {path}")))?;
        let (template, methods) = &self.routes[*matched.value];
        tracing::Span::current().record("route", *template);
        let method = request.method().clone();
        let handler = methods
            .get(&method)
            .ok_or_else(|| Error::not_found(format!("no route for {method} {path}")))?
            .clone();
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let query = request
            .query_string_parameters()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let headers = request.headers().clone();
        let source_ip = source_ip(&request);
        let body = match request.into_body() {
            Body::Empty => Vec::new(),
            Body::Text(text) => text.into_bytes(),
            Body::Binary(bytes) => bytes,
            _ => Vec::new(),
        };
        if body.len() > MAX_BODY_BYTES {
            return Err(Error::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let api_request = ApiRequest {
            method,
            path,
            route: template,
            params,
            query,
            headers,
            body,
            request_id: request_id.to_owned(),
            source_ip,
        };
        let response = handler(state, api_request).await?;
        let mut http_response = json_response(response.status, response.body.as_ref(), request_id);
        if let Some(seconds) = response.public_max_age_seconds {
            http_response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_str(&format!("public, max-age={seconds}"))
                    .map_err(|e| Error::internal("Cache-Control header", e))?,
            );
        }
        Ok(http_response)
    }
}

/// `requestContext.http.sourceIp` of an HTTP API (payload 2.0) request.
fn source_ip(request: &Request) -> String {
    use lambda_http::request::RequestContext;
    use lambda_http::RequestExt;
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        _ => None,
    }
    .unwrap_or_else(|| "unknown".to_owned())
}

/// API Gateway's request id, or a fresh one when invoked outside API Gateway.
pub fn request_id(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        _ => None,
    }
    .filter(|id| !id.is_empty())
    .unwrap_or_else(|| Uuid::new_v4().to_string())
}

fn json_response(status: StatusCode, body: Option<&Value>, request_id: &str) -> Response<Body> {
    let mut response = Response::new(match body {
        Some(value) => Body::Text(value.to_string()),
        None => Body::Empty,
    });
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if body.is_some() {
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    response
}

/// The single mapping from [`Error`] to an HTTP response.
pub fn error_response(error: &Error, request_id: &str) -> Response<Body> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = json_response(status, Some(&error.http_body(request_id)), request_id);
    if let Some(seconds) = error.retry_after() {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The caller's own profile. They hold a valid token, so it exists unless the account is
/// gone: then the token is worth nothing, a 401.
pub async fn caller_profile(
    store: &crate::store::DynamoStore,
    caller: crate::domain::UserId,
) -> Result<crate::domain::User> {
    store
        .get_user(caller)
        .await?
        .ok_or_else(|| Error::unauthorized("the account of this token no longer exists"))
}

/// Turns a page of items about other users (`user_of`) into views carrying those users'
/// summaries, leaving out users in a block relation with `viewer` (`crate::visibility`'s
/// rule) and any whose profile is gone. The page's cursor is kept: a page may come out shorter, never skip items.
pub async fn with_user_summaries<T, V>(
    store: &crate::store::DynamoStore,
    viewer: crate::domain::UserId,
    page: crate::store::Page<T>,
    user_of: impl Fn(&T) -> crate::domain::UserId,
    view: impl Fn(T, crate::domain::UserSummary) -> V,
) -> Result<crate::store::Page<V>> {
    let ids: Vec<crate::domain::UserId> = page.items.iter().map(&user_of).collect();
    let (profiles, blocked) = futures::try_join!(store.get_users(&ids), store.block_set(viewer))?;
    let visible = crate::visibility::hide_blocked(page.items, &blocked, &user_of);
    Ok(crate::store::Page {
        items: visible
            .into_iter()
            .filter_map(|item| {
                let summary = crate::domain::UserSummary::from(profiles.get(&user_of(&item))?);
                Some(view(item, summary))
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct State;

    fn router() -> Router<State> {
        Router::new()
            .route(Method::GET, "/posts/{post_id}", |_, request| async move {
                let id: crate::domain::PostId = request.path_id("post_id")?;
                ApiResponse::ok(serde_json::json!({ "id": id }))
            })
            .route(Method::POST, "/posts", |_, request| async move {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Body {
                    #[allow(dead_code)]
                    text: String,
                }
                request.json::<Body>()?;
                ApiResponse::created(serde_json::json!({}))
            })
    }

    fn request(method: &str, path: &str, body: &str) -> Request {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("https://api.example.com{path}"))
            .body(Body::from(body))
            .unwrap();
        request
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        request
    }

    async fn call(method: &str, path: &str, body: &str) -> (u16, Value) {
        let response = router()
            .handle(Arc::new(State), request(method, path, body))
            .await;
        assert!(response.headers().contains_key("x-request-id"));
        let status = response.status().as_u16();
        let body = match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            _ => Value::Null,
        };
        (status, body)
    }

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_line_logged_for_a_request_carries_its_request_id_and_route() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let router = Router::new().route(Method::GET, "/posts/{post_id}", |_: Arc<State>, _| {
            tracing::info!("handler ran");
            std::future::ready(ApiResponse::ok(serde_json::json!({})))
        });
        let id = Uuid::now_v7();
        let response = router
            .handle(Arc::new(State), request("GET", &format!("/posts/{id}"), ""))
            .await;
        let request_id = response.headers()["x-request-id"].to_str().unwrap();
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = logged
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{logged}");
        for line in lines {
            let span = &line["spans"][0];
            assert_eq!(span["name"], "request", "{line}");
            assert_eq!(span["request_id"], request_id, "{line}");
            assert_eq!(span["route"], "/posts/{post_id}", "{line}");
            assert_eq!(span["method"], "GET", "{line}");
        }
    }

    #[tokio::test]
    async fn routes_by_method_and_template() {
        let id = Uuid::now_v7();
        let (status, body) = call("GET", &format!("/posts/{id}"), "").await;
        assert_eq!(status, 200);
        assert_eq!(body["id"], id.to_string());
        let (status, body) = call("DELETE", &format!("/posts/{id}"), "").await;
        assert_eq!(status, 404);
        assert_eq!(body["error"]["code"], "not_found");
        assert_eq!(call("GET", "/nope", "").await.0, 404);
    }

    #[tokio::test]
    async fn malformed_input_is_a_400_with_the_error_body() {
        let (status, body) = call("GET", "/posts/not-a-uuid", "").await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "validation_failed");
        assert!(body["error"]["request_id"].is_string());
        for bad in [
            "{",
            "[]",
            r#"["x"]"#,
            "\"x\"",
            "null",
            r#"{"text": 5}"#,
            r#"{"text":"x","extra":1}"#,
            "",
        ] {
            let (status, body) = call("POST", "/posts", bad).await;
            assert_eq!(status, 400, "{bad}");
            assert_eq!(body["error"]["code"], "validation_failed", "{bad}");
        }
    }

    #[tokio::test]
    async fn oversize_bodies_are_413() {
        let big = format!(r#"{{"text":"{}"}}"#, "x".repeat(MAX_BODY_BYTES));
        let (status, body) = call("POST", "/posts", &big).await;
        assert_eq!(status, 413);
        assert_eq!(body["error"]["code"], "payload_too_large");
    }

    #[test]
    fn lists_its_routes() {
        assert_eq!(
            router().routes(),
            vec![
                ("GET".to_owned(), "/posts/{post_id}".to_owned()),
                ("POST".to_owned(), "/posts".to_owned()),
            ]
        );
    }

    #[test]
    fn rate_limited_responses_carry_retry_after() {
        let response = error_response(
            &Error::RateLimited {
                retry_after_secs: 12,
            },
            "r",
        );
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "12");
    }
}
