//! WebSocket connections and room memberships (access patterns 24–27).
//!
//! - `CONN#{id}` / `CONN`: the [`Connection`], the channels it is subscribed to (`rooms`, a
//!   string set, so a disconnect knows which memberships to delete without a scan), a
//!   `version` bumped by every (un)subscribe, and `expires_at` (TTL).
//! - `USER#{user}` / `CONNECTIONS`: `user_id` and `connection_ids` (string set). Fan-out reads
//!   the connections of 100 users with ONE `BatchGetItem` of these items (pattern 25).
//! - `ROOM#{channel}` / `CONN#{id}`: a [`Subscription`] with `expires_at` (TTL); a room's
//!   subscribers are one query (pattern 27).
//!
//! Invariants held by DynamoDB, not by read-then-write:
//! - A connection and its entry in the user's set are written in one transaction whose
//!   condition caps the set's size, so concurrent `$connect`s never exceed the per-user limit.
//! - A subscription and the channel's entry in the connection's `rooms` are written together,
//!   on the condition that the connection exists (no orphan memberships after a disconnect).
//! - Removal deletes the connection on the condition that its `version` is the one read, in
//!   the same transaction as its memberships: a subscribe racing a disconnect makes the
//!   removal retry with the new room list instead of leaving a membership behind.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use serde::{Deserialize, Serialize};

use super::dynamo::{from_item, key_map, n, s, to_item, Consistency, Item, Query};
use super::keys;
use super::page::KeyShape;
use super::transaction::{tx, Transaction, MAX_TRANSACTION_ITEMS};
use super::DynamoStore;
use crate::domain::{Connection, Subscription, UserId};
use crate::error::{Error, Result};

/// Most channels one connection may be subscribed to. Also keeps a removal (the
/// connection, the user's set and every membership) inside one transaction.
pub const MAX_ROOMS_PER_CONNECTION: usize = 50;

/// Most members read for one room. Rooms are `post:{id}` and `presence:{user}` audiences;
/// anything bigger is a runaway client, and the push tier splits large audiences anyway.
pub const MAX_ROOM_MEMBERS: usize = 10_000;

/// `Retry-After` of a refused connection: a slot frees when another of the user's
/// connections closes, which cannot be predicted, so this is only a back-off hint.
pub const CONNECTION_LIMIT_RETRY_AFTER_SECS: u64 = 60;

/// How long after `$connect` stored a connection `@connections` may still answer 410 for it:
/// API Gateway accepts posts only once `$connect` has returned, and its integration timeout
/// is 29 s. A 410 for a younger connection says "not yet", not "gone".
pub const HANDSHAKE_WINDOW: chrono::Duration = chrono::Duration::seconds(30);

/// What [`DynamoStore::remove_gone_connection`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum GoneRemoval {
    /// Removed, with its memberships.
    Removed(Connection),
    /// Younger than [`HANDSHAKE_WINDOW`]: kept (its handshake may still be running).
    TooYoung,
    /// Already gone.
    Absent,
}

/// Attempts at removing a connection whose room list keeps changing under us.
const REMOVE_ATTEMPTS: u32 = 5;

// A removal is one transaction: the connection, the user's set and every membership.
const _: () = assert!(MAX_ROOMS_PER_CONNECTION + 2 <= MAX_TRANSACTION_ITEMS);

/// A connection as stored: the domain record plus the channels it is subscribed to.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnection {
    pub connection: Connection,
    /// Subscribed channels, sorted.
    pub rooms: Vec<String>,
    version: i64,
}

impl StoredConnection {
    /// Reads a `CONN` item, e.g. the old image of a stream record for a connection that TTL
    /// deleted (see [`DynamoStore::release_expired_connection`]).
    pub fn from_item(item: Item) -> Result<Self> {
        let state: ConnectionState = from_item(item.clone())?;
        let mut rooms = state.rooms;
        rooms.sort();
        Ok(Self {
            connection: from_item(item)?,
            rooms,
            version: state.version,
        })
    }
}

#[derive(Serialize)]
struct ConnectionRecord<'a> {
    #[serde(flatten)]
    connection: &'a Connection,
    version: i64,
    entity: &'static str,
}

/// The store-only attributes of a `CONN` item.
#[derive(Deserialize)]
struct ConnectionState {
    #[serde(default)]
    rooms: Vec<String>,
    #[serde(default)]
    version: i64,
}

#[derive(Deserialize)]
struct UserConnectionsRecord {
    user_id: UserId,
    #[serde(default)]
    connection_ids: Vec<String>,
}

#[derive(Serialize)]
struct RoomMemberRecord<'a> {
    #[serde(flatten)]
    subscription: &'a Subscription,
    expires_at: i64,
    entity: &'static str,
}

