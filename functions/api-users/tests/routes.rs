//! Route tests of `api-users`: real API Gateway HTTP API (payload 2.0) events through the
//! function's handler, against a fresh embedded DynamoDB per test.

use std::collections::BTreeSet;
use std::sync::Arc;

use api_users::State;
use chrono::{Duration, Utc};
use serde_json::{json, Value};
use shared::auth::SigningKey;
use shared::domain::{new_id, NotificationKind, PostText, UserId};
use shared::events::Event;
use shared::http::RestState;
use shared::push::testing::RecordingPush;
use shared::store::dynamo::n;
use shared::store::page::PageRequest;
use shared::store::MAX_FOLLOWING;
use shared::testkit::api::{
    assert_error, assert_error_for, open_connection, recent_notifications, writer_push,
    TestAccount, TestApi, TestRequest, TestResponse,
};
use shared::testkit::{token_service_signing_with, TEST_KID};

/// `api-users` over a fresh database.
async fn start() -> TestApi {
    start_with(&[]).await
}

/// `api-users` over a fresh database, with configuration overrides.
async fn start_with(config: &[(&str, &str)]) -> TestApi {
    TestApi::start_with(config, |config, clients| {
        Ok(api_users::lambda_function(Arc::new(State::new(
            config, clients,
        )?)))
    })
    .await
}

/// `user`'s (followers, following) counts as stored.
async fn counts(api: &TestApi, user: UserId) -> (i64, i64) {
    let user = api.store.get_user(user).await.unwrap().unwrap();
    (user.follower_count, user.following_count)
}

/// Ids of the `user`s of a related-users list.
fn listed_ids(response: &TestResponse) -> Vec<String> {
    response.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {:?}", response.body))
        .iter()
        .map(|item| item["user"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every route with a representative path (and body, for those that take one).
fn every_route(other: UserId) -> Vec<(&'static str, String, Option<Value>)> {
    vec![
        ("GET", "/users/me".into(), None),
        ("PATCH", "/users/me".into(), Some(json!({"bio": "hi"}))),
        ("GET", "/users?q=al".into(), None),
        ("GET", format!("/users/{other}"), None),
        ("PUT", format!("/users/{other}/follow"), None),
        ("DELETE", format!("/users/{other}/follow"), None),
        ("GET", format!("/users/{other}/followers"), None),
        ("GET", format!("/users/{other}/following"), None),
        ("GET", "/follow-requests".into(), None),
        ("POST", format!("/follow-requests/{other}/accept"), None),
        ("POST", format!("/follow-requests/{other}/reject"), None),
        ("PUT", format!("/users/{other}/block"), None),
        ("DELETE", format!("/users/{other}/block"), None),
        ("GET", "/blocks".into(), None),
    ]
}

// ---- authentication and the route table -------------------------------------------------------

#[tokio::test]
async fn every_route_rejects_missing_and_invalid_tokens() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let impostor = SigningKey::generate(TEST_KID).unwrap();
    let foreign = token_service_signing_with(&api.config, &impostor)
        .issue(alice.id(), Utc::now())
        .unwrap();
    let expired = api
        .tokens
        .issue(alice.id(), Utc::now() - Duration::hours(2))
        .unwrap();
    let before = api.db.item_count().await;

    for (method, path, body) in every_route(bob.id()) {
        let request = |token: Option<&str>| {
            let request = TestRequest::new(method, &path).optional_json(body.clone());
            match token {
                Some(token) => request.token(token),
                None => request,
            }
        };
        let missing = api.send(request(None)).await;
        assert_error(&missing, 401, "unauthorized");
        for bad in ["not-a-jwt", foreign.as_str(), expired.as_str()] {
            let response = api.send(request(Some(bad))).await;
            assert_error(&response, 401, "unauthorized");
        }
        let basic = api
            .send(request(None).header("Authorization", "Basic YWxpY2U6cHc="))
            .await;
        assert_error(&basic, 401, "unauthorized");
    }
    assert_eq!(
        api.db.item_count().await,
        before,
        "rejected requests write nothing"
    );
}

#[tokio::test]
async fn a_valid_token_of_an_account_that_does_not_exist_is_unauthorized() {
    let api = start().await;
    // Correctly signed and unexpired, but for an id no account has.
    let ghost_token = api.tokens.issue(new_id(), Utc::now()).unwrap();
    let get = api
        .send(TestRequest::new("GET", "/users/me").token(&ghost_token))
        .await;
    assert_error(&get, 401, "unauthorized");
    let patch = api
        .send(
            TestRequest::new("PATCH", "/users/me")
                .token(&ghost_token)
                .json(json!({"bio": "x"})),
        )
        .await;
    assert_error(&patch, 401, "unauthorized");
}

/// The 401 test walks a table of routes; it must cover every route the router serves.
/// (That the OpenAPI spec lists exactly these routes is checked in `tests/tests/contracts.rs`.)
#[test]
fn the_unauthorized_table_covers_every_route() {
    let served: BTreeSet<(String, String)> =
        api_users::State::router().routes().into_iter().collect();
    let other = new_id();
    let tested: BTreeSet<(String, String)> = every_route(other)
        .into_iter()
        .map(|(method, path, _)| {
            let template = path.replace(&other.to_string(), "{user_id}");
            let template = template.split('?').next().unwrap_or_default().to_owned();
            (method.to_owned(), template)
        })
        .collect();
    assert_eq!(tested, served);
}

#[tokio::test]
async fn unknown_routes_are_not_found() {
    let api = start().await;
    let alice = api.account("alice").await;
    assert_error(
        &api.call(&alice, "GET", "/users/me/nothing").await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&alice, "POST", "/users/me").await,
        404,
        "not_found",
    );
}

// ---- GET/PATCH /users/me -------------------------------------------------------------------------

#[tokio::test]
async fn get_me_returns_the_callers_profile_without_secrets() {
    let api = start().await;
    let alice = api.account("Alice").await;
    let response = api.call(&alice, "GET", "/users/me").await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    let body = &response.body;
    assert_eq!(body["id"], alice.id().to_string());
    assert_eq!(body["username"], "Alice");
    assert_eq!(body["display_name"], "Alice display");
    assert_eq!(body["is_private"], false);
    assert_eq!(body["follower_count"], 0);
    assert!(body.get("relationship").is_none());
    assert!(
        !body.to_string().contains("argon2"),
        "no credentials in a profile"
    );
}

#[tokio::test]
async fn patch_me_updates_only_the_given_fields_of_the_caller() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let response = api
        .send(
            TestRequest::new("PATCH", "/users/me")
                .token(&alice.token)
                .json(json!({"display_name": "  Alice A.  ", "bio": "hello\nworld", "is_private": true})),
        )
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["display_name"], "Alice A.");
    assert_eq!(response.body["bio"], "hello\nworld");
    assert_eq!(response.body["is_private"], true);
    assert_eq!(response.body["show_presence"], true, "untouched");

    let reread = api.call(&alice, "GET", "/users/me").await;
    assert_eq!(reread.body, response.body);
    // Only the caller's own profile can be changed: bob's is untouched.
    let bobs = api.store.get_user(bob.id()).await.unwrap().unwrap();
    assert_eq!(bobs, bob.user);
}

