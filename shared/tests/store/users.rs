//! Access patterns: user by id, user by username, username prefix search.

use std::collections::HashSet;

use shared::store::page::PageRequest;
use shared::store::users::{ProfileUpdate, UserStore};
use shared::testkit::TestDb;

use crate::support::{user, walk_pages};

#[tokio::test]
async fn user_by_id_and_by_username_case_insensitively() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "Alice").await;

    let loaded = store.get_user(alice.id).await.unwrap().unwrap();
    assert_eq!(loaded, alice);
    assert_eq!(loaded.username, "Alice", "display case is kept");
    for spelling in ["alice", "ALICE", "Alice"] {
        assert_eq!(
            store.user_id_by_username(spelling).await.unwrap(),
            Some(alice.id)
        );
    }
    assert_eq!(store.user_id_by_username("bob").await.unwrap(), None);
    assert!(store
        .password_hash(alice.id)
        .await
        .unwrap()
        .unwrap()
        .starts_with("$argon2id$"));
}

#[tokio::test]
async fn duplicate_username_in_any_case_is_a_conflict() {
    let db = TestDb::start().await;
    let store = db.store();
    user(&store, "alice").await;
    let before = db.item_count().await;
    for spelling in ["alice", "ALICE", "aLiCe"] {
        let error = store
            .create_user(shared::store::users::NewUser {
                id: shared::domain::new_id(),
                username: spelling.to_owned(),
                display_name: "x".to_owned(),
                password_hash: "h".to_owned(),
                created_at: chrono::Utc::now(),
            })
            .await
            .unwrap_err();
        assert_eq!(error.status(), 409, "{spelling}: {error:?}");
    }
    assert_eq!(
        db.item_count().await,
        before,
        "a failed registration writes nothing"
    );
}

#[tokio::test]
async fn many_users_by_id_in_one_call() {
    let db = TestDb::start().await;
    let store = db.store();
    let a = user(&store, "aaa").await;
    let b = user(&store, "bbb").await;
    let missing = shared::domain::new_id();
    let found = store.get_users(&[a.id, b.id, missing, a.id]).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[&b.id].username, "bbb");
}

#[tokio::test]
async fn profile_update_changes_only_given_fields() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let updated = store
        .update_profile(
            alice.id,
            &ProfileUpdate {
                bio: Some("hello".into()),
                is_private: Some(true),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.bio, "hello");
    assert!(updated.is_private);
    assert_eq!(updated.display_name, alice.display_name);
    let missing = store
        .update_profile(
            shared::domain::new_id(),
            &ProfileUpdate {
                bio: Some("x".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn username_prefix_search_pages_through_every_match_once() {
    let db = TestDb::start().await;
    let store = db.store();
    for i in 0..7 {
        user(&store, &format!("sam_{i}")).await;
    }
    user(&store, "sally").await;
    user(&store, "bob").await;

    let (found, pages) = walk_pages(3, |page| {
        let store = store.clone();
        async move { store.search_usernames("sam", &page).await }
    })
    .await;
    let seen: Vec<_> = found.iter().map(|u| u.username.clone()).collect();
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        7,
        "no duplicates"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "username order: {seen:?}"
    );

    let s_matches = store
        .search_usernames("s", &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(s_matches.items.len(), 8);
}

#[tokio::test]
async fn a_garbled_or_foreign_cursor_is_a_validation_error() {
    let db = TestDb::start().await;
    let store = db.store();
    for name in ["sam_a", "sam_b", "tom_a", "tom_b"] {
        user(&store, name).await;
    }
    let first = store
        .search_usernames("sam", &PageRequest::first(1))
        .await
        .unwrap();
    let cursor = first.next_cursor.unwrap();
    // A cursor from the `s` partition must not read the `t` partition.
    let error = store
        .search_usernames("tom", &PageRequest::after(1, cursor))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 400);
    let error = store
        .search_usernames("sam", &PageRequest::after(1, "garbage!!"))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 400);
}
