//! Notifications: the write side every cause shares, and the reading side for
//! `api-notifications`.
//!
//! A notification is written in the SAME transaction as its cause (follow, follow
//! request, accepted request, like, comment, message), never for a self-action, and a
//! notification with a dedup key is written at most once per key (one like notification
//! per actor per post however often they like and unlike).

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use chrono::{DateTime, Utc};

use super::dynamo::{from_item, n, number_attribute, to_item, with_gsi2, Query};
use super::keys;
use super::page::{KeyShape, Page, PageRequest};
use super::transaction::{tx, TransactFailure, Transaction, TxItem};
use crate::domain::{
    new_id, CommentId, Notification, NotificationId, NotificationKind, PostId, UserId,
};
use crate::error::{Error, Result};
use crate::store::DynamoStore;

/// A notification about to be written alongside its cause.
#[derive(Debug, Clone)]
pub struct NewNotification {
    pub recipient: UserId,
    pub kind: NotificationKind,
    pub actor: UserId,
    pub post_id: Option<PostId>,
    pub comment_id: Option<CommentId>,
    pub created_at: DateTime<Utc>,
    /// At most one notification is ever written per (recipient, dedup key).
    pub dedup_key: Option<String>,
}

/// The transaction items of one notification.
#[derive(Debug, Default)]
pub struct NotificationItems {
    /// The notification with its unread-index entry, and the unread counter.
    pub items: Vec<TransactWriteItem>,
    /// The dedup marker (when the notification has a dedup key), whose condition fails
    /// when this notification was already sent: retry the cause's transaction without
    /// these items.
    pub dedup_marker: Option<TransactWriteItem>,
    /// The notification that will exist once the transaction commits.
    pub notification: Option<Notification>,
}

/// A write's outcome together with the notification its transaction wrote: `None` for a
/// self-action, a cause already notified (dedup key), or a write that changed nothing.
/// The REST function pushes that notification right after the commit (`writer_push`);
/// it derefs to the outcome, so callers that only need the outcome read it as before.
#[derive(Debug, Clone, PartialEq)]
pub struct Notified<T> {
    pub outcome: T,
    pub notification: Option<Notification>,
}

impl<T> Notified<T> {
    /// An outcome whose write notified nobody.
    pub fn silent(outcome: T) -> Self {
        Self {
            outcome,
            notification: None,
        }
    }

    pub fn into_outcome(self) -> T {
        self.outcome
    }
}

impl<T> std::ops::Deref for Notified<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.outcome
    }
}

/// Builds the items that write `new` (nothing for a self-action): the notification with
/// its unread-index entry, the recipient's unread counter, and the dedup marker.
pub fn notification_items(table: &str, new: &NewNotification) -> Result<NotificationItems> {
    if new.actor == new.recipient {
        return Ok(NotificationItems::default());
    }
    let notification = Notification {
        id: new_id(),
        recipient_id: new.recipient,
        kind: new.kind,
        actor_id: new.actor,
        post_id: new.post_id,
        comment_id: new.comment_id,
        // As stored (milliseconds), so the notification a write returns is the item the
        // stream carries, and an event built from either is the same event.
        created_at: crate::clock::to_millis(new.created_at),
        read: false,
    };
    let item = with_gsi2(
        to_item(
            &keys::notification(new.recipient, notification.id),
            &NotificationRecord {
                notification: &notification,
                entity: "notification",
            },
        )?,
        &keys::unread_notification_entry(new.recipient, notification.id),
    );
    let items = vec![
        tx::put_new(table, item)?,
        tx::update(
            table,
            &keys::notification_state(new.recipient),
            "ADD unread_count :one SET entity = :entity",
            None,
            &[],
            vec![
                (":one", n(1)),
                (":entity", super::dynamo::s("notification_state")),
            ],
        )?,
    ];
    let dedup_marker = match &new.dedup_key {
        Some(dedup_key) => Some(tx::put_new(
            table,
            to_item(
                &keys::notification_dedup(new.recipient, dedup_key),
                &DedupRecord {
                    notification_id: notification.id,
                    entity: "notification_dedup",
                },
            )?,
        )?),
        None => None,
    };
    Ok(NotificationItems {
        items,
        dedup_marker,
        notification: Some(notification),
    })
}

