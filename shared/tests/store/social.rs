//! Access patterns 5–10: who a user follows, followers, relationship both ways, pending
//! follow requests, blocks and who blocks a user; plus the follow-counter invariants.

use std::collections::HashSet;

use chrono::Utc;
use futures::future::join_all;
use shared::domain::{NotificationKind, UserId};
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::{FollowerIds, MAX_FOLLOWING};
use shared::testkit::TestDb;

use crate::support::{stored_notifications, user, users, walk_pages};

/// (follower_count, following_count) as stored on the profile.
async fn counts(store: &DynamoStore, user: UserId) -> (i64, i64) {
    let profile = store.get_user(user).await.unwrap().unwrap();
    (profile.follower_count, profile.following_count)
}

#[tokio::test]
async fn follow_writes_relation_both_counters_and_a_follow_notification() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob] = users(&store, ["alice", "bob"]).await;

    assert!(
        store
            .follow(alice.id, bob.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );

    assert_eq!(counts(&store, alice.id).await, (0, 1));
    assert_eq!(counts(&store, bob.id).await, (1, 0));
    // Pattern 5: who alice follows.
    let following = store
        .following(alice.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(following.items.len(), 1);
    assert_eq!(following.items[0].followee_id, bob.id);
    assert_eq!(following.next_cursor, None);
    // Pattern 6: bob's followers.
    let followers = store
        .followers(bob.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(followers.items.len(), 1);
    assert_eq!(followers.items[0].follower_id, alice.id);
    assert_eq!(store.following_ids(alice.id).await.unwrap(), vec![bob.id]);
    // Pattern 31: the keys-only fan-out index of bob's followers.
    assert_eq!(
        store.follower_ids(bob.id, 10).await.unwrap(),
        FollowerIds {
            ids: vec![alice.id],
            truncated: false
        }
    );

    let notifications = stored_notifications(&store, bob.id).await;
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].kind, NotificationKind::Follow);
    assert_eq!(notifications[0].actor_id, alice.id);
    assert!(!notifications[0].read);
    assert!(
        stored_notifications(&store, alice.id).await.is_empty(),
        "the actor is not notified"
    );

    // Following again is a no-op: same counters, no second notification.
    assert!(
        !store
            .follow(alice.id, bob.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
    assert_eq!(counts(&store, bob.id).await, (1, 0));
    assert_eq!(counts(&store, alice.id).await, (0, 1));
    assert_eq!(stored_notifications(&store, bob.id).await.len(), 1);
}

#[tokio::test]
async fn self_follow_is_rejected_and_unknown_users_are_not_found() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let ghost = shared::domain::new_id();
    let before = db.item_count().await;

    assert_eq!(
        store
            .follow(alice.id, alice.id, Utc::now())
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        store
            .follow(alice.id, ghost, Utc::now())
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        store
            .request_follow(alice.id, ghost, Utc::now())
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        store
            .block(alice.id, alice.id, Utc::now())
            .await
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        store
            .block(alice.id, ghost, Utc::now())
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        db.item_count().await,
        before,
        "failed writes leave nothing behind"
    );
    assert_eq!(counts(&store, alice.id).await, (0, 0));
}

#[tokio::test]
async fn twenty_concurrent_follows_count_once_and_concurrent_unfollows_return_to_zero() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob] = users(&store, ["alice", "bob"]).await;

    let now = Utc::now();
    let results = join_all((0..20).map(|_| store.follow(alice.id, bob.id, now))).await;
    let created = results
        .into_iter()
        .map(Result::unwrap)
        .filter(|created| created.outcome)
        .count();
    assert_eq!(created, 1, "exactly one attempt creates the follow");
    assert_eq!(counts(&store, alice.id).await, (0, 1));
    assert_eq!(counts(&store, bob.id).await, (1, 0));
    assert_eq!(stored_notifications(&store, bob.id).await.len(), 1);

    let results = join_all((0..20).map(|_| store.unfollow(alice.id, bob.id))).await;
    let removed = results
        .into_iter()
        .map(Result::unwrap)
        .filter(|removed| *removed)
        .count();
    assert_eq!(removed, 1, "exactly one attempt removes the follow");
    assert_eq!(counts(&store, alice.id).await, (0, 0));
    assert_eq!(counts(&store, bob.id).await, (0, 0));
    assert!(
        !store
            .relationship(alice.id, bob.id)
            .await
            .unwrap()
            .following
    );
    assert!(
        !store.unfollow(alice.id, bob.id).await.unwrap(),
        "unfollow is idempotent"
    );
    assert_eq!(counts(&store, bob.id).await, (0, 0));
}

