//! Access-token keys through the local gateway: a key rotation done as on AWS, as three
//! deploys over one persistent database. api-auth reads its signing key from Secrets
//! Manager (moto) at cold start, every verifying function is given the JWKS, and
//! `GET /.well-known/jwks.json` serves it.
//!
//! 1. key A signs, the JWKS is {A}: alice registers, her token (kid A) works;
//! 2. the public key of B is added and api-auth switched to B: alice's A-token still works
//!    on REST and WebSocket, a new token is signed with B, the JWKS lists both;
//! 3. A is removed: the A-token is refused everywhere, the B-token still works.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ripple_tests::realtime::{RealtimeStack, User};
use serde_json::Value;
use shared::auth::SigningKey;

/// One deploy: api-auth signs with `signing`, the JWKS also holds `previous`.
async fn deploy(state_dir: &Path, signing: &SigningKey, previous: &[&SigningKey]) -> RealtimeStack {
    let signing = signing.clone();
    let previous: Vec<_> = previous.iter().map(|key| key.public_key()).collect();
    let state_dir = state_dir.to_owned();
    RealtimeStack::start_with(move |options| {
        // The database survives the redeploys, as a table does.
        options.in_memory = false;
        options.state_dir = state_dir;
        options.signing_key = Some(signing);
        options.previous_public_keys = previous;
    })
    .await
}

/// The `kid` header of a token.
fn kid(token: &str) -> String {
    let header = token.split('.').next().expect("a JWT");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
        .expect("a JSON header");
    header["kid"].as_str().expect("a kid").to_owned()
}

/// The kids `GET /.well-known/jwks.json` serves (no authentication).
async fn served_kids(stack: &RealtimeStack) -> Vec<String> {
    let response = stack
        .request(None, "GET", "/.well-known/jwks.json", None)
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|key| {
            assert!(key.get("d").is_none(), "a private part is served: {key}");
            key["kid"].as_str().expect("kid").to_owned()
        })
        .collect()
}

/// `GET /users/me` with `user`'s token: its status.
async fn me(stack: &RealtimeStack, user: &User) -> u16 {
    stack
        .request(Some(&user.token), "GET", "/users/me", None)
        .await
        .status
}

/// Whether the WebSocket handshake with `user`'s token is refused (ws-connect answers 401).
async fn websocket_refused(stack: &RealtimeStack, user: &User) -> bool {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = stack
        .stack
        .urls
        .websocket_url()
        .as_str()
        .into_client_request()
        .expect("a WebSocket URL");
    let protocols = format!("{}, {}", ripple_tests::realtime::SUBPROTOCOL, user.token);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        protocols.parse().expect("a header value"),
    );
    match tokio::time::timeout(
        ripple_tests::realtime::WAIT,
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("a handshake answer in time")
    {
        Ok(_) => false,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
            true
        }
        Err(other) => panic!("unexpected handshake failure: {other}"),
    }
}

#[tokio::test]
async fn a_rotated_key_is_honoured_while_published_and_refused_once_removed() {
    let state = tempfile::tempdir().expect("a state directory");
    let old = SigningKey::generate("2026-11-a").expect("key A");
    let new = SigningKey::generate("2026-12-a").expect("key B");

    // 1. Key A signs and is the only published key.
    let stack = deploy(state.path(), &old, &[]).await;
    assert_eq!(served_kids(&stack).await, ["2026-11-a"]);
    let alice = stack.register("alice").await;
    assert_eq!(kid(&alice.token), "2026-11-a");
    assert_eq!(me(&stack, &alice).await, 200);
    stack.stop().await;

    // 2. B published next to A, api-auth switched to B (its secret now holds B).
    let stack = deploy(state.path(), &new, &[&old]).await;
    assert_eq!(served_kids(&stack).await, ["2026-12-a", "2026-11-a"]);
    assert_eq!(
        me(&stack, &alice).await,
        200,
        "an A-token during the overlap"
    );
    let socket = stack.connect(&alice).await; // ws-connect verifies it too
    socket.close().await;
    let bob = stack.register("bob").await;
    assert_eq!(kid(&bob.token), "2026-12-a", "new tokens are signed with B");
    assert_eq!(me(&stack, &bob).await, 200);
    stack.stop().await;

    // 3. A removed: its tokens are refused, B's still work.
    let stack = deploy(state.path(), &new, &[]).await;
    assert_eq!(served_kids(&stack).await, ["2026-12-a"]);
    assert_eq!(
        me(&stack, &alice).await,
        401,
        "an A-token after A was removed"
    );
    assert!(
        websocket_refused(&stack, &alice).await,
        "ws-connect refuses it too"
    );
    assert!(
        !websocket_refused(&stack, &bob).await,
        "and accepts a B-token"
    );
    let follow = stack
        .request(
            Some(&alice.token),
            "PUT",
            &format!("/users/{}/follow", bob.id),
            None,
        )
        .await;
    assert_eq!(follow.status, 401, "{}", follow.body);
    assert_eq!(me(&stack, &bob).await, 200);
    stack.stop().await;
}

