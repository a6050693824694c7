//! The two reads/writes `ws-message` needs that the shared stores do not offer.
//!
//! - The typing throttle: at most one `typing` per connection per
//!   [`TYPING_INTERVAL`](crate::typing::TYPING_INTERVAL), across every warm container. An
//!   in-memory limiter would only hold per container (API Gateway spreads one connection's
//!   messages over any of them), so the limit is ONE conditional `UpdateItem` of a
//!   `typing_at` attribute on the caller's existing connection item: the condition "the
//!   last typing was long enough ago" is checked by DynamoDB, and no item is created — the
//!   table's item count is unchanged by any number of typing messages. What the user typed
//!   and to whom is never written; the stream router ignores connection modifications.
//! - Whether a user accepted the thread with another (their conversation's state), which
//!   decides, with the message-status policy, whether the caller may type to them.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use shared::domain::{Conversation, ConversationState, UserId};
use shared::error::{Error, Result};
use shared::store::dynamo::key_map;
use shared::store::keys;
use shared::store::DynamoStore;

/// The attribute of the connection item holding the time (epoch milliseconds) of the last
/// typing relay.
pub const TYPING_AT_ATTRIBUTE: &str = "typing_at";

#[async_trait]
pub trait RealtimeStore: Send + Sync {
    /// Takes the connection's typing slot at `now` if the previous one is at least
    /// `interval` old: `Ok(true)` if taken, `Ok(false)` if too soon (or the connection item
    /// vanished meanwhile — then nobody is listening to the answer either).
    async fn claim_typing_slot(
        &self,
        connection_id: &str,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> Result<bool>;

    /// Whether `owner` has accepted their thread with `other` (an accepted conversation).
    async fn thread_accepted(&self, owner: UserId, other: UserId) -> Result<bool>;
}

#[async_trait]
impl RealtimeStore for DynamoStore {
    async fn claim_typing_slot(
        &self,
        connection_id: &str,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> Result<bool> {
        let now_ms = now.timestamp_millis();
        let latest_allowed_previous = now_ms - interval.num_milliseconds();
        let updated = self
            .table
            .client
            .update_item()
            .table_name(&self.table.name)
            .set_key(Some(key_map(&keys::connection(connection_id))))
            .update_expression("SET #typing_at = :now")
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(#typing_at) OR #typing_at <= :latest)",
            )
            .expression_attribute_names("#typing_at", TYPING_AT_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(
                ":latest",
                AttributeValue::N(latest_allowed_previous.to_string()),
            )
            .send()
            .await;
        match updated {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(error) => Err(Error::internal("claiming the typing slot", error)),
        }
    }

    async fn thread_accepted(&self, owner: UserId, other: UserId) -> Result<bool> {
        let conversation: Option<Conversation> =
            self.table.get_as(&keys::conversation(owner, other)).await?;
        Ok(conversation.is_some_and(|c| c.state == ConversationState::Accepted))
    }
}
