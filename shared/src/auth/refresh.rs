//! Refresh tokens: opaque, random, hashed at rest, rotated on every use, grouped in
//! revocable families.
//!
//! - A token is 32 bytes from the OS CSPRNG, URL-safe base64 without padding (43 chars).
//!   Only its SHA-256 is stored, so a leaked table cannot mint sessions.
//! - Each login or registration starts a family; every refresh rotates the token within it
//!   (`store::tokens` does the rotation as one conditional transaction).
//! - Presenting a token that was already rotated means two parties hold the same session
//!   (a thief and its owner), so the whole family is revoked: the newer token dies too and
//!   both must log in again.
//! - A token past its `expires_at` is rejected even if TTL has not deleted it yet.
//!
//! Every rejection carries the same message, so a caller learns nothing about why.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::UserId;
use crate::error::{Error, Result};
use crate::store::tokens::{NewRefreshToken, RefreshToken, Rotation};
use crate::store::DynamoStore;

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token's text form (unpadded base64 of [`TOKEN_BYTES`]).
pub const TOKEN_CHARS: usize = 43;

const REJECTED: &str = "invalid or expired refresh token";
const NOT_FOUND: &str = "refresh token not found";

/// A freshly issued refresh token. `Debug` never shows the secret.
#[derive(Clone)]
pub struct IssuedRefreshToken {
    /// The secret handed to the client, exactly once.
    pub token: String,
    pub user_id: UserId,
    pub family_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for IssuedRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedRefreshToken")
            .field("token", &"<redacted>")
            .field("user_id", &self.user_id)
            .field("family_id", &self.family_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A new random token secret.
pub fn generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The storage key of a token: lower-case hex SHA-256 of its text.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether `token` has the shape of a token this module issued. Anything else cannot be
/// valid, so it is rejected without a database read.
pub fn is_well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && URL_SAFE_NO_PAD
            .decode(token)
            .is_ok_and(|bytes| bytes.len() == TOKEN_BYTES)
}

/// Issues, rotates and revokes refresh tokens over the token store ([`crate::store::DynamoStore`]).
#[derive(Clone)]
pub struct RefreshTokens {
    store: Arc<DynamoStore>,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for RefreshTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl RefreshTokens {
    /// `ttl` is `config.jwt.refresh_token_ttl`.
    pub fn new(store: Arc<DynamoStore>, ttl: std::time::Duration) -> Result<Self> {
        let ttl = chrono::Duration::from_std(ttl)
            .map_err(|e| Error::internal("refresh-token lifetime out of range", e))?;
        Ok(Self { store, ttl })
    }

    fn mint(
        &self,
        user: UserId,
        family: Uuid,
        now: DateTime<Utc>,
    ) -> (IssuedRefreshToken, NewRefreshToken) {
        let token = generate();
        let expires_at = now + self.ttl;
        let record = NewRefreshToken {
            hash: hash(&token),
            user_id: user,
            family_id: family,
            expires_at: expires_at.timestamp(),
        };
        let issued = IssuedRefreshToken {
            token,
            user_id: user,
            family_id: family,
            expires_at,
        };
        (issued, record)
    }

    /// Starts a new session (family) for `user` with its first token.
    pub async fn start_session(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<IssuedRefreshToken> {
        let (issued, record) = self.mint(user, Uuid::now_v7(), now);
        self.store.create_family(&record, now).await?;
        Ok(issued)
    }

    /// Looks a presented token up; `None` for anything malformed or unknown.
    async fn lookup(&self, presented: &str) -> Result<Option<(String, RefreshToken)>> {
        if !is_well_formed(presented) {
            return Ok(None);
        }
        let token_hash = hash(presented);
        Ok(self
            .store
            .refresh_token(&token_hash)
            .await?
            .map(|token| (token_hash, token)))
    }

    /// Exchanges a token for the next one of its family. Unknown, expired, used or revoked
    /// tokens are 401; a used one also revokes its family (reuse detection).
    pub async fn rotate(&self, presented: &str, now: DateTime<Utc>) -> Result<IssuedRefreshToken> {
        let Some((old_hash, old)) = self.lookup(presented).await? else {
            return Err(Error::unauthorized(REJECTED));
        };
        if old.expires_at <= now.timestamp() {
            return Err(Error::unauthorized(REJECTED));
        }
        if old.used_at.is_some() {
            self.revoke_for_reuse(&old, now).await?;
            return Err(Error::unauthorized(REJECTED));
        }
        // A revoked (or vanished) family is a condition of the rotation transaction, so it
        // is not read beforehand: rotations of live sessions cost no extra read.
        let (issued, record) = self.mint(old.user_id, old.family_id, now);
        match self.store.rotate(&old_hash, &record, now).await? {
            Rotation::Rotated => Ok(issued),
            Rotation::FamilyRevoked => Err(Error::unauthorized(REJECTED)),
            Rotation::OldTokenUsed => {
                // A concurrent request rotated the same token first: the token was presented
                // twice, which is reuse whichever request won.
                self.revoke_for_reuse(&old, now).await?;
                Err(Error::unauthorized(REJECTED))
            }
        }
    }

    async fn revoke_for_reuse(&self, token: &RefreshToken, now: DateTime<Utc>) -> Result<()> {
        tracing::warn!(
            user_id = %token.user_id,
            family_id = %token.family_id,
            "rotated refresh token presented again; revoking its family"
        );
        self.store
            .revoke_family(token.user_id, token.family_id, now)
            .await?;
        Ok(())
    }

    /// The token's owner and family, if `presented` is a stored token of `caller`. Another
    /// user's token is reported exactly like an unknown one (404), so its existence never
    /// leaks.
    async fn owned_by(&self, presented: &str, caller: UserId) -> Result<RefreshToken> {
        match self.lookup(presented).await? {
            Some((_, token)) if token.user_id == caller => Ok(token),
            _ => Err(Error::not_found(NOT_FOUND)),
        }
    }

    /// Logout: revokes the family of `presented`, which must belong to `caller`. Works on
    /// used or expired tokens of the caller too (the session ends either way).
    pub async fn revoke_session(
        &self,
        presented: &str,
        caller: UserId,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let token = self.owned_by(presented, caller).await?;
        self.store
            .revoke_family(token.user_id, token.family_id, now)
            .await?;
        Ok(())
    }

    /// Logout everywhere: after checking that `presented` belongs to `caller`, revokes every
    /// family of the caller. Returns how many sessions were still live.
    pub async fn revoke_all_sessions(
        &self,
        presented: &str,
        caller: UserId,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let token = self.owned_by(presented, caller).await?;
        self.store.revoke_all_families(token.user_id, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_chars_and_distinct() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_CHARS);
        assert!(is_well_formed(&a));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn malformed_tokens_are_recognised() {
        for bad in [
            "",
            "short",
            &"A".repeat(44),
            &format!("{}=", &generate()[..42]),
            "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
