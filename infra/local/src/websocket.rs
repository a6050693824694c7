//! API Gateway WebSocket API emulation: `$connect` decides the handshake, messages are routed
//! by the route selection expression, `$disconnect` fires when the socket ends, and the
//! `@connections` management API ([`crate::management`]) shares the port.
//!
//! AWS limits apply and are configurable so tests can compress them: 128 KB messages, 32 KB
//! frames (close 1009 when exceeded), 10 minutes idle, 2 hours per connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use lambda_local::apigw::ws;
use lambda_local::{WsApi, WsBody, WsConnection};
use serde_json::{json, Value};
use shared::function::LambdaFunction;
use tokio::sync::{mpsc, watch};

use crate::ids;
use crate::latency::{LatencyModel, ManagementTiming};

mod session;

/// The `apiId` local WebSocket events carry.
pub const WEBSOCKET_API_ID: &str = "local-ws";

/// AWS WebSocket API quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketLimits {
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub max_duration: Duration,
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 128 * 1024,
            max_frame_bytes: 32 * 1024,
            idle_timeout: Duration::from_secs(10 * 60),
            max_duration: Duration::from_secs(2 * 60 * 60),
        }
    }
}

/// Fault injection on the WebSocket side; switchable while the gateway runs.
#[derive(Debug, Default)]
pub struct WebSocketFaults {
    /// Never invoke `$disconnect` (a connection that dies silently, as after a crash).
    pub drop_disconnect: AtomicBool,
    /// Answer this percentage of `@connections` POSTs with a 500.
    pub fail_post_percent: AtomicU8,
    /// Milliseconds between `$connect` returning and the connection becoming reachable:
    /// widens the window in which `@connections` answers 410 for a connection `ws-connect`
    /// already stored (on AWS, the time `$connect` itself runs after the store).
    pub handshake_delay_ms: AtomicU64,
}

impl WebSocketFaults {
    pub fn new(drop_disconnect: bool, fail_post_percent: u8) -> Self {
        Self {
            drop_disconnect: AtomicBool::new(drop_disconnect),
            fail_post_percent: AtomicU8::new(fail_post_percent.min(100)),
            handshake_delay_ms: AtomicU64::new(0),
        }
    }
}

/// What the socket task is asked to send.
#[derive(Debug)]
pub(crate) enum Outbound {
    Text(String),
    Binary(Bytes),
    Close { code: u16, reason: &'static str },
}

/// A live connection as the management API sees it.
#[derive(Debug)]
pub(crate) struct ConnectionEntry {
    pub(crate) outbound: mpsc::UnboundedSender<Outbound>,
    pub(crate) connected_at: DateTime<Utc>,
    pub(crate) last_active_ms: AtomicI64,
    pub(crate) source_ip: String,
    pub(crate) user_agent: String,
}

/// Open connections by id.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    inner: Arc<Mutex<BTreeMap<String, Arc<ConnectionEntry>>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<ConnectionEntry>>> {
        // A panic while holding this lock cannot leave the map half-updated (single
        // insert/remove calls), so a poisoned lock is still consistent.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn insert(&self, id: &str, entry: Arc<ConnectionEntry>) {
        self.lock().insert(id.to_owned(), entry);
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<ConnectionEntry>> {
        self.lock().get(id).cloned()
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Arc<ConnectionEntry>> {
        self.lock().remove(id)
    }

    /// Ids of the open connections.
    pub fn ids(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }
}

/// Where a message's route key comes from: `$request.body.<path>`.
#[derive(Debug, Clone, PartialEq)]
struct RouteSelection {
    body_path: Option<Vec<String>>,
}

impl RouteSelection {
    fn parse(expression: &str) -> Self {
        let body_path = expression
            .trim()
            .strip_prefix("$request.body.")
            .map(|path| path.split('.').map(str::to_owned).collect());
        Self { body_path }
    }

