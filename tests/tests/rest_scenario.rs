//! The multi-user REST scenario of the REST issue, end to end across every function:
//! A and B register, B follows A, A posts 25 times and B's feed pages through all 25 once;
//! A goes private, C's follow becomes a request, A accepts and C sees A's posts; B blocks
//! A, and A disappears from B's feed and search and cannot message B.

use std::collections::HashSet;

use ripple_tests::RestStack;
use serde_json::json;
use shared::testkit::api::walk_pages;

#[tokio::test]
async fn social_scenario_across_all_functions() {
    let stack = RestStack::start().await;
    let a = stack.register("alice").await;
    let b = stack.register("bob").await;
    let c = stack.register("carol").await;

    // B follows A (public): following at once.
    let follow = stack
        .call(
            &stack.users,
            &b,
            "PUT",
            &format!("/users/{}/follow", a.id()),
            None,
        )
        .await;
    assert_eq!(follow.status, 200, "{:?}", follow.body);
    assert_eq!(follow.body["status"], "following");

    // A posts 25 times.
    let mut posted = Vec::new();
    for i in 0..25 {
        let response = stack
            .call(
                &stack.posts,
                &a,
                "POST",
                "/posts",
                Some(json!({ "text": format!("post {i}") })),
            )
            .await;
        assert_eq!(response.status, 201, "{:?}", response.body);
        posted.push(response.body["id"].as_str().unwrap().to_owned());
    }

    // B's feed pages through all 25, newest first, each exactly once (once the push
    // worker's feed tasks, which this REST-only stack does not run, have written it).
    stack.api.materialize_feed(b.id()).await;
    let (feed, pages) = walk_pages(&stack.posts, &b.token, "/feed", 10).await;
    let seen: Vec<String> = feed
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        25,
        "no duplicates"
    );
    let mut newest_first = posted.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // A goes private; C's follow becomes a request.
    let private = stack
        .call(
            &stack.users,
            &a,
            "PATCH",
            "/users/me",
            Some(json!({ "is_private": true })),
        )
        .await;
    assert_eq!(private.status, 200, "{:?}", private.body);
    let request = stack
        .call(
            &stack.users,
            &c,
            "PUT",
            &format!("/users/{}/follow", a.id()),
            None,
        )
        .await;
    assert_eq!(request.body["status"], "requested");
    let hidden = stack
        .call(
            &stack.posts,
            &c,
            "GET",
            &format!("/users/{}/posts", a.id()),
            None,
        )
        .await;
    assert_eq!(
        hidden.status, 403,
        "a private account's posts are not for C yet"
    );

    // A sees and accepts the request; C now sees A's posts.
    let requests = stack
        .call(&stack.users, &a, "GET", "/follow-requests", None)
        .await;
    assert_eq!(requests.status, 200);
    assert_eq!(requests.body["items"].as_array().unwrap().len(), 1);
    let accepted = stack
        .call(
            &stack.users,
            &a,
            "POST",
            &format!("/follow-requests/{}/accept", c.id()),
            None,
        )
        .await;
    assert_eq!(accepted.status, 204, "{:?}", accepted.body);
    let visible = stack
        .call(
            &stack.posts,
            &c,
            "GET",
            &format!("/users/{}/posts?limit=5", a.id()),
            None,
        )
        .await;
    assert_eq!(visible.status, 200, "{:?}", visible.body);
    assert_eq!(visible.body["items"].as_array().unwrap().len(), 5);

    // B blocks A: A disappears from B's feed and search, and A cannot message B.
    let block = stack
        .call(
            &stack.users,
            &b,
            "PUT",
            &format!("/users/{}/block", a.id()),
            None,
        )
        .await;
    assert_eq!(block.status, 204, "{:?}", block.body);
    let feed = stack.call(&stack.posts, &b, "GET", "/feed", None).await;
    assert_eq!(feed.status, 200);
    assert!(
        feed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|post| post["author"]["id"] != a.id().to_string()),
        "A's posts are gone from B's feed"
    );
    let search = stack
        .call(&stack.users, &b, "GET", "/users?q=ali", None)
        .await;
    assert_eq!(search.status, 200);
    assert!(
        search.body["items"].as_array().unwrap().is_empty(),
        "{:?}",
        search.body
    );
    let message = stack
        .call(
            &stack.messages,
            &a,
            "POST",
            &format!("/conversations/{}/messages", b.id()),
            Some(json!({ "text": "hello?" })),
        )
        .await;
    assert_eq!(message.status, 403, "{:?}", message.body);

    // The block also removed B's follow of A, with exact counters.
    let profile = stack.call(&stack.users, &a, "GET", "/users/me", None).await;
    assert_eq!(
        profile.body["follower_count"], 1,
        "only C follows A now: {:?}",
        profile.body
    );
}
