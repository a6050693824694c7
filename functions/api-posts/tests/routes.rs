//! Route tests of `api-posts`: real API Gateway v2 events through the function, against an
//! embedded DynamoDB. Every route: a happy path, validation failures, a missing and an
//! invalid token, and access by another user.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::auth::SigningKey;
use shared::clock::{to_millis, Clock, ManualClock};
use shared::domain::{CommentId, PostId, UserId};
use shared::events::Event;
use shared::http::RestState;
use shared::push::testing::RecordingPush;
use shared::push::PushError;
use shared::testkit::api::{
    assert_error, delivery_marked, open_connection, recent_notifications, writer_push, TestAccount,
    TestApi, TestRequest,
};
use shared::testkit::{token_service_signing_with, TEST_KID};

/// `api-posts` over a fresh database, on a manual clock that only the tests move (returned
/// too, for the tests that do).
async fn start_on_manual_clock(config: &[(&str, &str)]) -> (TestApi, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(to_millis(Utc::now())));
    let function_clock = clock.clone();
    let api = TestApi::start_with(config, move |config, clients| {
        Ok(api_posts::lambda_function(Arc::new(
            api_posts::State::with_clock(config, clients, function_clock)?,
        )))
    })
    .await;
    (api, clock)
}

async fn start() -> TestApi {
    start_on_manual_clock(&[]).await.0
}

async fn follow(api: &TestApi, follower: &TestAccount, followee: &TestAccount) {
    assert!(
        api.store
            .follow(follower.id(), followee.id(), Utc::now())
            .await
            .unwrap()
            .outcome
    );
}

async fn block(api: &TestApi, blocker: &TestAccount, blocked: &TestAccount) {
    api.store
        .block(blocker.id(), blocked.id(), Utc::now())
        .await
        .unwrap();
}

/// Creates a post through the API and returns its JSON.
async fn create_post(api: &TestApi, author: &TestAccount, text: &str) -> Value {
    let response = api
        .call_json(author, "POST", "/posts", json!({ "text": text }))
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    response.body
}

async fn create_comment(api: &TestApi, author: &TestAccount, post_id: &str, text: &str) -> Value {
    let response = api
        .call_json(
            author,
            "POST",
            &format!("/posts/{post_id}/comments"),
            json!({ "text": text }),
        )
        .await;
    assert_eq!(response.status, 201, "{:?}", response.body);
    response.body
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().unwrap().to_owned()
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
    let api = start().await;
    let alice = api.account("alice").await;
    let post = create_post(&api, &alice, "hello").await;
    let comment = create_comment(&api, &alice, &id_of(&post), "first").await;
    // Same kid, issuer and audience as genuine tokens; signed by a key the function lacks.
    let impostor = SigningKey::generate(TEST_KID).unwrap();
    let other_key = token_service_signing_with(&api.config, &impostor);
    let forged = other_key.issue(alice.user.id, Utc::now()).unwrap();
    let routes = every_route(&id_of(&post), &id_of(&comment), &alice.user.id.to_string());
    assert_eq!(
        routes.len(),
        api_posts::State::router().routes().len(),
        "every route is covered"
    );
    for (method, path, body) in routes {
        let anonymous = TestRequest::new(method, &path).optional_json(body);
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
        .call(&alice, "GET", &format!("/posts/{}", id_of(&post)))
        .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["comment_count"], 1);
    assert_eq!(response.body["text"], "hello");
}

#[tokio::test]
async fn every_route_rejects_ids_that_are_not_uuids() {
    let api = start().await;
    let alice = api.account("alice").await;
    let post_id = id_of(&create_post(&api, &alice, "hello").await);
    let comment_id = id_of(&create_comment(&api, &alice, &post_id, "first").await);
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
        let response = api
            .send(
                TestRequest::new(method, &path)
                    .token(&alice.token)
                    .optional_json(body),
            )
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    let post = api.call(&alice, "GET", &format!("/posts/{post_id}")).await;
    assert_eq!(post.body["comment_count"], 1, "nothing was deleted");
}

