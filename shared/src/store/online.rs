//! The online-users index (access pattern 31): who has at least one open connection.
//!
//! `ONLINE#{shard}` / `USER#{user}` (shard = [`keys::online_shard`], one of
//! [`keys::ONLINE_INDEX_SHARDS`]), with `user_id` and `expires_at` (TTL).
//!
//! - Written in the `$connect` transaction (`DynamoStore::add_connection`): a put, so a
//!   second device only refreshes the TTL.
//! - Removed by the presence check after the grace period
//!   ([`DynamoStore::retire_online_entry`]): a transaction whose condition is that the
//!   user's connection set is empty, so a reconnect racing the check keeps the entry.
//! - TTL (the connection's own, 2 h 15 min) is the backstop for a check that never ran.
//!
//! Fan-out intersects it with the author's followers: the online side costs one query per
//! shard (all run concurrently), whatever the author's follower count, and no read is spent
//! on an offline follower. A stale entry costs nothing but one key in a `BatchGetItem` of
//! connection sets, which comes back empty.

use std::collections::HashSet;

use serde::Serialize;

use super::dynamo::{to_item, Query};
use super::keys;
use super::page::KeyShape;
use super::transaction::{tx, TransactFailure};
use super::DynamoStore;
use crate::domain::UserId;
use crate::error::{Error, Result};

/// An online-index entry as stored.
#[derive(Serialize)]
struct OnlineEntryRecord {
    user_id: UserId,
    expires_at: i64,
    entity: &'static str,
}

/// The put of `user`'s online entry, expiring with the connection that wrote it (part of
/// the `$connect` transaction).
pub(super) fn online_entry_put(
    table: &str,
    user: UserId,
    expires_at: i64,
) -> Result<aws_sdk_dynamodb::types::TransactWriteItem> {
    let record = OnlineEntryRecord {
        user_id: user,
        expires_at,
        entity: "online",
    };
    tx::put(table, to_item(&keys::online_entry(user), &record)?, None)
}

impl DynamoStore {
    async fn online_shard(&self, shard: u32) -> Result<Vec<UserId>> {
        let partition = keys::online_shard_partition(shard);
        let query = Query::new(KeyShape::Table, &partition)
            .begins_with(keys::ONLINE_ENTRY_PREFIX)
            .eventually_consistent();
        self.table
            .query_all(&query, usize::MAX)
            .await?
            .iter()
            .map(|item| {
                item.get("sk")
                    .and_then(|value| value.as_s().ok())
                    .and_then(|sk| sk.strip_prefix(keys::ONLINE_ENTRY_PREFIX))
                    .and_then(|id| id.parse::<UserId>().ok())
                    .ok_or_else(|| Error::invariant("online entry without a user id"))
            })
            .collect()
    }
}

impl DynamoStore {
    /// Every user with an entry in the index (all shards, read concurrently, eventually
    /// consistent).
    pub async fn online_users(&self) -> Result<HashSet<UserId>> {
        let shards = futures::future::try_join_all(
            (0..keys::ONLINE_INDEX_SHARDS).map(|shard| self.online_shard(shard)),
        )
        .await?;
        Ok(shards.into_iter().flatten().collect())
    }

    /// Removes `user`'s entry if the user has no open connection; `true` if removed.
    pub async fn retire_online_entry(&self, user: UserId) -> Result<bool> {
        let table = &self.table.name;
        let items = vec![
            tx::condition_check(
                table,
                &keys::user_connections(user),
                "attribute_not_exists(connection_ids)",
                vec![],
            )?,
            tx::delete(table, &keys::online_entry(user), None)?,
        ];
        match self.table.transact(items).await {
            Ok(()) => Ok(true),
            // Connected again: the entry stays.
            Err(TransactFailure::ConditionFailed { .. }) => Ok(false),
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }
}