#[tokio::test]
async fn patch_me_rejects_bad_bodies() {
    let api = start().await;
    let alice = api.account("alice").await;
    let long_bio = "b".repeat(301);
    let bodies = [
        json!({}),
        json!({"display_name": null}),
        json!({"bio": long_bio}),
        json!({"display_name": ""}),
        json!({"display_name": "two\nlines"}),
        json!({"bio": "bell\u{7}"}),
        json!({"is_private": "yes"}),
        json!({"username": "mallory"}),
        json!({"bio": "ok", "dispaly_name": "typo"}),
        json!(["bio"]),
    ];
    for body in bodies {
        let response = api
            .send(
                TestRequest::new("PATCH", "/users/me")
                    .token(&alice.token)
                    .json(body.clone()),
            )
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    for raw in ["", "{", "not json"] {
        let response = api
            .send(
                TestRequest::new("PATCH", "/users/me")
                    .token(&alice.token)
                    .raw_body(raw),
            )
            .await;
        assert_error(&response, 400, "validation_failed");
    }
    let huge = format!("{{\"bio\":\"{}\"}}", "x".repeat(70 * 1024));
    let response = api
        .send(
            TestRequest::new("PATCH", "/users/me")
                .token(&alice.token)
                .raw_body(huge),
        )
        .await;
    assert_error(&response, 413, "payload_too_large");
    // A 300-character bio is the limit, not over it.
    let ok = api
        .send(
            TestRequest::new("PATCH", "/users/me")
                .token(&alice.token)
                .json(json!({"bio": "b".repeat(300)})),
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(
        api.store
            .get_user(alice.id())
            .await
            .unwrap()
            .unwrap()
            .bio
            .len(),
        300
    );
}

// ---- GET /users/{user_id} -------------------------------------------------------------------------

#[tokio::test]
async fn get_user_returns_profile_counts_and_relationship() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    api.store
        .follow(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();

    let response = api
        .call(&alice, "GET", &format!("/users/{}", bob.id()))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["username"], "bob");
    assert_eq!(response.body["following_count"], 1);
    assert_eq!(response.body["follower_count"], 0);
    assert_eq!(response.body["post_count"], 0);
    assert_eq!(
        response.body["relationship"],
        json!({"following": false, "followed_by": true, "requested": false, "blocking": false})
    );
    let from_bob = api
        .call(&bob, "GET", &format!("/users/{}", alice.id()))
        .await;
    assert_eq!(from_bob.body["relationship"]["following"], true);
    assert_eq!(from_bob.body["follower_count"], 1);

    let own = api
        .call(&alice, "GET", &format!("/users/{}", alice.id()))
        .await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body["relationship"]["following"], false);
}

#[tokio::test]
async fn get_user_rejects_bad_ids_and_hides_unknown_and_blocked_users() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    for bad in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "123"] {
        assert_error(
            &api.call(&alice, "GET", &format!("/users/{bad}")).await,
            400,
            "validation_failed",
        );
    }
    assert_error(
        &api.call(&alice, "GET", &format!("/users/{}", UserId::new()))
            .await,
        404,
        "not_found",
    );

    api.store
        .block(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    // Neither side sees the other's profile; an unrelated user still does.
    assert_error(
        &api.call(&alice, "GET", &format!("/users/{}", bob.id()))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.call(&bob, "GET", &format!("/users/{}", alice.id()))
            .await,
        404,
        "not_found",
    );
    assert_eq!(
        api.call(&carol, "GET", &format!("/users/{}", bob.id()))
            .await
            .status,
        200
    );
}

// ---- GET /users?q= ----------------------------------------------------------------------------------

