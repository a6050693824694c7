//! Support of the realtime end-to-end suite (`tests/tests/realtime.rs`): the whole local
//! stack ([`ripple_local::stack::LocalStack`] over the repository's `template.yaml`, in-memory
//! dynoxide, the real moto server, the real stream and SQS pollers) driven only from the
//! outside — REST over HTTP to the gateway's HTTP API, WebSocket clients on its WebSocket API,
//! and reads of the table through its DynamoDB endpoint.
//!
//! Every wait is bounded: a missing event fails the test with what the socket did receive,
//! never hangs it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use bytes::Bytes;
use futures::stream::{SplitSink, StreamExt};
use futures::SinkExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ripple_local::sqs_poller::{SqsPollerFaults, SqsPollerHandle};
use ripple_local::stack::{LocalStack, StackOptions};
use ripple_local::stream_poller::StreamPollerFaults;
use ripple_local::websocket::WebSocketFaults;
use serde_json::{json, Value};
use shared::domain::UserId;
use shared::store::keys::{self, Key};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Longest wait for something that should happen promptly (an event, a reply, a cleanup).
pub const WAIT: Duration = Duration::from_secs(10);

/// How long a socket must stay quiet for "nothing arrives" to hold. Events arrive within
/// tens of milliseconds locally, so this is generous without slowing the suite much.
pub const QUIET: Duration = Duration::from_millis(1500);

/// The subprotocol clients offer first (the access token is the second).
pub const SUBPROTOCOL: &str = "ripple.v1";

/// Password of every test user.
pub const PASSWORD: &str = "correct horse battery staple";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The repository root (`tests/..`).
pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The moto server `make tools` installs; the suite cannot run without it.
pub fn moto_server() -> PathBuf {
    let path = repository_root().join(".venv/bin/moto_server");
    assert!(
        path.is_file(),
        "{} is missing: run `make tools` (the realtime suite runs the real moto server for SQS)",
        path.display()
    );
    path
}

/// A registered user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

impl User {
    /// The id as a user id (what the table's keys are built from).
    pub fn user_id(&self) -> UserId {
        UserId::parse(&self.id, "id")
            .unwrap_or_else(|e| panic!("{}'s id {} is not a UUID: {e}", self.username, self.id))
    }
}

/// An HTTP response of the gateway's HTTP API.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: http::HeaderMap,
}

/// The local stack with the clients the tests use on it.
pub struct RealtimeStack {
    pub stack: LocalStack,
    http: Client<HttpConnector, Full<Bytes>>,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
}

/// With `RUST_LOG` set, the stack's logs (and each span's time when it closes) go to the
/// test's output: `RUST_LOG=stream_router=debug cargo test … -- --nocapture`.
fn log_when_asked() {
    use tracing_subscriber::fmt::format::FmtSpan;
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        // Another test of the same binary may have installed it already.
        let _already_installed = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::CLOSE)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_test_writer()
            .try_init();
    }
}

