//! `typing {to, state}`: relayed straight to the recipient's open connections as
//! `user_typing {from, state, expires_at}` through the management API — never written to
//! DynamoDB, never through the stream.
//!
//! Order of checks: the per-connection limit first ([`TypingLimiter`], in memory, so a
//! client that floods typing frames costs one map lookup each and no DynamoDB call); then
//! who may type to whom — the same rule as who may message whom: no block either way, and a
//! conversation must be possible without a request (the recipient is public, follows the
//! caller, or has accepted the thread; `shared::store::message_status`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use shared::domain::{Connection, MessageStatus, UserId};
use shared::error::{Error, Result};
use shared::events::{Event, TypingState};
use shared::store::message_status;
use shared::visibility;

use crate::State;

/// Tell `to` that the caller started or stopped typing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typing {
    pub to: UserId,
    pub state: TypingState,
}

impl Typing {
    /// Relays the typing state; there is no reply.
    pub async fn apply(self, state: &State, caller: &Connection) -> Result<()> {
        let delivered = relay(state, caller, self.to, self.state).await?;
        tracing::debug!(to = %self.to, delivered, "typing relayed");
        Ok(())
    }
}

/// At most one typing frame per connection per this interval.
pub const TYPING_INTERVAL: Duration = Duration::seconds(1);

/// The "at most one typing frame per second per connection" limit, held in the memory of
/// one warm Lambda container: the time of the last accepted frame of each connection id.
///
/// **Why in memory.** Typing must never be written to DynamoDB: a conditional update of
/// the connection item (the obvious cross-container limiter) is a write per frame AND a
/// stream `MODIFY` record per frame, i.e. typing through the stream after all. So the limit
/// lives here, and nothing about typing is stored anywhere.
///
/// **The trade-off.** The limit is per container. API Gateway may hand one connection's
/// frames to several warm containers of `ws-message`; each has its own limiter, so such a
/// connection can get at most one frame per second *per container it lands on* relayed —
/// exceeding 1/s by at most the number of those containers, never unboundedly (each is
/// still rate limited). The JavaScript client (`clients/js/`) itself sends at most one
/// typing frame per second, so only a misbehaving client ever sees the difference, and a
/// `user_typing` is a small, idempotent, 5-second hint.
///
/// **Bounded memory.** Entries older than the interval no longer refuse anything, so they
/// are pruned — at most once per interval, so each frame stays O(1) amortised. The map
/// therefore holds only connections accepted within the last two intervals on this
/// container, however many connections it has seen.
///
/// Time is passed in (`now`, from the state's injectable [`shared::clock::Clock`]), so
/// tests move a clock instead of sleeping. A clock that steps backwards (wall time is
/// corrected) accepts the frame rather than refusing the connection until time catches up.
pub struct TypingLimiter {
    interval: Duration,
    inner: Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    /// Connection id → time of its last accepted typing frame.
    last_accepted: HashMap<String, DateTime<Utc>>,
    /// When stale entries were last pruned (`None`: never).
    pruned_at: Option<DateTime<Utc>>,
}

impl TypingLimiter {
    /// A limiter accepting one frame per `interval` per connection.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            inner: Mutex::new(LimiterState::default()),
        }
    }

    /// Takes `connection_id`'s slot at `now`: `true` if its previous accepted frame is at
    /// least the interval old (or there is none), `false` if it is too soon. A refused
    /// frame does not move the window.
    pub fn try_acquire(&self, connection_id: &str, now: DateTime<Utc>) -> bool {
        let mut state = self.lock();
        if !matches!(state.pruned_at, Some(pruned_at) if self.is_recent(pruned_at, now)) {
            state
                .last_accepted
                .retain(|_, accepted_at| self.is_recent(*accepted_at, now));
            state.pruned_at = Some(now);
        }
        match state.last_accepted.get_mut(connection_id) {
            Some(accepted_at) if self.is_recent(*accepted_at, now) => false,
            Some(accepted_at) => {
                *accepted_at = now;
                true
            }
            None => {
                state.last_accepted.insert(connection_id.to_owned(), now);
                true
            }
        }
    }

    /// Number of connections currently remembered (for tests of the bound).
    pub fn tracked_connections(&self) -> usize {
        self.lock().last_accepted.len()
    }

    /// Whether `then` is less than one interval before `now` (a `then` in the future —
    /// the clock stepped back — is not recent).
    fn is_recent(&self, then: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        then <= now && now - then < self.interval
    }

    fn lock(&self) -> MutexGuard<'_, LimiterState> {
        // The map is consistent after every statement, so a panic elsewhere while holding
        // the lock leaves nothing to repair.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for TypingLimiter {
    /// The size, not the connection ids.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypingLimiter")
            .field("interval", &self.interval)
            .field("tracked_connections", &self.tracked_connections())
            .finish()
    }
}

