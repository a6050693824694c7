//! Keeping materialized home feeds up to date (the write side of `store::feed`).
//!
//! The stream router turns the records that change a feed into [`FeedTask`]s and queues
//! them (one SQS message each); the push worker carries them out with [`FeedMaterializer`],
//! so no REST response and no stream shard waits on a write per follower.
//!
//! | record | task | what it writes |
//! |---|---|---|
//! | post insert | `distribute` | an entry in the author's feed and in each follower's (≤ F/25 + 1 `BatchWriteItem`s); an author past `FEED_MATERIALIZE_MAX_FOLLOWERS` is promoted instead: a marker in each follower's feed, then the profile flag, once |
//! | post remove | `withdraw` | the entries go again (a deleted post also stops resolving at read) |
//! | follow insert | `backfill` | the author's latest `FEED_BACKFILL_POSTS` posts into the new follower's feed, or a marker for a merged author |
//! | follow remove (unfollow, block) | `prune` | the author's entries and marker leave the former follower's feed (the read already hides them: it checks the follow) |
//!
//! Every task is idempotent (puts and deletes of fixed keys), so a redelivered message does
//! no harm; tasks of one item may run in any order because the read checks the truth (the
//! post exists, the follow exists) rather than trusting the entries.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::config::FeedLimits;
use crate::domain::{PostId, UserId};
use crate::error::Result;
use crate::store::feed::{FeedMode, FeedPost};
use crate::store::page::{PageRequest, MAX_LIMIT};
use crate::store::social::FollowerIds;
use crate::store::DynamoStore;

/// Most posts of one author a rebuild writes into one feed (the entry TTL bounds it too).
pub const REBUILD_MAX_POSTS_PER_AUTHOR: usize = 1000;

/// Tasks (or one author's backfills) of a queue message carried out at once.
pub const TASKS_IN_FLIGHT: usize = 8;

/// Followed authors a rebuild reads at once.
const REBUILD_AUTHORS_IN_FLIGHT: usize = 16;

/// One change to materialized feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum FeedTask {
    /// A new post: into its author's and followers' feeds.
    Distribute {
        post_id: PostId,
        author_id: UserId,
        #[serde(with = "crate::domain::rfc3339")]
        created_at: DateTime<Utc>,
    },
    /// A deleted post: out of the feeds it was written to.
    Withdraw { post_id: PostId, author_id: UserId },
    /// `viewer` started following `author`.
    Backfill { viewer: UserId, author: UserId },
    /// `viewer` no longer follows `author` (unfollow or block).
    Prune { viewer: UserId, author: UserId },
}

impl FeedTask {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Distribute { .. } => "distribute",
            Self::Withdraw { .. } => "withdraw",
            Self::Backfill { .. } => "backfill",
            Self::Prune { .. } => "prune",
        }
    }
}

/// What carrying out a task wrote, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// Feed entries written or removed.
    pub entries: usize,
    /// Large-followee markers written or removed.
    pub markers: usize,
    /// The task promoted the author to the merged feed.
    pub promoted: bool,
}

/// Carries out [`FeedTask`]s against the store.
#[derive(Clone)]
pub struct FeedMaterializer {
    pub store: Arc<DynamoStore>,
    pub limits: FeedLimits,
}

