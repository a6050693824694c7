//! Direct messages: threads, each user's conversations, and message requests.
//!
//! A thread between two users is one partition (`THREAD#{low}#{high}`) holding its messages
//! and the senders' idempotency records. Each side has its own conversation item (last
//! message, unread count, state) whose GSI 1 recency entry lists conversations newest
//! first. A message to a private account that does not follow the sender and has not
//! accepted the thread is a *message request*: the recipient's conversation is `requested`
//! and has no recency entry (so it is not in their conversations list), and a
//! `message_request` item in the recipient's partition lists it until they accept (or write
//! back) or reject it.
//!
//! Sending is ONE transaction: no block either way (condition checks, so a block that lands
//! while the message is being sent still wins), the idempotency record, the message, both
//! conversations, the request, and the recipient's notification. Anything read beforehand
//! (privacy, follow, conversation states) only picks the transaction's shape; its
//! conditions make a stale read fail and be re-read instead of writing a wrong state.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dynamo::{from_item, item_key, n, s, to_item, tx, Item, Query, TransactFailure};
use super::keys::{self, Key};
use super::notifications::{notification_items, NewNotification};
use super::page::{KeyShape, Page, PageRequest};
use super::DynamoStore;
use crate::clock::to_millis;
use crate::domain::{
    format_time, new_id, ClientMessageId, Conversation, ConversationState, Message, MessageId,
    MessageRequest, MessageStatus, MessageText, Notification, NotificationKind, User, UserId,
};
use crate::error::{Error, Result};

/// Most messages a sender may have waiting in one message request. Bounds what a stranger
/// can push into someone's requests, and what rejecting a request has to delete.
pub const MAX_PENDING_REQUEST_MESSAGES: i64 = 20;

/// Attempts at a send or accept whose conditions found the thread changed since it was read.
const ATTEMPTS: usize = 4;

/// Most items of a rejected thread read for deletion: the pending messages and their
/// idempotency records, with room to spare.
const MAX_REJECTED_THREAD_ITEMS: usize = 4 * MAX_PENDING_REQUEST_MESSAGES as usize;

const ITEM_ABSENT: &str = "attribute_not_exists(pk)";

/// A message ready to be stored: constructed only through [`NewMessage::new`], so its text
/// and client id are always valid whoever sends it (REST or WebSocket).
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    from: UserId,
    to: UserId,
    text: MessageText,
    client_message_id: Option<ClientMessageId>,
    created_at: DateTime<Utc>,
}

impl NewMessage {
    /// Validates the text (1–4000 characters, trimmed) and the optional client id, and
    /// rejects messages to oneself.
    pub fn new(
        from: UserId,
        to: UserId,
        text: &str,
        client_message_id: Option<&str>,
        created_at: DateTime<Utc>,
    ) -> Result<Self> {
        if from == to {
            return Err(Error::validation("you cannot message yourself"));
        }
        Ok(Self {
            from,
            to,
            text: MessageText::parse(text)?,
            client_message_id: client_message_id.map(ClientMessageId::parse).transpose()?,
            created_at: to_millis(created_at),
        })
    }
}

/// The outcome of a send.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    pub message: Message,
    /// `false` when the client id had already been used: `message` is the one stored by
    /// the first attempt and nothing new was written.
    pub created: bool,
    /// The recipient's `message` notification written with it (none on a replay, or for a
    /// further message of a request the recipient was already notified of).
    pub notification: Option<Notification>,
}