    /// The selected key of a text message, if the message is JSON and has it.
    fn select(&self, text: &str) -> Option<String> {
        let path = self.body_path.as_ref()?;
        let body: Value = serde_json::from_str(text).ok()?;
        let selected = path.iter().try_fold(&body, |value, key| value.get(key))?;
        match selected {
            Value::String(key) => Some(key.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

/// The WebSocket API: routes, limits, live connections.
pub struct WebSocketApi {
    routes: BTreeMap<String, Arc<dyn LambdaFunction>>,
    selection: RouteSelection,
    pub(crate) stage: String,
    limits: WebSocketLimits,
    pub(crate) faults: Arc<WebSocketFaults>,
    pub(crate) connections: Connections,
    /// Modelled AWS timing of `@connections` (off by default).
    pub(crate) management_timing: ManagementTiming,
    shutdown: watch::Receiver<bool>,
    /// One clone per running connection or message task: shutdown waits for them.
    in_flight: Arc<()>,
}

/// Who is on the other end of a connection, fixed at `$connect`: the connection every
/// event of the socket names.
type ConnectionInfo = WsConnection;

/// Why a connection ended, as `$disconnect` reports it.
#[derive(Debug, Clone, PartialEq)]
struct Disconnect {
    code: u16,
    reason: String,
}

const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_NO_STATUS: u16 = 1005;
const CLOSE_ABNORMAL: u16 = 1006;
const CLOSE_TOO_BIG: u16 = 1009;
const CLOSE_NORMAL: u16 = 1000;

impl WebSocketApi {
    pub fn new(
        route_selection_expression: &str,
        routes: BTreeMap<String, Arc<dyn LambdaFunction>>,
        stage: &str,
        limits: WebSocketLimits,
        faults: Arc<WebSocketFaults>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            routes,
            selection: RouteSelection::parse(route_selection_expression),
            stage: stage.to_owned(),
            limits,
            faults,
            connections: Connections::default(),
            management_timing: ManagementTiming::default(),
            shutdown,
            in_flight: Arc::new(()),
        }
    }

    /// `@connections` answers with the model's delay and behind its account-wide throttle.
    pub fn with_management_latency(mut self, model: &LatencyModel) -> Self {
        self.management_timing = ManagementTiming::new(model);
        self
    }

    /// Connection and message tasks still running (each holds a clone of `in_flight`).
    pub fn tasks_in_flight(&self) -> usize {
        Arc::strong_count(&self.in_flight) - 1
    }

    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// WebSocket upgrades on `/` and `/{stage}`, the management API on `/@connections/{id}`
    /// and `/{stage}/@connections/{id}`; anything else is API Gateway's 403.
    pub fn router(self: Arc<Self>) -> axum::Router {
        let management = crate::management::routes();
        axum::Router::new()
            .route("/", get(upgrade_at_root))
            .route("/{stage}", get(upgrade_at_stage))
            .merge(management)
            .fallback(|| async { forbidden() })
            .with_state(self)
    }

    /// The route a message goes to: the selected key if such a route exists, else
    /// `$default` (`None` when the API has no `$default`).
    fn route_for(&self, message: &Message) -> Option<(&str, &Arc<dyn LambdaFunction>)> {
        let selected = match message {
            Message::Text(text) => self.selection.select(text.as_str()),
            _ => None,
        };
        selected
            .and_then(|key| self.routes.get_key_value(key.as_str()))
            .or_else(|| self.routes.get_key_value("$default"))
            .map(|(key, function)| (key.as_str(), function))
    }
}

pub(crate) fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(http::header::CONTENT_TYPE, "application/json")],
        json!({"message": "Forbidden"}).to_string(),
    )
        .into_response()
}

async fn upgrade_at_root(
    State(api): State<Arc<WebSocketApi>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    connect(api, peer, uri, headers, upgrade).await
}

async fn upgrade_at_stage(
    State(api): State<Arc<WebSocketApi>>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if stage != api.stage {
        return forbidden();
    }
    connect(api, peer, uri, headers, upgrade).await
}

/// The handshake: `$connect` decides; its status rejects, its `Sec-WebSocket-Protocol`
/// header is echoed.
async fn connect(
    api: Arc<WebSocketApi>,
    peer: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let mut upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let info = connection_info(peer, &headers);
    if let Some(function) = api.routes.get("$connect") {
        let event = connect_event(&api, &info, &headers, uri.query().unwrap_or_default());
        match run_connect_route(function, event).await {
            Ok(Some(protocol)) => {
                upgrade.set_selected_protocol(protocol);
            }
            Ok(None) => {}
            Err(rejected) => return rejected,
        }
    }
    let delay = api.faults.handshake_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    accept(api, info, upgrade)
}

/// The connection a handshake opens: a fresh id, the peer, its user agent and host.
fn connection_info(peer: SocketAddr, headers: &HeaderMap) -> ConnectionInfo {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    WsConnection {
        connection_id: ids::connection_id(),
        connected_at: Utc::now(),
        source_ip: peer.ip().to_string(),
        user_agent: header_text("user-agent"),
        domain_name: header_text("host")
            .split(':')
            .next()
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_owned(),
    }
}

/// Invokes `$connect`: `Ok` with the subprotocol to select (if its response names one) when
/// it accepts, `Err` with the response the client gets when it rejects or fails.
async fn run_connect_route(
    function: &Arc<dyn LambdaFunction>,
    event: Value,
) -> Result<Option<HeaderValue>, Response> {
    let Ok(response) = function
        .invoke(event, lambda_runtime::Context::default())
        .await
    else {
        return Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"message": "Internal server error"}).to_string(),
        )
            .into_response());
    };
    let status = response["statusCode"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if !status.is_success() {
        // The function's status, headers and body reach the client.
        return Err(
            crate::http_api::map_response(response).unwrap_or_else(|_| status.into_response())
        );
    }
    Ok(response_header(&response, "sec-websocket-protocol")
        .and_then(|protocol| HeaderValue::from_str(&protocol).ok()))
}

