//! The social graph: follows (with counters), follow requests to private accounts, blocks.
//! What they let a user see is `crate::visibility`'s to say.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::dynamo::{
    from_item, item_key, n, to_item, with_gsi1, with_gsi3, Consistency, Item, Query,
};
use super::keys::{self, Key};
use super::notifications::NewNotification;
use super::page::{KeyShape, Page, PageRequest};
use super::transaction::{tx, TransactFailure, Transaction};
use super::DynamoStore;
use crate::domain::{Block, Follow, FollowRequest, NotificationKind, Relationship, UserId};
use crate::error::{Error, Result};

mod follow;

/// Most accounts one user may follow (bounds the fan-out-on-read feed). Enforced at write
/// time: the follow transaction increments the follower's `following_count` only while it
/// is below this, else the follow is refused with [`FOLLOW_LIMIT_REACHED`].
pub const MAX_FOLLOWING: usize = 5000;

/// The error code of a follow refused at [`MAX_FOLLOWING`] (409).
pub const FOLLOW_LIMIT_REACHED: &str = "follow_limit_reached";

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

impl DynamoStore {
    /// How `viewer` and `other` relate, both ways, in one round trip.
    pub async fn relationship(&self, viewer: UserId, other: UserId) -> Result<Relationship> {
        let items = self.relation_items(viewer, other).await?;
        Ok(Relationship {
            following: items.a_follows_b,
            followed_by: items.b_follows_a,
            requested: items.a_requested_b,
            blocking: items.a_blocks_b,
            blocked_by: items.b_blocks_a,
        })
    }

    /// Followers of `user` (GSI 1 inverse entries).
    pub async fn followers(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Gsi1, &partition).begins_with(keys::FOLLOWER_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// Accounts `user` follows.
    pub async fn following(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::FOLLOWING_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// Ids of every account `user` follows (at most `MAX_FOLLOWING`).
    pub async fn following_ids(&self, user: UserId) -> Result<Vec<UserId>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::FOLLOWING_PREFIX);
        self.table
            .query_all(&query, MAX_FOLLOWING)
            .await?
            .into_iter()
            .map(|item| from_item::<Follow>(item).map(|f| f.followee_id))
            .collect()
    }

    /// Ids of `user`'s followers from the keys-only fan-out index (GSI 3), at most `max`,
    /// in full pages of ~5,000 ids (one read unit per ~24 followers). `truncated` says more
    /// exist: a caller that only wants to know whether the audience is small asks for a
    /// small `max` and pays one small request.
    pub async fn follower_ids(&self, user: UserId, max: usize) -> Result<FollowerIds> {
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

    /// Pending requests to `target`, oldest first by request time (GSI 1 recency entries;
    /// the table's sort key orders by requester id instead).
    pub async fn follow_requests(
        &self,
        target: UserId,
        page: &PageRequest,
    ) -> Result<Page<FollowRequest>> {
        let partition = keys::user_pk(target);
        let query =
            Query::new(KeyShape::Gsi1, &partition).begins_with(keys::FOLLOW_REQUEST_RECENCY_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// `blocker` blocks `blocked`: the block item plus removal of follows both ways (with
    /// exact counters) and of pending follow requests both ways. Idempotent. The relations
    /// are read first and the one transaction re-checks each of them, so a follow that
    /// lands in between cancels it and the block is retried. `NotFound` for an unknown user.
    pub async fn block(&self, blocker: UserId, blocked: UserId, now: DateTime<Utc>) -> Result<()> {
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
            let mut transaction = Transaction::new();
            transaction.add_all([
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
            ]);
            // Both users exist.
            let profiles = transaction.add_all([
                profile_counters(table, blocker, -follows_out, -follows_in)?,
                profile_counters(table, blocked, -follows_in, -follows_out)?,
            ]);
            match self.table.transact(transaction).await {
                Ok(()) => return Ok(()),
                Err(failure @ TransactFailure::ConditionFailed { .. }) => {
                    if failure.failed(&profiles) {
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

    /// Removes a block. Idempotent.
    pub async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<()> {
        self.table.delete(&keys::block(blocker, blocked)).await
    }

    /// Accounts `blocker` blocks.
    pub async fn blocks(&self, blocker: UserId, page: &PageRequest) -> Result<Page<Block>> {
        let partition = keys::user_pk(blocker);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::BLOCKING_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// Those of `candidates` who follow `user` (one eventually consistent `BatchGetItem` of
    /// follow items per 100 candidates).
    pub async fn followers_among(
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

    /// Every user `user` blocks or is blocked by (to filter search results and feeds).
    pub async fn block_set(&self, user: UserId) -> Result<HashSet<UserId>> {
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
