//! Sending a message: one read of what the send depends on, then ONE transaction built by
//! small named builders (see the module docs of `messages`), whose failed conditions say
//! whether to read again.

use aws_sdk_dynamodb::types::TransactWriteItem;
use serde::Serialize;

use super::{
    attribute, message_status, ClientMessageRecord, NewMessage, SentMessage, ATTEMPTS, ITEM_ABSENT,
    MAX_PENDING_REQUEST_MESSAGES,
};
use crate::domain::{
    format_time, new_id, Conversation, ConversationState, Message, MessageId, MessageStatus,
    Notification, NotificationKind, User, UserId,
};
use crate::error::{Error, Result};
use crate::store::dynamo::{from_item, item_key, n, s, to_item, Item};
use crate::store::keys::{self, Key};
use crate::store::notifications::{notification_items, NewNotification, NotificationItems};
use crate::store::transaction::{tx, TransactFailure, Transaction, TxItem, TxItems};
use crate::store::DynamoStore;

#[derive(Serialize)]
struct MessageRecord<'a> {
    #[serde(flatten)]
    message: &'a Message,
    entity: &'static str,
}

/// What a send needs to know before building its transaction, from one BatchGetItem.
#[derive(Debug)]
struct SendContext {
    recipient: Option<User>,
    recipient_follows_sender: bool,
    blocked: bool,
    sender_state: Option<ConversationState>,
    recipient_state: Option<ConversationState>,
    /// The message an earlier attempt with the same client id stored.
    replayed: Option<MessageId>,
}

/// Why a send transaction did not commit.
enum SendFailure {
    /// Read again and rebuild: the client id was just used, or the recipient's state moved.
    Reread,
    Fatal(Error),
}

/// Removes and returns the item with `key` from a BatchGetItem result.
fn take_item(items: &mut Vec<Item>, key: &Key) -> Option<Item> {
    let position = items
        .iter()
        .position(|item| item_key(item).is_ok_and(|found| found == *key))?;
    Some(items.swap_remove(position))
}

/// Writes `owner`'s view of the thread after `message`: last message, `state`, and
/// `unread_delta` added to the unread count. An accepted conversation gets its recency entry
/// rewritten (it moves to the top of the list); a requested one has none (it is listed
/// among the message requests instead) and is only written while the owner has not
/// accepted the thread, so a send that raced an accept fails and is re-read.
fn conversation_update(
    table: &str,
    owner: UserId,
    other: UserId,
    message: &Message,
    state: ConversationState,
    unread_delta: i64,
) -> Result<TransactWriteItem> {
    let mut sets = vec![
        "user_id = :owner",
        "other_user_id = :other",
        "last_message = :message",
        "updated_at = :at",
        "#state = :state",
        "entity = :entity",
    ];
    let mut values = vec![
        (":owner", s(owner.to_string())),
        (":other", s(other.to_string())),
        (":message", attribute(message)?),
        (":at", s(format_time(message.created_at))),
        (":state", attribute(&state)?),
        (":entity", s("conversation")),
        (":delta", n(unread_delta)),
    ];
    let condition = match state {
        ConversationState::Accepted => {
            let recency = keys::conversation_recency_entry(owner, message.id);
            sets.push("gsi1pk = :gsi1pk");
            sets.push("gsi1sk = :gsi1sk");
            values.push((":gsi1pk", s(recency.pk)));
            values.push((":gsi1sk", s(recency.sk)));
            None
        }
        ConversationState::Requested => Some("attribute_not_exists(pk) OR #state = :state"),
    };
    tx::update(
        table,
        &keys::conversation(owner, other),
        &format!("SET {} ADD unread_count :delta", sets.join(", ")),
        condition,
        &[("#state", "state")],
        values,
    )
}

/// The request item of a message request: created with the first request message, its
/// `message_count` bounded by [`MAX_PENDING_REQUEST_MESSAGES`].
fn request_update(table: &str, message: &Message) -> Result<TransactWriteItem> {
    tx::update(
        table,
        &keys::message_request(message.to, message.from),
        "SET #from = :from, #to = :to, last_message = :message, entity = :entity, \
         created_at = if_not_exists(created_at, :at) ADD message_count :one",
        Some("attribute_not_exists(message_count) OR message_count < :max"),
        &[("#from", "from"), ("#to", "to")],
        vec![
            (":from", s(message.from.to_string())),
            (":to", s(message.to.to_string())),
            (":message", attribute(message)?),
            (":entity", s("message_request")),
            (":at", s(format_time(message.created_at))),
            (":one", n(1)),
            (":max", n(MAX_PENDING_REQUEST_MESSAGES)),
        ],
    )
}

