//! Calls HTTP functions the way API Gateway does: a payload-2.0 JSON event in, the
//! function's JSON response out, through the same deserialisation as on Lambda.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::TestDb;
use crate::auth::TokenService;
use crate::aws::ClientSet;
use crate::config::Config;
use crate::domain::{new_id, DisplayName, User, UserId, Username};
use crate::error::Result;
use crate::function::LambdaFunction;
use crate::store::users::{NewUser, ProfileUpdate};
use crate::store::DynamoStore;

/// A writer push over `push` (a [`crate::push::testing::RecordingPush`] in route tests)
/// with the limits of `config`, for `State::with_writer_push` of the functions that push.
#[cfg(feature = "push")]
pub fn writer_push(
    config: &Config,
    clients: &crate::aws::WriterClients,
    push: Arc<dyn crate::push::PushClient>,
) -> crate::writer_push::WriterPush {
    let store = Arc::new(DynamoStore::new(
        clients.dynamodb.clone(),
        &config.table_name,
    ));
    crate::writer_push::WriterPush::new(
        push,
        store,
        config.writer_push,
        Arc::new(crate::clock::SystemClock),
    )
}

/// Opens WebSocket connection `connection_id` of `user` directly in the store.
pub async fn open_connection(store: &DynamoStore, user: UserId, connection_id: &str) {
    let now = Utc::now();
    store
        .add_connection(
            &crate::domain::Connection {
                connection_id: connection_id.to_owned(),
                user_id: user,
                connected_at: crate::clock::to_millis(now),
                user_agent: None,
                expires_at: now.timestamp() + 7200,
            },
            10,
        )
        .await
        .unwrap_or_else(|e| panic!("opening connection {connection_id}: {e:?}"));
}

/// Whether a delivery marker records that the writer push reached every connection of
/// `event_id` (so the stream router skips it).
pub async fn delivery_marked(store: &DynamoStore, event_id: uuid::Uuid) -> bool {
    store
        .delivered_among(&[event_id])
        .await
        .unwrap_or_else(|e| panic!("reading the marker of {event_id}: {e:?}"))
        .contains(&event_id)
}

/// `user`'s newest notifications, read or not (at most 10), as the store holds them.
pub async fn recent_notifications(
    store: &DynamoStore,
    user: UserId,
) -> Vec<crate::domain::Notification> {
    use crate::store::page::PageRequest;
    store
        .notifications(user, false, &PageRequest::first(10))
        .await
        .unwrap_or_else(|e| panic!("reading {user}'s notifications: {e:?}"))
        .items
}

/// A password hash for users created directly in the store: a well-formed argon2id PHC
/// string that no password matches (these users never log in).
pub const UNUSABLE_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

/// A decoded HTTP response.
#[derive(Debug, Clone)]
pub struct TestResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// The JSON body (`Value::Null` when empty).
    pub body: Value,
}

impl TestResponse {
    /// The `error.code` of an error response.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }
}

/// A request under construction.
#[derive(Debug, Clone)]
pub struct TestRequest {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    source_ip: String,
}

impl TestRequest {
    /// `path` may carry a query string (`/users?q=al`).
    pub fn new(method: &str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: Vec::new(),
            body: None,
            source_ip: "127.0.0.1".to_owned(),
        }
    }

    /// The caller's address (`requestContext.http.sourceIp`; 127.0.0.1 by default).
    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    pub fn token(self, token: &str) -> Self {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self.header("content-type", "application/json")
    }

    /// A JSON body when there is one (route tables carry `Option<Value>` bodies).
    pub fn optional_json(self, body: Option<Value>) -> Self {
        match body {
            Some(body) => self.json(body),
            None => self,
        }
    }

    /// A raw body (malformed JSON, oversize payloads…).
    pub fn raw_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The API Gateway HTTP API (payload 2.0) event for this request, as it reaches a
    /// function on `api.ripple.test` (built by [`lambda_local::HttpRequestEvent`]).
    pub fn event(&self) -> Value {
        let method = http::Method::from_bytes(self.method.as_bytes())
            .unwrap_or_else(|e| panic!("{}: not an HTTP method: {e}", self.method));
        let mut event = lambda_local::HttpRequestEvent::new(method, &self.path, &self.query)
            .api("123456789012", "ripple-test")
            .source_ip(&self.source_ip)
            .header("host", "api.ripple.test")
            .header("user-agent", "ripple-test");
        for (name, value) in &self.headers {
            event = event.replace_header(name, value);
        }
        if let Some(body) = &self.body {
            event = event.text_body(body.clone());
        }
        event.to_json()
    }

    /// Invokes `function` with this request and decodes its response.
    pub async fn send(&self, function: &Arc<dyn LambdaFunction>) -> TestResponse {
        let response = function
            .invoke(self.event(), lambda_runtime::Context::default())
            .await
            .unwrap_or_else(|e| panic!("{} {} failed to invoke: {e}", self.method, self.path));
        let status = response["statusCode"]
            .as_u64()
            .unwrap_or_else(|| panic!("response without statusCode: {response}"))
            as u16;
        let headers = super::response_headers(&response);
        let body = match response["body"].as_str() {
            Some(text) if !text.is_empty() => serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {text}")),
            _ => Value::Null,
        };
        // The router gives every response, error or not, the request id.
        assert!(
            headers.contains_key("x-request-id"),
            "{} {}: response without x-request-id",
            self.method,
            self.path
        );
        TestResponse {
            status,
            headers,
            body,
        }
    }
}

