//! Credential-door lockouts: failures counted per subject in a window, a lockout that
//! doubles with every round, forgiven failures after a success.

use chrono::{DateTime, Duration, TimeZone, Utc};
use shared::error::Error;
use shared::store::{Door, LockoutPolicy, Subject};
use shared::testkit::TestDb;

fn policy() -> LockoutPolicy {
    LockoutPolicy {
        max_failures: 3,
        window: Duration::seconds(900),
        first_lockout: Duration::seconds(60),
        max_lockout: Duration::seconds(200),
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 12, 0, 0).unwrap()
}

fn retry_after(result: shared::Result<Vec<u32>>) -> u64 {
    match result {
        Err(Error::RateLimited { retry_after_secs }) => retry_after_secs,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn failures_lock_a_subject_for_longer_each_round_and_never_another() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = Subject::Username("alice".into());
    let bob = Subject::Username("bob".into());
    let now = start();
    for failure in 1..=3 {
        assert_eq!(
            store
                .check(Door::Login, std::slice::from_ref(&alice), now)
                .await
                .unwrap(),
            [failure - 1]
        );
        let locked = store
            .record_failure(Door::Login, &alice, &policy(), now)
            .await
            .unwrap();
        assert_eq!(locked, failure == 3, "failure {failure}");
    }
    assert_eq!(
        retry_after(
            store
                .check(Door::Login, std::slice::from_ref(&alice), now)
                .await
        ),
        60
    );
    // One locked subject locks a check of several; others, and other doors, are free.
    assert_eq!(
        retry_after(
            store
                .check(Door::Login, &[bob.clone(), alice.clone()], now)
                .await
        ),
        60
    );
    assert_eq!(
        store
            .check(Door::Login, std::slice::from_ref(&bob), now)
            .await
            .unwrap(),
        [0]
    );
    assert_eq!(
        store
            .check(Door::Refresh, std::slice::from_ref(&alice), now)
            .await
            .unwrap(),
        [0]
    );

    // Over: three more failures lock it twice as long, then the cap.
    let later = now + Duration::seconds(61);
    assert_eq!(
        store
            .check(Door::Login, std::slice::from_ref(&alice), later)
            .await
            .unwrap(),
        [0]
    );
    for _ in 0..3 {
        store
            .record_failure(Door::Login, &alice, &policy(), later)
            .await
            .unwrap();
    }
    assert_eq!(
        retry_after(
            store
                .check(Door::Login, std::slice::from_ref(&alice), later)
                .await
        ),
        120
    );
    let third = later + Duration::seconds(121);
    for _ in 0..3 {
        store
            .record_failure(Door::Login, &alice, &policy(), third)
            .await
            .unwrap();
    }
    assert_eq!(
        retry_after(
            store
                .check(Door::Login, std::slice::from_ref(&alice), third)
                .await
        ),
        200
    );
}

#[tokio::test]
async fn failures_age_out_with_their_window_and_a_success_clears_them() {
    let db = TestDb::start().await;
    let store = db.store();
    let ip = Subject::SourceIp("203.0.113.9".into());
    let now = start();
    for _ in 0..2 {
        store
            .record_failure(Door::Login, &ip, &policy(), now)
            .await
            .unwrap();
    }
    // A new window starts from one.
    let next_window = now + Duration::seconds(901);
    assert!(!store
        .record_failure(Door::Login, &ip, &policy(), next_window)
        .await
        .unwrap());
    assert_eq!(
        store
            .check(Door::Login, std::slice::from_ref(&ip), next_window)
            .await
            .unwrap(),
        [1]
    );
    store
        .record_failure(Door::Login, &ip, &policy(), next_window)
        .await
        .unwrap();
    store.clear_failures(Door::Login, &ip).await.unwrap();
    assert_eq!(
        store
            .check(Door::Login, std::slice::from_ref(&ip), next_window)
            .await
            .unwrap(),
        [0]
    );
    // Clearing what was never counted is fine.
    store
        .clear_failures(Door::Login, &Subject::Username("nobody".into()))
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_failures_lock_no_more_often_than_their_count_allows() {
    let db = TestDb::start().await;
    let store = db.store();
    let subject = Subject::Username("carol".into());
    let now = start();
    let policy = policy();
    let results = futures::future::join_all(
        (0..6).map(|_| store.record_failure(Door::Login, &subject, &policy, now)),
    )
    .await;
    let locks = results
        .into_iter()
        .map(Result::unwrap)
        .filter(|locked| *locked)
        .count();
    // Each lock needs `max_failures` counted since the last one: 6 failures lock at most
    // twice, however they interleave.
    assert!((1..=2).contains(&locks), "{locks} locks");
    let wait = retry_after(store.check(Door::Login, &[subject], now).await);
    assert!(wait == 60 || wait == 120, "{wait}");
}
