//! Access patterns 28 (a refresh token by the hash of its secret, then its family) and 29
//! (the token families — sessions — of a user), and the refresh-token policy of
//! `shared::auth::refresh` over the real store: rotation, reuse detection, logout, expiry,
//! concurrent rotations, and that the secret never reaches the table.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use futures::future::join_all;
use shared::auth::refresh::{self, RefreshTokens};
use shared::domain::new_id;
use shared::store::DynamoStore;
use shared::store::{NewRefreshToken, Rotation};
use shared::testkit::TestDb;

const THIRTY_DAYS: StdDuration = StdDuration::from_secs(30 * 24 * 3600);

fn refresh_tokens(store: DynamoStore) -> RefreshTokens {
    RefreshTokens::new(Arc::new(store), THIRTY_DAYS).unwrap()
}

/// Asserts that presenting `token` is refused with 401.
async fn assert_rotation_refused(tokens: &RefreshTokens, token: &str, why: &str) {
    match tokens.rotate(token, Utc::now()).await {
        Ok(_) => panic!("{why}: rotation succeeded"),
        Err(error) => assert_eq!(error.status(), 401, "{why}: {error:?}"),
    }
}

#[tokio::test]
async fn pattern_28_a_token_by_its_hash_then_its_family() {
    let db = TestDb::start().await;
    let store = db.store();
    let tokens = refresh_tokens(store.clone());
    let user = new_id();
    let now = Utc::now();
    let issued = tokens.start_session(user, now).await.unwrap();

    let stored = store
        .refresh_token(&refresh::hash(&issued.token))
        .await
        .unwrap()
        .expect("token stored under the hash of its secret");
    assert_eq!(stored.user_id, user);
    assert_eq!(stored.family_id, issued.family_id);
    assert_eq!(stored.expires_at, issued.expires_at.timestamp());
    assert_eq!(stored.expires_at, (now + Duration::days(30)).timestamp());
    assert_eq!(stored.used_at, None);

    let family = store
        .token_family(stored.user_id, stored.family_id)
        .await
        .unwrap()
        .expect("the family of a stored token exists");
    assert!(!family.revoked);
    assert_eq!(family.user_id, user);

    assert_eq!(
        store
            .refresh_token(&refresh::hash("unknown"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .token_family(user, uuid::Uuid::now_v7())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn pattern_29_the_sessions_of_a_user_oldest_first() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let alice = new_id();
    let bob = new_id();
    let first = tokens.start_session(alice, Utc::now()).await.unwrap();
    let second = tokens.start_session(alice, Utc::now()).await.unwrap();
    tokens.start_session(bob, Utc::now()).await.unwrap();

    let families = db.store().families(alice).await.unwrap();
    let ids: Vec<_> = families.iter().map(|f| f.family_id).collect();
    assert_eq!(ids, vec![first.family_id, second.family_id]);
    assert!(families.iter().all(|f| f.user_id == alice && !f.revoked));
    assert_eq!(db.store().families(new_id()).await.unwrap(), vec![]);
}

#[tokio::test]
async fn rotation_returns_a_new_token_and_the_old_one_then_fails() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let user = new_id();
    let first = tokens.start_session(user, Utc::now()).await.unwrap();

    let second = tokens.rotate(&first.token, Utc::now()).await.unwrap();
    assert_ne!(second.token, first.token);
    assert_eq!(second.user_id, user);
    assert_eq!(
        second.family_id, first.family_id,
        "rotation stays in the session"
    );

    // The newest token keeps rotating; each predecessor is dead.
    let third = tokens.rotate(&second.token, Utc::now()).await.unwrap();
    assert_ne!(third.token, second.token);
    let stored = db
        .store()
        .refresh_token(&refresh::hash(&first.token))
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.used_at.is_some(),
        "the old token is marked used, not deleted"
    );
}

#[tokio::test]
async fn presenting_a_rotated_token_again_revokes_the_family_so_the_newer_token_fails() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let user = new_id();
    let stolen = tokens.start_session(user, Utc::now()).await.unwrap();
    let owners = tokens.rotate(&stolen.token, Utc::now()).await.unwrap();
    // An unrelated session of the same user is not touched by the reuse.
    let other_device = tokens.start_session(user, Utc::now()).await.unwrap();

    assert_rotation_refused(&tokens, &stolen.token, "rotated token replayed").await;
    let family = db
        .store()
        .token_family(user, stolen.family_id)
        .await
        .unwrap()
        .unwrap();
    assert!(family.revoked, "reuse revokes the family");
    assert_rotation_refused(&tokens, &owners.token, "newer token of a revoked family").await;

    tokens
        .rotate(&other_device.token, Utc::now())
        .await
        .unwrap();
}