/// Deletes a connection item only if it is still at the `version` that was read.
fn delete_if_version(table: &str, stored: &StoredConnection) -> Result<TransactWriteItem> {
    tx::delete_where(
        table,
        &keys::connection(&stored.connection.connection_id),
        "version = :version",
        vec![(":version", n(stored.version))],
    )
}

fn string_set(values: impl IntoIterator<Item = impl Into<String>>) -> AttributeValue {
    AttributeValue::Ss(values.into_iter().map(Into::into).collect())
}

impl DynamoStore {
    /// Removes a connection with its set entry and memberships if `removable` says so of
    /// the stored connection (read first: the removal needs its room list anyway).
    async fn remove_connection_if(
        &self,
        connection_id: &str,
        removable: impl Fn(&Connection) -> bool,
    ) -> Result<GoneRemoval> {
        for _ in 0..REMOVE_ATTEMPTS {
            let Some(stored) = self.stored_connection(connection_id).await? else {
                return Ok(GoneRemoval::Absent);
            };
            if !removable(&stored.connection) {
                return Ok(GoneRemoval::TooYoung);
            }
            let mut transaction = Transaction::new();
            let connection_item = transaction.add(delete_if_version(&self.table.name, &stored)?);
            transaction.add_all(self.release_items(&stored)?);
            match self.table.transact(transaction).await {
                Ok(()) => return Ok(GoneRemoval::Removed(stored.connection)),
                // Deleted or (un)subscribed meanwhile: read again.
                Err(failure) if failure.failed(&connection_item) => continue,
                Err(failure) => {
                    return Err(failure.into_error(|| Error::invariant("removing connection")))
                }
            }
        }
        Err(Error::invariant(format!(
            "connection kept changing during {REMOVE_ATTEMPTS} removal attempts"
        )))
    }

    /// The writes that detach a connection from its user and rooms (everything but the
    /// connection item itself).
    fn release_items(&self, stored: &StoredConnection) -> Result<Vec<TransactWriteItem>> {
        let table = &self.table.name;
        let id = &stored.connection.connection_id;
        let mut items = Vec::with_capacity(stored.rooms.len() + 1);
        items.push(tx::update(
            table,
            &keys::user_connections(stored.connection.user_id),
            "DELETE connection_ids :id",
            None,
            &[],
            vec![(":id", string_set([id.as_str()]))],
        )?);
        for channel in &stored.rooms {
            items.push(tx::delete(table, &keys::room_member(channel, id), None)?);
        }
        Ok(items)
    }

    /// Drops ids from `user`'s set whose connection is gone or expired at `now` (epoch
    /// seconds), cleaning up their memberships. Returns how many were dropped. Removing a
    /// dead id is idempotent, so this read-then-write cannot break the limit: the limit
    /// itself stays a condition of the insert.
    async fn prune_dead_connections(&self, user: UserId, now: i64) -> Result<usize> {
        let ids = self.connections_of_user(user).await?;
        let keys: Vec<_> = ids.iter().map(|id| keys::connection(id)).collect();
        let mut present = HashSet::new();
        let mut expired = Vec::new();
        for item in self.table.batch_get(&keys).await? {
            let stored = StoredConnection::from_item(item)?;
            present.insert(stored.connection.connection_id.clone());
            if stored.connection.expires_at <= now {
                expired.push(stored.connection.connection_id);
            }
        }
        for id in &expired {
            self.remove_connection(id).await?;
        }
        let vanished: Vec<&String> = ids.iter().filter(|id| !present.contains(*id)).collect();
        if !vanished.is_empty() {
            self.table
                .client
                .update_item()
                .table_name(&self.table.name)
                .set_key(Some(key_map(&keys::user_connections(user))))
                .update_expression("DELETE connection_ids :gone")
                .expression_attribute_values(
                    ":gone",
                    string_set(vanished.iter().map(|id| id.as_str())),
                )
                .send()
                .await
                .map_err(|e| Error::internal("pruning vanished connection ids", e))?;
        }
        Ok(expired.len() + vanished.len())
    }

