//! Route tests of `api-posts`: real API Gateway v2 events through the function, against an
//! embedded DynamoDB. Every route: a happy path, validation failures, a missing and an
//! invalid token, and access by another user.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::auth::TokenService;
use shared::clock::{to_millis, ManualClock};
use shared::domain::{new_id, User};
use shared::function::LambdaFunction;
use shared::store::social::SocialStore;
use shared::store::users::{NewUser, ProfileUpdate, UserStore};
use shared::store::DynamoStore;
use shared::testkit::api::{TestRequest, TestResponse};
use shared::testkit::TestDb;

struct Api {
    db: TestDb,
    store: DynamoStore,
    function: Arc<dyn LambdaFunction>,
    clock: Arc<ManualClock>,
    tokens: TokenService,
}

/// A user of the tests, with a valid access token.
struct Caller {
    user: User,
    token: String,
}

impl Api {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(config: &[(&str, &str)]) -> Self {
        let db = TestDb::start().await;
        let config = db.config_with(config);
        let clients = db.clients(&config);
        let clock = Arc::new(ManualClock::new(to_millis(Utc::now())));
        let tokens = TokenService::new(&config.jwt).unwrap();
        let state = api_posts::State::with_clock(config, &clients, clock.clone()).unwrap();
        Self {
            store: db.store(),
            function: api_posts::lambda_function(Arc::new(state)),
            db,
            clock,
            tokens,
        }
    }

    async fn user(&self, username: &str) -> Caller {
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
        // Tokens are checked against real time, whatever the manual clock says.
        let token = self.tokens.issue(user.id, Utc::now()).unwrap();
        Caller { user, token }
    }

    async fn make_private(&self, caller: &Caller) {
        self.store
            .update_profile(
                caller.user.id,
                &ProfileUpdate {
                    is_private: Some(true),
                    ..ProfileUpdate::default()
                },
            )
            .await
            .unwrap();
    }

    async fn follow(&self, follower: &Caller, followee: &Caller) {
        assert!(self
            .store
            .follow(follower.user.id, followee.user.id, Utc::now())
            .await
            .unwrap());
    }

    async fn block(&self, blocker: &Caller, blocked: &Caller) {
        self.store
            .block(blocker.user.id, blocked.user.id, Utc::now())
            .await
            .unwrap();
    }

    async fn send(&self, request: TestRequest) -> TestResponse {
        let response = request.send(&self.function).await;
        assert!(
            response.headers.contains_key("x-request-id"),
            "every response carries x-request-id"
        );
        response
    }

    async fn call(
        &self,
        caller: &Caller,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        let mut request = TestRequest::new(method, path).token(&caller.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// Creates a post through the API and returns its JSON.
    async fn post(&self, author: &Caller, text: &str) -> Value {
        let response = self
            .call(author, "POST", "/posts", Some(json!({ "text": text })))
            .await;
        assert_eq!(response.status, 201, "{:?}", response.body);
        response.body
    }

    async fn comment(&self, author: &Caller, post_id: &str, text: &str) -> Value {
        let response = self
            .call(
                author,
                "POST",
                &format!("/posts/{post_id}/comments"),
                Some(json!({ "text": text })),
            )
            .await;
        assert_eq!(response.status, 201, "{:?}", response.body);
        response.body
    }
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
}

#[track_caller]
fn assert_error(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status, status, "{:?}", response.body);
    assert_eq!(response.error_code(), Some(code), "{:?}", response.body);
    assert!(response.body["error"]["message"].is_string());
    assert!(response.body["error"]["request_id"].is_string());
}

/// Walks a list endpoint page by page; returns the items and the number of pages.
async fn walk(api: &Api, caller: &Caller, path: &str, limit: usize) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(cursor) => format!("{path}?limit={limit}&cursor={cursor}"),
            None => format!("{path}?limit={limit}"),
        };
        let response = api.call(caller, "GET", &url, None).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        pages += 1;
        let page = response.body["items"].as_array().unwrap();
        assert!(page.len() <= limit);
        items.extend(page.iter().cloned());
        match response.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(response.body["next_cursor"].is_null());
                return (items, pages);
            }
        }
        assert!(pages < 100, "pagination does not end");
    }
}

