//! Access patterns 24 (connections of a user), 25 (connections of many users in one
//! batch), 26 (connection by id) and 27 (subscribers of a room), plus the per-user
//! connection limit and the clean-up a disconnect owes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use shared::clock::to_millis;
use shared::domain::{new_id, Connection, PostId, Subscription, UserId};
use shared::error::Error;
use shared::store::dynamo::key_map;
use shared::store::keys;
use shared::store::{GoneRemoval, StoredConnection, HANDSHAKE_WINDOW, MAX_ROOMS_PER_CONNECTION};
use shared::testkit::TestDb;

/// API Gateway's 2-hour cap plus a margin, as `ws-connect` stores it.
fn lifetime() -> Duration {
    Duration::minutes(135)
}

fn connection_at(user: UserId, id: &str, connected_at: DateTime<Utc>) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        user_id: user,
        connected_at: to_millis(connected_at),
        user_agent: Some("ripple-test/1.0".to_owned()),
        expires_at: (connected_at + lifetime()).timestamp(),
    }
}

fn connection(user: UserId, id: &str) -> Connection {
    connection_at(user, id, Utc::now())
}

fn subscription(channel: &str, connection: &Connection) -> Subscription {
    Subscription {
        channel: channel.to_owned(),
        connection_id: connection.connection_id.clone(),
        user_id: connection.user_id,
    }
}

const LIMIT: u32 = 10;

#[tokio::test]
async fn pattern_26_a_connection_by_id() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let conn = connection(alice, "Ab1-cD2=");
    store.add_connection(&conn, LIMIT).await.unwrap();

    assert_eq!(
        store.get_connection("Ab1-cD2=").await.unwrap(),
        Some(conn.clone())
    );
    assert_eq!(store.get_connection("nope").await.unwrap(), None);

    // The item carries the TTL attribute, as a number.
    let item = db
        .dynamodb
        .get_item()
        .table_name(&db.table_name)
        .set_key(Some(key_map(&keys::connection("Ab1-cD2="))))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(
        item.get("expires_at"),
        Some(&AttributeValue::N(conn.expires_at.to_string()))
    );
}