impl RealtimeStack {
    /// The stack with production settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The stack with `configure` applied to its options (fault flags, environment).
    pub async fn start_with(configure: impl FnOnce(&mut StackOptions)) -> Self {
        log_when_asked();
        let mut options = StackOptions::new(repository_root().join("template.yaml"));
        options.in_memory = true;
        options.moto_server = moto_server();
        // Ports chosen by the OS: tests run in parallel.
        options.gateway = ripple_local::gateway::GatewayOptions::default();
        options.stream_poll_interval = Duration::from_millis(20);
        // Every suite registers its users from 127.0.0.1; the per-address registration
        // limit is the security suite's to test (it sets its own, after this).
        options.environment.push((
            "AUTH_REGISTER_ATTEMPTS_PER_IP".to_owned(),
            "1000000".to_owned(),
        ));
        configure(&mut options);
        let stack = tokio::time::timeout(Duration::from_secs(60), LocalStack::start(options))
            .await
            .expect("the local stack started within a minute")
            .expect("the local stack starts");
        let sdk = shared::aws::local_sdk_config();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&stack.dynamodb_endpoint)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk)
                .endpoint_url(&stack.sqs_endpoint)
                .build(),
        );
        Self {
            stack,
            http: Client::builder(TokioExecutor::new()).build_http(),
            dynamodb,
            sqs,
        }
    }

    /// Stops everything the stack started (moto included).
    pub async fn stop(self) {
        self.stack.stop().await;
    }

    // ---- REST over HTTP -------------------------------------------------------------------

    /// `method path` on the HTTP API, with `token` and a JSON `body` if given.
    pub async fn request(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Response {
        let url = format!("{}{path}", self.stack.urls.http_url());
        let mut request = http::Request::builder().method(method).uri(&url);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .unwrap_or_else(|e| panic!("building {method} {url}: {e}"));
        let response = tokio::time::timeout(WAIT, self.http.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no response within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = tokio::time::timeout(WAIT, response.into_body().collect())
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: body not read within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"))
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Response {
            status,
            body,
            headers,
        }
    }

    /// `method path` as `user`, asserting the status; returns the body.
    pub async fn call(
        &self,
        user: &User,
        method: &str,
        path: &str,
        body: Option<Value>,
        expected_status: u16,
    ) -> Value {
        let response = self.request(Some(&user.token), method, path, body).await;
        assert_eq!(
            response.status, expected_status,
            "{} {method} {path}: {}",
            user.username, response.body
        );
        response.body
    }

    /// Registers `username` through `POST /auth/register`.
    pub async fn register(&self, username: &str) -> User {
        let response = self
            .request(
                None,
                "POST",
                "/auth/register",
                Some(json!({ "username": username, "password": PASSWORD })),
            )
            .await;
        assert_eq!(
            response.status, 201,
            "register {username}: {}",
            response.body
        );
        let text = |pointer: &str| {
            response.body[pointer]
                .as_str()
                .unwrap_or_else(|| panic!("register {username}: no {pointer}: {}", response.body))
                .to_owned()
        };
        User {
            id: response.body["user"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("register {username}: no user id"))
                .to_owned(),
            username: username.to_owned(),
            token: text("access_token"),
        }
    }

    /// `follower` follows `followee` (public: following at once).
    pub async fn follow(&self, follower: &User, followee: &User) {
        let body = self
            .call(
                follower,
                "PUT",
                &format!("/users/{}/follow", followee.id),
                None,
                200,
            )
            .await;
        assert_eq!(body["status"], "following", "{body}");
    }

    /// `blocker` blocks `blocked`.
    pub async fn block(&self, blocker: &User, blocked: &User) {
        self.call(
            blocker,
            "PUT",
            &format!("/users/{}/block", blocked.id),
            None,
            204,
        )
        .await;
    }

    /// `PATCH /users/me` with `changes`.
    pub async fn update_profile(&self, user: &User, changes: Value) {
        self.call(user, "PATCH", "/users/me", Some(changes), 200)
            .await;
    }

    /// `author` posts `text`; returns the post.
    pub async fn post(&self, author: &User, text: &str) -> Value {
        self.call(author, "POST", "/posts", Some(json!({ "text": text })), 201)
            .await
    }

    /// `user` likes `post_id`.
    pub async fn like(&self, user: &User, post_id: &str) -> Value {
        self.call(user, "PUT", &format!("/posts/{post_id}/like"), None, 200)
            .await
    }

    /// `user` comments `text` on `post_id`; returns the comment.
    pub async fn comment(&self, user: &User, post_id: &str, text: &str) -> Value {
        self.call(
            user,
            "POST",
            &format!("/posts/{post_id}/comments"),
            Some(json!({ "text": text })),
            201,
        )
        .await
    }

    /// `from` sends `text` to `to`; returns the message.
    pub async fn message(&self, from: &User, to: &User, text: &str) -> Value {
        self.call(
            from,
            "POST",
            &format!("/conversations/{}/messages", to.id),
            Some(json!({ "text": text })),
            201,
        )
        .await
    }

    // ---- WebSockets -----------------------------------------------------------------------

    /// Opens a socket as `user` (token in the `ripple.v1` subprotocol, as browsers do).
    pub async fn connect(&self, user: &User) -> WsClient {
        let url = self.stack.urls.websocket_url();
        let mut request = url
            .as_str()
            .into_client_request()
            .unwrap_or_else(|e| panic!("{url} is not a WebSocket URL: {e}"));
        let protocols = HeaderValue::from_str(&format!("{SUBPROTOCOL}, {}", user.token))
            .unwrap_or_else(|e| panic!("token of {} is not a header value: {e}", user.username));
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols);
        request.headers_mut().insert(
            "user-agent",
            HeaderValue::from_static("ripple-realtime-e2e"),
        );
        let (socket, response) =
            tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
                .await
                .unwrap_or_else(|_| panic!("{}: no handshake within {WAIT:?}", user.username))
                .unwrap_or_else(|e| panic!("{}: handshake failed: {e}", user.username));
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(SUBPROTOCOL),
            "the server selects the ripple.v1 subprotocol"
        );
        WsClient::spawn(&user.username, socket)
    }

    /// Opens a socket as `user` and returns it with its connection id: the one id that
    /// `ws-connect` added to the user's connection set (written before the handshake
    /// completes, so this is exact even while other users connect; the gateway's own
    /// registry may lag the handshake and is not used here).
    pub async fn connect_with_id(&self, user: &User) -> (WsClient, String) {
        let before: BTreeSet<String> = self.user_connection_ids(user).await.into_iter().collect();
        let client = self.connect(user).await;
        let new: Vec<String> = self
            .user_connection_ids(user)
            .await
            .into_iter()
            .filter(|id| !before.contains(id))
            .collect();
        assert_eq!(
            new.len(),
            1,
            "exactly one new connection for {}: {new:?}",
            user.username
        );
        (client, new.into_iter().next().unwrap_or_default())
    }

    /// The ids of the sockets the gateway holds open.
    pub fn open_connection_ids(&self) -> BTreeSet<String> {
        self.stack
            .gateway()
            .expect("the gateway runs")
            .connections()
            .ids()
            .into_iter()
            .collect()
    }

    /// The gateway's fault switches.
    pub fn faults(&self) -> &WebSocketFaults {
        self.stack.gateway().expect("the gateway runs").faults()
    }

    /// The push worker's SQS poller.
    pub fn push_worker_poller(&self) -> &SqsPollerHandle {
        let pollers = self.stack.sqs_pollers();
        assert_eq!(pollers.len(), 1, "the template has one SQS event source");
        &pollers[0]
    }

    /// The push worker's SQS poller's fault switches (kills, poisoned messages).
    pub fn push_worker_faults(&self) -> &Arc<SqsPollerFaults> {
        self.push_worker_poller().faults()
    }

    /// The stream router's stream poller's fault switches (duplicates, function errors).
    pub fn stream_faults(&self) -> &Arc<StreamPollerFaults> {
        let pollers = self.stack.stream_pollers();
        assert_eq!(pollers.len(), 1, "the template has one stream event source");
        pollers[0].faults()
    }

    /// Stops the gateway's WebSocket side (an outage): every socket closes, `$disconnect`
    /// runs, `@connections` refuses connections. REST keeps working.
    pub async fn stop_websocket(&mut self) {
        self.stack
            .gateway_mut()
            .expect("the gateway runs")
            .stop_websocket()
            .await;
    }

    /// Starts the WebSocket side again on the same port.
    pub async fn start_websocket(&mut self) {
        self.stack
            .gateway_mut()
            .expect("the gateway runs")
            .start_websocket()
            .await
            .expect("the WebSocket side starts again on its port");
    }

    /// Opens a socket as `user` and resumes from `since`; returns the socket and the
    /// `resumed` reply (the replayed events are on the socket before it).
    pub async fn connect_and_resume(&self, user: &User, since: &str) -> (WsClient, Value) {
        let socket = self.connect(user).await;
        let resumed = socket
            .request(json!({"action": "resume", "since": since}))
            .await;
        assert_eq!(
            resumed["type"], "resumed",
            "{}: resume answered {resumed}",
            user.username
        );
        assert_eq!(
            resumed["data"]["gap"], false,
            "{}: {resumed}",
            user.username
        );
        (socket, resumed)
    }

    /// The ids of `user`'s notifications as `GET /notifications` lists them (all pages).
    pub async fn notification_ids(&self, user: &User) -> BTreeSet<String> {
        self.all_ids(user, "/notifications").await
    }

    /// The ids of the messages between `user` and `other` (`GET /conversations/…/messages`).
    pub async fn message_ids(&self, user: &User, other: &User) -> BTreeSet<String> {
        self.all_ids(user, &format!("/conversations/{}/messages", other.id))
            .await
    }

    /// The `id`s of every item of a paginated list at `path`.
    pub async fn all_ids(&self, user: &User, path: &str) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page_path = match &cursor {
                Some(cursor) => format!("{path}?limit=100&cursor={}", percent_encode(cursor)),
                None => format!("{path}?limit=100"),
            };
            let page = self.call(user, "GET", &page_path, None, 200).await;
            for item in page["items"].as_array().into_iter().flatten() {
                if let Some(id) = item["id"].as_str() {
                    ids.insert(id.to_owned());
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return ids,
            }
        }
    }

    // ---- the table and the queue ----------------------------------------------------------

    /// Number of items in the table (a paginated `Scan` with `Select: COUNT`).
    pub async fn item_count(&self) -> usize {
        let mut count = 0usize;
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.stack.table_name)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("scanning the table: {e:?}"));
            count += usize::try_from(page.count()).unwrap_or_default();
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return count,
            }
        }
    }

    /// The table's item count once it has stopped changing (background writes such as
    /// presence announcements settle first).
    pub async fn settled_item_count(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut last = self.item_count().await;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.item_count().await;
            if now == last {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the item count kept changing for {WAIT:?} ({last} → {now})"
            );
            last = now;
        }
    }

    /// Whether the connection item of `connection_id` exists.
    pub async fn connection_item_exists(&self, connection_id: &str) -> bool {
        self.item(&keys::connection(connection_id)).await.is_some()
    }

    /// The ids in `user`'s connection set (the item fan-out reads).
    pub async fn user_connection_ids(&self, user: &User) -> Vec<String> {
        self.item(&keys::user_connections(user.user_id()))
            .await
            .and_then(|item| item.get("connection_ids")?.as_ss().ok().cloned())
            .unwrap_or_default()
    }

    /// The sort keys of `user`'s notification items.
    pub async fn notification_items(&self, user: &User) -> Vec<String> {
        self.sort_keys(&keys::user_pk(user.user_id()), keys::NOTIFICATION_PREFIX)
            .await
    }

    /// The sort keys of the items in partition `pk` whose sort key starts with `prefix`.
    pub async fn sort_keys(&self, pk: &str, prefix: &str) -> Vec<String> {
        let page = self
            .dynamodb
            .query()
            .table_name(&self.stack.table_name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("querying {pk}: {e:?}"));
        assert!(page.last_evaluated_key.is_none(), "one page is enough here");
        page.items()
            .iter()
            .filter_map(|item| item.get("sk")?.as_s().ok().cloned())
            .collect()
    }

    /// The item at `key`, if present.
    pub async fn item(&self, key: &Key) -> Option<HashMap<String, AttributeValue>> {
        self.dynamodb
            .get_item()
            .table_name(&self.stack.table_name)
            .key("pk", AttributeValue::S(key.pk.clone()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading {key:?}: {e:?}"))
            .item
    }

    /// Messages in the fan-out queue, visible or in flight.
    pub async fn fanout_queue_depth(&self) -> u64 {
        let (visible, in_flight) = self.queue_counts(&self.stack.queues.fanout.url).await;
        visible + in_flight
    }

    /// The fan-out DLQ's `ApproximateNumberOfMessages`: what CloudWatch publishes as
    /// `ApproximateNumberOfMessagesVisible`, the metric the template's `FanoutDlqDepthAlarm`
    /// watches.
    pub async fn fanout_dlq_depth(&self) -> u64 {
        self.queue_counts(&self.stack.queues.fanout_dlq.url).await.0
    }

    /// A queue's `ApproximateNumberOfMessages` and `ApproximateNumberOfMessagesNotVisible`.
    async fn queue_counts(&self, queue_url: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(Name::ApproximateNumberOfMessages)
            .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading the attributes of {queue_url}: {e:?}"));
        let read = |name: Name| -> u64 {
            attributes
                .attributes()
                .and_then(|all| all.get(&name))
                .and_then(|value| value.parse().ok())
                .unwrap_or_default()
        };
        (
            read(Name::ApproximateNumberOfMessages),
            read(Name::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Moves every message of the fan-out DLQ back to the fan-out queue, as an operator's
    /// redrive does once the cause is fixed; returns how many.
    pub async fn redrive_fanout_dlq(&self) -> usize {
        let queues = &self.stack.queues;
        let mut moved = 0;
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&queues.fanout_dlq.url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap_or_else(|e| panic!("receiving from the DLQ: {e:?}"));
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return moved;
            }
            for message in messages {
                self.sqs
                    .send_message()
                    .queue_url(&queues.fanout.url)
                    .message_body(message.body.clone().unwrap_or_default())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("sending back to the fan-out queue: {e:?}"));
                self.sqs
                    .delete_message()
                    .queue_url(&queues.fanout_dlq.url)
                    .set_receipt_handle(message.receipt_handle.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("deleting from the DLQ: {e:?}"));
                moved += 1;
            }
        }
    }
}

/// `text` percent-encoded for a query string (everything but RFC 3986's unreserved set).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Waits (bounded) until `condition` holds, polling every 50 ms.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- a recording WebSocket client ----------------------------------------------------------

/// Event types that are not deliveries of something that happened: replies to the
/// socket's own requests and presence, which the delivery checks leave out.
pub const NOT_DELIVERIES: [&str; 6] = [
    "pong",
    "subscribed",
    "unsubscribed",
    "resumed",
    "user_online",
    "user_offline",
];

/// One event a socket received: a text frame, or one event of a `replay` frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub received_at: Instant,
    pub text: String,
    /// The frame as JSON (`Null` if it was not JSON: the server never sends such frames).
    pub json: Value,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Every event, a `replay` frame's events unpacked in order.
    frames: Vec<Frame>,
    /// The text frames as the server sent them (`replay` frames whole).
    raw: Vec<String>,
    /// Indexes of frames already returned by a `next_*` call.
    consumed: HashSet<usize>,
    closed: bool,
}

