//! The social graph: follows (with counters), follow requests to private accounts, blocks.
//! What they let a user see is `crate::visibility`'s to say.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::dynamo::{
    from_item, item_key, n, to_item, tx, with_gsi1, with_gsi3, Consistency, Item, Query,
    TransactFailure,
};
use super::keys::{self, Key};
use super::notifications::{notification_items, NewNotification, Notified};
use super::page::{KeyShape, Page, PageRequest};
use super::users::UserStore;
use super::DynamoStore;
use crate::domain::{Block, Follow, FollowRequest, NotificationKind, Relationship, UserId};
use crate::error::{Error, Result};

/// Most accounts one user may follow (bounds the fan-out-on-read feed). Enforced at write
/// time: the follow transaction increments the follower's `following_count` only while it
/// is below this, else the follow is refused with [`FOLLOW_LIMIT_REACHED`].
pub const MAX_FOLLOWING: usize = 5000;

/// The error code of a follow refused at [`MAX_FOLLOWING`] (409).
pub const FOLLOW_LIMIT_REACHED: &str = "follow_limit_reached";

#[async_trait]
pub trait SocialStore: Send + Sync {
    /// How `viewer` and `other` relate, both ways, in one round trip.
    async fn relationship(&self, viewer: UserId, other: UserId) -> Result<Relationship>;

