//! Route tests of `api-notifications`: real API Gateway HTTP API (payload 2.0) events
//! through the function's handler, against a fresh embedded DynamoDB per test.
//! Notifications are produced by their real causes (follows, messages) through the stores.

use std::sync::Arc;

use api_notifications::State;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::domain::NotificationId;
use shared::http::RestState;
use shared::store::NewMessage;
use shared::testkit::api::{assert_error, TestAccount, TestApi, TestRequest};

/// `api-notifications` over a fresh database.
async fn start() -> TestApi {
    start_with(&[]).await
}

/// [`start`] with configuration overrides.
async fn start_with(config: &[(&str, &str)]) -> TestApi {
    TestApi::start_with(config, |config, clients| {
        Ok(api_notifications::lambda_function(Arc::new(State::new(
            config, clients,
        )?)))
    })
    .await
}

/// `count` message notifications from `actor` to `recipient`.
async fn messages(api: &TestApi, actor: &TestAccount, recipient: &TestAccount, count: usize) {
    for i in 0..count {
        let new = NewMessage::new(
            actor.id(),
            recipient.id(),
            &format!("m{i}"),
            None,
            Utc::now(),
        )
        .unwrap();
        api.store.send_message(new).await.unwrap();
    }
}

async fn unread_count(api: &TestApi, who: &TestAccount) -> Value {
    let response = api.call(who, "GET", "/notifications/unread-count").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body["count"].clone()
}

fn id_of(notification: &Value) -> String {
    notification["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_route_needs_a_valid_access_token() {
    let api = start().await;
    let alice = api.account("alice").await;
    let expired = api
        .tokens
        .issue(alice.id(), Utc::now() - Duration::hours(2))
        .unwrap();
    let routes = [
        ("GET", "/notifications".to_owned()),
        ("GET", "/notifications/unread-count".to_owned()),
        (
            "POST",
            format!("/notifications/{}/read", NotificationId::new()),
        ),
        ("POST", "/notifications/read-all".to_owned()),
        ("GET", format!("/events?since={}", uuid::Uuid::now_v7())),
    ];
    for (method, path) in routes {
        assert_error(
            &TestRequest::new(method, &path).send(&api.function).await,
            401,
            "unauthorized",
        );
        for bad in ["not-a-jwt", expired.as_str(), &format!("{}x", alice.token)] {
            let response = TestRequest::new(method, &path)
                .token(bad)
                .send(&api.function)
                .await;
            assert_error(&response, 401, "unauthorized");
        }
    }
}

#[tokio::test]
async fn get_notifications_lists_the_callers_newest_first_with_the_actor() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    api.store
        .follow(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    messages(&api, &carol, &alice, 1).await;
    api.store
        .follow(alice.id(), carol.id(), Utc::now())
        .await
        .unwrap();

    let list = api.call(&alice, "GET", "/notifications").await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let items = list.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "only Alice's: {items:?}");
    assert_eq!(items[0]["type"], "message");
    assert_eq!(
        items[0]["actor"],
        json!({ "id": carol.id().to_string(), "username": "carol", "display_name": "carol display" })
    );
    assert_eq!(items[0]["read"], false);
    assert!(items[0]["created_at"].is_string());
    assert!(items[0].get("post_id").is_none() && items[0].get("comment_id").is_none());
    assert_eq!(items[1]["type"], "follow");
    assert_eq!(items[1]["actor"]["id"], bob.id().to_string());
    assert!(list.body["next_cursor"].is_null());

    let carols = api.call(&carol, "GET", "/notifications").await;
    let kinds: Vec<_> = carols.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("follow")]);
}

#[tokio::test]
async fn get_notifications_pages_through_everything_once() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 7).await;
    let (all, pages) = api.walk_pages(&alice, "/notifications", 3).await;
    assert_eq!(pages, 3);
    let ids: Vec<_> = all.iter().map(id_of).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.reverse();
    assert_eq!(ids, sorted, "newest first (ids are time ordered)");
    sorted.dedup();
    assert_eq!(sorted.len(), 7, "each once");
}

#[tokio::test]
async fn get_notifications_rejects_bad_flags_limits_and_cursors() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 2).await;
    messages(&api, &alice, &bob, 2).await;
    for query in [
        "unread=yes",
        "unread=",
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=%25%25",
        "cursor=e30",
    ] {
        let response = api
            .call(&alice, "GET", &format!("/notifications?{query}"))
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    // Bob's cursor does not read Alice's notifications, and a cursor of one list is not
    // valid for the other.
    let bobs = api.call(&bob, "GET", "/notifications?limit=1").await;
    let cursor = bobs.body["next_cursor"].as_str().unwrap().to_owned();
    let foreign = api
        .call(
            &alice,
            "GET",
            &format!("/notifications?limit=1&cursor={cursor}"),
        )
        .await;
    assert_error(&foreign, 400, "validation_failed");
    let other_list = api
        .call(
            &bob,
            "GET",
            &format!("/notifications?unread=true&limit=1&cursor={cursor}"),
        )
        .await;
    assert_error(&other_list, 400, "validation_failed");
}

