//! Pattern 13, the materialized home feed (`store::feed`) and the tasks that keep it
//! current (`shared::feed`), against the merged feed as the oracle.

use std::sync::Arc;

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shared::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use shared::config::FeedLimits;
use shared::domain::{Post, PostText, User, UserId};
use shared::feed::{FeedMaterializer, FeedTask};
use shared::metering::RequestMeter;
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::{NewPost, PostEdit};
use shared::testkit::TestDb;

use crate::support::{user, users, walk_pages};

/// Limits with a tiny materialization bound, so a test author can pass it.
fn limits(materialize_max_followers: usize) -> FeedLimits {
    FeedLimits {
        materialize_max_followers,
        ..FeedLimits::default()
    }
}

fn materializer(store: &DynamoStore, limits: FeedLimits) -> FeedMaterializer {
    FeedMaterializer::new(Arc::new(store.clone()), limits)
}

/// Posts as the REST function does, then runs the task the stream router queues for it.
async fn post(store: &DynamoStore, feeds: &FeedMaterializer, author: &User, text: &str) -> Post {
    let post = store
        .create_post(NewPost {
            author: author.id,
            text: PostText::parse(text).unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    feeds
        .apply(&FeedTask::Distribute {
            post_id: post.id,
            author_id: post.author_id,
            created_at: post.created_at,
        })
        .await
        .unwrap();
    post
}

async fn follow(store: &DynamoStore, feeds: &FeedMaterializer, viewer: UserId, author: UserId) {
    if store
        .follow(viewer, author, Utc::now())
        .await
        .unwrap()
        .outcome
    {
        let task = FeedTask::Backfill { viewer, author };
        feeds.apply(&task).await.unwrap();
    }
}

/// The post ids of every page of `viewer`'s materialized feed, and of the merged feed.
async fn both_feeds(store: &DynamoStore, viewer: UserId, limit: usize) -> (Vec<Post>, Vec<Post>) {
    let (materialized, _) = walk_pages(limit, |page| {
        let store = store.clone();
        async move { store.home_feed(viewer, &page).await }
    })
    .await;
    let (merged, _) = walk_pages(limit, |page| {
        let store = store.clone();
        async move { store.merged_feed(viewer, &page).await }
    })
    .await;
    (materialized, merged)
}

#[tokio::test]
async fn a_post_reaches_followers_feeds_edits_show_and_deletes_leave_full_pages() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(&store, FeedLimits::default());
    let [viewer, ann, ben, stranger] = users(&store, ["viewer", "ann", "ben", "stranger"]).await;
    follow(&store, &feeds, viewer.id, ann.id).await;
    follow(&store, &feeds, viewer.id, ben.id).await;
    let mut written = Vec::new();
    for round in 0..4 {
        for author in [&ann, &viewer, &stranger, &ben] {
            written.push(
                post(
                    &store,
                    &feeds,
                    author,
                    &format!("{} {round}", author.username),
                )
                .await,
            );
        }
    }
    let (materialized, merged) = both_feeds(&store, viewer.id, 5).await;
    assert_eq!(
        materialized.len(),
        12,
        "own and followed posts, not the stranger's"
    );
    assert_eq!(materialized, merged);

    // An edit shows at once: entries reference the post.
    let edited = written.iter().find(|p| p.author_id == ann.id).unwrap();
    store
        .edit_post(PostEdit {
            post: edited.id,
            editor: ann.id,
            text: PostText::parse("edited").unwrap(),
            now: Utc::now(),
        })
        .await
        .unwrap();
    // A deleted post is skipped without the task that withdraws it, and pages stay full.
    let deleted: Vec<&Post> = written
        .iter()
        .filter(|p| p.author_id == ben.id)
        .take(3)
        .collect();
    for post in &deleted {
        store.delete_post(post.id, ben.id).await.unwrap();
    }
    let (materialized, merged) = both_feeds(&store, viewer.id, 4).await;
    assert_eq!(materialized, merged);
    assert_eq!(materialized.len(), 9);
    assert!(materialized.iter().any(|p| p.text == "edited"));
    let first = store
        .home_feed(viewer.id, &PageRequest::first(4))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 4);
    // Withdrawing removes the entries themselves.
    for post in &deleted {
        let task = FeedTask::Withdraw {
            post_id: post.id,
            author_id: ben.id,
        };
        assert_eq!(
            feeds.apply(&task).await.unwrap().entries,
            2,
            "viewer's and ben's"
        );
    }
    let (materialized, merged) = both_feeds(&store, viewer.id, 4).await;
    assert_eq!(materialized, merged);
}

