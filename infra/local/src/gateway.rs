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
        let (selection, websocket_routes) = match &template.websocket_api {
            Some(api) => (
                api.route_selection_expression.clone(),
                api.routes
                    .iter()
                    .map(|(key, function)| {
                        Ok((key.clone(), functions.for_function(template, function)?))
                    })
                    .collect::<anyhow::Result<BTreeMap<_, _>>>()?,
            ),
            None => ("$request.body.action".to_owned(), BTreeMap::new()),
        };
        let websocket_api = Arc::new(
            WebSocketApi::new(
                &selection,
                websocket_routes,
                &self.stage,
                self.options.limits,
                Arc::clone(&self.options.faults),
                shutdown_signal.clone(),
            )
            .with_management_latency(&self.options.latency),
        );
        let connections = websocket_api.connections();
        let urls = self.urls();
        let http_router = match &self.options.web_app {
            Some(files) => web_app::router(files.clone(), &urls).merge(http_api.router()),
            None => http_api.router(),
        };
        let tasks = vec![
            serve(self.http, http_router, shutdown_signal.clone()),
            serve(
                self.websocket,
                Arc::clone(&websocket_api).router(),
                shutdown_signal,
            ),
        ];
        Ok(Gateway {
            web_app: self.options.web_app.is_some(),
            urls,
            connections,
            websocket_api,
            faults: self.options.faults,
            shutdown,
            tasks,
        })
    }
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
    websocket_api: Arc<WebSocketApi>,
    faults: Arc<WebSocketFaults>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
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
        &self.faults
    }

    /// Closes every WebSocket (1001, `$disconnect` fired), stops both listeners and waits
    /// (bounded) for the connection and message tasks to finish.
    pub async fn shutdown(mut self) {
        let _receivers_may_be_gone = self.shutdown.send(true);
        for task in self.tasks.drain(..) {
            if let Err(error) = task.await {
                if error.is_panic() {
                    tracing::error!("a gateway listener panicked");
                }
            }
        }
        let drained = async {
            while self.websocket_api.tasks_in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
            tracing::warn!(
                "{} WebSocket tasks still running at shutdown",
                self.websocket_api.tasks_in_flight()
            );
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _receivers_may_be_gone = self.shutdown.send(true);
    }
}
