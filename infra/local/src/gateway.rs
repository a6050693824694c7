//! The API Gateway half of the local stack: the HTTP API and the WebSocket API (with
//! `@connections`) on their own ports, serving the template's routes with the registry's
//! functions.
//!
//! Starting is two steps because the functions need the gateway's address before they
//! exist (`WS_MANAGEMENT_ENDPOINT`): [`BoundGateway::bind`] takes the ports, then
//! [`BoundGateway::serve`] starts serving once the registry is built.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shared::function::LambdaFunction;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::functions::FunctionRegistry;
use crate::http_api::{BoundRoute, HttpApi};
use crate::latency::LatencyModel;
use crate::template::Template;
use crate::web_app::{self, WebAppFiles};
use crate::websocket::{Connections, WebSocketApi, WebSocketFaults, WebSocketLimits};

/// How long shutdown waits for `$disconnect` handlers and in-flight messages.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The stage when neither the template nor the options name one.
pub const DEFAULT_STAGE: &str = "local";

/// How the gateway listens and behaves.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub http_address: SocketAddr,
    pub websocket_address: SocketAddr,
    /// The WebSocket stage; `None` takes the template's `AWS::ApiGatewayV2::Stage`.
    pub stage: Option<String>,
    pub limits: WebSocketLimits,
    pub faults: Arc<WebSocketFaults>,
    /// AWS-modelled timing; the gateway applies its `@connections` parts (delay, throttle).
    pub latency: LatencyModel,
    /// The web app's files, served at `/app/` on the HTTP port (`None`: no web app).
    pub web_app: Option<WebAppFiles>,
}

impl Default for GatewayOptions {
    /// AWS limits, no faults, ports chosen by the OS (tests).
    fn default() -> Self {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            http_address: any_port,
            websocket_address: any_port,
            stage: None,
            limits: WebSocketLimits::default(),
            faults: Arc::new(WebSocketFaults::default()),
            latency: LatencyModel::default(),
            web_app: None,
        }
    }
}

/// Ports taken, not yet serving.
pub struct BoundGateway {
    http: TcpListener,
    websocket: TcpListener,
    http_address: SocketAddr,
    websocket_address: SocketAddr,
    stage: String,
    options: GatewayOptions,
}

impl BoundGateway {
    pub async fn bind(options: GatewayOptions, template: &Template) -> anyhow::Result<Self> {
        let http = TcpListener::bind(options.http_address)
            .await
            .with_context(|| format!("binding the HTTP API to {}", options.http_address))?;
        let websocket = TcpListener::bind(options.websocket_address)
            .await
            .with_context(|| {
                format!("binding the WebSocket API to {}", options.websocket_address)
            })?;
        let stage = options
            .stage
            .clone()
            .or_else(|| template.websocket_api.as_ref()?.stage.clone())
            .unwrap_or_else(|| DEFAULT_STAGE.to_owned());
        Ok(Self {
            http_address: http.local_addr()?,
            websocket_address: websocket.local_addr()?,
            http,
            websocket,
            stage,
            options,
        })
    }

    pub fn urls(&self) -> GatewayUrls {
        GatewayUrls::new(self.http_address, self.websocket_address, &self.stage)
    }

    /// Checks that every route has a handler, then serves.
    pub fn serve(
        self,
        template: &Template,
        functions: &FunctionRegistry,
    ) -> anyhow::Result<Gateway> {
        template.check_handlers(&functions.names())?;
        let routes = template
            .http_api
            .routes
            .iter()
            .map(|route| {
                Ok(BoundRoute {
                    route: route.clone(),
                    function: functions.for_function(template, &route.function)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let http_api =
            HttpApi::new(routes, template.http_api.cors.clone()).map_err(anyhow::Error::msg)?;

        let (shutdown, shutdown_signal) = watch::channel(false);
        let websocket = match &template.websocket_api {
            Some(api) => WebSocketSpec {
                selection: api.route_selection_expression.clone(),
                routes: api
                    .routes
                    .iter()
                    .map(|(key, function)| {
                        Ok((key.clone(), functions.for_function(template, function)?))
                    })
                    .collect::<anyhow::Result<BTreeMap<_, _>>>()?,
            },
            None => WebSocketSpec {
                selection: "$request.body.action".to_owned(),
                routes: BTreeMap::new(),
            },
        };
        let urls = self.urls();
        let http_router = match &self.options.web_app {
            Some(files) => web_app::router(files.clone(), &urls).merge(http_api.router()),
            None => http_api.router(),
        };
        let http_task = serve(self.http, http_router, shutdown_signal);
        let mut gateway = Gateway {
            web_app: self.options.web_app.is_some(),
            urls,
            connections: Connections::default(),
            websocket_api: None,
            websocket,
            stage: self.stage,
            options: self.options,
            shutdown,
            http_task: Some(http_task),
            websocket_side: None,
        };
        gateway.serve_websocket(self.websocket);
        Ok(gateway)
    }
}

/// What the WebSocket side is rebuilt from when it starts again.
struct WebSocketSpec {
    selection: String,
    routes: BTreeMap<String, Arc<dyn LambdaFunction>>,
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                // A dropped sender also means stop.
                let _either_way = stop.wait_for(|stopping| *stopping).await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!("gateway listener stopped: {error}");
        }
    })
}

/// Where the gateway listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrls {
    pub http_address: SocketAddr,
    pub websocket_address: SocketAddr,
    pub stage: String,
}

