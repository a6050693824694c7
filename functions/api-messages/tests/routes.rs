//! Route tests of `api-messages`: real API Gateway HTTP API (payload 2.0) events through the
//! function's handler, against a fresh embedded DynamoDB per test.

use std::sync::Arc;

use api_messages::State;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::domain::{new_id, Message, Notification, User, UserId};
use shared::events::Event;
use shared::http::RestState;
use shared::push::testing::RecordingPush;
use shared::push::PushError;
use shared::store::keys;
use shared::testkit::api::{
    assert_error, assert_error_for, delivery_marked, open_connection, recent_notifications,
    writer_push, TestAccount, TestApi, TestRequest, TestResponse,
};

/// `api-messages` over a fresh database.
async fn start() -> TestApi {
    start_with(&[]).await
}

/// `api-messages` over a fresh database, with configuration overrides.
async fn start_with(config: &[(&str, &str)]) -> TestApi {
    TestApi::start_with(config, |config, clients| {
        Ok(api_messages::lambda_function(Arc::new(State::new(
            config, clients,
        )?)))
    })
    .await
}

/// `POST /conversations/{to}/messages` as `from`.
async fn send_message(
    api: &TestApi,
    from: &TestAccount,
    to: &TestAccount,
    body: Value,
) -> TestResponse {
    api.call_json(
        from,
        "POST",
        &format!("/conversations/{}/messages", to.id()),
        body,
    )
    .await
}

/// Sends a message and asserts it was created.
async fn message(api: &TestApi, from: &TestAccount, to: &TestAccount, text: &str) -> Value {
    let response = send_message(api, from, to, json!({ "text": text })).await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    response.body
}

fn texts(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Every route with a path of the right shape.
fn every_route(other: UserId) -> Vec<(&'static str, String)> {
    vec![
        ("GET", "/conversations".to_owned()),
        ("GET", format!("/conversations/{other}/messages")),
        ("POST", format!("/conversations/{other}/messages")),
        ("POST", format!("/conversations/{other}/read")),
        ("GET", "/message-requests".to_owned()),
        ("POST", format!("/message-requests/{other}/accept")),
        ("POST", format!("/message-requests/{other}/reject")),
    ]
}

#[tokio::test]
async fn every_route_needs_a_valid_access_token() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let expired = api
        .tokens
        .issue(alice.id(), Utc::now() - Duration::hours(2))
        .unwrap();
    for (method, path) in every_route(bob.id()) {
        let body = json!({ "text": "hi" });
        let missing = TestRequest::new(method, &path)
            .json(body.clone())
            .send(&api.function)
            .await;
        assert_error(&missing, 401, "unauthorized");
        for bad in ["not-a-jwt", expired.as_str(), &format!("{}x", alice.token)] {
            let invalid = TestRequest::new(method, &path)
                .token(bad)
                .json(body.clone())
                .send(&api.function)
                .await;
            assert_error(&invalid, 401, "unauthorized");
        }
        let wrong_scheme = TestRequest::new(method, &path)
            .header("Authorization", &format!("Basic {}", alice.token))
            .send(&api.function)
            .await;
        assert_error(&wrong_scheme, 401, "unauthorized");
    }
    // Per user: profile, credentials, username guard and search item.
    assert_eq!(
        api.db.item_count().await,
        8,
        "only the two users' items exist"
    );
}

#[tokio::test]
async fn every_user_id_route_rejects_a_bad_uuid_and_the_caller_themselves() {
    let api = start().await;
    let alice = api.account("alice").await;
    for (method, path) in every_route(alice.id())
        .into_iter()
        .filter(|(_, p)| p.contains(&alice.id().to_string()))
    {
        let body = json!({ "text": "hi" });
        let own = TestRequest::new(method, &path)
            .token(&alice.token)
            .json(body.clone())
            .send(&api.function)
            .await;
        assert_error(&own, 400, "validation_failed");
        let bad_uuid = path.replace(&alice.id().to_string(), "not-a-uuid");
        let response = TestRequest::new(method, &bad_uuid)
            .token(&alice.token)
            .json(body)
            .send(&api.function)
            .await;
        assert_error(&response, 400, "validation_failed");
    }
}

