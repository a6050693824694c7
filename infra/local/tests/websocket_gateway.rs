//! The WebSocket API and `@connections` through real sockets (tokio-tungstenite) and the real
//! `aws-sdk-apigatewaymanagement` client, against the gateway started in-process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use common::*;
use futures::SinkExt;
use ripple_local::gateway::GatewayOptions;
use ripple_local::latency::{LatencyModel, RateLimit};
use ripple_local::websocket::{WebSocketFaults, WebSocketLimits};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

fn token_url(url: &str) -> String {
    format!("{url}?token={GOOD_TOKEN}")
}

/// The connection id the server gives this socket (the echo route reports it).
async fn connection_id_of(socket: &mut Socket) -> String {
    send_text(socket, r#"{"action":"echo"}"#).await;
    next_json(socket).await["connection_id"]
        .as_str()
        .expect("echo reply carries the connection id")
        .to_owned()
}

#[tokio::test]
async fn connect_with_a_bad_token_is_rejected_with_the_functions_401() {
    let (gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let url = gateway.urls().websocket_url();

    let error = connect(&format!("{url}?token=bad"), None)
        .await
        .unwrap_err();
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 401);
            let body = response.body().as_deref().unwrap_or_default();
            assert_eq!(body, br#"{"message":"Unauthorized"}"#);
        }
        other => panic!("expected an HTTP rejection, got {other:?}"),
    }
    let error = connect(&url, Some("ripple.v1, wrong")).await.unwrap_err();
    assert!(
        matches!(&error, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401),
        "{error:?}"
    );
    assert!(gateway.connections().ids().is_empty());

    let events = functions.events.lock().unwrap().clone();
    let connect_event = &events[0];
    assert_eq!(connect_event["requestContext"]["eventType"], "CONNECT");
    assert_eq!(connect_event["requestContext"]["routeKey"], "$connect");
    assert_eq!(connect_event["queryStringParameters"]["token"], "bad");
    assert_eq!(connect_event["requestContext"]["stage"], "test");
    assert_eq!(
        connect_event["requestContext"]["identity"]["sourceIp"],
        "127.0.0.1"
    );
    assert_eq!(
        connect_event["requestContext"]["identity"]["userAgent"],
        "ripple-gateway-test"
    );
    let connection_id = connect_event["requestContext"]["connectionId"]
        .as_str()
        .unwrap();
    assert!(connection_id.ends_with('='), "{connection_id}");
}

