//! Per-user budgets: fixed one-minute windows counted atomically in DynamoDB.
//!
//! Each (user, action, window) is one item whose `count` is incremented with a condition
//! that it is below the budget, so concurrent Lambdas never overshoot. Window items carry
//! `expires_at`, so TTL cleans them up.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::dynamo::{key_map, n, s};
use super::keys;
use super::DynamoStore;
use crate::clock::Clock;
use crate::config::RateLimits;
use crate::domain::UserId;
use crate::error::{Error, Result};

/// Length of a rate-limit window.
pub const WINDOW_SECONDS: i64 = 60;

/// Actions that have a per-user budget (`crate::config::RateLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitedAction {
    Post,
    Comment,
    Message,
    Follow,
    /// A like or an unlike.
    Like,
    /// A block or an unblock.
    Block,
    /// Marking one or all notifications read.
    MarkRead,
    ProfileEdit,
    /// A WebSocket `subscribe`.
    Subscribe,
    /// A WebSocket `resume`.
    Resume,
}

impl RateLimitedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Comment => "comment",
            Self::Message => "message",
            Self::Follow => "follow",
            Self::Like => "like",
            Self::Block => "block",
            Self::MarkRead => "mark_read",
            Self::ProfileEdit => "profile_edit",
            Self::Subscribe => "subscribe",
            Self::Resume => "resume",
        }
    }

    /// The budget for this action from the configured limits.
    pub fn budget(self, limits: &crate::config::RateLimits) -> u32 {
        match self {
            Self::Post => limits.posts_per_minute,
            Self::Comment => limits.comments_per_minute,
            Self::Message => limits.messages_per_minute,
            Self::Follow => limits.follows_per_minute,
            Self::Like => limits.likes_per_minute,
            Self::Block => limits.blocks_per_minute,
            Self::MarkRead => limits.mark_reads_per_minute,
            Self::ProfileEdit => limits.profile_edits_per_minute,
            Self::Subscribe => limits.subscribes_per_minute,
            Self::Resume => limits.resumes_per_minute,
        }
    }
}

/// A function's per-user budgets: the limiter, the configured limits and the clock, so a
/// handler spends one with `budgets.spend(user, action)` and nothing else.
#[derive(Clone)]
pub struct Budgets {
    limiter: Arc<DynamoStore>,
    limits: RateLimits,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Budgets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budgets")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Budgets {
    pub fn new(limiter: Arc<DynamoStore>, limits: RateLimits, clock: Arc<dyn Clock>) -> Self {
        Self {
            limiter,
            limits,
            clock,
        }
    }

    /// Spends one unit of `user`'s per-minute budget for `action`; `RateLimited` (429 with
    /// Retry-After, or a `rate_limited` frame) once the window's budget is spent.
    pub async fn spend(&self, user: UserId, action: RateLimitedAction) -> Result<()> {
        let budget = action.budget(&self.limits);
        self.limiter
            .hit(user, action, budget, self.clock.now())
            .await
    }
}

impl DynamoStore {
    /// Counts one `action` by `user` at `now`; `RateLimited` (with the seconds until the
    /// window ends) once the budget of the current window is spent.
    pub async fn hit(
        &self,
        user: UserId,
        action: RateLimitedAction,
        budget: u32,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let epoch = now.timestamp();
        let window_start = epoch - epoch.rem_euclid(WINDOW_SECONDS);
        let retry_after = (window_start + WINDOW_SECONDS - epoch).max(1) as u64;
        if budget == 0 {
            return Err(Error::RateLimited {
                retry_after_secs: retry_after,
            });
        }
        let result = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key_map(&keys::rate_window(
                user,
                action.as_str(),
                window_start,
            ))))
            .update_expression("ADD #count :one SET expires_at = :expires, entity = :entity")
            .condition_expression("attribute_not_exists(#count) OR #count < :budget")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":budget", n(i64::from(budget)))
            .expression_attribute_values(":expires", n(window_start + 2 * WINDOW_SECONDS))
            .expression_attribute_values(":entity", s("rate_window"))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(Error::RateLimited {
                    retry_after_secs: retry_after,
                })
            }
            Err(error) => Err(Error::internal("counting rate limit", error)),
        }
    }
}
