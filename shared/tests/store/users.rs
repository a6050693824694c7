//! Access patterns: user by id, user by username, username prefix search (its sharded search
//! items, their migration, and that profile counter updates write no index entry).

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use futures::stream::{self, StreamExt};
use shared::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use shared::domain::{new_id, Bio, DisplayName, PostText, User, UserSummary, Username};
use shared::metering::{RequestMeter, DYNAMODB};
use shared::store::dynamo::{Item, Query};
use shared::store::keys;
use shared::store::page::{KeyShape, PageRequest};
use shared::store::DynamoStore;
use shared::store::NewPost;
use shared::store::{ProfileUpdate, SearchEntryRebuild};
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
            .create_user(shared::store::NewUser {
                id: shared::domain::new_id(),
                username: Username::parse(spelling).unwrap(),
                display_name: DisplayName::parse("x").unwrap(),
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
                bio: Some(Bio::parse("hello").unwrap()),
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
                bio: Some(Bio::parse("x").unwrap()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(missing.status(), 404);
}

// ---- username prefix search ---------------------------------------------------------------

/// The search result the old single-partition search returned for `prefix`, computed from
/// the fixture: users whose lower-cased username starts with the lower-cased prefix, in
/// (lower-cased username, id) order. The oracle every search test compares against.
fn oracle(fixture: &[User], prefix: &str) -> Vec<UserSummary> {
    let prefix = prefix.to_ascii_lowercase();
    let mut matches: Vec<&User> = fixture
        .iter()
        .filter(|user| user.username.to_ascii_lowercase().starts_with(&prefix))
        .collect();
    matches.sort_by_key(|user| (user.username.to_ascii_lowercase(), user.id));
    matches.into_iter().map(UserSummary::from).collect()
}

/// Checks every page of a search of `prefix` with `limit` against the oracle, page by page:
/// the same users in the same order, full pages but the last, and a cursor exactly when
/// more follow. Returns the number of pages.
async fn assert_search_matches_oracle(
    store: &DynamoStore,
    fixture: &[User],
    prefix: &str,
    limit: usize,
) -> usize {
    let expected = oracle(fixture, prefix);
    let mut chunks: Vec<&[UserSummary]> = expected.chunks(limit).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let mut request = PageRequest::first(limit);
    for (index, chunk) in chunks.iter().enumerate() {
        let page = store.search_usernames(prefix, &request).await.unwrap();
        assert_eq!(
            page.items, *chunk,
            "{prefix:?} limit {limit}: page {index} differs from the oracle"
        );
        let last = index + 1 == chunks.len();
        assert_eq!(
            page.next_cursor.is_none(),
            last,
            "{prefix:?} limit {limit}: page {index} of {}",
            chunks.len()
        );
        if let Some(cursor) = page.next_cursor {
            request = PageRequest::after(limit, cursor);
        }
    }
    chunks.len()
}

/// Stems that give the fixture shared prefixes of every length, in mixed case, over many
/// first characters (letters, digits, underscore).
const STEMS: [&str; 12] = [
    "sam", "Sam_", "SAMANTHA", "sa", "al", "Alex", "bob", "b0b", "_x", "zz", "9lives", "q",
];

/// `count` users with varied usernames (a stem, random case, a random tail), unique in any
/// case, from a fixed seed so a failure reproduces.
async fn search_fixture(store: &DynamoStore, count: usize) -> Vec<User> {
    const TAIL: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
    let mut state: u64 = 0x5eed_0001;
    let mut next = move |bound: usize| {
        // xorshift64: deterministic, good enough to vary names.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let mut names = Vec::with_capacity(count);
    let mut taken = HashSet::new();
    while names.len() < count {
        let mut name: String = STEMS[next(STEMS.len())]
            .chars()
            .map(|c| {
                if next(3) == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for _ in 0..next(7) {
            name.push(TAIL[next(TAIL.len())] as char);
        }
        while name.len() < 3 {
            name.push(TAIL[next(TAIL.len())] as char);
        }
        if taken.insert(name.to_ascii_lowercase()) {
            names.push(name);
        }
    }
    stream::iter(names)
        .map(|name| async move { user(store, &name).await })
        .buffer_unordered(16)
        .collect()
        .await
}

/// A store whose client counts its requests.
fn metered_store(db: &TestDb, meter: &RequestMeter) -> DynamoStore {
    let clients = DynamoClients::from_sdk_config(
        &local_sdk_config(),
        &db.config(),
        &Endpoints {
            dynamodb: Some(db.endpoint.clone()),
            meter: Some(meter.clone()),
            ..Endpoints::default()
        },
    )
    .unwrap_or_else(|e| panic!("metered clients: {e:?}"));
    DynamoStore::new(clients.dynamodb, &db.table_name)
}

/// The stored item at `key`, as the table holds it.
async fn raw_item(store: &DynamoStore, key: &keys::Key) -> Item {
    store
        .table
        .get(key)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no item at {key:?}"))
}

/// Every item in one partition of GSI 1.
async fn gsi1_partition(store: &DynamoStore, partition: &str) -> Vec<Item> {
    store
        .table
        .query_all(&Query::new(KeyShape::Gsi1, partition), 10_000)
        .await
        .unwrap()
}

#[tokio::test]
async fn search_of_a_thousand_users_equals_the_old_search_page_by_page() {
    let db = TestDb::start().await;
    let store = db.store();
    let fixture = search_fixture(&store, 1000).await;

    // The fixture spreads over every shard of its busiest first characters.
    for first in ['s', 'a', 'b'] {
        for shard in 0..keys::USERNAME_SEARCH_SHARDS {
            let partition = keys::username_search_partition(first, shard);
            assert!(
                !gsi1_partition(&store, &partition).await.is_empty(),
                "{partition} is empty"
            );
        }
    }
    let full_name = fixture[0].username.to_ascii_uppercase();
    let cases: [(&str, usize); 14] = [
        ("s", 20),
        ("S", 100),
        ("sa", 7),
        ("SAM", 13),
        ("sam_", 3),
        ("samantha", 100),
        ("a", 9),
        ("Al", 25),
        ("b0", 4),
        ("_", 11),
        ("9L", 6),
        ("zz", 1),
        (&full_name, 2),
        ("xyz", 5),
    ];
    for (prefix, limit) in cases {
        let pages = assert_search_matches_oracle(&store, &fixture, prefix, limit).await;
        assert!(pages >= 1);
    }
    // Enough matches that pages cross shards many times.
    assert!(
        oracle(&fixture, "s").len() > 200,
        "{}",
        oracle(&fixture, "s").len()
    );
    assert!(oracle(&fixture, "sam_").len() > 10);
    assert_eq!(oracle(&fixture, &full_name).len(), 1);
}

#[tokio::test]
async fn search_order_is_stable_and_pages_resume_across_shards_without_repeats() {
    let db = TestDb::start().await;
    let store = db.store();
    let mut fixture = Vec::new();
    for name in [
        "sam_0", "Sam_1", "SAM_2", "sam_3", "sAm_4", "sam_5", "Sam_6", "sam_7", "Sammy", "sam",
        "sally", "bob",
    ] {
        fixture.push(user(&store, name).await);
    }
    let shards: HashSet<u32> = fixture
        .iter()
        .map(|u| keys::username_search_shard(u.id))
        .collect();
    assert!(shards.len() > 1, "the fixture spans shards: {shards:?}");

    let first = store
        .search_usernames("sam", &PageRequest::first(100))
        .await
        .unwrap();
    let again = store
        .search_usernames("SAM", &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(first, again, "same order every time, in any case");
    assert_eq!(first.items, oracle(&fixture, "sam"));
    assert_eq!(first.items[0].username, "sam", "shorter names first");

    for limit in [1, 2, 3, 4] {
        let (found, pages) = walk_pages(limit, |page| {
            let store = store.clone();
            async move { store.search_usernames("sam", &page).await }
        })
        .await;
        assert_eq!(found, oracle(&fixture, "sam"), "limit {limit}");
        assert_eq!(pages, 10_usize.div_ceil(limit), "limit {limit}");
    }

    let s_matches = store
        .search_usernames("s", &PageRequest::first(100))
        .await
        .unwrap();
    assert_eq!(s_matches.items.len(), 11);
    assert_eq!(s_matches.next_cursor, None);
}

#[tokio::test]
async fn a_search_page_is_one_query_per_shard_and_reads_no_profile() {
    let db = TestDb::start().await;
    let store = db.store();
    for i in 0..30 {
        user(&store, &format!("sam_{i:02}")).await;
    }
    let meter = RequestMeter::new();
    let metered = metered_store(&db, &meter);
    let mut request = PageRequest::first(10);
    for page in 0..3 {
        let before = meter.snapshot();
        let found = metered.search_usernames("sam", &request).await.unwrap();
        let spent = meter.snapshot().since(&before);
        assert_eq!(found.items.len(), 10);
        assert_eq!(
            spent.operation_requests(DYNAMODB, "Query"),
            u64::from(keys::USERNAME_SEARCH_SHARDS),
            "page {page}: {spent:?}"
        );
        assert_eq!(
            spent.dynamodb_requests(),
            u64::from(keys::USERNAME_SEARCH_SHARDS)
        );
        match found.next_cursor {
            Some(cursor) => request = PageRequest::after(10, cursor),
            None => assert_eq!(page, 2),
        }
    }
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
    // A cursor of the `sam` range must not read the `tom` range.
    let error = store
        .search_usernames("tom", &PageRequest::after(1, cursor.clone()))
        .await
        .unwrap_err();
    assert_eq!(error.status(), 400);
    // A narrower search with a cursor outside its range, forged positions, and garbage.
    let forged = |json: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    };
    for (prefix, bad) in [
        ("sam_b", cursor.clone()),
        ("sam", "garbage!!".to_owned()),
        (
            "sam",
            forged(r#"{"after":"sam~~","id":"00000000-0000-0000-0000-000000000000"}"#),
        ),
        (
            "sam",
            forged(r#"{"after":"SAM_A","id":"00000000-0000-0000-0000-000000000000"}"#),
        ),
        ("sam", forged(r#"{"after":"sam_a","id":"nope"}"#)),
        ("sam", forged(r#"{"after":"sam_a"}"#)),
        (
            "sam",
            forged(r#"{"gsi1pk":"UNAME#s","gsi1sk":"sam_a","pk":"x","sk":"y"}"#),
        ),
    ] {
        let error = store
            .search_usernames(prefix, &PageRequest::after(1, bad.clone()))
            .await
            .unwrap_err();
        assert_eq!(error.status(), 400, "{prefix} {bad}");
    }
    for prefix in ["", "sam-", "sam~", &"s".repeat(31)] {
        let error = store
            .search_usernames(prefix, &PageRequest::first(1))
            .await
            .unwrap_err();
        assert_eq!(error.status(), 400, "{prefix:?}");
    }
}

// ---- search items: written at registration, kept in sync, no counters ----------------------

#[tokio::test]
async fn counter_updates_write_no_search_index_entry() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "Alice").await;
    let bob = user(&store, "bob").await;

    let profile = raw_item(&store, &keys::user_profile(alice.id)).await;
    for attribute in ["gsi1pk", "gsi1sk", "gsi2pk", "gsi3pk"] {
        assert!(!profile.contains_key(attribute), "profile has {attribute}");
    }
    let search = raw_item(&store, &keys::user_search(alice.id)).await;
    let entry = keys::username_search_entry(alice.id, "alice");
    assert_eq!(
        search.get("gsi1pk"),
        Some(&AttributeValue::S(entry.pk.clone()))
    );
    assert_eq!(
        search.get("gsi1sk"),
        Some(&AttributeValue::S(entry.sk.clone()))
    );
    for counter in ["follower_count", "following_count", "post_count"] {
        assert!(!search.contains_key(counter), "search item has {counter}");
    }
    let index_before = gsi1_partition(&store, &entry.pk).await;

    // Every counter of the profile changes...
    store.follow(alice.id, bob.id, Utc::now()).await.unwrap();
    store.follow(bob.id, alice.id, Utc::now()).await.unwrap();
    store
        .create_post(NewPost {
            author: alice.id,
            text: PostText::parse("hello").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await
        .unwrap();
    store.unfollow(bob.id, alice.id).await.unwrap();
    let updated = store.get_user(alice.id).await.unwrap().unwrap();
    assert_eq!(
        (
            updated.follower_count,
            updated.following_count,
            updated.post_count
        ),
        (0, 1, 1)
    );
    // ...and the profile still has no index key, so none of those writes touched an index;
    // the search index entry and the item behind it are exactly as before.
    let profile = raw_item(&store, &keys::user_profile(alice.id)).await;
    assert!(!profile.contains_key("gsi1pk") && !profile.contains_key("gsi1sk"));
    assert_eq!(raw_item(&store, &keys::user_search(alice.id)).await, search);
    assert_eq!(gsi1_partition(&store, &entry.pk).await, index_before);
    // The only items of the search index are search items.
    for item in db.scan_all().await {
        if item
            .get("gsi1pk")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|pk| pk.starts_with("UNAME#"))
        {
            assert_eq!(
                item.get("sk"),
                Some(&AttributeValue::S(keys::USER_SEARCH.into()))
            );
        }
    }
}

#[tokio::test]
async fn a_new_display_name_reaches_search_and_other_edits_leave_the_search_item_alone() {
    let db = TestDb::start().await;
    let store = db.store();
    let sam = user(&store, "Sam").await;
    let search = raw_item(&store, &keys::user_search(sam.id)).await;

    store
        .update_profile(
            sam.id,
            &ProfileUpdate {
                bio: Some(Bio::parse("hi").unwrap()),
                is_private: Some(true),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(raw_item(&store, &keys::user_search(sam.id)).await, search);

    let updated = store
        .update_profile(
            sam.id,
            &ProfileUpdate {
                display_name: Some(DisplayName::parse("Samuel").unwrap()),
                bio: Some(Bio::parse("hello").unwrap()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (updated.display_name.as_str(), updated.bio.as_str()),
        ("Samuel", "hello")
    );
    assert!(updated.is_private);
    let found = store
        .search_usernames("sa", &PageRequest::first(5))
        .await
        .unwrap();
    assert_eq!(found.items, vec![UserSummary::from(&updated)]);

    let missing = store
        .update_profile(
            new_id(),
            &ProfileUpdate {
                display_name: Some(DisplayName::parse("x").unwrap()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(missing.status(), 404);
}

/// Puts `user` back the way registration stored users before search items: the search keys
/// on the profile (`UNAME#{first char}` / `{username_lower}`) and no search item.
async fn make_old_style(store: &DynamoStore, user: &User) {
    let lower = user.username.to_ascii_lowercase();
    let first = lower.chars().next().unwrap();
    store
        .table
        .delete(&keys::user_search(user.id))
        .await
        .unwrap();
    let updated = store
        .table
        .update_if(
            &keys::user_profile(user.id),
            "SET gsi1pk = :pk, gsi1sk = :sk",
            "attribute_exists(pk)",
            &[],
            vec![
                (":pk", AttributeValue::S(format!("UNAME#{first}"))),
                (":sk", AttributeValue::S(lower)),
            ],
        )
        .await
        .unwrap();
    assert!(updated);
}

#[tokio::test]
async fn rebuild_search_entry_migrates_old_profiles_idempotently() {
    let db = TestDb::start().await;
    let store = db.store();
    let sam = user(&store, "Sam").await;
    let sally = user(&store, "sally").await;
    make_old_style(&store, &sam).await;
    make_old_style(&store, &sally).await;
    assert_eq!(gsi1_partition(&store, "UNAME#s").await.len(), 2);
    let found = store
        .search_usernames("s", &PageRequest::first(10))
        .await
        .unwrap();
    assert!(found.items.is_empty(), "not migrated: not found");

    // A display name edited before the migration is the one the migration copies.
    store
        .update_profile(
            sam.id,
            &ProfileUpdate {
                display_name: Some(DisplayName::parse("Samuel").unwrap()),
                ..ProfileUpdate::default()
            },
        )
        .await
        .unwrap();

    for id in [sam.id, sally.id] {
        assert_eq!(
            store.rebuild_search_entry(id).await.unwrap(),
            SearchEntryRebuild::Written
        );
    }
    let sam = store.get_user(sam.id).await.unwrap().unwrap();
    let found = store
        .search_usernames("S", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        found.items,
        vec![UserSummary::from(&sally), UserSummary::from(&sam)]
    );
    assert_eq!(found.items[1].display_name, "Samuel");
    assert!(
        gsi1_partition(&store, "UNAME#s").await.is_empty(),
        "old entries removed"
    );
    let profile = raw_item(&store, &keys::user_profile(sam.id)).await;
    assert!(!profile.contains_key("gsi1pk") && !profile.contains_key("gsi1sk"));

    // Running it again writes nothing; a stale search item is repaired.
    let items = db.scan_all().await;
    for id in [sam.id, sally.id] {
        assert_eq!(
            store.rebuild_search_entry(id).await.unwrap(),
            SearchEntryRebuild::UpToDate
        );
    }
    assert_eq!(db.scan_all().await, items);
    let stale = store
        .table
        .update_if(
            &keys::user_search(sally.id),
            "SET display_name = :stale",
            "attribute_exists(pk)",
            &[],
            vec![(":stale", AttributeValue::S("stale".into()))],
        )
        .await
        .unwrap();
    assert!(stale);
    assert_eq!(
        store.rebuild_search_entry(sally.id).await.unwrap(),
        SearchEntryRebuild::Written
    );
    let found = store
        .search_usernames("sal", &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(found.items, vec![UserSummary::from(&sally)]);
    assert_eq!(
        store.rebuild_search_entry(new_id()).await.unwrap(),
        SearchEntryRebuild::NoProfile
    );
    let item = raw_item(&store, &keys::user_search(sally.id)).await;
    assert_eq!(
        item.get("entity"),
        Some(&AttributeValue::S("user_search".into()))
    );
}

/// Write units DynamoDB reports for one `ADD follower_count 1` on `user`'s profile, the
/// update every follow makes: one unit for the item, one more for each index entry the
/// item carries.
async fn counter_update_units(db: &TestDb, user: &User) -> f64 {
    let meter = RequestMeter::new();
    let updated = metered_store(db, &meter)
        .table
        .update_if(
            &keys::user_profile(user.id),
            "ADD follower_count :one",
            "attribute_exists(pk)",
            &[],
            vec![(":one", AttributeValue::N("1".into()))],
        )
        .await
        .unwrap();
    assert!(updated);
    meter.snapshot().dynamodb_write_units
}

#[tokio::test]
async fn a_profile_counter_update_is_one_write_unit_once_search_keys_are_off_the_profile() {
    let db = TestDb::start().await;
    let store = db.store();
    let new = user(&store, "newcomer").await;
    let old = user(&store, "oldtimer").await;
    make_old_style(&store, &old).await;

    // Measured, not assumed: the old layout rewrote the search index entry with every
    // counter change (2 units: item + GSI 1); a profile without search keys writes only
    // itself (1 unit), before and after migration.
    assert_eq!(counter_update_units(&db, &old).await, 2.0);
    assert_eq!(counter_update_units(&db, &new).await, 1.0);
    store.rebuild_search_entry(old.id).await.unwrap();
    assert_eq!(counter_update_units(&db, &old).await, 1.0);
}