#[tokio::test]
async fn an_unfollow_or_a_block_hides_entries_at_once_and_the_prune_removes_them() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(&store, FeedLimits::default());
    let [viewer, ann, cat] = users(&store, ["viewer", "ann", "cat"]).await;
    follow(&store, &feeds, viewer.id, ann.id).await;
    follow(&store, &feeds, viewer.id, cat.id).await;
    for i in 0..3 {
        post(&store, &feeds, &ann, &format!("ann {i}")).await;
        post(&store, &feeds, &cat, &format!("cat {i}")).await;
    }
    // Before any prune runs, the read's follow check hides them.
    store.unfollow(viewer.id, ann.id).await.unwrap();
    store.block(cat.id, viewer.id, Utc::now()).await.unwrap();
    let page = store
        .home_feed(viewer.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(page.items.is_empty(), "{:?}", page.items);
    assert_eq!(page.next_cursor, None);
    for author in [ann.id, cat.id] {
        let task = FeedTask::Prune {
            viewer: viewer.id,
            author,
        };
        assert_eq!(
            feeds.apply(&task).await.unwrap().entries,
            4,
            "3 entries and the marker key"
        );
    }
    let (materialized, merged) = both_feeds(&store, viewer.id, 3).await;
    assert!(materialized.is_empty());
    assert_eq!(materialized, merged);
}

#[tokio::test]
async fn a_follow_backfills_the_latest_posts() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(
        &store,
        FeedLimits {
            backfill_posts: 3,
            ..FeedLimits::default()
        },
    );
    let [viewer, ann] = users(&store, ["viewer", "ann"]).await;
    let mut written = Vec::new();
    for i in 0..5 {
        written.push(post(&store, &feeds, &ann, &format!("ann {i}")).await);
    }
    follow(&store, &feeds, viewer.id, ann.id).await;
    let page = store
        .home_feed(viewer.id, &PageRequest::first(10))
        .await
        .unwrap();
    let expected: Vec<Post> = written.iter().rev().take(3).cloned().collect();
    assert_eq!(page.items, expected);
}

#[tokio::test]
async fn a_large_author_is_promoted_once_and_merged_at_read_in_3_plus_l_requests() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(&store, limits(3));
    let [viewer, star, small] = users(&store, ["viewer", "star", "small"]).await;
    follow(&store, &feeds, viewer.id, star.id).await;
    follow(&store, &feeds, viewer.id, small.id).await;
    for i in 0..3 {
        let fan = user(&store, &format!("fan{i}")).await;
        follow(&store, &feeds, fan.id, star.id).await;
    }
    // Four followers: past the bound of 3. The first post promotes the author.
    let first = post(&store, &feeds, &star, "star 0").await;
    assert!(store
        .merged_feed(viewer.id, &PageRequest::first(5))
        .await
        .unwrap()
        .items
        .contains(&first));
    for i in 1..4 {
        post(&store, &feeds, &star, &format!("star {i}")).await;
        post(&store, &feeds, &small, &format!("small {i}")).await;
    }
    let (materialized, merged) = both_feeds(&store, viewer.id, 2).await;
    assert_eq!(materialized.len(), 7);
    assert_eq!(materialized, merged);
    // A new follower of the merged author gets a marker, not entries.
    let late = user(&store, "late").await;
    follow(&store, &feeds, late.id, star.id).await;
    let (materialized, merged) = both_feeds(&store, late.id, 3).await;
    assert_eq!(materialized.len(), 4);
    assert_eq!(materialized, merged);

    // Requests per page: entries, markers, one BatchGetItem, one timeline (L = 1).
    let meter = RequestMeter::new();
    let clients = DynamoClients::from_sdk_config(
        &local_sdk_config(),
        &db.config(),
        &Endpoints {
            dynamodb: Some(db.endpoint.clone()),
            meter: Some(meter.clone()),
            ..Endpoints::default()
        },
    )
    .unwrap();
    let metered = DynamoStore::new(clients.dynamodb, &db.config().table_name);
    let page = metered
        .home_feed(viewer.id, &PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 3);
    assert_eq!(
        meter.snapshot().dynamodb_requests(),
        4,
        "3 + 1 large author"
    );
}