/// Completes an accepted handshake: registers the connection and answers 101.
fn accept(api: Arc<WebSocketApi>, info: ConnectionInfo, upgrade: WebSocketUpgrade) -> Response {
    // The connection is registered BEFORE the 101 goes out: on API Gateway a connection can
    // be posted to as soon as `$connect` succeeded, and a push racing the upgrade must be
    // queued for the socket, not answered 410 (which would make the push tier delete a
    // live connection).
    let (entry, queued) = register(&api, &info);
    let limits = api.limits;
    let failed = (Arc::clone(&api), info.clone());
    upgrade
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_failed_upgrade(move |error| {
            let (api, info) = failed;
            tracing::info!(connection_id = %info.connection_id, %error, "WebSocket upgrade failed");
            api.connections.remove(&info.connection_id);
            tokio::spawn(async move {
                let disconnect = Disconnect {
                    code: CLOSE_ABNORMAL,
                    reason: "Upgrade failed".into(),
                };
                fire_disconnect(&api, &info, &disconnect).await;
            });
        })
        .on_upgrade(move |socket| session::serve_connection(api, info, entry, queued, socket))
}

/// Adds a connection to the registry `@connections` reads, with its outbound queue.
fn register(
    api: &WebSocketApi,
    info: &ConnectionInfo,
) -> (Arc<ConnectionEntry>, mpsc::UnboundedReceiver<Outbound>) {
    let (outbound, queued) = mpsc::unbounded_channel();
    let entry = Arc::new(ConnectionEntry {
        outbound,
        connected_at: info.connected_at,
        last_active_ms: AtomicI64::new(info.connected_at.timestamp_millis()),
        source_ip: info.source_ip.clone(),
        user_agent: info.user_agent.clone(),
    });
    api.connections
        .insert(&info.connection_id, Arc::clone(&entry));
    (entry, queued)
}

/// Invokes `$disconnect` (unless the fault flag drops it). Best effort, as on AWS: the
/// function's response is ignored; failures are logged by the invocation wrapper.
async fn fire_disconnect(api: &WebSocketApi, info: &ConnectionInfo, disconnect: &Disconnect) {
    if api.faults.drop_disconnect.load(Ordering::Relaxed) {
        tracing::info!(connection_id = %info.connection_id, "fault injection: $disconnect dropped");
        return;
    }
    if let Some(function) = api.routes.get("$disconnect") {
        let event = disconnect_event(api, info, disconnect);
        let _response_is_ignored_on_aws_too = function
            .invoke(event, lambda_runtime::Context::default())
            .await;
    }
}