impl Default for TypingLimiter {
    fn default() -> Self {
        Self::new(TYPING_INTERVAL)
    }
}

/// Relays the caller's typing state to `to`; returns how many connections received it.
async fn relay(
    state: &State,
    caller: &Connection,
    to: UserId,
    typing: TypingState,
) -> Result<usize> {
    if to == caller.user_id {
        return Err(Error::validation("you cannot send typing to yourself"));
    }
    let now = state.clock.now();
    if !state.typing.try_acquire(&caller.connection_id, now) {
        return Err(Error::RateLimited {
            retry_after_secs: TYPING_INTERVAL.num_seconds().unsigned_abs(),
        });
    }
    authorize(state, caller.user_id, to).await?;
    let recipients = state.store.connections_of_user(to).await?;
    let event = Event::user_typing(caller.user_id, typing, now);
    // Best effort: a recipient connection that fails is logged by the push tier, and
    // typing is never worth an error to the caller.
    let report = state.push.deliver(&event, &recipients).await?;
    Ok(report.delivered)
}

/// `Ok` if `from` may type to `to`.
async fn authorize(state: &State, from: UserId, to: UserId) -> Result<()> {
    let (recipient, relationship) =
        futures::try_join!(state.store.get_user(to), state.store.relationship(from, to))?;
    let recipient = recipient.ok_or_else(|| Error::not_found("user not found"))?;
    if visibility::blocked_either_way(&relationship) {
        return Err(Error::forbidden("you cannot send typing to this user"));
    }
    // Only a private recipient who does not follow the caller needs the thread's state.
    let needs_thread = recipient.is_private && !relationship.followed_by;
    let accepted = needs_thread && state.store.thread_accepted(to, from).await?;
    if message_status(recipient.is_private, relationship.followed_by, accepted)
        == MessageStatus::Requested
    {
        return Err(Error::forbidden(
            "this user has not accepted a conversation with you",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_second_frame_within_the_interval_is_refused_and_does_not_move_the_window() {
        let limiter = TypingLimiter::new(TYPING_INTERVAL);
        assert!(limiter.try_acquire("c1", start()));
        assert!(!limiter.try_acquire("c1", start()));
        assert!(!limiter.try_acquire("c1", start() + Duration::milliseconds(999)));
        assert!(limiter.try_acquire("c1", start() + TYPING_INTERVAL));
        assert!(!limiter.try_acquire("c1", start() + Duration::milliseconds(1999)));
    }

    #[test]
    fn connections_are_limited_independently() {
        let limiter = TypingLimiter::new(TYPING_INTERVAL);
        assert!(limiter.try_acquire("c1", start()));
        assert!(limiter.try_acquire("c2", start()));
        assert!(!limiter.try_acquire("c1", start()));
        assert!(!limiter.try_acquire("c2", start()));
    }

    #[test]
    fn stale_entries_are_pruned_so_the_map_stays_bounded() {
        let limiter = TypingLimiter::new(TYPING_INTERVAL);
        for i in 0..1000 {
            assert!(limiter.try_acquire(&format!("c{i}"), start()));
        }
        assert_eq!(limiter.tracked_connections(), 1000);

        // One interval later none of them limits anything: the next frame prunes them all.
        let later = start() + TYPING_INTERVAL;
        assert!(limiter.try_acquire("newcomer", later));
        assert_eq!(limiter.tracked_connections(), 1);

        // Steady traffic of fresh connections keeps at most two intervals' worth.
        for second in 1..=10 {
            let now = later + Duration::seconds(second);
            for i in 0..100 {
                assert!(limiter.try_acquire(&format!("s{second}-{i}"), now));
            }
            assert!(limiter.tracked_connections() <= 200);
        }
    }

    #[test]
    fn a_clock_stepping_back_accepts_instead_of_locking_the_connection_out() {
        let limiter = TypingLimiter::new(TYPING_INTERVAL);
        assert!(limiter.try_acquire("c1", start()));
        let corrected = start() - Duration::hours(1);
        assert!(limiter.try_acquire("c1", corrected));
        assert!(!limiter.try_acquire("c1", corrected + Duration::milliseconds(500)));
        assert_eq!(limiter.tracked_connections(), 1);
    }
}