#[tokio::test]
async fn one_message_backfills_an_authors_new_followers_together_and_skips_those_gone() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(&store, FeedLimits::default());
    let [ann, bob, cat, dan] = users(&store, ["ann", "bob", "cat", "dan"]).await;
    for i in 0..3 {
        post(&store, &feeds, &ann, &format!("ann {i}")).await;
    }
    for fan in [&bob, &cat, &dan] {
        store.follow(fan.id, ann.id, Utc::now()).await.unwrap();
    }
    // Dan unfollows before the worker gets to the message.
    store.unfollow(dan.id, ann.id).await.unwrap();
    let tasks: Vec<FeedTask> = [&bob, &cat, &dan]
        .iter()
        .map(|fan| FeedTask::Backfill {
            viewer: fan.id,
            author: ann.id,
        })
        .collect();
    let outcome = feeds.apply_all(&tasks).await.unwrap();
    assert_eq!(
        outcome.entries, 6,
        "3 posts each for bob and cat, none for dan"
    );
    for fan in [&bob, &cat, &dan] {
        let (materialized, merged) = both_feeds(&store, fan.id, 2).await;
        assert_eq!(materialized, merged, "{}", fan.username);
    }
}

#[tokio::test]
async fn new_entries_are_counted_in_one_bounded_query() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(&store, FeedLimits::default());
    let [viewer, ann] = users(&store, ["viewer", "ann"]).await;
    follow(&store, &feeds, viewer.id, ann.id).await;
    let before = post(&store, &feeds, &ann, "seen").await;
    for i in 0..4 {
        post(&store, &feeds, &ann, &format!("new {i}")).await;
    }
    assert_eq!(
        store
            .feed_entries_newer(viewer.id, before.id.as_uuid(), 100)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        store
            .feed_entries_newer(viewer.id, before.id.as_uuid(), 2)
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn a_rebuild_gives_the_feed_the_tasks_build_and_is_idempotent() {
    let db = TestDb::start().await;
    let store = db.store();
    let feeds = materializer(&store, limits(2));
    let [viewer, ann, star, f1, f2] =
        users(&store, ["viewer", "ann", "star", "fan1", "fan2"]).await;
    // Seeded the old way: follows and posts, no feed tasks.
    for (a, b) in [
        (viewer.id, ann.id),
        (viewer.id, star.id),
        (f1.id, star.id),
        (f2.id, star.id),
    ] {
        store.follow(a, b, Utc::now()).await.unwrap();
    }
    for i in 0..3 {
        for author in [&viewer, &ann, &star] {
            store
                .create_post(NewPost {
                    author: author.id,
                    text: PostText::parse(&format!("{} {i}", author.username)).unwrap(),
                    media_url: None,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
        }
    }
    // Only the own entries a post's transaction writes: nobody else's posts yet.
    let before = store
        .home_feed(viewer.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(before.items.iter().all(|p| p.author_id == viewer.id));
    assert_eq!(before.items.len(), 3);
    for _ in 0..2 {
        for author in [viewer.id, ann.id, star.id] {
            feeds.promote_if_large(author).await.unwrap();
        }
        let outcome = feeds.rebuild_feed(viewer.id, Utc::now()).await.unwrap();
        assert_eq!((outcome.entries, outcome.markers), (6, 1));
        let (materialized, merged) = both_feeds(&store, viewer.id, 4).await;
        assert_eq!(materialized.len(), 9);
        assert_eq!(materialized, merged);
    }
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    Follow(usize, usize),
    Unfollow(usize, usize),
    Block(usize, usize),
    Post(usize),
    Edit(usize),
    Delete(usize),
    /// Time passes: entries already written stay, later ones carry later times.
    Wait,
}

fn random_steps(rng: &mut StdRng, users: usize, len: usize) -> Vec<Step> {
    let mut pair = (0, 1);
    (0..len)
        .map(|_| {
            // Often the same two users again: follow, unfollow, follow back, block.
            if rng.gen_bool(0.6) {
                pair = (rng.gen_range(0..users), rng.gen_range(0..users));
            }
            let (a, b) = pair;
            match rng.gen_range(0..100) {
                0..=24 => Step::Follow(a, b),
                25..=36 => Step::Unfollow(a, b),
                37..=41 => Step::Block(a, b),
                42..=74 => Step::Post(if rng.gen_bool(0.5) { b } else { a }),
                75..=84 => Step::Edit(rng.gen_range(0..64)),
                85..=92 => Step::Delete(rng.gen_range(0..64)),
                _ => Step::Wait,
            }
        })
        .collect()
}

/// Feed tasks waiting for the worker: run later, in any order, some twice.
#[derive(Default)]
struct PendingTasks(Vec<FeedTask>);

impl PendingTasks {
    /// Runs a random pending task, sometimes leaving a copy to run again (redelivery), or
    /// a few together as one queue message.
    async fn run_one(&mut self, feeds: &FeedMaterializer, rng: &mut StdRng) {
        if self.0.is_empty() {
            return;
        }
        if rng.gen_bool(0.3) {
            let take = rng.gen_range(1..=self.0.len().min(5));
            let batch: Vec<FeedTask> = (0..take)
                .map(|_| {
                    let at = rng.gen_range(0..self.0.len());
                    self.0.swap_remove(at)
                })
                .collect();
            feeds.apply_all(&batch).await.unwrap();
            return;
        }
        let at = rng.gen_range(0..self.0.len());
        let task = if rng.gen_bool(0.2) {
            self.0[at].clone()
        } else {
            self.0.swap_remove(at)
        };
        feeds.apply(&task).await.unwrap();
    }

    async fn run_all(&mut self, feeds: &FeedMaterializer, rng: &mut StdRng) {
        while !self.0.is_empty() {
            self.run_one(feeds, rng).await;
        }
    }
}

/// Random histories of follows, unfollows, blocks, posts, edits, deletes and waiting, over
/// five users of whom one passes the materialization bound. Feed tasks run late, in random
/// order, some twice, as SQS delivers them. While tasks are pending, no feed shows a post
/// the merged feed does not (deleted, unfollowed, blocked); once they have run, every
/// user's materialized feed equals the merged feed, page by page.
/// `RIPPLE_FEED_PROPERTY_CASES` raises the number of histories; a failure prints its seed
/// and steps.
#[tokio::test]
async fn random_histories_leave_every_materialized_feed_equal_to_the_merged_feed() {
    let cases: u64 = std::env::var("RIPPLE_FEED_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    for seed in 0..cases {
        let db = TestDb::start().await;
        let store = db.store();
        let feeds = materializer(&store, limits(3));
        let mut people = Vec::new();
        for i in 0..5 {
            people.push(user(&store, &format!("u{seed}x{i}")).await);
        }
        // User 0 is popular: everyone follows them, so their first post promotes them.
        for fan in &people[1..] {
            follow(&store, &feeds, fan.id, people[0].id).await;
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let steps = random_steps(&mut rng, people.len(), 40);
        let mut posts: Vec<Post> = Vec::new();
        let mut pending = PendingTasks::default();
        for (n, step) in steps.iter().enumerate() {
            apply_step(&store, &people, &mut posts, &mut pending, step).await;
            if rng.gen_bool(0.5) {
                pending.run_one(&feeds, &mut rng).await;
            }
            if n % 3 == 2 {
                for person in &people {
                    let (materialized, merged) = both_feeds(&store, person.id, 4).await;
                    let allowed: std::collections::HashSet<_> =
                        merged.iter().map(|p| p.id).collect();
                    assert!(
                        materialized.iter().all(|p| allowed.contains(&p.id)),
                        "seed {seed}, step {n}: {} sees a post the merged feed hides; steps {steps:?}",
                        person.username
                    );
                }
            }
        }
        pending.run_all(&feeds, &mut rng).await;
        for person in &people {
            for limit in [1, 3, 7] {
                let (materialized, merged) = both_feeds(&store, person.id, limit).await;
                assert_eq!(
                    ids(&materialized),
                    ids(&merged),
                    "seed {seed}, {} with pages of {limit}, steps {steps:?}",
                    person.username
                );
            }
        }
    }
}

fn ids(posts: &[Post]) -> Vec<String> {
    posts
        .iter()
        .map(|p| format!("{}:{}", p.id, p.text))
        .collect()
}

/// Applies one step as the REST functions do, queueing the feed tasks the stream router
/// would queue for its records.
async fn apply_step(
    store: &DynamoStore,
    people: &[User],
    posts: &mut Vec<Post>,
    pending: &mut PendingTasks,
    step: &Step,
) {
    match *step {
        Step::Follow(a, b) if a != b => {
            // A refusal (a block between them) is part of the history.
            if let Ok(done) = store.follow(people[a].id, people[b].id, Utc::now()).await {
                if done.outcome {
                    pending.0.push(FeedTask::Backfill {
                        viewer: people[a].id,
                        author: people[b].id,
                    });
                }
            }
        }
        Step::Unfollow(a, b) if a != b => {
            let unfollowed = store.unfollow(people[a].id, people[b].id).await.unwrap();
            if unfollowed {
                pending.0.push(FeedTask::Prune {
                    viewer: people[a].id,
                    author: people[b].id,
                });
            }
        }
        Step::Block(a, b) if a != b => {
            let had = [
                (
                    a,
                    b,
                    store
                        .relationship(people[a].id, people[b].id)
                        .await
                        .unwrap()
                        .following,
                ),
                (
                    b,
                    a,
                    store
                        .relationship(people[b].id, people[a].id)
                        .await
                        .unwrap()
                        .following,
                ),
            ];
            store
                .block(people[a].id, people[b].id, Utc::now())
                .await
                .unwrap();
            for (viewer, author, followed) in had {
                if followed {
                    pending.0.push(FeedTask::Prune {
                        viewer: people[viewer].id,
                        author: people[author].id,
                    });
                }
            }
        }
        Step::Post(a) => {
            let post = store
                .create_post(NewPost {
                    author: people[a].id,
                    text: PostText::parse(&format!(
                        "post {} by {}",
                        posts.len(),
                        people[a].username
                    ))
                    .unwrap(),
                    media_url: None,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
            pending.0.push(FeedTask::Distribute {
                post_id: post.id,
                author_id: post.author_id,
                created_at: post.created_at,
            });
            posts.push(post);
        }
        Step::Edit(n) if !posts.is_empty() => {
            let target = &posts[n % posts.len()];
            let edit = PostEdit {
                post: target.id,
                editor: target.author_id,
                text: PostText::parse(&format!("{} (edited)", target.text)).unwrap(),
                now: Utc::now(),
            };
            // Deleted posts fail; the history goes on.
            if let Err(refused) = store.edit_post(edit).await {
                assert!(
                    matches!(refused.status(), 403 | 404),
                    "an edit fails only as deleted or out of its window: {refused:?}"
                );
            }
        }
        Step::Delete(n) if !posts.is_empty() => {
            let target = posts[n % posts.len()].clone();
            if store.delete_post(target.id, target.author_id).await.is_ok() {
                pending.0.push(FeedTask::Withdraw {
                    post_id: target.id,
                    author_id: target.author_id,
                });
            }
        }
        Step::Wait => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        _ => {}
    }
}
