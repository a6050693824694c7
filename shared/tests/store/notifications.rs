//! Access patterns 21–23: notifications newest first, unread ones through the sparse index,
//! the unread counter; marking one and all read.

use std::collections::HashSet;

use chrono::Utc;
use shared::clock::to_millis;
use shared::domain::{new_id, Notification, NotificationKind, User};
use shared::store::dynamo::{key_map, n};
use shared::store::keys;
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::{notification_items, NewNotification};
use shared::testkit::TestDb;

use crate::support::{user, users, walk_pages};

/// Writes one notification the way a cause does (its items in a transaction).
async fn notify(
    store: &DynamoStore,
    recipient: &User,
    actor: &User,
    kind: NotificationKind,
) -> Notification {
    let items = notification_items(
        &store.table.name,
        &NewNotification {
            recipient: recipient.id,
            kind,
            actor: actor.id,
            post_id: (kind == NotificationKind::Like).then(new_id),
            comment_id: None,
            // Stored timestamps have millisecond precision, as the clocks give them.
            created_at: to_millis(Utc::now()),
            dedup_key: None,
        },
    )
    .unwrap();
    store
        .table
        .transact(items.items)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    items.notification.unwrap()
}

async fn notify_many(
    store: &DynamoStore,
    recipient: &User,
    actor: &User,
    count: usize,
) -> Vec<Notification> {
    let mut all = Vec::new();
    for _ in 0..count {
        all.push(notify(store, recipient, actor, NotificationKind::Like).await);
    }
    all
}

/// Every notification of `recipient` (only the unread ones with `unread_only`), page by page.
async fn list_all(
    store: &DynamoStore,
    recipient: &User,
    unread_only: bool,
    page_size: usize,
) -> (Vec<Notification>, usize) {
    walk_pages(page_size, |page| async move {
        store.notifications(recipient.id, unread_only, &page).await
    })
    .await
}

fn ids(notifications: &[Notification]) -> Vec<shared::domain::NotificationId> {
    notifications.iter().map(|n| n.id).collect()
}

#[tokio::test]
async fn notifications_newest_first_across_pages_each_once() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let mut written = notify_many(&store, &alice, &bob, 7).await;
    notify(&store, &bob, &alice, NotificationKind::Follow).await;

    let (all, pages) = list_all(&store, &alice, false, 3).await;
    assert_eq!(pages, 3);
    written.reverse();
    assert_eq!(
        all, written,
        "every notification once, newest first, only Alice's"
    );
    assert!(all.iter().all(|n| !n.read && n.recipient_id == alice.id));
}

#[tokio::test]
async fn notifications_caused_by_a_follow_are_listed_with_their_kind_and_actor() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    store.follow(bob.id, alice.id, Utc::now()).await.unwrap();
    let page = store
        .notifications(alice.id, false, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].kind, NotificationKind::Follow);
    assert_eq!(page.items[0].actor_id, bob.id);
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 1);
}

#[tokio::test]
async fn unread_filter_and_count_stay_exact_as_notifications_are_read() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    assert_eq!(
        store.unread_count(alice.id).await.unwrap(),
        0,
        "no counter yet is zero"
    );
    let written = notify_many(&store, &alice, &bob, 5).await;
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 5);

    store.mark_read(alice.id, written[1].id).await.unwrap();
    store.mark_read(alice.id, written[3].id).await.unwrap();
    // Marking again is fine and does not count twice.
    store.mark_read(alice.id, written[3].id).await.unwrap();
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 3);

    let (unread, pages) = list_all(&store, &alice, true, 2).await;
    assert_eq!(pages, 2);
    assert_eq!(
        ids(&unread),
        vec![written[4].id, written[2].id, written[0].id]
    );
    let (all, _) = list_all(&store, &alice, false, 10).await;
    let read: HashSet<_> = all.iter().filter(|n| n.read).map(|n| n.id).collect();
    assert_eq!(read, HashSet::from([written[1].id, written[3].id]));
}

#[tokio::test]
async fn marking_an_unknown_or_someone_elses_notification_is_not_found() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let alices = notify(&store, &alice, &bob, NotificationKind::Follow).await;

    assert_eq!(
        store
            .mark_read(bob.id, alices.id)
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        store
            .mark_read(alice.id, new_id())
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 1, "untouched");
    let (unread, _) = list_all(&store, &alice, true, 10).await;
    assert_eq!(ids(&unread), vec![alices.id]);
}