#[tokio::test]
async fn notifications_from_a_user_in_a_block_relation_are_hidden() {
    let api = start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    messages(&api, &bob, &alice, 1).await;
    messages(&api, &carol, &alice, 1).await;
    // Bob blocks Alice: his notification disappears from her list either way round.
    api.store
        .block(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    let list = api.call(&alice, "GET", "/notifications").await;
    let actors: Vec<_> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["actor"]["id"].clone())
        .collect();
    assert_eq!(actors, vec![json!(carol.id().to_string())]);
}

#[tokio::test]
async fn unread_filter_and_count_follow_marking_one_read() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 3).await;
    assert_eq!(unread_count(&api, &alice).await, 3);
    assert_eq!(unread_count(&api, &bob).await, 0);

    let (all, _) = api.walk_pages(&alice, "/notifications", 10).await;
    let middle = id_of(&all[1]);
    let read = api
        .call(&alice, "POST", &format!("/notifications/{middle}/read"))
        .await;
    assert_eq!(read.status, 204, "{:?}", read.body);
    let again = api
        .call(&alice, "POST", &format!("/notifications/{middle}/read"))
        .await;
    assert_eq!(again.status, 204, "marking read twice is fine");
    assert_eq!(unread_count(&api, &alice).await, 2);

    let (unread, pages) = api
        .walk_pages(&alice, "/notifications?unread=true", 1)
        .await;
    assert_eq!(pages, 2);
    assert_eq!(
        unread.iter().map(id_of).collect::<Vec<_>>(),
        vec![id_of(&all[0]), id_of(&all[2])]
    );
    assert!(unread.iter().all(|n| n["read"] == false));
    let (all_again, _) = api
        .walk_pages(&alice, "/notifications?unread=false", 10)
        .await;
    assert_eq!(all_again.iter().filter(|n| n["read"] == true).count(), 1);
}

#[tokio::test]
async fn marking_read_someone_elses_or_an_unknown_notification_is_not_found() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 1).await;
    let (alices, _) = api.walk_pages(&alice, "/notifications", 10).await;
    let hers = id_of(&alices[0]);
    let items = items_besides_budgets(&api).await;

    let response = api
        .call(&bob, "POST", &format!("/notifications/{hers}/read"))
        .await;
    assert_error(&response, 404, "not_found");
    let response = api
        .call(
            &alice,
            "POST",
            &format!("/notifications/{}/read", NotificationId::new()),
        )
        .await;
    assert_error(&response, 404, "not_found");
    let response = api
        .call(&alice, "POST", "/notifications/not-a-uuid/read")
        .await;
    assert_error(&response, 400, "validation_failed");
    assert_eq!(unread_count(&api, &alice).await, 1, "untouched");
    // Only the callers' per-minute budget counters (spent before the lookup) changed.
    assert_eq!(items_besides_budgets(&api).await, items, "nothing written");
}

/// Items other than per-user budget counters (`RATE#…`).
async fn items_besides_budgets(api: &TestApi) -> usize {
    let items = api.db.scan_all().await;
    items
        .iter()
        .filter(|item| {
            !item
                .get("pk")
                .and_then(|pk| pk.as_s().ok())
                .is_some_and(|pk| pk.starts_with("RATE#"))
        })
        .count()
}

#[tokio::test]
async fn read_all_marks_only_the_callers_notifications() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 30).await;
    messages(&api, &alice, &bob, 2).await;

    let response = api.call(&alice, "POST", "/notifications/read-all").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body, json!({ "marked": 30 }));
    assert_eq!(unread_count(&api, &alice).await, 0);
    assert!(api
        .walk_pages(&alice, "/notifications?unread=true", 100)
        .await
        .0
        .is_empty());
    assert_eq!(unread_count(&api, &bob).await, 2, "Bob's are untouched");

    let response = api.call(&alice, "POST", "/notifications/read-all").await;
    assert_eq!(response.body, json!({ "marked": 0 }));
}

#[tokio::test]
async fn unread_count_is_per_user_and_ignores_query_noise() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    // A follow request to a private account notifies too.
    api.make_private(alice.id()).await;
    api.store
        .request_follow(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    let response = api
        .call(&alice, "GET", "/notifications/unread-count?x=1")
        .await;
    assert_eq!(response.body, json!({ "count": 1 }));
    let list = api.call(&alice, "GET", "/notifications").await;
    assert_eq!(list.body["items"][0]["type"], "follow_request");
}

#[tokio::test]
async fn action_routes_reject_bodies_they_do_not_take() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 1).await;
    let (alices, _) = api.walk_pages(&alice, "/notifications", 10).await;
    for action in [
        format!("/notifications/{}/read", id_of(&alices[0])),
        "/notifications/read-all".to_owned(),
    ] {
        let unknown_field = TestRequest::new("POST", &action)
            .token(&alice.token)
            .json(json!({ "unread": false }))
            .send(&api.function)
            .await;
        assert_error(&unknown_field, 400, "validation_failed");
        let malformed = TestRequest::new("POST", &action)
            .token(&alice.token)
            .raw_body("[")
            .send(&api.function)
            .await;
        assert_error(&malformed, 400, "validation_failed");
    }
    assert_eq!(unread_count(&api, &alice).await, 1, "nothing was marked");
}