impl GatewayUrls {
    fn new(http_address: SocketAddr, websocket_address: SocketAddr, stage: &str) -> Self {
        Self {
            http_address,
            websocket_address,
            stage: stage.to_owned(),
        }
    }

    /// `http://127.0.0.1:3000`
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_address)
    }

    /// `ws://127.0.0.1:3001/{stage}` (the `wss://…/{stage}` of AWS).
    pub fn websocket_url(&self) -> String {
        format!("ws://{}/{}", self.websocket_address, self.stage)
    }

    /// `http://127.0.0.1:3001/{stage}`: the management API endpoint the SDK is given.
    pub fn management_endpoint(&self) -> String {
        format!("http://{}/{}", self.websocket_address, self.stage)
    }
}

/// A serving gateway; stops on [`shutdown`](Self::shutdown) or drop.
pub struct Gateway {
    urls: GatewayUrls,
    web_app: bool,
    connections: Connections,
    /// `None` while the WebSocket side is stopped.
    websocket_api: Option<Arc<WebSocketApi>>,
    websocket: WebSocketSpec,
    stage: String,
    options: GatewayOptions,
    /// Stops the HTTP API.
    shutdown: watch::Sender<bool>,
    http_task: Option<JoinHandle<()>>,
    /// The WebSocket listener's stop switch and task, while it runs.
    websocket_side: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Gateway {
    pub fn urls(&self) -> &GatewayUrls {
        &self.urls
    }

    /// `http://127.0.0.1:3000/app/` when the web app is served.
    pub fn web_app_url(&self) -> Option<String> {
        self.web_app
            .then(|| format!("{}{}/", self.urls.http_url(), web_app::MOUNT_PATH))
    }

    /// The open WebSocket connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The WebSocket fault switches (tests may flip them while running).
    pub fn faults(&self) -> &Arc<WebSocketFaults> {
        &self.options.faults
    }

    /// Serves the WebSocket API (and `@connections`) on `listener` with a fresh connection
    /// registry.
    fn serve_websocket(&mut self, listener: TcpListener) {
        let (stop, stop_signal) = watch::channel(false);
        let api = Arc::new(
            WebSocketApi::new(
                &self.websocket.selection,
                self.websocket.routes.clone(),
                &self.stage,
                self.options.limits,
                Arc::clone(&self.options.faults),
                stop_signal.clone(),
            )
            .with_management_latency(&self.options.latency),
        );
        self.connections = api.connections();
        let task = serve(listener, Arc::clone(&api).router(), stop_signal);
        self.websocket_api = Some(api);
        self.websocket_side = Some((stop, task));
    }

    /// Stops the WebSocket side as a gateway outage does: every socket is closed (1001,
    /// `$disconnect` fired), the listener and `@connections` are gone (connections refused)
    /// until [`start_websocket`](Self::start_websocket). The HTTP API keeps serving.
    pub async fn stop_websocket(&mut self) {
        if let Some((stop, task)) = self.websocket_side.take() {
            let _receivers_may_be_gone = stop.send(true);
            if let Err(error) = task.await {
                if error.is_panic() {
                    tracing::error!("the WebSocket listener panicked");
                }
            }
        }
        if let Some(api) = self.websocket_api.take() {
            drain(&api).await;
        }
    }

    /// Serves the WebSocket side again on the same port after
    /// [`stop_websocket`](Self::stop_websocket); a no-op while it runs.
    pub async fn start_websocket(&mut self) -> anyhow::Result<()> {
        if self.websocket_side.is_some() {
            return Ok(());
        }
        let address = self.urls.websocket_address;
        let listener = TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the WebSocket API to {address} again"))?;
        self.serve_websocket(listener);
        Ok(())
    }

    /// Closes every WebSocket (1001, `$disconnect` fired), stops both listeners and waits
    /// (bounded) for the connection and message tasks to finish.
    pub async fn shutdown(mut self) {
        let _receivers_may_be_gone = self.shutdown.send(true);
        self.stop_websocket().await;
        if let Some(task) = self.http_task.take() {
            if let Err(error) = task.await {
                if error.is_panic() {
                    tracing::error!("a gateway listener panicked");
                }
            }
        }
    }
}

/// Waits (bounded) for the connection and message tasks of `api` to finish.
async fn drain(api: &WebSocketApi) {
    let drained = async {
        while api.tasks_in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!(
            "{} WebSocket tasks still running at shutdown",
            api.tasks_in_flight()
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _receivers_may_be_gone = self.shutdown.send(true);
        if let Some((stop, _task)) = &self.websocket_side {
            let _receivers_may_be_gone = stop.send(true);
        }
    }
}
