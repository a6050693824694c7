//! Posts, author timelines, the home feed, likes and comments.
//!
//! Items (see `docs/data-model.md`): a post lives at `POST#{post}` / `POST` with its author
//! timeline entry on GSI 1 (`USER#{author}` / `POST#{post}`); its likes (`LIKE#{user}`) and
//! comments (`COMMENT#{comment}`) share the post's partition. Counters (`like_count`,
//! `comment_count`, the author's `post_count`) move with `ADD` in the same transaction as
//! the item they count, and every like/comment notification is part of that transaction.
//!
//! A deleted post takes its likes and comments with it from the API's point of view: every
//! read of likes or comments first checks that the post exists, and the items themselves
//! are cleaned up best-effort after the delete.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem};
use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::dynamo::{from_item, item_key, key_map, n, s, to_item, with_gsi1, Item, Query, SortKey};
use super::keys::{self, Key};
use super::page::{decode_token, KeyShape, Page, PageRequest};
use super::transaction::{tx, TransactFailure};
use super::DynamoStore;
use crate::clock::to_millis;
use crate::domain::{
    new_id, CommentText, MediaUrl, Post, PostId, PostText, UserId, POST_EDIT_WINDOW_SECONDS,
};
use crate::error::{Error, Result};

mod reactions;

/// How many author timelines the feed reads at once.
pub const FEED_CONCURRENCY: usize = 16;

/// Most likes and comments a post delete removes inline; anything beyond stays orphaned
/// (never served, because every read checks the post) until an operator sweep.
pub const MAX_DELETE_CLEANUP_ITEMS: usize = 1000;

/// What `POST /posts` stores (already validated).
#[derive(Debug, Clone)]
pub struct NewPost {
    pub author: UserId,
    pub text: PostText,
    pub media_url: Option<MediaUrl>,
    pub created_at: DateTime<Utc>,
}

/// An edit of a post's text by `editor` at `now`.
#[derive(Debug, Clone)]
pub struct PostEdit {
    pub post: PostId,
    pub editor: UserId,
    pub text: PostText,
    pub now: DateTime<Utc>,
}

/// What `POST /posts/{post_id}/comments` stores (already validated).
#[derive(Debug, Clone)]
pub struct NewComment {
    pub author: UserId,
    pub text: CommentText,
    pub created_at: DateTime<Utc>,
}

/// Whether the caller likes a post after a like/unlike, and the post's count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LikeState {
    pub liked: bool,
    pub like_count: i64,
    /// The count's version ([`Post::like_version`]): orders this answer against
    /// `like_updated` events.
    pub like_version: i64,
}

// ---- items -----------------------------------------------------------------------------------

#[derive(Serialize)]
struct PostRecord<'a> {
    #[serde(flatten)]
    post: &'a Post,
    /// `created_at` as epoch milliseconds: the edit-window condition compares numbers.
    created_at_ms: i64,
    entity: &'static str,
}

/// Position in the merged feed: entries strictly older than this post come next.
#[derive(Serialize, Deserialize)]
struct FeedCursor {
    before: PostId,
}

fn post_not_found() -> Error {
    Error::not_found("post not found")
}

fn edit_window_closed() -> Error {
    Error::Forbidden {
        code: "edit_window_closed",
        message: format!(
            "a post can be edited only within {POST_EDIT_WINDOW_SECONDS} s of its creation"
        ),
    }
}

/// `ADD {counter} :delta` on a post, conditioned on the post existing.
fn post_counter(table: &str, post: PostId, counter: &str, delta: i64) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::post(post),
        &format!("ADD {counter} :delta"),
        Some("attribute_exists(pk)"),
        &[],
        vec![(":delta", n(delta))],
    )
}

/// A newest-first read of one author's timeline, optionally strictly older than a post.
pub(crate) fn timeline_query<'a>(partition: &'a str, before: Option<&'a str>) -> Query<'a> {
    let query = Query::new(KeyShape::Gsi1, partition)
        .begins_with(keys::POST_PREFIX)
        .newest_first();
    match before {
        Some(before) => Query {
            sort: SortKey::before(keys::POST_PREFIX, before),
            ..query
        },
        None => query,
    }
}

impl DynamoStore {
    /// Fails with `NotFound` unless the post exists (reads of its likes and comments).
    async fn require_post(&self, post: PostId) -> Result<Post> {
        self.get_post(post).await?.ok_or_else(post_not_found)
    }

