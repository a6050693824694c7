//! Likes and comments: each written in one transaction with the post's counter, the
//! no-block checks and the author's notification.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{post_counter, post_not_found, LikeState, NewComment};
use crate::clock::to_millis;
use crate::domain::{new_id, Comment, CommentId, Like, NotificationKind, Post, PostId, UserId};
use crate::error::{Error, Result};
use crate::store::dynamo::{from_item, n, s, to_item, Query};
use crate::store::keys::{self, Key};
use crate::store::notifications::{notification_items, NewNotification, Notified};
use crate::store::page::{KeyShape, Page, PageRequest};
use crate::store::transaction::{tx, TransactFailure, Transaction, TxItem, TxItems};
use crate::store::DynamoStore;

#[derive(Serialize)]
struct LikeRecord<'a> {
    #[serde(flatten)]
    like: &'a Like,
    entity: &'static str,
}

#[derive(Serialize)]
struct CommentRecord<'a> {
    #[serde(flatten)]
    comment: &'a Comment,
    entity: &'static str,
}

fn comment_not_found() -> Error {
    Error::not_found("comment not found")
}

/// The like counter with its version: every change to the count bumps `like_version` in the
/// same write, so clients order counts that arrive out of order (`Post::like_version`).
fn like_counter(table: &str, post: PostId, delta: i64) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::post(post),
        "ADD like_count :delta, like_version :one",
        Some("attribute_exists(pk)"),
        &[],
        vec![(":delta", n(delta)), (":one", n(1))],
    )
}

/// The comment counter of a user's comment deletion, marking which comment went: the post
/// item's stream record is where `comment_deleted` comes from, so a post's deletion (which
/// removes its comments without touching the post item) sends `post_deleted` alone, and the
/// event stays in order with the post's other events.
fn comment_removal_counter(
    table: &str,
    post: PostId,
    comment: CommentId,
) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::post(post),
        "ADD comment_count :delta SET last_deleted_comment = :comment",
        Some("attribute_exists(pk)"),
        &[],
        vec![(":delta", n(-1)), (":comment", s(comment.to_string()))],
    )
}

/// Condition checks that no block stands between `actor` and `author` either way, so a
/// like or comment (and its notification) never comes from a blocked user. Empty for
/// one's own post.
fn no_block_between(table: &str, actor: UserId, author: UserId) -> Result<Vec<TransactWriteItem>> {
    if actor == author {
        return Ok(Vec::new());
    }
    [keys::block(actor, author), keys::block(author, actor)]
        .iter()
        .map(|key| tx::condition_check(table, key, "attribute_not_exists(pk)", vec![]))
        .collect()
}

/// The items of a like or comment transaction that tell why it failed.
struct ReactionItems {
    /// The like or comment itself (exists already: a repeated like).
    new_item: TxItem,
    /// The post's counter (the post is gone).
    post_counter: TxItem,
    /// No block between the actor and the post's author (the post is hidden).
    block_checks: TxItems,
}

impl ReactionItems {
    /// A like or comment transaction: `new_item`, the post's `counter`, the block checks.
    fn add(
        transaction: &mut Transaction,
        new_item: TransactWriteItem,
        counter: TransactWriteItem,
        block_checks: Vec<TransactWriteItem>,
    ) -> Self {
        Self {
            new_item: transaction.add(new_item),
            post_counter: transaction.add(counter),
            block_checks: transaction.add_all(block_checks),
        }
    }

    /// Whether a failed transaction failed because the post is gone or hidden.
    fn post_unreachable(&self, failure: &TransactFailure) -> bool {
        failure.failed(&self.post_counter) || failure.failed(&self.block_checks)
    }
}