#[tokio::test]
async fn post_message_creates_it_and_a_retry_with_the_same_client_id_returns_it_unchanged() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);

    let created = send_message(
        &api,
        &alice,
        &bob,
        json!({ "text": "  hello bob ", "client_message_id": "m-1" }),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["from"], alice.id().to_string());
    assert_eq!(created.body["to"], bob.id().to_string());
    assert_eq!(created.body["text"], "hello bob");
    assert_eq!(created.body["status"], "sent");
    assert!(created.body["id"].is_string() && created.body["created_at"].is_string());
    let items = api.db.item_count().await;

    let retry = send_message(
        &api,
        &alice,
        &bob,
        json!({ "text": "  hello bob ", "client_message_id": "m-1" }),
    )
    .await;
    assert_eq!(retry.status, 200, "a retry is not a new message");
    assert_eq!(retry.body, created.body);
    assert_eq!(api.db.item_count().await, items, "nothing new stored");

    let thread = api
        .call(
            &bob,
            "GET",
            &format!("/conversations/{}/messages", alice.id()),
        )
        .await;
    assert_eq!(texts(&thread.body), vec!["hello bob"]);
}

#[tokio::test]
async fn post_message_rejects_malformed_bodies_without_storing_anything() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    let items = api.db.item_count().await;
    let bad_bodies = [
        json!({}),
        json!({ "text": "" }),
        json!({ "text": "   " }),
        json!({ "text": "x".repeat(4001) }),
        json!({ "text": "bell\u{7}" }),
        json!({ "text": 5 }),
        json!({ "text": "hi", "extra": true }),
        json!({ "text": "hi", "client_message_id": "" }),
        json!({ "text": "hi", "client_message_id": "has spaces" }),
        json!({ "text": "hi", "client_message_id": "x".repeat(65) }),
        json!({ "text": "hi", "client_message_id": 7 }),
        json!([]),
    ];
    for body in bad_bodies {
        let response = send_message(&api, &alice, &bob, body.clone()).await;
        assert_error_for(&response, 400, "validation_failed", &body.to_string());
    }
    for raw in ["{", "", "text=hi"] {
        let response = TestRequest::new("POST", &format!("/conversations/{}/messages", bob.id()))
            .token(&alice.token)
            .raw_body(raw)
            .send(&api.function)
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    let oversize = TestRequest::new("POST", &format!("/conversations/{}/messages", bob.id()))
        .token(&alice.token)
        .raw_body(format!(r#"{{"text":"{}"}}"#, "x".repeat(70 * 1024)))
        .send(&api.function)
        .await;
    assert_error(&oversize, 413, "payload_too_large");
    assert_eq!(api.db.item_count().await, items);
    // 4000 characters is the limit, not beyond it.
    assert_eq!(
        send_message(&api, &alice, &bob, json!({ "text": "é".repeat(4000) }))
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn post_message_to_an_unknown_or_blocked_user_is_refused() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    let ghost = TestAccount {
        user: User {
            id: new_id(),
            ..bob.user.clone()
        },
        token: String::new(),
    };
    assert_error(
        &send_message(&api, &alice, &ghost, json!({ "text": "hi" })).await,
        404,
        "not_found",
    );

    api.store
        .block(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    assert_error(
        &send_message(&api, &alice, &bob, json!({ "text": "hi" })).await,
        403,
        "forbidden",
    );
    assert_error(
        &send_message(&api, &bob, &alice, json!({ "text": "hi" })).await,
        403,
        "forbidden",
    );
    message(&api, &alice, &carol, "still fine").await;
}

#[tokio::test]
async fn post_message_over_the_budget_is_rate_limited() {
    let api = start_with(&[("RATE_LIMIT_MESSAGES_PER_MINUTE", "2")]).await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    message(&api, &alice, &bob, "one").await;
    message(&api, &alice, &bob, "two").await;
    let limited = send_message(&api, &alice, &bob, json!({ "text": "three" })).await;
    assert_error(&limited, 429, "rate_limited");
    let retry_after: u64 = limited.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Bob has his own budget.
    message(&api, &bob, &alice, "back").await;
}

#[tokio::test]
async fn get_conversations_lists_the_callers_own_newest_first() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    message(&api, &alice, &bob, "to bob").await;
    message(&api, &carol, &alice, "from carol").await;

    let list = api.call(&alice, "GET", "/conversations").await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["other_user"]["id"], carol.id().to_string());
    assert_eq!(items[0]["other_user"]["username"], "carol");
    assert_eq!(items[0]["other_user"]["display_name"], "carol display");
    assert_eq!(items[0]["last_message"]["text"], "from carol");
    assert_eq!(items[0]["unread_count"], 1);
    assert_eq!(items[1]["other_user"]["id"], bob.id().to_string());
    assert_eq!(items[1]["unread_count"], 0);
    assert!(list.body["next_cursor"].is_null());

    // Paged one at a time, each conversation once.
    let first = api.call(&alice, "GET", "/conversations?limit=1").await;
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = api
        .call(
            &alice,
            "GET",
            &format!("/conversations?limit=1&cursor={cursor}"),
        )
        .await;
    assert_eq!(
        second.body["items"][0]["other_user"]["id"],
        bob.id().to_string()
    );
    assert!(second.body["next_cursor"].is_null());

    // Bob only sees his own conversation; a stranger sees none.
    let bobs = api.call(&bob, "GET", "/conversations").await;
    assert_eq!(bobs.body["items"].as_array().unwrap().len(), 1);
    let dave = api.account("dave").await;
    let daves = api.call(&dave, "GET", "/conversations").await;
    assert_eq!(daves.body, json!({ "items": [], "next_cursor": null }));
    // Alice's cursor is no use to Bob.
    let foreign = api
        .call(
            &bob,
            "GET",
            &format!("/conversations?limit=1&cursor={cursor}"),
        )
        .await;
    assert_error(&foreign, 400, "validation_failed");

    // A block hides the conversation.
    api.store
        .block(alice.id(), carol.id(), Utc::now())
        .await
        .unwrap();
    let list = api.call(&alice, "GET", "/conversations").await;
    let others: Vec<_> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["other_user"]["id"].clone())
        .collect();
    assert_eq!(others, vec![json!(bob.id().to_string())]);
}

#[tokio::test]
async fn list_routes_reject_bad_limits_and_cursors() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    let messages = format!("/conversations/{}/messages", bob.id());
    for path in ["/conversations", "/message-requests", messages.as_str()] {
        for query in [
            "limit=0",
            "limit=101",
            "limit=ten",
            "cursor=%25%25%25",
            "cursor=e30",
        ] {
            let response = api.call(&alice, "GET", &format!("{path}?{query}")).await;
            assert_error(&response, 400, "validation_failed");
        }
    }
}