/// A header of a Lambda proxy response, case-insensitively, from `headers` or
/// `multiValueHeaders`.
fn response_header(response: &Value, name: &str) -> Option<String> {
    let single = response["headers"].as_object().and_then(|headers| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| value.as_str().map(str::to_owned))
    });
    single.or_else(|| {
        response["multiValueHeaders"]
            .as_object()
            .and_then(|headers| {
                headers
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .and_then(|(_, values)| values.get(0)?.as_str().map(str::to_owned))
            })
    })
}

// ---- events ------------------------------------------------------------------------------

/// The API events name: this API's id and stage.
fn ws_api(api: &WebSocketApi) -> WsApi {
    WsApi {
        api_id: WEBSOCKET_API_ID.to_owned(),
        stage: api.stage.clone(),
    }
}

/// `$connect` with the handshake's headers (repeats kept) and query string.
fn connect_event(
    api: &WebSocketApi,
    info: &ConnectionInfo,
    headers: &HeaderMap,
    raw_query: &str,
) -> Value {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let request = info.connect_event(&ws_api(api), &headers, raw_query, &ids::request_id());
    ws::to_json(&request)
}

/// A message on `route_key`: text as is, binary base64-encoded.
fn message_event(
    api: &WebSocketApi,
    info: &ConnectionInfo,
    route_key: &str,
    message: &Message,
    request_id: &str,
) -> Value {
    let body = match message {
        Message::Text(text) => WsBody::Text(text.as_str().to_owned()),
        Message::Binary(data) => WsBody::Base64(STANDARD.encode(data)),
        _ => WsBody::Text(String::new()),
    };
    ws::to_json(&info.message_event(&ws_api(api), route_key, body, request_id))
}

fn disconnect_event(api: &WebSocketApi, info: &ConnectionInfo, disconnect: &Disconnect) -> Value {
    let request = info.disconnect_event(
        &ws_api(api),
        disconnect.code,
        &disconnect.reason,
        &ids::request_id(),
    );
    ws::to_json(&request)
}

