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

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::dynamo::{from_item, item_key, n, s, Query};
use super::keys::{self};
use super::page::{KeyShape, Page, PageRequest};
use super::transaction::{tx, TransactFailure, Transaction};
use super::DynamoStore;
use crate::clock::to_millis;
use crate::domain::{
    ClientMessageId, Conversation, ConversationState, Message, MessageId, MessageRequest,
    MessageStatus, MessageText, Notification, UserId,
};
use crate::error::{Error, Result};

mod send;

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

// ---- records ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct ClientMessageRecord {
    message_id: MessageId,
    entity: String,
}

fn attribute<T: Serialize>(value: &T) -> Result<AttributeValue> {
    Ok(serde_dynamo::to_attribute_value(value)?)
}

fn no_request() -> Error {
    Error::not_found("no message request from this user")
}

impl DynamoStore {
    /// `owner`'s accepted conversations, most recent first (pattern 17). Requests waiting
    /// for `owner` are not in this list (see [`DynamoStore::message_requests`]).
    pub async fn conversations(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<Conversation>> {
        let partition = keys::user_pk(owner);
        let query = Query::new(KeyShape::Gsi1, &partition)
            .begins_with(keys::CONVERSATION_RECENCY_PREFIX)
            .newest_first();
        self.table.query_page_as(&query, page).await
    }

    /// Messages between `viewer` and `other`, newest first (pattern 18). Only ever reads the
    /// thread `viewer` is part of.
    pub async fn messages(
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

    /// Sets `owner`'s unread count of the conversation with `other` to zero. `NotFound` when
    /// there is no such conversation.
    pub async fn mark_conversation_read(&self, owner: UserId, other: UserId) -> Result<()> {
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

    /// Message requests waiting for `recipient` (pattern 20), by sender id.
    pub async fn message_requests(
        &self,
        recipient: UserId,
        page: &PageRequest,
    ) -> Result<Page<MessageRequest>> {
        let partition = keys::user_pk(recipient);
        let query =
            Query::new(KeyShape::Table, &partition).begins_with(keys::MESSAGE_REQUEST_PREFIX);
        self.table.query_page_as(&query, page).await
    }

    /// `recipient` accepts `from`'s request: the request is gone and the thread is an
    /// ordinary conversation. `NotFound` when no request is pending.
    pub async fn accept_message_request(&self, recipient: UserId, from: UserId) -> Result<()> {
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
            let mut transaction = Transaction::new();
            let request = transaction.add(tx::delete(
                table,
                &request_key,
                Some("attribute_exists(pk)"),
            )?);
            // The recency entry is keyed by the last message: if another arrived since the
            // read, this fails and the accept re-reads.
            transaction.add(tx::update(
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
            )?);
            match self.table.transact(transaction).await {
                Ok(()) => return Ok(()),
                Err(failure) if failure.failed(&request) => return Err(no_request()),

                Err(TransactFailure::Other(error)) => return Err(error),
                Err(TransactFailure::ConditionFailed { .. }) => continue,
            }
        }
        Err(Error::conflict(
            "the conversation changed while accepting; try again",
        ))
    }

    /// Whether `owner` has accepted their thread with `other` (their conversation exists
    /// and is `accepted`): the third input of [`message_status`], for callers that need the
    /// policy without sending (the WebSocket `typing` action).
    pub async fn thread_accepted(&self, owner: UserId, other: UserId) -> Result<bool> {
        let conversation: Option<Conversation> =
            self.table.get_as(&keys::conversation(owner, other)).await?;
        Ok(conversation.is_some_and(|c| c.state == ConversationState::Accepted))
    }

    /// `recipient` rejects `from`'s request: the pending thread (its messages, both
    /// conversations, the request and the sender's idempotency records) is deleted.
    /// `NotFound` when no request is pending.
    pub async fn reject_message_request(&self, recipient: UserId, from: UserId) -> Result<()> {
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
    use crate::domain::new_id;

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
