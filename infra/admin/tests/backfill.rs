//! `backfill-feeds` against a real engine (embedded dynoxide through the SDK, or DynamoDB
//! Local with `RIPPLE_TEST_DYNAMODB_ENDPOINT`): a table built the new way is taken back to
//! the old shape (no feed items, no search items, search keys on profiles, nobody
//! promoted); the command, interrupted, resumed and run again, gives back exactly the
//! feeds and search of the fresh build.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use ripple_admin::{Backfill, BackfillOptions, Phase};
use shared::config::FeedLimits;
use shared::domain::{new_id, DisplayName, PostText, User, UserId, Username};
use shared::feed::{FeedMaterializer, FeedTask};
use shared::store::keys;
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::NewPost;
use shared::store::NewUser;
use shared::testkit::api::UNUSABLE_PASSWORD_HASH;
use shared::testkit::TestDb;

const BOUND: usize = 2;

fn limits() -> FeedLimits {
    FeedLimits {
        materialize_max_followers: BOUND,
        ..FeedLimits::default()
    }
}

async fn user(store: &DynamoStore, name: &str) -> User {
    store
        .create_user(NewUser {
            id: new_id(),
            username: Username::parse(name).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
            password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
            created_at: Utc::now(),
        })
        .await
        .unwrap()
}

/// Users, follows and posts written the new way: every feed task run.
async fn fresh_build(store: &DynamoStore) -> Vec<User> {
    let feeds = FeedMaterializer::new(Arc::new(store.clone()), limits());
    let mut people = Vec::new();
    for name in ["ann", "bob", "cat", "star", "dan"] {
        people.push(user(store, name).await);
    }
    let id = |n: usize| people[n].id;
    // star (3) has three followers: past the bound of 2, promoted by their first post.
    for (viewer, author) in [(0, 1), (0, 3), (1, 3), (2, 3), (1, 0), (4, 2), (2, 4)] {
        store
            .follow(id(viewer), id(author), Utc::now())
            .await
            .unwrap();
        let task = FeedTask::Backfill {
            viewer: id(viewer),
            author: id(author),
        };
        feeds.apply(&task).await.unwrap();
    }
    for round in 0..3 {
        for author in &people {
            let post = store
                .create_post(NewPost {
                    author: author.id,
                    text: PostText::parse(&format!("{} {round}", author.username)).unwrap(),
                    media_url: None,
                    created_at: Utc::now(),
                })
                .await
                .unwrap();
            let task = FeedTask::Distribute {
                post_id: post.id,
                author_id: post.author_id,
                created_at: post.created_at,
            };
            feeds.apply(&task).await.unwrap();
        }
    }
    people
}

/// The keys of every feed item: what "the same feeds" means item for item.
async fn feed_items(db: &TestDb) -> BTreeSet<(String, String)> {
    db.scan_all()
        .await
        .into_iter()
        .filter_map(|item| {
            let text = |name: &str| item.get(name)?.as_s().ok().cloned();
            let pk = text("pk")?;
            pk.starts_with("FEED#")
                .then(|| (pk, text("sk").unwrap_or_default()))
        })
        .collect()
}

