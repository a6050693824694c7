//! Access pattern 30: per-user write budgets in fixed one-minute windows, counted by a
//! conditional `ADD` so concurrent writers never overshoot.

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::future::join_all;
use shared::domain::new_id;
use shared::error::Error;
use shared::store::{RateLimitedAction, WINDOW_SECONDS};
use shared::testkit::TestDb;

/// The start of a window (a whole minute), far from any test's wall clock.
fn window_start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

fn retry_after(result: Result<(), Error>) -> u64 {
    match result {
        Err(Error::RateLimited { retry_after_secs }) => retry_after_secs,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn a_budget_of_n_allows_n_hits_then_rate_limits_until_the_window_ends() {
    let db = TestDb::start().await;
    let store = db.store();
    let user = new_id();
    let now = window_start() + Duration::seconds(17);
    for hit in 0..3 {
        store
            .hit(user, RateLimitedAction::Post, 3, now)
            .await
            .unwrap_or_else(|e| panic!("hit {hit}: {e:?}"));
    }
    let error = store.hit(user, RateLimitedAction::Post, 3, now).await;
    let error = error.unwrap_err();
    assert_eq!(error.status(), 429);
    assert_eq!(retry_after(Err(error)), 43, "seconds left in the window");
    // Still limited later in the same window, with a shorter wait.
    let later = window_start() + Duration::seconds(59);
    assert_eq!(
        retry_after(store.hit(user, RateLimitedAction::Post, 3, later).await),
        1
    );
}

#[tokio::test]
async fn retry_after_is_always_between_1_and_60_seconds() {
    let db = TestDb::start().await;
    let store = db.store();
    for offset in [0, 1, 30, 59] {
        let user = new_id();
        let now = window_start() + Duration::seconds(offset);
        store
            .hit(user, RateLimitedAction::Comment, 1, now)
            .await
            .unwrap();
        let wait = retry_after(store.hit(user, RateLimitedAction::Comment, 1, now).await);
        assert!(
            (1..=WINDOW_SECONDS as u64).contains(&wait),
            "offset {offset}: {wait}"
        );
        assert_eq!(wait, (WINDOW_SECONDS - offset) as u64);
    }
}

#[tokio::test]
async fn a_new_window_resets_the_budget() {
    let db = TestDb::start().await;
    let store = db.store();
    let user = new_id();
    let now = window_start() + Duration::seconds(50);
    store
        .hit(user, RateLimitedAction::Follow, 2, now)
        .await
        .unwrap();
    store
        .hit(user, RateLimitedAction::Follow, 2, now)
        .await
        .unwrap();
    retry_after(store.hit(user, RateLimitedAction::Follow, 2, now).await);

    let next_window = window_start() + Duration::seconds(WINDOW_SECONDS);
    store
        .hit(user, RateLimitedAction::Follow, 2, next_window)
        .await
        .unwrap();
    store
        .hit(user, RateLimitedAction::Follow, 2, next_window)
        .await
        .unwrap();
    retry_after(
        store
            .hit(user, RateLimitedAction::Follow, 2, next_window)
            .await,
    );
}

#[tokio::test]
async fn users_and_actions_have_independent_budgets() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (new_id(), new_id());
    let now = window_start();
    store
        .hit(alice, RateLimitedAction::Message, 1, now)
        .await
        .unwrap();
    retry_after(store.hit(alice, RateLimitedAction::Message, 1, now).await);

    // Bob's messages and Alice's other actions are unaffected.
    store
        .hit(bob, RateLimitedAction::Message, 1, now)
        .await
        .unwrap();
    for action in [
        RateLimitedAction::Post,
        RateLimitedAction::Comment,
        RateLimitedAction::Follow,
    ] {
        store
            .hit(alice, action, 1, now)
            .await
            .unwrap_or_else(|e| panic!("{action:?}: {e:?}"));
    }
}

#[tokio::test]
async fn twenty_concurrent_hits_on_a_budget_of_five_let_exactly_five_through() {
    let db = TestDb::start().await;
    let store = db.store();
    let user = new_id();
    let now = window_start() + Duration::seconds(5);
    let results = join_all((0..20).map(|_| store.hit(user, RateLimitedAction::Post, 5, now))).await;
    let allowed = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(allowed, 5, "{results:?}");
    for result in results.into_iter().filter(Result::is_err) {
        assert_eq!(retry_after(result), 55);
    }
}

#[tokio::test]
async fn a_zero_budget_allows_nothing_and_writes_nothing() {
    let db = TestDb::start().await;
    let store = db.store();
    let before = db.item_count().await;
    retry_after(
        store
            .hit(new_id(), RateLimitedAction::Post, 0, window_start())
            .await,
    );
    assert_eq!(db.item_count().await, before);
}

#[tokio::test]
async fn budgets_come_from_the_configuration() {
    let db = TestDb::start().await;
    let config = db.config_with(&[
        ("RATE_LIMIT_POSTS_PER_MINUTE", "2"),
        ("RATE_LIMIT_COMMENTS_PER_MINUTE", "3"),
        ("RATE_LIMIT_MESSAGES_PER_MINUTE", "4"),
        ("RATE_LIMIT_FOLLOWS_PER_MINUTE", "5"),
        ("RATE_LIMIT_LIKES_PER_MINUTE", "6"),
        ("RATE_LIMIT_BLOCKS_PER_MINUTE", "7"),
        ("RATE_LIMIT_MARK_READS_PER_MINUTE", "8"),
        ("RATE_LIMIT_PROFILE_EDITS_PER_MINUTE", "9"),
        ("RATE_LIMIT_SUBSCRIBES_PER_MINUTE", "10"),
        ("RATE_LIMIT_RESUMES_PER_MINUTE", "11"),
    ]);
    let limits = &config.rate_limits;
    assert_eq!(RateLimitedAction::Post.budget(limits), 2);
    assert_eq!(RateLimitedAction::Comment.budget(limits), 3);
    assert_eq!(RateLimitedAction::Message.budget(limits), 4);
    assert_eq!(RateLimitedAction::Follow.budget(limits), 5);
    assert_eq!(RateLimitedAction::Like.budget(limits), 6);
    assert_eq!(RateLimitedAction::Block.budget(limits), 7);
    assert_eq!(RateLimitedAction::MarkRead.budget(limits), 8);
    assert_eq!(RateLimitedAction::ProfileEdit.budget(limits), 9);
    assert_eq!(RateLimitedAction::Subscribe.budget(limits), 10);
    assert_eq!(RateLimitedAction::Resume.budget(limits), 11);
}