/// Asserts an error response: its status and code, the standard error body (a message
/// and the request id) and the `x-request-id` header naming the same request.
#[track_caller]
pub fn assert_error(response: &TestResponse, status: u16, code: &str) {
    assert_error_for(response, status, code, "response");
}

/// [`assert_error`] with `what` was sent in the failure messages (for loops over cases).
#[track_caller]
pub fn assert_error_for(response: &TestResponse, status: u16, code: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", response.body);
    assert_eq!(
        response.error_code(),
        Some(code),
        "{what}: {}",
        response.body
    );
    let error = &response.body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: error without a message: {}",
        response.body
    );
    assert!(
        error["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{what}: error without a request id: {}",
        response.body
    );
    assert_eq!(
        response.headers.get("x-request-id").map(String::as_str),
        error["request_id"].as_str(),
        "{what}: x-request-id names the error's request"
    );
}

/// Walks a list endpoint page by page with `?limit=` (and the `next_cursor` of each page
/// after the first), asserting every page is a 200 of at most `limit` items; returns all
/// items and the number of pages. `path` may already carry a query string.
pub async fn walk_pages(
    function: &Arc<dyn LambdaFunction>,
    token: &str,
    path: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let separator = if path.contains('?') { '&' } else { '?' };
    let first = format!("{path}{separator}limit={limit}");
    let mut url = first.clone();
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let response = TestRequest::new("GET", &url)
            .token(token)
            .send(function)
            .await;
        assert_eq!(response.status, 200, "GET {url}: {}", response.body);
        pages += 1;
        let page = response.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {url}: not a list: {}", response.body));
        assert!(page.len() <= limit, "GET {url}: more than {limit} items");
        items.extend(page.iter().cloned());
        match response.body["next_cursor"].as_str() {
            Some(cursor) => url = format!("{first}&cursor={cursor}"),
            None => {
                assert!(
                    response.body["next_cursor"].is_null(),
                    "GET {url}: the last page's next_cursor is null: {}",
                    response.body
                );
                return (items, pages);
            }
        }
        assert!(pages < 100, "GET {path}: pagination does not end");
    }
}

/// A user created directly in the store, with a valid access token.
#[derive(Debug, Clone)]
pub struct TestAccount {
    pub user: User,
    pub token: String,
}

impl TestAccount {
    pub fn id(&self) -> UserId {
        self.user.id
    }
}

/// One HTTP function under test over a fresh database, with direct access to the
/// database, its store and the token service (to create users and tokens without
/// going through `api-auth`).
pub struct TestApi {
    pub db: TestDb,
    pub config: Config,
    pub store: DynamoStore,
    pub tokens: TokenService,
    pub function: Arc<dyn LambdaFunction>,
}

impl TestApi {
    /// Starts a fresh database and builds the function with `build` over its own client
    /// set `C`, e.g.
    /// `|config, clients| Ok(api_x::lambda_function(Arc::new(api_x::State::new(config, clients)?)))`.
    pub async fn start<C: ClientSet>(
        build: impl FnOnce(Config, &C) -> Result<Arc<dyn LambdaFunction>>,
    ) -> Self {
        Self::start_with(&[], build).await
    }

    /// [`TestApi::start`] with configuration overrides (`("RATE_LIMIT_…", "2")`).
    pub async fn start_with<C: ClientSet>(
        config: &[(&str, &str)],
        build: impl FnOnce(Config, &C) -> Result<Arc<dyn LambdaFunction>>,
    ) -> Self {
        let db = TestDb::start().await;
        let config = db.config_with(config);
        let clients = db.client_set::<C>(&config);
        let tokens = crate::testkit::test_token_service(&config);
        let function = build(config.clone(), &clients)
            .unwrap_or_else(|e| panic!("building the function under test: {e:?}"));
        Self {
            store: db.store(),
            db,
            config,
            tokens,
            function,
        }
    }

    /// Writes `viewer`'s materialized feed from the follow graph, as the push worker's
    /// feed tasks would have (a REST-only test has no stream pipeline to run them).
    pub async fn materialize_feed(&self, viewer: UserId) {
        let feeds = crate::feed::FeedMaterializer::new(
            std::sync::Arc::new(self.store.clone()),
            self.config.feed,
        );
        feeds
            .rebuild_feed(viewer, chrono::Utc::now())
            .await
            .unwrap_or_else(|e| panic!("materializing {viewer}'s feed: {e:?}"));
    }

