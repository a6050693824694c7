//! Route tests of `api-auth`: every route through a real API Gateway payload-2.0 event,
//! `lambda_http`'s own deserialisation and the real store on embedded DynamoDB.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use shared::http::RestState;
use shared::http::MAX_BODY_BYTES;
use shared::testkit::api::{assert_error_for, TestApi, TestRequest, TestResponse};

const PASSWORD: &str = "correct horse battery staple";

/// `api-auth` over a fresh database.
async fn start() -> TestApi {
    start_with(&[]).await
}

/// [`start`] with configuration overrides.
async fn start_with(config: &[(&str, &str)]) -> TestApi {
    TestApi::start_with(config, |config, clients| {
        Ok(api_auth::lambda_function(Arc::new(api_auth::State::new(
            config,
            clients,
            shared::testkit::test_signing_key(),
        )?)))
    })
    .await
}

/// Items other than lockout counters: what a registration writes for an account.
async fn account_items(api: &TestApi) -> usize {
    let items = api.db.scan_all().await;
    items
        .iter()
        .filter(|item| {
            !matches!(item.get("pk"), Some(AttributeValue::S(pk)) if pk.starts_with("LOCK#"))
        })
        .count()
}

async fn post(api: &TestApi, path: &str, body: Value) -> TestResponse {
    api.send(TestRequest::new("POST", path).json(body)).await
}