#[tokio::test]
async fn relationship_reads_follows_requests_and_blocks_both_ways() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol] = users(&store, ["alice", "bob", "carol"]).await;

    let none = store.relationship(alice.id, bob.id).await.unwrap();
    assert_eq!(none, Default::default());

    store.follow(bob.id, alice.id, Utc::now()).await.unwrap();
    store
        .request_follow(alice.id, bob.id, Utc::now())
        .await
        .unwrap();
    let seen_by_alice = store.relationship(alice.id, bob.id).await.unwrap();
    assert!(!seen_by_alice.following);
    assert!(seen_by_alice.followed_by);
    assert!(seen_by_alice.requested);
    assert!(!seen_by_alice.blocking && !seen_by_alice.blocked_by);
    let seen_by_bob = store.relationship(bob.id, alice.id).await.unwrap();
    assert!(seen_by_bob.following);
    assert!(!seen_by_bob.followed_by);
    assert!(!seen_by_bob.requested, "the request goes the other way");

    store.block(carol.id, alice.id, Utc::now()).await.unwrap();
    let seen_by_carol = store.relationship(carol.id, alice.id).await.unwrap();
    assert!(seen_by_carol.blocking && !seen_by_carol.blocked_by);
    let seen_by_blocked = store.relationship(alice.id, carol.id).await.unwrap();
    assert!(!seen_by_blocked.blocking && seen_by_blocked.blocked_by);
}