#[tokio::test]
async fn get_messages_pages_newest_first_and_only_ever_shows_the_callers_thread() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    for i in 0..5 {
        let (from, to) = if i % 2 == 0 {
            (&alice, &bob)
        } else {
            (&bob, &alice)
        };
        message(&api, from, to, &format!("ab {i}")).await;
    }
    message(&api, &carol, &alice, "ca 0").await;

    let (items, _) = api
        .walk_pages(&bob, &format!("/conversations/{}/messages", alice.id()), 2)
        .await;
    let seen: Vec<&str> = items.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(seen, vec!["ab 4", "ab 3", "ab 2", "ab 1", "ab 0"]);

    // Carol asking for "messages with Alice" gets her own thread with Alice, nothing of Bob's.
    let carols = api
        .call(
            &carol,
            "GET",
            &format!("/conversations/{}/messages", alice.id()),
        )
        .await;
    assert_eq!(texts(&carols.body), vec!["ca 0"]);
    let with_bob = api
        .call(
            &carol,
            "GET",
            &format!("/conversations/{}/messages", bob.id()),
        )
        .await;
    assert_eq!(with_bob.body["items"], json!([]));

    let unknown = api
        .call(
            &alice,
            "GET",
            &format!("/conversations/{}/messages", UserId::new()),
        )
        .await;
    assert_error(&unknown, 404, "not_found");
}