#[tokio::test]
async fn malformed_bodies_are_400_and_oversize_bodies_413() {
    let api = start().await;
    let alice = api.account("alice").await;
    let post_id = id_of(&create_post(&api, &alice, "hello").await);
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
            .call_json(
                &alice,
                "POST",
                "/posts",
                json!({ "text": "pic", "media_url": media_url }),
            )
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    // Nothing invalid was stored.
    let (posts, _) = api
        .walk_pages(&alice, &format!("/users/{}/posts", alice.user.id), 50)
        .await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["text"], "hello");
}

#[tokio::test]
async fn list_routes_reject_bad_limits_and_garbled_cursors() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let post_id = id_of(&create_post(&api, &alice, "hello").await);
    create_post(&api, &bob, "bob's").await;
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
            let response = api.call(&alice, "GET", &format!("{path}?{query}")).await;
            assert_error(&response, 400, "validation_failed");
        }
    }
    // A cursor of bob's timeline cannot read alice's.
    create_post(&api, &bob, "bob's second").await;
    let page = api
        .call(
            &alice,
            "GET",
            &format!("/users/{}/posts?limit=1", bob.user.id),
        )
        .await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let response = api
        .call(
            &alice,
            "GET",
            &format!("/users/{}/posts?cursor={cursor}", alice.user.id),
        )
        .await;
    assert_error(&response, 400, "validation_failed");
}

// ---- posts -----------------------------------------------------------------------------------

#[tokio::test]
async fn create_post_returns_the_post_with_its_author() {
    let api = start().await;
    let alice = api.account("alice").await;
    let response = api
        .call_json(
            &alice,
            "POST",
            "/posts",
            json!({ "text": "  hello world  ", "media_url": "https://cdn.example.com/a.png" }),
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
        .call_json(&alice, "POST", "/posts", json!({ "text": "plain" }))
        .await;
    assert_eq!(without_media.status, 201);
    assert_eq!(without_media.body["media_url"], Value::Null);

    let fetched = api
        .call(&alice, "GET", &format!("/posts/{}", id_of(post)))
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
    let (api, clock) = start_on_manual_clock(&[
        ("RATE_LIMIT_POSTS_PER_MINUTE", "2"),
        ("RATE_LIMIT_COMMENTS_PER_MINUTE", "1"),
    ])
    .await;
    let alice = api.account("alice").await;
    let post_id = id_of(&create_post(&api, &alice, "one").await);
    create_post(&api, &alice, "two").await;
    let response = api
        .call_json(&alice, "POST", "/posts", json!({ "text": "three" }))
        .await;
    assert_error(&response, 429, "rate_limited");
    let retry_after: u64 = response.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after));

    create_comment(&api, &alice, &post_id, "first").await;
    let path = format!("/posts/{post_id}/comments");
    let response = api
        .call_json(&alice, "POST", &path, json!({ "text": "second" }))
        .await;
    assert_error(&response, 429, "rate_limited");
    assert!(response.headers.contains_key("retry-after"));

    // A new window restores the budget.
    clock.advance(Duration::seconds(61));
    create_post(&api, &alice, "three").await;
    create_comment(&api, &alice, &post_id, "second").await;
}