#[tokio::test]
async fn follow_request_then_accept_becomes_a_follow_with_notifications_both_ways() {
    let db = TestDb::start().await;
    let store = db.store();
    let [private, requester] = users(&store, ["private", "requester"]).await;

    assert!(
        store
            .request_follow(requester.id, private.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
    assert!(
        !store
            .request_follow(requester.id, private.id, Utc::now())
            .await
            .unwrap()
            .outcome,
        "a second request while one is pending is a no-op"
    );
    let requests = store
        .follow_requests(private.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(requests.items.len(), 1);
    assert_eq!(requests.items[0].requester_id, requester.id);
    assert_eq!(requests.items[0].target_id, private.id);
    let to_target = stored_notifications(&store, private.id).await;
    assert_eq!(to_target.len(), 1);
    assert_eq!(to_target[0].kind, NotificationKind::FollowRequest);
    assert_eq!(to_target[0].actor_id, requester.id);
    assert_eq!(
        counts(&store, private.id).await,
        (0, 0),
        "a request is not a follow"
    );

    store
        .accept_follow_request(private.id, requester.id, Utc::now())
        .await
        .unwrap();

    let relationship = store.relationship(requester.id, private.id).await.unwrap();
    assert!(relationship.following && !relationship.requested);
    assert_eq!(counts(&store, private.id).await, (1, 0));
    assert_eq!(counts(&store, requester.id).await, (0, 1));
    assert!(store
        .follow_requests(private.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    let to_requester = stored_notifications(&store, requester.id).await;
    assert_eq!(to_requester.len(), 1);
    assert_eq!(to_requester[0].kind, NotificationKind::FollowAccepted);
    assert_eq!(to_requester[0].actor_id, private.id);

    // The request is consumed: accepting or rejecting it again finds nothing.
    let again = store
        .accept_follow_request(private.id, requester.id, Utc::now())
        .await;
    assert_eq!(again.unwrap_err().status(), 404);
    assert_eq!(
        store
            .reject_follow_request(private.id, requester.id)
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(counts(&store, private.id).await, (1, 0));
    // Already following: a new request is a no-op.
    assert!(
        !store
            .request_follow(requester.id, private.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
}

#[tokio::test]
async fn follow_requests_list_oldest_first_and_reject_or_cancel_remove_them() {
    let db = TestDb::start().await;
    let store = db.store();
    // Registered in this order, so user ids ascend; requests are made in the reverse
    // order to prove the list is by request time, not by requester id.
    let [target, first, second, third] = users(&store, ["target", "user1", "user2", "user3"]).await;
    for requester in [&third, &second, &first] {
        store
            .request_follow(requester.id, target.id, Utc::now())
            .await
            .unwrap();
    }
    let page = store
        .follow_requests(target.id, &PageRequest::first(2))
        .await
        .unwrap();
    let rest = store
        .follow_requests(
            target.id,
            &PageRequest::after(2, page.next_cursor.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(rest.next_cursor, None);
    let order: Vec<UserId> = page
        .items
        .iter()
        .chain(&rest.items)
        .map(|r| r.requester_id)
        .collect();
    assert_eq!(order, vec![third.id, second.id, first.id]);

    store
        .reject_follow_request(target.id, second.id)
        .await
        .unwrap();
    assert!(store
        .cancel_follow_request(third.id, target.id)
        .await
        .unwrap());
    assert!(
        !store
            .cancel_follow_request(third.id, target.id)
            .await
            .unwrap(),
        "idempotent"
    );
    let left = store
        .follow_requests(target.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(
        left.items
            .iter()
            .map(|r| r.requester_id)
            .collect::<Vec<_>>(),
        vec![first.id]
    );
    assert!(
        !store
            .relationship(second.id, target.id)
            .await
            .unwrap()
            .following,
        "reject does not follow"
    );
    assert_eq!(counts(&store, target.id).await, (0, 0));
}

#[tokio::test]
async fn block_removes_follows_and_requests_both_ways_with_exact_counters() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol] = users(&store, ["alice", "bob", "carol"]).await;
    let now = Utc::now();
    store.follow(alice.id, bob.id, now).await.unwrap();
    store.follow(bob.id, alice.id, now).await.unwrap();
    // Unrelated follows must keep their counts.
    store.follow(carol.id, alice.id, now).await.unwrap();
    store.follow(bob.id, carol.id, now).await.unwrap();
    assert_eq!(counts(&store, alice.id).await, (2, 1));
    assert_eq!(counts(&store, bob.id).await, (1, 2));

    store.block(alice.id, bob.id, now).await.unwrap();

    assert_eq!(counts(&store, alice.id).await, (1, 0));
    assert_eq!(counts(&store, bob.id).await, (0, 1));
    assert_eq!(counts(&store, carol.id).await, (1, 1));
    let relationship = store.relationship(alice.id, bob.id).await.unwrap();
    assert!(relationship.blocking && !relationship.following && !relationship.followed_by);
    assert!(store
        .followers(alice.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .iter()
        .all(|f| f.follower_id != bob.id));

    // Blocking again changes nothing.
    store.block(alice.id, bob.id, now).await.unwrap();
    assert_eq!(counts(&store, alice.id).await, (1, 0));

    // Pending requests both ways go too.
    let [dave, erin] = users(&store, ["dave", "erin"]).await;
    store.request_follow(dave.id, erin.id, now).await.unwrap();
    store.request_follow(erin.id, dave.id, now).await.unwrap();
    store.block(erin.id, dave.id, now).await.unwrap();
    assert!(store
        .follow_requests(erin.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .follow_requests(dave.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(counts(&store, dave.id).await, (0, 0));
    assert_eq!(counts(&store, erin.id).await, (0, 0));
}

#[tokio::test]
async fn a_block_either_way_stops_follows_requests_and_their_notifications() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob] = users(&store, ["alice", "bob"]).await;
    store.block(alice.id, bob.id, Utc::now()).await.unwrap();
    let before = db.item_count().await;

    for (from, to) in [(alice.id, bob.id), (bob.id, alice.id)] {
        assert_eq!(
            store
                .follow(from, to, Utc::now())
                .await
                .unwrap_err()
                .status(),
            404
        );
        assert_eq!(
            store
                .request_follow(from, to, Utc::now())
                .await
                .unwrap_err()
                .status(),
            404
        );
    }
    assert_eq!(db.item_count().await, before);
    assert!(stored_notifications(&store, alice.id).await.is_empty());
    assert!(stored_notifications(&store, bob.id).await.is_empty());

    // Unblocking (twice: idempotent) lets them follow again.
    store.unblock(alice.id, bob.id).await.unwrap();
    store.unblock(alice.id, bob.id).await.unwrap();
    assert!(
        store
            .follow(bob.id, alice.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
    assert_eq!(counts(&store, alice.id).await, (1, 0));
}

#[tokio::test]
async fn accepting_a_request_after_a_block_is_not_found() {
    let db = TestDb::start().await;
    let store = db.store();
    let [target, requester] = users(&store, ["target", "requester"]).await;
    store
        .request_follow(requester.id, target.id, Utc::now())
        .await
        .unwrap();
    store
        .block(requester.id, target.id, Utc::now())
        .await
        .unwrap();
    let error = store
        .accept_follow_request(target.id, requester.id, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(error.status(), 404);
    assert_eq!(counts(&store, target.id).await, (0, 0));
    assert!(stored_notifications(&store, requester.id).await.is_empty());
}

#[tokio::test]
async fn blocks_and_who_blocks_a_user_are_listed_both_ways() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol, dave] = users(&store, ["alice", "bob", "carol", "dave"]).await;
    store.block(alice.id, bob.id, Utc::now()).await.unwrap();
    store.block(alice.id, carol.id, Utc::now()).await.unwrap();
    store.block(dave.id, alice.id, Utc::now()).await.unwrap();

    // Pattern 9: whom alice blocks.
    let blocks = store
        .blocks(alice.id, &PageRequest::first(10))
        .await
        .unwrap();
    let blocked: HashSet<UserId> = blocks.items.iter().map(|b| b.blocked_id).collect();
    assert_eq!(blocked, HashSet::from([bob.id, carol.id]));
    assert!(blocks.items.iter().all(|b| b.blocker_id == alice.id));
    // Pattern 10 (with 9): everyone on the other side of a block.
    assert_eq!(
        store.block_set(alice.id).await.unwrap(),
        HashSet::from([bob.id, carol.id, dave.id])
    );
    assert_eq!(
        store.block_set(bob.id).await.unwrap(),
        HashSet::from([alice.id])
    );
    assert_eq!(
        store.block_set(dave.id).await.unwrap(),
        HashSet::from([alice.id])
    );

    store.unblock(alice.id, bob.id).await.unwrap();
    assert_eq!(store.block_set(bob.id).await.unwrap(), HashSet::new());
    assert_eq!(
        store
            .blocks(alice.id, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn concurrent_follows_and_a_block_leave_no_follow_and_exact_counters() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob] = users(&store, ["alice", "bob"]).await;
    let now = Utc::now();
    let follows = join_all((0..5).flat_map(|_| {
        [
            store.follow(alice.id, bob.id, now),
            store.follow(bob.id, alice.id, now),
        ]
    }));
    let (follow_results, block_result) = tokio::join!(follows, store.block(alice.id, bob.id, now));
    block_result.unwrap();
    for result in follow_results {
        // Each follow either landed before the block (and was removed by it) or was
        // refused because of it.
        if let Err(error) = result {
            assert_eq!(error.status(), 404, "{error:?}");
        }
    }
    let relationship = store.relationship(alice.id, bob.id).await.unwrap();
    assert!(relationship.blocking && !relationship.following && !relationship.followed_by);
    assert_eq!(counts(&store, alice.id).await, (0, 0));
    assert_eq!(counts(&store, bob.id).await, (0, 0));
}

#[tokio::test]
async fn followers_and_following_page_through_every_item_once() {
    let db = TestDb::start().await;
    let store = db.store();
    let star = user(&store, "star").await;
    let mut fans = HashSet::new();
    for n in 0..25 {
        let fan = user(&store, &format!("fan{n:02}")).await;
        store.follow(fan.id, star.id, Utc::now()).await.unwrap();
        store.follow(star.id, fan.id, Utc::now()).await.unwrap();
        fans.insert(fan.id);
    }
    assert_eq!(counts(&store, star.id).await, (25, 25));

    for list in ["followers", "following"] {
        let (follows, pages) = walk_pages(10, |page| {
            let store = store.clone();
            async move {
                if list == "followers" {
                    store.followers(star.id, &page).await
                } else {
                    store.following(star.id, &page).await
                }
            }
        })
        .await;
        let seen: Vec<_> = follows
            .iter()
            .map(|f| {
                if list == "followers" {
                    f.follower_id
                } else {
                    f.followee_id
                }
            })
            .collect();
        assert_eq!(pages, 3, "{list}");
        assert_eq!(seen.len(), 25, "{list}: every item once");
        assert_eq!(seen.iter().copied().collect::<HashSet<_>>(), fans, "{list}");
    }
    assert_eq!(store.following_ids(star.id).await.unwrap().len(), 25);
    let probe = store.follower_ids(star.id, 7).await.unwrap();
    assert_eq!(probe.ids.len(), 7, "bounded by max");
    assert!(probe.truncated, "and says more exist");
    let all = store.follower_ids(star.id, 25).await.unwrap();
    assert!(!all.truncated, "exactly max: nothing more");
    assert_eq!(all.ids.iter().copied().collect::<HashSet<_>>(), fans);
    // Those of the candidates who follow star (one batch read), star's own id excluded.
    let mut candidates: Vec<_> = fans.iter().copied().take(3).collect();
    candidates.push(star.id);
    let among = store.followers_among(star.id, &candidates).await.unwrap();
    assert_eq!(
        among,
        candidates[..3].iter().copied().collect::<HashSet<_>>()
    );
    // An unfollow leaves the fan-out index too.
    store.unfollow(candidates[0], star.id).await.unwrap();
    let after = store.follower_ids(star.id, 100).await.unwrap();
    assert_eq!(after.ids.len(), 24);
    assert!(!after.ids.contains(&candidates[0]));
}

#[tokio::test]
async fn garbled_or_foreign_cursors_are_validation_errors() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol] = users(&store, ["alice", "bob", "carol"]).await;
    store.follow(bob.id, alice.id, Utc::now()).await.unwrap();
    store.follow(carol.id, alice.id, Utc::now()).await.unwrap();
    let first = store
        .followers(alice.id, &PageRequest::first(1))
        .await
        .unwrap();
    let alices_cursor = first.next_cursor.unwrap();

    // A valid cursor of alice's followers cannot read bob's partition.
    let foreign = store
        .followers(bob.id, &PageRequest::after(1, alices_cursor.clone()))
        .await;
    assert_eq!(foreign.unwrap_err().status(), 400);
    // Nor is it a cursor of another index.
    let wrong_index = store
        .following(alice.id, &PageRequest::after(1, alices_cursor))
        .await;
    assert_eq!(wrong_index.unwrap_err().status(), 400);

    for garbage in ["not-a-cursor", "%%%", "e30", "eyJwayI6IlVTRVIjMSJ9"] {
        let page = PageRequest::after(10, garbage);
        assert_eq!(
            store.followers(alice.id, &page).await.unwrap_err().status(),
            400,
            "{garbage}"
        );
        assert_eq!(
            store.following(alice.id, &page).await.unwrap_err().status(),
            400,
            "{garbage}"
        );
        assert_eq!(
            store
                .follow_requests(alice.id, &page)
                .await
                .unwrap_err()
                .status(),
            400,
            "{garbage}"
        );
        assert_eq!(
            store.blocks(alice.id, &page).await.unwrap_err().status(),
            400,
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn follow_unfollow_follow_and_request_cancel_request_notify_once() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol] = users(&store, ["alice", "bob", "carol"]).await;
    let now = Utc::now();

    let mut returned = Vec::new();
    for _ in 0..3 {
        let followed = store.follow(bob.id, alice.id, now).await.unwrap();
        assert!(followed.outcome);
        returned.extend(followed.notification);
        assert!(store.unfollow(bob.id, alice.id).await.unwrap());
    }
    assert_eq!(
        counts(&store, alice.id).await,
        (0, 0),
        "counters follow every change"
    );
    let follows: Vec<_> = stored_notifications(&store, alice.id)
        .await
        .into_iter()
        .filter(|n| n.kind == NotificationKind::Follow && n.actor_id == bob.id)
        .collect();
    assert_eq!(
        follows.len(),
        1,
        "one follow notification per actor: {follows:?}"
    );
    assert_eq!(
        returned, follows,
        "the follow that wrote the notification returns it; the others return none"
    );

    for _ in 0..3 {
        assert!(
            store
                .request_follow(carol.id, alice.id, now)
                .await
                .unwrap()
                .outcome
        );
        assert!(store
            .cancel_follow_request(carol.id, alice.id)
            .await
            .unwrap());
    }
    let requests: Vec<_> = stored_notifications(&store, alice.id)
        .await
        .into_iter()
        .filter(|n| n.kind == NotificationKind::FollowRequest)
        .collect();
    assert_eq!(
        requests.len(),
        1,
        "one request notification per actor: {requests:?}"
    );
}

// ---- the follow cap ------------------------------------------------------------------------

/// Sets `user`'s `following_count` as if they followed `count` accounts. The cap's condition
/// reads only this counter (kept exact by every follow, unfollow and block transaction), so
/// this stands in for `count` follows without writing them one transaction at a time.
async fn seed_following_count(store: &DynamoStore, user: UserId, count: usize) {
    let set = store
        .table
        .update_if(
            &shared::store::keys::user_profile(user),
            "SET following_count = :count",
            "attribute_exists(pk)",
            &[],
            vec![(":count", shared::store::dynamo::n(count as i64))],
        )
        .await
        .unwrap();
    assert!(set, "no profile to seed");
}

fn assert_follow_limit(error: &shared::Error) {
    assert_eq!(error.status(), 409, "{error:?}");
    assert_eq!(error.code(), "follow_limit_reached", "{error:?}");
}

#[tokio::test]
async fn the_follow_past_the_cap_is_refused_and_writes_nothing() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, bob, carol, dave] = users(&store, ["alice", "bob", "carol", "dave"]).await;
    seed_following_count(&store, alice.id, MAX_FOLLOWING - 2).await;

    // Follows 4,999 and 5,000 go through...
    for target in [&bob, &carol] {
        assert!(
            store
                .follow(alice.id, target.id, Utc::now())
                .await
                .unwrap()
                .outcome
        );
    }
    assert_eq!(counts(&store, alice.id).await, (0, MAX_FOLLOWING as i64));
    // ...the 5,001st does not, and leaves no trace.
    let before = db.item_count().await;
    let error = store
        .follow(alice.id, dave.id, Utc::now())
        .await
        .unwrap_err();
    assert_follow_limit(&error);
    assert_eq!(
        db.item_count().await,
        before,
        "a refused follow writes nothing"
    );
    assert_eq!(counts(&store, alice.id).await, (0, MAX_FOLLOWING as i64));
    assert_eq!(counts(&store, dave.id).await, (0, 0));
    assert!(stored_notifications(&store, dave.id).await.is_empty());
    assert!(
        !store
            .relationship(alice.id, dave.id)
            .await
            .unwrap()
            .following
    );

    // Following someone already followed stays idempotent at the cap.
    assert!(
        !store
            .follow(alice.id, bob.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
    // One unfollow frees one slot.
    assert!(store.unfollow(alice.id, carol.id).await.unwrap());
    assert!(
        store
            .follow(alice.id, dave.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
    assert_eq!(counts(&store, alice.id).await, (0, MAX_FOLLOWING as i64));
    // Others are not limited by alice's cap: being followed is unbounded.
    assert!(
        store
            .follow(bob.id, alice.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
}

#[tokio::test]
async fn ten_concurrent_follows_at_the_last_slot_let_exactly_one_through() {
    let db = TestDb::start().await;
    let store = db.store();
    let alice = user(&store, "alice").await;
    let mut targets = Vec::new();
    for i in 0..10 {
        targets.push(user(&store, &format!("target_{i}")).await);
    }
    seed_following_count(&store, alice.id, MAX_FOLLOWING - 1).await;

    let now = Utc::now();
    let results = join_all(targets.iter().map(|t| store.follow(alice.id, t.id, now))).await;
    let mut followed = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(done) => {
                assert!(done.outcome);
                followed.push(target.id);
            }
            Err(error) => assert_follow_limit(&error),
        }
    }
    assert_eq!(followed.len(), 1, "exactly one follow takes the last slot");
    assert_eq!(counts(&store, alice.id).await, (0, MAX_FOLLOWING as i64));
    assert_eq!(store.following_ids(alice.id).await.unwrap(), followed);
    for target in &targets {
        let expected = i64::from(followed.contains(&target.id));
        assert_eq!(counts(&store, target.id).await, (expected, 0));
    }
}

#[tokio::test]
async fn requests_at_the_cap_are_refused_and_accepts_wait_for_a_free_slot() {
    let db = TestDb::start().await;
    let store = db.store();
    let [alice, private, other, spare] =
        users(&store, ["alice", "private", "other", "spare"]).await;
    seed_following_count(&store, alice.id, MAX_FOLLOWING - 1).await;

    // Below the cap alice may ask; the request takes no slot.
    assert!(
        store
            .request_follow(alice.id, private.id, Utc::now())
            .await
            .unwrap()
            .outcome
    );
    store.follow(alice.id, other.id, Utc::now()).await.unwrap();
    // At the cap she may not ask anyone else...
    let error = store
        .request_follow(alice.id, spare.id, Utc::now())
        .await
        .unwrap_err();
    assert_follow_limit(&error);
    assert!(store
        .follow_requests(spare.id, &PageRequest::first(10))
        .await
        .unwrap()
        .items
        .is_empty());
    // ...and the pending request cannot be accepted: it stays pending, nothing changes.
    let error = store
        .accept_follow_request(private.id, alice.id, Utc::now())
        .await
        .unwrap_err();
    assert_follow_limit(&error);
    assert_eq!(counts(&store, private.id).await, (0, 0));
    assert!(stored_notifications(&store, alice.id).await.is_empty());
    let pending = store
        .follow_requests(private.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 1);

    // Once alice follows fewer, the same request is accepted.
    store.unfollow(alice.id, other.id).await.unwrap();
    store
        .accept_follow_request(private.id, alice.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(counts(&store, private.id).await, (1, 0));
    assert_eq!(counts(&store, alice.id).await, (0, MAX_FOLLOWING as i64));
}