impl std::fmt::Debug for FeedMaterializer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedMaterializer")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl FeedMaterializer {
    /// The materializer over one store.
    pub fn new(store: Arc<DynamoStore>, limits: FeedLimits) -> Self {
        Self { store, limits }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(task = task.kind()))]
    pub async fn apply(&self, task: &FeedTask) -> Result<FeedOutcome> {
        let outcome = match *task {
            FeedTask::Distribute {
                post_id,
                author_id,
                created_at,
            } => {
                let post = FeedPost {
                    post_id,
                    author_id,
                    created_at,
                };
                self.distribute(&post).await?
            }
            FeedTask::Withdraw { post_id, author_id } => self.withdraw(post_id, author_id).await?,
            FeedTask::Backfill { viewer, author } => self.backfill_many(author, &[viewer]).await?,
            FeedTask::Prune { viewer, author } => self.prune(viewer, author).await?,
        };
        tracing::debug!(
            task = task.kind(),
            entries = outcome.entries,
            markers = outcome.markers,
            promoted = outcome.promoted,
            "feed task done"
        );
        Ok(outcome)
    }

    /// Carries out the tasks of one queue message: the backfills of one author together
    /// (one mode read, one timeline read, one follow check per 100 new followers, the
    /// entries in shared batches), every other task on its own; at most
    /// [`TASKS_IN_FLIGHT`] at once.
    #[tracing::instrument(level = "debug", skip_all, fields(tasks = tasks.len()))]
    pub async fn apply_all(&self, tasks: &[FeedTask]) -> Result<FeedOutcome> {
        let mut backfills: HashMap<UserId, Vec<UserId>> = HashMap::new();
        let mut others = Vec::new();
        for task in tasks {
            match *task {
                FeedTask::Backfill { viewer, author } => {
                    backfills.entry(author).or_default().push(viewer);
                }
                _ => others.push(task.clone()),
            }
        }
        let backfilled = futures::stream::iter(backfills)
            .map(|(author, viewers)| async move { self.backfill_many(author, &viewers).await })
            .buffer_unordered(TASKS_IN_FLIGHT);
        let applied = futures::stream::iter(others)
            .map(|task| async move { self.apply(&task).await })
            .buffer_unordered(TASKS_IN_FLIGHT);
        let outcomes: Vec<FeedOutcome> = futures::stream::select(backfilled, applied)
            .try_collect()
            .await?;
        Ok(outcomes
            .into_iter()
            .fold(FeedOutcome::default(), |total, one| FeedOutcome {
                entries: total.entries + one.entries,
                markers: total.markers + one.markers,
                promoted: total.promoted || one.promoted,
            }))
    }

    /// New follows of one author: the author's latest posts (or a marker) into each new
    /// follower's feed, for those who still follow.
    async fn backfill_many(&self, author: UserId, viewers: &[UserId]) -> Result<FeedOutcome> {
        let (still_following, mode) = futures::try_join!(
            self.store.followers_among(author, viewers),
            self.store.feed_mode(author),
        )?;
        let mut viewers: Vec<UserId> = viewers
            .iter()
            .copied()
            .filter(|viewer| still_following.contains(viewer))
            .collect();
        viewers.sort_unstable();
        viewers.dedup();
        if viewers.is_empty() {
            return Ok(FeedOutcome::default());
        }
        if mode == FeedMode::Merged {
            let markers: Vec<(UserId, UserId)> = viewers.iter().map(|v| (*v, author)).collect();
            self.store.mark_large_followees(&markers).await?;
            return Ok(FeedOutcome {
                markers: markers.len(),
                ..FeedOutcome::default()
            });
        }
        let latest = self
            .store
            .author_posts(
                author,
                &PageRequest::first(self.limits.backfill_posts.max(1)),
            )
            .await?;
        let entries: Vec<(UserId, FeedPost)> = viewers
            .iter()
            .flat_map(|viewer| {
                latest
                    .items
                    .iter()
                    .map(|post| (*viewer, FeedPost::from(post)))
            })
            .collect();
        self.store
            .add_entries(&entries, self.limits.entry_ttl_days)
            .await?;
        Ok(FeedOutcome {
            entries: entries.len(),
            ..FeedOutcome::default()
        })
    }

    /// The author's feed mode and followers up to the materialization bound (`truncated`
    /// when the author has more), read together.
    async fn reach(&self, author: UserId) -> Result<(FeedMode, FollowerIds)> {
        futures::try_join!(
            self.store.feed_mode(author),
            self.store
                .follower_ids(author, self.limits.materialize_max_followers),
        )
    }

    /// The post goes into its author's feed and, for an ordinary author, each follower's;
    /// an author past the bound is promoted instead.
    async fn distribute(&self, post: &FeedPost) -> Result<FeedOutcome> {
        let author = post.author_id;
        let (mode, followers) = self.reach(author).await?;
        let mut outcome = FeedOutcome::default();
        let mut viewers = vec![author];
        match mode {
            FeedMode::Merged => {}
            FeedMode::Materialized if followers.truncated => {
                outcome.markers = self.promote(author).await?;
                outcome.promoted = true;
            }
            FeedMode::Materialized => viewers.extend(followers.ids),
        }
        let entries: Vec<(UserId, FeedPost)> = viewers.iter().map(|v| (*v, *post)).collect();
        self.store
            .add_entries(&entries, self.limits.entry_ttl_days)
            .await?;
        outcome.entries = entries.len();
        Ok(outcome)
    }

    /// Promotes `author` to the merged feed: a marker in every follower's feed first, then
    /// the profile flag, so from the first post that is no longer materialized every
    /// follower already merges the author's timeline. Returns the markers written.
    async fn promote(&self, author: UserId) -> Result<usize> {
        let followers = self.store.follower_ids(author, usize::MAX).await?;
        let follows: Vec<(UserId, UserId)> = followers.ids.iter().map(|f| (*f, author)).collect();
        self.store.mark_large_followees(&follows).await?;
        self.store.set_feed_merged(author).await?;
        tracing::info!(%author, followers = followers.ids.len(), "author promoted to the merged feed");
        Ok(followers.ids.len())
    }

    /// The post leaves the feeds it was written to.
    async fn withdraw(&self, post: PostId, author: UserId) -> Result<FeedOutcome> {
        let (mode, followers) = self.reach(author).await?;
        let mut viewers = vec![author];
        // A merged author's posts were only in the author's own feed (entries written before
        // the promotion stop resolving and expire).
        if mode == FeedMode::Materialized && !followers.truncated {
            viewers.extend(followers.ids);
        }
        self.store.remove_feed_entries(post, &viewers).await?;
        Ok(FeedOutcome {
            entries: viewers.len(),
            ..FeedOutcome::default()
        })
    }

    /// An unfollow: the author leaves the viewer's feed, unless the viewer follows them
    /// again by now (tasks arrive in any order; the backfill of that new follow may already
    /// have run).
    async fn prune(&self, viewer: UserId, author: UserId) -> Result<FeedOutcome> {
        if self.store.relationship(viewer, author).await?.following {
            return Ok(FeedOutcome::default());
        }
        Ok(FeedOutcome {
            entries: self.store.prune_feed_author(viewer, author).await?,
            ..FeedOutcome::default()
        })
    }
}

