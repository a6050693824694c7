//! The materialized home feed end to end: `ripple-local` over `template.yaml` (its stream
//! filter included), REST over HTTP, the stream router queueing feed tasks on the moto SQS
//! queue and the push worker carrying them out. No handler is called directly.

use std::time::Duration;

use ripple_tests::realtime::{eventually, RealtimeStack, User};
use serde_json::Value;

/// Time for a stream record to reach the router, its task the queue, and the worker.
const PIPELINE: Duration = Duration::from_secs(20);

async fn feed_texts(stack: &RealtimeStack, viewer: &User) -> Vec<String> {
    let body = stack.call(viewer, "GET", "/feed?limit=50", None, 200).await;
    body["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|post| post["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn feed_entry_keys(stack: &RealtimeStack, viewer: &User) -> Vec<String> {
    stack.sort_keys(&format!("FEED#{}", viewer.id), "P#").await
}

#[tokio::test]
async fn posts_follows_unfollows_and_deletes_reach_the_feed_through_the_pipeline() {
    let stack = RealtimeStack::start().await;
    let ann = stack.register("ann").await;
    let bob = stack.register("bob").await;
    stack.post(&ann, "before bob followed").await;

    // The follow's stream record backfills ann's latest posts into bob's feed.
    stack.follow(&bob, &ann).await;
    eventually("the follow backfills bob's feed", PIPELINE, || async {
        feed_texts(&stack, &bob).await == ["before bob followed"]
    })
    .await;

    // A post is written into the author's and each follower's feed.
    let post: Value = stack.post(&ann, "after bob followed").await;
    // The author's own entry is part of the post's transaction: there at once.
    assert_eq!(
        feed_texts(&stack, &ann).await,
        ["after bob followed", "before bob followed"]
    );
    eventually("the post reaches bob's feed", PIPELINE, || async {
        feed_texts(&stack, &bob).await == ["after bob followed", "before bob followed"]
    })
    .await;
    assert_eq!(
        feed_entry_keys(&stack, &ann).await.len(),
        2,
        "ann's own feed"
    );

    // A delete takes the entries away again.
    let post_id = post["id"].as_str().unwrap_or_default().to_owned();
    stack
        .call(&ann, "DELETE", &format!("/posts/{post_id}"), None, 204)
        .await;
    eventually("the delete withdraws the entries", PIPELINE, || async {
        feed_entry_keys(&stack, &bob).await.len() == 1
    })
    .await;

    // An unfollow hides ann at once and its stream record prunes her entries.
    stack
        .call(
            &bob,
            "DELETE",
            &format!("/users/{}/follow", ann.id),
            None,
            204,
        )
        .await;
    assert!(
        feed_texts(&stack, &bob).await.is_empty(),
        "hidden before the prune runs"
    );
    eventually("the unfollow prunes bob's feed", PIPELINE, || async {
        feed_entry_keys(&stack, &bob).await.is_empty()
    })
    .await;
    stack.stop().await;
}
