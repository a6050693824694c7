//! Brute-force lockouts on the credential doors: login, register and refresh.
//!
//! Each (door, subject) — a username or a source IP — is one item,
//! `LOCK#{door}#{subject}` / `LOCK`, holding the failures of the current window
//! (`failures`, `window_start`), how many times the subject was locked (`strikes`) and until
//! when it is locked (`locked_until`), all epoch seconds. A subject that reaches its
//! policy's failures within the window is locked for `first_lockout × 2^strikes` (at most
//! `max_lockout`): the lockout grows with every round an attacker spends. The item expires
//! (TTL) a day after its last change, which is when strikes are forgiven.
//!
//! At login and refresh a failure is a wrong credential; at register every attempt counts
//! against the address (account farming is the abuse) and a taken username against the name.
//!
//! The doors check before any expensive work (argon2, token lookups): one consistent
//! `BatchGetItem` of the subjects' items. A failure is one `UpdateItem` (two when it starts a
//! new window, one more when it locks). Counting is per subject whether or not an account by
//! that name exists, so a lockout says nothing about existence.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::dynamo::{from_item, n, s};
use super::keys::{self, Key};
use super::DynamoStore;
use crate::error::{Error, Result};

/// How long a lockout item outlives its last change: the strikes it remembers.
const MEMORY: Duration = Duration::days(1);

/// A door that takes credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Login,
    Register,
    Refresh,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Register => "register",
            Self::Refresh => "refresh",
        }
    }
}

/// Who is counted at a door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A username in its canonical (lower-case) form, whether or not it exists.
    Username(String),
    /// The caller's source IP (API Gateway's `requestContext.http.sourceIp`).
    SourceIp(String),
}

impl Subject {
    fn key(&self, door: Door) -> Key {
        match self {
            Self::Username(name) => keys::lockout(door.as_str(), &format!("user:{name}")),
            Self::SourceIp(ip) => keys::lockout(door.as_str(), &format!("ip:{ip}")),
        }
    }
}

/// When a subject is locked, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Failures within `window` that lock the subject.
    pub max_failures: u32,
    pub window: Duration,
    /// The first lockout; each later one doubles, up to `max_lockout`.
    pub first_lockout: Duration,
    pub max_lockout: Duration,
}

impl LockoutPolicy {
    /// The length of a subject's lockout after `strikes` earlier ones.
    pub fn lockout_after(&self, strikes: u32) -> Duration {
        let factor = 1_i64.checked_shl(strikes.min(30)).unwrap_or(i64::MAX);
        let seconds = self.first_lockout.num_seconds().saturating_mul(factor);
        Duration::seconds(seconds).min(self.max_lockout)
    }
}

/// The lockout item as stored.
#[derive(Debug, Deserialize)]
struct LockoutRecord {
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    strikes: u32,
    #[serde(default)]
    locked_until: i64,
}

impl DynamoStore {
    /// `RateLimited` (with the seconds until the latest lockout among them ends) if any of
    /// `subjects` is locked at `door` at `now`; otherwise each subject's failures in its
    /// current window, in the order given (so a success clears only what needs it).
    pub async fn check(
        &self,
        door: Door,
        subjects: &[Subject],
        now: DateTime<Utc>,
    ) -> Result<Vec<u32>> {
        let keys: Vec<Key> = subjects.iter().map(|subject| subject.key(door)).collect();
        let mut found: HashMap<String, LockoutRecord> = HashMap::new();
        for item in self.table.batch_get(&keys).await? {
            let pk = match item.get("pk") {
                Some(AttributeValue::S(pk)) => pk.clone(),
                _ => continue,
            };
            found.insert(pk, from_item(item)?);
        }
        let latest = found.values().map(|r| r.locked_until).max().unwrap_or(0);
        let remaining = latest - now.timestamp();
        if remaining > 0 {
            return Err(Error::RateLimited {
                retry_after_secs: remaining.unsigned_abs(),
            });
        }
        Ok(keys
            .iter()
            .map(|key| found.get(&key.pk).map_or(0, |record| record.failures))
            .collect())
    }

    /// Counts a failure of `subject` at `door`; locks it when it reaches the policy's
    /// failures within the window. Returns whether this failure locked it.
    pub async fn record_failure(
        &self,
        door: Door,
        subject: &Subject,
        policy: &LockoutPolicy,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let key = subject.key(door);
        let record = self.count_failure(&key, policy, now).await?;
        if record.failures < policy.max_failures {
            return Ok(false);
        }
        let until = now + policy.lockout_after(record.strikes);
        // Only the failure that reached the limit locks (the condition): concurrent ones
        // that also see it reached find the count reset and leave the lockout as it is.
        self.table
            .update_if(
                &key,
                "SET locked_until = :until, failures = :zero, window_start = :now, \
                 expires_at = :expires ADD strikes :one",
                "failures >= :max",
                &[],
                vec![
                    (":until", n(until.timestamp())),
                    (":zero", n(0)),
                    (":now", n(now.timestamp())),
                    (":expires", n((until + MEMORY).timestamp())),
                    (":one", n(1)),
                    (":max", n(i64::from(policy.max_failures))),
                ],
            )
            .await
    }

    /// Forgets the failures of `subject` at `door` (a successful login); strikes stay.
    pub async fn clear_failures(&self, door: Door, subject: &Subject) -> Result<()> {
        self.table
            .update_if(
                &subject.key(door),
                "SET failures = :zero",
                "attribute_exists(pk)",
                &[],
                vec![(":zero", n(0))],
            )
            .await
            .map(|_| ())
    }
}

impl DynamoStore {
    /// Adds one failure in the current window, starting a new window when the last one has
    /// passed; returns the item as it is now.
    async fn count_failure(
        &self,
        key: &Key,
        policy: &LockoutPolicy,
        now: DateTime<Utc>,
    ) -> Result<LockoutRecord> {
        let floor = (now - policy.window).timestamp();
        let expires = (now + MEMORY).timestamp();
        // Within the window: count on. A stale or missing window: start one (strikes kept).
        let count_on = || {
            (
                "ADD failures :one SET expires_at = :expires",
                "window_start >= :floor",
                vec![
                    (":one", n(1)),
                    (":expires", n(expires)),
                    (":floor", n(floor)),
                ],
            )
        };
        let start_window = || {
            (
                "SET failures = :one, window_start = :now, expires_at = :expires, entity = :entity",
                "attribute_not_exists(window_start) OR window_start < :floor",
                vec![
                    (":one", n(1)),
                    (":now", n(now.timestamp())),
                    (":expires", n(expires)),
                    (":entity", s("lockout")),
                    (":floor", n(floor)),
                ],
            )
        };
        // Two rounds: a concurrent failure may open the window between our two tries.
        for _ in 0..2 {
            for (expression, condition, values) in [count_on(), start_window()] {
                if let Some(item) = self
                    .table
                    .update_returning(key, expression, condition, values)
                    .await?
                {
                    return from_item(item);
                }
            }
        }
        Err(Error::invariant(
            "a lockout window kept changing while a failure was counted",
        ))
    }
}