/// Registers `username` and returns the session body.
async fn register(api: &TestApi, username: &str) -> Value {
    let response = post(
        api,
        "/auth/register",
        json!({"username": username, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    response.body
}

async fn login(api: &TestApi, username: &str) -> Value {
    let response = post(
        api,
        "/auth/login",
        json!({"username": username, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    response.body
}

async fn refresh(api: &TestApi, refresh_token: &Value) -> TestResponse {
    post(
        api,
        "/auth/refresh",
        json!({ "refresh_token": refresh_token }),
    )
    .await
}

async fn logout(api: &TestApi, path: &str, session: &Value, refresh_token: &Value) -> TestResponse {
    let access = session["access_token"].as_str().unwrap();
    api.send(
        TestRequest::new("POST", path)
            .token(access)
            .json(json!({ "refresh_token": refresh_token })),
    )
    .await
}

fn assert_session(body: &Value, username: &str) {
    assert_eq!(body["user"]["username"], username, "{body}");
    assert!(body["user"]["id"]
        .as_str()
        .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok()));
    assert_eq!(
        body["access_token"].as_str().unwrap().split('.').count(),
        3,
        "a JWT"
    );
    assert_eq!(body["refresh_token"].as_str().unwrap().len(), 43);
    assert_eq!(body["expires_in"], 900);
}

/// Bodies every JSON route must answer with 400, built from a valid `good` body.
fn malformed_bodies(good: &Value) -> Vec<(String, String)> {
    let mut unknown = good.clone();
    unknown["is_admin"] = json!(true);
    let mut wrong_types = good.clone();
    for (_, value) in wrong_types.as_object_mut().unwrap().iter_mut() {
        *value = json!(12345);
    }
    let mut missing = good.clone();
    let first_field = missing.as_object().unwrap().keys().next().unwrap().clone();
    missing.as_object_mut().unwrap().remove(&first_field);
    vec![
        ("truncated JSON".into(), r#"{"username": "ali"#.into()),
        ("not JSON".into(), "username=alice&password=x".into()),
        ("empty body".into(), String::new()),
        ("array".into(), format!("[{good}]")),
        ("null".into(), "null".into()),
        ("wrong types".into(), wrong_types.to_string()),
        ("unknown field".into(), unknown.to_string()),
        (format!("missing {first_field}"), missing.to_string()),
    ]
}

async fn assert_rejects_malformed_bodies(
    api: &TestApi,
    request: impl Fn() -> TestRequest,
    good: &Value,
) {
    for (what, body) in malformed_bodies(good) {
        let response = api.send(request().raw_body(body)).await;
        assert_error_for(&response, 400, "validation_failed", &what);
    }
    let oversize = format!(r#"{{"username":"{}"}}"#, "a".repeat(MAX_BODY_BYTES));
    let response = api.send(request().raw_body(oversize)).await;
    assert_error_for(&response, 413, "payload_too_large", "oversize body");
}

// ---- POST /auth/register -------------------------------------------------------------------

#[tokio::test]
async fn register_creates_the_user_and_returns_a_working_session() {
    let api = start().await;
    let response = post(
        &api,
        "/auth/register",
        json!({"username": "Alice_01", "password": PASSWORD, "display_name": "Alice A."}),
    )
    .await;
    assert_eq!(response.status, 201, "{}", response.body);
    assert!(response.headers.contains_key("x-request-id"));
    let session = response.body;
    assert_session(&session, "Alice_01");
    assert_eq!(session["user"]["display_name"], "Alice A.");

    // Without a display name, the username is used.
    let bob = register(&api, "bob").await;
    assert_eq!(bob["user"]["display_name"], "bob");

    // Both tokens work: the refresh token rotates, the access token logs out.
    let rotated = refresh(&api, &session["refresh_token"]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let logout = logout(
        &api,
        "/auth/logout",
        &session,
        &rotated.body["refresh_token"],
    )
    .await;
    assert_eq!(logout.status, 204, "{}", logout.body);
}

#[tokio::test]
async fn register_rejects_invalid_input_with_400_and_writes_nothing() {
    let api = start().await;
    let before = api.db.item_count().await;
    let good = json!({"username": "alice", "password": PASSWORD});
    assert_rejects_malformed_bodies(&api, || TestRequest::new("POST", "/auth/register"), &good)
        .await;

    let invalid = [
        (
            "short password",
            json!({"username": "alice", "password": "1234567"}),
        ),
        (
            "long password",
            json!({"username": "alice", "password": "x".repeat(129)}),
        ),
        (
            "username too short",
            json!({"username": "al", "password": PASSWORD}),
        ),
        (
            "username too long",
            json!({"username": "a".repeat(31), "password": PASSWORD}),
        ),
        (
            "username with a space",
            json!({"username": "al ice", "password": PASSWORD}),
        ),
        (
            "username with a dash",
            json!({"username": "al-ice", "password": PASSWORD}),
        ),
        (
            "non-ASCII username",
            json!({"username": "émile", "password": PASSWORD}),
        ),
        (
            "empty display name",
            json!({"username": "alice", "password": PASSWORD, "display_name": ""}),
        ),
        (
            "display name with a control character",
            json!({"username": "alice", "password": PASSWORD, "display_name": "a\u{7}b"}),
        ),
        (
            "display name too long",
            json!({"username": "alice", "password": PASSWORD, "display_name": "x".repeat(51)}),
        ),
        (
            "display name of the wrong type",
            json!({"username": "alice", "password": PASSWORD, "display_name": 7}),
        ),
    ];
    for (what, body) in invalid {
        let response = post(&api, "/auth/register", body).await;
        assert_error_for(&response, 400, "validation_failed", what);
    }
    assert_eq!(
        api.db.item_count().await,
        before,
        "no rejected registration wrote anything"
    );
}

#[tokio::test]
async fn register_with_a_username_taken_in_another_case_is_a_conflict() {
    let api = start().await;
    register(&api, "alice").await;
    let before = account_items(&api).await;
    for spelling in ["ALICE", "Alice", "alice"] {
        let response = post(
            &api,
            "/auth/register",
            json!({"username": spelling, "password": PASSWORD}),
        )
        .await;
        assert_error_for(&response, 409, "conflict", spelling);
    }
    // Only the registration lockout counters changed.
    assert_eq!(account_items(&api).await, before);
}

#[tokio::test]
async fn passwords_are_stored_only_as_argon2id_hashes() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let user_id = session["user"]["id"].as_str().unwrap();

    let items = api.db.scan_all().await;
    let credentials = items
        .iter()
        .find(|item| {
            item.get("pk") == Some(&AttributeValue::S(format!("USER#{user_id}")))
                && item.get("sk") == Some(&AttributeValue::S("CREDENTIALS".into()))
        })
        .expect("a credentials item");
    let hash = credentials["password_hash"].as_s().unwrap();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    let refresh_token = session["refresh_token"].as_str().unwrap();
    for item in &items {
        let rendered = format!("{item:?}");
        assert!(!rendered.contains(PASSWORD), "an item holds the password");
        assert!(
            !rendered.contains(refresh_token),
            "an item holds the refresh token"
        );
    }
    // The profile never carries the hash.
    assert!(session["user"].get("password_hash").is_none());
    assert!(!session.to_string().contains("argon2"));
}

// ---- POST /auth/login ----------------------------------------------------------------------

#[tokio::test]
async fn login_returns_a_new_session_in_any_letter_case() {
    let api = start().await;
    let registered = register(&api, "Alice").await;
    let response = post(
        &api,
        "/auth/login",
        json!({"username": "aLiCe", "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_session(&response.body, "Alice");
    assert_eq!(response.body["user"]["id"], registered["user"]["id"]);
    assert_ne!(
        response.body["refresh_token"], registered["refresh_token"],
        "a new session"
    );
    // The access token authenticates.
    let logout = logout(
        &api,
        "/auth/logout",
        &response.body,
        &response.body["refresh_token"],
    )
    .await;
    assert_eq!(logout.status, 204, "{}", logout.body);
}

#[tokio::test]
async fn login_failures_are_indistinguishable_for_unknown_users_and_wrong_passwords() {
    let api = start().await;
    register(&api, "alice").await;
    let wrong_password = post(
        &api,
        "/auth/login",
        json!({"username": "alice", "password": "not the password"}),
    )
    .await;
    let unknown_user = post(
        &api,
        "/auth/login",
        json!({"username": "mallory", "password": PASSWORD}),
    )
    .await;
    assert_error_for(&wrong_password, 401, "unauthorized", "wrong password");
    assert_error_for(&unknown_user, 401, "unauthorized", "unknown user");
    assert_eq!(
        wrong_password.body["error"]["message"],
        unknown_user.body["error"]["message"]
    );
    assert_eq!(
        wrong_password.body["error"]["message"],
        api_auth::BAD_CREDENTIALS
    );
}

#[tokio::test]
async fn login_rejects_invalid_input_with_400() {
    let api = start().await;
    register(&api, "alice").await;
    let good = json!({"username": "alice", "password": PASSWORD});
    assert_rejects_malformed_bodies(&api, || TestRequest::new("POST", "/auth/login"), &good).await;
    for (what, body) in [
        (
            "short password",
            json!({"username": "alice", "password": "short"}),
        ),
        (
            "oversized password",
            json!({"username": "alice", "password": "x".repeat(129)}),
        ),
        (
            "bad username",
            json!({"username": "a!", "password": PASSWORD}),
        ),
        (
            "display_name is not a login field",
            json!({"username": "alice", "password": PASSWORD, "display_name": "A"}),
        ),
    ] {
        let response = post(&api, "/auth/login", body).await;
        assert_error_for(&response, 400, "validation_failed", what);
    }
}

// ---- POST /auth/refresh --------------------------------------------------------------------

#[tokio::test]
async fn refresh_rotates_the_pair_and_the_old_token_then_fails() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let rotated = refresh(&api, &session["refresh_token"]).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_session(&rotated.body, "alice");
    assert_ne!(rotated.body["refresh_token"], session["refresh_token"]);

    let replay = refresh(&api, &session["refresh_token"]).await;
    assert_error_for(&replay, 401, "unauthorized", "rotated token replayed");
}

#[tokio::test]
async fn reusing_a_rotated_refresh_token_revokes_the_newer_one() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let other_device = login(&api, "alice").await;
    let rotated = refresh(&api, &session["refresh_token"]).await;
    assert_eq!(rotated.status, 200);

    // A thief replays the stolen (rotated) token: the whole session dies.
    assert_error_for(
        &refresh(&api, &session["refresh_token"]).await,
        401,
        "unauthorized",
        "replay",
    );
    assert_error_for(
        &refresh(&api, &rotated.body["refresh_token"]).await,
        401,
        "unauthorized",
        "newer token after reuse",
    );
    // Another session of the same user is unaffected.
    assert_eq!(
        refresh(&api, &other_device["refresh_token"]).await.status,
        200
    );
}

#[tokio::test]
async fn refresh_rejects_invalid_input() {
    let api = start().await;
    let good = json!({"refresh_token": "x".repeat(43)});
    assert_rejects_malformed_bodies(&api, || TestRequest::new("POST", "/auth/refresh"), &good)
        .await;
    assert_error_for(
        &refresh(&api, &json!("")).await,
        400,
        "validation_failed",
        "empty token",
    );
    assert_error_for(
        &refresh(
            &api,
            &json!("x".repeat(api_auth::MAX_REFRESH_TOKEN_FIELD + 1)),
        )
        .await,
        400,
        "validation_failed",
        "absurdly long token",
    );
    for (what, token) in [
        (
            "well-formed unknown token",
            json!(shared::auth::refresh::generate()),
        ),
        ("right length, not base64url", json!("!".repeat(43))),
        (
            "an access token",
            json!(register(&api, "alice").await["access_token"]),
        ),
    ] {
        assert_error_for(&refresh(&api, &token).await, 401, "unauthorized", what);
    }
}

// ---- POST /auth/logout ---------------------------------------------------------------------

#[tokio::test]
async fn logout_ends_the_session_and_its_refresh_token_then_fails() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let other_device = login(&api, "alice").await;
    let response = logout(&api, "/auth/logout", &session, &session["refresh_token"]).await;
    assert_eq!(response.status, 204, "{}", response.body);
    assert_eq!(response.body, Value::Null);
    assert!(response.headers.contains_key("x-request-id"));

    assert_error_for(
        &refresh(&api, &session["refresh_token"]).await,
        401,
        "unauthorized",
        "after logout",
    );
    assert_eq!(
        refresh(&api, &other_device["refresh_token"]).await.status,
        200,
        "other session lives"
    );
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_caller_only() {
    let api = start().await;
    let first = register(&api, "alice").await;
    let second = login(&api, "alice").await;
    let third = login(&api, "alice").await;
    let bob = register(&api, "bob").await;

    let response = logout(
        &api,
        "/auth/logout?all=true",
        &second,
        &second["refresh_token"],
    )
    .await;
    assert_eq!(response.status, 204, "{}", response.body);
    for (what, session) in [("first", &first), ("second", &second), ("third", &third)] {
        assert_error_for(
            &refresh(&api, &session["refresh_token"]).await,
            401,
            "unauthorized",
            what,
        );
    }
    assert_eq!(
        refresh(&api, &bob["refresh_token"]).await.status,
        200,
        "bob is unaffected"
    );
    // Logging in again starts a fresh, working session.
    let again = login(&api, "alice").await;
    assert_eq!(refresh(&api, &again["refresh_token"]).await.status, 200);
}

#[tokio::test]
async fn logout_requires_a_valid_access_token() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let body = json!({"refresh_token": session["refresh_token"]});
    let access = session["access_token"].as_str().unwrap();
    let mut tampered = access.to_owned();
    tampered.push('x');
    let requests = [
        (
            "no Authorization header",
            TestRequest::new("POST", "/auth/logout").json(body.clone()),
        ),
        (
            "not a JWT",
            TestRequest::new("POST", "/auth/logout")
                .token("garbage")
                .json(body.clone()),
        ),
        (
            "tampered JWT",
            TestRequest::new("POST", "/auth/logout")
                .token(&tampered)
                .json(body.clone()),
        ),
        (
            "the refresh token as bearer",
            TestRequest::new("POST", "/auth/logout")
                .token(session["refresh_token"].as_str().unwrap())
                .json(body.clone()),
        ),
        (
            "Basic scheme",
            TestRequest::new("POST", "/auth/logout")
                .header("Authorization", &format!("Basic {access}"))
                .json(body.clone()),
        ),
    ];
    for (what, request) in requests {
        assert_error_for(&api.send(request).await, 401, "unauthorized", what);
    }
    // Nothing was revoked by the refused attempts.
    assert_eq!(refresh(&api, &session["refresh_token"]).await.status, 200);
}

#[tokio::test]
async fn logout_with_someone_elses_refresh_token_is_not_found() {
    let api = start().await;
    let alice = register(&api, "alice").await;
    let mallory = register(&api, "mallory").await;
    for path in ["/auth/logout", "/auth/logout?all=true"] {
        let response = logout(&api, path, &mallory, &alice["refresh_token"]).await;
        assert_error_for(&response, 404, "not_found", path);
    }
    assert_eq!(
        refresh(&api, &alice["refresh_token"]).await.status,
        200,
        "alice's session survives"
    );
}

#[tokio::test]
async fn logout_rejects_invalid_input() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let access = session["access_token"].as_str().unwrap().to_owned();
    let good = json!({"refresh_token": session["refresh_token"]});
    assert_rejects_malformed_bodies(
        &api,
        || TestRequest::new("POST", "/auth/logout").token(&access),
        &good,
    )
    .await;
    let response = logout(
        &api,
        "/auth/logout?all=maybe",
        &session,
        &session["refresh_token"],
    )
    .await;
    assert_error_for(&response, 400, "validation_failed", "all=maybe");
    let response = logout(&api, "/auth/logout", &session, &json!("")).await;
    assert_error_for(&response, 400, "validation_failed", "empty refresh token");
    // The session survived every rejected request.
    assert_eq!(refresh(&api, &session["refresh_token"]).await.status, 200);
}

// ---- GET /health ---------------------------------------------------------------------------

#[tokio::test]
async fn the_jwks_is_public_cacheable_and_verifies_the_issued_tokens() {
    let api = start().await;
    let response = api
        .send(TestRequest::new("GET", "/.well-known/jwks.json"))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.headers.get("cache-control").map(String::as_str),
        Some("public, max-age=300")
    );
    let keys = response.body["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("OKP"),
            &json!("Ed25519"),
            &json!("EdDSA"),
            &json!("sig")
        )
    );
    assert_eq!(key["kid"], shared::testkit::TEST_KID);
    assert!(key.get("d").is_none(), "no private part: {key}");
    // The served document is what a verifier is configured with, and it verifies the
    // tokens api-auth issues.
    let config = shared::config::Config::from_vars([
        ("TABLE_NAME", "t".to_owned()),
        ("JWT_PUBLIC_KEYS", response.body.to_string()),
    ])
    .unwrap();
    let verifier = shared::auth::TokenService::new(&config.jwt).unwrap();
    let session = register(&api, "alice").await;
    let user = verifier
        .verify(session["access_token"].as_str().unwrap())
        .unwrap();
    assert_eq!(user.to_string(), session["user"]["id"].as_str().unwrap());
}

#[tokio::test]
async fn health_answers_without_authentication() {
    let api = start().await;
    let response = api.send(TestRequest::new("GET", "/health")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, json!({"status": "ok"}));
    assert!(response.headers.contains_key("x-request-id"));
    // A token, even a bad one, does not matter here.
    let response = api
        .send(TestRequest::new("GET", "/health").token("garbage"))
        .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_404() {
    let api = start().await;
    for (method, path) in [
        ("GET", "/auth/login"),
        ("DELETE", "/health"),
        ("POST", "/auth/nope"),
    ] {
        let response = api.send(TestRequest::new(method, path)).await;
        assert_error_for(&response, 404, "not_found", &format!("{method} {path}"));
    }
}

/// Which routes need an access token is part of the contract: only logout does. (That the
/// spec lists exactly the routes the routers serve is checked in `tests/tests/contracts.rs`.)
#[test]
fn the_openapi_spec_marks_only_logout_as_authenticated() {
    let spec: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../../docs/openapi.yaml")).unwrap();
    for (method, path) in api_auth::State::router().routes() {
        let operation = &spec["paths"][path.as_str()][method.to_ascii_lowercase().as_str()];
        assert!(operation.is_mapping(), "{method} {path} is documented");
        let public = operation["security"]
            .as_sequence()
            .is_some_and(Vec::is_empty);
        assert_eq!(public, path != "/auth/logout", "{method} {path}: security");
    }
}

/// The `cargo lambda invoke --data-file` fixtures are real events this function accepts.
#[tokio::test]
async fn the_event_fixtures_invoke_the_function() {
    let api = start().await;
    let fixture = |text: &str| -> Value { serde_json::from_str(text).expect("fixture is JSON") };
    let invoke = |event: Value| {
        let function = Arc::clone(&api.function);
        async move {
            function
                .invoke(event, lambda_http::Context::default())
                .await
                .expect("fixture invocation")
        }
    };
    let health = invoke(fixture(include_str!("../fixtures/health.json"))).await;
    assert_eq!(health["statusCode"], 200, "{health}");
    let register = invoke(fixture(include_str!("../fixtures/register.json"))).await;
    assert_eq!(register["statusCode"], 201, "{register}");
    assert_eq!(register["headers"]["x-request-id"], "fixture-register-0001");
    let login = invoke(fixture(include_str!("../fixtures/login.json"))).await;
    assert_eq!(login["statusCode"], 200, "{login}");
    let session: Value = serde_json::from_str(login["body"].as_str().unwrap()).unwrap();
    assert_eq!(session["user"]["username"], "fixture_alice");
}

/// A login attempt from `ip`.
async fn login_from(api: &TestApi, ip: &str, username: &str, password: &str) -> TestResponse {
    api.send(
        TestRequest::new("POST", "/auth/login")
            .source_ip(ip)
            .json(json!({"username": username, "password": password})),
    )
    .await
}

fn assert_locked(response: &TestResponse, what: &str) -> u64 {
    assert_error_for(response, 429, "rate_limited", what);
    response.headers["retry-after"]
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After is seconds"))
}

#[tokio::test]
async fn repeated_wrong_passwords_lock_the_username_alike_whether_or_not_it_exists() {
    let api = start().await;
    register(&api, "alice").await;
    let limit = api.config.auth_limits.login_per_user.max_failures;
    for (username, ip) in [("alice", "198.51.100.1"), ("ghost", "198.51.100.2")] {
        for attempt in 0..limit {
            let response = login_from(&api, ip, username, "not the password").await;
            assert_error_for(
                &response,
                401,
                "unauthorized",
                &format!("{username} {attempt}"),
            );
        }
        // Locked: even the right password, from anywhere, waits; a known and an unknown
        // username get the same answer.
        let locked = login_from(&api, "198.51.100.3", username, PASSWORD).await;
        let wait = assert_locked(&locked, username);
        assert!((1..=60).contains(&wait), "{username}: {wait}");
    }
    // Another user from the same addresses is not affected.
    register(&api, "bob").await;
    let bob = login_from(&api, "198.51.100.1", "bob", PASSWORD).await;
    assert_eq!(bob.status, 200, "{}", bob.body);
}

#[tokio::test]
async fn many_failures_from_one_address_lock_the_address_only() {
    let api = start().await;
    register(&api, "alice").await;
    let limit = api.config.auth_limits.login_per_ip.max_failures;
    // Spread over usernames so no username reaches its own limit.
    for attempt in 0..limit {
        let response = login_from(
            &api,
            "203.0.113.50",
            &format!("guess{attempt}"),
            "not the password",
        )
        .await;
        assert_error_for(
            &response,
            401,
            "unauthorized",
            &format!("attempt {attempt}"),
        );
    }
    let locked = login_from(&api, "203.0.113.50", "alice", PASSWORD).await;
    assert_locked(&locked, "the address");
    let elsewhere = login_from(&api, "203.0.113.51", "alice", PASSWORD).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
}

#[tokio::test]
async fn a_successful_login_forgets_the_failures_before_it() {
    let api = start().await;
    register(&api, "alice").await;
    let limit = api.config.auth_limits.login_per_user.max_failures;
    for round in 0..3 {
        for _ in 0..limit - 1 {
            login_from(&api, "192.0.2.1", "alice", "not the password").await;
        }
        let ok = login_from(&api, "192.0.2.1", "alice", PASSWORD).await;
        assert_eq!(ok.status, 200, "round {round}: {}", ok.body);
    }
}

#[tokio::test]
async fn repeated_bad_refresh_tokens_lock_the_address() {
    let api = start().await;
    let session = register(&api, "alice").await;
    let limit = api.config.auth_limits.refresh_per_ip.max_failures;
    let refresh_from = |ip: &'static str, token: Value| {
        let request = TestRequest::new("POST", "/auth/refresh")
            .source_ip(ip)
            .json(json!({ "refresh_token": token }));
        let api = &api;
        async move { api.send(request).await }
    };
    for attempt in 0..limit {
        let response = refresh_from("203.0.113.77", json!(format!("forged-{attempt:0>40}"))).await;
        assert_error_for(
            &response,
            401,
            "unauthorized",
            &format!("attempt {attempt}"),
        );
    }
    let locked = refresh_from("203.0.113.77", session["refresh_token"].clone()).await;
    assert_locked(&locked, "the address");
    let elsewhere = refresh_from("203.0.113.78", session["refresh_token"].clone()).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
}

/// A registration of `username` from `ip`.
async fn register_from(api: &TestApi, ip: &str, username: &str) -> TestResponse {
    api.send(
        TestRequest::new("POST", "/auth/register")
            .source_ip(ip)
            .json(json!({"username": username, "password": PASSWORD})),
    )
    .await
}

#[tokio::test]
async fn many_registrations_from_one_address_lock_the_address_only() {
    let api = start().await;
    let limit = api.config.auth_limits.register_per_ip.max_failures;
    for n in 0..limit {
        let response = register_from(&api, "198.51.100.20", &format!("farm{n}")).await;
        assert_eq!(response.status, 201, "registration {n}: {}", response.body);
    }
    let users_before = api.db.item_count().await;
    let locked = register_from(&api, "198.51.100.20", "onemore").await;
    let wait = assert_locked(&locked, "the address");
    assert!((1..=60).contains(&wait), "{wait}");
    // Refused before anything is written (no user, no session).
    assert_eq!(api.db.item_count().await, users_before);
    let login = post(
        &api,
        "/auth/login",
        json!({"username": "onemore", "password": PASSWORD}),
    )
    .await;
    assert_error_for(&login, 401, "unauthorized", "the refused registration");
    let elsewhere = register_from(&api, "198.51.100.21", "onemore").await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.body);
}

#[tokio::test]
async fn repeated_registrations_of_a_taken_username_lock_that_username() {
    let api = start_with(&[("AUTH_REGISTER_ATTEMPTS_PER_IP", "1000")]).await;
    register(&api, "alice").await;
    let limit = api.config.auth_limits.register_per_user.max_failures;
    for attempt in 0..limit {
        // A fresh address each time: the username alone is what gets locked.
        let ip = format!("203.0.113.{}", 100 + attempt);
        let taken = register_from(&api, &ip, "ALICE").await;
        assert_error_for(&taken, 409, "conflict", &format!("attempt {attempt}"));
    }
    let locked = register_from(&api, "203.0.113.200", "alice").await;
    assert_locked(&locked, "the taken username");
    let other = register_from(&api, "203.0.113.200", "bob").await;
    assert_eq!(other.status, 201, "{}", other.body);
}