#[tokio::test]
async fn mark_all_read_empties_the_unread_index_in_chunks() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    // More than one transaction's worth.
    let written = notify_many(&store, &alice, &bob, 30).await;
    store.mark_read(alice.id, written[0].id).await.unwrap();
    notify(&store, &bob, &alice, NotificationKind::Follow).await;

    assert_eq!(store.mark_all_read(alice.id).await.unwrap(), 29);
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 0);
    assert!(list_all(&store, &alice, true, 10).await.0.is_empty());
    let (all, _) = list_all(&store, &alice, false, 100).await;
    assert_eq!(all.len(), 30);
    assert!(all.iter().all(|n| n.read));
    assert_eq!(
        store.mark_all_read(alice.id).await.unwrap(),
        0,
        "nothing left"
    );
    assert_eq!(
        store.unread_count(bob.id).await.unwrap(),
        1,
        "Bob's are his own"
    );

    // New notifications count from zero again.
    notify(&store, &alice, &bob, NotificationKind::Comment).await;
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 1);
}

#[tokio::test]
async fn marking_one_actors_notifications_read_leaves_the_others_unread() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol] = users(&store, ["alice", "bob", "carol"]).await;
    // Bob's interleaved with carol's: 120 entries, more than one page of the walk and
    // several transactions' worth of bob's.
    let mut carols = Vec::new();
    for _ in 0..40 {
        notify_many(&store, &alice, &bob, 2).await;
        carols.push(notify(&store, &alice, &carol, NotificationKind::Like).await);
    }
    let bobs_to_carol = notify(&store, &carol, &bob, NotificationKind::Follow).await;

    assert_eq!(store.mark_read_from(alice.id, bob.id).await.unwrap(), 80);
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 40);
    let (unread, _) = list_all(&store, &alice, true, 7).await;
    let mut expected = ids(&carols);
    expected.reverse();
    assert_eq!(ids(&unread), expected, "carol's, newest first");
    assert_eq!(store.mark_read_from(alice.id, bob.id).await.unwrap(), 0);
    // Another recipient's notifications from the same actor are not touched.
    let (carols_unread, _) = list_all(&store, &carol, true, 10).await;
    assert_eq!(ids(&carols_unread), vec![bobs_to_carol.id]);
}

#[tokio::test]
async fn the_unread_counter_never_goes_negative() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    let written = notify_many(&store, &alice, &bob, 3).await;
    // A counter that drifted below the real number of unread notifications.
    db.dynamodb
        .update_item()
        .table_name(&db.table_name)
        .set_key(Some(key_map(&keys::notification_state(alice.id))))
        .update_expression("SET unread_count = :one")
        .expression_attribute_values(":one", n(1))
        .send()
        .await
        .unwrap();

    store.mark_read(alice.id, written[0].id).await.unwrap();
    store.mark_read(alice.id, written[1].id).await.unwrap();
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 0);
    assert_eq!(store.mark_all_read(alice.id).await.unwrap(), 1);
    assert_eq!(store.unread_count(alice.id).await.unwrap(), 0);
    let state = store
        .table
        .get(&keys::notification_state(alice.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        shared::store::dynamo::number_attribute(&state, "unread_count").unwrap(),
        0
    );
}

#[tokio::test]
async fn garbled_or_foreign_cursors_are_validation_errors() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (user(&store, "alice").await, user(&store, "bob").await);
    notify_many(&store, &alice, &bob, 3).await;
    notify_many(&store, &bob, &alice, 3).await;
    for unread_only in [false, true] {
        let garbled = PageRequest::after(1, "%%%garbage");
        let error = store
            .notifications(alice.id, unread_only, &garbled)
            .await
            .unwrap_err();
        assert_eq!(error.status(), 400);
        // Alice's cursor does not read Bob's notifications, nor the other list's index.
        let page = store
            .notifications(alice.id, unread_only, &PageRequest::first(1))
            .await
            .unwrap();
        let cursor = page.next_cursor.unwrap();
        let foreign = PageRequest::after(1, cursor.clone());
        assert_eq!(
            store
                .notifications(bob.id, unread_only, &foreign)
                .await
                .unwrap_err()
                .status(),
            400
        );
        let other_list = store
            .notifications(alice.id, !unread_only, &foreign)
            .await
            .unwrap_err();
        assert_eq!(other_list.status(), 400);
    }
}