#[tokio::test]
async fn pattern_24_the_connections_of_a_user() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (new_id(), new_id());
    for id in ["c3", "c1", "c2"] {
        store
            .add_connection(&connection(alice, id), LIMIT)
            .await
            .unwrap();
    }
    store
        .add_connection(&connection(bob, "b1"), LIMIT)
        .await
        .unwrap();

    assert_eq!(
        store.connections_of_user(alice).await.unwrap(),
        vec!["c1", "c2", "c3"]
    );
    assert_eq!(store.connections_of_user(bob).await.unwrap(), vec!["b1"]);
    assert_eq!(
        store.connections_of_user(new_id()).await.unwrap(),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn pattern_25_the_connections_of_150_users_in_one_call() {
    let db = TestDb::start().await;
    let store = db.store();
    let mut expected: HashMap<UserId, Vec<String>> = HashMap::new();
    let users: Vec<UserId> = (0..150).map(|_| new_id()).collect();
    for (i, user) in users.iter().enumerate() {
        // Every third user has a second device.
        let devices = if i % 3 == 0 { 2 } else { 1 };
        for device in 0..devices {
            let id = format!("u{i}-d{device}");
            store
                .add_connection(&connection(*user, &id), LIMIT)
                .await
                .unwrap();
            expected.entry(*user).or_default().push(id);
        }
    }
    // Users without a connection (never connected, or all closed) are simply absent.
    let offline = new_id();
    let closed = new_id();
    store
        .add_connection(&connection(closed, "closed"), LIMIT)
        .await
        .unwrap();
    store.remove_connection("closed").await.unwrap();

    let mut asked = users.clone();
    asked.extend([offline, closed, users[0]]);
    let found = store.connections_of_users(&asked).await.unwrap();
    assert_eq!(found.len(), 150);
    for (user, mut ids) in expected {
        ids.sort();
        assert_eq!(found[&user], ids);
    }
    assert!(!found.contains_key(&offline));
    assert!(!found.contains_key(&closed));
    assert!(store.connections_of_users(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn pattern_27_the_subscribers_of_a_room() {
    let db = TestDb::start().await;
    let store = db.store();
    let (alice, bob) = (new_id(), new_id());
    let a1 = connection(alice, "a1");
    let a2 = connection(alice, "a2");
    let b1 = connection(bob, "b1");
    for conn in [&a1, &a2, &b1] {
        store.add_connection(conn, LIMIT).await.unwrap();
    }
    let post = format!("post:{}", PostId::new());
    let other = format!("post:{}", PostId::new());
    store
        .subscribe(&subscription(&post, &a1), a1.expires_at)
        .await
        .unwrap();
    store
        .subscribe(&subscription(&post, &b1), b1.expires_at)
        .await
        .unwrap();
    // Subscribing twice is harmless.
    store
        .subscribe(&subscription(&post, &b1), b1.expires_at)
        .await
        .unwrap();
    store
        .subscribe(&subscription(&other, &a2), a2.expires_at)
        .await
        .unwrap();

    let mut members = store.room_members(&post).await.unwrap();
    members.sort_by(|x, y| x.connection_id.cmp(&y.connection_id));
    assert_eq!(
        members,
        vec![subscription(&post, &a1), subscription(&post, &b1)]
    );
    assert_eq!(
        store.room_members(&other).await.unwrap(),
        vec![subscription(&other, &a2)]
    );
    assert!(store.room_members("post:nobody").await.unwrap().is_empty());

    let stored = store.stored_connection("b1").await.unwrap().unwrap();
    assert_eq!(stored.rooms, vec![post.clone()]);
}

#[tokio::test]
async fn the_connection_over_the_per_user_limit_is_rate_limited_and_not_stored() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    for id in ["c1", "c2", "c3"] {
        store
            .add_connection(&connection(alice, id), 3)
            .await
            .unwrap();
    }
    let before = db.item_count().await;
    let error = store
        .add_connection(&connection(alice, "c4"), 3)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 429, "{error:?}");
    assert!(matches!(error, Error::RateLimited { retry_after_secs } if retry_after_secs >= 1));
    assert_eq!(
        db.item_count().await,
        before,
        "nothing written for the refused connection"
    );
    assert_eq!(store.get_connection("c4").await.unwrap(), None);

    // Another user is not affected, and closing one of Alice's frees a slot.
    store
        .add_connection(&connection(new_id(), "other"), 3)
        .await
        .unwrap();
    store.remove_connection("c2").await.unwrap();
    store
        .add_connection(&connection(alice, "c4"), 3)
        .await
        .unwrap();
    assert_eq!(
        store.connections_of_user(alice).await.unwrap(),
        vec!["c1", "c3", "c4"]
    );
}

#[tokio::test]
async fn concurrent_connects_never_exceed_the_limit() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let connections: Vec<_> = (0..8)
        .map(|i| connection(alice, &format!("c{i}")))
        .collect();
    let results = join_all(connections.iter().map(|c| store.add_connection(c, 3))).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 3, "{results:?}");
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(error.status(), 429, "{error:?}");
    }
    assert_eq!(store.connections_of_user(alice).await.unwrap().len(), 3);
}

#[tokio::test]
async fn a_duplicate_connection_id_is_a_conflict() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    store
        .add_connection(&connection(alice, "c1"), LIMIT)
        .await
        .unwrap();
    let error = store
        .add_connection(&connection(alice, "c1"), LIMIT)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 409);
}

#[tokio::test]
async fn removing_a_connection_cleans_its_rooms_and_the_users_set() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let phone = connection(alice, "phone");
    let laptop = connection(alice, "laptop");
    store.add_connection(&phone, LIMIT).await.unwrap();
    store.add_connection(&laptop, LIMIT).await.unwrap();
    let post = format!("post:{}", PostId::new());
    let presence = format!("presence:{}", UserId::new());
    store
        .subscribe(&subscription(&post, &phone), phone.expires_at)
        .await
        .unwrap();
    store
        .subscribe(&subscription(&presence, &phone), phone.expires_at)
        .await
        .unwrap();
    store
        .subscribe(&subscription(&post, &laptop), laptop.expires_at)
        .await
        .unwrap();

    let removed = store.remove_connection("phone").await.unwrap();
    assert_eq!(removed, Some(phone.clone()));
    assert_eq!(store.get_connection("phone").await.unwrap(), None);
    assert_eq!(
        store.connections_of_user(alice).await.unwrap(),
        vec!["laptop"]
    );
    assert_eq!(
        store.room_members(&post).await.unwrap(),
        vec![subscription(&post, &laptop)]
    );
    assert!(store.room_members(&presence).await.unwrap().is_empty());

    // Idempotent: a second `$disconnect` (or a 410 clean-up racing it) is a no-op.
    assert_eq!(store.remove_connection("phone").await.unwrap(), None);
    assert_eq!(
        store.remove_connection("never-existed").await.unwrap(),
        None
    );
    assert_eq!(
        store.connections_of_user(alice).await.unwrap(),
        vec!["laptop"]
    );
}

