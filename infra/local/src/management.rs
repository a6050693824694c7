//! The API Gateway management API (`@connections`) on the WebSocket port, wire-compatible
//! with `aws-sdk-apigatewaymanagement`, boto3 and the AWS CLI: `POST` sends one frame,
//! `GET` describes the connection, `DELETE` closes it; a connection that is not open is
//! `410` with `x-amzn-ErrorType: GoneException`. Under an AWS latency model
//! ([`crate::latency`]) every call answers after a drawn delay, and calls beyond the
//! account-wide token bucket are `429` with `x-amzn-ErrorType: LimitExceededException`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use http::StatusCode;
use rand::Rng;
use serde_json::json;

use crate::ids;
use crate::websocket::{forbidden, Outbound, WebSocketApi, CLOSE_DELETED};

/// Largest `PostToConnection` payload API Gateway accepts.
pub const MAX_POST_BYTES: usize = 128 * 1024;

pub(crate) fn routes() -> axum::Router<Arc<WebSocketApi>> {
    let connection = || {
        post(post_to_connection)
            .get(get_connection)
            .delete(delete_connection)
    };
    axum::Router::new()
        .route("/@connections/{connection_id}", connection())
        .route("/{stage}/@connections/{connection_id}", connection())
}

/// An error the SDKs map by `x-amzn-ErrorType`.
fn api_error(status: StatusCode, error_type: &'static str, message: String) -> Response {
    (
        status,
        [
            ("x-amzn-errortype", error_type),
            ("content-type", "application/json"),
        ],
        json!({ "message": message }).to_string(),
    )
        .into_response()
}

/// API Gateway's throttle: the SDKs map it to `LimitExceededException`.
fn throttled() -> Response {
    api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "LimitExceededException",
        "Too Many Requests".to_owned(),
    )
}

fn gone(connection_id: &str) -> Response {
    api_error(
        StatusCode::GONE,
        "GoneException",
        format!("connection {connection_id} is gone"),
    )
}

/// The connection id of the path, if the path's stage (when present) is this API's.
fn connection_id(api: &WebSocketApi, params: &HashMap<String, String>) -> Option<String> {
    if params.get("stage").is_some_and(|stage| *stage != api.stage) {
        return None;
    }
    // axum has already percent-decoded the segment (`%3D` → `=`).
    params.get("connection_id").cloned()
}

async fn post_to_connection(
    State(api): State<Arc<WebSocketApi>>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let Some(id) = connection_id(&api, &params) else {
        return forbidden();
    };
    if !api.management_timing.admit().await {
        return throttled();
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_POST_BYTES).await else {
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            format!("payload exceeds {MAX_POST_BYTES} bytes"),
        );
    };
    let fail_percent = api.faults.fail_post_percent.load(Ordering::Relaxed);
    if fail_percent > 0 && rand::thread_rng().gen_range(0..100u8) < fail_percent {
        return api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            "fault injection: @connections POST failed".to_owned(),
        );
    }
    let Some(connection) = api.connections.get(&id) else {
        return gone(&id);
    };
    let frame = match std::str::from_utf8(&body) {
        Ok(text) => Outbound::Text(text.to_owned()),
        Err(_) => Outbound::Binary(body),
    };
    if connection.outbound.send(frame).is_err() {
        return gone(&id);
    }
    StatusCode::OK.into_response()
}

async fn get_connection(
    State(api): State<Arc<WebSocketApi>>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let Some(id) = connection_id(&api, &params) else {
        return forbidden();
    };
    if !api.management_timing.admit().await {
        return throttled();
    }
    let Some(connection) = api.connections.get(&id) else {
        return gone(&id);
    };
    let last_active =
        DateTime::<Utc>::from_timestamp_millis(connection.last_active_ms.load(Ordering::Relaxed))
            .unwrap_or(connection.connected_at);
    // The wire names are camelCase (the SDKs' `ConnectedAt` etc. are their renderings).
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({
            "connectedAt": ids::iso_time(connection.connected_at),
            "identity": {
                "sourceIp": connection.source_ip,
                "userAgent": connection.user_agent,
            },
            "lastActiveAt": ids::iso_time(last_active),
        })
        .to_string(),
    )
        .into_response()
}

async fn delete_connection(
    State(api): State<Arc<WebSocketApi>>,
    Path(params): Path<HashMap<String, String>>,
) -> Response {
    let Some(id) = connection_id(&api, &params) else {
        return forbidden();
    };
    if !api.management_timing.admit().await {
        return throttled();
    }
    // Removed first, so a POST right after the DELETE is already 410.
    let Some(connection) = api.connections.remove(&id) else {
        return gone(&id);
    };
    let closing = connection.outbound.send(Outbound::Close {
        code: CLOSE_DELETED,
        reason: "Connection deleted",
    });
    if closing.is_err() {
        return gone(&id);
    }
    StatusCode::NO_CONTENT.into_response()
}
