//! Refresh-token storage: tokens addressed by the SHA-256 of their secret, grouped in
//! families (one per login or registration).
//!
//! - `TOKEN#{sha256 hex}` / `TOKEN`: `user_id`, `family_id`, `created_at`, `expires_at` (TTL),
//!   and `used_at` once it has been rotated. The secret itself is never stored.
//! - `USER#{user}` / `TOKENFAMILY#{family}`: `family_id`, `user_id`, `created_at`, `revoked`,
//!   `expires_at` (TTL, slid forward on every rotation so a live session is never expired
//!   away under its newest token).
//!
//! Rotation is ONE `TransactWriteItems`: mark the old token used (condition: it exists and is
//! unused), put the new one (condition: new), and update the family's TTL on the condition
//! that it exists and is not revoked. Two concurrent rotations of the same token cannot both
//! commit, and nothing rotates inside a revoked family. The policy around it (expiry, reuse
//! detection) lives in `auth::refresh`.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dynamo::{from_item, n, s, to_item, Query};
use super::keys;
use super::page::KeyShape;
use super::transaction::{tx, Transaction};
use super::DynamoStore;
use crate::domain::{rfc3339, UserId};
use crate::error::{Error, Result};

/// Most sessions read for one user. Families expire with their last token (30 days by
/// default), so a real user is far below this; it only bounds a pathological partition.
pub const MAX_FAMILIES: usize = 10_000;

/// Revocations in flight at once for "log out everywhere".
const REVOKE_CONCURRENCY: usize = 8;

/// A stored refresh token (the `TOKEN#{hash}` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub user_id: UserId,
    pub family_id: Uuid,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    /// Epoch seconds; also the table's TTL attribute.
    pub expires_at: i64,
    /// When the token was rotated. Absent (not null) while unused: the rotation condition
    /// is `attribute_not_exists(used_at)`.
    #[serde(
        with = "rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub used_at: Option<DateTime<Utc>>,
}

/// A session: every token rotated from one login (the `TOKENFAMILY#{family}` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenFamily {
    pub family_id: Uuid,
    pub user_id: UserId,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub revoked: bool,
    /// Epoch seconds; the expiry of the family's newest token.
    pub expires_at: i64,
}

/// A token to store: its hash (never the secret) and where it belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// Lower-case hex SHA-256 of the secret.
    pub hash: String,
    pub user_id: UserId,
    pub family_id: Uuid,
    /// Epoch seconds.
    pub expires_at: i64,
}

/// What a rotation attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token is now used and the new one stored.
    Rotated,
    /// The old token was already used (or has vanished): someone rotated it first.
    OldTokenUsed,
    /// The family is revoked (or expired away); nothing was written.
    FamilyRevoked,
}

#[derive(Serialize)]
struct Record<'a, T> {
    #[serde(flatten)]
    record: &'a T,
    entity: &'static str,
}

fn token_item(new: &NewRefreshToken, now: DateTime<Utc>) -> Result<super::dynamo::Item> {
    to_item(
        &keys::refresh_token(&new.hash),
        &Record {
            record: &RefreshToken {
                user_id: new.user_id,
                family_id: new.family_id,
                created_at: crate::clock::to_millis(now),
                expires_at: new.expires_at,
                used_at: None,
            },
            entity: "refresh_token",
        },
    )
}

impl DynamoStore {
    /// Starts a family with its first token, in one transaction.
    pub async fn create_family(&self, first: &NewRefreshToken, now: DateTime<Utc>) -> Result<()> {
        let table = &self.table.name;
        let family = to_item(
            &keys::token_family(first.user_id, first.family_id),
            &Record {
                record: &TokenFamily {
                    family_id: first.family_id,
                    user_id: first.user_id,
                    created_at: crate::clock::to_millis(now),
                    revoked: false,
                    expires_at: first.expires_at,
                },
                entity: "token_family",
            },
        )?;
        let items = vec![
            tx::put_new(table, family)?,
            tx::put_new(table, token_item(first, now)?)?,
        ];
        // Family ids are fresh UUIDv7s and token hashes are SHA-256 of 32 random bytes: a
        // collision is a broken invariant, not a client error.
        self.table
            .transact_or(items, || {
                Error::invariant("refresh-token family or token already exists")
            })
            .await
    }