/// A WebSocket client that records every frame in the background, so a test can ask for
/// "the next event of this type" or "nothing of this type" without racing the socket.
pub struct WsClient {
    pub label: String,
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    inbox: Arc<Mutex<Inbox>>,
    changes: watch::Receiver<usize>,
    /// Owns the socket's read half; `None` once closed or killed.
    reader: Option<JoinHandle<()>>,
    request_counter: Mutex<u64>,
}

impl WsClient {
    fn spawn(label: &str, socket: Socket) -> Self {
        let (sink, mut stream) = socket.split();
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let (notify, changes) = watch::channel(0usize);
        let reader = tokio::spawn({
            let inbox = Arc::clone(&inbox);
            async move {
                while let Some(message) = stream.next().await {
                    match message {
                        Ok(Message::Text(text)) => {
                            let text = text.as_str().to_owned();
                            let events = unpack(&text);
                            let received_at = Instant::now();
                            {
                                let mut inbox = lock(&inbox);
                                inbox.raw.push(text);
                                inbox
                                    .frames
                                    .extend(events.into_iter().map(|(text, json)| Frame {
                                        received_at,
                                        text,
                                        json,
                                    }));
                            }
                            notify.send_modify(|count| *count += 1);
                        }
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                lock(&inbox).closed = true;
                notify.send_modify(|count| *count += 1);
            }
        });
        Self {
            label: label.to_owned(),
            sink: tokio::sync::Mutex::new(sink),
            inbox,
            changes,
            reader: Some(reader),
            request_counter: Mutex::new(0),
        }
    }

    /// Sends `frame` as a text frame.
    pub async fn send(&self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&self, text: &str) {
        self.send_message(Message::text(text)).await;
    }

    pub async fn send_message(&self, message: Message) {
        let mut sink = self.sink.lock().await;
        tokio::time::timeout(WAIT, sink.send(message))
            .await
            .unwrap_or_else(|_| panic!("{}: send blocked for {WAIT:?}", self.label))
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.label));
    }

