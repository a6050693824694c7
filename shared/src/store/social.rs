//! The social graph: follows (with counters), follow requests to private accounts, blocks,
//! and the visibility rule every content read applies.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::page::{Page, PageRequest};
use super::users::UserStore;
use crate::domain::{Block, Follow, FollowRequest, Relationship, User, UserId};
use crate::error::{Error, Result};

/// Most accounts one user may follow (bounds the fan-out-on-read feed).
pub const MAX_FOLLOWING: usize = 5000;

#[async_trait]
pub trait SocialStore: Send + Sync {
    /// How `viewer` and `other` relate, both ways, in one round trip.
    async fn relationship(&self, viewer: UserId, other: UserId) -> Result<Relationship>;

    /// `follower` now follows `followee`: the follow item, both counters and a `follow`
    /// notification in one transaction. `Ok(false)` if it already existed (idempotent).
    async fn follow(&self, follower: UserId, followee: UserId, now: DateTime<Utc>) -> Result<bool>;

    /// A follow request to a private account, with a `follow_request` notification.
    /// `Ok(false)` if it was already pending.
    async fn request_follow(&self, requester: UserId, target: UserId, now: DateTime<Utc>) -> Result<bool>;

    /// Removes the follow and decrements both counters. `Ok(false)` if there was none.
    async fn unfollow(&self, follower: UserId, followee: UserId) -> Result<bool>;

    /// Withdraws a pending request. `Ok(false)` if there was none.
    async fn cancel_follow_request(&self, requester: UserId, target: UserId) -> Result<bool>;

    /// `target` accepts `requester`: the request becomes a follow (counters, and a
    /// `follow_accepted` notification to the requester). `NotFound` if no request is pending.
    async fn accept_follow_request(&self, target: UserId, requester: UserId, now: DateTime<Utc>) -> Result<()>;

    /// `target` rejects `requester`. `NotFound` if no request is pending.
    async fn reject_follow_request(&self, target: UserId, requester: UserId) -> Result<()>;

    /// Followers of `user` (GSI 1 inverse entries).
    async fn followers(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>>;

    /// Accounts `user` follows.
    async fn following(&self, user: UserId, page: &PageRequest) -> Result<Page<Follow>>;

    /// Ids of every account `user` follows (at most `MAX_FOLLOWING`).
    async fn following_ids(&self, user: UserId) -> Result<Vec<UserId>>;

    /// Ids of `user`'s followers, up to `max` (fan-out of the push tier).
    async fn follower_ids(&self, user: UserId, max: usize) -> Result<Vec<UserId>>;

    /// Pending requests to `target`, oldest first.
    async fn follow_requests(&self, target: UserId, page: &PageRequest) -> Result<Page<FollowRequest>>;

    /// `blocker` blocks `blocked`: the block item plus removal of follows both ways (with
    /// exact counters) and of pending follow requests both ways. Idempotent.
    async fn block(&self, blocker: UserId, blocked: UserId, now: DateTime<Utc>) -> Result<()>;

    /// Removes a block. Idempotent.
    async fn unblock(&self, blocker: UserId, blocked: UserId) -> Result<()>;

    /// Accounts `blocker` blocks.
    async fn blocks(&self, blocker: UserId, page: &PageRequest) -> Result<Page<Block>>;

    /// Every user `user` blocks or is blocked by (to filter search results and feeds).
    async fn block_set(&self, user: UserId) -> Result<HashSet<UserId>>;
}

/// Whether `viewer` may see `author`'s profile-bound content.
#[derive(Debug, Clone, PartialEq)]
pub enum Visibility {
    /// May see; carries the author.
    Visible(User),
    /// A private account the viewer does not follow (403 for lists, 404 for single posts).
    Private(User),
    /// The author does not exist, or a block stands between them (always 404).
    Hidden,
}

/// The one visibility rule: blocks hide everything both ways; a private account's content
/// is for the account itself and its approved followers.
pub async fn visibility(
    users: &dyn UserStore,
    social: &dyn SocialStore,
    viewer: UserId,
    author: UserId,
) -> Result<Visibility> {
    let Some(user) = users.get_user(author).await? else {
        return Ok(Visibility::Hidden);
    };
    if viewer == author {
        return Ok(Visibility::Visible(user));
    }
    let relationship = social.relationship(viewer, author).await?;
    if relationship.blocking || relationship.blocked_by {
        return Ok(Visibility::Hidden);
    }
    if user.is_private && !relationship.following {
        return Ok(Visibility::Private(user));
    }
    Ok(Visibility::Visible(user))
}

impl Visibility {
    /// The author if visible; `Forbidden` for a private account, `NotFound` when hidden.
    pub fn require_visible(self, what: &str) -> Result<User> {
        match self {
            Self::Visible(user) => Ok(user),
            Self::Private(_) => Err(Error::forbidden(format!(
                "{what} belongs to a private account you do not follow"
            ))),
            Self::Hidden => Err(Error::not_found(format!("{what} not found"))),
        }
    }
}