#[tokio::test]
async fn search_finds_username_prefixes_case_insensitively_and_pages() {
    let api = start().await;
    let caller = api.account("zed").await;
    for name in ["Alice", "alfred", "Albert", "bob"] {
        api.account(name).await;
    }
    let (items, _) = api.walk_pages(&caller, "/users?q=AL", 2).await;
    let mut seen = Vec::new();
    for item in &items {
        assert!(item["id"].is_string() && item["display_name"].is_string());
        seen.push(item["username"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        vec!["Albert", "alfred", "Alice"],
        "username order, each once"
    );
    let none = api.call(&caller, "GET", "/users?q=xyz").await;
    assert_eq!(none.body, json!({"items": [], "next_cursor": null}));
}

#[tokio::test]
async fn search_leaves_out_users_on_the_other_side_of_a_block() {
    let api = start().await;
    let caller = api.account("caller").await;
    let blocked = api.account("sam").await;
    let blocker = api.account("sara").await;
    let visible = api.account("sandy").await;
    api.store
        .block(caller.id(), blocked.id(), Utc::now())
        .await
        .unwrap();
    api.store
        .block(blocker.id(), caller.id(), Utc::now())
        .await
        .unwrap();
    let response = api.call(&caller, "GET", "/users?q=sa").await;
    assert_eq!(response.status, 200);
    let ids: Vec<&str> = response.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![visible.id().to_string()]);
}

#[tokio::test]
async fn search_rejects_bad_queries_limits_and_cursors() {
    let api = start().await;
    let caller = api.account("caller").await;
    let long = "a".repeat(31);
    for path in [
        "/users".to_owned(),
        "/users?q=".to_owned(),
        "/users?q=a-b".to_owned(),
        "/users?q=%C3%A9".to_owned(),
        format!("/users?q={long}"),
        "/users?q=a&limit=0".to_owned(),
        "/users?q=a&limit=101".to_owned(),
        "/users?q=a&limit=x".to_owned(),
        "/users?q=a&cursor=garbage".to_owned(),
    ] {
        assert_error(
            &api.call(&caller, "GET", &path).await,
            400,
            "validation_failed",
        );
    }
    // A valid cursor of another prefix's partition is refused, not followed.
    api.account("bob1").await;
    api.account("bob2").await;
    let first = api.call(&caller, "GET", "/users?q=bob&limit=1").await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let foreign = api
        .call(&caller, "GET", &format!("/users?q=ca&cursor={cursor}"))
        .await;
    assert_error(&foreign, 400, "validation_failed");
}

// ---- PUT/DELETE /users/{user_id}/follow ---------------------------------------------------------------

#[tokio::test]
async fn follow_a_public_account_is_immediate_and_idempotent() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let path = format!("/users/{}/follow", bob.id());
    for _ in 0..2 {
        let response = api.call(&alice, "PUT", &path).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, json!({"status": "following"}));
    }
    assert_eq!(counts(&api, bob.id()).await, (1, 0));
    assert_eq!(counts(&api, alice.id()).await, (0, 1));
}

#[tokio::test]
async fn follow_a_private_account_is_a_request_until_accepted() {
    let api = start().await;
    let alice = api.account("alice").await;
    let private = api.private_account("private").await;
    let path = format!("/users/{}/follow", private.id());
    for _ in 0..2 {
        let response = api.call(&alice, "PUT", &path).await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, json!({"status": "requested"}));
    }
    assert_eq!(counts(&api, private.id()).await, (0, 0));
    let profile = api
        .call(&alice, "GET", &format!("/users/{}", private.id()))
        .await;
    assert_eq!(profile.body["relationship"]["requested"], true);
    assert_eq!(profile.body["relationship"]["following"], false);
    let requests = api.call(&private, "GET", "/follow-requests").await;
    assert_eq!(
        listed_ids(&requests),
        vec![alice.id().to_string()],
        "one request, not two"
    );
}

#[tokio::test]
async fn follow_rejects_self_bad_ids_unknown_and_blocked_users() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    assert_error(
        &api.call(&alice, "PUT", &format!("/users/{}/follow", alice.id()))
            .await,
        400,
        "validation_failed",
    );
    assert_error(
        &api.call(&alice, "PUT", "/users/nope/follow").await,
        400,
        "validation_failed",
    );
    assert_error(
        &api.call(&alice, "PUT", &format!("/users/{}/follow", UserId::new()))
            .await,
        404,
        "not_found",
    );

    api.store
        .block(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    api.store
        .block(alice.id(), carol.id(), Utc::now())
        .await
        .unwrap();
    // Blocked by bob, and blocking carol: neither can be followed, and neither can follow alice.
    for (who, target) in [
        (&alice, &bob),
        (&bob, &alice),
        (&alice, &carol),
        (&carol, &alice),
    ] {
        let response = api
            .call(who, "PUT", &format!("/users/{}/follow", target.id()))
            .await;
        assert_error(&response, 404, "not_found");
    }
    assert_eq!(counts(&api, alice.id()).await, (0, 0));
}

/// Sets `user`'s `following_count` as if they followed `count` accounts (the follow cap's
/// condition reads only this counter).
async fn seed_following_count(api: &TestApi, user: UserId, count: usize) {
    let set = api
        .store
        .table
        .update_if(
            &shared::store::keys::user_profile(user),
            "SET following_count = :count",
            "attribute_exists(pk)",
            &[],
            vec![(":count", n(count as i64))],
        )
        .await
        .unwrap();
    assert!(set);
}