    /// Sends `frame` with a fresh `request_id` and returns the reply carrying it (any type,
    /// `error` included).
    pub async fn request(&self, mut frame: Value) -> Value {
        let request_id = {
            let mut counter = self
                .request_counter
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *counter += 1;
            format!("{}-r{}", self.label, *counter)
        };
        frame["request_id"] = json!(request_id);
        self.send(&frame).await;
        // `replay` frames carry the resume's request_id too; the reply is what follows them.
        self.next_event_where(&format!("the reply to {request_id}"), WAIT, |event| {
            event["data"]["request_id"] == request_id.as_str() && event["type"] != "replay"
        })
        .await
    }

    /// Subscribes to `channel`, asserting the server confirmed it.
    pub async fn subscribe(&self, channel: &str) {
        let reply = self
            .request(json!({"action": "subscribe", "channel": channel}))
            .await;
        assert_eq!(reply["type"], "subscribed", "{}: {reply}", self.label);
        assert_eq!(reply["data"]["channel"], channel);
    }

    /// The next not yet returned event of type `kind`, waiting at most `timeout`.
    pub async fn next_event_of_type(&self, kind: &str, timeout: Duration) -> Value {
        self.next_frame_where(&format!("a `{kind}` event"), timeout, |event| {
            event["type"] == kind
        })
        .await
        .json
    }

