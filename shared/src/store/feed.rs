//! The materialized home feed (pattern 13; design in `docs/data-model.md`, "Home feed").
//!
//! A hybrid, as large social products build it:
//!
//! - **Ordinary authors** (at most `FEED_MATERIALIZE_MAX_FOLLOWERS` followers): each post is
//!   written as an entry `FEED#{viewer}` / `P#{post}` into every follower's feed (and the
//!   author's own) by the push worker, off the REST path. An entry only references the post,
//!   so an edit shows at once and a deleted post simply stops resolving.
//! - **Large authors** (promoted once they pass the bound): their posts are not
//!   materialized; each follower's feed holds a marker `FEED#{viewer}` / `L#{author}`, and
//!   a page merges those authors' timelines at read time. A viewer follows few of them.
//!
//! A page therefore costs: one query of the feed entries, one of the markers (concurrent),
//! one `BatchGetItem` of the page's posts together with the follow items that prove the
//! viewer still follows each author on the page (unfollows and blocks are applied to
//! entries asynchronously; this check makes them take effect at once), and one timeline
//! query per large author followed: **3 + L requests** at the default page size, whoever
//! and however many accounts the viewer follows. Stale entries (a deleted post, an author
//! no longer followed) are skipped, and more entries are read only when skipping left the
//! page short.
//!
//! Entries carry `expires_at` (TTL, `FEED_ENTRY_TTL_DAYS` after the post), which bounds a
//! feed partition by time; the cursor is the last post id returned, as before.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dynamo::{from_item, s, to_item, Consistency, Item, Query, SortKey};
use super::keys::{self, Key};
use super::page::{decode_token, encode_token, KeyShape, Page, PageRequest};
use super::posts::timeline_query;
use super::DynamoStore;
use crate::domain::{Follow, Post, PostId, UserId};
use crate::error::{Error, Result};

/// `BatchWriteItem` requests of one feed write in flight at once.
pub const FEED_WRITE_CONCURRENCY: usize = 8;

/// Items per `BatchWriteItem` (the DynamoDB maximum).
const BATCH_WRITE_ITEMS: usize = 25;

/// Extra entries read beyond the page size, so a few stale entries do not cost a second
/// round trip.
const ENTRY_SLACK: usize = 5;

/// Most large-followee markers read for one page (a viewer follows at most
/// `MAX_FOLLOWING` accounts; the markers are a small subset).
const MAX_LARGE_FOLLOWEES: usize = crate::store::social::MAX_FOLLOWING;

/// A post as the feed needs it: enough to place an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPost {
    pub post_id: PostId,
    pub author_id: UserId,
    #[serde(with = "crate::domain::rfc3339")]
    pub created_at: DateTime<Utc>,
}

impl From<&Post> for FeedPost {
    fn from(post: &Post) -> Self {
        Self {
            post_id: post.id,
            author_id: post.author_id,
            created_at: post.created_at,
        }
    }
}

/// The stored form of a feed entry.
#[derive(Serialize, Deserialize)]
struct FeedEntryRecord {
    post_id: PostId,
    author_id: UserId,
    /// TTL, epoch seconds.
    expires_at: i64,
    entity: String,
}

/// The stored form of a large-followee marker.
#[derive(Serialize, Deserialize)]
struct LargeFolloweeRecord {
    author_id: UserId,
    entity: String,
}

/// Position in the feed: entries strictly older than this post come next. The same
/// token as the merged feed's, so cursors stay valid across the change.
#[derive(Serialize, Deserialize)]
struct FeedCursor {
    before: PostId,
}

/// Whether an author's posts are materialized into followers' feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedMode {
    /// Posts are written into each follower's feed.
    Materialized,
    /// Posts are merged from the author's timeline at read time (a large author).
    Merged,
}

/// Profile attribute set once an author is promoted to [`FeedMode::Merged`].
const FEED_MERGED_ATTRIBUTE: &str = "feed_merged";

/// One page's raw material: entries, markers, and what each resolves to.
struct FeedReads {
    entries: Vec<FeedEntryRecord>,
    /// More entries exist past the ones read.
    entries_more: bool,
    /// The sort key of the last entry read (where the next read starts).
    last_entry_sort_key: Option<String>,
}

impl DynamoStore {
    /// Up to `limit` feed entries older than `before` (all when `None`), newest first.
    async fn read_feed_entries(
        &self,
        viewer: UserId,
        before: Option<&str>,
        limit: usize,
    ) -> Result<FeedReads> {
        let partition = keys::feed_partition(viewer);
        let query = Query {
            sort: match before {
                Some(before) => SortKey::before(keys::FEED_ENTRY_PREFIX, before),
                None => SortKey::BeginsWith(keys::FEED_ENTRY_PREFIX),
            },
            ..Query::new(KeyShape::Table, &partition)
                .newest_first()
                .eventually_consistent()
        };
        let page = self
            .table
            .query_page(&query, &PageRequest::first(limit))
            .await?;
        let entries: Vec<FeedEntryRecord> = page
            .items
            .into_iter()
            .map(from_item)
            .collect::<Result<_>>()?;
        let last_entry_sort_key = entries
            .last()
            .map(|entry| keys::feed_entry_sort_key(entry.post_id));
        Ok(FeedReads {
            entries_more: page.next_cursor.is_some(),
            entries,
            last_entry_sort_key,
        })
    }