impl super::DynamoStore {
    /// Runs a cause's transaction with its notification appended. When the only failed
    /// condition is the notification's dedup marker (the recipient was already notified of
    /// this cause), the cause commits on its own. The handles of `cause`'s items name them
    /// in a returned failure. Returns the notification the commit wrote, if any.
    pub(crate) async fn transact_with_notification(
        &self,
        cause: Transaction,
        notification: NotificationItems,
    ) -> Result<Option<Notification>, TransactFailure> {
        let written = notification.notification;
        let Some(marker) = notification.dedup_marker else {
            let mut transaction = cause;
            transaction.add_all(notification.items);
            return self.table.transact(transaction).await.map(|()| written);
        };
        let cause_items = cause.added();
        let mut transaction = cause.clone();
        transaction.add_all(notification.items);
        let marker = transaction.add(marker);
        match self.table.transact(transaction).await {
            Ok(()) => Ok(written),
            Err(failure) if failure.failed(&marker) && !failure.failed(&cause_items) => {
                self.table.transact(cause).await.map(|()| None)
            }
            Err(failure) => Err(failure),
        }
    }
}

#[derive(serde::Serialize)]
pub(crate) struct NotificationRecord<'a> {
    #[serde(flatten)]
    pub notification: &'a Notification,
    pub entity: &'static str,
}

#[derive(serde::Serialize)]
struct DedupRecord {
    notification_id: NotificationId,
    entity: &'static str,
}

// ---------------------------------------------------------------------------------------
// Reading side
// ---------------------------------------------------------------------------------------

/// Notifications marked read per transaction by [`DynamoStore::mark_all_read`] (plus
/// one counter update; kept under the classic 25-item transaction limit).
pub const MARK_ALL_CHUNK: usize = 24;

/// Most unread notifications one mark-all-read walks (bounds one request's work; the
/// walk starts again from the newest on the next call).
pub const MARK_ALL_MAX: usize = 10_000;

/// Unread-index entries read per query of a walk. Larger than a transaction: a walk for one
/// actor's notifications (after a block) selects few of the entries it reads.
const MARK_WALK_PAGE: usize = 100;

/// Attempts at one transaction whose conditions found the state changed since it was read.
const ATTEMPTS: usize = 5;

/// Marks a notification read and takes it out of the unread index, on condition that it
/// exists and is unread.
fn mark_read_item(
    table: &str,
    recipient: UserId,
    notification: NotificationId,
) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::notification(recipient, notification),
        "SET #read = :true REMOVE gsi2pk, gsi2sk",
        Some("attribute_exists(pk) AND #read = :false"),
        &[("#read", "read")],
        vec![
            (":true", AttributeValue::Bool(true)),
            (":false", AttributeValue::Bool(false)),
        ],
    )
}

/// Takes `count` off the unread counter, on condition that it stays non-negative.
fn decrement_counter(table: &str, recipient: UserId, count: usize) -> Result<TransactWriteItem> {
    let count = i64::try_from(count).map_err(|e| Error::internal("unread decrement", e))?;
    tx::update(
        table,
        &keys::notification_state(recipient),
        "ADD unread_count :minus",
        Some("unread_count >= :count"),
        &[],
        vec![(":minus", n(-count)), (":count", n(count))],
    )
}

/// Sets a counter that has drifted below what is being marked read to zero (on condition
/// it is still below, so a notification that just arrived is not lost).
fn reset_counter(table: &str, recipient: UserId, below: usize) -> Result<TransactWriteItem> {
    let below = i64::try_from(below).map_err(|e| Error::internal("unread reset", e))?;
    tx::update(
        table,
        &keys::notification_state(recipient),
        "SET unread_count = :zero",
        Some("attribute_not_exists(unread_count) OR unread_count < :below"),
        &[],
        vec![(":zero", n(0)), (":below", n(below))],
    )
}

impl crate::store::DynamoStore {
    /// Marks `ids` read and decrements the counter by how many were unread, in one
    /// transaction; notifications found already read (a concurrent mark) are dropped and
    /// the rest retried. Returns how many were marked.
    async fn mark_read_chunk(&self, recipient: UserId, ids: &[NotificationId]) -> Result<usize> {
        let table = &self.table.name;
        let mut pending: Vec<NotificationId> = ids.to_vec();
        let mut counter_drifted = false;
        // Each failed round drops at least one notification or flips the counter mode.
        for _ in 0..ids.len() + ATTEMPTS {
            if pending.is_empty() {
                return Ok(0);
            }
            let mut transaction = Transaction::new();
            let marks = pending
                .iter()
                .map(|id| Ok(transaction.add(mark_read_item(table, recipient, *id)?)))
                .collect::<Result<Vec<TxItem>>>()?;
            let counter = transaction.add(if counter_drifted {
                reset_counter(table, recipient, pending.len())?
            } else {
                decrement_counter(table, recipient, pending.len())?
            });
            match self.table.transact(transaction).await {
                Ok(()) => return Ok(pending.len()),
                Err(TransactFailure::Other(error)) => return Err(error),
                Err(failure) => {
                    let before = pending.len();
                    let mut marks = marks.iter();
                    pending.retain(|_| marks.next().is_some_and(|mark| !failure.failed(mark)));
                    if pending.len() == before && failure.failed(&counter) {
                        // Only the counter disagreed: repair it (or, if a notification just
                        // raised it, go back to decrementing).
                        counter_drifted = !counter_drifted;
                    }
                }
            }
        }
        Err(Error::conflict(
            "notifications changed while being marked read; try again",
        ))
    }
}