#[tokio::test]
async fn follows_past_the_cap_are_409_follow_limit_reached() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    let private = api.private_account("private").await;
    seed_following_count(&api, alice.id(), MAX_FOLLOWING - 2).await;

    // A request below the cap is taken; then the 5,000th follow.
    for (target, status) in [(&private, "requested"), (&bob, "following")] {
        let response = api
            .call(&alice, "PUT", &format!("/users/{}/follow", target.id()))
            .await;
        assert_eq!(response.status, 200, "{:?}", response.body);
        assert_eq!(response.body, json!({"status": status}));
    }
    let private_too = api.private_account("private_too").await;
    seed_following_count(&api, alice.id(), MAX_FOLLOWING).await;

    // The 5,001st: refused for a public account and for a private one (no request).
    for target in [&carol, &private_too] {
        let response = api
            .call(&alice, "PUT", &format!("/users/{}/follow", target.id()))
            .await;
        assert_error(&response, 409, "follow_limit_reached");
        assert!(
            response.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("5000"),
            "{}",
            response.body
        );
    }
    assert_eq!(counts(&api, carol.id()).await, (0, 0));
    assert!(listed_ids(&api.call(&private_too, "GET", "/follow-requests").await).is_empty());
    // Already following bob: still 200, nothing written.
    let again = api
        .call(&alice, "PUT", &format!("/users/{}/follow", bob.id()))
        .await;
    assert_eq!(again.body, json!({"status": "following"}));

    // The request taken below the cap cannot be accepted now; it stays pending.
    let accept = api
        .call(
            &private,
            "POST",
            &format!("/follow-requests/{}/accept", alice.id()),
        )
        .await;
    assert_error(&accept, 409, "follow_limit_reached");
    assert_eq!(
        listed_ids(&api.call(&private, "GET", "/follow-requests").await),
        vec![alice.id().to_string()]
    );
    assert_eq!(counts(&api, private.id()).await, (0, 0));

    // One unfollow frees the slot the accept needs.
    let unfollow = api
        .call(&alice, "DELETE", &format!("/users/{}/follow", bob.id()))
        .await;
    assert_eq!(unfollow.status, 204);
    let accept = api
        .call(
            &private,
            "POST",
            &format!("/follow-requests/{}/accept", alice.id()),
        )
        .await;
    assert_eq!(accept.status, 204, "{:?}", accept.body);
    assert_eq!(counts(&api, alice.id()).await, (0, MAX_FOLLOWING as i64));
}

#[tokio::test]
async fn unfollow_removes_the_follow_or_the_pending_request_and_is_idempotent() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let private = api.private_account("private").await;
    api.call(&alice, "PUT", &format!("/users/{}/follow", bob.id()))
        .await;
    api.call(&alice, "PUT", &format!("/users/{}/follow", private.id()))
        .await;

    for _ in 0..2 {
        let response = api
            .call(&alice, "DELETE", &format!("/users/{}/follow", bob.id()))
            .await;
        assert_eq!(response.status, 204, "{:?}", response.body);
        assert_eq!(response.body, Value::Null);
    }
    assert_eq!(counts(&api, bob.id()).await, (0, 0));
    assert_eq!(counts(&api, alice.id()).await, (0, 0));

    let cancel = api
        .call(&alice, "DELETE", &format!("/users/{}/follow", private.id()))
        .await;
    assert_eq!(cancel.status, 204);
    let requests = api.call(&private, "GET", "/follow-requests").await;
    assert!(
        listed_ids(&requests).is_empty(),
        "the pending request was cancelled"
    );

    assert_error(
        &api.call(&alice, "DELETE", "/users/nope/follow").await,
        400,
        "validation_failed",
    );
    assert_error(
        &api.call(&alice, "DELETE", &format!("/users/{}/follow", alice.id()))
            .await,
        400,
        "validation_failed",
    );
}

#[tokio::test]
async fn follows_over_budget_are_rate_limited_with_retry_after() {
    let api = start_with(&[("RATE_LIMIT_FOLLOWS_PER_MINUTE", "1")]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    let first = api
        .call(&alice, "PUT", &format!("/users/{}/follow", bob.id()))
        .await;
    assert_eq!(first.status, 200);
    let second = api
        .call(&alice, "PUT", &format!("/users/{}/follow", carol.id()))
        .await;
    assert_error(&second, 429, "rate_limited");
    let retry_after: u64 = second.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        counts(&api, carol.id()).await,
        (0, 0),
        "nothing written over budget"
    );
    // The budget is per user.
    let other = api
        .call(&bob, "PUT", &format!("/users/{}/follow", carol.id()))
        .await;
    assert_eq!(other.status, 200);
}

// ---- GET /users/{user_id}/followers|following -----------------------------------------------------------

#[tokio::test]
async fn follower_and_following_lists_embed_user_summaries_and_page() {
    let api = start().await;
    let star = api.account("star").await;
    let viewer = api.account("viewer").await;
    let mut fans = BTreeSet::new();
    for n in 0..5 {
        let fan = api.account(&format!("fan{n}")).await;
        api.call(&fan, "PUT", &format!("/users/{}/follow", star.id()))
            .await;
        api.call(&star, "PUT", &format!("/users/{}/follow", fan.id()))
            .await;
        fans.insert(fan.id().to_string());
    }
    for list in ["followers", "following"] {
        let (items, pages) = api
            .walk_pages(&viewer, &format!("/users/{}/{list}", star.id()), 2)
            .await;
        let mut seen = Vec::new();
        for item in &items {
            assert!(item["user"]["username"]
                .as_str()
                .unwrap()
                .starts_with("fan"));
            assert!(item["user"]["display_name"].is_string());
            assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
            seen.push(item["user"]["id"].as_str().unwrap().to_owned());
        }
        assert_eq!(pages, 3, "{list}");
        assert_eq!(seen.len(), 5, "{list}: each once");
        assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), fans, "{list}");
    }
}