    /// `follower` now follows `followee`: the follow item, both counters and a `follow`
    /// notification in one transaction (which comes back with the outcome). `false` if it
    /// already existed (idempotent). `NotFound` if either user does not exist or a block
    /// stands between them (checked in the same transaction); `Validation` for a self-follow;
    /// `Conflict` with code [`FOLLOW_LIMIT_REACHED`] when `follower` already follows
    /// [`MAX_FOLLOWING`] accounts (the counter increment's condition, so concurrent follows
    /// cannot overshoot).
    async fn follow(
        &self,
        follower: UserId,
        followee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<bool>>;

    /// A follow request to a private account, with a `follow_request` notification.
    /// `false` if it was already pending or the requester already follows the target;
    /// errors as for [`SocialStore::follow`], including the follow cap: a requester at the
    /// cap cannot ask (a pending request does not reserve a slot, so accepting it re-checks).
    async fn request_follow(
        &self,
        requester: UserId,
        target: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<bool>>;

    /// Removes the follow and decrements both counters. `Ok(false)` if there was none.
    async fn unfollow(&self, follower: UserId, followee: UserId) -> Result<bool>;

    /// Withdraws a pending request. `Ok(false)` if there was none.
    async fn cancel_follow_request(&self, requester: UserId, target: UserId) -> Result<bool>;

    /// `target` accepts `requester`: the request becomes a follow (counters, and a
    /// `follow_accepted` notification to the requester, which comes back). `NotFound` if no
    /// request is pending. `Conflict` [`FOLLOW_LIMIT_REACHED`] if the requester reached the
    /// follow cap since asking; the request then stays pending.
    async fn accept_follow_request(
        &self,
        target: UserId,
        requester: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<()>>;

    /// `target` rejects `requester`. `NotFound` if no request is pending.
    async fn reject_follow_request(&self, target: UserId, requester: UserId) -> Result<()>;

    /// Followers of `user` (GSI 1 inverse entries).
    async fn followers(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>>;

    /// Accounts `user` follows.
    async fn following(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>>;

    /// Ids of every account `user` follows (at most `MAX_FOLLOWING`).
    async fn following_ids(&self, user: UserId) -> Result<Vec<UserId>>;

    /// Ids of `user`'s followers from the keys-only fan-out index (GSI 3), at most `max`,
    /// in full pages of ~5,000 ids (one read unit per ~24 followers). `truncated` says more
    /// exist: a caller that only wants to know whether the audience is small asks for a
    /// small `max` and pays one small request.
    async fn follower_ids(&self, user: UserId, max: usize) -> Result<FollowerIds>;

    /// Pending requests to `target`, oldest first by request time (GSI 1 recency entries;
    /// the table's sort key orders by requester id instead).
    async fn follow_requests(
        &self,
        target: UserId,
        page: &PageRequest,
    ) -> Result<Page<FollowRequest>>;

    /// `blocker` blocks `blocked`: the block item plus removal of follows both ways (with
    /// exact counters) and of pending follow requests both ways. Idempotent. The relations
    /// are read first and the one transaction re-checks each of them, so a follow that
    /// lands in between cancels it and the block is retried. `NotFound` for an unknown user.
    async fn block(&self, blocker: UserId, blocked: UserId, now: DateTime<Utc>) -> Result<()>;

    /// Removes a block. Idempotent.
    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<()>;

    /// Accounts `blocker` blocks.
    async fn blocks(&self, blocker: UserId, page: &PageRequest) -> Result<Page<Block>>;

    /// Every user `user` blocks or is blocked by (to filter search results and feeds).
    async fn block_set(&self, user: UserId) -> Result<HashSet<UserId>>;

    /// Those of `candidates` who follow `user` (one eventually consistent `BatchGetItem` of
    /// follow items per 100 candidates).
    async fn followers_among(&self, user: UserId, candidates: &[UserId])
        -> Result<HashSet<UserId>>;
}

/// A follow item with both of its index entries (GSI 1 for lists, GSI 3 for fan-out).
pub(crate) fn follow_item(follow: &Follow) -> Result<Item> {
    let (follower, followee) = (follow.follower_id, follow.followee_id);
    Ok(with_gsi3(
        with_gsi1(
            record_item(&keys::follow(follower, followee), follow, "follow")?,
            &keys::follower_entry(follower, followee),
        ),
        &keys::follower_fanout_entry(follower, followee),
    ))
}

/// Entries of the keys-only follower index in one 1 MB page (≈ 1 MB / ~200 bytes).
const FANOUT_PAGE_ENTRIES: usize = 5_000;

/// Follower ids read for fan-out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowerIds {
    pub ids: Vec<UserId>,
    /// More followers exist than were read.
    pub truncated: bool,
}

// ---------------------------------------------------------------------------------------
// DynamoDB implementation
// ---------------------------------------------------------------------------------------

/// Most entries read per direction when building a block set (bounds the read; a user
/// blocked by more accounts than this is filtered by the per-pair checks instead).
pub const MAX_BLOCK_SET: usize = 10_000;

/// Attempts at a block whose re-checked relations changed under it.
const BLOCK_ATTEMPTS: usize = 5;

const ITEM_EXISTS: &str = "attribute_exists(pk)";
const ITEM_ABSENT: &str = "attribute_not_exists(pk)";

#[derive(Serialize)]
struct Record<'a, T> {
    #[serde(flatten)]
    record: &'a T,
    entity: &'static str,
}

fn record_item<T: Serialize>(key: &Key, record: &T, entity: &'static str) -> Result<Item> {
    to_item(key, &Record { record, entity })
}

/// Every relation item between two users, as found by one BatchGetItem (pattern 7).
#[derive(Debug, Clone, Copy, Default)]
struct RelationItems {
    a_follows_b: bool,
    b_follows_a: bool,
    a_requested_b: bool,
    b_requested_a: bool,
    a_blocks_b: bool,
    b_blocks_a: bool,
}

/// Adds `following_delta`/`follower_delta` to a profile's counters, on condition that the
/// profile exists; with nothing to add it is only that condition.
fn profile_counters(
    table: &str,
    user: UserId,
    following_delta: i64,
    follower_delta: i64,
) -> Result<TransactWriteItem> {
    let key = keys::user_profile(user);
    let mut adds = Vec::new();
    let mut values = Vec::new();
    if following_delta != 0 {
        adds.push("following_count :following");
        values.push((":following", n(following_delta)));
    }
    if follower_delta != 0 {
        adds.push("follower_count :followers");
        values.push((":followers", n(follower_delta)));
    }
    if adds.is_empty() {
        return tx::condition_check(table, &key, ITEM_EXISTS, vec![]);
    }
    tx::update(
        table,
        &key,
        &format!("ADD {}", adds.join(", ")),
        Some(ITEM_EXISTS),
        &[],
        values,
    )
}

/// Condition of the follower's profile in a follow: it exists and follows fewer than
/// [`MAX_FOLLOWING`] accounts (a profile without the counter follows nobody).
const BELOW_FOLLOW_CAP: &str =
    "attribute_exists(pk) AND (attribute_not_exists(following_count) OR following_count < :cap)";

fn follow_cap() -> AttributeValue {
    n(i64::try_from(MAX_FOLLOWING).unwrap_or(i64::MAX))
}

/// `ADD following_count 1` on `follower`'s profile on condition [`BELOW_FOLLOW_CAP`]: the
/// one place the cap is enforced, inside the follow's transaction.
fn capped_following_increment(table: &str, follower: UserId) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::user_profile(follower),
        "ADD following_count :following",
        Some(BELOW_FOLLOW_CAP),
        &[],
        vec![(":following", n(1)), (":cap", follow_cap())],
    )
}

/// A follow refused at the cap (409 `follow_limit_reached`); `message` says whose cap.
fn follow_limit_reached(message: String) -> Error {
    Error::Conflict {
        code: FOLLOW_LIMIT_REACHED,
        message,
    }
}

/// The caller's own follow (or follow request) refused at the cap.
fn caller_at_follow_limit() -> Error {
    follow_limit_reached(format!(
        "you already follow {MAX_FOLLOWING} accounts, the most allowed; unfollow one first"
    ))
}

/// Accepting a request of a requester who reached the cap since asking.
fn requester_at_follow_limit() -> Error {
    follow_limit_reached(format!(
        "this user already follows {MAX_FOLLOWING} accounts, the most allowed; the request \
         stays pending"
    ))
}

/// Condition that `key` does not exist (no block, no follow…).
fn absent(table: &str, key: &Key) -> Result<TransactWriteItem> {
    tx::condition_check(table, key, ITEM_ABSENT, vec![])
}

/// Deletes `key` if `exists` (on condition it still does), else checks it is still absent:
/// either way the transaction fails if the relation changed since it was read.
fn remove_if_present(table: &str, key: &Key, exists: bool) -> Result<TransactWriteItem> {
    if exists {
        tx::delete(table, key, Some(ITEM_EXISTS))
    } else {
        absent(table, key)
    }
}

fn notification(
    recipient: UserId,
    kind: NotificationKind,
    actor: UserId,
    now: DateTime<Utc>,
) -> NewNotification {
    NewNotification {
        recipient,
        kind,
        actor,
        post_id: None,
        comment_id: None,
        created_at: now,
        dedup_key: None,
    }
}

fn not_found_user() -> Error {
    Error::not_found("user not found")
}

/// Indexes of the items built by `follow_items`, to tell which condition failed.
const FOLLOW_ITEM: usize = 0;
const FOLLOWER_PROFILE: usize = 1;
const FOLLOWEE_PROFILE: usize = 2;
const BLOCK_CHECKS: [usize; 2] = [3, 4];

impl DynamoStore {
    async fn relation_items(&self, a: UserId, b: UserId) -> Result<RelationItems> {
        let wanted = [
            keys::follow(a, b),
            keys::follow(b, a),
            keys::follow_request(b, a),
            keys::follow_request(a, b),
            keys::block(a, b),
            keys::block(b, a),
        ];
        let found = self
            .table
            .batch_get(&wanted)
            .await?
            .iter()
            .map(item_key)
            .collect::<Result<Vec<Key>>>()?;
        let has = |key: &Key| found.contains(key);
        Ok(RelationItems {
            a_follows_b: has(&wanted[0]),
            b_follows_a: has(&wanted[1]),
            a_requested_b: has(&wanted[2]),
            b_requested_a: has(&wanted[3]),
            a_blocks_b: has(&wanted[4]),
            b_blocks_a: has(&wanted[5]),
        })
    }