    /// Pattern 28: a token by the hash of its secret.
    pub async fn refresh_token(&self, hash: &str) -> Result<Option<RefreshToken>> {
        self.table.get_as(&keys::refresh_token(hash)).await
    }

    /// Pattern 28 (second step): the family a token belongs to.
    pub async fn token_family(&self, user: UserId, family: Uuid) -> Result<Option<TokenFamily>> {
        self.table.get_as(&keys::token_family(user, family)).await
    }

    /// Marks `old_hash` used and stores `new` in `new.family_id`, atomically (see module doc).
    pub async fn rotate(
        &self,
        old_hash: &str,
        new: &NewRefreshToken,
        now: DateTime<Utc>,
    ) -> Result<Rotation> {
        let table = &self.table.name;
        let mut transaction = Transaction::new();
        // The old token becomes used, only if it exists, is unused and belongs to the same
        // user and family as the new one.
        let old_token = transaction.add(tx::update(
            table,
            &keys::refresh_token(old_hash),
            "SET used_at = :now",
            Some(
                "attribute_exists(pk) AND attribute_not_exists(used_at) \
                     AND user_id = :user AND family_id = :family",
            ),
            &[],
            vec![
                (":now", s(crate::domain::format_time(now))),
                (":user", s(new.user_id.to_string())),
                (":family", s(new.family_id.to_string())),
            ],
        )?);
        transaction.add(tx::put_new(table, token_item(new, now)?)?);
        // The family must exist and not be revoked. This is the transaction's condition
        // check on the family; it is an update rather than a bare ConditionCheck so the
        // family's TTL follows its newest token.
        let family = transaction.add(tx::update(
            table,
            &keys::token_family(new.user_id, new.family_id),
            "SET expires_at = :expires",
            Some("attribute_exists(pk) AND revoked = :false"),
            &[],
            vec![
                (":expires", n(new.expires_at)),
                (":false", AttributeValue::Bool(false)),
            ],
        )?);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(Rotation::Rotated),
            // The family is checked first: a used token in a revoked family is "revoked".
            Err(failure) if failure.failed(&family) => Ok(Rotation::FamilyRevoked),
            Err(failure) if failure.failed(&old_token) => Ok(Rotation::OldTokenUsed),

            Err(failure) => Err(failure.into_error(|| {
                Error::invariant("refresh-token rotation: new token hash already exists")
            })),
        }
    }

    /// Revokes one family. `Ok(false)` when it does not exist.
    pub async fn revoke_family(
        &self,
        user: UserId,
        family: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.table
            .update_if(
                &keys::token_family(user, family),
                "SET revoked = :true, revoked_at = :now",
                "attribute_exists(pk)",
                &[],
                vec![
                    (":true", AttributeValue::Bool(true)),
                    (":now", s(crate::domain::format_time(now))),
                ],
            )
            .await
    }

    /// Pattern 29: every family (session) of a user, oldest first.
    pub async fn families(&self, user: UserId) -> Result<Vec<TokenFamily>> {
        let partition = keys::user_pk(user);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::TOKEN_FAMILY_PREFIX);
        self.table
            .query_all(&query, MAX_FAMILIES)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// Revokes every family of `user` that is not revoked yet; returns how many it revoked.
    pub async fn revoke_all_families(&self, user: UserId, now: DateTime<Utc>) -> Result<usize> {
        let live: Vec<Uuid> = self
            .families(user)
            .await?
            .into_iter()
            .filter(|family| !family.revoked)
            .map(|family| family.family_id)
            .collect();
        // Each revocation is an idempotent conditional update, so running them side by side
        // (and racing a concurrent rotation) is safe: a rotation after the update fails its
        // family condition.
        stream::iter(live)
            .map(|family| self.revoke_family(user, family, now))
            .buffer_unordered(REVOKE_CONCURRENCY)
            .try_fold(0usize, |revoked, done| async move {
                Ok(revoked + usize::from(done))
            })
            .await
    }
}
