//! Presence as announced to watchers: the state that debounces `user_online`/`user_offline`.
//!
//! `USER#{user}` / `PRESENCE` holds `online` (what watchers were last told) and `cause` (the
//! connection, or the disconnect check, that told them). The push tier changes it only
//! through the two conditional writes below, so a reconnect within the grace period produces
//! neither event:
//!
//! - A connection opens → [`PresenceStore::announce_online`]: succeeds only if watchers were
//!   told "offline" (or nothing yet). A reconnect within the grace period finds `online`
//!   still true — the offline was never announced — and announces nothing.
//! - A connection closes → a presence check is queued with a delay of [`PRESENCE_GRACE`];
//!   when it arrives, [`PresenceStore::announce_offline`] succeeds only if the user has no
//!   open connection at that moment, checked in the same transaction (so a connect racing
//!   the check cannot be announced offline).
//!
//! Both writes also succeed when `cause` is the one already recorded, so a retried stream
//! batch or a redelivered check announces again with the same event id instead of never.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::dynamo::{s, tx, TransactFailure};
use super::keys;
use super::DynamoStore;
use crate::domain::{format_time, UserId};
use crate::error::Result;

/// How long a user may be disconnected before watchers are told they are offline.
pub const PRESENCE_GRACE: Duration = Duration::from_secs(10);

#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Records `user` online because of `cause` (the connection that opened). `true` if
    /// watchers must be told (they were told offline, nothing yet, or this very cause).
    async fn announce_online(&self, user: UserId, cause: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Records `user` offline because of `cause` (the disconnect check), provided the user
    /// has no open connection now. `true` if watchers must be told.
    async fn announce_offline(&self, user: UserId, cause: &str, at: DateTime<Utc>) -> Result<bool>;
}

impl DynamoStore {
    fn presence_update(
        &self,
        user: UserId,
        online: bool,
        cause: &str,
        at: DateTime<Utc>,
        condition: &str,
        condition_values: Vec<(&'static str, AttributeValue)>,
    ) -> Result<aws_sdk_dynamodb::types::TransactWriteItem> {
        let mut values = vec![
            (":online", AttributeValue::Bool(online)),
            (":cause", s(cause)),
            (":at", s(format_time(at))),
            (":user", s(user.to_string())),
            (":entity", s("presence")),
        ];
        values.extend(condition_values);
        tx::update(
            &self.table.name,
            &keys::presence(user),
            "SET #online = :online, #cause = :cause, changed_at = :at, user_id = :user, entity = :entity",
            Some(condition),
            // Both are DynamoDB reserved words.
            &[("#online", "online"), ("#cause", "cause")],
            values,
        )
    }
}

/// `true` when the transaction committed, `false` when a condition said "nothing to announce".
fn announced(outcome: std::result::Result<(), TransactFailure>) -> Result<bool> {
    match outcome {
        Ok(()) => Ok(true),
        Err(TransactFailure::ConditionFailed { .. }) => Ok(false),
        Err(TransactFailure::Other(error)) => Err(error),
    }
}

#[async_trait]
impl PresenceStore for DynamoStore {
    async fn announce_online(&self, user: UserId, cause: &str, at: DateTime<Utc>) -> Result<bool> {
        let update = self.presence_update(
            user,
            true,
            cause,
            at,
            "attribute_not_exists(#online) OR #online = :offline OR #cause = :cause",
            vec![(":offline", AttributeValue::Bool(false))],
        )?;
        announced(self.table.transact(vec![update]).await)
    }

    async fn announce_offline(&self, user: UserId, cause: &str, at: DateTime<Utc>) -> Result<bool> {
        let no_connections = tx::condition_check(
            &self.table.name,
            &keys::user_connections(user),
            "attribute_not_exists(connection_ids)",
            vec![],
        )?;
        let update = self.presence_update(
            user,
            false,
            cause,
            at,
            "#online = :was_online OR #cause = :cause",
            vec![(":was_online", AttributeValue::Bool(true))],
        )?;
        announced(self.table.transact(vec![no_connections, update]).await)
    }
}
