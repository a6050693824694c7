//! `resume {since}`: sends the caller what it missed while offline.
//!
//! What is missed is computed by [`shared::replay::collect`] (the same replay `GET /events`
//! answers; its doc has the rules: lag window, bounds, gap). The events go out oldest first,
//! packed into `replay` frames of at most 32 KB ([`shared::replay::replay_frames`]): 500
//! missed events are a handful of `@connections` calls rather than 500, which keeps a long
//! resume well inside the function's timeout (each call costs a round trip of tens of
//! milliseconds on AWS). Frames are posted one after another, so the order holds; the
//! closing `resumed` is the function's reply, which goes out after them.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::domain::UserId;
use shared::error::{Error, Result};
use shared::events::Event;
use shared::push::Delivery;
use shared::replay::{self, Replay};
use shared::store::RateLimitedAction;

use super::Received;
use crate::State;

/// Replay what happened since `since` (a cursor from an earlier event).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub since: String,
}

impl Resume {
    /// Spends the caller's budget, then replays; the reply is `resumed`, or nothing when the
    /// caller hung up mid-replay.
    pub async fn apply(self, state: &State, received: Received) -> Result<Option<Event>> {
        let caller = &received.caller;
        state
            .budgets
            .spend(caller.user_id, RateLimitedAction::Resume)
            .await?;
        let sent = replay_to(
            state,
            caller.user_id,
            &caller.connection_id,
            &self.since,
            received.request_id.as_deref(),
            received.at,
        )
        .await?;
        let Resumed::Sent(replay) = sent else {
            return Ok(None);
        };
        tracing::info!(
            replayed = replay.replayed,
            gap = replay.gap,
            feed_new_posts = replay.feed_new_posts,
            "resumed"
        );
        Ok(Some(replay.resumed(received.request_id, state.clock.now())))
    }
}
/// What a resume sent.
#[derive(Debug)]
enum Resumed {
    /// Every frame went out; the reply is `resumed`.
    Sent(Replay),
    /// The caller hung up mid-replay: nobody to reply to.
    CallerGone,
}

/// Collects what `user` missed since `since` and posts it to `connection_id` in `replay`
/// frames. A frame that cannot be delivered fails the resume: a silent hole in the replay
/// would go unnoticed, an error makes the client resume again.
async fn replay_to(
    state: &State,
    user: UserId,
    connection_id: &str,
    since: &str,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Resumed> {
    let mut replay = replay::collect(&state.store, user, since, now).await?;
    let events = std::mem::take(&mut replay.events);
    for frame in replay::replay_frames(events, request_id, now)? {
        match state.push.post(connection_id, &frame).await? {
            Delivery::Delivered => {}
            Delivery::Gone => return Ok(Resumed::CallerGone),
            Delivery::Failed(error) => {
                return Err(Error::internal(
                    "replaying missed events to the caller",
                    error,
                ))
            }
        }
    }
    Ok(Resumed::Sent(replay))
}