    async fn try_add_connection(
        &self,
        connection: &Connection,
        max_per_user: u32,
    ) -> Result<AddOutcome> {
        let table = &self.table.name;
        let mut transaction = Transaction::new();
        let connection_item = transaction.add(tx::put_new(
            table,
            to_item(
                &keys::connection(&connection.connection_id),
                &ConnectionRecord {
                    connection,
                    version: 0,
                    entity: "connection",
                },
            )?,
        )?);
        let user_set = transaction.add(tx::update(
            table,
            &keys::user_connections(connection.user_id),
            "ADD connection_ids :id SET user_id = :user, entity = :entity",
            Some("attribute_not_exists(connection_ids) OR size(connection_ids) < :max"),
            &[],
            vec![
                (":id", string_set([connection.connection_id.as_str()])),
                (":user", s(connection.user_id.to_string())),
                (":entity", s("user_connections")),
                (":max", n(i64::from(max_per_user))),
            ],
        )?);
        transaction.add(super::online::online_entry_put(
            table,
            connection.user_id,
            connection.expires_at,
        )?);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(AddOutcome::Added),
            Err(failure) if failure.failed(&connection_item) => {
                Err(Error::conflict("connection is already registered"))
            }
            Err(failure) if failure.failed(&user_set) => Ok(AddOutcome::UserAtLimit),
            Err(failure) => Err(failure.into_error(|| Error::invariant("adding connection"))),
        }
    }
}

enum AddOutcome {
    Added,
    UserAtLimit,
}

fn too_many_connections() -> Error {
    Error::RateLimited {
        retry_after_secs: CONNECTION_LIMIT_RETRY_AFTER_SECS,
    }
}

impl DynamoStore {
    /// Pattern 25: the connection sets of `users`, one `BatchGetItem` per 100 users.
    async fn read_connection_sets(
        &self,
        users: &[UserId],
        consistency: Consistency,
    ) -> Result<HashMap<UserId, Vec<String>>> {
        let keys: Vec<_> = users
            .iter()
            .map(|user| keys::user_connections(*user))
            .collect();
        let mut connections = HashMap::new();
        for item in self.table.batch_get_with(&keys, consistency).await? {
            let mut record: UserConnectionsRecord = from_item(item)?;
            if !record.connection_ids.is_empty() {
                record.connection_ids.sort();
                connections.insert(record.user_id, record.connection_ids);
            }
        }
        Ok(connections)
    }
}

impl DynamoStore {
    /// Stores a new connection and adds it to its user's set, in one transaction. A user
    /// who already has `max_per_user` open connections gets `RateLimited` (429). Ids of
    /// connections that are gone (TTL-deleted or expired) do not count against the limit.
    pub async fn add_connection(&self, connection: &Connection, max_per_user: u32) -> Result<()> {
        if max_per_user == 0 {
            return Err(too_many_connections());
        }
        if let AddOutcome::Added = self.try_add_connection(connection, max_per_user).await? {
            return Ok(());
        }
        // At the limit: maybe some of the ids are connections that died without a
        // `$disconnect` (TTL, lost stream record). Drop those and try once more.
        let now = connection.connected_at.timestamp();
        if self.prune_dead_connections(connection.user_id, now).await? == 0 {
            return Err(too_many_connections());
        }
        match self.try_add_connection(connection, max_per_user).await? {
            AddOutcome::Added => Ok(()),
            AddOutcome::UserAtLimit => Err(too_many_connections()),
        }
    }

    /// Removes a connection, its entry in the user's set and its room memberships.
    /// Returns the removed connection; `None` if it was already gone (idempotent).
    pub async fn remove_connection(&self, connection_id: &str) -> Result<Option<Connection>> {
        Ok(
            match self.remove_connection_if(connection_id, |_| true).await? {
                GoneRemoval::Removed(connection) => Some(connection),
                GoneRemoval::TooYoung | GoneRemoval::Absent => None,
            },
        )
    }

    /// [`DynamoStore::remove_connection`] for a connection `@connections` answered 410
    /// for — unless it connected after `connected_before` (the time of the 410 minus the
    /// handshake window, [`HANDSHAKE_WINDOW`] in production): then the 410 is API Gateway's
    /// "handshake not finished" and the connection is live.
    pub async fn remove_gone_connection(
        &self,
        connection_id: &str,
        connected_before: chrono::DateTime<chrono::Utc>,
    ) -> Result<GoneRemoval> {
        self.remove_connection_if(connection_id, |connection| {
            connection.connected_at <= connected_before
        })
        .await
    }

    /// Cleans up after a connection item that TTL already deleted (its stream old image):
    /// its entry in the user's set and its room memberships. Idempotent.
    pub async fn release_expired_connection(&self, expired: &StoredConnection) -> Result<()> {
        self.table
            .transact_or(self.release_items(expired)?, || {
                Error::invariant("releasing an expired connection has no conditions")
            })
            .await
    }

    /// Pattern 26: a connection by id.
    pub async fn get_connection(&self, connection_id: &str) -> Result<Option<Connection>> {
        self.table.get_as(&keys::connection(connection_id)).await
    }

    /// Pattern 26 with the subscribed channels.
    pub async fn stored_connection(&self, connection_id: &str) -> Result<Option<StoredConnection>> {
        self.table
            .get(&keys::connection(connection_id))
            .await?
            .map(StoredConnection::from_item)
            .transpose()
    }

