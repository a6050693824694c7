//! The stack's WebSocket side: opening sockets on the gateway, and its fault switches and
//! pollers.

use std::collections::BTreeSet;
use std::sync::Arc;

use ripple_local::sqs_poller::{SqsPollerFaults, SqsPollerHandle};
use ripple_local::stream_poller::StreamPollerFaults;
use ripple_local::websocket::WebSocketFaults;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{RealtimeStack, User, WsClient, SUBPROTOCOL, WAIT};

impl RealtimeStack {
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
}