#[tokio::test]
async fn a_post_is_visible_to_followers_of_a_private_author_only_and_never_across_a_block() {
    let api = start().await;
    let alice = api.account("alice").await;
    let follower = api.account("follower").await;
    let stranger = api.account("stranger").await;
    let blocked = api.account("blocked").await;
    let path = format!(
        "/posts/{}",
        id_of(&create_post(&api, &alice, "hello").await)
    );

    for viewer in [&alice, &follower, &stranger, &blocked] {
        assert_eq!(api.call(viewer, "GET", &path).await.status, 200);
    }
    follow(&api, &follower, &alice).await;
    api.make_private(alice.id()).await;
    block(&api, &alice, &blocked).await;

    assert_eq!(api.call(&alice, "GET", &path).await.status, 200);
    assert_eq!(api.call(&follower, "GET", &path).await.status, 200);
    assert_error(&api.call(&stranger, "GET", &path).await, 404, "not_found");
    assert_error(&api.call(&blocked, "GET", &path).await, 404, "not_found");

    // The other direction of a block hides it too.
    let bob = api.account("bob").await;
    let bobs = format!("/posts/{}", id_of(&create_post(&api, &bob, "bob's").await));
    block(&api, &stranger, &bob).await;
    assert_error(&api.call(&stranger, "GET", &bobs).await, 404, "not_found");
    assert_error(
        &api.call(&alice, "GET", &format!("/posts/{}", PostId::new()))
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn edits_are_for_the_author_within_two_minutes() {
    let (api, clock) = start_on_manual_clock(&[]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let post = create_post(&api, &alice, "first draft").await;
    let path = format!("/posts/{}", id_of(&post));

    let response = api
        .call_json(&bob, "PATCH", &path, json!({ "text": "hijacked" }))
        .await;
    assert_error(&response, 403, "forbidden");

    clock.advance(Duration::seconds(119));
    let response = api
        .call_json(&alice, "PATCH", &path, json!({ "text": "second draft" }))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["text"], "second draft");
    assert_eq!(response.body["created_at"], post["created_at"]);
    let edited_at = response.body["edited_at"].as_str().unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(edited_at).unwrap(),
        clock.now().fixed_offset(),
        "edited_at is the edit's time"
    );
    assert_eq!(response.body["author"]["id"], json!(alice.user.id));

    clock.advance(Duration::seconds(2));
    let response = api
        .call_json(&alice, "PATCH", &path, json!({ "text": "third draft" }))
        .await;
    assert_error(&response, 403, "edit_window_closed");

    let missing = api
        .call_json(
            &alice,
            "PATCH",
            &format!("/posts/{}", PostId::new()),
            json!({ "text": "x" }),
        )
        .await;
    assert_error(&missing, 404, "not_found");
    let current = api.call(&alice, "GET", &path).await;
    assert_eq!(current.body["text"], "second draft");
}

#[tokio::test]
async fn deleting_a_post_is_for_its_author_and_hides_its_likes_and_comments() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let post_id = id_of(&create_post(&api, &alice, "doomed").await);
    let path = format!("/posts/{post_id}");
    api.call(&bob, "PUT", &format!("{path}/like")).await;
    create_comment(&api, &bob, &post_id, "nice").await;

    assert_error(&api.call(&bob, "DELETE", &path).await, 403, "forbidden");
    assert_eq!(api.call(&bob, "GET", &path).await.status, 200);

    let response = api.call(&alice, "DELETE", &path).await;
    assert_eq!(response.status, 204);
    assert_eq!(response.body, Value::Null);
    for (method, suffix) in [
        ("GET", ""),
        ("GET", "/comments"),
        ("PUT", "/like"),
        ("DELETE", "/like"),
        ("DELETE", ""),
    ] {
        let response = api.call(&alice, method, &format!("{path}{suffix}")).await;
        assert_error(&response, 404, "not_found");
    }
    let response = api
        .call_json(
            &bob,
            "POST",
            &format!("{path}/comments"),
            json!({ "text": "late" }),
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
    let api = start().await;
    let viewer = api.account("viewer").await;
    let ann = api.account("ann").await;
    let ben = api.account("ben").await;
    let stranger = api.account("stranger").await;
    follow(&api, &viewer, &ann).await;
    follow(&api, &viewer, &ben).await;
    let mut expected = Vec::new();
    for round in 0..3 {
        for author in [&ann, &viewer, &stranger, &ben] {
            let post =
                create_post(&api, author, &format!("{} {round}", author.user.username)).await;
            if author.user.id != stranger.user.id {
                expected.push(id_of(&post));
            }
        }
    }
    expected.reverse();
    let liked = expected[4].clone();
    api.call(&viewer, "PUT", &format!("/posts/{liked}/like"))
        .await;

    // What the push worker's feed tasks would have written.
    api.materialize_feed(viewer.user.id).await;
    let (feed, pages) = api.walk_pages(&viewer, "/feed", 4).await;
    assert_eq!(pages, 3, "9 posts in pages of 4");
    let ids: Vec<String> = feed.iter().map(id_of).collect();
    assert_eq!(ids, expected);
    for post in &feed {
        assert_eq!(post["liked_by_me"], id_of(post) == liked, "{post}");
        assert!(post["author"]["username"].is_string());
    }

    // A block takes the blocked author out of the feed.
    block(&api, &ann, &viewer).await;
    let (feed, _) = api.walk_pages(&viewer, "/feed", 100).await;
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
    let api = start().await;
    let alice = api.account("alice").await;
    let follower = api.account("follower").await;
    let stranger = api.account("stranger").await;
    let blocked = api.account("blocked").await;
    let mut written = Vec::new();
    for i in 0..7 {
        written.push(id_of(
            &create_post(&api, &alice, &format!("post {i}")).await,
        ));
    }
    written.reverse();
    let path = format!("/users/{}/posts", alice.user.id);

    let (posts, pages) = api.walk_pages(&stranger, &path, 3).await;
    assert_eq!(pages, 3);
    assert_eq!(posts.iter().map(id_of).collect::<Vec<_>>(), written);

    follow(&api, &follower, &alice).await;
    api.make_private(alice.id()).await;
    block(&api, &blocked, &alice).await;
    assert_eq!(api.walk_pages(&follower, &path, 100).await.0.len(), 7);
    assert_eq!(api.walk_pages(&alice, &path, 100).await.0.len(), 7);
    assert_error(&api.call(&stranger, "GET", &path).await, 403, "forbidden");
    assert_error(&api.call(&blocked, "GET", &path).await, 404, "not_found");
    let unknown = format!("/users/{}/posts", UserId::new());
    assert_error(
        &api.call(&stranger, "GET", &unknown).await,
        404,
        "not_found",
    );
}

// ---- likes -----------------------------------------------------------------------------------

#[tokio::test]
async fn like_and_unlike_are_idempotent_and_show_in_liked_by_me() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let path = format!(
        "/posts/{}",
        id_of(&create_post(&api, &alice, "like me").await)
    );
    let like = format!("{path}/like");

    for _ in 0..2 {
        let response = api.call(&bob, "PUT", &like).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        // A repeated like changes nothing: the same version.
        assert_eq!(
            response.body,
            json!({ "liked": true, "like_count": 1, "like_version": 1 })
        );
    }
    let seen_by_bob = api.call(&bob, "GET", &path).await;
    assert_eq!(
        (
            seen_by_bob.body["liked_by_me"].clone(),
            seen_by_bob.body["like_count"].clone()
        ),
        (json!(true), json!(1))
    );
    assert_eq!(
        api.call(&alice, "GET", &path).await.body["liked_by_me"],
        false
    );

    for _ in 0..2 {
        let response = api.call(&bob, "DELETE", &like).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(
            response.body,
            json!({ "liked": false, "like_count": 0, "like_version": 2 })
        );
    }
    assert_eq!(
        api.call(&bob, "GET", &path).await.body["liked_by_me"],
        false
    );

    let self_like = api.call(&alice, "PUT", &like).await;
    assert_eq!(
        self_like.body,
        json!({ "liked": true, "like_count": 1, "like_version": 3 })
    );
    let missing = format!("/posts/{}/like", PostId::new());
    assert_error(&api.call(&bob, "PUT", &missing).await, 404, "not_found");
    assert_error(&api.call(&bob, "DELETE", &missing).await, 404, "not_found");
}