/// The claims of a genuine token (its payload), for forgeries that differ in nothing else.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// PKCS#8 DER of an Ed25519 key (RFC 8410), as jsonwebtoken signs with.
fn ed_encoding_key(key: &SigningKey) -> jsonwebtoken::EncodingKey {
    let jwk: Value = serde_json::from_str(&key.to_private_jwk_json()).expect("a JWK");
    let seed = URL_SAFE_NO_PAD
        .decode(jwk["d"].as_str().expect("d"))
        .expect("base64url");
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    jsonwebtoken::EncodingKey::from_ed_der(&der)
}

#[tokio::test]
async fn forged_tokens_are_refused_on_rest_and_websocket() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let state = tempfile::tempdir().expect("a state dir");
    let key = SigningKey::generate("key-live").expect("a key");
    let stack = deploy(state.path(), &key, &[]).await;
    let alice = stack.register("alice").await;
    let bob = stack.register("bob").await;
    assert_eq!(me(&stack, &alice).await, 200);
    let claims = claims_of(&alice.token);
    let with_kid = |algorithm| {
        let mut header = Header::new(algorithm);
        header.kid = Some("key-live".to_owned());
        header
    };
    let sign = |header: &Header, key: &EncodingKey, claims: &Value| {
        jsonwebtoken::encode(header, claims, key).expect("a forged token")
    };
    // What an attacker has: the served JWKS. Its `x` as an HMAC secret (alg confusion).
    let jwks = stack
        .request(None, "GET", "/.well-known/jwks.json", None)
        .await
        .body;
    let x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
    let x_bytes = URL_SAFE_NO_PAD.decode(&x).expect("base64url");
    let impostor = SigningKey::generate("key-live").expect("another key");
    let mut as_bob = claims.clone();
    as_bob["sub"] = bob.id.clone().into();
    let genuine_signature = alice.token.rsplit('.').next().expect("a signature");
    let tampered = {
        let mut parts: Vec<String> = alice.token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(as_bob.to_string());
        parts[2] = genuine_signature.to_owned();
        parts.join(".")
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"key-live"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let forgeries = [
        ("alg none", none),
        (
            "HS256 keyed with the public key's bytes",
            sign(
                &with_kid(Algorithm::HS256),
                &EncodingKey::from_secret(&x_bytes),
                &claims,
            ),
        ),
        (
            "HS256 keyed with the JWK's x text",
            sign(
                &with_kid(Algorithm::HS256),
                &EncodingKey::from_secret(x.as_bytes()),
                &claims,
            ),
        ),
        (
            "EdDSA by another key under the live kid",
            sign(
                &with_kid(Algorithm::EdDSA),
                &ed_encoding_key(&impostor),
                &claims,
            ),
        ),
        ("alice's signature on bob's claims", tampered),
    ];
    for (forgery, token) in forgeries {
        let forged = User {
            token,
            ..alice.clone()
        };
        assert_eq!(me(&stack, &forged).await, 401, "{forgery} on REST");
        assert!(
            websocket_refused(&stack, &forged).await,
            "{forgery} on the socket"
        );
    }
    stack.stop().await;
}