#[tokio::test]
async fn private_follow_lists_are_for_the_owner_and_approved_followers_only() {
    let api = start().await;
    let private = api.private_account("private").await;
    let follower = api.account("follower").await;
    let stranger = api.account("stranger").await;
    api.call(&follower, "PUT", &format!("/users/{}/follow", private.id()))
        .await;
    let accepted = api
        .call(
            &private,
            "POST",
            &format!("/follow-requests/{}/accept", follower.id()),
        )
        .await;
    assert_eq!(accepted.status, 204, "{:?}", accepted.body);

    for list in ["followers", "following"] {
        let path = format!("/users/{}/{list}", private.id());
        assert_error(&api.call(&stranger, "GET", &path).await, 403, "forbidden");
        assert_eq!(api.call(&private, "GET", &path).await.status, 200);
        assert_eq!(api.call(&follower, "GET", &path).await.status, 200);
    }
    let followers = api
        .call(
            &follower,
            "GET",
            &format!("/users/{}/followers", private.id()),
        )
        .await;
    assert_eq!(listed_ids(&followers), vec![follower.id().to_string()]);
}

#[tokio::test]
async fn follow_lists_hide_blocked_pairs_and_reject_bad_input() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    api.call(&carol, "PUT", &format!("/users/{}/follow", alice.id()))
        .await;
    api.call(&bob, "PUT", &format!("/users/{}/follow", alice.id()))
        .await;
    api.store
        .block(carol.id(), bob.id(), Utc::now())
        .await
        .unwrap();

    // Bob looks at alice's followers: carol, who blocks him, is left out.
    let seen_by_bob = api
        .call(&bob, "GET", &format!("/users/{}/followers", alice.id()))
        .await;
    assert_eq!(listed_ids(&seen_by_bob), vec![bob.id().to_string()]);
    let seen_by_alice = api
        .call(&alice, "GET", &format!("/users/{}/followers", alice.id()))
        .await;
    assert_eq!(listed_ids(&seen_by_alice).len(), 2);
    // Carol's own lists are hidden from bob entirely.
    for list in ["followers", "following"] {
        let response = api
            .call(&bob, "GET", &format!("/users/{}/{list}", carol.id()))
            .await;
        assert_error(&response, 404, "not_found");
    }
    for path in [
        "/users/not-a-uuid/followers".to_owned(),
        format!("/users/{}/followers?limit=0", alice.id()),
        format!("/users/{}/following?limit=1000", alice.id()),
        format!("/users/{}/followers?cursor=%%%", alice.id()),
        format!("/users/{}/following?cursor=eyJwayI6IngifQ", alice.id()),
    ] {
        assert_error(
            &api.call(&bob, "GET", &path).await,
            400,
            "validation_failed",
        );
    }
    assert_error(
        &api.call(&bob, "GET", &format!("/users/{}/followers", UserId::new()))
            .await,
        404,
        "not_found",
    );
    // A cursor of alice's followers does not read bob's.
    let first = api
        .call(
            &alice,
            "GET",
            &format!("/users/{}/followers?limit=1", alice.id()),
        )
        .await;
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let foreign = api
        .call(
            &alice,
            "GET",
            &format!("/users/{}/followers?cursor={cursor}", bob.id()),
        )
        .await;
    assert_error(&foreign, 400, "validation_failed");
}

// ---- follow requests ------------------------------------------------------------------------------

#[tokio::test]
async fn follow_requests_are_listed_oldest_first_and_accepted_or_rejected() {
    let api = start().await;
    let private = api.private_account("private").await;
    let first = api.account("first").await;
    let second = api.account("second").await;
    for requester in [&second, &first] {
        api.call(requester, "PUT", &format!("/users/{}/follow", private.id()))
            .await;
    }
    let listed = api.call(&private, "GET", "/follow-requests").await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert_eq!(
        listed_ids(&listed),
        vec![second.id().to_string(), first.id().to_string()]
    );
    assert_eq!(listed.body["items"][0]["user"]["username"], "second");

    let accept = api
        .call(
            &private,
            "POST",
            &format!("/follow-requests/{}/accept", second.id()),
        )
        .await;
    assert_eq!(accept.status, 204);
    let reject = api
        .call(
            &private,
            "POST",
            &format!("/follow-requests/{}/reject", first.id()),
        )
        .await;
    assert_eq!(reject.status, 204);
    assert_eq!(counts(&api, private.id()).await, (1, 0));
    let profile = api
        .call(&second, "GET", &format!("/users/{}", private.id()))
        .await;
    assert_eq!(profile.body["relationship"]["following"], true);
    let rejected = api
        .call(&first, "GET", &format!("/users/{}", private.id()))
        .await;
    assert_eq!(rejected.body["relationship"]["following"], false);
    assert_eq!(rejected.body["relationship"]["requested"], false);
    assert!(listed_ids(&api.call(&private, "GET", "/follow-requests").await).is_empty());

    // Nothing pending any more.
    for action in ["accept", "reject"] {
        let again = api
            .call(
                &private,
                "POST",
                &format!("/follow-requests/{}/{action}", second.id()),
            )
            .await;
        assert_error(&again, 404, "not_found");
    }
}

