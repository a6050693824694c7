//! Abuse limits through the local gateway: brute-force lockouts at login (per username,
//! per address), the registration limit per address, the per-user REST budgets (429 with
//! `Retry-After`) and the WebSocket budgets (`error` events with `rate_limited`).
//!
//! Every test starts its own stack with small limits. The local gateway gives every request
//! the peer's address as `requestContext.http.sourceIp`: 127.0.0.1 here, so every request
//! of a test comes from one address. The per-user budgets are one-minute windows on the
//! wall clock, so a test that spends one first waits out the last seconds of a minute.

use std::time::Duration;

use chrono::{Timelike, Utc};
use ripple_tests::realtime::{RealtimeStack, Response, User, PASSWORD};
use serde_json::{json, Value};

/// The stack with these function variables (over the harness's own).
async fn stack_with(variables: &[(&str, &str)]) -> RealtimeStack {
    let variables: Vec<(String, String)> = variables
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    RealtimeStack::start_with(|options| options.environment.extend(variables)).await
}

async fn login(stack: &RealtimeStack, username: &str, password: &str) -> Response {
    stack
        .request(
            None,
            "POST",
            "/auth/login",
            Some(json!({"username": username, "password": password})),
        )
        .await
}

/// Asserts a 429 `rate_limited` with a `Retry-After` of whole seconds; returns the body's
/// error code and message with its digits left out (the message says how many seconds are
/// left, which differs between two lockouts a second apart).
fn assert_too_many(response: &Response, what: &str) -> (Value, String) {
    assert_eq!(response.status, 429, "{what}: {}", response.body);
    assert_eq!(
        response.body["error"]["code"], "rate_limited",
        "{what}: {}",
        response.body
    );
    let retry_after: u64 = response
        .headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After in seconds: {:?}", response.headers));
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
    let message = response.body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message: {}", response.body));
    (
        response.body["error"]["code"].clone(),
        message.chars().filter(|c| !c.is_ascii_digit()).collect(),
    )
}

/// Returns when at least `needed` seconds of the current wall-clock minute are left, so a
/// budget's window does not roll over in the middle of a test.
async fn fresh_window(needed: u32) {
    let second = Utc::now().second();
    if second + needed >= 60 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
}

#[tokio::test]
async fn wrong_passwords_lock_a_username_alike_whether_or_not_it_exists() {
    let stack = stack_with(&[
        ("AUTH_LOGIN_FAILURES_PER_USER", "3"),
        ("AUTH_LOGIN_FAILURES_PER_IP", "100"),
    ])
    .await;
    stack.register("alice").await;
    let mut answers = Vec::new();
    for username in ["alice", "ghost"] {
        for attempt in 0..3 {
            let wrong = login(&stack, username, "not the password").await;
            assert_eq!(wrong.status, 401, "{username} {attempt}: {}", wrong.body);
        }
        // Locked: the right password is refused too, before it is even checked.
        let locked = login(&stack, username, PASSWORD).await;
        answers.push(assert_too_many(&locked, username));
    }
    assert_eq!(
        answers[0], answers[1],
        "a locked existing and a locked unknown username get the same answer"
    );
    // Another username from the same address is not locked.
    stack.register("bob").await;
    assert_eq!(login(&stack, "bob", PASSWORD).await.status, 200);
    stack.stop().await;
}

#[tokio::test]
async fn failures_over_many_usernames_lock_the_address() {
    let stack = stack_with(&[
        ("AUTH_LOGIN_FAILURES_PER_USER", "100"),
        ("AUTH_LOGIN_FAILURES_PER_IP", "4"),
    ])
    .await;
    stack.register("alice").await;
    for attempt in 0..4 {
        let wrong = login(&stack, &format!("guess{attempt}"), "not the password").await;
        assert_eq!(wrong.status, 401, "attempt {attempt}: {}", wrong.body);
    }
    let locked = login(&stack, "alice", PASSWORD).await;
    assert_too_many(&locked, "the address");
    stack.stop().await;
}

#[tokio::test]
async fn registrations_from_one_address_are_limited() {
    let stack = stack_with(&[("AUTH_REGISTER_ATTEMPTS_PER_IP", "3")]).await;
    for n in 0..3 {
        stack.register(&format!("farm{n}")).await;
    }
    let refused = stack
        .request(
            None,
            "POST",
            "/auth/register",
            Some(json!({"username": "farm3", "password": PASSWORD})),
        )
        .await;
    assert_too_many(&refused, "the fourth registration");
    // Refused before anything was created: the name is still free to log in as nobody.
    assert_eq!(login(&stack, "farm3", PASSWORD).await.status, 401);
    stack.stop().await;
}