    /// The large authors `viewer` has markers for.
    async fn large_followees(&self, viewer: UserId) -> Result<Vec<UserId>> {
        let partition = keys::feed_partition(viewer);
        let query = Query::new(KeyShape::Table, &partition)
            .begins_with(keys::LARGE_FOLLOWEE_PREFIX)
            .eventually_consistent();
        self.table
            .query_all(&query, MAX_LARGE_FOLLOWEES)
            .await?
            .into_iter()
            .map(|item| from_item::<LargeFolloweeRecord>(item).map(|m| m.author_id))
            .collect()
    }

    /// One `BatchGetItem` (per 100 keys) of `posts` and of the follow items
    /// `viewer → author` for `authors`: the posts found, and the authors still followed.
    async fn resolve_feed_items(
        &self,
        viewer: UserId,
        posts: &[PostId],
        authors: &HashSet<UserId>,
    ) -> Result<(HashMap<PostId, Post>, HashSet<UserId>)> {
        let keys: Vec<Key> = posts
            .iter()
            .map(|post| keys::post(*post))
            .chain(authors.iter().map(|author| keys::follow(viewer, *author)))
            .collect();
        let mut found_posts = HashMap::new();
        let mut followed = HashSet::new();
        for item in self
            .table
            .batch_get_with(&keys, Consistency::Eventual)
            .await?
        {
            match item
                .get("entity")
                .and_then(|e| e.as_s().ok())
                .map(String::as_str)
            {
                Some("post") => {
                    let post: Post = from_item(item)?;
                    found_posts.insert(post.id, post);
                }
                Some("follow") => {
                    let follow: Follow = from_item(item)?;
                    followed.insert(follow.followee_id);
                }
                other => {
                    return Err(Error::invariant(format!(
                        "feed read returned an unexpected item: {other:?}"
                    )))
                }
            }
        }
        Ok((found_posts, followed))
    }

    /// The newest `limit` posts of each large author older than `before`, concurrently;
    /// and whether any of them has more.
    async fn large_timelines(
        &self,
        authors: &[UserId],
        before: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Post>, bool)> {
        let pages: Vec<Page<Post>> = futures::stream::iter(authors.iter().copied())
            .map(|author| async move {
                let partition = keys::user_pk(author);
                let query = timeline_query(&partition, before);
                let page: Page<Post> = self
                    .table
                    .query_page_as(&query, &PageRequest::first(limit))
                    .await?;
                Ok::<_, Error>(Page {
                    // Only posts of this author: the timeline is the author's partition.
                    items: page
                        .items
                        .into_iter()
                        .filter(|post| post.author_id == author)
                        .collect(),
                    next_cursor: page.next_cursor,
                })
            })
            .buffer_unordered(crate::store::posts::FEED_CONCURRENCY)
            .try_collect()
            .await?;
        let more = pages.iter().any(|page| page.next_cursor.is_some());
        Ok((
            pages.into_iter().flat_map(|page| page.items).collect(),
            more,
        ))
    }

    /// Valid posts of the materialized entries, reading further entries while stale ones
    /// left fewer than `limit`. Returns the posts and whether more entries exist.
    async fn materialized_posts(
        &self,
        viewer: UserId,
        first: FeedReads,
        followed: &mut HashSet<UserId>,
        checked: &mut HashSet<UserId>,
        limit: usize,
    ) -> Result<(Vec<Post>, bool)> {
        let mut reads = first;
        let mut posts = Vec::new();
        loop {
            let post_ids: Vec<PostId> = reads.entries.iter().map(|e| e.post_id).collect();
            let authors: HashSet<UserId> = reads
                .entries
                .iter()
                .map(|e| e.author_id)
                .filter(|author| *author != viewer && !checked.contains(author))
                .collect();
            let (found, newly_followed) =
                self.resolve_feed_items(viewer, &post_ids, &authors).await?;
            checked.extend(authors);
            followed.extend(newly_followed);
            posts.extend(visible_posts(&reads.entries, &found, followed, viewer));
            if posts.len() >= limit || !reads.entries_more {
                return Ok((posts, reads.entries_more));
            }
            let before = reads.last_entry_sort_key.clone();
            reads = self
                .read_feed_entries(viewer, before.as_deref(), limit + ENTRY_SLACK)
                .await?;
        }
    }
}