/// Building feeds from the follow graph: the migration (`ripple-admin backfill-feeds`) and
/// tests that write through REST without a stream pipeline.
impl FeedMaterializer {
    /// Promotes `author` to the merged feed if they have more followers than the bound
    /// (no markers: [`FeedMaterializer::rebuild_feed`] of each follower writes them).
    /// Returns whether the author is merged now.
    pub async fn promote_if_large(&self, author: UserId) -> Result<bool> {
        let (mode, followers) = self.reach(author).await?;
        if mode == FeedMode::Merged {
            return Ok(true);
        }
        if followers.truncated {
            self.store.set_feed_merged(author).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes `viewer`'s feed as the tasks would have: their own posts and every followed
    /// ordinary author's posts younger than the entry TTL (at most
    /// [`REBUILD_MAX_POSTS_PER_AUTHOR`] each), and a marker per followed merged author.
    /// Idempotent: entries and markers are puts of fixed keys.
    pub async fn rebuild_feed(&self, viewer: UserId, now: DateTime<Utc>) -> Result<FeedOutcome> {
        let horizon = now - chrono::Duration::days(i64::from(self.limits.entry_ttl_days));
        let mut authors = self.store.following_ids(viewer).await?;
        authors.retain(|author| *author != viewer);
        let own = self.recent_posts(viewer, horizon).await?;
        let per_author: Vec<(UserId, FeedMode, Vec<FeedPost>)> = futures::stream::iter(authors)
            .map(|author| async move {
                let mode = self.store.feed_mode(author).await?;
                let posts = match mode {
                    FeedMode::Merged => Vec::new(),
                    FeedMode::Materialized => self.recent_posts(author, horizon).await?,
                };
                Ok::<_, crate::error::Error>((author, mode, posts))
            })
            .buffer_unordered(REBUILD_AUTHORS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut posts = own;
        let mut merged = Vec::new();
        for (author, mode, author_posts) in per_author {
            match mode {
                FeedMode::Merged => merged.push(author),
                FeedMode::Materialized => posts.extend(author_posts),
            }
        }
        let markers: Vec<(UserId, UserId)> = merged.iter().map(|a| (viewer, *a)).collect();
        let entries: Vec<(UserId, FeedPost)> = posts.iter().map(|p| (viewer, *p)).collect();
        futures::try_join!(
            self.store.add_entries(&entries, self.limits.entry_ttl_days),
            self.store.mark_large_followees(&markers),
        )?;
        Ok(FeedOutcome {
            entries: posts.len(),
            markers: merged.len(),
            promoted: false,
        })
    }

    /// `author`'s posts created after `horizon`, newest first, at most
    /// [`REBUILD_MAX_POSTS_PER_AUTHOR`].
    async fn recent_posts(&self, author: UserId, horizon: DateTime<Utc>) -> Result<Vec<FeedPost>> {
        let mut posts = Vec::new();
        let mut page = PageRequest::first(MAX_LIMIT);
        loop {
            let batch = self.store.author_posts(author, &page).await?;
            let before_horizon = batch.items.iter().any(|post| post.created_at < horizon);
            posts.extend(
                batch
                    .items
                    .iter()
                    .filter(|post| post.created_at >= horizon)
                    .map(FeedPost::from),
            );
            match batch.next_cursor {
                Some(cursor) if !before_horizon && posts.len() < REBUILD_MAX_POSTS_PER_AUTHOR => {
                    page = PageRequest::after(MAX_LIMIT, cursor);
                }
                _ => break,
            }
        }
        posts.truncate(REBUILD_MAX_POSTS_PER_AUTHOR);
        Ok(posts)
    }
}