impl DynamoStore {
    /// `recipient`'s notifications, newest first (pattern 21), or only the unread ones
    /// through the sparse unread index (pattern 22).
    pub async fn notifications(
        &self,
        recipient: UserId,
        unread_only: bool,
        page: &PageRequest,
    ) -> Result<Page<Notification>> {
        if unread_only {
            let partition = keys::unread_partition(recipient);
            let query = Query::new(KeyShape::Gsi2, &partition).newest_first();
            self.table.query_page_as(&query, page).await
        } else {
            let partition = keys::user_pk(recipient);
            let query = Query::new(KeyShape::Table, &partition)
                .begins_with(keys::NOTIFICATION_PREFIX)
                .newest_first();
            self.table.query_page_as(&query, page).await
        }
    }

    /// The unread counter (pattern 23); never negative.
    pub async fn unread_count(&self, recipient: UserId) -> Result<i64> {
        let count = match self.table.get(&keys::notification_state(recipient)).await? {
            Some(item) => number_attribute(&item, "unread_count")?,
            None => 0,
        };
        Ok(count.max(0))
    }

    /// Marks one of `recipient`'s notifications read. Already read is fine; a notification
    /// that does not exist in `recipient`'s partition (unknown, or someone else's) is
    /// `NotFound`.
    pub async fn mark_read(&self, recipient: UserId, notification: NotificationId) -> Result<()> {
        if self.mark_read_chunk(recipient, &[notification]).await? == 1 {
            return Ok(());
        }
        // Its condition failed: already read (fine), or not in this user's partition.
        match self
            .table
            .get(&keys::notification(recipient, notification))
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Error::not_found("notification not found")),
        }
    }

    /// Marks every unread notification read; returns how many this call marked.
    pub async fn mark_all_read(&self, recipient: UserId) -> Result<usize> {
        self.mark_unread_read_where(recipient, |_| true).await
    }

    /// Marks read the unread notifications of `recipient` whose actor is `actor` — a block
    /// between the two hides them from the list, so they must not count as unread either.
    /// Returns how many this call marked (the same walk bound as [`Self::mark_all_read`]).
    pub async fn mark_read_from(&self, recipient: UserId, actor: UserId) -> Result<usize> {
        self.mark_unread_read_where(recipient, |notification| notification.actor_id == actor)
            .await
    }
}

impl crate::store::DynamoStore {
    /// Walks `recipient`'s unread index, newest first, [`MARK_WALK_PAGE`] entries per
    /// query, and marks read the notifications `selected` picks, [`MARK_ALL_CHUNK`] per
    /// transaction; at most [`MARK_ALL_MAX`] entries are walked per call.
    async fn mark_unread_read_where(
        &self,
        recipient: UserId,
        selected: impl Fn(&Notification) -> bool + Send + Sync,
    ) -> Result<usize> {
        let partition = keys::unread_partition(recipient);
        let query = Query::new(KeyShape::Gsi2, &partition).newest_first();
        let mut page = PageRequest::first(MARK_WALK_PAGE);
        let mut marked = 0;
        let mut walked = 0;
        while walked < MARK_ALL_MAX {
            let unread = self.table.query_page(&query, &page).await?;
            walked += unread.items.len();
            let mut ids = Vec::with_capacity(unread.items.len());
            for item in unread.items {
                let notification: Notification = from_item(item)?;
                if selected(&notification) {
                    ids.push(notification.id);
                }
            }
            for chunk in ids.chunks(MARK_ALL_CHUNK) {
                marked += self.mark_read_chunk(recipient, chunk).await?;
            }
            // Marked entries leave the index; the cursor (a position, not an item) still
            // continues after them.
            match unread.next_cursor {
                Some(cursor) => page = PageRequest::after(MARK_WALK_PAGE, cursor),
                None => break,
            }
        }
        Ok(marked)
    }
}