/// The posts of `entries` the viewer may see: still there, and their own or by an author
/// they still follow (which also excludes anyone in a block with them).
fn visible_posts(
    entries: &[FeedEntryRecord],
    found: &HashMap<PostId, Post>,
    followed: &HashSet<UserId>,
    viewer: UserId,
) -> Vec<Post> {
    entries
        .iter()
        .filter_map(|entry| {
            let post = found.get(&entry.post_id)?;
            let visible = post.author_id == viewer || followed.contains(&post.author_id);
            visible.then(|| post.clone())
        })
        .collect()
}

/// `post`'s entry in `viewer`'s feed, expiring `ttl_days` after the post.
pub(crate) fn feed_entry_item(viewer: UserId, post: &FeedPost, ttl_days: u32) -> Result<Item> {
    let expires_at = (post.created_at + chrono::Duration::days(i64::from(ttl_days))).timestamp();
    to_item(
        &keys::feed_entry(viewer, post.post_id),
        &FeedEntryRecord {
            post_id: post.post_id,
            author_id: post.author_id,
            expires_at,
            entity: "feed_entry".to_owned(),
        },
    )
}

/// Puts or deletes, 25 per `BatchWriteItem`, a bounded number in flight.
async fn write_in_batches<T, F, Fut>(items: Vec<T>, write: F) -> Result<()>
where
    T: Clone,
    F: Fn(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    futures::stream::iter(items.chunks(BATCH_WRITE_ITEMS).map(<[T]>::to_vec))
        .map(write)
        .buffer_unordered(FEED_WRITE_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

impl DynamoStore {
    /// Writes each `(viewer, post)` entry (idempotent puts, 25 per request,
    /// `FEED_WRITE_CONCURRENCY` requests in flight); entries expire `ttl_days` after
    /// their post.
    pub async fn add_entries(&self, entries: &[(UserId, FeedPost)], ttl_days: u32) -> Result<()> {
        let items = entries
            .iter()
            .map(|(viewer, post)| feed_entry_item(*viewer, post, ttl_days))
            .collect::<Result<Vec<Item>>>()?;
        write_in_batches(items, |chunk| self.table.batch_put(chunk)).await
    }

    /// Removes `post` from each of `viewers`' feeds (idempotent).
    pub async fn remove_feed_entries(&self, post: PostId, viewers: &[UserId]) -> Result<()> {
        let keys: Vec<Key> = viewers
            .iter()
            .map(|viewer| keys::feed_entry(*viewer, post))
            .collect();
        write_in_batches(keys, |chunk| async move {
            self.table.batch_delete(&chunk).await
        })
        .await
    }

    /// Records, for each `(viewer, author)`, that `viewer` follows the large author `author`.
    pub async fn mark_large_followees(&self, follows: &[(UserId, UserId)]) -> Result<()> {
        let items = follows
            .iter()
            .map(|&(viewer, author)| {
                to_item(
                    &keys::large_followee(viewer, author),
                    &LargeFolloweeRecord {
                        author_id: author,
                        entity: "feed_large_followee".to_owned(),
                    },
                )
            })
            .collect::<Result<Vec<Item>>>()?;
        write_in_batches(items, |chunk| self.table.batch_put(chunk)).await
    }

    /// Removes `author` from `viewer`'s feed: its entries and its marker. Returns how many
    /// items went. Bounded by the feed partition (entries expire).
    pub async fn prune_feed_author(&self, viewer: UserId, author: UserId) -> Result<usize> {
        let partition = keys::feed_partition(viewer);
        let query = Query {
            filter: Some((
                "author_id = :author",
                vec![(":author", s(author.to_string()))],
            )),
            ..Query::new(KeyShape::Table, &partition)
                .begins_with(keys::FEED_ENTRY_PREFIX)
                .eventually_consistent()
        };
        let mut doomed: Vec<Key> = self
            .table
            .query_all(&query, usize::MAX)
            .await?
            .iter()
            .map(super::dynamo::item_key)
            .collect::<Result<_>>()?;
        doomed.push(keys::large_followee(viewer, author));
        let removed = doomed.len();
        write_in_batches(doomed, |chunk| async move {
            self.table.batch_delete(&chunk).await
        })
        .await?;
        Ok(removed)
    }

    /// Whether `author`'s posts are materialized or merged.
    pub async fn feed_mode(&self, author: UserId) -> Result<FeedMode> {
        let profile = self.table.get(&keys::user_profile(author)).await?;
        let merged = profile
            .as_ref()
            .and_then(|item| item.get(FEED_MERGED_ATTRIBUTE))
            .and_then(|value| value.as_bool().ok())
            .copied()
            .unwrap_or(false);
        Ok(if merged {
            FeedMode::Merged
        } else {
            FeedMode::Materialized
        })
    }

    /// Promotes `author` to [`FeedMode::Merged`] (idempotent; never demoted).
    pub async fn set_feed_merged(&self, author: UserId) -> Result<()> {
        self.table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(super::dynamo::key_map(&keys::user_profile(author))))
            .update_expression("SET #merged = :merged")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#merged", FEED_MERGED_ATTRIBUTE)
            .expression_attribute_values(
                ":merged",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .send()
            .await
            .map_err(|e| Error::internal("promoting an author to the merged feed", e))?;
        Ok(())
    }

    /// The home feed of `viewer`: their own posts and those of everyone they follow,
    /// newest first, never from a user they no longer follow or who blocks them.
    pub async fn home_feed(&self, viewer: UserId, page: &PageRequest) -> Result<Page<Post>> {
        // Validate the cursor before any read.
        let before = match &page.cursor {
            Some(cursor) => Some(decode_token::<FeedCursor>(cursor)?.before),
            None => None,
        };
        let entries_before = before.map(keys::feed_entry_sort_key);
        let timeline_before = before.map(keys::timeline_before);
        let limit = page.limit;
        let (first, large) = futures::try_join!(
            self.read_feed_entries(viewer, entries_before.as_deref(), limit + ENTRY_SLACK),
            self.large_followees(viewer),
        )?;
        let large: Vec<UserId> = large.into_iter().filter(|a| *a != viewer).collect();
        // The large authors' follow items ride in the first batch with the entries' posts;
        // their timelines are read at the same time.
        let mut checked: HashSet<UserId> = HashSet::new();
        let mut followed: HashSet<UserId> = HashSet::new();
        let large_set: HashSet<UserId> = large.iter().copied().collect();
        let first_authors: HashSet<UserId> = first
            .entries
            .iter()
            .map(|e| e.author_id)
            .filter(|author| *author != viewer)
            .chain(large_set.iter().copied())
            .collect();
        let first_posts: Vec<PostId> = first.entries.iter().map(|e| e.post_id).collect();
        let ((found, first_followed), (large_posts, large_more)) = futures::try_join!(
            self.resolve_feed_items(viewer, &first_posts, &first_authors),
            self.large_timelines(&large, timeline_before.as_deref(), limit),
        )?;
        checked.extend(first_authors);
        followed.extend(first_followed);
        let mut posts = visible_posts(&first.entries, &found, &followed, viewer);
        let mut entries_more = first.entries_more;
        if posts.len() < limit && first.entries_more {
            let rest = self
                .read_feed_entries(
                    viewer,
                    first.last_entry_sort_key.as_deref(),
                    limit + ENTRY_SLACK,
                )
                .await?;
            let (more_posts, more) = self
                .materialized_posts(
                    viewer,
                    rest,
                    &mut followed,
                    &mut checked,
                    limit - posts.len(),
                )
                .await?;
            posts.extend(more_posts);
            entries_more = more;
        }
        posts.extend(
            large_posts
                .into_iter()
                .filter(|post| followed.contains(&post.author_id)),
        );
        merge_page(posts, limit, entries_more || large_more)
    }

    /// How many entries of `viewer`'s materialized feed are newer than `since`, counting
    /// at most `max` (one query; large authors' posts are not counted).
    pub async fn feed_entries_newer(
        &self,
        viewer: UserId,
        since: Uuid,
        max: usize,
    ) -> Result<usize> {
        let output = self
            .table
            .client
            .query()
            .table_name(&self.table.name)
            .key_condition_expression("pk = :pk AND sk > :since")
            .expression_attribute_values(":pk", s(keys::feed_partition(viewer)))
            .expression_attribute_values(":since", s(keys::feed_position_sort_key(since)))
            .select(aws_sdk_dynamodb::types::Select::Count)
            .limit(i32::try_from(max).unwrap_or(i32::MAX).max(1))
            .send()
            .await
            .map_err(|e| Error::internal("counting new feed entries", e))?;
        Ok(usize::try_from(output.count).unwrap_or(0).min(max))
    }
}

/// Newest first, one copy of each post, `limit` of them; a cursor (the last post id) when
/// more may exist. Shared with the merged feed, so both hand out the same cursors.
pub(crate) fn merge_page(
    mut posts: Vec<Post>,
    limit: usize,
    sources_have_more: bool,
) -> Result<Page<Post>> {
    posts.sort_by_key(|post| std::cmp::Reverse(post.id));
    posts.dedup_by_key(|post| post.id);
    let more = posts.len() > limit || sources_have_more;
    posts.truncate(limit);
    let next_cursor = match posts.last() {
        Some(last) if more => Some(encode_token(&FeedCursor { before: last.id })?),
        _ => None,
    };
    Ok(Page {
        items: posts,
        next_cursor,
    })
}