// ---- every route -----------------------------------------------------------------------------

/// `(method, path, body)` of every route, on an existing post and comment.
fn every_route(
    post_id: &str,
    comment_id: &str,
    user_id: &str,
) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("POST", "/posts".to_owned(), Some(json!({ "text": "hi" }))),
        ("GET", format!("/posts/{post_id}"), None),
        (
            "PATCH",
            format!("/posts/{post_id}"),
            Some(json!({ "text": "edited" })),
        ),
        ("DELETE", format!("/posts/{post_id}"), None),
        ("GET", "/feed".to_owned(), None),
        ("GET", format!("/users/{user_id}/posts"), None),
        ("PUT", format!("/posts/{post_id}/like"), None),
        ("DELETE", format!("/posts/{post_id}/like"), None),
        ("GET", format!("/posts/{post_id}/comments"), None),
        (
            "POST",
            format!("/posts/{post_id}/comments"),
            Some(json!({ "text": "hi" })),
        ),
        (
            "DELETE",
            format!("/posts/{post_id}/comments/{comment_id}"),
            None,
        ),
    ]
}

#[tokio::test]
async fn every_route_rejects_a_missing_or_invalid_token() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let post = api.post(&alice, "hello").await;
    let comment = api.comment(&alice, &id_of(&post), "first").await;
    let other_key = TokenService::new(
        &api.db
            .config_with(&[("JWT_SECRET", "another-secret-0123456789abcdef0123456789")])
            .jwt,
    )
    .unwrap();
    let forged = other_key.issue(alice.user.id, Utc::now()).unwrap();
    let routes = every_route(&id_of(&post), &id_of(&comment), &alice.user.id.to_string());
    assert_eq!(
        routes.len(),
        api_posts::router().routes().len(),
        "every route is covered"
    );
    for (method, path, body) in routes {
        let mut anonymous = TestRequest::new(method, &path);
        if let Some(body) = &body {
            anonymous = anonymous.json(body.clone());
        }
        for request in [
            anonymous.clone(),
            anonymous.clone().token("not-a-jwt"),
            anonymous.clone().token(&forged),
            anonymous
                .clone()
                .header("Authorization", &format!("Basic {}", alice.token)),
        ] {
            let response = api.send(request).await;
            assert_error(&response, 401, "unauthorized");
        }
    }
    // Nothing above changed anything.
    let response = api
        .call(&alice, "GET", &format!("/posts/{}", id_of(&post)), None)
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["comment_count"], 1);
    assert_eq!(response.body["text"], "hello");
}

#[tokio::test]
async fn every_route_rejects_ids_that_are_not_uuids() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let post_id = id_of(&api.post(&alice, "hello").await);
    let comment_id = id_of(&api.comment(&alice, &post_id, "first").await);
    let nil = "00000000-0000-0000-0000-000000000000";
    let mut bad = Vec::new();
    for id in ["not-a-uuid", nil, "12345"] {
        // Every route with an id in its path, with that id bad.
        bad.extend(
            every_route(id, &comment_id, id)
                .into_iter()
                .filter(|(_, path, _)| path != "/posts" && path != "/feed"),
        );
        bad.push(("DELETE", format!("/posts/{post_id}/comments/{id}"), None));
    }
    for (method, path, body) in bad {
        let response = api.call(&alice, method, &path, body).await;
        assert_error(&response, 400, "validation_failed");
    }
    let post = api
        .call(&alice, "GET", &format!("/posts/{post_id}"), None)
        .await;
    assert_eq!(post.body["comment_count"], 1, "nothing was deleted");
}