/// Close code for a connection deleted through the management API.
pub(crate) const CLOSE_DELETED: u16 = CLOSE_NORMAL;

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;

    fn info() -> ConnectionInfo {
        WsConnection {
            connection_id: "abc=".into(),
            connected_at: Utc::now(),
            source_ip: "127.0.0.1".into(),
            user_agent: "test".into(),
            domain_name: "localhost".into(),
        }
    }

    #[test]
    fn events_deserialise_as_aws_lambda_events_websocket_requests() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("ripple.v1, tok"),
        );
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let api = WebSocketApi::new(
            "$request.body.action",
            BTreeMap::new(),
            "dev",
            WebSocketLimits::default(),
            Arc::new(WebSocketFaults::default()),
            shutdown,
        );
        let connect = connect_event(&api, &info(), &headers, "token=a%20b");
        let parsed: ApiGatewayWebsocketProxyRequest = serde_json::from_value(connect).unwrap();
        assert_eq!(
            parsed.request_context.event_type.as_deref(),
            Some("CONNECT")
        );
        assert_eq!(
            parsed.request_context.connection_id.as_deref(),
            Some("abc=")
        );
        assert_eq!(parsed.query_string_parameters.first("token"), Some("a b"));
        assert_eq!(parsed.headers["Sec-WebSocket-Protocol"], "ripple.v1, tok");

        let message = message_event(&api, &info(), "ping", &Message::text("{}"), "rid");
        let parsed: ApiGatewayWebsocketProxyRequest = serde_json::from_value(message).unwrap();
        assert_eq!(parsed.request_context.route_key.as_deref(), Some("ping"));
        assert!(parsed.request_context.message_id.is_some());
        assert_eq!(parsed.body.as_deref(), Some("{}"));

        let disconnect = Disconnect {
            code: 1001,
            reason: "Going away".into(),
        };
        let parsed: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(disconnect_event(&api, &info(), &disconnect)).unwrap();
        assert_eq!(parsed.request_context.disconnect_status_code, Some(1001));
        assert_eq!(
            parsed.request_context.event_type.as_deref(),
            Some("DISCONNECT")
        );
    }

    #[test]
    fn selection_reads_the_body_path_and_ignores_non_json() {
        let selection = RouteSelection::parse("$request.body.action");
        assert_eq!(
            selection.select(r#"{"action":"ping"}"#).as_deref(),
            Some("ping")
        );
        assert_eq!(selection.select("not json"), None);
        assert_eq!(selection.select(r#"{"action":{"nested":1}}"#), None);
        let nested = RouteSelection::parse("$request.body.meta.kind");
        assert_eq!(
            nested.select(r#"{"meta":{"kind":"x"}}"#).as_deref(),
            Some("x")
        );
    }

    /// Deterministic where an end-to-end check cannot be: the handshake's upgrade can never
    /// complete here (no hyper connection is behind it), so the only chance to register the
    /// connection is while producing the 101. A gateway that registered in the upgrade task
    /// (after the 101 went out, leaving a window where a push is answered 410) fails this.
    /// Current-thread runtime: the upgrade task cannot run until this test awaits.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connection_is_registered_while_the_101_is_produced_not_in_the_upgrade_task() {
        use axum::extract::FromRequestParts;
        use shared::function::{BoxError, TypedFunction};

        let accept = TypedFunction::new(|_event: lambda_runtime::LambdaEvent<Value>| async {
            Ok::<_, BoxError>(json!({"statusCode": 200}))
        });
        let (disconnect_tx, mut disconnects) = mpsc::unbounded_channel();
        let report = TypedFunction::new(move |event: lambda_runtime::LambdaEvent<Value>| {
            let _test_may_have_finished = disconnect_tx.send(event.payload);
            async { Ok::<_, BoxError>(json!({"statusCode": 200})) }
        });
        let routes = BTreeMap::from([
            ("$connect".to_owned(), accept),
            ("$disconnect".to_owned(), report),
        ]);
        let (_shutdown_tx, shutdown) = watch::channel(false);
        let api = Arc::new(WebSocketApi::new(
            "$request.body.action",
            routes,
            "dev",
            WebSocketLimits::default(),
            Arc::new(WebSocketFaults::default()),
            shutdown,
        ));

        let (mut parts, ()) = http::Request::get("/")
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .body(())
            .unwrap()
            .into_parts();
        parts
            .extensions
            .insert(hyper::upgrade::on(http::Request::new(())));
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &()).await;
        let response = connect(
            Arc::clone(&api),
            "127.0.0.1:50000".parse().unwrap(),
            Uri::from_static("/"),
            parts.headers,
            upgrade,
        )
        .await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        let registered = api.connections().ids();
        assert_eq!(
            registered.len(),
            1,
            "registered with the 101: {registered:?}"
        );

        // The upgrade then fails: the connection is removed and `$disconnect` fires for it.
        let disconnect = tokio::time::timeout(Duration::from_secs(10), disconnects.recv())
            .await
            .expect("$disconnect after the failed upgrade")
            .expect("disconnect channel open");
        assert_eq!(
            disconnect["requestContext"]["connectionId"],
            registered[0].as_str()
        );
        assert!(api.connections().ids().is_empty());
    }

    #[test]
    fn the_subprotocol_header_is_found_in_any_case() {
        let response =
            json!({"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "ripple.v1"}});
        assert_eq!(
            response_header(&response, "sec-websocket-protocol").as_deref(),
            Some("ripple.v1")
        );
        let multi = json!({"multiValueHeaders": {"sec-websocket-protocol": ["ripple.v1"]}});
        assert_eq!(
            response_header(&multi, "Sec-WebSocket-Protocol").as_deref(),
            Some("ripple.v1")
        );
    }
}
