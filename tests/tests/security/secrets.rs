//! Secrets are never logged: a whole scenario through the local gateway — register, a
//! failed and a good login, refresh, two sockets, a direct message delivered — with every
//! Ripple crate logging at TRACE into a buffer, in the production JSON format with span
//! fields; then no password, access token, refresh token or JWT signing key may appear in it.
//!
//! The local stack runs the functions in process, so their tracing reaches the global
//! subscriber this test installs (global: the stack runs functions on threads of its own).
//! Other tests of this binary log into it too, which only widens the check. The log is
//! checked to hold this scenario (its user ids, the handlers' own lines), so the test cannot
//! pass on an empty or unrelated capture.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ripple_tests::realtime::{RealtimeStack, User, PASSWORD, WAIT};
use serde_json::{json, Value};
use tracing_subscriber::util::SubscriberInitExt;

/// A wrong password the scenario tries once.
const WRONG_PASSWORD: &str = "hunter2-but-longer-and-wrong";

/// Every Ripple crate at TRACE; dependencies at WARN.
const FILTER: &str = "warn,shared=trace,api_auth=trace,api_users=trace,api_posts=trace,\
    api_messages=trace,api_notifications=trace,ws_connect=trace,ws_disconnect=trace,\
    ws_message=trace,stream_router=trace,push_worker=trace,ripple_local=trace";

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// A session as `register`, `login` and `refresh` return it.
struct Session {
    user: User,
    refresh_token: String,
}

fn session(username: &str, body: &Value) -> Session {
    let text = |pointer: &str| {
        body.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{username}: no {pointer} in {body}"))
            .to_owned()
    };
    Session {
        user: User {
            id: text("/user/id"),
            username: username.to_owned(),
            token: text("/access_token"),
        },
        refresh_token: text("/refresh_token"),
    }
}

async fn auth(stack: &RealtimeStack, path: &str, body: Value, expected: u16) -> Value {
    let response = stack.request(None, "POST", path, Some(body)).await;
    assert_eq!(response.status, expected, "{path}: {}", response.body);
    response.body
}

/// Runs the scenario; returns every secret it handled and the ids the log should name.
async fn scenario(stack: &RealtimeStack) -> (Vec<String>, Vec<String>) {
    let credentials =
        |username: &str, password: &str| json!({"username": username, "password": password});
    let alice = session(
        "alice",
        &auth(stack, "/auth/register", credentials("alice", PASSWORD), 201).await,
    );
    let bob = session(
        "bob",
        &auth(stack, "/auth/register", credentials("bob", PASSWORD), 201).await,
    );
    auth(
        stack,
        "/auth/login",
        credentials("alice", WRONG_PASSWORD),
        401,
    )
    .await;
    let login = session(
        "alice",
        &auth(stack, "/auth/login", credentials("alice", PASSWORD), 200).await,
    );
    let refreshed = session(
        "alice",
        &auth(
            stack,
            "/auth/refresh",
            json!({"refresh_token": login.refresh_token}),
            200,
        )
        .await,
    );
    // The rotated-away token once more: a reuse, which revokes the family (and is logged).
    auth(
        stack,
        "/auth/refresh",
        json!({"refresh_token": login.refresh_token}),
        401,
    )
    .await;

    let alice_socket = stack.connect(&refreshed.user).await;
    let bob_socket = stack.connect(&bob.user).await;
    stack.follow(&bob.user, &refreshed.user).await;
    stack.follow(&refreshed.user, &bob.user).await;
    let message = stack.message(&refreshed.user, &bob.user, "psst").await;
    let delivered = bob_socket.next_event_of_type("new_message", WAIT).await;
    assert_eq!(delivered["data"]["id"], message["id"], "{delivered}");
    let pong = alice_socket.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    alice_socket.close().await;
    bob_socket.close().await;

    let mut secrets = vec![PASSWORD.to_owned(), WRONG_PASSWORD.to_owned()];
    for session in [&alice, &bob, &login, &refreshed] {
        secrets.push(session.user.token.clone());
        // The signature alone: a log line that cut the token short would still leak it.
        let signature = session.user.token.rsplit('.').next().unwrap_or_default();
        secrets.push(signature.to_owned());
        secrets.push(session.refresh_token.clone());
    }
    (secrets, vec![alice.user.id, bob.user.id])
}

#[tokio::test]
async fn no_password_token_or_signing_key_reaches_the_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_env_filter(tracing_subscriber::EnvFilter::new(FILTER))
        .with_writer({
            let capture = capture.clone();
            move || capture.clone()
        })
        .finish();
    subscriber
        .try_init()
        .expect("no other global subscriber (run without RUST_LOG)");
    // The stack's signing key: its private half (`d`, and the whole private JWK api-auth reads
    // from Secrets Manager) must never be logged either.
    let signing_key = shared::auth::SigningKey::generate("secrets-suite").expect("a key");
    let private_jwk = signing_key.to_private_jwk_json();
    let d = serde_json::from_str::<Value>(&private_jwk).expect("a JWK")["d"]
        .as_str()
        .expect("the private key `d`")
        .to_owned();
    let stack = RealtimeStack::start_with(|options| {
        options.signing_key = Some(signing_key);
    })
    .await;
    let (mut secrets, user_ids) = scenario(&stack).await;
    secrets.extend([d, private_jwk]);
    stack.stop().await;

    let log = capture.text();
    // Not vacuous: the capture holds this scenario's handlers and users.
    for expected in [
        "user registered",
        "login succeeded",
        "login rejected",
        "message sent",
        "\"connected\"",
    ] {
        assert!(log.contains(expected), "the log lacks {expected:?}");
    }
    for id in &user_ids {
        assert!(log.contains(id.as_str()), "the log never names user {id}");
    }
    for secret in &secrets {
        assert!(
            secret.len() >= 8,
            "a secret too short to search for: {secret:?}"
        );
        if let Some(at) = log.find(secret.as_str()) {
            let line_start = log[..at].rfind('\n').map_or(0, |n| n + 1);
            let line_end = log[at..].find('\n').map_or(log.len(), |n| at + n);
            panic!(
                "a secret is in the log: {}",
                &log[line_start..line_end].replace(secret.as_str(), "<SECRET>")
            );
        }
    }
    eprintln!(
        "secrets: {} bytes, {} lines of log checked for {} secrets",
        log.len(),
        log.lines().count(),
        secrets.len()
    );
}