#[tokio::test]
async fn logout_revokes_the_session_and_only_that_session() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let user = new_id();
    let phone = tokens.start_session(user, Utc::now()).await.unwrap();
    let laptop = tokens.start_session(user, Utc::now()).await.unwrap();

    tokens
        .revoke_session(&phone.token, user, Utc::now())
        .await
        .unwrap();
    assert_rotation_refused(&tokens, &phone.token, "logged-out token").await;
    // Logging out twice is harmless.
    tokens
        .revoke_session(&phone.token, user, Utc::now())
        .await
        .unwrap();

    tokens.rotate(&laptop.token, Utc::now()).await.unwrap();
}

#[tokio::test]
async fn logout_with_a_rotated_token_still_ends_the_session() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let user = new_id();
    let first = tokens.start_session(user, Utc::now()).await.unwrap();
    let second = tokens.rotate(&first.token, Utc::now()).await.unwrap();
    tokens
        .revoke_session(&first.token, user, Utc::now())
        .await
        .unwrap();
    assert_rotation_refused(&tokens, &second.token, "newest token after logout").await;
}

#[tokio::test]
async fn revoke_all_sessions_revokes_every_session_of_the_user_only() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let alice = new_id();
    let bob = new_id();
    let alice_sessions = join_all((0..3).map(|_| tokens.start_session(alice, Utc::now())))
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let bob_session = tokens.start_session(bob, Utc::now()).await.unwrap();
    // One of Alice's sessions is already over; it is not counted again.
    tokens
        .revoke_session(&alice_sessions[2].token, alice, Utc::now())
        .await
        .unwrap();

    let revoked = tokens
        .revoke_all_sessions(&alice_sessions[0].token, alice, Utc::now())
        .await
        .unwrap();
    assert_eq!(revoked, 2);
    for session in &alice_sessions {
        assert_rotation_refused(&tokens, &session.token, "after logout everywhere").await;
    }
    assert!(db
        .store()
        .families(alice)
        .await
        .unwrap()
        .iter()
        .all(|f| f.revoked));
    tokens.rotate(&bob_session.token, Utc::now()).await.unwrap();
    assert!(db
        .store()
        .families(bob)
        .await
        .unwrap()
        .iter()
        .all(|f| !f.revoked));
}

#[tokio::test]
async fn another_users_token_is_not_found_and_stays_valid() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let alice = new_id();
    let mallory = new_id();
    let alices = tokens.start_session(alice, Utc::now()).await.unwrap();
    tokens.start_session(mallory, Utc::now()).await.unwrap();

    let error = tokens
        .revoke_session(&alices.token, mallory, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404, "{error:?}");
    let error = tokens
        .revoke_all_sessions(&alices.token, mallory, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404, "{error:?}");
    // An unknown or malformed token looks exactly the same.
    let unknown = tokens
        .revoke_session(&refresh::generate(), mallory, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.to_string(), error.to_string());

    tokens.rotate(&alices.token, Utc::now()).await.unwrap();
}

#[tokio::test]
async fn an_expired_token_is_rejected_even_before_ttl_deletes_it() {
    let db = TestDb::start().await;
    let short_lived = RefreshTokens::new(Arc::new(db.store()), StdDuration::from_secs(60)).unwrap();
    let user = new_id();
    let issued_at = Utc::now() - Duration::minutes(5);
    let expired = short_lived.start_session(user, issued_at).await.unwrap();
    assert!(
        db.store()
            .refresh_token(&refresh::hash(&expired.token))
            .await
            .unwrap()
            .is_some(),
        "the item is still there; only its expires_at says it is dead"
    );
    assert_rotation_refused(&short_lived, &expired.token, "expired").await;

    // Exactly at the expiry instant it is dead too; one second before, alive.
    let fresh = short_lived.start_session(user, Utc::now()).await.unwrap();
    let error = short_lived
        .rotate(&fresh.token, fresh.expires_at)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 401);
    short_lived
        .rotate(&fresh.token, fresh.expires_at - Duration::seconds(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_and_unknown_tokens_are_rejected() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let long = "A".repeat(500);
    for bad in [
        "",
        "short",
        long.as_str(),
        "not base64 at all, forty-three characters!",
    ] {
        assert_rotation_refused(&tokens, bad, bad).await;
    }
    assert_rotation_refused(&tokens, &refresh::generate(), "well formed but unknown").await;
}

#[tokio::test]
async fn concurrent_rotations_of_one_token_let_at_most_one_succeed() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let user = new_id();
    let issued = tokens.start_session(user, Utc::now()).await.unwrap();

    let results = join_all((0..8).map(|_| tokens.rotate(&issued.token, Utc::now()))).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(winners.len() <= 1, "{} rotations succeeded", winners.len());
    for loser in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(loser.status(), 401, "{loser:?}");
    }
    // The token was presented more than once: reuse, so the session is gone for everyone.
    for winner in winners {
        assert_rotation_refused(&tokens, &winner.token, "winner of a raced rotation").await;
    }
}