#[tokio::test]
async fn likes_need_the_post_to_be_visible() {
    let api = start().await;
    let alice = api.account("alice").await;
    let stranger = api.account("stranger").await;
    let blocked = api.account("blocked").await;
    let like = format!(
        "/posts/{}/like",
        id_of(&create_post(&api, &alice, "hello").await)
    );
    api.make_private(alice.id()).await;
    block(&api, &alice, &blocked).await;
    for viewer in [&stranger, &blocked] {
        assert_error(&api.call(viewer, "PUT", &like).await, 404, "not_found");
        assert_error(&api.call(viewer, "DELETE", &like).await, 404, "not_found");
    }
    let own = api.call(&alice, "PUT", &like).await;
    assert_eq!(own.body["like_count"], 1, "nobody else's like was counted");
}

// ---- comments --------------------------------------------------------------------------------

#[tokio::test]
async fn comments_are_added_and_listed_oldest_first_with_their_authors() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let post_id = id_of(&create_post(&api, &alice, "discuss").await);

    let first = create_comment(&api, &bob, &post_id, "  first!  ").await;
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
            &create_comment(&api, author, &post_id, &format!("c{i}")).await,
        ));
    }

    let (comments, pages) = api
        .walk_pages(&bob, &format!("/posts/{post_id}/comments"), 3)
        .await;
    assert_eq!(pages, 3);
    assert_eq!(
        comments.iter().map(id_of).collect::<Vec<_>>(),
        written,
        "oldest first, each once"
    );
    assert!(comments.iter().all(|c| c["author"]["username"].is_string()));
    let post = api.call(&bob, "GET", &format!("/posts/{post_id}")).await;
    assert_eq!(post.body["comment_count"], 7);
}