#[tokio::test]
async fn malformed_bodies_are_400_and_oversize_bodies_413() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let post_id = id_of(&api.post(&alice, "hello").await);
    let too_long = "x".repeat(2001);
    let bodies = [
        "{".to_owned(),
        "[]".to_owned(),
        "".to_owned(),
        r#"{"text": 5}"#.to_owned(),
        r#"{"text": null}"#.to_owned(),
        r#"{"text": "ok", "extra": 1}"#.to_owned(),
        r#"{}"#.to_owned(),
        r#"{"text": "   "}"#.to_owned(),
        r#"{"text": "tab\there"}"#.to_owned(),
        json!({ "text": too_long }).to_string(),
    ];
    for path in [
        ("POST", "/posts".to_owned()),
        ("PATCH", format!("/posts/{post_id}")),
        ("POST", format!("/posts/{post_id}/comments")),
    ] {
        for body in &bodies {
            let request = TestRequest::new(path.0, &path.1)
                .token(&alice.token)
                .raw_body(body.clone());
            let response = api.send(request).await;
            assert_error(&response, 400, "validation_failed");
        }
        let oversize = json!({ "text": "y".repeat(70 * 1024) }).to_string();
        let request = TestRequest::new(path.0, &path.1)
            .token(&alice.token)
            .raw_body(oversize);
        assert_error(&api.send(request).await, 413, "payload_too_large");
    }
    for media_url in [
        json!("http://cdn.example.com/a.png"),
        json!("not a url"),
        json!(7),
        json!("javascript:alert(1)"),
    ] {
        let response = api
            .call(
                &alice,
                "POST",
                "/posts",
                Some(json!({ "text": "pic", "media_url": media_url })),
            )
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    // Nothing invalid was stored.
    let (posts, _) = walk(&api, &alice, &format!("/users/{}/posts", alice.user.id), 50).await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["text"], "hello");
}

#[tokio::test]
async fn list_routes_reject_bad_limits_and_garbled_cursors() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let post_id = id_of(&api.post(&alice, "hello").await);
    api.post(&bob, "bob's").await;
    for path in [
        "/feed".to_owned(),
        format!("/users/{}/posts", alice.user.id),
        format!("/posts/{post_id}/comments"),
    ] {
        for query in [
            "limit=0",
            "limit=101",
            "limit=ten",
            "limit=-1",
            "cursor=garbage!!",
            "cursor=e30",
            "cursor=bm90IGpzb24",
        ] {
            let response = api
                .call(&alice, "GET", &format!("{path}?{query}"), None)
                .await;
            assert_error(&response, 400, "validation_failed");
        }
    }
    // A cursor of bob's timeline cannot read alice's.
    api.post(&bob, "bob's second").await;
    let page = api
        .call(
            &alice,
            "GET",
            &format!("/users/{}/posts?limit=1", bob.user.id),
            None,
        )
        .await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let response = api
        .call(
            &alice,
            "GET",
            &format!("/users/{}/posts?cursor={cursor}", alice.user.id),
            None,
        )
        .await;
    assert_error(&response, 400, "validation_failed");
}

// ---- posts -----------------------------------------------------------------------------------

#[tokio::test]
async fn create_post_returns_the_post_with_its_author() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let response = api
        .call(
            &alice,
            "POST",
            "/posts",
            Some(
                json!({ "text": "  hello world  ", "media_url": "https://cdn.example.com/a.png" }),
            ),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    let post = &response.body;
    assert!(uuid::Uuid::parse_str(post["id"].as_str().unwrap()).is_ok());
    assert_eq!(post["text"], "hello world");
    assert_eq!(post["media_url"], "https://cdn.example.com/a.png");
    assert_eq!(
        post["author"],
        json!({ "id": alice.user.id, "username": "alice", "display_name": "alice display" })
    );
    assert!(chrono::DateTime::parse_from_rfc3339(post["created_at"].as_str().unwrap()).is_ok());
    assert_eq!(post["edited_at"], Value::Null);
    assert_eq!(post["like_count"], 0);
    assert_eq!(post["comment_count"], 0);
    assert_eq!(post["liked_by_me"], false);

    let without_media = api
        .call(&alice, "POST", "/posts", Some(json!({ "text": "plain" })))
        .await;
    assert_eq!(without_media.status, 201);
    assert_eq!(without_media.body["media_url"], Value::Null);

    let fetched = api
        .call(&alice, "GET", &format!("/posts/{}", id_of(post)), None)
        .await;
    assert_eq!(fetched.status, 200);
    assert_eq!(&fetched.body, post);
    assert_eq!(
        api.store
            .get_user(alice.user.id)
            .await
            .unwrap()
            .unwrap()
            .post_count,
        2
    );
}