    /// The next not yet returned event matching `predicate`.
    pub async fn next_event_where(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        self.next_frame_where(what, timeout, predicate).await.json
    }

    /// The next not yet returned frame matching `predicate` (with its arrival time).
    pub async fn next_frame_where(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Frame {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let mut inbox = lock(&self.inbox);
                let found = (0..inbox.frames.len()).find(|index| {
                    !inbox.consumed.contains(index) && predicate(&inbox.frames[*index].json)
                });
                if let Some(index) = found {
                    inbox.consumed.insert(index);
                    return inbox.frames[index].clone();
                }
                if inbox.closed {
                    panic!(
                        "{}: the socket closed before {what}; received: {}",
                        self.label,
                        summary(&inbox.frames)
                    );
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!(
                    "{}: no {what} within {timeout:?}; received: {}",
                    self.label,
                    summary(&lock(&self.inbox).frames)
                );
            }
        }
    }

    /// Fails if an event of type `kind` arrives (or has arrived unreturned) within `quiet`.
    /// A copy of an event already returned (same `event_id`) is not a new event: clients
    /// drop it, and the writer push and the stream router may both deliver one.
    pub async fn assert_no_event(&self, kind: &str, quiet: Duration) {
        self.assert_nothing_where(&format!("a `{kind}` event"), quiet, |event| {
            event["type"] == kind
        })
        .await;
    }