#[tokio::test]
async fn removal_racing_subscriptions_leaves_no_orphan_membership() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let conn = connection(alice, "c1");
    store.add_connection(&conn, LIMIT).await.unwrap();
    let channels: Vec<String> = (0..6).map(|i| format!("post:{i}")).collect();
    let subscribes = join_all(channels.iter().map(|channel| async {
        store
            .subscribe(&subscription(channel, &conn), conn.expires_at)
            .await
    }));
    let (subscribed, removed) = tokio::join!(subscribes, store.remove_connection("c1"));
    assert_eq!(removed.unwrap(), Some(conn.clone()));
    for result in subscribed {
        // Each subscribe either landed before the removal (then the removal deleted it) or
        // found the connection gone.
        if let Err(error) = result {
            assert_eq!(error.status(), 404, "{error:?}");
        }
    }
    for channel in &channels {
        assert!(
            store.room_members(channel).await.unwrap().is_empty(),
            "{channel}"
        );
    }
}

#[tokio::test]
async fn subscribing_needs_an_existing_connection_of_the_same_user() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let conn = connection(alice, "c1");
    store.add_connection(&conn, LIMIT).await.unwrap();
    let before = db.item_count().await;

    let ghost = connection(alice, "ghost");
    let error = store
        .subscribe(&subscription("post:x", &ghost), ghost.expires_at)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
    let impostor = Subscription {
        user_id: new_id(),
        ..subscription("post:x", &conn)
    };
    let error = store
        .subscribe(&impostor, conn.expires_at)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
    assert_eq!(db.item_count().await, before, "no membership written");
}

#[tokio::test]
async fn a_connection_has_a_bounded_number_of_subscriptions() {
    let db = TestDb::start().await;
    let store = db.store();
    let conn = connection(new_id(), "c1");
    store.add_connection(&conn, LIMIT).await.unwrap();
    for i in 0..MAX_ROOMS_PER_CONNECTION {
        store
            .subscribe(&subscription(&format!("post:{i}"), &conn), conn.expires_at)
            .await
            .unwrap();
    }
    let error = store
        .subscribe(&subscription("post:one-too-many", &conn), conn.expires_at)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 400, "{error:?}");
    assert!(store
        .room_members("post:one-too-many")
        .await
        .unwrap()
        .is_empty());
    // Re-subscribing to a channel it already has is still fine.
    store
        .subscribe(&subscription("post:0", &conn), conn.expires_at)
        .await
        .unwrap();
    // And removal still fits in one transaction.
    store.remove_connection("c1").await.unwrap();
    assert!(store.room_members("post:7").await.unwrap().is_empty());
}

#[tokio::test]
async fn unsubscribe_removes_the_membership_once() {
    let db = TestDb::start().await;
    let store = db.store();
    let conn = connection(new_id(), "c1");
    store.add_connection(&conn, LIMIT).await.unwrap();
    store
        .subscribe(&subscription("post:a", &conn), conn.expires_at)
        .await
        .unwrap();
    store
        .subscribe(&subscription("post:b", &conn), conn.expires_at)
        .await
        .unwrap();

    assert!(store.unsubscribe("c1", "post:a").await.unwrap());
    assert!(!store.unsubscribe("c1", "post:a").await.unwrap());
    assert!(!store.unsubscribe("gone", "post:a").await.unwrap());
    assert!(store.room_members("post:a").await.unwrap().is_empty());
    assert_eq!(store.room_members("post:b").await.unwrap().len(), 1);
    assert_eq!(
        store.stored_connection("c1").await.unwrap().unwrap().rooms,
        vec!["post:b"]
    );
}