#[tokio::test]
async fn posting_and_commenting_over_budget_is_429_with_retry_after() {
    let api = Api::start_with(&[
        ("RATE_LIMIT_POSTS_PER_MINUTE", "2"),
        ("RATE_LIMIT_COMMENTS_PER_MINUTE", "1"),
    ])
    .await;
    let alice = api.user("alice").await;
    let post_id = id_of(&api.post(&alice, "one").await);
    api.post(&alice, "two").await;
    let response = api
        .call(&alice, "POST", "/posts", Some(json!({ "text": "three" })))
        .await;
    assert_error(&response, 429, "rate_limited");
    let retry_after: u64 = response.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after));

    api.comment(&alice, &post_id, "first").await;
    let path = format!("/posts/{post_id}/comments");
    let response = api
        .call(&alice, "POST", &path, Some(json!({ "text": "second" })))
        .await;
    assert_error(&response, 429, "rate_limited");
    assert!(response.headers.contains_key("retry-after"));

    // A new window restores the budget.
    api.clock.advance(Duration::seconds(61));
    api.post(&alice, "three").await;
    api.comment(&alice, &post_id, "second").await;
}

#[tokio::test]
async fn a_post_is_visible_to_followers_of_a_private_author_only_and_never_across_a_block() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let follower = api.user("follower").await;
    let stranger = api.user("stranger").await;
    let blocked = api.user("blocked").await;
    let path = format!("/posts/{}", id_of(&api.post(&alice, "hello").await));

    for viewer in [&alice, &follower, &stranger, &blocked] {
        assert_eq!(api.call(viewer, "GET", &path, None).await.status, 200);
    }
    api.follow(&follower, &alice).await;
    api.make_private(&alice).await;
    api.block(&alice, &blocked).await;

    assert_eq!(api.call(&alice, "GET", &path, None).await.status, 200);
    assert_eq!(api.call(&follower, "GET", &path, None).await.status, 200);
    assert_error(
        &api.call(&stranger, "GET", &path, None).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&blocked, "GET", &path, None).await,
        404,
        "not_found",
    );

    // The other direction of a block hides it too.
    let bob = api.user("bob").await;
    let bobs = format!("/posts/{}", id_of(&api.post(&bob, "bob's").await));
    api.block(&stranger, &bob).await;
    assert_error(
        &api.call(&stranger, "GET", &bobs, None).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&alice, "GET", &format!("/posts/{}", new_id()), None)
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn edits_are_for_the_author_within_two_minutes() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let post = api.post(&alice, "first draft").await;
    let path = format!("/posts/{}", id_of(&post));

    let response = api
        .call(&bob, "PATCH", &path, Some(json!({ "text": "hijacked" })))
        .await;
    assert_error(&response, 403, "forbidden");

    api.clock.advance(Duration::seconds(119));
    let response = api
        .call(
            &alice,
            "PATCH",
            &path,
            Some(json!({ "text": "second draft" })),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["text"], "second draft");
    assert_eq!(response.body["created_at"], post["created_at"]);
    let edited_at = response.body["edited_at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(edited_at).unwrap(),
        api.clock_now(),
        "edited_at is the edit's time"
    );
    assert_eq!(response.body["author"]["id"], json!(alice.user.id));

    api.clock.advance(Duration::seconds(2));
    let response = api
        .call(
            &alice,
            "PATCH",
            &path,
            Some(json!({ "text": "third draft" })),
        )
        .await;
    assert_error(&response, 403, "edit_window_closed");

    let missing = api
        .call(
            &alice,
            "PATCH",
            &format!("/posts/{}", new_id()),
            Some(json!({ "text": "x" })),
        )
        .await;
    assert_error(&missing, 404, "not_found");
    let current = api.call(&alice, "GET", &path, None).await;
    assert_eq!(current.body["text"], "second draft");
}

impl Api {
    fn clock_now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        use shared::clock::Clock;
        self.clock.now().fixed_offset()
    }
}