    /// Pattern 24: the open connection ids of a user, sorted.
    pub async fn connections_of_user(&self, user: UserId) -> Result<Vec<String>> {
        let record: Option<UserConnectionsRecord> =
            self.table.get_as(&keys::user_connections(user)).await?;
        let mut ids = record.map(|r| r.connection_ids).unwrap_or_default();
        ids.sort();
        Ok(ids)
    }

    /// Pattern 25: the open connection ids of many users, one `BatchGetItem` per 100 users.
    /// Users without connections are absent from the map.
    pub async fn connections_of_users(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Vec<String>>> {
        self.read_connection_sets(users, Consistency::Strong).await
    }

    /// [`DynamoStore::connections_of_users`] read eventually consistent (half the read
    /// units): for a big audience found through the online index, itself a snapshot. A
    /// connection opened within the last second may be missed; its client resumes on
    /// connect, which covers it.
    pub async fn connections_of_online_users(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Vec<String>>> {
        self.read_connection_sets(users, Consistency::Eventual)
            .await
    }

    /// Subscribes a connection to a channel (idempotent). The connection must exist and
    /// belong to `subscription.user_id` (else `NotFound`); at most
    /// [`MAX_ROOMS_PER_CONNECTION`] channels per connection (else `Validation`).
    /// `expires_at` (epoch seconds, TTL) is normally the connection's own.
    pub async fn subscribe(&self, subscription: &Subscription, expires_at: i64) -> Result<()> {
        let table = &self.table.name;
        let mut transaction = Transaction::new();
        // Overwriting an existing membership is what makes subscribing idempotent.
        transaction.add(tx::put(
            table,
            to_item(
                &keys::room_member(&subscription.channel, &subscription.connection_id),
                &RoomMemberRecord {
                    subscription,
                    expires_at,
                    entity: "room_member",
                },
            )?,
            None,
        )?);
        let room_list = transaction.add(tx::update(
            table,
            &keys::connection(&subscription.connection_id),
            "ADD rooms :room, version :one",
            Some(
                "attribute_exists(pk) AND user_id = :user AND (attribute_not_exists(rooms) \
                     OR size(rooms) < :max OR contains(rooms, :channel))",
            ),
            &[],
            vec![
                (":room", string_set([subscription.channel.as_str()])),
                (":channel", s(&subscription.channel)),
                (":one", n(1)),
                (":user", s(subscription.user_id.to_string())),
                (":max", n(MAX_ROOMS_PER_CONNECTION as i64)),
            ],
        )?);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(()),
            Err(failure) if failure.failed(&room_list) => {
                // Only to pick the right error; nothing is written on this path.
                match self.get_connection(&subscription.connection_id).await? {
                    Some(connection) if connection.user_id == subscription.user_id => {
                        Err(Error::validation(format!(
                        "a connection may subscribe to at most {MAX_ROOMS_PER_CONNECTION} channels"
                    )))
                    }
                    _ => Err(Error::not_found("connection not found")),
                }
            }
            Err(failure) => Err(failure.into_error(|| Error::invariant("subscribing"))),
        }
    }

    /// Unsubscribes; `Ok(false)` if the connection was not subscribed (or is gone).
    pub async fn unsubscribe(&self, connection_id: &str, channel: &str) -> Result<bool> {
        let table = &self.table.name;
        let member = keys::room_member(channel, connection_id);
        let mut transaction = Transaction::new();
        transaction.add(tx::delete(table, &member, None)?);
        let room_list = transaction.add(tx::update(
            table,
            &keys::connection(connection_id),
            "DELETE rooms :room ADD version :one",
            Some("attribute_exists(pk) AND contains(rooms, :channel)"),
            &[],
            vec![
                (":room", string_set([channel])),
                (":channel", s(channel)),
                (":one", n(1)),
            ],
        )?);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(true),
            Err(failure) if failure.failed(&room_list) => {
                // Not subscribed, or the connection is gone: a membership item without its
                // connection can only be a leftover, so delete it anyway.
                self.table.delete(&member).await?;
                Ok(false)
            }
            Err(failure) => Err(failure.into_error(|| Error::invariant("unsubscribing"))),
        }
    }

    /// Pattern 27: the subscribers of a channel (at most [`MAX_ROOM_MEMBERS`]).
    pub async fn room_members(&self, channel: &str) -> Result<Vec<Subscription>> {
        let partition = keys::room_partition(channel);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::ROOM_MEMBER_PREFIX);
        self.table
            .query_all(&query, MAX_ROOM_MEMBERS)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }
}