#[tokio::test]
async fn post_read_zeroes_the_callers_unread_count_only() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    message(&api, &alice, &bob, "one").await;
    message(&api, &alice, &bob, "two").await;
    let unread = |list: &TestResponse| list.body["items"][0]["unread_count"].clone();
    assert_eq!(unread(&api.call(&bob, "GET", "/conversations").await), 2);

    let read = api
        .call(&bob, "POST", &format!("/conversations/{}/read", alice.id()))
        .await;
    assert_eq!(read.status, 204, "{:?}", read.body);
    assert_eq!(unread(&api.call(&bob, "GET", "/conversations").await), 0);

    // Carol has no conversation with Alice: nothing to mark, and Bob's is untouched.
    message(&api, &alice, &bob, "three").await;
    let other = api
        .call(
            &carol,
            "POST",
            &format!("/conversations/{}/read", alice.id()),
        )
        .await;
    assert_error(&other, 404, "not_found");
    assert_eq!(unread(&api.call(&bob, "GET", "/conversations").await), 1);
}

#[tokio::test]
async fn a_message_to_a_private_stranger_is_a_request_that_can_be_accepted() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.private_account("bob").await,
        api.account("carol").await,
    );
    let request = message(&api, &alice, &bob, "hello?").await;
    assert_eq!(request["status"], "requested");

    let requests = api.call(&bob, "GET", "/message-requests").await;
    assert_eq!(requests.status, 200, "{:?}", requests.body);
    let items = requests.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["other_user"]["id"], alice.id().to_string());
    assert_eq!(items[0]["last_message"]["text"], "hello?");
    assert!(items[0]["created_at"].is_string());
    let bobs = api.call(&bob, "GET", "/conversations").await;
    assert_eq!(
        bobs.body["items"],
        json!([]),
        "a request is not a conversation yet"
    );
    // Nobody else sees or answers Bob's requests.
    let carols = api.call(&carol, "GET", "/message-requests").await;
    assert_eq!(carols.body["items"], json!([]));
    let not_hers = api
        .call(
            &carol,
            "POST",
            &format!("/message-requests/{}/accept", alice.id()),
        )
        .await;
    assert_error(&not_hers, 404, "not_found");
    let not_hers = api
        .call(
            &carol,
            "POST",
            &format!("/message-requests/{}/reject", alice.id()),
        )
        .await;
    assert_error(&not_hers, 404, "not_found");
    let wrong_way = api
        .call(
            &alice,
            "POST",
            &format!("/message-requests/{}/accept", bob.id()),
        )
        .await;
    assert_error(&wrong_way, 404, "not_found");

    let accepted = api
        .call(
            &bob,
            "POST",
            &format!("/message-requests/{}/accept", alice.id()),
        )
        .await;
    assert_eq!(accepted.status, 204, "{:?}", accepted.body);
    assert_eq!(
        api.call(&bob, "GET", "/message-requests").await.body["items"],
        json!([])
    );
    let bobs = api.call(&bob, "GET", "/conversations").await;
    assert_eq!(
        bobs.body["items"][0]["other_user"]["id"],
        alice.id().to_string()
    );
    assert_eq!(
        message(&api, &alice, &bob, "thanks").await["status"],
        "sent"
    );
    let again = api
        .call(
            &bob,
            "POST",
            &format!("/message-requests/{}/accept", alice.id()),
        )
        .await;
    assert_error(&again, 404, "not_found");
}

#[tokio::test]
async fn rejecting_a_request_deletes_the_pending_thread() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.private_account("bob").await);
    message(&api, &alice, &bob, "hello?").await;
    message(&api, &alice, &bob, "hello??").await;

    let rejected = api
        .call(
            &bob,
            "POST",
            &format!("/message-requests/{}/reject", alice.id()),
        )
        .await;
    assert_eq!(rejected.status, 204, "{:?}", rejected.body);
    assert_eq!(
        api.call(&bob, "GET", "/message-requests").await.body["items"],
        json!([])
    );
    let thread = api
        .call(
            &alice,
            "GET",
            &format!("/conversations/{}/messages", bob.id()),
        )
        .await;
    assert_eq!(thread.body["items"], json!([]));
    assert_eq!(
        api.call(&alice, "GET", "/conversations").await.body["items"],
        json!([])
    );
    let again = api
        .call(
            &bob,
            "POST",
            &format!("/message-requests/{}/reject", alice.id()),
        )
        .await;
    assert_error(&again, 404, "not_found");
}