#[tokio::test]
async fn comments_of_a_hidden_post_can_be_neither_read_nor_written() {
    let api = start().await;
    let alice = api.account("alice").await;
    let stranger = api.account("stranger").await;
    let blocked = api.account("blocked").await;
    let post_id = id_of(&create_post(&api, &alice, "hello").await);
    create_comment(&api, &alice, &post_id, "own comment").await;
    api.make_private(alice.id()).await;
    block(&api, &blocked, &alice).await;
    let path = format!("/posts/{post_id}/comments");
    for viewer in [&stranger, &blocked] {
        assert_error(&api.call(viewer, "GET", &path).await, 404, "not_found");
        let response = api
            .call_json(viewer, "POST", &path, json!({ "text": "hi" }))
            .await;
        assert_error(&response, 404, "not_found");
    }
    assert_eq!(api.walk_pages(&alice, &path, 10).await.0.len(), 1);
}

#[tokio::test]
async fn a_comment_is_deleted_by_its_author_or_the_post_author_only() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    let post_id = id_of(&create_post(&api, &alice, "discuss").await);
    let by_bob = id_of(&create_comment(&api, &bob, &post_id, "bob's").await);
    let by_carol = id_of(&create_comment(&api, &carol, &post_id, "carol's").await);
    let path = |comment: &str| format!("/posts/{post_id}/comments/{comment}");

    assert_error(
        &api.call(&carol, "DELETE", &path(&by_bob)).await,
        403,
        "forbidden",
    );
    assert_eq!(api.call(&bob, "DELETE", &path(&by_bob)).await.status, 204);
    assert_eq!(
        api.call(&alice, "DELETE", &path(&by_carol)).await.status,
        204
    );
    assert_error(
        &api.call(&bob, "DELETE", &path(&by_bob)).await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&bob, "DELETE", &path(&CommentId::new().to_string()))
            .await,
        404,
        "not_found",
    );
    let elsewhere = format!("/posts/{}/comments/{by_carol}", PostId::new());
    assert_error(
        &api.call(&alice, "DELETE", &elsewhere).await,
        404,
        "not_found",
    );

    let (left, _) = api
        .walk_pages(&alice, &format!("/posts/{post_id}/comments"), 10)
        .await;
    assert!(left.is_empty());
    let post = api.call(&alice, "GET", &format!("/posts/{post_id}")).await;
    assert_eq!(post.body["comment_count"], 0);
}

