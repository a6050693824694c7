//! Notifications: the write side every cause shares, and the reading side for
//! `api-notifications`.
//!
//! A notification is written in the SAME transaction as its cause (follow, follow
//! request, accepted request, like, comment, message), never for a self-action, and a
//! notification with a dedup key is written at most once per key (one like notification
//! per actor per post however often they like and unlike).

use aws_sdk_dynamodb::types::TransactWriteItem;
use chrono::{DateTime, Utc};

use super::dynamo::{n, to_item, tx, with_gsi2};
use super::keys;
use crate::domain::{new_id, CommentId, Notification, NotificationKind, PostId, UserId};
use crate::error::Result;

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
    pub items: Vec<TransactWriteItem>,
    /// Index within `items` of the dedup marker, whose condition fails when this
    /// notification was already sent: retry the cause's transaction without these items.
    pub dedup_marker: Option<usize>,
    /// The notification that will exist once the transaction commits.
    pub notification: Option<Notification>,
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
        created_at: new.created_at,
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
    let mut items = vec![
        tx::put_new(table, item)?,
        tx::update(
            table,
            &keys::notification_state(new.recipient),
            "ADD unread_count :one SET entity = :entity",
            None,
            &[],
            vec![(":one", n(1)), (":entity", super::dynamo::s("notification_state"))],
        )?,
    ];
    let mut dedup_marker = None;
    if let Some(dedup_key) = &new.dedup_key {
        dedup_marker = Some(items.len());
        items.push(tx::put_new(
            table,
            to_item(
                &keys::notification_dedup(new.recipient, dedup_key),
                &DedupRecord {
                    notification_id: notification.id,
                    entity: "notification_dedup",
                },
            )?,
        )?);
    }
    Ok(NotificationItems {
        items,
        dedup_marker,
        notification: Some(notification),
    })
}

#[derive(serde::Serialize)]
pub(crate) struct NotificationRecord<'a> {
    #[serde(flatten)]
    pub notification: &'a Notification,
    pub entity: &'static str,
}

#[derive(serde::Serialize)]
struct DedupRecord {
    notification_id: uuid::Uuid,
    entity: &'static str,
}