#[tokio::test]
async fn follow_requests_of_another_user_cannot_be_read_or_answered() {
    let api = start().await;
    let private = api.private_account("private").await;
    let requester = api.account("requester").await;
    let intruder = api.account("intruder").await;
    api.call(
        &requester,
        "PUT",
        &format!("/users/{}/follow", private.id()),
    )
    .await;

    // The intruder's list is their own (empty), whatever they try.
    assert!(listed_ids(&api.call(&intruder, "GET", "/follow-requests").await).is_empty());
    // Answering "the request from requester" as the intruder addresses the intruder's own
    // (non-existent) request: 404, and the private account's request is untouched.
    for action in ["accept", "reject"] {
        let response = api
            .call(
                &intruder,
                "POST",
                &format!("/follow-requests/{}/{action}", requester.id()),
            )
            .await;
        assert_error(&response, 404, "not_found");
    }
    // Nor can the requester accept their own request.
    let own = api
        .call(
            &requester,
            "POST",
            &format!("/follow-requests/{}/accept", private.id()),
        )
        .await;
    assert_error(&own, 404, "not_found");
    assert_eq!(
        listed_ids(&api.call(&private, "GET", "/follow-requests").await),
        vec![requester.id().to_string()]
    );
    assert_eq!(counts(&api, private.id()).await, (0, 0));
}