#[tokio::test]
async fn deleting_a_post_is_for_its_author_and_hides_its_likes_and_comments() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let post_id = id_of(&api.post(&alice, "doomed").await);
    let path = format!("/posts/{post_id}");
    api.call(&bob, "PUT", &format!("{path}/like"), None).await;
    api.comment(&bob, &post_id, "nice").await;

    assert_error(
        &api.call(&bob, "DELETE", &path, None).await,
        403,
        "forbidden",
    );
    assert_eq!(api.call(&bob, "GET", &path, None).await.status, 200);

    let response = api.call(&alice, "DELETE", &path, None).await;
    assert_eq!(response.status, 204);
    assert_eq!(response.body, Value::Null);
    for (method, suffix) in [
        ("GET", ""),
        ("GET", "/comments"),
        ("PUT", "/like"),
        ("DELETE", "/like"),
        ("DELETE", ""),
    ] {
        let response = api
            .call(&alice, method, &format!("{path}{suffix}"), None)
            .await;
        assert_error(&response, 404, "not_found");
    }
    let response = api
        .call(
            &bob,
            "POST",
            &format!("{path}/comments"),
            Some(json!({ "text": "late" })),
        )
        .await;
    assert_error(&response, 404, "not_found");
    assert_eq!(
        api.store
            .get_user(alice.user.id)
            .await
            .unwrap()
            .unwrap()
            .post_count,
        0
    );
}

// ---- lists -----------------------------------------------------------------------------------

#[tokio::test]
async fn the_feed_pages_through_own_and_followed_posts_once_newest_first() {
    let api = Api::start().await;
    let viewer = api.user("viewer").await;
    let ann = api.user("ann").await;
    let ben = api.user("ben").await;
    let stranger = api.user("stranger").await;
    api.follow(&viewer, &ann).await;
    api.follow(&viewer, &ben).await;
    let mut expected = Vec::new();
    for round in 0..3 {
        for author in [&ann, &viewer, &stranger, &ben] {
            let post = api
                .post(author, &format!("{} {round}", author.user.username))
                .await;
            if author.user.id != stranger.user.id {
                expected.push(id_of(&post));
            }
        }
    }
    expected.reverse();
    let liked = expected[4].clone();
    api.call(&viewer, "PUT", &format!("/posts/{liked}/like"), None)
        .await;

    let (feed, pages) = walk(&api, &viewer, "/feed", 4).await;
    assert_eq!(pages, 3, "9 posts in pages of 4");
    let ids: Vec<String> = feed.iter().map(id_of).collect();
    assert_eq!(ids, expected);
    for post in &feed {
        assert_eq!(post["liked_by_me"], id_of(post) == liked, "{post}");
        assert!(post["author"]["username"].is_string());
    }

    // A block takes the blocked author out of the feed.
    api.block(&ann, &viewer).await;
    let (feed, _) = walk(&api, &viewer, "/feed", 100).await;
    assert_eq!(feed.len(), 6);
    assert!(feed.iter().all(|p| p["author"]["id"] != json!(ann.user.id)));
    let authors: HashSet<_> = feed
        .iter()
        .map(|p| p["author"]["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        authors,
        HashSet::from(["viewer".to_owned(), "ben".to_owned()])
    );
}

#[tokio::test]
async fn a_users_posts_page_newest_first_and_follow_visibility() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let follower = api.user("follower").await;
    let stranger = api.user("stranger").await;
    let blocked = api.user("blocked").await;
    let mut written = Vec::new();
    for i in 0..7 {
        written.push(id_of(&api.post(&alice, &format!("post {i}")).await));
    }
    written.reverse();
    let path = format!("/users/{}/posts", alice.user.id);

    let (posts, pages) = walk(&api, &stranger, &path, 3).await;
    assert_eq!(pages, 3);
    assert_eq!(posts.iter().map(id_of).collect::<Vec<_>>(), written);

    api.follow(&follower, &alice).await;
    api.make_private(&alice).await;
    api.block(&blocked, &alice).await;
    assert_eq!(walk(&api, &follower, &path, 100).await.0.len(), 7);
    assert_eq!(walk(&api, &alice, &path, 100).await.0.len(), 7);
    assert_error(
        &api.call(&stranger, "GET", &path, None).await,
        403,
        "forbidden",
    );
    assert_error(
        &api.call(&blocked, "GET", &path, None).await,
        404,
        "not_found",
    );
    let unknown = format!("/users/{}/posts", new_id());
    assert_error(
        &api.call(&stranger, "GET", &unknown, None).await,
        404,
        "not_found",
    );
}