    /// Fails if an event matching `predicate` arrives (or has arrived unreturned) within
    /// `quiet`; copies of events already returned (same `event_id`) do not count.
    pub async fn assert_nothing_where(
        &self,
        what: &str,
        quiet: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + quiet;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let inbox = lock(&self.inbox);
                let returned: HashSet<&str> = inbox
                    .consumed
                    .iter()
                    .filter_map(|index| inbox.frames[*index].json["event_id"].as_str())
                    .collect();
                let unexpected = inbox.frames.iter().enumerate().find(|(index, frame)| {
                    let copy = frame.json["event_id"]
                        .as_str()
                        .is_some_and(|id| returned.contains(id));
                    !inbox.consumed.contains(index) && !copy && predicate(&frame.json)
                });
                if let Some((_, frame)) = unexpected {
                    panic!("{}: unexpected {what}: {}", self.label, frame.text);
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return;
            }
            if lock(&self.inbox).closed {
                // Nothing more can arrive; check what did one last time.
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    /// Every event of type `kind` received so far, returned or not.
    pub fn events_of_type(&self, kind: &str) -> Vec<Value> {
        lock(&self.inbox)
            .frames
            .iter()
            .filter(|frame| frame.json["type"] == kind)
            .map(|frame| frame.json.clone())
            .collect()
    }

    /// Every text frame received so far, as sent by the server (a `replay` frame whole).
    pub fn raw_frames(&self) -> Vec<String> {
        lock(&self.inbox).raw.clone()
    }

    /// Every event received so far with its arrival time, in order.
    pub fn frames(&self) -> Vec<Frame> {
        lock(&self.inbox).frames.clone()
    }

    /// Every event received so far, in order (a `replay` frame's events unpacked).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.inbox)
            .frames
            .iter()
            .map(|frame| frame.json.clone())
            .collect()
    }

    /// The deliveries received so far as a client keeps them: every event except
    /// [`NOT_DELIVERIES`] and `error`s, the first copy of each `event_id` only, in order.
    pub fn deliveries(&self) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.events()
            .into_iter()
            .filter(|event| {
                let kind = event["type"].as_str().unwrap_or_default();
                kind != "error" && !NOT_DELIVERIES.contains(&kind)
            })
            .filter(|event| match event["event_id"].as_str() {
                Some(id) => seen.insert(id.to_owned()),
                None => true,
            })
            .collect()
    }

