//! Presence as announced to watchers: the state that debounces `user_online`/`user_offline`.
//!
//! `USER#{user}` / `PRESENCE` holds `online` (what watchers were last told) and `cause` (the
//! connection, or the disconnect check, that told them). The push tier changes it only
//! through the two conditional writes below, so a reconnect within the grace period produces
//! neither event:
//!
//! - A connection opens → [`DynamoStore::announce_online`]: succeeds only if watchers were
//!   told "offline" (or nothing yet). A reconnect within the grace period finds `online`
//!   still true — the offline was never announced — and announces nothing.
//! - A connection closes → a presence check is queued with a delay of [`PRESENCE_GRACE`];
//!   when it arrives, [`DynamoStore::announce_offline`] succeeds only if the user has no
//!   open connection at that moment, checked in the same transaction (so a connect racing
//!   the check cannot be announced offline).
//!
//! Who tells the watchers: the stream router, from this item's own stream records (a
//! [`PresenceRecord`] going false → true is `user_online`, true → false `user_offline`). Both
//! transitions come from one item, so they stay in the order they were written whatever the
//! shards; the push worker, which writes the offline (it has no right to send to the fan-out
//! queue), never pushes, and a large audience takes the same direct-or-queue path as every
//! other event.
//!
//! Both writes also succeed when `cause` is the one already recorded, so a retried stream
//! batch or a redelivered check announces again with the same event id instead of never.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dynamo::s;
use super::keys;
use super::transaction::{tx, TransactFailure};
use super::DynamoStore;
use crate::domain::{format_time, UserId};
use crate::error::Result;

/// How long a user may be disconnected before watchers are told they are offline.
pub const PRESENCE_GRACE: Duration = Duration::from_secs(10);

/// The presence item as the stream carries it (`USER#{user}` / `PRESENCE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceRecord {
    pub user_id: UserId,
    /// What watchers were last told.
    pub online: bool,
    /// The announcement that told them: `connect:{connection}` or `disconnect:{connection}`.
    pub cause: String,
    /// When the connection opened, or closed, that `cause` names.
    #[serde(with = "crate::domain::rfc3339")]
    pub changed_at: DateTime<Utc>,
}

/// The presence write both announcements make; `#online` and `#cause` because both are
/// DynamoDB reserved words.
const PRESENCE_SET: &str =
    "SET #online = :online, #cause = :cause, changed_at = :at, user_id = :user, entity = :entity";
const PRESENCE_NAMES: &[(&str, &str)] = &[("#online", "online"), ("#cause", "cause")];

/// The values of [`PRESENCE_SET`] plus those of the announcement's condition.
fn presence_values(
    user: UserId,
    online: bool,
    cause: &str,
    at: DateTime<Utc>,
    condition_values: Vec<(&'static str, AttributeValue)>,
) -> Vec<(&'static str, AttributeValue)> {
    let mut values = vec![
        (":online", AttributeValue::Bool(online)),
        (":cause", s(cause)),
        (":at", s(format_time(at))),
        (":user", s(user.to_string())),
        (":entity", s("presence")),
    ];
    values.extend(condition_values);
    values
}

impl DynamoStore {
    /// Records `user` online because of `cause` (the connection that opened). `true` if
    /// watchers must be told (they were told offline, nothing yet, or this very cause).
    pub async fn announce_online(
        &self,
        user: UserId,
        cause: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        self.table
            .update_if(
                &keys::presence(user),
                PRESENCE_SET,
                "attribute_not_exists(#online) OR #online = :offline OR #cause = :cause",
                PRESENCE_NAMES,
                presence_values(
                    user,
                    true,
                    cause,
                    at,
                    vec![(":offline", AttributeValue::Bool(false))],
                ),
            )
            .await
    }

    /// Records `user` offline because of `cause` (the disconnect check), provided the user
    /// has no open connection now. `true` if watchers must be told.
    pub async fn announce_offline(
        &self,
        user: UserId,
        cause: &str,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let no_connections = tx::condition_check(
            &self.table.name,
            &keys::user_connections(user),
            "attribute_not_exists(connection_ids)",
            vec![],
        )?;
        let update = tx::update(
            &self.table.name,
            &keys::presence(user),
            PRESENCE_SET,
            Some("#online = :was_online OR #cause = :cause"),
            PRESENCE_NAMES,
            presence_values(
                user,
                false,
                cause,
                at,
                vec![(":was_online", AttributeValue::Bool(true))],
            ),
        )?;
        match self.table.transact(vec![no_connections, update]).await {
            Ok(()) => Ok(true),
            // Still connected, or already announced offline: nothing to announce.
            Err(TransactFailure::ConditionFailed { .. }) => Ok(false),
            Err(TransactFailure::Other(error)) => Err(error),
        }
    }
}