#[tokio::test]
async fn message_requests_from_blocked_users_are_not_listed() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.private_account("bob").await);
    message(&api, &alice, &bob, "hello?").await;
    api.store
        .block(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        api.call(&bob, "GET", "/message-requests").await.body["items"],
        json!([])
    );
}

#[tokio::test]
async fn action_routes_reject_bodies_they_do_not_take() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.private_account("bob").await);
    message(&api, &alice, &bob, "hello?").await;
    let items = api.db.item_count().await;
    for action in [
        format!("/conversations/{}/read", alice.id()),
        format!("/message-requests/{}/accept", alice.id()),
        format!("/message-requests/{}/reject", alice.id()),
    ] {
        let unknown_field = TestRequest::new("POST", &action)
            .token(&bob.token)
            .json(json!({ "all": true }))
            .send(&api.function)
            .await;
        assert_error(&unknown_field, 400, "validation_failed");
        let malformed = TestRequest::new("POST", &action)
            .token(&bob.token)
            .raw_body("{")
            .send(&api.function)
            .await;
        assert_error(&malformed, 400, "validation_failed");
    }
    assert_eq!(api.db.item_count().await, items, "nothing changed");
    // An empty object is the same as no body.
    let accepted = TestRequest::new("POST", &format!("/message-requests/{}/accept", alice.id()))
        .token(&bob.token)
        .json(json!({}))
        .send(&api.function)
        .await;
    assert_eq!(accepted.status, 204, "{:?}", accepted.body);
}

#[tokio::test]
async fn every_fixture_is_an_event_that_reaches_its_route() {
    let api = start().await;
    let alice = api.private_account("alice").await;
    // The user the fixtures' paths name, with a request waiting for Alice.
    let fixture_user: UserId = "0190f5a4-7b1e-7c3a-9d2e-00000000b0b0".parse().unwrap();
    let bob = api.account_with_id(fixture_user, "fixture_bob").await;
    assert_eq!(
        message(&api, &bob, &alice, "hello?").await["status"],
        "requested"
    );

    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let route_count = api_messages::State::router().routes().len();
    for fixture in api
        .invoke_fixtures(&directory, &alice.token, route_count)
        .await
    {
        let expected = match fixture.name.as_str() {
            "accept-message-request" | "mark-conversation-read" => 204,
            "send-message" => 201,
            // Accepted just before (fixtures run in name order).
            "reject-message-request" => 404,
            _ => 200,
        };
        assert_eq!(
            fixture.status, expected,
            "{}: {}",
            fixture.name, fixture.response
        );
    }
}

// ---- the writer push -------------------------------------------------------------------------

/// `api-messages` whose writer push posts to a recording client instead of API Gateway.
async fn start_pushing(config: &[(&str, &str)]) -> (TestApi, Arc<RecordingPush>) {
    let push = Arc::new(RecordingPush::new());
    let recorder = push.clone();
    let api = TestApi::start_with(config, move |config, clients| {
        let writer = writer_push(&config, clients, recorder);
        Ok(api_messages::lambda_function(Arc::new(
            State::new(config, clients)?.with_writer_push(writer),
        )))
    })
    .await;
    (api, push)
}