    /// How many received events repeated an `event_id` seen before on this socket.
    pub fn repeated_deliveries(&self) -> usize {
        let mut seen = HashSet::new();
        self.events()
            .iter()
            .filter_map(|event| event["event_id"].as_str())
            .filter(|id| !seen.insert(*id))
            .count()
    }

    /// The newest resume cursor this socket received (UUIDv7 text order is time order).
    pub fn last_cursor(&self) -> Option<String> {
        self.events()
            .iter()
            .filter_map(|event| event["cursor"].as_str().map(str::to_owned))
            .max()
    }

    /// Whether the server closed the socket.
    pub fn is_closed(&self) -> bool {
        lock(&self.inbox).closed
    }

    /// Closes the socket properly (close frame), waiting (bounded) for the server's close.
    pub async fn close(mut self) {
        {
            let mut sink = self.sink.lock().await;
            let _already_closed_is_fine =
                tokio::time::timeout(WAIT, sink.send(Message::Close(None))).await;
        }
        if let Some(reader) = self.reader.take() {
            let _reader_done_or_not = tokio::time::timeout(WAIT, reader).await;
        }
    }

    /// Drops the connection without a close frame, as a crashed client or a lost network
    /// does: the server only sees the TCP connection end.
    pub async fn kill(mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
            let _aborted = reader.await;
        }
        // Both halves gone: dropping `self` (the write half) closes the TCP connection.
    }
}

impl Drop for WsClient {
    /// The read half lives in the reader task: stop it so the socket really closes.
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    // The reader only pushes whole frames; a poisoned lock is still consistent.
    inbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a delivery is about: its type and the id of its item (`data.id`: the post,
/// comment, message or notification).
pub type DeliveryKey = (String, String);

/// The keys of `deliveries` with how often each occurs. `like_updated` is left out: the
/// router may coalesce the likes of one post into one event per stream batch, so its count
/// is not a fixed number (check its last `like_count` instead).
pub fn delivery_counts(deliveries: &[Value]) -> BTreeMap<DeliveryKey, usize> {
    let mut counts = BTreeMap::new();
    for event in deliveries {
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == "like_updated" {
            continue;
        }
        let id = event["data"]["id"].as_str().unwrap_or_default();
        *counts.entry((kind.to_owned(), id.to_owned())).or_insert(0) += 1;
    }
    counts
}

/// Compares what a socket kept (its [`WsClient::deliveries`] minus `baseline` event ids)
/// with `expected`: `Err` lists what is missing, extra, or came as two different events.
pub fn check_deliveries(
    socket: &WsClient,
    baseline: &HashSet<String>,
    expected: &BTreeSet<DeliveryKey>,
) -> Result<(), String> {
    let kept: Vec<Value> = socket
        .deliveries()
        .into_iter()
        .filter(|event| {
            event["event_id"]
                .as_str()
                .is_none_or(|id| !baseline.contains(id))
        })
        .collect();
    let counts = delivery_counts(&kept);
    let missing: Vec<&DeliveryKey> = expected
        .iter()
        .filter(|k| !counts.contains_key(k))
        .collect();
    let extra: Vec<&DeliveryKey> = counts.keys().filter(|k| !expected.contains(k)).collect();
    let twice: Vec<(&DeliveryKey, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let errors = socket.events_of_type("error");
    if missing.is_empty() && extra.is_empty() && twice.is_empty() && errors.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}: missing {missing:?}; extra {extra:?}; under two event ids {twice:?}; errors {errors:?}",
        socket.label
    ))
}

/// The event ids a socket has received so far (what later checks leave out).
pub fn event_ids(socket: &WsClient) -> HashSet<String> {
    socket
        .events()
        .iter()
        .filter_map(|event| event["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// The events of a text frame: a `replay` frame's `data.events` in order, any other frame
/// itself. Each comes with its own text.
fn unpack(text: &str) -> Vec<(String, Value)> {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if json["type"] != "replay" {
        return vec![(text.to_owned(), json)];
    }
    json["data"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| (event.to_string(), event.clone()))
        .collect()
}

/// Types of the received frames, for failure messages.
fn summary(frames: &[Frame]) -> String {
    let types: Vec<&str> = frames
        .iter()
        .map(|frame| frame.json["type"].as_str().unwrap_or("<not JSON>"))
        .collect();
    format!("{} frames {types:?}", frames.len())
}