impl DynamoStore {
    /// `user` likes `post`: the like, `like_count + 1` and a `like` notification to the author
    /// (at most one per actor and post, never for a self-like) in one transaction, which
    /// comes back with the state. Idempotent. `NotFound` if the post is gone.
    pub async fn like(
        &self,
        post: &Post,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Notified<LikeState>> {
        let table = &self.table.name;
        let like = Like {
            post_id: post.id,
            user_id: user,
            created_at: to_millis(now),
        };
        let mut cause = Transaction::new();
        let items = ReactionItems::add(
            &mut cause,
            tx::put_new(
                table,
                to_item(
                    &keys::like(post.id, user),
                    &LikeRecord {
                        like: &like,
                        entity: "like",
                    },
                )?,
            )?,
            like_counter(table, post.id, 1)?,
            no_block_between(table, user, post.author_id)?,
        );
        let notification = notification_items(
            table,
            &NewNotification {
                recipient: post.author_id,
                kind: NotificationKind::Like,
                actor: user,
                post_id: Some(post.id),
                comment_id: None,
                created_at: like.created_at,
                dedup_key: Some(keys::like_dedup_key(post.id, user)),
            },
        )?;
        let notification = match self.transact_with_notification(cause, notification).await {
            Ok(written) => written,
            Err(TransactFailure::Other(error)) => return Err(error),
            Err(failure) if items.post_unreachable(&failure) => return Err(post_not_found()),
            // Already liked: nothing changed.
            Err(failure) if failure.failed(&items.new_item) => None,
            Err(_) => {
                return Err(Error::invariant(
                    "like transaction failed an unexpected condition",
                ))
            }
        };
        let (like_count, like_version) = self.like_count(post.id).await?;
        Ok(Notified {
            outcome: LikeState {
                liked: true,
                like_count,
                like_version,
            },
            notification,
        })
    }

    /// Removes `user`'s like and decrements the count. Idempotent. `NotFound` if the post is gone.
    pub async fn unlike(&self, post: PostId, user: UserId) -> Result<LikeState> {
        let table = &self.table.name;
        let mut transaction = Transaction::new();
        let like = transaction.add(tx::delete(
            table,
            &keys::like(post, user),
            Some("attribute_exists(pk)"),
        )?);
        let post_counter = transaction.add(like_counter(table, post, -1)?);
        match self.table.transact(transaction).await {
            Ok(()) => {}
            Err(TransactFailure::Other(error)) => return Err(error),
            Err(failure) if failure.failed(&post_counter) => return Err(post_not_found()),
            // Not liked: nothing changed.
            Err(failure) if failure.failed(&like) => {}
            Err(_) => {
                return Err(Error::invariant(
                    "unlike transaction failed an unexpected condition",
                ))
            }
        }
        let (like_count, like_version) = self.like_count(post).await?;
        Ok(LikeState {
            liked: false,
            like_count,
            like_version,
        })
    }

    /// Pattern 14: whether `user` likes `post`.
    pub async fn has_liked(&self, user: UserId, post: PostId) -> Result<bool> {
        Ok(self.table.get(&keys::like(post, user)).await?.is_some())
    }

    /// Pattern 14 for a page of posts: which of `posts` `user` likes (one BatchGetItem).
    pub async fn liked_among(&self, user: UserId, posts: &[PostId]) -> Result<HashSet<PostId>> {
        let keys: Vec<Key> = posts.iter().map(|post| keys::like(*post, user)).collect();
        self.table
            .batch_get(&keys)
            .await?
            .into_iter()
            .map(|item| from_item::<Like>(item).map(|like| like.post_id))
            .collect()
    }

    /// Pattern 15: likes of a post. `NotFound` if the post is gone.
    pub async fn likes(&self, post: PostId, page: &PageRequest) -> Result<Page<Like>> {
        self.require_post(post).await?;
        let partition = keys::post_partition(post);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::LIKE_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// Adds a comment, `comment_count + 1` and a `comment` notification to the post author
    /// (not for one's own post) in one transaction, which comes back with the comment.
    /// `NotFound` if the post is gone.
    pub async fn add_comment(&self, post: &Post, new: NewComment) -> Result<Notified<Comment>> {
        let table = &self.table.name;
        let comment = Comment {
            id: new_id(),
            post_id: post.id,
            author_id: new.author,
            text: new.text.into(),
            created_at: to_millis(new.created_at),
        };
        let mut cause = Transaction::new();
        // Comment ids are fresh, so any failed condition is the post being gone or hidden:
        // no item needs telling apart.
        cause.add_all([
            tx::put_new(
                table,
                to_item(
                    &keys::comment(post.id, comment.id),
                    &CommentRecord {
                        comment: &comment,
                        entity: "comment",
                    },
                )?,
            )?,
            post_counter(table, post.id, "comment_count", 1)?,
        ]);
        cause.add_all(no_block_between(table, comment.author_id, post.author_id)?);
        let notification = notification_items(
            table,
            &NewNotification {
                recipient: post.author_id,
                kind: NotificationKind::Comment,
                actor: comment.author_id,
                post_id: Some(post.id),
                comment_id: Some(comment.id),
                created_at: comment.created_at,
                dedup_key: None,
            },
        )?;
        let notification = self
            .transact_with_notification(cause, notification)
            .await
            .map_err(|failure| failure.into_error(post_not_found))?;
        Ok(Notified {
            outcome: comment,
            notification,
        })
    }

    /// Pattern 16: comments of a post, oldest first. `NotFound` if the post is gone.
    pub async fn comments(&self, post: PostId, page: &PageRequest) -> Result<Page<Comment>> {
        self.require_post(post).await?;
        let partition = keys::post_partition(post);
        let query = Query::new(KeyShape::Table, &partition).begins_with(keys::COMMENT_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// Deletes a comment (allowed to its author and to the post's author) and decrements
    /// the count, in one transaction. Errors: `NotFound`, `Forbidden`.
    pub async fn delete_comment(
        &self,
        post: &Post,
        comment: CommentId,
        caller: UserId,
    ) -> Result<()> {
        let table = &self.table.name;
        let key = keys::comment(post.id, comment);
        // The post author may delete any comment on their post; anyone else only their own,
        // which the condition checks on the comment itself.
        let delete = if caller == post.author_id {
            tx::delete(table, &key, Some("attribute_exists(pk)"))?
        } else {
            tx::delete_where(
                table,
                &key,
                "attribute_exists(pk) AND author_id = :caller",
                vec![(":caller", s(caller.to_string()))],
            )?
        };
        let mut transaction = Transaction::new();
        transaction.add(delete);
        let post_counter = transaction.add(comment_removal_counter(table, post.id, comment)?);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(()),
            Err(TransactFailure::Other(error)) => Err(error),
            Err(failure) if failure.failed(&post_counter) => Err(post_not_found()),

            Err(_) => match self.table.get(&key).await? {
                None => Err(comment_not_found()),
                Some(_) => Err(Error::forbidden(
                    "only the comment's author or the post's author can delete a comment",
                )),
            },
        }
    }
}
