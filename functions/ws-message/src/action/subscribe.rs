//! `subscribe {channel}`: joins a room, after the caller's per-minute budget and the check
//! of who may subscribe to which channel:
//!
//! - `post:{post_id}`: whoever may view the post — the post rule of `shared::visibility`: a
//!   missing post, one hidden by a block either way, or one of a private author the caller
//!   does not follow, is `not_found` (as on every REST verb). The room's events are checked
//!   again when they are sent (a block or a switch to private after subscribing).
//! - `presence:{user_id}`: a mutual follow of a user who shows their presence; a missing
//!   (or blocked either way) user is `not_found`, anyone else `forbidden`.

use serde::Deserialize;
use shared::domain::{Subscription, UserId};
use shared::error::{Error, Result};
use shared::events::{Channel, Event, EventBody};
use shared::store::RateLimitedAction;
use shared::visibility;

use super::Received;
use crate::State;

/// Join `post:{post_id}` or `presence:{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    pub channel: String,
}

impl Subscribe {
    /// Stores the membership; the reply is `subscribed {channel}`.
    pub async fn apply(self, state: &State, received: Received) -> Result<Event> {
        let caller = &received.caller;
        let channel = Channel::parse(&self.channel)?;
        state
            .budgets
            .spend(caller.user_id, RateLimitedAction::Subscribe)
            .await?;
        authorize(state, caller.user_id, channel).await?;
        let subscription = Subscription {
            channel: channel.to_string(),
            connection_id: caller.connection_id.clone(),
            user_id: caller.user_id,
        };
        state
            .store
            .subscribe(&subscription, caller.expires_at)
            .await?;
        Ok(Event::ephemeral(
            EventBody::Subscribed {
                channel: subscription.channel,
                request_id: received.request_id,
            },
            received.at,
        ))
    }
}

/// `Ok` if `viewer` may subscribe to `channel`.
async fn authorize(state: &State, viewer: UserId, channel: Channel) -> Result<()> {
    match channel {
        Channel::Post(post_id) => {
            visibility::post(&state.store, viewer, post_id).await?;
            Ok(())
        }
        Channel::Presence(user) => {
            if user == viewer {
                return Err(Error::validation(
                    "your own presence is not a channel; subscribe to presence:{user_id} of a mutual follow",
                ));
            }
            let (profile, relationship) = futures::try_join!(
                state.store.get_user(user),
                state.store.relationship(viewer, user)
            )?;
            let profile = profile.ok_or_else(|| Error::not_found("user not found"))?;
            if visibility::blocked_either_way(&relationship) {
                return Err(Error::not_found("user not found"));
            }
            if !(relationship.following && relationship.followed_by) {
                return Err(Error::forbidden(
                    "presence is only shared between mutual follows",
                ));
            }
            if !profile.show_presence {
                return Err(Error::forbidden("this user does not share their presence"));
            }
            Ok(())
        }
    }
}