#[tokio::test]
async fn the_subprotocol_returned_by_connect_is_echoed() {
    let (gateway, _functions) = websocket_gateway(GatewayOptions::default()).await;
    let url = gateway.urls().websocket_url();
    let (_socket, response) = connect(&url, Some(&format!("ripple.v1, {GOOD_TOKEN}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(response.headers()["sec-websocket-protocol"], "ripple.v1");

    // Without a subprotocol (token in the query) the handshake carries none.
    let (_socket, response) = connect(&token_url(&url), None).await.unwrap();
    assert!(response.headers().get("sec-websocket-protocol").is_none());
}

#[tokio::test]
async fn messages_are_routed_by_the_selection_expression_with_default_fallback() {
    let (gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();

    send_text(&mut socket, r#"{"action":"echo","n":1}"#).await;
    let reply = next_json(&mut socket).await;
    assert_eq!(reply["route"], "echo");
    assert_eq!(reply["body"], r#"{"action":"echo","n":1}"#);

    send_text(&mut socket, r#"{"action":"no-such-route"}"#).await;
    assert_eq!(next_json(&mut socket).await["route"], "$default");

    send_text(&mut socket, "this is not json").await;
    let reply = next_json(&mut socket).await;
    assert_eq!(reply["route"], "$default");
    assert_eq!(reply["body"], "this is not json");

    let events = functions.events.lock().unwrap().clone();
    let message = events
        .iter()
        .find(|e| e["requestContext"]["routeKey"] == "echo")
        .unwrap();
    let context = &message["requestContext"];
    assert_eq!(context["eventType"], "MESSAGE");
    assert!(context["messageId"].is_string());
    assert!(context["connectedAt"].as_i64().unwrap() > 0);
    assert!(
        context["requestTimeEpoch"].as_i64().unwrap() >= context["connectedAt"].as_i64().unwrap()
    );
    assert_eq!(context["apiId"], "local-ws");
}

#[tokio::test]
async fn closing_fires_disconnect_with_the_clients_status_code() {
    let (gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let id = connection_id_of(&mut socket).await;
    socket
        .close(Some(CloseFrame {
            code: CloseCode::Away,
            reason: "tab closed".into(),
        }))
        .await
        .unwrap();

    let disconnect = functions.next_disconnect().await;
    let context = &disconnect["requestContext"];
    assert_eq!(context["routeKey"], "$disconnect");
    assert_eq!(context["eventType"], "DISCONNECT");
    assert_eq!(context["connectionId"], id.as_str());
    assert_eq!(context["disconnectStatusCode"], 1001);
    assert_eq!(context["disconnectReason"], "tab closed");
    assert!(gateway.connections().ids().is_empty());
}

#[tokio::test]
async fn an_oversize_frame_closes_the_connection_with_1009() {
    let (gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    // 40 KB in one frame: over the 32 KB frame limit, under the 128 KB message limit.
    let oversize = format!(r#"{{"action":"echo","pad":"{}"}}"#, "x".repeat(40 * 1024));
    socket.send(Message::text(oversize)).await.unwrap();

    let (code, _reason) = next_close(&mut socket).await;
    assert_eq!(code, 1009);
    let disconnect = functions.next_disconnect().await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1009);
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let options = GatewayOptions {
        limits: WebSocketLimits {
            idle_timeout: Duration::from_secs(1),
            ..WebSocketLimits::default()
        },
        ..GatewayOptions::default()
    };
    let (gateway, functions) = websocket_gateway(options).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let started = std::time::Instant::now();

    let (code, reason) = next_close(&mut socket).await;
    assert_eq!((code, reason.as_str()), (1001, "Going away"));
    assert!(started.elapsed() >= Duration::from_millis(900));
    let disconnect = functions.next_disconnect().await;
    assert_eq!(disconnect["requestContext"]["disconnectStatusCode"], 1001);
    assert_eq!(
        disconnect["requestContext"]["disconnectReason"],
        "Idle timeout"
    );
}

#[tokio::test]
async fn a_connection_is_closed_at_the_maximum_duration_even_when_active() {
    let options = GatewayOptions {
        limits: WebSocketLimits {
            max_duration: Duration::from_secs(1),
            ..WebSocketLimits::default()
        },
        ..GatewayOptions::default()
    };
    let (gateway, functions) = websocket_gateway(options).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    // Activity does not extend the hard limit.
    send_text(&mut socket, r#"{"action":"echo"}"#).await;
    next_json(&mut socket).await;
    let (code, _) = next_close(&mut socket).await;
    assert_eq!(code, 1001);
    let disconnect = functions.next_disconnect().await;
    assert_eq!(
        disconnect["requestContext"]["disconnectReason"],
        "Maximum connection duration reached"
    );
}

#[tokio::test]
async fn post_to_connection_reaches_exactly_the_addressed_socket() {
    let (gateway, _functions) = websocket_gateway(GatewayOptions::default()).await;
    let url = token_url(&gateway.urls().websocket_url());
    let (mut first, _) = connect(&url, None).await.unwrap();
    let (mut second, _) = connect(&url, None).await.unwrap();
    let first_id = connection_id_of(&mut first).await;
    let second_id = connection_id_of(&mut second).await;
    assert_ne!(first_id, second_id);

    let client = management_client(&gateway.urls().management_endpoint());
    client
        .post_to_connection()
        .connection_id(&second_id)
        .data(Blob::new(r#"{"type":"hello","to":"second"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(next_json(&mut second).await["to"], "second");

    client
        .post_to_connection()
        .connection_id(&first_id)
        .data(Blob::new(r#"{"to":"first"}"#))
        .send()
        .await
        .unwrap();
    // The first frame the first socket sees is its own message: nothing leaked across.
    assert_eq!(next_json(&mut first).await["to"], "first");
}

/// API Gateway accepts posts to a connection as soon as `$connect` succeeded; a push that
/// races the upgrade must be queued for the socket, never answered 410 (the push tier would
/// then delete a live connection).
#[tokio::test]
async fn a_post_right_after_the_handshake_reaches_the_socket() {
    let (gateway, _functions) = websocket_gateway(GatewayOptions::default()).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    // End to end this cannot tell "registered before the 101" from "registered in the upgrade
    // task" (that task runs before the client reads the 101); the unit test
    // `websocket::tests::a_connection_is_registered_while_the_101_is_produced_…` can.
    let ids = gateway.connections().ids();
    assert_eq!(
        ids.len(),
        1,
        "registered by the time the 101 arrived: {ids:?}"
    );
    let client = management_client(&gateway.urls().management_endpoint());
    client
        .post_to_connection()
        .connection_id(&ids[0])
        .data(Blob::new(r#"{"early":true}"#))
        .send()
        .await
        .expect("a post right after the handshake is delivered");
    assert_eq!(next_json(&mut socket).await["early"], true);
}

#[tokio::test]
async fn get_connection_returns_connected_at_and_identity() {
    let (gateway, _functions) = websocket_gateway(GatewayOptions::default()).await;
    let before = aws_smithy_types::DateTime::from_secs(chrono::Utc::now().timestamp() - 1);
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let id = connection_id_of(&mut socket).await;

    let client = management_client(&gateway.urls().management_endpoint());
    let connection = client
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();
    let connected_at = connection.connected_at().expect("connectedAt");
    assert!(connected_at.secs() >= before.secs(), "{connected_at:?}");
    assert!(connection.last_active_at().expect("lastActiveAt").secs() >= connected_at.secs());
    let identity = connection.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("ripple-gateway-test"));
}

#[tokio::test]
async fn delete_connection_closes_the_socket_and_fires_disconnect() {
    let (gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let id = connection_id_of(&mut socket).await;

    let client = management_client(&gateway.urls().management_endpoint());
    client
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap();

    let (code, _) = next_close(&mut socket).await;
    assert_eq!(code, 1000);
    let disconnect = functions.next_disconnect().await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    // Deleted means gone for the management API too.
    let error = client
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new("late"))
        .send()
        .await
        .unwrap_err();
    assert!(matches!(
        error.into_service_error(),
        PostToConnectionError::GoneException(_)
    ));
}

#[tokio::test]
async fn an_unknown_connection_is_the_sdks_gone_exception() {
    let (gateway, _functions) = websocket_gateway(GatewayOptions::default()).await;
    let client = management_client(&gateway.urls().management_endpoint());
    let error = client
        .post_to_connection()
        .connection_id("bm90LWEtY29ubmVjdGlvbg==")
        .data(Blob::new("{}"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            error.into_service_error(),
            PostToConnectionError::GoneException(_)
        ),
        "unknown ids must map to GoneException"
    );

    // The raw wire answer, for boto3 and the CLI: 410 + x-amzn-ErrorType, also without the
    // stage prefix and with the id URL-encoded.
    let url = format!(
        "http://{}/@connections/bm90LWEtY29ubmVjdGlvbg%3D%3D",
        gateway.urls().websocket_address
    );
    let response = http_request("POST", &url, &[], b"{}").await;
    assert_eq!(response.status, 410);
    assert_eq!(response.headers["x-amzn-errortype"], "GoneException");
    assert!(response.json()["message"].is_string());
}

#[tokio::test]
async fn a_closed_connection_is_gone() {
    let (gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let id = connection_id_of(&mut socket).await;
    socket.close(None).await.unwrap();
    functions.next_disconnect().await;

    let client = management_client(&gateway.urls().management_endpoint());
    let error = client
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(error.into_service_error().is_gone_exception());
}

#[tokio::test]
async fn fault_flags_drop_disconnects_and_fail_posts() {
    let options = GatewayOptions {
        faults: Arc::new(WebSocketFaults::new(true, 100)),
        ..GatewayOptions::default()
    };
    let (gateway, functions) = websocket_gateway(options).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let id = connection_id_of(&mut socket).await;

    let url = format!("{}/@connections/{id}", gateway.urls().management_endpoint());
    let response = http_request("POST", &url, &[], b"{}").await;
    assert_eq!(response.status, 500);

    socket.close(None).await.unwrap();
    assert!(
        functions
            .no_disconnect_within(Duration::from_millis(500))
            .await
    );
    assert!(gateway.connections().ids().is_empty());
}

#[tokio::test]
async fn a_wrong_stage_is_forbidden() {
    let (gateway, _functions) = websocket_gateway(GatewayOptions::default()).await;
    let address = gateway.urls().websocket_address;
    let error = connect(&format!("ws://{address}/other?token={GOOD_TOKEN}"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403),
        "{error:?}"
    );
    let response = http_request(
        "GET",
        &format!("http://{address}/other/@connections/x"),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 403);
}

#[tokio::test]
async fn beyond_the_account_throttle_the_sdk_sees_limit_exceeded() {
    // A bucket of 3 that refills one token a second, and 10 calls at once: the first 3 are
    // served from the full bucket, and at least 6 find it empty (a count: only a run
    // slower than seconds could refill more).
    let options = GatewayOptions {
        latency: LatencyModel {
            management_rate_limit: Some(RateLimit {
                per_second: 1,
                burst: 3,
            }),
            ..LatencyModel::default()
        },
        ..GatewayOptions::default()
    };
    let (gateway, _functions) = websocket_gateway(options).await;
    let (mut socket, _) = connect(&token_url(&gateway.urls().websocket_url()), None)
        .await
        .unwrap();
    let id = connection_id_of(&mut socket).await;
    // The SDK retries throttling errors by default; a push function's client would, too.
    // Without retries the test sees each answer as it was given.
    let client = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&shared::aws::local_sdk_config())
            .endpoint_url(gateway.urls().management_endpoint())
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build(),
    );

    let calls = (0..10).map(|n| {
        client
            .post_to_connection()
            .connection_id(&id)
            .data(Blob::new(format!(r#"{{"n":{n}}}"#)))
            .send()
    });
    let answers = futures::future::join_all(calls).await;
    let mut served = 0;
    let mut throttled = 0;
    for answer in answers {
        match answer.map_err(|error| error.into_service_error()) {
            Ok(_) => served += 1,
            Err(PostToConnectionError::LimitExceededException(_)) => throttled += 1,
            Err(other) => panic!("neither served nor throttled: {other:?}"),
        }
    }
    assert!(
        served >= 3,
        "the full bucket serves its burst, got {served}"
    );
    assert!(
        throttled >= 6,
        "beyond the bucket: LimitExceededException, got {throttled}"
    );
    assert_eq!(served + throttled, 10);
    for _ in 0..served {
        next_json(&mut socket).await;
    }

    // The raw wire answer: 429 + x-amzn-ErrorType (the bucket is empty, or nearly).
    let url = format!(
        "{}/@connections/{}",
        gateway.urls().management_endpoint(),
        id.replace('=', "%3D")
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = http_request("GET", &url, &[], b"").await;
        if response.status == 429 {
            assert_eq!(
                response.headers["x-amzn-errortype"],
                "LimitExceededException"
            );
            assert!(response.json()["message"].is_string());
        }
        statuses.push(response.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn modelled_management_latency_delays_every_call() {
    // A constant 150 ms: the bound is a lower one (a delay that did not happen), never an
    // upper one, so a slow machine cannot fail it.
    let options = GatewayOptions {
        latency: LatencyModel {
            management: Some("p50=150".parse().unwrap()),
            ..LatencyModel::default()
        },
        ..GatewayOptions::default()
    };
    let (gateway, _functions) = websocket_gateway(options).await;
    let client = management_client(&gateway.urls().management_endpoint());
    let started = std::time::Instant::now();
    let error = client
        .get_connection()
        .connection_id("bm90LWEtY29ubmVjdGlvbg==")
        .send()
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(error.into_service_error().is_gone_exception());
}

#[tokio::test]
async fn the_websocket_side_stops_closing_every_socket_and_starts_again_on_its_port() {
    let (mut gateway, functions) = websocket_gateway(GatewayOptions::default()).await;
    let url = token_url(&gateway.urls().websocket_url());
    let address = gateway.urls().websocket_address;
    let (mut socket, _) = connect(&url, None).await.unwrap();
    let id = connection_id_of(&mut socket).await;

    gateway.stop_websocket().await;
    // Going away (1001), with $disconnect fired, as when API Gateway drops its connections.
    assert_eq!(next_close(&mut socket).await.0, 1001);
    let disconnect = functions.next_disconnect().await;
    assert_eq!(disconnect["requestContext"]["connectionId"], id.as_str());
    assert!(gateway.connections().ids().is_empty());
    assert!(
        tokio::net::TcpStream::connect(address).await.is_err(),
        "nothing listens while it is stopped"
    );

    gateway.start_websocket().await.unwrap();
    assert_eq!(gateway.urls().websocket_address, address);
    let (mut again, _) = connect(&url, None).await.unwrap();
    let new_id = connection_id_of(&mut again).await;
    assert_ne!(new_id, id);
    assert_eq!(gateway.connections().ids(), vec![new_id]);
    gateway.shutdown().await;
}