/// The status policy: a message is a request when the recipient is private, does not
/// follow the sender, and has not accepted the thread (accepting, or writing back, does).
pub fn message_status(
    recipient_is_private: bool,
    recipient_follows_sender: bool,
    recipient_accepted_thread: bool,
) -> MessageStatus {
    if recipient_is_private && !recipient_follows_sender && !recipient_accepted_thread {
        MessageStatus::Requested
    } else {
        MessageStatus::Sent
    }
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Sends `new` (see the module docs). `NotFound` for an unknown recipient, `Forbidden`
    /// when a block stands between the two or the pending request is full.
    async fn send_message(&self, new: NewMessage) -> Result<SentMessage>;

    /// `owner`'s accepted conversations, most recent first (pattern 17). Requests waiting
    /// for `owner` are not in this list (see [`MessageStore::message_requests`]).
    async fn conversations(&self, owner: UserId, page: &PageRequest) -> Result<Page<Conversation>>;

    /// Messages between `viewer` and `other`, newest first (pattern 18). Only ever reads the
    /// thread `viewer` is part of.
    async fn messages(
        &self,
        viewer: UserId,
        other: UserId,
        page: &PageRequest,
    ) -> Result<Page<Message>>;

    /// Sets `owner`'s unread count of the conversation with `other` to zero. `NotFound` when
    /// there is no such conversation.
    async fn mark_conversation_read(&self, owner: UserId, other: UserId) -> Result<()>;

    /// Message requests waiting for `recipient` (pattern 20), by sender id.
    async fn message_requests(
        &self,
        recipient: UserId,
        page: &PageRequest,
    ) -> Result<Page<MessageRequest>>;

    /// `recipient` accepts `from`'s request: the request is gone and the thread is an
    /// ordinary conversation. `NotFound` when no request is pending.
    async fn accept_message_request(&self, recipient: UserId, from: UserId) -> Result<()>;

    /// `recipient` rejects `from`'s request: the pending thread (its messages, both
    /// conversations, the request and the sender's idempotency records) is deleted.
    /// `NotFound` when no request is pending.
    async fn reject_message_request(&self, recipient: UserId, from: UserId) -> Result<()>;

    /// Whether `owner` has accepted their thread with `other` (their conversation exists
    /// and is `accepted`): the third input of [`message_status`], for callers that need the
    /// policy without sending (the WebSocket `typing` action).
    async fn thread_accepted(&self, owner: UserId, other: UserId) -> Result<bool>;
}

// ---- records ---------------------------------------------------------------------------

#[derive(Serialize)]
struct MessageRecord<'a> {
    #[serde(flatten)]
    message: &'a Message,
    entity: &'static str,
}

#[derive(Serialize, Deserialize)]
struct ClientMessageRecord {
    message_id: MessageId,
    entity: String,
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

fn attribute<T: Serialize>(value: &T) -> Result<AttributeValue> {
    Ok(serde_dynamo::to_attribute_value(value)?)
}

fn no_request() -> Error {
    Error::not_found("no message request from this user")
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
        let (from, to) = (message.from, message.to);
        let build = || -> Result<_> {
            let mut items = vec![
                tx::condition_check(table, &keys::block(from, to), ITEM_ABSENT, vec![])?,
                tx::condition_check(table, &keys::block(to, from), ITEM_ABSENT, vec![])?,
            ];
            let blocks = 0..2;
            let mut client_index = None;
            if let Some(client_id) = &new.client_message_id {
                client_index = Some(items.len());
                items.push(tx::put_new(
                    table,
                    to_item(
                        &keys::client_message(from, to, client_id.as_str()),
                        &ClientMessageRecord {
                            message_id: message.id,
                            entity: "client_message".into(),
                        },
                    )?,
                )?);
            }
            items.push(tx::put_new(
                table,
                to_item(
                    &keys::message(from, to, message.id),
                    &MessageRecord {
                        message,
                        entity: "message",
                    },
                )?,
            )?);
            // Writing is accepting: the sender's side is always an accepted, listed
            // conversation, and a request the sender had from the recipient is answered.
            items.push(conversation_update(
                table,
                from,
                to,
                message,
                ConversationState::Accepted,
                0,
            )?);
            if context.sender_state == Some(ConversationState::Requested) {
                items.push(tx::delete(table, &keys::message_request(from, to), None)?);
            }
            let recipient_index = items.len();
            let mut request_index = None;
            match message.status {
                MessageStatus::Requested => {
                    // Fails if the recipient accepted meanwhile: then re-read and send as `sent`.
                    items.push(conversation_update(
                        table,
                        to,
                        from,
                        message,
                        ConversationState::Requested,
                        1,
                    )?);
                    request_index = Some(items.len());
                    items.push(request_update(table, message)?);
                }
                MessageStatus::Sent => {
                    items.push(conversation_update(
                        table,
                        to,
                        from,
                        message,
                        ConversationState::Accepted,
                        1,
                    )?);
                    if context.recipient_state == Some(ConversationState::Requested) {
                        // The recipient now follows the sender: the request is answered.
                        items.push(tx::delete(table, &keys::message_request(to, from), None)?);
                    }
                }
            }
            let notification = notification_items(
                table,
                &NewNotification {
                    recipient: to,
                    kind: NotificationKind::Message,
                    actor: from,
                    post_id: None,
                    comment_id: None,
                    created_at: message.created_at,
                    dedup_key: (message.status == MessageStatus::Requested)
                        .then(|| keys::message_request_dedup_key(from)),
                },
            )?;
            Ok((
                items,
                notification,
                blocks,
                client_index,
                recipient_index,
                request_index,
            ))
        };
        let (items, notification, blocks, client_index, recipient_index, request_index) =
            build().map_err(SendFailure::Fatal)?;
        let failure = match self.transact_with_notification(items, notification).await {
            Ok(notification) => return Ok(notification),
            Err(TransactFailure::Other(error)) => return Err(SendFailure::Fatal(error)),
            Err(failure) => failure,
        };
        let failed_at =
            |index: Option<usize>| index.is_some_and(|i| failure.condition_failed_at(i));
        Err(if blocks.clone().any(|i| failure.condition_failed_at(i)) {
            SendFailure::Fatal(blocked())
        } else if failed_at(client_index) || failed_at(Some(recipient_index)) {
            SendFailure::Reread
        } else if failed_at(request_index) {
            SendFailure::Fatal(Error::forbidden(format!(
                "at most {MAX_PENDING_REQUEST_MESSAGES} messages may wait in a message request"
            )))
        } else {
            SendFailure::Fatal(Error::invariant(
                "send transaction failed an unexpected condition",
            ))
        })
    }

