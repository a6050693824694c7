//! Route tests of `api-notifications`: real API Gateway HTTP API (payload 2.0) events
//! through the function's handler, against a fresh embedded DynamoDB per test.
//! Notifications are produced by their real causes (follows, messages) through the stores.

use std::sync::Arc;

use api_notifications::State;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::auth::TokenService;
use shared::domain::{new_id, User, UserId};
use shared::function::LambdaFunction;
use shared::store::messages::{MessageStore, NewMessage};
use shared::store::social::SocialStore;
use shared::store::users::{NewUser, ProfileUpdate, UserStore};
use shared::store::DynamoStore;
use shared::testkit::api::{TestRequest, TestResponse};
use shared::testkit::TestDb;

/// A running function and direct access to its database.
struct Api {
    db: TestDb,
    store: DynamoStore,
    function: Arc<dyn LambdaFunction>,
    tokens: TokenService,
}

/// A user and a valid access token.
struct Account {
    user: User,
    token: String,
}

impl Account {
    fn id(&self) -> UserId {
        self.user.id
    }
}

impl Api {
    async fn start() -> Self {
        let db = TestDb::start().await;
        let config = db.config();
        let clients = db.clients(&config);
        let tokens = TokenService::new(&config.jwt).unwrap();
        let state = Arc::new(State::new(config, &clients).unwrap());
        Self {
            store: db.store(),
            function: api_notifications::lambda_function(state),
            tokens,
            db,
        }
    }

    async fn account(&self, username: &str) -> Account {
        let user = self
            .store
            .create_user(NewUser {
                id: new_id(),
                username: username.to_owned(),
                display_name: format!("{username} display"),
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
                created_at: Utc::now(),
            })
            .await
            .unwrap();
        let token = self.tokens.issue(user.id, Utc::now()).unwrap();
        Account { user, token }
    }

    async fn call(&self, who: &Account, method: &str, path: &str) -> TestResponse {
        TestRequest::new(method, path)
            .token(&who.token)
            .send(&self.function)
            .await
    }

    /// `count` message notifications from `actor` to `recipient`.
    async fn messages(&self, actor: &Account, recipient: &Account, count: usize) {
        for i in 0..count {
            let new = NewMessage::new(
                actor.id(),
                recipient.id(),
                &format!("m{i}"),
                None,
                Utc::now(),
            )
            .unwrap();
            self.store.send_message(new).await.unwrap();
        }
    }

    async fn unread_count(&self, who: &Account) -> Value {
        let response = self.call(who, "GET", "/notifications/unread-count").await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        response.body["count"].clone()
    }

    /// Every notification of a listing, following the cursor; also returns the page count.
    async fn list_all(&self, who: &Account, query: &str, limit: usize) -> (Vec<Value>, usize) {
        let mut all = Vec::new();
        let mut pages = 0;
        let mut path = format!("/notifications?limit={limit}{query}");
        loop {
            let page = self.call(who, "GET", &path).await;
            assert_eq!(page.status, 200, "{:?}", page.body);
            pages += 1;
            all.extend(page.body["items"].as_array().unwrap().iter().cloned());
            match page.body["next_cursor"].as_str() {
                Some(cursor) => {
                    path = format!("/notifications?limit={limit}{query}&cursor={cursor}")
                }
                None => return (all, pages),
            }
        }
    }
}

fn assert_error(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.error_code(), Some(code), "{:?}", response.body);
    assert!(response.body["error"]["request_id"].is_string());
    assert!(response.headers.contains_key("x-request-id"));
}

