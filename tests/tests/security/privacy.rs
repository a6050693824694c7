//! The visibility policy (`shared::visibility`) at every door a user can try: REST verbs on
//! a hidden post, the comment list, a post room after a block or a switch to private, and
//! resume / `GET /events` after a block.

use std::time::Duration;

use ripple_tests::realtime::{RealtimeStack, User, QUIET, WAIT};
use serde_json::{json, Value};

fn text(value: &Value, pointer: &str) -> String {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value}"))
        .to_owned()
}

/// A resume cursor for a moment `ago` before now (the smallest UUIDv7 of that millisecond).
fn cursor_before(ago: Duration) -> String {
    let ms = u64::try_from(chrono::Utc::now().timestamp_millis()).expect("after 1970")
        - u64::try_from(ago.as_millis()).expect("a short time");
    uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10])
        .into_uuid()
        .to_string()
}

/// An event of type `kind` about the post or comment `id`.
fn about(kind: &'static str, id: String) -> impl Fn(&Value) -> bool {
    move |event| {
        event["type"] == kind
            && (event["data"]["id"] == id.as_str() || event["data"]["post_id"] == id.as_str())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_block_stops_the_blocked_users_room_events_and_ends_the_membership() {
    let stack = RealtimeStack::start().await;
    let alice = stack.register("alice").await;
    let bob = stack.register("bob").await;
    let carol = stack.register("carol").await;
    let post = stack.post(&alice, "room with a view").await;
    let post_id = text(&post, "/id");
    let channel = format!("post:{post_id}");
    let bob_socket = stack.connect(&bob).await;
    let carol_socket = stack.connect(&carol).await;
    bob_socket.subscribe(&channel).await;
    carol_socket.subscribe(&channel).await;

    stack.block(&alice, &bob).await;
    let comment = stack.comment(&carol, &post_id, "first").await;
    stack
        .call(
            &alice,
            "PATCH",
            &format!("/posts/{post_id}"),
            Some(json!({"text": "room with a better view"})),
            200,
        )
        .await;

    carol_socket
        .next_event_where(
            "carol's new_comment",
            WAIT,
            about("new_comment", text(&comment, "/id")),
        )
        .await;
    carol_socket
        .next_event_where("post_updated", WAIT, about("post_updated", post_id.clone()))
        .await;
    bob_socket.assert_no_event("new_comment", QUIET).await;
    bob_socket
        .assert_no_event("post_updated", Duration::ZERO)
        .await;
    let members = stack.sort_keys(&format!("ROOM#{channel}"), "CONN#").await;
    assert_eq!(
        members.len(),
        1,
        "only carol's membership is left: {members:?}"
    );
    // Subscribing again is refused as for a post that does not exist.
    let reply = bob_socket
        .request(json!({"action": "subscribe", "channel": channel}))
        .await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["data"]["code"], "not_found", "{reply}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_to_private_stops_room_events_for_members_who_do_not_follow() {
    let stack = RealtimeStack::start().await;
    let alice = stack.register("alice").await;
    let follower = stack.register("follower").await;
    let stranger = stack.register("stranger").await;
    stack.follow(&follower, &alice).await;
    let post_id = text(&stack.post(&alice, "public for now").await, "/id");
    let channel = format!("post:{post_id}");
    let follower_socket = stack.connect(&follower).await;
    let stranger_socket = stack.connect(&stranger).await;
    follower_socket.subscribe(&channel).await;
    stranger_socket.subscribe(&channel).await;

    stack
        .update_profile(&alice, json!({"is_private": true}))
        .await;
    stack.like(&alice, &post_id).await;

    follower_socket
        .next_event_where("like_updated", WAIT, about("like_updated", post_id.clone()))
        .await;
    stranger_socket.assert_no_event("like_updated", QUIET).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_verb_on_a_hidden_post_answers_404_never_403() {
    let stack = RealtimeStack::start().await;
    let alice = stack.register("alice").await;
    let stranger = stack.register("stranger").await;
    let blocked = stack.register("blocked").await;
    let post_id = text(&stack.post(&alice, "soon hidden").await, "/id");
    let comment_id = text(&stack.comment(&alice, &post_id, "mine").await, "/id");
    stack
        .update_profile(&alice, json!({"is_private": true}))
        .await;
    stack.block(&alice, &blocked).await;

    let post = format!("/posts/{post_id}");
    let body = || Some(json!({"text": "x"}));
    for user in [&stranger, &blocked] {
        for (method, path, body) in [
            ("GET", post.clone(), None),
            ("PATCH", post.clone(), body()),
            ("DELETE", post.clone(), None),
            ("PUT", format!("{post}/like"), None),
            ("DELETE", format!("{post}/like"), None),
            ("GET", format!("{post}/comments"), None),
            ("POST", format!("{post}/comments"), body()),
            ("DELETE", format!("{post}/comments/{comment_id}"), None),
        ] {
            let answer = stack.call(user, method, &path, body, 404).await;
            assert_eq!(answer["error"]["code"], "not_found", "{method} {path}");
        }
    }
    stack.stop().await;
}

/// The texts of a post's first page of comments as `user` lists them.
async fn comment_texts(stack: &RealtimeStack, user: &User, post_id: &str) -> Vec<String> {
    let path = format!("/posts/{post_id}/comments");
    let page = stack.call(user, "GET", &path, None, 200).await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| text(c, "/text"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn comments_of_a_blocked_user_are_not_listed_either_way() {
    let stack = RealtimeStack::start().await;
    let alice = stack.register("alice").await;
    let carol = stack.register("carol").await;
    let mallory = stack.register("mallory").await;
    let post_id = text(&stack.post(&alice, "discuss").await, "/id");
    stack.comment(&mallory, &post_id, "from mallory").await;
    stack.comment(&carol, &post_id, "from carol").await;
    stack.block(&carol, &mallory).await;

    let texts = |user| comment_texts(&stack, user, &post_id);
    assert_eq!(texts(&carol).await, ["from carol"]);
    assert_eq!(texts(&mallory).await, ["from mallory"]);
    assert_eq!(texts(&alice).await, ["from mallory", "from carol"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_and_get_events_replay_nothing_from_a_blocked_user() {
    let stack = RealtimeStack::start().await;
    let bob = stack.register("bob").await;
    let carol = stack.register("carol").await;
    let mallory = stack.register("mallory").await;
    let since = cursor_before(Duration::from_secs(1));
    stack.follow(&mallory, &bob).await;
    stack.message(&mallory, &bob, "hi bob").await;
    stack.follow(&carol, &bob).await;
    stack.message(&carol, &bob, "hello").await;
    stack.block(&bob, &mallory).await;

    let (socket, resumed) = stack.connect_and_resume(&bob, &since).await;
    // The socket's inbox holds a `replay` frame's events one by one, before `resumed`.
    let replayed: Vec<Value> = socket
        .events()
        .into_iter()
        .filter(|event| {
            ["new_notification", "new_message", "message_request"]
                .contains(&event["type"].as_str().unwrap_or(""))
        })
        .collect();
    let over_rest = stack
        .call(&bob, "GET", &format!("/events?since={since}"), None, 200)
        .await;
    let listed = over_rest["events"].as_array().cloned().unwrap_or_default();
    for (door, events) in [("resume", &replayed), ("GET /events", &listed)] {
        assert!(
            events.iter().all(|e| !e.to_string().contains(&mallory.id)),
            "{door} replayed mallory's: {events:?}"
        );
        assert!(
            events.iter().any(|e| e.to_string().contains(&carol.id)),
            "{door} still has carol's: {events:?}"
        );
    }
    assert_eq!(resumed["data"]["replayed"], json!(replayed.len()));
    stack.stop().await;
}
