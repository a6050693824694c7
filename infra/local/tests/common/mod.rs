//! Shared helpers of the gateway tests: fixture templates, test functions, socket and HTTP
//! clients. (Each test file uses a different subset.)
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body as LambdaBody;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ripple_local::functions::FunctionRegistry;
use ripple_local::gateway::{BoundGateway, Gateway, GatewayOptions};
use ripple_local::template::Template;
use serde_json::{json, Value};
use shared::function::{LambdaFunction, TypedFunction};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for something that should happen promptly.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The only token the fake `$connect` accepts.
pub const GOOD_TOKEN: &str = "good-token";

/// The WebSocket test functions: `$connect` accepts [`GOOD_TOKEN`] (query `token=` or the
/// `ripple.v1, <token>` subprotocol pair, answering `ripple.v1`) and rejects anything else
/// with 401; messages are echoed with their route key; every event is recorded and each
/// `$disconnect` is reported on a channel.
pub struct WebSocketFunctions {
    pub events: Arc<Mutex<Vec<Value>>>,
    pub disconnects: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    pub registry: FunctionRegistry,
}

impl WebSocketFunctions {
    pub fn new() -> Self {
        let events = Arc::new(Mutex::new(Vec::new()));
        let (disconnect_tx, disconnects) = mpsc::unbounded_channel();

        let connect = TypedFunction::new(
            |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                let request = event.payload;
                let protocols = request
                    .headers
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let offered: Vec<&str> = protocols.split(',').map(str::trim).collect();
                let query_token = request.query_string_parameters.first("token");
                let mut response = ApiGatewayProxyResponse::default();
                if query_token == Some(GOOD_TOKEN) {
                    response.status_code = 200;
                } else if offered.first() == Some(&"ripple.v1")
                    && offered.get(1) == Some(&GOOD_TOKEN)
                {
                    response.status_code = 200;
                    response.headers.insert(
                        "Sec-WebSocket-Protocol",
                        HeaderValue::from_static("ripple.v1"),
                    );
                } else {
                    response.status_code = 401;
                    response.body = Some(LambdaBody::Text(r#"{"message":"Unauthorized"}"#.into()));
                }
                Ok::<_, shared::function::BoxError>(response)
            },
        );

        let disconnect = TypedFunction::new(
            |_event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                let mut response = ApiGatewayProxyResponse::default();
                response.status_code = 200;
                Ok::<_, shared::function::BoxError>(response)
            },
        );

        let message = TypedFunction::new(
            |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
                let request = event.payload;
                let reply = json!({
                    "route": request.request_context.route_key,
                    "connection_id": request.request_context.connection_id,
                    "body": request.body,
                });
                let mut response = ApiGatewayProxyResponse::default();
                response.status_code = 200;
                response.body = Some(LambdaBody::Text(reply.to_string()));
                Ok::<_, shared::function::BoxError>(response)
            },
        );

        let record = |inner: Arc<dyn LambdaFunction>,
                      disconnects: Option<mpsc::UnboundedSender<Value>>| {
            Arc::new(Recording {
                events: Arc::clone(&events),
                disconnects,
                inner,
            }) as Arc<dyn LambdaFunction>
        };
        let registry = FunctionRegistry::new()
            .with("test-connect", record(connect, None))
            .with("test-disconnect", record(disconnect, Some(disconnect_tx)))
            .with("test-message", record(message, None));
        Self {
            events,
            disconnects: tokio::sync::Mutex::new(disconnects),
            registry,
        }
    }

    /// The next `$disconnect` event.
    pub async fn next_disconnect(&self) -> Value {
        let mut disconnects = self.disconnects.lock().await;
        tokio::time::timeout(WAIT, disconnects.recv())
            .await
            .expect("no $disconnect within the wait")
            .expect("disconnect channel closed")
    }

    /// True when no `$disconnect` arrives within `wait`.
    pub async fn no_disconnect_within(&self, wait: Duration) -> bool {
        let mut disconnects = self.disconnects.lock().await;
        tokio::time::timeout(wait, disconnects.recv())
            .await
            .is_err()
    }
}