#[tokio::test]
async fn dead_connections_do_not_count_against_the_limit() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let long_ago = Utc::now() - Duration::hours(3);
    // Expired (TTL has not deleted it yet) and subscribed to a room.
    let stale = connection_at(alice, "stale", long_ago);
    store.add_connection(&stale, 3).await.unwrap();
    store
        .subscribe(&subscription("post:p", &stale), stale.expires_at)
        .await
        .unwrap();
    // Deleted by TTL, but its id is still in the user's set (no clean-up ran).
    store
        .add_connection(&connection(alice, "vanished"), 3)
        .await
        .unwrap();
    db.dynamodb
        .delete_item()
        .table_name(&db.table_name)
        .set_key(Some(key_map(&keys::connection("vanished"))))
        .send()
        .await
        .unwrap();
    store
        .add_connection(&connection(alice, "live"), 3)
        .await
        .unwrap();

    store
        .add_connection(&connection(alice, "new"), 3)
        .await
        .unwrap();
    assert_eq!(
        store.connections_of_user(alice).await.unwrap(),
        vec!["live", "new"]
    );
    assert_eq!(store.get_connection("stale").await.unwrap(), None);
    assert!(store.room_members("post:p").await.unwrap().is_empty());

    // Live connections still count.
    store
        .add_connection(&connection(alice, "third"), 3)
        .await
        .unwrap();
    let error = store
        .add_connection(&connection(alice, "fourth"), 3)
        .await
        .unwrap_err();
    assert_eq!(error.status(), 429);
}

#[tokio::test]
async fn releasing_a_ttl_deleted_connection_cleans_up_after_it() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let conn = connection(alice, "c1");
    store.add_connection(&conn, LIMIT).await.unwrap();
    store
        .add_connection(&connection(alice, "c2"), LIMIT)
        .await
        .unwrap();
    store
        .subscribe(&subscription("post:p", &conn), conn.expires_at)
        .await
        .unwrap();

    // What the stream delivers when TTL deletes the item: its old image.
    let old_image = db
        .dynamodb
        .delete_item()
        .table_name(&db.table_name)
        .set_key(Some(key_map(&keys::connection("c1"))))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let expired = StoredConnection::from_item(old_image).unwrap();
    assert_eq!(expired.connection, conn);
    assert_eq!(expired.rooms, vec!["post:p"]);

    store.release_expired_connection(&expired).await.unwrap();
    store.release_expired_connection(&expired).await.unwrap();
    assert_eq!(store.connections_of_user(alice).await.unwrap(), vec!["c2"]);
    assert!(store.room_members("post:p").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_410_within_the_handshake_window_keeps_the_connection() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = new_id();
    let connected_at = Utc::now();
    let fresh = connection_at(alice, "fresh", connected_at);
    store.add_connection(&fresh, LIMIT).await.unwrap();

    // API Gateway answers 410 until `$connect` has returned: "not yet", not "gone".
    let during_handshake = connected_at + HANDSHAKE_WINDOW - Duration::seconds(1);
    assert_eq!(
        store
            .remove_gone_connection("fresh", during_handshake - HANDSHAKE_WINDOW)
            .await
            .unwrap(),
        GoneRemoval::TooYoung
    );
    assert_eq!(
        store.get_connection("fresh").await.unwrap(),
        Some(fresh.clone())
    );
    assert_eq!(
        store.connections_of_user(alice).await.unwrap(),
        vec!["fresh"]
    );

    // Past the window, a 410 is the truth: removed with its set entry.
    let later = connected_at + HANDSHAKE_WINDOW;
    assert_eq!(
        store
            .remove_gone_connection("fresh", later - HANDSHAKE_WINDOW)
            .await
            .unwrap(),
        GoneRemoval::Removed(fresh)
    );
    assert!(store.connections_of_user(alice).await.unwrap().is_empty());
    assert_eq!(
        store
            .remove_gone_connection("fresh", later - HANDSHAKE_WINDOW)
            .await
            .unwrap(),
        GoneRemoval::Absent
    );
}