    /// The like count and its version.
    async fn like_count(&self, post: PostId) -> Result<(i64, i64)> {
        let post = self.require_post(post).await?;
        Ok((post.like_count, post.like_version))
    }

    /// The feed merge: the newest `limit` posts (strictly older than `before`) across the
    /// timelines of `authors`, read with bounded concurrency.
    async fn merged_timelines(
        &self,
        authors: &[UserId],
        before: Option<PostId>,
        limit: usize,
    ) -> Result<Page<Post>> {
        let before_sk = before.map(keys::timeline_before);
        let timelines: Vec<Page<Item>> = futures::stream::iter(authors.iter().copied())
            .map(|author| {
                let before_sk = before_sk.as_deref();
                async move {
                    let partition = keys::user_pk(author);
                    let query = timeline_query(&partition, before_sk);
                    self.table
                        .query_page(&query, &PageRequest::first(limit))
                        .await
                }
            })
            .buffer_unordered(FEED_CONCURRENCY)
            .try_collect()
            .await?;
        // A timeline with more entries than it returned has older posts than any it returned.
        let some_timeline_has_more = timelines.iter().any(|t| t.next_cursor.is_some());
        let posts: Vec<Post> = timelines
            .into_iter()
            .flat_map(|t| t.items)
            .map(from_item)
            .collect::<Result<_>>()?;
        super::feed::merge_page(posts, limit, some_timeline_has_more)
    }

    /// Likes and comments of a deleted post, removed in bounded batches. Failures are
    /// logged: the items are unreachable anyway because reads check the post.
    async fn clean_up_deleted_post(&self, post: PostId) {
        let partition = keys::post_partition(post);
        let query = Query::new(KeyShape::Table, &partition);
        let result = async {
            let items = self
                .table
                .query_all(&query, MAX_DELETE_CLEANUP_ITEMS)
                .await?;
            let keys = items.iter().map(item_key).collect::<Result<Vec<Key>>>()?;
            self.table.batch_delete(&keys).await?;
            Ok::<usize, Error>(keys.len())
        }
        .await;
        match result {
            Ok(removed) => tracing::debug!(%post, removed, "deleted post cleaned up"),
            Err(error) => {
                tracing::warn!(%post, error = %error, "cleaning up a deleted post failed")
            }
        }
    }
}

impl DynamoStore {
    /// Stores a post with its timeline entry and counts it on the author's profile, in one
    /// transaction. `NotFound` if the author has no profile.
    pub async fn create_post(&self, new: NewPost) -> Result<Post> {
        let created_at = to_millis(new.created_at);
        let post = Post {
            id: new_id(),
            author_id: new.author,
            text: new.text.into(),
            media_url: new.media_url.map(String::from),
            created_at,
            edited_at: None,
            like_count: 0,
            like_version: 0,
            comment_count: 0,
        };
        let table = &self.table.name;
        let item = with_gsi1(
            to_item(
                &keys::post(post.id),
                &PostRecord {
                    post: &post,
                    created_at_ms: created_at.timestamp_millis(),
                    entity: "post",
                },
            )?,
            &keys::author_timeline_entry(post.author_id, post.id),
        );
        let items = vec![
            tx::put_new(table, item)?,
            tx::update(
                table,
                &keys::user_profile(post.author_id),
                "ADD post_count :one",
                Some("attribute_exists(pk)"),
                &[],
                vec![(":one", n(1))],
            )?,
            // The author's own feed entry, so their post is at the top of their feed when
            // the response arrives; followers' entries come from the push worker, whose
            // `distribute` rewrites this one with the deployment's configured TTL.
            tx::put(
                table,
                super::feed::feed_entry_item(
                    post.author_id,
                    &super::feed::FeedPost::from(&post),
                    crate::config::FeedLimits::default().entry_ttl_days,
                )?,
                None,
            )?,
        ];
        self.table
            .transact_or(items, || Error::not_found("author not found"))
            .await?;
        Ok(post)
    }

    /// Pattern 11: one post.
    pub async fn get_post(&self, id: PostId) -> Result<Option<Post>> {
        self.table.get_as(&keys::post(id)).await
    }

    /// Many posts in one round trip (missing ones are absent).
    pub async fn get_posts(&self, ids: &[PostId]) -> Result<HashMap<PostId, Post>> {
        let keys: Vec<Key> = ids.iter().map(|id| keys::post(*id)).collect();
        self.table.batch_get_map(&keys, |post: &Post| post.id).await
    }