/// Records every event exactly as the gateway sent it (raw JSON), then invokes `inner`.
struct Recording {
    events: Arc<Mutex<Vec<Value>>>,
    disconnects: Option<mpsc::UnboundedSender<Value>>,
    inner: Arc<dyn LambdaFunction>,
}

#[async_trait::async_trait]
impl LambdaFunction for Recording {
    async fn invoke(
        &self,
        event: Value,
        context: lambda_runtime::Context,
    ) -> Result<Value, shared::function::BoxError> {
        self.events.lock().unwrap().push(event.clone());
        let response = self.inner.invoke(event.clone(), context).await;
        if let Some(disconnects) = &self.disconnects {
            let _test_may_not_listen = disconnects.send(event);
        }
        response
    }
}

/// A gateway serving the WebSocket fixture with [`WebSocketFunctions`].
pub async fn websocket_gateway(options: GatewayOptions) -> (Gateway, Arc<WebSocketFunctions>) {
    let template = Template::parse(&fixture("websocket.yaml")).unwrap();
    let functions = Arc::new(WebSocketFunctions::new());
    let bound = BoundGateway::bind(options, &template).await.unwrap();
    let gateway = bound.serve(&template, &functions.registry).unwrap();
    (gateway, functions)
}

/// Opens a WebSocket to `url`, offering `protocols` (comma-separated) if given.
pub async fn connect(
    url: &str,
    protocols: Option<&str>,
) -> Result<(Socket, http::Response<Option<Vec<u8>>>), tokio_tungstenite::tungstenite::Error> {
    let mut request = url.into_client_request().unwrap();
    if let Some(protocols) = protocols {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocols).unwrap(),
        );
    }
    request.headers_mut().insert(
        "user-agent",
        HeaderValue::from_static("ripple-gateway-test"),
    );
    tokio_tungstenite::connect_async(request).await
}

/// The next text frame.
pub async fn next_text(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no frame within the wait")
            .expect("socket ended")
            .expect("socket error");
        match message {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next text frame as JSON.
pub async fn next_json(socket: &mut Socket) -> Value {
    let text = next_text(socket).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"))
}

/// Waits for the server's close frame and returns its code and reason.
pub async fn next_close(socket: &mut Socket) -> (u16, String) {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no close within the wait");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned())
            }
            Some(Ok(Message::Close(None))) => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("socket error before the close frame: {error}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

pub async fn send_text(socket: &mut Socket, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends one HTTP/1.1 request.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = tokio::time::timeout(WAIT, client.request(request))
        .await
        .expect("no HTTP response within the wait")
        .unwrap_or_else(|e| panic!("{method} {url} failed: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// A management API client pointed at the gateway, exactly as a push function builds it.
pub fn management_client(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&shared::aws::local_sdk_config())
            .endpoint_url(endpoint)
            .build(),
    )
}

/// A function answering every HTTP event with the event itself (and response extras).
pub fn http_echo_function() -> Arc<dyn LambdaFunction> {
    TypedFunction::new(|event: lambda_runtime::LambdaEvent<Value>| async move {
        let event = event.payload;
        if event["rawPath"]
            .as_str()
            .is_some_and(|p| p.starts_with("/files/"))
        {
            // Binary response: base64 body, several cookies and multi-value headers.
            return Ok::<_, shared::function::BoxError>(json!({
                "statusCode": 202,
                "headers": {"content-type": "application/octet-stream"},
                "multiValueHeaders": {"x-tag": ["a", "b"]},
                "cookies": ["session=1; HttpOnly", "theme=dark"],
                "body": "AAEC/w==",
                "isBase64Encoded": true,
            }));
        }
        Ok(json!({
            "statusCode": 200,
            "headers": {"content-type": "application/json", "access-control-allow-origin": "*"},
            "body": event.to_string(),
        }))
    })
}
