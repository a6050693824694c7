//! Who may subscribe to which channel.
//!
//! - `post:{post_id}`: whoever may view the post — the one visibility rule of
//!   `shared::store::social::visibility`: a missing post, or one hidden by a block either
//!   way, is `not_found`; a private author the caller does not follow is `forbidden`.
//! - `presence:{user_id}`: a mutual follow of a user who shows their presence; a missing
//!   (or blocked either way) user is `not_found`, anyone else `forbidden`.

use shared::domain::UserId;
use shared::error::{Error, Result};
use shared::events::Channel;
use shared::store::social::visibility;

use crate::State;

/// `Ok` if `viewer` may subscribe to `channel`.
pub async fn authorize(state: &State, viewer: UserId, channel: Channel) -> Result<()> {
    match channel {
        Channel::Post(post_id) => {
            let post = state
                .posts
                .get_post(post_id)
                .await?
                .ok_or_else(|| Error::not_found("post not found"))?;
            visibility(
                state.users.as_ref(),
                state.social.as_ref(),
                viewer,
                post.author_id,
            )
            .await?
            .require_visible("post")?;
            Ok(())
        }
        Channel::Presence(user) => {
            if user == viewer {
                return Err(Error::validation(
                    "your own presence is not a channel; subscribe to presence:{user_id} of a mutual follow",
                ));
            }
            let (profile, relationship) = futures::try_join!(
                state.users.get_user(user),
                state.social.relationship(viewer, user)
            )?;
            let profile = profile.ok_or_else(|| Error::not_found("user not found"))?;
            if relationship.blocking || relationship.blocked_by {
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