// ---- likes -----------------------------------------------------------------------------------

#[tokio::test]
async fn like_and_unlike_are_idempotent_and_show_in_liked_by_me() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let path = format!("/posts/{}", id_of(&api.post(&alice, "like me").await));
    let like = format!("{path}/like");

    for _ in 0..2 {
        let response = api.call(&bob, "PUT", &like, None).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, json!({ "liked": true, "like_count": 1 }));
    }
    let seen_by_bob = api.call(&bob, "GET", &path, None).await;
    assert_eq!(
        (
            seen_by_bob.body["liked_by_me"].clone(),
            seen_by_bob.body["like_count"].clone()
        ),
        (json!(true), json!(1))
    );
    assert_eq!(
        api.call(&alice, "GET", &path, None).await.body["liked_by_me"],
        false
    );

    for _ in 0..2 {
        let response = api.call(&bob, "DELETE", &like, None).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, json!({ "liked": false, "like_count": 0 }));
    }
    assert_eq!(
        api.call(&bob, "GET", &path, None).await.body["liked_by_me"],
        false
    );

    let self_like = api.call(&alice, "PUT", &like, None).await;
    assert_eq!(self_like.body, json!({ "liked": true, "like_count": 1 }));
    let missing = format!("/posts/{}/like", new_id());
    assert_error(
        &api.call(&bob, "PUT", &missing, None).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&bob, "DELETE", &missing, None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn likes_need_the_post_to_be_visible() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let stranger = api.user("stranger").await;
    let blocked = api.user("blocked").await;
    let like = format!("/posts/{}/like", id_of(&api.post(&alice, "hello").await));
    api.make_private(&alice).await;
    api.block(&alice, &blocked).await;
    for viewer in [&stranger, &blocked] {
        assert_error(
            &api.call(viewer, "PUT", &like, None).await,
            404,
            "not_found",
        );
        assert_error(
            &api.call(viewer, "DELETE", &like, None).await,
            404,
            "not_found",
        );
    }
    let own = api.call(&alice, "PUT", &like, None).await;
    assert_eq!(own.body["like_count"], 1, "nobody else's like was counted");
}

// ---- comments --------------------------------------------------------------------------------

#[tokio::test]
async fn comments_are_added_and_listed_oldest_first_with_their_authors() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let post_id = id_of(&api.post(&alice, "discuss").await);

    let first = api.comment(&bob, &post_id, "  first!  ").await;
    assert_eq!(first["text"], "first!");
    assert_eq!(first["post_id"], json!(post_id));
    assert_eq!(
        first["author"],
        json!({ "id": bob.user.id, "username": "bob", "display_name": "bob display" })
    );
    assert!(chrono::DateTime::parse_from_rfc3339(first["created_at"].as_str().unwrap()).is_ok());
    let mut written = vec![id_of(&first)];
    for i in 0..6 {
        let author = if i % 2 == 0 { &alice } else { &bob };
        written.push(id_of(
            &api.comment(author, &post_id, &format!("c{i}")).await,
        ));
    }

    let (comments, pages) = walk(&api, &bob, &format!("/posts/{post_id}/comments"), 3).await;
    assert_eq!(pages, 3);
    assert_eq!(
        comments.iter().map(id_of).collect::<Vec<_>>(),
        written,
        "oldest first, each once"
    );
    assert!(comments.iter().all(|c| c["author"]["username"].is_string()));
    let post = api
        .call(&bob, "GET", &format!("/posts/{post_id}"), None)
        .await;
    assert_eq!(post.body["comment_count"], 7);
}