#[tokio::test]
async fn follow_request_routes_reject_bad_input() {
    let api = start().await;
    let alice = api.account("alice").await;
    for path in [
        "/follow-requests/not-a-uuid/accept",
        "/follow-requests/not-a-uuid/reject",
        "/follow-requests?limit=0",
        "/follow-requests?cursor=garbage",
    ] {
        let method = if path.contains("?") { "GET" } else { "POST" };
        assert_error(
            &api.call(&alice, method, path).await,
            400,
            "validation_failed",
        );
    }
    // The caller's own id: a 400 (accepting it once was a 500: the transaction named the
    // same items twice).
    for action in ["accept", "reject"] {
        let path = format!("/follow-requests/{}/{action}", alice.id());
        let response = api.call(&alice, "POST", &path).await;
        assert_error_for(&response, 400, "validation_failed", &path);
        let message = response.body["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains("yourself"), "{path}: {}", response.body);
    }
}

// ---- blocks ---------------------------------------------------------------------------------------

#[tokio::test]
async fn block_removes_follows_both_ways_and_is_listed_only_to_the_blocker() {
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    api.call(&alice, "PUT", &format!("/users/{}/follow", bob.id()))
        .await;
    api.call(&bob, "PUT", &format!("/users/{}/follow", alice.id()))
        .await;
    assert_eq!(counts(&api, alice.id()).await, (1, 1));
    let carol = api.account("carol").await;
    api.call(&carol, "PUT", &format!("/users/{}/follow", alice.id()))
        .await;
    assert_eq!(api.store.unread_count(alice.id()).await.unwrap(), 2);
    assert_eq!(api.store.unread_count(bob.id()).await.unwrap(), 1);

    for _ in 0..2 {
        let response = api
            .call(&alice, "PUT", &format!("/users/{}/block", bob.id()))
            .await;
        assert_eq!(response.status, 204, "{:?}", response.body);
    }
    assert_eq!(counts(&api, alice.id()).await, (1, 0));
    assert_eq!(counts(&api, bob.id()).await, (0, 0));
    // Their follow notifications are hidden from each other now, and no longer unread;
    // carol's follow of alice still is.
    assert_eq!(api.store.unread_count(alice.id()).await.unwrap(), 1);
    assert_eq!(api.store.unread_count(bob.id()).await.unwrap(), 0);
    let unread = api
        .store
        .notifications(alice.id(), true, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(unread.items.len(), 1);
    assert_eq!(unread.items[0].actor_id, carol.id());
    let profile = api
        .call(&bob, "GET", &format!("/users/{}", alice.id()))
        .await;
    assert_error(&profile, 404, "not_found");

    let blocks = api.call(&alice, "GET", "/blocks").await;
    assert_eq!(blocks.status, 200);
    assert_eq!(listed_ids(&blocks), vec![bob.id().to_string()]);
    assert_eq!(blocks.body["items"][0]["user"]["username"], "bob");
    // Bob's own list is empty: the blocks of another user are never visible.
    assert!(listed_ids(&api.call(&bob, "GET", "/blocks").await).is_empty());
    // Bob cannot lift alice's block: DELETE addresses bob's own (non-existent) block.
    let lift = api
        .call(&bob, "DELETE", &format!("/users/{}/block", alice.id()))
        .await;
    assert_eq!(lift.status, 204);
    assert!(
        api.store
            .relationship(alice.id(), bob.id())
            .await
            .unwrap()
            .blocking
    );

    for _ in 0..2 {
        let unblock = api
            .call(&alice, "DELETE", &format!("/users/{}/block", bob.id()))
            .await;
        assert_eq!(unblock.status, 204);
    }
    assert!(listed_ids(&api.call(&alice, "GET", "/blocks").await).is_empty());
    assert_eq!(
        api.call(&bob, "GET", &format!("/users/{}", alice.id()))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn block_routes_reject_self_bad_ids_unknown_users_and_bad_pages() {
    let api = start().await;
    let alice = api.account("alice").await;
    for method in ["PUT", "DELETE"] {
        assert_error(
            &api.call(&alice, method, &format!("/users/{}/block", alice.id()))
                .await,
            400,
            "validation_failed",
        );
        assert_error(
            &api.call(&alice, method, "/users/xyz/block").await,
            400,
            "validation_failed",
        );
    }
    assert_error(
        &api.call(&alice, "PUT", &format!("/users/{}/block", UserId::new()))
            .await,
        404,
        "not_found",
    );
    for path in [
        "/blocks?limit=-1",
        "/blocks?cursor=AAAA",
        "/blocks?limit=2.5",
    ] {
        assert_error(
            &api.call(&alice, "GET", path).await,
            400,
            "validation_failed",
        );
    }
}

// ---- event fixtures ---------------------------------------------------------------------------------

/// The `cargo lambda invoke --data-file` fixtures are real events this function accepts:
/// each is invoked with its placeholder token and user id swapped for real ones.
#[tokio::test]
async fn the_event_fixtures_invoke_the_function() {
    const FIXTURE_USER: &str = "0190f5a4-7b1e-7c3a-9d2e-00000000b0b0";
    let api = start().await;
    let alice = api.private_account("alice").await;
    let bob = api.account("bob").await;
    api.store
        .request_follow(bob.id(), alice.id(), Utc::now())
        .await
        .unwrap();
    // In order: each step sees the state the previous ones left.
    let expected = [
        ("get-me", include_str!("../fixtures/get-me.json"), 200),
        ("update-me", include_str!("../fixtures/update-me.json"), 200),
        ("get-user", include_str!("../fixtures/get-user.json"), 200),
        (
            "search-users",
            include_str!("../fixtures/search-users.json"),
            200,
        ),
        (
            "list-follow-requests",
            include_str!("../fixtures/list-follow-requests.json"),
            200,
        ),
        (
            "accept-follow-request",
            include_str!("../fixtures/accept-follow-request.json"),
            204,
        ),
        // Already accepted: nothing left to reject.
        (
            "reject-follow-request",
            include_str!("../fixtures/reject-follow-request.json"),
            404,
        ),
        ("follow", include_str!("../fixtures/follow.json"), 200),
        (
            "list-followers",
            include_str!("../fixtures/list-followers.json"),
            200,
        ),
        (
            "list-following",
            include_str!("../fixtures/list-following.json"),
            200,
        ),
        ("unfollow", include_str!("../fixtures/unfollow.json"), 204),
        ("block", include_str!("../fixtures/block.json"), 204),
        (
            "list-blocks",
            include_str!("../fixtures/list-blocks.json"),
            200,
        ),
        ("unblock", include_str!("../fixtures/unblock.json"), 204),
    ];
    for (name, text, status) in expected {
        let text = text
            .replace("<ACCESS_TOKEN>", &alice.token)
            .replace(FIXTURE_USER, &bob.id().to_string());
        let event: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let response = api
            .function
            .invoke(event, lambda_http::Context::default())
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(response["statusCode"], status, "{name}: {response}");
        assert_eq!(
            response["headers"]["x-request-id"],
            format!("fixture-{name}")
        );
    }
    assert_eq!(
        counts(&api, alice.id()).await,
        (0, 0),
        "accepted, then blocked"
    );
    let alice_now = api.store.get_user(alice.id()).await.unwrap().unwrap();
    assert_eq!(alice_now.display_name, "Alice A.");
}

// ---- the writer push -------------------------------------------------------------------------

#[tokio::test]
async fn follows_requests_and_accepts_push_their_notification_before_the_response() {
    let push = Arc::new(RecordingPush::new());
    let recorder = push.clone();
    let api = TestApi::start_with(&[], move |config, clients| {
        let writer = writer_push(&config, clients, recorder);
        Ok(api_users::lambda_function(Arc::new(
            State::new(config, clients)?.with_writer_push(writer),
        )))
    })
    .await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let private = api.private_account("private").await;
    for (user, connection) in [
        (&alice, "alice-1="),
        (&bob, "bob-1="),
        (&private, "private-1="),
    ] {
        open_connection(&api.store, user.id(), connection).await;
    }
    let pushed_notifications = |connection: &str| -> Vec<String> {
        push.event_ids_of_type(connection, "new_notification")
    };
    let router_ids = |notifications: Vec<shared::domain::Notification>| -> Vec<String> {
        notifications
            .iter()
            .map(|n| Event::new_notification(n).event_id.to_string())
            .collect()
    };

    // A follow: Alice is told, with the id the stream router gives the notification.
    let followed = api
        .call(&bob, "PUT", &format!("/users/{}/follow", alice.id()))
        .await;
    assert_eq!(followed.body["status"], "following");
    let notifications = recent_notifications(&api.store, alice.id()).await;
    assert_eq!(pushed_notifications("alice-1="), router_ids(notifications));
    assert!(push.events_to("bob-1=").is_empty());

    // A follow request to a private account, then its acceptance.
    let requested = api
        .call(&bob, "PUT", &format!("/users/{}/follow", private.id()))
        .await;
    assert_eq!(requested.body["status"], "requested");
    let notifications = recent_notifications(&api.store, private.id()).await;
    assert_eq!(notifications[0].kind, NotificationKind::FollowRequest);
    assert_eq!(
        pushed_notifications("private-1="),
        router_ids(notifications)
    );

    let accepted = api
        .call(
            &private,
            "POST",
            &format!("/follow-requests/{}/accept", bob.id()),
        )
        .await;
    assert_eq!(accepted.status, 204, "{:?}", accepted.body);
    let notifications = recent_notifications(&api.store, bob.id()).await;
    assert_eq!(notifications[0].kind, NotificationKind::FollowAccepted);
    assert_eq!(pushed_notifications("bob-1="), router_ids(notifications));

    // Following again after an unfollow writes no new notification: nothing pushed.
    push.clear();
    api.call(&bob, "DELETE", &format!("/users/{}/follow", alice.id()))
        .await;
    api.call(&bob, "PUT", &format!("/users/{}/follow", alice.id()))
        .await;
    assert!(push.delivered().is_empty(), "{:?}", push.delivered());
}

#[tokio::test]
async fn a_block_ends_each_users_memberships_of_the_others_post_and_presence_rooms() {
    use shared::domain::Subscription;
    use shared::store::NewPost;
    let api = start().await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    let post_by = |author: UserId| {
        let store = &api.store;
        async move {
            store
                .create_post(NewPost {
                    author,
                    text: PostText::parse("p").unwrap(),
                    media_url: None,
                    created_at: Utc::now(),
                })
                .await
                .unwrap()
                .id
        }
    };
    let (alices_post, bobs_post, carols_post) = (
        post_by(alice.id()).await,
        post_by(bob.id()).await,
        post_by(carol.id()).await,
    );
    open_connection(&api.store, bob.id(), "b1=").await;
    open_connection(&api.store, bob.id(), "b2=").await;
    open_connection(&api.store, alice.id(), "a1=").await;
    let join = |connection: &'static str, user: UserId, channel: String| {
        let store = &api.store;
        async move {
            let subscription = Subscription {
                channel,
                connection_id: connection.to_owned(),
                user_id: user,
            };
            let expires = Utc::now().timestamp() + 7200;
            store.subscribe(&subscription, expires).await.unwrap();
        }
    };
    join("b1=", bob.id(), format!("post:{alices_post}")).await;
    join("b1=", bob.id(), format!("post:{carols_post}")).await;
    join("b2=", bob.id(), format!("post:{alices_post}")).await;
    join("b2=", bob.id(), format!("presence:{}", alice.id())).await;
    join("a1=", alice.id(), format!("post:{bobs_post}")).await;

    let response = api
        .call(&alice, "PUT", &format!("/users/{}/block", bob.id()))
        .await;
    assert_eq!(response.status, 204, "{:?}", response.body);

    let members = |channel: String| {
        let store = &api.store;
        async move {
            let mut ids: Vec<String> = store
                .room_members(&channel)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.connection_id)
                .collect();
            ids.sort();
            ids
        }
    };
    assert!(members(format!("post:{alices_post}")).await.is_empty());
    assert!(members(format!("presence:{}", alice.id())).await.is_empty());
    assert!(
        members(format!("post:{bobs_post}")).await.is_empty(),
        "both ways"
    );
    assert_eq!(members(format!("post:{carols_post}")).await, ["b1="]);
    let b1 = api.store.stored_connection("b1=").await.unwrap().unwrap();
    assert_eq!(b1.rooms, [format!("post:{carols_post}")]);
}

/// `api-users` on a clock that moves only when told: a budget's one-minute window cannot
/// roll over in the middle of a test.
async fn start_on_manual_clock(config: &[(&str, &str)]) -> TestApi {
    let clock = Arc::new(shared::clock::ManualClock::new(Utc::now()));
    TestApi::start_with(config, move |config, clients| {
        Ok(api_users::lambda_function(Arc::new(State::with_clock(
            config, clients, clock,
        )?)))
    })
    .await
}

#[tokio::test]
async fn blocks_and_unblocks_share_a_budget_and_write_nothing_over_it() {
    let api = start_on_manual_clock(&[("RATE_LIMIT_BLOCKS_PER_MINUTE", "2")]).await;
    let alice = api.account("alice").await;
    let bob = api.account("bob").await;
    let carol = api.account("carol").await;
    let path = |who: &TestAccount| format!("/users/{}/block", who.id());
    assert_eq!(api.call(&alice, "PUT", &path(&bob)).await.status, 204);
    assert_eq!(api.call(&alice, "DELETE", &path(&bob)).await.status, 204);
    for method in ["PUT", "DELETE"] {
        let response = api.call(&alice, method, &path(&carol)).await;
        assert_error(&response, 429, "rate_limited");
        let retry_after: u64 = response.headers["retry-after"].parse().unwrap();
        assert!((1..=60).contains(&retry_after), "{method}: {retry_after}");
    }
    let relationship = api
        .store
        .relationship(alice.id(), carol.id())
        .await
        .unwrap();
    assert!(!relationship.blocking, "no block written over budget");
    // Another user's budget is their own.
    assert_eq!(api.call(&carol, "PUT", &path(&alice)).await.status, 204);
}

#[tokio::test]
async fn profile_edits_over_budget_are_429_and_leave_the_profile_alone() {
    let api = start_on_manual_clock(&[("RATE_LIMIT_PROFILE_EDITS_PER_MINUTE", "1")]).await;
    let alice = api.account("alice").await;
    let first = api
        .call_json(&alice, "PATCH", "/users/me", json!({"bio": "first"}))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = api
        .call_json(&alice, "PATCH", "/users/me", json!({"bio": "second"}))
        .await;
    assert_error(&second, 429, "rate_limited");
    let retry_after: u64 = second.headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let stored = api.store.get_user(alice.id()).await.unwrap().unwrap();
    assert_eq!(stored.bio, "first");
    // An invalid patch is a 400 whatever the budget: input is checked first.
    let invalid = api.call_json(&alice, "PATCH", "/users/me", json!({})).await;
    assert_error(&invalid, 400, "validation_failed");
}