    async fn get_message(&self, a: UserId, b: UserId, id: MessageId) -> Result<Option<Message>> {
        self.table.get_as(&keys::message(a, b, id)).await
    }
}

fn blocked() -> Error {
    Error::forbidden("you cannot message this user")
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn send_message(&self, new: NewMessage) -> Result<SentMessage> {
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

    async fn conversations(&self, owner: UserId, page: &PageRequest) -> Result<Page<Conversation>> {
        let partition = keys::user_pk(owner);
        let query = Query::new(KeyShape::Gsi1, &partition)
            .begins_with(keys::CONVERSATION_RECENCY_PREFIX)
            .newest_first();
        self.table.query_page_as(&query, page).await
    }

    async fn messages(
        &self,
        viewer: UserId,
        other: UserId,
        page: &PageRequest,
    ) -> Result<Page<Message>> {
        let partition = keys::thread_partition(viewer, other);
        let query = Query::new(KeyShape::Table, &partition)
            .begins_with(keys::MESSAGE_PREFIX)
            .newest_first();
        self.table.query_page_as(&query, page).await
    }

    async fn mark_conversation_read(&self, owner: UserId, other: UserId) -> Result<()> {
        let marked = self
            .table
            .update_if(
                &keys::conversation(owner, other),
                "SET unread_count = :zero",
                "attribute_exists(pk)",
                &[],
                vec![(":zero", n(0))],
            )
            .await?;
        if marked {
            Ok(())
        } else {
            Err(Error::not_found("conversation not found"))
        }
    }

    async fn message_requests(
        &self,
        recipient: UserId,
        page: &PageRequest,
    ) -> Result<Page<MessageRequest>> {
        let partition = keys::user_pk(recipient);
        let query =
            Query::new(KeyShape::Table, &partition).begins_with(keys::MESSAGE_REQUEST_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    async fn accept_message_request(&self, recipient: UserId, from: UserId) -> Result<()> {
        let table = &self.table.name;
        let request_key = keys::message_request(recipient, from);
        let conversation_key = keys::conversation(recipient, from);
        for _ in 0..ATTEMPTS {
            // A pending request always comes with the recipient's `requested` conversation
            // (they are written and removed together), so this one read answers "is there a
            // request"; the transaction's conditions catch any change since.
            let conversation: Option<Conversation> = self.table.get_as(&conversation_key).await?;
            let Some(conversation) =
                conversation.filter(|c| c.state == ConversationState::Requested)
            else {
                return Err(no_request());
            };
            let last = conversation
                .last_message
                .as_ref()
                .ok_or_else(|| Error::invariant("requested conversation without a message"))?;
            let recency = keys::conversation_recency_entry(recipient, last.id);
            let items = vec![
                tx::delete(table, &request_key, Some("attribute_exists(pk)"))?,
                // The recency entry is keyed by the last message: if another arrived since
                // the read, this fails and the accept re-reads.
                tx::update(
                    table,
                    &conversation_key,
                    "SET #state = :accepted, gsi1pk = :gsi1pk, gsi1sk = :gsi1sk",
                    Some("#state = :requested AND last_message.id = :last"),
                    &[("#state", "state")],
                    vec![
                        (":accepted", attribute(&ConversationState::Accepted)?),
                        (":requested", attribute(&ConversationState::Requested)?),
                        (":gsi1pk", s(recency.pk)),
                        (":gsi1sk", s(recency.sk)),
                        (":last", s(last.id.to_string())),
                    ],
                )?,
            ];
            match self.table.transact(items).await {
                Ok(()) => return Ok(()),
                Err(failure) if failure.condition_failed_at(0) => return Err(no_request()),
                Err(TransactFailure::Other(error)) => return Err(error),
                Err(TransactFailure::ConditionFailed { .. }) => continue,
            }
        }
        Err(Error::conflict(
            "the conversation changed while accepting; try again",
        ))
    }

    async fn thread_accepted(&self, owner: UserId, other: UserId) -> Result<bool> {
        let conversation: Option<Conversation> =
            self.table.get_as(&keys::conversation(owner, other)).await?;
        Ok(conversation.is_some_and(|c| c.state == ConversationState::Accepted))
    }

    async fn reject_message_request(&self, recipient: UserId, from: UserId) -> Result<()> {
        let table = &self.table.name;
        let request_key = keys::message_request(recipient, from);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let request: MessageRequest = self
                .table
                .get_as(&request_key)
                .await?
                .ok_or_else(no_request)?;
            let last_id = request
                .last_message
                .as_ref()
                .map(|m| m.id)
                .ok_or_else(|| Error::invariant("message request without a message"))?;
            let last_value = || vec![(":last", s(last_id.to_string()))];
            // The visible state goes first and atomically, on condition that no message
            // arrived since the read (a later message starts a new request and survives).
            let items = vec![
                tx::delete_where(table, &request_key, "last_message.id = :last", last_value())?,
                tx::delete(table, &keys::conversation(recipient, from), None)?,
                tx::delete_where(
                    table,
                    &keys::conversation(from, recipient),
                    "attribute_not_exists(pk) OR last_message.id = :last",
                    last_value(),
                )?,
            ];
            match self.table.transact(items).await {
                Ok(()) => {
                    last = Some(last_id);
                    break;
                }
                Err(TransactFailure::Other(error)) => return Err(error),
                Err(TransactFailure::ConditionFailed { .. }) => continue,
            }
        }
        let Some(last) = last else {
            return Err(Error::conflict(
                "the conversation changed while rejecting; try again",
            ));
        };
        self.delete_pending_thread(recipient, from, last).await
    }
}

impl DynamoStore {
    /// Deletes what a rejected request left in the thread: `from`'s messages up to and
    /// including `last`, and their idempotency records (records first, so a retry never
    /// finds a record whose message is gone). Bounded: a pending request holds at most
    /// [`MAX_PENDING_REQUEST_MESSAGES`] messages.
    async fn delete_pending_thread(
        &self,
        recipient: UserId,
        from: UserId,
        last: MessageId,
    ) -> Result<()> {
        let partition = keys::thread_partition(recipient, from);
        let client_prefix = keys::client_message_prefix(from);
        let records = self
            .table
            .query_all(
                &Query::new(KeyShape::Table, &partition).begins_with(&client_prefix),
                MAX_REJECTED_THREAD_ITEMS,
            )
            .await?;
        let mut doomed = Vec::new();
        for item in records {
            let key = item_key(&item)?;
            let record: ClientMessageRecord = from_item(item)?;
            if record.message_id <= last {
                doomed.push(key);
            }
        }
        self.table.batch_delete(&doomed).await?;

        let messages = self
            .table
            .query_all(
                &Query::new(KeyShape::Table, &partition).begins_with(keys::MESSAGE_PREFIX),
                MAX_REJECTED_THREAD_ITEMS,
            )
            .await?;
        let mut doomed = Vec::new();
        for item in messages {
            let key = item_key(&item)?;
            let message: Message = from_item(item)?;
            if message.id <= last && message.from == from {
                doomed.push(key);
            }
        }
        self.table.batch_delete(&doomed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_private_stranger_who_has_not_accepted_gets_a_request() {
        assert_eq!(message_status(true, false, false), MessageStatus::Requested);
        assert_eq!(message_status(true, true, false), MessageStatus::Sent);
        assert_eq!(message_status(true, false, true), MessageStatus::Sent);
        assert_eq!(message_status(false, false, false), MessageStatus::Sent);
    }

    #[test]
    fn new_messages_are_validated() {
        let (a, b) = (new_id(), new_id());
        let now = Utc::now();
        assert!(NewMessage::new(a, a, "hi", None, now).is_err());
        assert!(NewMessage::new(a, b, "  ", None, now).is_err());
        assert!(NewMessage::new(a, b, &"x".repeat(4001), None, now).is_err());
        assert!(NewMessage::new(a, b, "hi", Some("has space"), now).is_err());
        assert!(NewMessage::new(a, b, "hi", Some(""), now).is_err());
        let ok = NewMessage::new(a, b, " hi ", Some("c-1"), now).unwrap();
        assert_eq!(ok.text.as_str(), "hi");
    }
}