    /// Another function over the same database and configuration (cross-function tests).
    pub fn other_function<C: ClientSet>(
        &self,
        build: impl FnOnce(Config, &C) -> Result<Arc<dyn LambdaFunction>>,
    ) -> Arc<dyn LambdaFunction> {
        build(self.config.clone(), &self.db.client_set::<C>(&self.config))
            .unwrap_or_else(|e| panic!("building a function: {e:?}"))
    }

    /// Creates `username` (display name "`username` display") in the store and issues
    /// an access token valid now.
    pub async fn account(&self, username: &str) -> TestAccount {
        self.account_with_id(new_id(), username).await
    }

    /// [`TestApi::account`] with a given id (e.g. the one event fixtures name).
    pub async fn account_with_id(&self, id: UserId, username: &str) -> TestAccount {
        let user = self
            .store
            .create_user(NewUser {
                id,
                username: Username::parse(username).expect("a valid username"),
                display_name: DisplayName::parse(&format!("{username} display"))
                    .expect("a valid display name"),
                password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
                created_at: Utc::now(),
            })
            .await
            .unwrap_or_else(|e| panic!("creating {username}: {e:?}"));
        // Tokens are checked against real time, whatever clock the function uses.
        let token = self
            .tokens
            .issue(user.id, Utc::now())
            .unwrap_or_else(|e| panic!("issuing a token for {username}: {e:?}"));
        TestAccount { user, token }
    }

    /// [`TestApi::account`] with a private profile.
    pub async fn private_account(&self, username: &str) -> TestAccount {
        let account = self.account(username).await;
        self.make_private(account.id()).await;
        account
    }

    /// Makes `user`'s profile private, directly in the store.
    pub async fn make_private(&self, user: UserId) {
        self.store
            .update_profile(
                user,
                &ProfileUpdate {
                    is_private: Some(true),
                    ..ProfileUpdate::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("making {user} private: {e:?}"));
    }

    pub async fn send(&self, request: TestRequest) -> TestResponse {
        request.send(&self.function).await
    }

    /// `method path` as `who`, without a body.
    pub async fn call(&self, who: &TestAccount, method: &str, path: &str) -> TestResponse {
        self.send(TestRequest::new(method, path).token(&who.token))
            .await
    }

    /// `method path` as `who`, with a JSON body.
    pub async fn call_json(
        &self,
        who: &TestAccount,
        method: &str,
        path: &str,
        body: Value,
    ) -> TestResponse {
        self.send(TestRequest::new(method, path).token(&who.token).json(body))
            .await
    }

    /// [`walk_pages`] of `path` as `who`.
    pub async fn walk_pages(
        &self,
        who: &TestAccount,
        path: &str,
        limit: usize,
    ) -> (Vec<Value>, usize) {
        walk_pages(&self.function, &who.token, path, limit).await
    }

    /// Invokes every `*.json` event fixture (`cargo lambda invoke --data-file`) of
    /// `directory` in name order, with `<ACCESS_TOKEN>` replaced by `token`. Asserts
    /// there is one fixture per route (`route_count`) and that together they reach
    /// every route; returns the responses, in order, for the caller's expectations.
    pub async fn invoke_fixtures(
        &self,
        directory: &Path,
        token: &str,
        route_count: usize,
    ) -> Vec<FixtureResponse> {
        let mut fixtures: Vec<_> = std::fs::read_dir(directory)
            .unwrap_or_else(|e| panic!("reading {}: {e}", directory.display()))
            .map(|entry| {
                entry
                    .unwrap_or_else(|e| panic!("fixture entry: {e}"))
                    .path()
            })
            .filter(|path| path.extension().is_some_and(|e| e == "json"))
            .collect();
        fixtures.sort();
        assert_eq!(fixtures.len(), route_count, "one fixture per route");
        let mut routes_hit = BTreeSet::new();
        let mut responses = Vec::new();
        for path in fixtures {
            let name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let event: Value = serde_json::from_str(&text.replace("<ACCESS_TOKEN>", token))
                .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
            let method = event["requestContext"]["http"]["method"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no method"))
                .to_owned();
            let route_path = event["rawPath"]
                .as_str()
                .unwrap_or_else(|| panic!("{name} has no rawPath"))
                .to_owned();
            routes_hit.insert((method, route_path));
            let response = self
                .function
                .invoke(event, lambda_runtime::Context::default())
                .await
                .unwrap_or_else(|e| panic!("{name} failed to invoke: {e}"));
            let status = response["statusCode"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: response without statusCode"));
            let body = match response["body"].as_str() {
                Some(text) if !text.is_empty() => serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {text}")),
                _ => Value::Null,
            };
            responses.push(FixtureResponse {
                name,
                status,
                body,
                response,
            });
        }
        assert_eq!(routes_hit.len(), route_count, "every route has its fixture");
        responses
    }
}

/// What one event fixture's invocation answered.
#[derive(Debug, Clone)]
pub struct FixtureResponse {
    /// The fixture's file stem (`send-message`).
    pub name: String,
    pub status: u64,
    /// The decoded JSON body (`Value::Null` when empty).
    pub body: Value,
    /// The raw Lambda response.
    pub response: Value,
}