/// `(type, event_id)` of everything one connection got, sorted.
fn pushed(push: &RecordingPush, connection: &str) -> Vec<(String, String)> {
    let mut events: Vec<(String, String)> = push
        .events_to(connection)
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap().to_owned(),
                event["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    events.sort();
    events
}

/// `(type, event_id)` of `events`, sorted.
fn described(events: &[Event]) -> Vec<(String, String)> {
    let mut described: Vec<(String, String)> = events
        .iter()
        .map(|event| (event.body.kind().to_owned(), event.event_id.to_string()))
        .collect();
    described.sort();
    described
}

#[tokio::test]
async fn a_message_and_its_notification_are_pushed_to_both_sides_before_the_response() {
    let (api, push) = start_pushing(&[]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    open_connection(&api.store, alice.id(), "alice-1=").await;
    open_connection(&api.store, bob.id(), "bob-1=").await;

    let sent = message(&api, &alice, &bob, "hi bob").await;
    let stored = stored_message(&api, &alice, &bob, &sent).await;
    let notification = only_notification(&api, bob.id()).await;
    // The events the stream router makes of the message and notification inserts.
    let new_message = Event::message_for(&stored, bob.id());
    assert_eq!(
        pushed(&push, "bob-1="),
        described(&[new_message.clone(), Event::new_notification(&notification)])
    );
    assert_eq!(
        pushed(&push, "alice-1="),
        described(std::slice::from_ref(&new_message))
    );
    let ids = [
        new_message.event_id,
        Event::new_notification(&notification).event_id,
    ];
    assert_eq!(
        api.store.delivered_among(&ids).await.unwrap(),
        ids.into_iter().collect(),
        "both marked delivered"
    );

    // A retry with the same client id stores nothing, so nothing is pushed again.
    push.clear();
    let body = json!({"text": "once", "client_message_id": "c-1"});
    assert_eq!(
        send_message(&api, &alice, &bob, body.clone()).await.status,
        201
    );
    push.clear();
    assert_eq!(send_message(&api, &alice, &bob, body).await.status, 200);
    assert!(push.delivered().is_empty(), "{:?}", push.delivered());
}

#[tokio::test]
async fn a_message_request_is_pushed_as_a_request_to_the_recipient_only() {
    let (api, push) = start_pushing(&[]).await;
    let alice = api.account("alice").await;
    let private = api.private_account("private").await;
    open_connection(&api.store, alice.id(), "alice-1=").await;
    open_connection(&api.store, private.id(), "private-1=").await;

    let sent = message(&api, &alice, &private, "hello stranger").await;
    assert_eq!(sent["status"], "requested");
    let stored = stored_message(&api, &alice, &private, &sent).await;
    let notification = only_notification(&api, private.id()).await;
    let request = Event::message_for(&stored, private.id());
    assert_eq!(request.body.kind(), "message_request");
    assert_eq!(
        pushed(&push, "private-1="),
        described(&[request, Event::new_notification(&notification)])
    );
    assert_eq!(
        pushed(&push, "alice-1="),
        described(&[Event::message_for(&stored, alice.id())])
    );
}

#[tokio::test]
async fn a_message_is_sent_when_every_writer_push_fails_and_none_above_the_bound() {
    let (api, push) = start_pushing(&[]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    open_connection(&api.store, bob.id(), "bob-1=").await;
    push.fail("bob-1=", PushError::Retryable("throttled".into()));
    let sent = message(&api, &alice, &bob, "still sent").await;
    assert!(push.attempts("bob-1=") >= 1);
    let stored = stored_message(&api, &alice, &bob, &sent).await;
    let event_id = Event::message_for(&stored, bob.id()).event_id;
    assert!(!delivery_marked(&api.store, event_id).await);

    let (api, push) = start_pushing(&[("WRITER_PUSH_MAX_CONNECTIONS", "1")]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    open_connection(&api.store, bob.id(), "bob-1=").await;
    open_connection(&api.store, bob.id(), "bob-2=").await;
    message(&api, &alice, &bob, "to two sockets").await;
    assert!(push.delivered().is_empty(), "{:?}", push.delivered());
}

/// The message item of `sent` (a response body) between `a` and `b`.
async fn stored_message(api: &TestApi, a: &TestAccount, b: &TestAccount, sent: &Value) -> Message {
    let id = sent["id"].as_str().unwrap().parse().unwrap();
    api.store
        .table
        .get_as(&keys::message(a.id(), b.id(), id))
        .await
        .unwrap()
        .expect("the message is stored")
}

/// The one notification `recipient` has.
async fn only_notification(api: &TestApi, recipient: UserId) -> Notification {
    let mut items = recent_notifications(&api.store, recipient).await;
    assert_eq!(items.len(), 1, "{items:?}");
    items.remove(0)
}
