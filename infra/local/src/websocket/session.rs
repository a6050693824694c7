//! One live socket: frames in (each dispatched to its route), queued frames out, the idle
//! and duration limits, and the close handshake; `$disconnect` once it ends.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    fire_disconnect, message_event, ConnectionEntry, ConnectionInfo, Disconnect, Outbound,
    WebSocketApi, CLOSE_ABNORMAL, CLOSE_GOING_AWAY, CLOSE_NO_STATUS, CLOSE_TOO_BIG,
};
use crate::ids;

/// Runs one connection until it ends, then fires `$disconnect`.
pub(super) async fn serve_connection(
    api: Arc<WebSocketApi>,
    info: ConnectionInfo,
    entry: Arc<ConnectionEntry>,
    mut queued: mpsc::UnboundedReceiver<Outbound>,
    mut socket: WebSocket,
) {
    let _in_flight = Arc::clone(&api.in_flight);
    let info = Arc::new(info);
    let disconnect = run(&api, &info, &entry, &mut queued, &mut socket).await;
    api.connections.remove(&info.connection_id);
    finish_close(&mut socket).await;
    drop(socket);
    fire_disconnect(&api, &info, &disconnect).await;
}

/// The socket's loop: until the client closes, the socket fails, a queued close is sent, a
/// limit is reached or the gateway shuts down. Returns what `$disconnect` reports.
async fn run(
    api: &Arc<WebSocketApi>,
    info: &Arc<ConnectionInfo>,
    entry: &ConnectionEntry,
    queued: &mut mpsc::UnboundedReceiver<Outbound>,
    socket: &mut WebSocket,
) -> Disconnect {
    let mut shutdown = api.shutdown.clone();
    let max_deadline = Instant::now() + api.limits.max_duration;
    let mut idle_deadline = Instant::now() + api.limits.idle_timeout;
    loop {
        let step = tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(frame))) => ControlFlow::Break(client_close(frame)),
                Some(Ok(message)) => {
                    idle_deadline = Instant::now() + api.limits.idle_timeout;
                    entry.last_active_ms.store(Utc::now().timestamp_millis(), Ordering::Relaxed);
                    if matches!(message, Message::Text(_) | Message::Binary(_)) {
                        tokio::spawn(dispatch(
                            Arc::clone(api),
                            Arc::clone(info),
                            message,
                            entry.outbound.clone(),
                        ));
                    }
                    ControlFlow::Continue(())
                }
                None => ControlFlow::Break(Disconnect {
                    code: CLOSE_ABNORMAL,
                    reason: "Connection closed without a close frame".into(),
                }),
                Some(Err(error)) => ControlFlow::Break(socket_failed(socket, error).await),
            },
            Some(message) = queued.recv() => send(socket, message).await,
            () = tokio::time::sleep_until(idle_deadline) => {
                ControlFlow::Break(going_away(socket, "Idle timeout").await)
            }
            () = tokio::time::sleep_until(max_deadline) => {
                ControlFlow::Break(going_away(socket, "Maximum connection duration reached").await)
            }
            _ = shutdown.changed() => {
                ControlFlow::Break(going_away(socket, "Gateway shutting down").await)
            }
        };
        if let ControlFlow::Break(disconnect) = step {
            return disconnect;
        }
    }
}

/// Sends one queued frame; a queued close ends the connection, as does a failed send.
async fn send(socket: &mut WebSocket, message: Outbound) -> ControlFlow<Disconnect> {
    let sent = match message {
        Outbound::Text(text) => socket.send(Message::text(text)).await,
        Outbound::Binary(data) => socket.send(Message::binary(data)).await,
        Outbound::Close { code, reason } => {
            close(socket, code, reason).await;
            return ControlFlow::Break(Disconnect {
                code,
                reason: reason.into(),
            });
        }
    };
    match sent {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(Disconnect {
            code: CLOSE_ABNORMAL,
            reason: "Connection reset".into(),
        }),
    }
}

/// A receive error: an oversize frame or message closes with 1009, anything else is a reset.
async fn socket_failed(socket: &mut WebSocket, error: axum::Error) -> Disconnect {
    if is_capacity_error(error) {
        close(socket, CLOSE_TOO_BIG, "Message too big").await;
        return Disconnect {
            code: CLOSE_TOO_BIG,
            reason: "Message too big".into(),
        };
    }
    Disconnect {
        code: CLOSE_ABNORMAL,
        reason: "Connection reset".into(),
    }
}

/// Closes with 1001 ("Going away"); `$disconnect` reports `reason`.
async fn going_away(socket: &mut WebSocket, reason: &str) -> Disconnect {
    close(socket, CLOSE_GOING_AWAY, "Going away").await;
    Disconnect {
        code: CLOSE_GOING_AWAY,
        reason: reason.into(),
    }
}

/// What `$disconnect` reports for a client's close frame.
fn client_close(frame: Option<CloseFrame>) -> Disconnect {
    match frame {
        Some(frame) => Disconnect {
            code: frame.code,
            reason: frame.reason.as_str().to_owned(),
        },
        None => Disconnect {
            code: CLOSE_NO_STATUS,
            reason: String::new(),
        },
    }
}

/// tungstenite reports oversize frames/messages as capacity errors.
fn is_capacity_error(error: axum::Error) -> bool {
    error
        .into_inner()
        .downcast_ref::<tokio_tungstenite::tungstenite::Error>()
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)))
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // The peer may already be gone; the connection ends either way.
    let _peer_may_be_gone = socket.send(Message::Close(Some(frame))).await;
}

/// Completes the closing handshake: flushes our reply to the peer's close frame, or waits
/// (briefly) for the peer's reply to ours.
async fn finish_close(socket: &mut WebSocket) {
    let drain = async { while let Some(Ok(_)) = socket.recv().await {} };
    let _timed_out_is_fine = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Invokes the route for one message and sends its response body back, or API Gateway's
/// error frame.
async fn dispatch(
    api: Arc<WebSocketApi>,
    info: Arc<ConnectionInfo>,
    message: Message,
    outbound: mpsc::UnboundedSender<Outbound>,
) {
    let _in_flight = Arc::clone(&api.in_flight);
    let request_id = ids::request_id();
    let Some((route_key, function)) = api.route_for(&message) else {
        let error = json!({
            "message": "Forbidden",
            "connectionId": info.connection_id,
            "requestId": request_id,
        });
        // The socket may have closed meanwhile; nothing to tell then.
        let _closed = outbound.send(Outbound::Text(error.to_string()));
        return;
    };
    let event = message_event(&api, &info, route_key, &message, &request_id);
    let reply = match function
        .invoke(event, lambda_runtime::Context::default())
        .await
    {
        Ok(response) => route_response(&response),
        Err(_) => Some(Outbound::Text(
            json!({
                "message": "Internal server error",
                "connectionId": info.connection_id,
                "requestId": request_id,
            })
            .to_string(),
        )),
    };
    if let Some(reply) = reply {
        let _closed = outbound.send(reply);
    }
}

/// The frame a route's response body becomes, if it has one.
fn route_response(response: &Value) -> Option<Outbound> {
    let body = response["body"].as_str().filter(|b| !b.is_empty())?;
    if response["isBase64Encoded"] == json!(true) {
        return STANDARD
            .decode(body)
            .ok()
            .map(|data| Outbound::Binary(Bytes::from(data)));
    }
    Some(Outbound::Text(body.to_owned()))
}