    /// The follow item, both counters and the no-block checks both ways: the transaction
    /// items shared by a direct follow and an accepted request, at the indexes named by
    /// [`FOLLOW_ITEM`], [`FOLLOWER_PROFILE`], [`FOLLOWEE_PROFILE`], [`BLOCK_CHECKS`]. The
    /// notification goes through `transact_with_notification`.
    fn follow_items(
        &self,
        follower: UserId,
        followee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Vec<TransactWriteItem>> {
        let table = &self.table.name;
        let follow = Follow {
            follower_id: follower,
            followee_id: followee,
            created_at: crate::clock::to_millis(now),
        };
        let item = follow_item(&follow)?;
        Ok(vec![
            tx::put_new(table, item)?,
            capped_following_increment(table, follower)?,
            profile_counters(table, followee, 0, 1)?,
            absent(table, &keys::block(follower, followee))?,
            absent(table, &keys::block(followee, follower))?,
        ])
    }

    /// Why the condition on `follower`'s profile failed ([`BELOW_FOLLOW_CAP`]): the cap when
    /// the profile exists (its existence is the other half), else the user is gone.
    async fn follower_condition_failure(
        &self,
        follower: UserId,
        at_cap: impl FnOnce() -> Error,
    ) -> Error {
        match self.get_user(follower).await {
            Ok(Some(_)) => at_cap(),
            Ok(None) => not_found_user(),
            Err(error) => error,
        }
    }

    /// Deletes `key` on condition it exists; `Ok(false)` when it did not.
    async fn delete_existing(&self, key: &Key) -> Result<bool> {
        match self
            .table
            .transact(vec![tx::delete(&self.table.name, key, Some(ITEM_EXISTS))?])
            .await
        {
            Ok(()) => Ok(true),
            Err(TransactFailure::ConditionFailed { .. }) => Ok(false),
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }
}

#[async_trait]
impl SocialStore for DynamoStore {
    async fn relationship(&self, viewer: UserId, other: UserId) -> Result<Relationship> {
        let items = self.relation_items(viewer, other).await?;
        Ok(Relationship {
            following: items.a_follows_b,
            followed_by: items.b_follows_a,
            requested: items.a_requested_b,
            blocking: items.a_blocks_b,
            blocked_by: items.b_blocks_a,
        })
    }

    async fn follow(
        &self,
        follower: UserId,
        followee: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<bool>> {
        if follower == followee {
            return Err(Error::validation("you cannot follow yourself"));
        }
        let items = self.follow_items(follower, followee, now)?;
        let notice = notification_items(
            &self.table.name,
            &NewNotification {
                dedup_key: Some(keys::follow_dedup_key(follower)),
                ..notification(followee, NotificationKind::Follow, follower, now)
            },
        )?;
        match self.transact_with_notification(items, notice).await {
            Ok(notification) => Ok(Notified {
                outcome: true,
                notification,
            }),
            Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                if BLOCK_CHECKS
                    .iter()
                    .chain(&[FOLLOWEE_PROFILE])
                    .any(|i| failure.condition_failed_at(*i))
                {
                    Err(not_found_user())
                } else if failure.condition_failed_at(FOLLOW_ITEM) {
                    // Already following: idempotent, even at the cap.
                    Ok(Notified::silent(false))
                } else if failure.condition_failed_at(FOLLOWER_PROFILE) {
                    Err(self
                        .follower_condition_failure(follower, caller_at_follow_limit)
                        .await)
                } else {
                    Err(Error::invariant("follow: unexpected condition failure"))
                }
            }
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }

    async fn request_follow(
        &self,
        requester: UserId,
        target: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<bool>> {
        if requester == target {
            return Err(Error::validation("you cannot follow yourself"));
        }
        let table = &self.table.name;
        let request = FollowRequest {
            requester_id: requester,
            target_id: target,
            created_at: crate::clock::to_millis(now),
        };
        let item = with_gsi1(
            record_item(
                &keys::follow_request(target, requester),
                &request,
                "follow_request",
            )?,
            &keys::follow_request_recency_entry(target, uuid::Uuid::now_v7()),
        );
        let items = vec![
            tx::put_new(table, item)?,
            // Already following: nothing to request.
            absent(table, &keys::follow(requester, target))?,
            // The requester exists and is below the follow cap, so a request the target
            // accepts right away does not fail.
            tx::condition_check(
                table,
                &keys::user_profile(requester),
                BELOW_FOLLOW_CAP,
                vec![(":cap", follow_cap())],
            )?,
            tx::condition_check(table, &keys::user_profile(target), ITEM_EXISTS, vec![])?,
            absent(table, &keys::block(requester, target))?,
            absent(table, &keys::block(target, requester))?,
        ];
        let notice = notification_items(
            table,
            &NewNotification {
                dedup_key: Some(keys::follow_request_dedup_key(requester)),
                ..notification(target, NotificationKind::FollowRequest, requester, now)
            },
        )?;
        match self.transact_with_notification(items, notice).await {
            Ok(notification) => Ok(Notified {
                outcome: true,
                notification,
            }),
            Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                // Items 3–5: the target exists, no block either way.
                if (3..=5).any(|i| failure.condition_failed_at(i)) {
                    Err(not_found_user())
                } else if (0..=1).any(|i| failure.condition_failed_at(i)) {
                    // Already pending, or already following: idempotent, even at the cap.
                    Ok(Notified::silent(false))
                } else if failure.condition_failed_at(2) {
                    // The requester exists and is below the cap.
                    Err(self
                        .follower_condition_failure(requester, caller_at_follow_limit)
                        .await)
                } else {
                    Err(Error::invariant(
                        "follow request: unexpected condition failure",
                    ))
                }
            }
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }

    async fn unfollow(&self, follower: UserId, followee: UserId) -> Result<bool> {
        let table = &self.table.name;
        let items = vec![
            tx::delete(table, &keys::follow(follower, followee), Some(ITEM_EXISTS))?,
            profile_counters(table, follower, -1, 0)?,
            profile_counters(table, followee, 0, -1)?,
        ];
        match self.table.transact(items).await {
            Ok(()) => Ok(true),
            Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                if failure.condition_failed_at(FOLLOW_ITEM) {
                    Ok(false)
                } else {
                    Err(Error::invariant(
                        "unfollow: a follow exists without its profiles",
                    ))
                }
            }
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }

    async fn cancel_follow_request(&self, requester: UserId, target: UserId) -> Result<bool> {
        self.delete_existing(&keys::follow_request(target, requester))
            .await
    }

    async fn accept_follow_request(
        &self,
        target: UserId,
        requester: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<()>> {
        let table = &self.table.name;
        let request_key = keys::follow_request(target, requester);
        // The request is the last item so the follow items keep their documented indexes.
        let mut items = self.follow_items(requester, target, now)?;
        let request_index = items.len();
        items.push(tx::delete(table, &request_key, Some(ITEM_EXISTS))?);
        let notice = notification_items(
            table,
            &notification(requester, NotificationKind::FollowAccepted, target, now),
        )?;
        match self.transact_with_notification(items, notice).await {
            Ok(notification) => Ok(Notified {
                outcome: (),
                notification,
            }),
            Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                if failure.condition_failed_at(request_index)
                    || BLOCK_CHECKS.iter().any(|i| failure.condition_failed_at(*i))
                {
                    Err(Error::not_found("no pending follow request from this user"))
                } else if failure.condition_failed_at(FOLLOW_ITEM) {
                    // Already a follower (e.g. a follow landed while the account was
                    // public): the request is simply consumed.
                    if self.delete_existing(&request_key).await? {
                        Ok(Notified::silent(()))
                    } else {
                        Err(Error::not_found("no pending follow request from this user"))
                    }
                } else if failure.condition_failed_at(FOLLOWER_PROFILE) {
                    // The requester reached the cap since asking: the request stays pending
                    // and can be accepted once they follow fewer.
                    Err(self
                        .follower_condition_failure(requester, requester_at_follow_limit)
                        .await)
                } else {
                    Err(not_found_user())
                }
            }
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }

    async fn reject_follow_request(&self, target: UserId, requester: UserId) -> Result<()> {
        if self
            .delete_existing(&keys::follow_request(target, requester))
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found("no pending follow request from this user"))
        }
    }

    async fn followers(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Gsi1, &partition).begins_with(keys::FOLLOWER_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    async fn following(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::FOLLOWING_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    async fn following_ids(&self, user: UserId) -> Result<Vec<UserId>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::FOLLOWING_PREFIX);
        self.table
            .query_all(&query, MAX_FOLLOWING)
            .await?
            .into_iter()
            .map(|item| from_item::<Follow>(item).map(|f| f.followee_id))
            .collect()
    }

    async fn follower_ids(&self, user: UserId, max: usize) -> Result<FollowerIds> {
        let partition = keys::follower_fanout_partition(user);
        let mut query = Query::new(KeyShape::Gsi3, &partition);
        // One more than asked tells whether the list goes on; below a page's worth, a
        // `Limit` keeps the probe to exactly that many entries.
        if max < FANOUT_PAGE_ENTRIES {
            query = query.limit(max + 1);
        }
        let mut items = self.table.query_all(&query, max.saturating_add(1)).await?;
        let truncated = items.len() > max;
        items.truncate(max);
        let ids = items
            .iter()
            .map(|item| {
                item.get("gsi3sk")
                    .and_then(|value| value.as_s().ok())
                    .and_then(|id| id.parse::<UserId>().ok())
                    .ok_or_else(|| Error::invariant("fan-out follower entry without a follower id"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FollowerIds { ids, truncated })
    }

    async fn follow_requests(
        &self,
        target: UserId,
        page: &PageRequest,
    ) -> Result<Page<FollowRequest>> {
        let partition = keys::user_pk(target);
        let query =
            Query::new(KeyShape::Gsi1, &partition).begins_with(keys::FOLLOW_REQUEST_RECENCY_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    async fn block(&self, blocker: UserId, blocked: UserId, now: DateTime<Utc>) -> Result<()> {
        if blocker == blocked {
            return Err(Error::validation("you cannot block yourself"));
        }
        let table = &self.table.name;
        let block = Block {
            blocker_id: blocker,
            blocked_id: blocked,
            created_at: crate::clock::to_millis(now),
        };
        for _ in 0..BLOCK_ATTEMPTS {
            let found = self.relation_items(blocker, blocked).await?;
            if found.a_blocks_b {
                return Ok(());
            }
            let follows_out = i64::from(found.a_follows_b);
            let follows_in = i64::from(found.b_follows_a);
            let item = with_gsi1(
                record_item(&keys::block(blocker, blocked), &block, "block")?,
                &keys::blocked_by_entry(blocker, blocked),
            );
            // Every relation read above is re-checked by the transaction, so a follow or
            // request that appears in between cancels it and we read again.
            let items = vec![
                tx::put_new(table, item)?,
                remove_if_present(table, &keys::follow(blocker, blocked), found.a_follows_b)?,
                remove_if_present(table, &keys::follow(blocked, blocker), found.b_follows_a)?,
                remove_if_present(
                    table,
                    &keys::follow_request(blocked, blocker),
                    found.a_requested_b,
                )?,
                remove_if_present(
                    table,
                    &keys::follow_request(blocker, blocked),
                    found.b_requested_a,
                )?,
                profile_counters(table, blocker, -follows_out, -follows_in)?,
                profile_counters(table, blocked, -follows_in, -follows_out)?,
            ];
            match self.table.transact(items).await {
                Ok(()) => return Ok(()),
                Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                    if failure.condition_failed_at(5) || failure.condition_failed_at(6) {
                        return Err(not_found_user());
                    }
                    // Relations changed (or a concurrent block won): read again.
                }
                Err(TransactFailure::Other(error)) => return Err(error),
            }
        }
        Err(Error::conflict(
            "the relationship kept changing while blocking; try again",
        ))
    }

    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<()> {
        self.table.delete(&keys::block(blocker, blocked)).await
    }

    async fn blocks(&self, blocker: UserId, page: &PageRequest) -> Result<Page<Block>> {
        let partition = keys::user_pk(blocker);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::BLOCKING_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    async fn followers_among(
        &self,
        user: UserId,
        candidates: &[UserId],
    ) -> Result<HashSet<UserId>> {
        let keys: Vec<Key> = candidates
            .iter()
            .map(|candidate| keys::follow(*candidate, user))
            .collect();
        self.table
            .batch_get_with(&keys, Consistency::Eventual)
            .await?
            .into_iter()
            .map(|item| from_item::<Follow>(item).map(|follow| follow.follower_id))
            .collect()
    }

    async fn block_set(&self, user: UserId) -> Result<HashSet<UserId>> {
        let partition = keys::user_pk(user);
        let blocking = Query::new(KeyShape::Table, &partition).begins_with(keys::BLOCKING_PREFIX);
        let blocked_by =
            Query::new(KeyShape::Gsi1, &partition).begins_with(keys::BLOCKED_BY_PREFIX);
        let (blocking, blocked_by) = futures::try_join!(
            self.table.query_all(&blocking, MAX_BLOCK_SET),
            self.table.query_all(&blocked_by, MAX_BLOCK_SET),
        )?;
        let mut set = HashSet::with_capacity(blocking.len() + blocked_by.len());
        for item in blocking {
            set.insert(from_item::<Block>(item)?.blocked_id);
        }
        for item in blocked_by {
            set.insert(from_item::<Block>(item)?.blocker_id);
        }
        Ok(set)
    }
}