    /// Replaces the text and sets `edited_at`. The author check and the edit window are
    /// part of the write's condition. Errors: `NotFound`, `Forbidden` (not the author),
    /// `Forbidden { code: "edit_window_closed" }`.
    pub async fn edit_post(&self, edit: PostEdit) -> Result<Post> {
        let now = to_millis(edit.now);
        let earliest_creation = now - Duration::seconds(POST_EDIT_WINDOW_SECONDS);
        let result = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key_map(&keys::post(edit.post))))
            .update_expression("SET #text = :text, edited_at = :edited_at")
            .condition_expression(
                "attribute_exists(pk) AND author_id = :editor AND created_at_ms >= :earliest",
            )
            .expression_attribute_names("#text", "text")
            .expression_attribute_values(":text", s(edit.text.as_str()))
            .expression_attribute_values(":edited_at", s(crate::domain::format_time(now)))
            .expression_attribute_values(":editor", s(edit.editor.to_string()))
            .expression_attribute_values(":earliest", n(earliest_creation.timestamp_millis()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(output) => from_item(output.attributes.unwrap_or_default()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // The condition decided; this read only explains which part failed.
                match self.get_post(edit.post).await? {
                    None => Err(post_not_found()),
                    Some(post) if post.author_id != edit.editor => {
                        Err(Error::forbidden("only the author can edit a post"))
                    }
                    Some(_) => Err(edit_window_closed()),
                }
            }
            Err(error) => Err(Error::internal("editing post", error)),
        }
    }

    /// Deletes the post and uncounts it on the author's profile in one transaction, then
    /// removes its likes and comments best-effort. Errors: `NotFound`, `Forbidden`.
    pub async fn delete_post(&self, id: PostId, caller: UserId) -> Result<()> {
        let table = &self.table.name;
        // Only the author may delete, so the profile to uncount is the caller's.
        let items = vec![
            tx::delete_where(
                table,
                &keys::post(id),
                "attribute_exists(pk) AND author_id = :caller",
                vec![(":caller", s(caller.to_string()))],
            )?,
            tx::update(
                table,
                &keys::user_profile(caller),
                "ADD post_count :minus_one",
                Some("attribute_exists(pk)"),
                &[],
                vec![(":minus_one", n(-1))],
            )?,
        ];
        match self.table.transact(items).await {
            Ok(()) => {}
            Err(TransactFailure::Other(error)) => return Err(error),
            Err(TransactFailure::ConditionFailed { .. }) => {
                return Err(match self.get_post(id).await? {
                    None => post_not_found(),
                    Some(post) if post.author_id != caller => {
                        Error::forbidden("only the author can delete a post")
                    }
                    Some(_) => Error::invariant("post author has no profile"),
                });
            }
        }
        self.clean_up_deleted_post(id).await;
        Ok(())
    }

    /// Pattern 12: `author`'s posts, newest first.
    pub async fn author_posts(&self, author: UserId, page: &PageRequest) -> Result<Page<Post>> {
        let partition = keys::user_pk(author);
        let query = timeline_query(&partition, None);
        self.table.query_page_as(&query, page).await
    }

    /// The home feed of `viewer` merged at read time from the timeline of everyone they
    /// follow — their own posts and those of everyone they follow, newest first, never from
    /// a user in their block set. One query per followed account: production reads the
    /// materialized feed (`DynamoStore::home_feed`, pattern 13); this merge is its reference,
    /// the oracle its tests compare against. The cursor is the last post id returned.
    pub async fn merged_feed(&self, viewer: UserId, page: &PageRequest) -> Result<Page<Post>> {
        // Validate the cursor before any read.
        let before = match &page.cursor {
            Some(cursor) => Some(decode_token::<FeedCursor>(cursor)?.before),
            None => None,
        };
        let (following, hidden) =
            futures::try_join!(self.following_ids(viewer), self.block_set(viewer))?;
        let mut authors = vec![viewer];
        let mut seen = HashSet::from([viewer]);
        // A block removes follows both ways; filtering here also covers a follow that a
        // concurrent block has not removed yet.
        for author in following {
            if !hidden.contains(&author) && seen.insert(author) {
                authors.push(author);
            }
        }
        self.merged_timelines(&authors, before, page.limit).await
    }
}