/// Two calls on one budget of 1.
struct BudgetCase<'a> {
    user: &'a User,
    path: &'a str,
    /// Method and expected status of the call within the budget.
    first: (&'static str, u16),
    /// Method of the call over it.
    second: &'static str,
    body: Option<Value>,
}

impl<'a> BudgetCase<'a> {
    fn new(
        user: &'a User,
        path: &'a str,
        first: (&'static str, u16),
        second: &'static str,
        body: Option<Value>,
    ) -> Self {
        Self {
            user,
            path,
            first,
            second,
            body,
        }
    }
}

#[tokio::test]
async fn each_rest_budget_answers_429_with_retry_after() {
    let stack = stack_with(&[
        ("RATE_LIMIT_LIKES_PER_MINUTE", "1"),
        ("RATE_LIMIT_BLOCKS_PER_MINUTE", "1"),
        ("RATE_LIMIT_MARK_READS_PER_MINUTE", "1"),
        ("RATE_LIMIT_PROFILE_EDITS_PER_MINUTE", "1"),
    ])
    .await;
    let alice = stack.register("alice").await;
    let bob = stack.register("bob").await;
    let carol = stack.register("carol").await;
    let post = stack.post(&alice, "budgets").await;
    let post_id = post["id"].as_str().expect("post id").to_owned();
    stack.follow(&bob, &alice).await;
    fresh_window(20).await;

    // Each budget of 1: the first call is within it, the second (the route's other method
    // where a pair shares one budget) is over it.
    let like = format!("/posts/{post_id}/like");
    let block = format!("/users/{}/block", carol.id);
    let profile = Some(json!({"bio": "first"}));
    let cases = [
        BudgetCase::new(&bob, &like, ("PUT", 200), "DELETE", None),
        BudgetCase::new(&alice, &block, ("PUT", 204), "DELETE", None),
        BudgetCase::new(
            &alice,
            "/notifications/read-all",
            ("POST", 200),
            "POST",
            None,
        ),
        BudgetCase::new(&alice, "/users/me", ("PATCH", 200), "PATCH", profile),
    ];
    for case in cases {
        let (method, ok) = case.first;
        stack
            .call(case.user, method, case.path, case.body.clone(), ok)
            .await;
        let over = stack
            .request(Some(&case.user.token), case.second, case.path, case.body)
            .await;
        assert_too_many(&over, &format!("{} {}", case.second, case.path));
    }
    stack.stop().await;
}

#[tokio::test]
async fn subscribe_and_resume_budgets_answer_a_rate_limited_error_event() {
    let stack = stack_with(&[
        ("RATE_LIMIT_SUBSCRIBES_PER_MINUTE", "1"),
        ("RATE_LIMIT_RESUMES_PER_MINUTE", "1"),
    ])
    .await;
    let alice = stack.register("alice").await;
    let bob = stack.register("bob").await;
    let post = stack.post(&alice, "a room").await;
    let channel = format!("post:{}", post["id"].as_str().expect("post id"));
    let socket = stack.connect(&bob).await;
    fresh_window(20).await;

    socket.subscribe(&channel).await;
    let refused = socket
        .request(json!({"action": "subscribe", "channel": channel}))
        .await;
    assert_rate_limited_event(&refused, "the second subscribe");

    let since = shared::replay::time_cursor(Utc::now() - chrono::Duration::seconds(30));
    let resumed = socket
        .request(json!({"action": "resume", "since": since}))
        .await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
    let refused = socket
        .request(json!({"action": "resume", "since": since}))
        .await;
    assert_rate_limited_event(&refused, "the second resume");
    stack.stop().await;
}

/// An `error` event `rate_limited` with a `retry_after` (the request id is what
/// `WsClient::request` matched the reply by).
fn assert_rate_limited_event(reply: &Value, what: &str) {
    assert_eq!(reply["type"], "error", "{what}: {reply}");
    assert_eq!(reply["data"]["code"], "rate_limited", "{what}: {reply}");
    assert!(reply["data"]["request_id"].is_string(), "{what}: {reply}");
    let retry_after = reply["data"]["retry_after"].as_u64();
    assert!(
        retry_after.is_some_and(|seconds| (1..=60).contains(&seconds)),
        "{what}: {reply}"
    );
}