/// The table as a deployment before this change had it.
async fn make_old_shape(db: &TestDb, store: &DynamoStore, people: &[User]) {
    let doomed: Vec<keys::Key> = feed_items(db)
        .await
        .into_iter()
        .map(|(pk, sk)| keys::Key { pk, sk })
        .collect();
    store.table.batch_delete(&doomed).await.unwrap();
    for person in people {
        let lower = person.username.to_ascii_lowercase();
        let first = lower.chars().next().unwrap_or('_');
        store
            .table
            .delete(&keys::user_search(person.id))
            .await
            .unwrap();
        let updated = store
            .table
            .update_if(
                &keys::user_profile(person.id),
                "SET gsi1pk = :pk, gsi1sk = :sk REMOVE feed_merged",
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
}

async fn feed_ids(store: &DynamoStore, viewer: UserId) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page = PageRequest::first(4);
    loop {
        let read = store.home_feed(viewer, &page).await.unwrap();
        ids.extend(read.items.iter().map(|p| p.id.to_string()));
        match read.next_cursor {
            Some(cursor) => page = PageRequest::after(4, cursor),
            None => return ids,
        }
    }
}

/// Everyone a search finds, one query per first letter.
async fn search(store: &DynamoStore) -> Vec<String> {
    let mut names = Vec::new();
    for prefix in ["a", "b", "c", "d", "s"] {
        let found = store
            .search_usernames(prefix, &PageRequest::first(50))
            .await
            .unwrap();
        names.extend(found.items.iter().map(|u| u.username.clone()));
    }
    names
}

fn options(max_pages: Option<usize>) -> BackfillOptions {
    BackfillOptions {
        limits: limits(),
        page_size: 3,
        restart: false,
        max_pages,
        now: Utc::now(),
    }
}

#[tokio::test]
async fn an_interrupted_resumed_and_repeated_backfill_gives_the_fresh_builds_feeds() {
    let db = TestDb::start().await;
    let store = db.store();
    let people = fresh_build(&store).await;
    let fresh_items = feed_items(&db).await;
    let mut fresh_feeds = Vec::new();
    for person in &people {
        fresh_feeds.push(feed_ids(&store, person.id).await);
    }
    let fresh_search = search(&store).await;
    assert!(
        fresh_items.iter().any(|(_, sk)| sk.starts_with("L#")),
        "a marker"
    );
    assert_eq!(fresh_search, ["ann", "bob", "cat", "dan", "star"]);

    make_old_shape(&db, &store, &people).await;
    assert!(feed_items(&db).await.is_empty());
    assert!(
        search(&store).await.is_empty(),
        "old profiles are not in the new search"
    );

    // Interrupted after one page, then resumed from its checkpoint.
    let first = Backfill::new(store.clone(), options(Some(1)))
        .run()
        .await
        .unwrap();
    assert!(!first.finished);
    let resumed = Backfill::new(store.clone(), options(None))
        .run()
        .await
        .unwrap();
    assert_eq!(resumed.resumed_in, Some(Phase::Profiles));
    assert!(resumed.finished);
    assert_eq!(first.profiles + resumed.profiles, people.len());
    assert_eq!(resumed.feeds, people.len());
    assert_eq!(feed_items(&db).await, fresh_items);

    // A second full run changes nothing.
    let again = Backfill::new(store.clone(), options(None))
        .run()
        .await
        .unwrap();
    assert_eq!(
        again.resumed_in, None,
        "a finished run leaves no checkpoint"
    );
    assert_eq!(
        again.search_items_written, 0,
        "search items are already current"
    );
    assert_eq!(feed_items(&db).await, fresh_items);
    for (person, fresh) in people.iter().zip(&fresh_feeds) {
        assert_eq!(
            &feed_ids(&store, person.id).await,
            fresh,
            "{}",
            person.username
        );
        let merged = store
            .merged_feed(person.id, &PageRequest::first(50))
            .await
            .unwrap();
        let merged: Vec<String> = merged.items.iter().map(|p| p.id.to_string()).collect();
        assert_eq!(&merged, fresh, "{}: the oracle agrees", person.username);
    }
    assert_eq!(search(&store).await, fresh_search);
}

#[tokio::test]
async fn the_command_line_migrates_a_table_at_an_endpoint() {
    let db = TestDb::start().await;
    let store = db.store();
    let people = fresh_build(&store).await;
    let fresh_items = feed_items(&db).await;
    make_old_shape(&db, &store, &people).await;
    for _ in 0..2 {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripple-admin"))
            .args(["backfill-feeds", "--endpoint", &db.endpoint])
            .args(["--table", &db.config().table_name])
            .args(["--materialize-max-followers", &BOUND.to_string()])
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("finished: true"));
        assert_eq!(feed_items(&db).await, fresh_items);
    }
}