#[tokio::test]
async fn the_store_commits_exactly_one_of_two_racing_rotations() {
    let db = TestDb::start().await;
    let store = db.store();
    let tokens = refresh_tokens(store.clone());
    let user = new_id();
    let issued = tokens.start_session(user, Utc::now()).await.unwrap();
    let old_hash = refresh::hash(&issued.token);
    let next = |secret: &str| NewRefreshToken {
        hash: refresh::hash(secret),
        user_id: user,
        family_id: issued.family_id,
        expires_at: (Utc::now() + Duration::days(30)).timestamp(),
    };
    let (a, b) = (next(&refresh::generate()), next(&refresh::generate()));
    let (first, second) = tokio::join!(
        store.rotate(&old_hash, &a, Utc::now()),
        store.rotate(&old_hash, &b, Utc::now())
    );
    let mut outcomes = vec![first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(outcomes, vec![Rotation::OldTokenUsed, Rotation::Rotated]);

    // Rotating inside a revoked family writes nothing.
    store
        .revoke_family(user, issued.family_id, Utc::now())
        .await
        .unwrap();
    let winner = if store.refresh_token(&a.hash).await.unwrap().is_some() {
        &a
    } else {
        &b
    };
    let before = db.item_count().await;
    let outcome = store
        .rotate(&winner.hash, &next(&refresh::generate()), Utc::now())
        .await
        .unwrap();
    assert_eq!(outcome, Rotation::FamilyRevoked);
    assert_eq!(db.item_count().await, before);
}

/// Whether `needle` appears anywhere in an attribute value, however deeply nested.
fn attribute_contains(value: &AttributeValue, needle: &str) -> bool {
    match value {
        AttributeValue::S(text) | AttributeValue::N(text) => text.contains(needle),
        AttributeValue::Ss(texts) | AttributeValue::Ns(texts) => {
            texts.iter().any(|t| t.contains(needle))
        }
        AttributeValue::B(bytes) => String::from_utf8_lossy(bytes.as_ref()).contains(needle),
        AttributeValue::Bs(list) => list
            .iter()
            .any(|b| String::from_utf8_lossy(b.as_ref()).contains(needle)),
        AttributeValue::L(list) => list.iter().any(|v| attribute_contains(v, needle)),
        AttributeValue::M(map) => map
            .iter()
            .any(|(k, v)| k.contains(needle) || attribute_contains(v, needle)),
        _ => false,
    }
}

#[tokio::test]
async fn the_table_never_contains_a_token_secret() {
    let db = TestDb::start().await;
    let tokens = refresh_tokens(db.store());
    let user = new_id();
    let first = tokens.start_session(user, Utc::now()).await.unwrap();
    let second = tokens.rotate(&first.token, Utc::now()).await.unwrap();
    let other = tokens.start_session(user, Utc::now()).await.unwrap();
    tokens
        .revoke_session(&other.token, user, Utc::now())
        .await
        .unwrap();

    let items = db.scan_all().await;
    assert!(items.len() >= 5, "3 tokens and 2 families: {}", items.len());
    for secret in [&first.token, &second.token, &other.token] {
        // The hash is there (so the scan does see the token items)...
        let hash = refresh::hash(secret);
        assert!(items
            .iter()
            .any(|item| item.values().any(|v| attribute_contains(v, &hash))));
        // ...the secret is nowhere.
        for item in &items {
            for (name, value) in item {
                assert!(
                    !attribute_contains(value, secret),
                    "attribute {name} holds a refresh-token secret"
                );
            }
        }
    }
}