#[tokio::test]
async fn every_fixture_is_an_event_that_reaches_its_route() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 2).await;
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let route_count = api_notifications::State::router().routes().len();
    for fixture in api
        .invoke_fixtures(&directory, &alice.token, route_count)
        .await
    {
        let (name, status, body) = (&fixture.name, fixture.status, &fixture.body);
        match name.as_str() {
            // The fixture's notification id is a placeholder: the route answers, not found.
            "mark-notification-read" => {
                assert_eq!(status, 404, "{name}: {body}");
                assert_eq!(body["error"]["message"], "notification not found");
            }
            "list-notifications" => {
                assert_eq!(status, 200, "{name}: {body}");
                assert_eq!(body["items"].as_array().unwrap().len(), 2);
            }
            // The fixture's cursor is long past the resume window: a gap, as documented.
            "missed-events" => {
                assert_eq!(status, 200, "{name}: {body}");
                assert_eq!(body["gap"], true);
            }
            _ => assert_eq!(status, 200, "{name}: {body}"),
        }
    }
}

#[tokio::test]
async fn events_since_a_cursor_are_the_resume_replay_without_a_socket() {
    let api = start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    let since = shared::replay::time_cursor(Utc::now() - Duration::minutes(5));
    messages(&api, &alice, &bob, 3).await;

    let response = api
        .call(&bob, "GET", &format!("/events?since={since}"))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let body = &response.body;
    // Three messages and their notifications.
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 6, "{body}");
    assert_eq!(body["replayed"], 6);
    assert_eq!(body["gap"], false);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "new_notification").count(),
        3
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "new_message" || **k == "message_request")
            .count(),
        3
    );
    let cursors: Vec<&str> = events.iter().filter_map(|e| e["cursor"].as_str()).collect();
    assert!(
        cursors.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first"
    );
    assert_eq!(body["cursor"], json!(cursors.last().unwrap()));
    // The same ids the socket would carry.
    assert!(events.iter().all(|e| e["event_id"].is_string()));

    // Polling from the returned cursor: only what is newer (and the lag's overlap).
    let again = api
        .call(
            &bob,
            "GET",
            &format!("/events?since={}", body["cursor"].as_str().unwrap()),
        )
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["cursor"], body["cursor"]);

    // Alice sees her own side: the messages she sent.
    let hers = api
        .call(&alice, "GET", &format!("/events?since={since}"))
        .await;
    assert_eq!(hers.body["replayed"], 3, "{:?}", hers.body);

    // Too old: a gap with a fresh cursor, nothing replayed.
    let old = shared::replay::time_cursor(Utc::now() - Duration::days(2));
    let gap = api.call(&bob, "GET", &format!("/events?since={old}")).await;
    assert_eq!(gap.body["gap"], true);
    assert_eq!(gap.body["events"], json!([]));

    for bad in [
        "/events",
        "/events?since=yesterday",
        &format!("/events?since={}", uuid::Uuid::new_v4()),
    ] {
        assert_error(&api.call(&bob, "GET", bad).await, 400, "validation_failed");
    }
}

#[tokio::test]
async fn marking_read_one_or_all_shares_a_budget_and_writes_nothing_over_it() {
    // A clock that moves only when told: the window cannot roll over mid-test.
    let clock = Arc::new(shared::clock::ManualClock::new(Utc::now()));
    let api = TestApi::start_with(
        &[("RATE_LIMIT_MARK_READS_PER_MINUTE", "1")],
        move |config, clients| {
            Ok(api_notifications::lambda_function(Arc::new(
                State::with_clock(config, clients, clock)?,
            )))
        },
    )
    .await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    messages(&api, &bob, &alice, 2).await;
    let (all, _) = api.walk_pages(&alice, "/notifications", 10).await;
    let read = |n: &Value| format!("/notifications/{}/read", id_of(n));
    assert_eq!(api.call(&alice, "POST", &read(&all[0])).await.status, 204);
    for path in [read(&all[1]), "/notifications/read-all".to_owned()] {
        let response = api.call(&alice, "POST", &path).await;
        assert_error(&response, 429, "rate_limited");
        let retry_after: u64 = response.headers["retry-after"].parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{path}: {retry_after}");
    }
    assert_eq!(
        unread_count(&api, &alice).await,
        1,
        "nothing marked over budget"
    );
    // Reading is not limited, and another user's budget is their own.
    messages(&api, &alice, &bob, 1).await;
    let bobs = api.call(&bob, "POST", "/notifications/read-all").await;
    assert_eq!(bobs.status, 200, "{:?}", bobs.body);
}