/// The items of a send transaction whose conditions tell why it failed.
struct SendItems {
    /// No block either way.
    blocks: TxItems,
    /// The idempotency record of the client id (taken: a concurrent send used it).
    client_record: Option<TxItem>,
    /// The recipient's conversation (its state moved since it was read).
    recipient_conversation: TxItem,
    /// The request item, below [`MAX_PENDING_REQUEST_MESSAGES`] (request messages only).
    request: Option<TxItem>,
}

impl SendItems {
    /// What a failed send transaction means.
    fn explain(&self, failure: &TransactFailure) -> SendFailure {
        if failure.failed(&self.blocks) {
            SendFailure::Fatal(blocked())
        } else if failure.failed(&self.client_record)
            || failure.failed(&self.recipient_conversation)
        {
            SendFailure::Reread
        } else if failure.failed(&self.request) {
            SendFailure::Fatal(Error::forbidden(format!(
                "at most {MAX_PENDING_REQUEST_MESSAGES} messages may wait in a message request"
            )))
        } else {
            SendFailure::Fatal(Error::invariant(
                "send transaction failed an unexpected condition",
            ))
        }
    }
}

/// The send transaction of `message` (see the module docs), without the notification.
fn send_transaction(
    table: &str,
    new: &NewMessage,
    context: &SendContext,
    message: &Message,
) -> Result<(Transaction, SendItems)> {
    let (from, to) = (message.from, message.to);
    let mut transaction = Transaction::new();
    let blocks = transaction.add_all([
        tx::condition_check(table, &keys::block(from, to), ITEM_ABSENT, vec![])?,
        tx::condition_check(table, &keys::block(to, from), ITEM_ABSENT, vec![])?,
    ]);
    let client_record = match &new.client_message_id {
        Some(client_id) => {
            Some(transaction.add(client_record_put(table, message, client_id.as_str())?))
        }
        None => None,
    };
    transaction.add(tx::put_new(
        table,
        to_item(
            &keys::message(from, to, message.id),
            &MessageRecord {
                message,
                entity: "message",
            },
        )?,
    )?);
    add_sender_side(&mut transaction, table, context, message)?;
    let (recipient_conversation, request) =
        add_recipient_side(&mut transaction, table, context, message)?;
    let items = SendItems {
        blocks,
        client_record,
        recipient_conversation,
        request,
    };
    Ok((transaction, items))
}

/// The idempotency record of `client_id`, pointing at `message`.
fn client_record_put(table: &str, message: &Message, client_id: &str) -> Result<TransactWriteItem> {
    tx::put_new(
        table,
        to_item(
            &keys::client_message(message.from, message.to, client_id),
            &ClientMessageRecord {
                message_id: message.id,
                entity: "client_message".into(),
            },
        )?,
    )
}

/// Writing is accepting: the sender's side is always an accepted, listed conversation, and
/// a request the sender had from the recipient is answered.
fn add_sender_side(
    transaction: &mut Transaction,
    table: &str,
    context: &SendContext,
    message: &Message,
) -> Result<()> {
    let (from, to) = (message.from, message.to);
    transaction.add(conversation_update(
        table,
        from,
        to,
        message,
        ConversationState::Accepted,
        0,
    )?);
    if context.sender_state == Some(ConversationState::Requested) {
        transaction.add(tx::delete(table, &keys::message_request(from, to), None)?);
    }
    Ok(())
}

/// The recipient's conversation (one more unread) and, for a request message, the request
/// item; for a sent message, a request the recipient had from the sender is answered.
/// Returns the conversation's and the request's handles.
fn add_recipient_side(
    transaction: &mut Transaction,
    table: &str,
    context: &SendContext,
    message: &Message,
) -> Result<(TxItem, Option<TxItem>)> {
    let (from, to) = (message.from, message.to);
    match message.status {
        MessageStatus::Requested => {
            // Fails if the recipient accepted meanwhile: then re-read and send as `sent`.
            let conversation = transaction.add(conversation_update(
                table,
                to,
                from,
                message,
                ConversationState::Requested,
                1,
            )?);
            let request = transaction.add(request_update(table, message)?);
            Ok((conversation, Some(request)))
        }
        MessageStatus::Sent => {
            let conversation = transaction.add(conversation_update(
                table,
                to,
                from,
                message,
                ConversationState::Accepted,
                1,
            )?);
            if context.recipient_state == Some(ConversationState::Requested) {
                // The recipient now follows the sender: the request is answered.
                transaction.add(tx::delete(table, &keys::message_request(to, from), None)?);
            }
            Ok((conversation, None))
        }
    }
}

/// The recipient's `message` notification: one per message request (dedup key), one per
/// message otherwise.
fn message_notification(table: &str, message: &Message) -> Result<NotificationItems> {
    notification_items(
        table,
        &NewNotification {
            recipient: message.to,
            kind: NotificationKind::Message,
            actor: message.from,
            post_id: None,
            comment_id: None,
            created_at: message.created_at,
            dedup_key: (message.status == MessageStatus::Requested)
                .then(|| keys::message_request_dedup_key(message.from)),
        },
    )
}