fn id_of(notification: &Value) -> String {
    notification["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_route_needs_a_valid_access_token() {
    let api = Api::start().await;
    let alice = api.account("alice").await;
    let expired = api
        .tokens
        .issue(alice.id(), Utc::now() - Duration::hours(2))
        .unwrap();
    let routes = [
        ("GET", "/notifications".to_owned()),
        ("GET", "/notifications/unread-count".to_owned()),
        ("POST", format!("/notifications/{}/read", new_id())),
        ("POST", "/notifications/read-all".to_owned()),
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
    let api = Api::start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    api.store
        .follow(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    api.messages(&carol, &alice, 1).await;
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
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 7).await;
    let (all, pages) = api.list_all(&alice, "", 3).await;
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
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 2).await;
    api.messages(&alice, &bob, 2).await;
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
    let api = Api::start().await;
    let (alice, bob, carol) = (
        api.account("alice").await,
        api.account("bob").await,
        api.account("carol").await,
    );
    api.messages(&bob, &alice, 1).await;
    api.messages(&carol, &alice, 1).await;
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
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 3).await;
    assert_eq!(api.unread_count(&alice).await, 3);
    assert_eq!(api.unread_count(&bob).await, 0);

    let (all, _) = api.list_all(&alice, "", 10).await;
    let middle = id_of(&all[1]);
    let read = api
        .call(&alice, "POST", &format!("/notifications/{middle}/read"))
        .await;
    assert_eq!(read.status, 204, "{:?}", read.body);
    let again = api
        .call(&alice, "POST", &format!("/notifications/{middle}/read"))
        .await;
    assert_eq!(again.status, 204, "marking read twice is fine");
    assert_eq!(api.unread_count(&alice).await, 2);

    let (unread, pages) = api.list_all(&alice, "&unread=true", 1).await;
    assert_eq!(pages, 2);
    assert_eq!(
        unread.iter().map(id_of).collect::<Vec<_>>(),
        vec![id_of(&all[0]), id_of(&all[2])]
    );
    assert!(unread.iter().all(|n| n["read"] == false));
    let (all_again, _) = api.list_all(&alice, "&unread=false", 10).await;
    assert_eq!(all_again.iter().filter(|n| n["read"] == true).count(), 1);
}

#[tokio::test]
async fn marking_read_someone_elses_or_an_unknown_notification_is_not_found() {
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 1).await;
    let (alices, _) = api.list_all(&alice, "", 10).await;
    let hers = id_of(&alices[0]);
    let items = api.db.item_count().await;

    let response = api
        .call(&bob, "POST", &format!("/notifications/{hers}/read"))
        .await;
    assert_error(&response, 404, "not_found");
    let response = api
        .call(&alice, "POST", &format!("/notifications/{}/read", new_id()))
        .await;
    assert_error(&response, 404, "not_found");
    let response = api
        .call(&alice, "POST", "/notifications/not-a-uuid/read")
        .await;
    assert_error(&response, 400, "validation_failed");
    assert_eq!(api.unread_count(&alice).await, 1, "untouched");
    assert_eq!(api.db.item_count().await, items, "nothing written");
}

#[tokio::test]
async fn read_all_marks_only_the_callers_notifications() {
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 30).await;
    api.messages(&alice, &bob, 2).await;

    let response = api.call(&alice, "POST", "/notifications/read-all").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body, json!({ "marked": 30 }));
    assert_eq!(api.unread_count(&alice).await, 0);
    assert!(api.list_all(&alice, "&unread=true", 100).await.0.is_empty());
    assert_eq!(api.unread_count(&bob).await, 2, "Bob's are untouched");

    let response = api.call(&alice, "POST", "/notifications/read-all").await;
    assert_eq!(response.body, json!({ "marked": 0 }));
}

#[tokio::test]
async fn unread_count_is_per_user_and_ignores_query_noise() {
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    // A follow request to a private account notifies too.
    api.store
        .update_profile(
            alice.id(),
            &ProfileUpdate {
                is_private: Some(true),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
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
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 1).await;
    let (alices, _) = api.list_all(&alice, "", 10).await;
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
    assert_eq!(api.unread_count(&alice).await, 1, "nothing was marked");
}

#[tokio::test]
async fn every_fixture_is_an_event_that_reaches_its_route() {
    let api = Api::start().await;
    let (alice, bob) = (api.account("alice").await, api.account("bob").await);
    api.messages(&bob, &alice, 2).await;
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    fixtures.sort();
    assert_eq!(
        fixtures.len(),
        api_notifications::router().routes().len(),
        "one fixture per route"
    );
    let mut routes_hit = std::collections::BTreeSet::new();
    for path in fixtures {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let event: Value =
            serde_json::from_str(&text.replace("<ACCESS_TOKEN>", &alice.token)).unwrap();
        let method = event["requestContext"]["http"]["method"]
            .as_str()
            .unwrap()
            .to_owned();
        routes_hit.insert((method, event["rawPath"].as_str().unwrap().to_owned()));
        let response = api
            .function
            .invoke(event, lambda_http::Context::default())
            .await
            .unwrap();
        let status = response["statusCode"].as_u64().unwrap();
        let body: Value =
            serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap();
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
            _ => assert_eq!(status, 200, "{name}: {body}"),
        }
    }
    assert_eq!(
        routes_hit.len(),
        api_notifications::router().routes().len(),
        "every route has its fixture"
    );
}
