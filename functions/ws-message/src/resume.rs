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
use shared::domain::UserId;
use shared::error::{Error, Result};
use shared::push::Delivery;
use shared::replay::{self, Replay, ReplaySources};

use crate::State;

/// What a resume sent.
#[derive(Debug)]
pub enum Resumed {
    /// Every frame went out; the reply is `resumed`.
    Sent(Replay),
    /// The caller hung up mid-replay: nobody to reply to.
    CallerGone,
}

/// Collects what `user` missed since `since` and posts it to `connection_id` in `replay`
/// frames. A frame that cannot be delivered fails the resume: a silent hole in the replay
/// would go unnoticed, an error makes the client resume again.
pub async fn replay_to(
    state: &State,
    user: UserId,
    connection_id: &str,
    since: &str,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Resumed> {
    let sources = ReplaySources {
        notifications: state.notifications.as_ref(),
        messages: state.messages.as_ref(),
        feeds: state.feeds.as_ref(),
        social: state.social.as_ref(),
    };
    let mut replay = replay::collect(sources, user, since, now).await?;
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