// ---- fixtures --------------------------------------------------------------------------------

/// The `cargo lambda invoke --data-file` fixtures are real API Gateway v2 events that reach
/// their route (with a real token in place of the `<ACCESS_TOKEN>` placeholder).
#[tokio::test]
async fn every_fixture_is_an_event_that_reaches_its_route() {
    let api = start().await;
    let alice = api.account("alice").await;
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let route_count = api_posts::State::router().routes().len();
    for fixture in api
        .invoke_fixtures(&directory, &alice.token, route_count)
        .await
    {
        let (name, status, body) = (&fixture.name, fixture.status, &fixture.body);
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
}

// ---- the writer push -------------------------------------------------------------------------

/// `api-posts` whose writer push posts to a recording client instead of API Gateway.
async fn start_pushing(config: &[(&str, &str)]) -> (TestApi, Arc<RecordingPush>) {
    let push = Arc::new(RecordingPush::new());
    let recorder = push.clone();
    let api = TestApi::start_with(config, move |config, clients| {
        let writer = writer_push(&config, clients, recorder);
        Ok(api_posts::lambda_function(Arc::new(
            api_posts::State::new(config, clients)?.with_writer_push(writer),
        )))
    })
    .await;
    (api, push)
}

#[tokio::test]
async fn a_post_is_pushed_to_online_followers_with_the_routers_event_id_before_the_response() {
    let (api, push) = start_pushing(&[]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    follow(&api, &bob, &alice).await;
    open_connection(&api.store, alice.id(), "alice-1=").await;
    open_connection(&api.store, bob.id(), "bob-1=").await;
    open_connection(&api.store, bob.id(), "bob-2=").await;
    // Carol does not follow Alice: not in the audience.
    open_connection(&api.store, carol.id(), "carol-1=").await;

    let created = create_post(&api, &alice, "hello, followers").await;
    let post_id = id_of(&created).parse().unwrap();
    // The event the stream router makes of the post's insert (same constructor, same item).
    let stored = api.store.get_post(post_id).await.unwrap().unwrap();
    let event_id = Event::post_created(&stored).event_id;
    for connection in ["alice-1=", "bob-1=", "bob-2="] {
        assert_eq!(
            push.event_ids_of_type(connection, "post_created"),
            [event_id.to_string()],
            "{connection}"
        );
    }
    assert_eq!(push.events_to("carol-1="), Vec::<Value>::new());
    assert_eq!(
        push.events_of_type("bob-1=", "post_created")[0]["data"]["text"],
        "hello, followers"
    );
    assert_eq!(
        api.store.delivered_among(&[event_id]).await.unwrap(),
        HashSet::from([event_id]),
        "marked delivered, so the router skips it"
    );
}

#[tokio::test]
async fn likes_and_comments_push_the_authors_notification() {
    let (api, push) = start_pushing(&[]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let post = create_post(&api, &alice, "like me").await;
    open_connection(&api.store, alice.id(), "alice-1=").await;
    open_connection(&api.store, bob.id(), "bob-1=").await;

    let liked = api
        .call(&bob, "PUT", &format!("/posts/{}/like", id_of(&post)))
        .await;
    assert_eq!(liked.status, 200, "{:?}", liked.body);
    assert_eq!(
        liked.body,
        json!({"liked": true, "like_count": 1, "like_version": 1})
    );
    create_comment(&api, &bob, &id_of(&post), "nice").await;

    let notifications = recent_notifications(&api.store, alice.id()).await;
    assert_eq!(notifications.len(), 2);
    let mut expected: Vec<String> = notifications
        .iter()
        .map(|n| Event::new_notification(n).event_id.to_string())
        .collect();
    let mut pushed = push.event_ids_of_type("alice-1=", "new_notification");
    expected.sort();
    pushed.sort();
    assert_eq!(pushed, expected);
    assert!(push.events_to("bob-1=").is_empty(), "the actor is not told");

    // Liking again writes nothing new, so nothing is pushed.
    push.clear();
    api.call(&bob, "PUT", &format!("/posts/{}/like", id_of(&post)))
        .await;
    assert!(push.delivered().is_empty(), "{:?}", push.delivered());
}

#[tokio::test]
async fn nothing_is_pushed_by_the_writer_above_its_bounds() {
    // Two connections, a bound of one: the router delivers.
    let (api, push) = start_pushing(&[("WRITER_PUSH_MAX_CONNECTIONS", "1")]).await;
    let alice = api.account("alice").await;
    open_connection(&api.store, alice.id(), "alice-1=").await;
    open_connection(&api.store, alice.id(), "alice-2=").await;
    let created = create_post(&api, &alice, "to many").await;
    assert!(push.delivered().is_empty(), "{:?}", push.delivered());
    assert_eq!(push.attempts("alice-1="), 0);
    let stored = api
        .store
        .get_post(id_of(&created).parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    let event_id = Event::post_created(&stored).event_id;
    assert!(!delivery_marked(&api.store, event_id).await);

    // An author with more followers than the bound: not even resolved.
    let (api, push) = start_pushing(&[("WRITER_PUSH_MAX_FOLLOWERS", "1")]).await;
    let alice = api.account("alice").await;
    for name in ["bob", "carol"] {
        let follower = api.account(name).await;
        follow(&api, &follower, &alice).await;
    }
    open_connection(&api.store, alice.id(), "alice-1=").await;
    create_post(&api, &alice, "popular").await;
    assert!(push.delivered().is_empty(), "{:?}", push.delivered());
}

#[tokio::test]
async fn the_post_is_created_when_every_writer_push_fails() {
    let (api, push) = start_pushing(&[]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    follow(&api, &bob, &alice).await;
    open_connection(&api.store, alice.id(), "alice-1=").await;
    open_connection(&api.store, bob.id(), "bob-1=").await;
    push.fail("alice-1=", PushError::Retryable("throttled".into()));
    push.fail("bob-1=", PushError::Permanent("forbidden".into()));

    let created = create_post(&api, &alice, "still posted").await;
    assert!(push.attempts("alice-1=") >= 1);
    assert!(push.attempts("bob-1=") >= 1);
    let stored = api
        .store
        .get_post(id_of(&created).parse().unwrap())
        .await
        .unwrap()
        .expect("the post is stored");
    let event_id = Event::post_created(&stored).event_id;
    assert!(
        !delivery_marked(&api.store, event_id).await,
        "not marked: the stream router delivers it"
    );
}

#[tokio::test]
async fn every_verb_on_a_hidden_post_answers_404_as_for_a_missing_one() {
    let api = start().await;
    let alice = api.account("alice").await;
    let follower = api.account("follower").await;
    let stranger = api.account("stranger").await;
    let blocked = api.account("blocked").await;
    let post_id = id_of(&create_post(&api, &alice, "mine").await);
    let comment_id = id_of(&create_comment(&api, &alice, &post_id, "first").await);
    follow(&api, &follower, &alice).await;
    api.make_private(alice.id()).await;
    block(&api, &alice, &blocked).await;

    let post = format!("/posts/{post_id}");
    let text = json!({ "text": "x" });
    for viewer in [&stranger, &blocked] {
        for (method, path, body) in [
            ("GET", post.clone(), None),
            ("PATCH", post.clone(), Some(&text)),
            ("DELETE", post.clone(), None),
            ("PUT", format!("{post}/like"), None),
            ("DELETE", format!("{post}/like"), None),
            ("GET", format!("{post}/comments"), None),
            ("POST", format!("{post}/comments"), Some(&text)),
            ("DELETE", format!("{post}/comments/{comment_id}"), None),
        ] {
            let response = match body {
                Some(body) => api.call_json(viewer, method, &path, body.clone()).await,
                None => api.call(viewer, method, &path).await,
            };
            assert_error(&response, 404, "not_found");
        }
    }
    // Someone who can see the post is told why a write is refused.
    let response = api.call_json(&follower, "PATCH", &post, text.clone()).await;
    assert_error(&response, 403, "forbidden");
    assert_error(
        &api.call(&follower, "DELETE", &post).await,
        403,
        "forbidden",
    );
    // Nothing was changed by the refused writes.
    let current = api.call(&alice, "GET", &post).await;
    assert_eq!(current.body["text"], "mine");
    assert_eq!(current.body["like_count"], 0);
}

/// The texts of a post's first page of comments as `viewer` lists them.
async fn comment_texts(api: &TestApi, viewer: &TestAccount, post_id: &str) -> Vec<String> {
    let response = api
        .call(viewer, "GET", &format!("/posts/{post_id}/comments"))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_comment_list_leaves_out_comments_of_users_in_a_block_with_the_viewer() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    let dave = api.account("dave").await;
    let post_id = id_of(&create_post(&api, &alice, "discuss").await);
    for (author, text) in [(&bob, "bob's"), (&carol, "carol's"), (&dave, "dave's")] {
        create_comment(&api, author, &post_id, text).await;
    }
    // Carol blocks bob; dave blocks carol (the other direction).
    block(&api, &carol, &bob).await;
    block(&api, &dave, &carol).await;

    let texts = |viewer| comment_texts(&api, viewer, &post_id);
    assert_eq!(
        texts(&carol).await,
        ["carol's"],
        "both directions of a block hide"
    );
    assert_eq!(texts(&bob).await, ["bob's", "dave's"]);
    assert_eq!(texts(&alice).await, ["bob's", "carol's", "dave's"]);
}

#[tokio::test]
async fn likes_and_unlikes_share_a_budget_checked_before_the_post_is_touched() {
    let (api, clock) = start_on_manual_clock(&[("RATE_LIMIT_LIKES_PER_MINUTE", "2")]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let post_id = id_of(&create_post(&api, &alice, "like me").await);
    let path = format!("/posts/{post_id}/like");
    assert_eq!(api.call(&bob, "PUT", &path).await.status, 200);
    assert_eq!(api.call(&bob, "DELETE", &path).await.status, 200);
    let notifications_before = recent_notifications(&api.store, alice.id()).await.len();

    for method in ["PUT", "DELETE"] {
        let response = api.call(&bob, method, &path).await;
        assert_error(&response, 429, "rate_limited");
        let retry_after: u64 = response.headers["retry-after"].parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{method}: {retry_after}");
    }
    // Over budget nothing was written: no like, no new notification.
    let stored = api
        .store
        .get_post(post_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.like_count, 0);
    assert_eq!(
        recent_notifications(&api.store, alice.id()).await.len(),
        notifications_before
    );
    // Even a missing post is refused first: the budget goes before any read.
    let missing = format!("/posts/{}/like", PostId::new());
    assert_error(&api.call(&bob, "PUT", &missing).await, 429, "rate_limited");
    // The budget is per user, and a new window restores it.
    assert_eq!(api.call(&alice, "PUT", &path).await.status, 200);
    clock.advance(Duration::seconds(61));
    let liked = api.call(&bob, "PUT", &path).await;
    assert_eq!(liked.status, 200, "{}", liked.body);
    assert_eq!(liked.body["like_count"], 2);
}