#[tokio::test]
async fn comments_of_a_hidden_post_can_be_neither_read_nor_written() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let stranger = api.user("stranger").await;
    let blocked = api.user("blocked").await;
    let post_id = id_of(&api.post(&alice, "hello").await);
    api.comment(&alice, &post_id, "own comment").await;
    api.make_private(&alice).await;
    api.block(&blocked, &alice).await;
    let path = format!("/posts/{post_id}/comments");
    for viewer in [&stranger, &blocked] {
        assert_error(
            &api.call(viewer, "GET", &path, None).await,
            404,
            "not_found",
        );
        let response = api
            .call(viewer, "POST", &path, Some(json!({ "text": "hi" })))
            .await;
        assert_error(&response, 404, "not_found");
    }
    assert_eq!(walk(&api, &alice, &path, 10).await.0.len(), 1);
}

#[tokio::test]
async fn a_comment_is_deleted_by_its_author_or_the_post_author_only() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let bob = api.user("bob").await;
    let carol = api.user("carol").await;
    let post_id = id_of(&api.post(&alice, "discuss").await);
    let by_bob = id_of(&api.comment(&bob, &post_id, "bob's").await);
    let by_carol = id_of(&api.comment(&carol, &post_id, "carol's").await);
    let path = |comment: &str| format!("/posts/{post_id}/comments/{comment}");

    assert_error(
        &api.call(&carol, "DELETE", &path(&by_bob), None).await,
        403,
        "forbidden",
    );
    assert_eq!(
        api.call(&bob, "DELETE", &path(&by_bob), None).await.status,
        204
    );
    assert_eq!(
        api.call(&alice, "DELETE", &path(&by_carol), None)
            .await
            .status,
        204
    );
    assert_error(
        &api.call(&bob, "DELETE", &path(&by_bob), None).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&bob, "DELETE", &path(&new_id().to_string()), None)
            .await,
        404,
        "not_found",
    );
    let elsewhere = format!("/posts/{}/comments/{by_carol}", new_id());
    assert_error(
        &api.call(&alice, "DELETE", &elsewhere, None).await,
        404,
        "not_found",
    );

    let (left, _) = walk(&api, &alice, &format!("/posts/{post_id}/comments"), 10).await;
    assert!(left.is_empty());
    let post = api
        .call(&alice, "GET", &format!("/posts/{post_id}"), None)
        .await;
    assert_eq!(post.body["comment_count"], 0);
}

// ---- fixtures --------------------------------------------------------------------------------

/// The `cargo lambda invoke --data-file` fixtures are real API Gateway v2 events that reach
/// their route (with a real token in place of the `<ACCESS_TOKEN>` placeholder).
#[tokio::test]
async fn every_fixture_is_an_event_that_reaches_its_route() {
    let api = Api::start().await;
    let alice = api.user("alice").await;
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut fixtures: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    fixtures.sort();
    assert_eq!(
        fixtures.len(),
        api_posts::router().routes().len(),
        "one fixture per route"
    );
    let mut routes_hit = HashSet::new();
    for path in fixtures {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let event: Value =
            serde_json::from_str(&text.replace("<ACCESS_TOKEN>", &alice.token)).unwrap();
        routes_hit.insert((
            event["requestContext"]["http"]["method"]
                .as_str()
                .unwrap()
                .to_owned(),
            event["rawPath"].as_str().unwrap().to_owned(),
        ));
        let response = api
            .function
            .invoke(event, lambda_http::Context::default())
            .await
            .unwrap();
        let status = response["statusCode"].as_u64().unwrap();
        let body: Value =
            serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap();
        match name.as_str() {
            "create-post" => assert_eq!(status, 201, "{name}: {body}"),
            "get-feed" => assert_eq!(status, 200, "{name}: {body}"),
            // The fixtures name objects that do not exist in a fresh database.
            _ => {
                assert_eq!(status, 404, "{name}: {body}");
                let message = body["error"]["message"].as_str().unwrap();
                assert!(
                    !message.starts_with("no route"),
                    "{name} does not match a route"
                );
            }
        }
    }
    assert_eq!(routes_hit.len(), api_posts::router().routes().len());
}
