//! `typing {to, state}`: relayed straight to the recipient's open connections as
//! `user_typing {from, state, expires_at}` through the management API — never stored, never
//! through the stream.
//!
//! Order of checks: the throttle first (one conditional write of the caller's connection
//! item, `ConnectionStore::claim_typing_slot`), so a client that floods typing frames costs
//! one refused write each and nothing more; then who may type to whom — the same rule as who may message whom: no block either way, and a
//! conversation must be possible without a request (the recipient is public, follows the
//! caller, or has accepted the thread; `shared::store::messages::message_status`).

use chrono::Duration;
use shared::domain::{Connection, MessageStatus, UserId};
use shared::error::{Error, Result};
use shared::events::{Event, TypingState};
use shared::store::messages::message_status;

use crate::State;

/// At most one typing frame per connection per this interval.
pub const TYPING_INTERVAL: Duration = Duration::seconds(1);

/// Relays the caller's typing state to `to`; returns how many connections received it.
pub async fn relay(
    state: &State,
    caller: &Connection,
    to: UserId,
    typing: TypingState,
) -> Result<usize> {
    if to == caller.user_id {
        return Err(Error::validation("you cannot send typing to yourself"));
    }
    let now = state.clock.now();
    if !state
        .connections
        .claim_typing_slot(&caller.connection_id, now, TYPING_INTERVAL)
        .await?
    {
        return Err(Error::RateLimited {
            retry_after_secs: TYPING_INTERVAL.num_seconds().unsigned_abs(),
        });
    }
    authorize(state, caller.user_id, to).await?;
    let recipients = state.connections.connections_of_user(to).await?;
    let event = Event::user_typing(caller.user_id, typing, now);
    // Best effort: a recipient connection that fails is logged by the push tier, and
    // typing is never worth an error to the caller.
    let report = state.push.deliver(&event, &recipients).await?;
    Ok(report.delivered)
}

/// `Ok` if `from` may type to `to`.
async fn authorize(state: &State, from: UserId, to: UserId) -> Result<()> {
    let (recipient, relationship) = futures::try_join!(
        state.users.get_user(to),
        state.social.relationship(from, to)
    )?;
    let recipient = recipient.ok_or_else(|| Error::not_found("user not found"))?;
    if relationship.blocking || relationship.blocked_by {
        return Err(Error::forbidden("you cannot send typing to this user"));
    }
    // Only a private recipient who does not follow the caller needs the thread's state.
    let needs_thread = recipient.is_private && !relationship.followed_by;
    let accepted = needs_thread && state.messages.thread_accepted(to, from).await?;
    if message_status(recipient.is_private, relationship.followed_by, accepted)
        == MessageStatus::Requested
    {
        return Err(Error::forbidden(
            "this user has not accepted a conversation with you",
        ));
    }
    Ok(())
}