impl DynamoStore {
    /// One BatchGetItem: the recipient, whether they follow the sender, blocks both ways,
    /// both conversation states, and the idempotency record of the client id.
    async fn send_context(&self, new: &NewMessage) -> Result<SendContext> {
        let (from, to) = (new.from, new.to);
        let profile = keys::user_profile(to);
        let follow = keys::follow(to, from);
        let blocks = [keys::block(from, to), keys::block(to, from)];
        let sender_conversation = keys::conversation(from, to);
        let recipient_conversation = keys::conversation(to, from);
        let client_record = new
            .client_message_id
            .as_ref()
            .map(|id| keys::client_message(from, to, id.as_str()));
        let mut wanted = vec![
            profile.clone(),
            follow.clone(),
            blocks[0].clone(),
            blocks[1].clone(),
            sender_conversation.clone(),
            recipient_conversation.clone(),
        ];
        wanted.extend(client_record.clone());
        let mut found = self.table.batch_get(&wanted).await?;

        let state_of = |item: Option<Item>| -> Result<Option<ConversationState>> {
            item.map(|item| from_item::<Conversation>(item).map(|c| c.state))
                .transpose()
        };
        Ok(SendContext {
            recipient: take_item(&mut found, &profile).map(from_item).transpose()?,
            recipient_follows_sender: take_item(&mut found, &follow).is_some(),
            blocked: blocks
                .iter()
                .any(|key| take_item(&mut found, key).is_some()),
            sender_state: state_of(take_item(&mut found, &sender_conversation))?,
            recipient_state: state_of(take_item(&mut found, &recipient_conversation))?,
            replayed: match client_record {
                Some(key) => take_item(&mut found, &key)
                    .map(from_item::<ClientMessageRecord>)
                    .transpose()?
                    .map(|record| record.message_id),
                None => None,
            },
        })
    }

    /// Builds and runs the send transaction for `message`, with the recipient's
    /// notification (left out when the one-per-request notification was already sent).
    async fn commit_send(
        &self,
        new: &NewMessage,
        context: &SendContext,
        message: &Message,
    ) -> Result<Option<Notification>, SendFailure> {
        let table = &self.table.name;
        let (transaction, items) =
            send_transaction(table, new, context, message).map_err(SendFailure::Fatal)?;
        let notification = message_notification(table, message).map_err(SendFailure::Fatal)?;
        match self
            .transact_with_notification(transaction, notification)
            .await
        {
            Ok(notification) => Ok(notification),
            Err(TransactFailure::Other(error)) => Err(SendFailure::Fatal(error)),
            Err(failure) => Err(items.explain(&failure)),
        }
    }

    async fn get_message(&self, a: UserId, b: UserId, id: MessageId) -> Result<Option<Message>> {
        self.table.get_as(&keys::message(a, b, id)).await
    }
}

fn blocked() -> Error {
    Error::forbidden("you cannot message this user")
}

impl DynamoStore {
    /// Sends `new` (see the module docs). `NotFound` for an unknown recipient, `Forbidden`
    /// when a block stands between the two or the pending request is full.
    pub async fn send_message(&self, new: NewMessage) -> Result<SentMessage> {
        for _ in 0..ATTEMPTS {
            let context = self.send_context(&new).await?;
            if let Some(id) = context.replayed {
                let message = self
                    .get_message(new.from, new.to, id)
                    .await?
                    .ok_or_else(|| {
                        Error::invariant("idempotency record points at a missing message")
                    })?;
                return Ok(SentMessage {
                    message,
                    created: false,
                    notification: None,
                });
            }
            let Some(recipient) = &context.recipient else {
                return Err(Error::not_found("user not found"));
            };
            if context.blocked {
                return Err(blocked());
            }
            let message = Message {
                id: new_id(),
                from: new.from,
                to: new.to,
                text: new.text.to_string(),
                created_at: new.created_at,
                status: message_status(
                    recipient.is_private,
                    context.recipient_follows_sender,
                    context.recipient_state == Some(ConversationState::Accepted),
                ),
                client_message_id: new.client_message_id.clone().map(String::from),
            };
            match self.commit_send(&new, &context, &message).await {
                Ok(notification) => {
                    return Ok(SentMessage {
                        message,
                        created: true,
                        notification,
                    })
                }
                Err(SendFailure::Fatal(error)) => return Err(error),
                Err(SendFailure::Reread) => continue,
            }
        }
        Err(Error::conflict(
            "the conversation changed while the message was being sent; try again",
        ))
    }
}
