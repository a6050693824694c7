//! What a stream record means for connected clients — pure functions, no I/O.
//!
//! A record's item is recognised by its `entity` attribute (every item has one) and parsed
//! with `serde_dynamo` into the domain record. The rules:
//!
//! | entity | change | events → audience |
//! |---|---|---|
//! | post | insert | `post_created` → author + followers |
//! | post | modify: text, media or `edited_at` changed | `post_updated` → author + followers, `post:{id}` room |
//! | post | modify: `like_count` changed | `like_updated` → `post:{id}` room |
//! | post | remove | `post_deleted` → author + followers, `post:{id}` room |
//! | notification | insert | `new_notification` → recipient |
//! | notification | modify: unread → read | `notification_read` → recipient |
//! | comment | insert / remove | `new_comment` / `comment_deleted` → `post:{id}` room |
//! | message | insert | sent: `new_message` → recipient + sender; requested: `message_request` → recipient, `new_message` → sender |
//! | connection | insert | effect: announce the user online (presence, debounced) |
//! | connection | remove | effect: presence check after the grace period; a TTL removal also releases the connection's set entry and memberships |
//!
//! Everything else (likes, follows, tokens, rate windows, dedup markers, presence items…)
//! produces nothing: its visible consequences arrive through the records above (a like's
//! count change is a post modify; its notification is a notification insert).
//!
//! "Author + followers" is resolved later to online followers only, minus the author's block
//! set; the recipient of a message gets it on every connection (a REST send has no origin
//! connection to skip).

use aws_lambda_events::event::dynamodb::EventRecord;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use shared::domain::{Comment, Connection, Message, Notification, Post, UserId};
use shared::events::{Channel, Event};
use shared::push::Audience;
use shared::queue::PresenceCheck;
use shared::store::connections::StoredConnection;

/// The principal DynamoDB names in the `userIdentity` of a TTL deletion.
const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// An event and who gets it.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub event: Event,
    pub audience: Vec<Audience>,
}

/// Work a record causes besides pushes.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A connection opened: announce its user online unless watchers already think so.
    AnnounceOnline {
        user: UserId,
        connection_id: String,
        connected_at: DateTime<Utc>,
    },
    /// A connection closed: once the grace period is over, announce the user offline if
    /// they have not reconnected.
    ScheduleOfflineCheck(PresenceCheck),
    /// TTL deleted a connection nobody disconnected: release its entry in the user's set
    /// and its room memberships, as `ws-disconnect` would have.
    ReleaseExpiredConnection(Box<StoredConnection>),
}

/// Everything one record causes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    pub pushes: Vec<Push>,
    pub effects: Vec<Effect>,
}

impl Decision {
    fn push(mut self, event: Event, audience: Vec<Audience>) -> Self {
        self.pushes.push(Push { event, audience });
        self
    }

    fn effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.pushes.is_empty() && self.effects.is_empty()
    }
}

/// A record that cannot be understood. Retrying will not help; the record is reported as
/// failed so that, after the mapping's retries, it lands in the on-failure destination
/// for inspection instead of being silently skipped.
#[derive(Debug, thiserror::Error)]
pub enum BadRecord {
    #[error("unknown eventName {0:?}")]
    EventName(String),
    #[error("{operation} record of a {entity} has no {image} image")]
    MissingImage {
        operation: &'static str,
        entity: String,
        image: &'static str,
    },
    #[error("{entity} image does not parse: {source}")]
    Image {
        entity: String,
        #[source]
        source: shared::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Insert,
    Modify,
    Remove,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "INSERT",
            Self::Modify => "MODIFY",
            Self::Remove => "REMOVE",
        }
    }
}

/// One record with its images, ready to be read as a domain type.
struct Change<'a> {
    operation: Operation,
    entity: String,
    record: &'a EventRecord,
}

impl Change<'_> {
    fn image<T: DeserializeOwned>(&self, which: &'static str) -> Result<T, BadRecord> {
        let image = match which {
            "new" => &self.record.change.new_image,
            _ => &self.record.change.old_image,
        };
        if image.is_empty() {
            return Err(BadRecord::MissingImage {
                operation: self.operation.as_str(),
                entity: self.entity.clone(),
                image: which,
            });
        }
        serde_dynamo::from_item(image.clone()).map_err(|e| BadRecord::Image {
            entity: self.entity.clone(),
            source: e.into(),
        })
    }

    fn new<T: DeserializeOwned>(&self) -> Result<T, BadRecord> {
        self.image("new")
    }

    fn old<T: DeserializeOwned>(&self) -> Result<T, BadRecord> {
        self.image("old")
    }

    /// When the change happened, as DynamoDB stamped the record (stable across retries).
    fn time(&self) -> DateTime<Utc> {
        self.record.change.approximate_creation_date_time
    }

    /// The record's identity in its shard; the same on every delivery of the record.
    fn sequence(&self) -> &str {
        self.record
            .change
            .sequence_number
            .as_deref()
            .unwrap_or(self.record.event_id.as_str())
    }

    fn removed_by_ttl(&self) -> bool {
        self.record
            .user_identity
            .as_ref()
            .is_some_and(|identity| identity.type_ == "Service" && identity.principal_id == TTL_PRINCIPAL)
    }
}

/// The `entity` attribute of the record's item (new image, else old image).
fn entity_of(record: &EventRecord) -> Option<String> {
    [&record.change.new_image, &record.change.old_image]
        .into_iter()
        .find_map(|image| match image.get("entity") {
            Some(serde_dynamo::AttributeValue::S(entity)) => Some(entity.clone()),
            _ => None,
        })
}

/// Decides what a stream record means for connected clients.
pub fn decide(record: &EventRecord) -> Result<Decision, BadRecord> {
    let operation = match record.event_name.as_str() {
        "INSERT" => Operation::Insert,
        "MODIFY" => Operation::Modify,
        "REMOVE" => Operation::Remove,
        other => return Err(BadRecord::EventName(other.to_owned())),
    };
    let Some(entity) = entity_of(record) else {
        return Ok(Decision::default());
    };
    let change = Change {
        operation,
        entity,
        record,
    };
    match change.entity.as_str() {
        "post" => post(&change),
        "notification" => notification(&change),
        "comment" => comment(&change),
        "message" => message(&change),
        "connection" => connection(&change),
        _ => Ok(Decision::default()),
    }
}

fn post_room(post: &Post) -> Audience {
    Audience::Room(Channel::Post(post.id))
}

fn post(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let post: Post = change.new()?;
            Ok(decision.push(
                Event::post_created(&post),
                vec![Audience::AuthorAndFollowers(post.author_id)],
            ))
        }
        Operation::Modify => {
            let old: Post = change.old()?;
            let new: Post = change.new()?;
            let mut decision = decision;
            let content_changed =
                old.text != new.text || old.media_url != new.media_url || old.edited_at != new.edited_at;
            if content_changed {
                decision = decision.push(
                    Event::post_updated(&new),
                    vec![Audience::AuthorAndFollowers(new.author_id), post_room(&new)],
                );
            }
            if old.like_count != new.like_count {
                decision = decision.push(
                    Event::like_updated(&new, change.sequence(), change.time()),
                    vec![post_room(&new)],
                );
            }
            Ok(decision)
        }
        Operation::Remove => {
            let post: Post = change.old()?;
            Ok(decision.push(
                Event::post_deleted(&post, change.time()),
                vec![Audience::AuthorAndFollowers(post.author_id), post_room(&post)],
            ))
        }
    }
}

fn notification(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let notification: Notification = change.new()?;
            Ok(decision.push(
                Event::new_notification(&notification),
                vec![Audience::Users(vec![notification.recipient_id])],
            ))
        }
        Operation::Modify => {
            let old: Notification = change.old()?;
            let new: Notification = change.new()?;
            if old.read || !new.read {
                return Ok(decision);
            }
            Ok(decision.push(
                Event::notification_read(new.id, change.time()),
                vec![Audience::Users(vec![new.recipient_id])],
            ))
        }
        Operation::Remove => Ok(decision),
    }
}

fn comment(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let comment: Comment = change.new()?;
            Ok(decision.push(
                Event::new_comment(&comment),
                vec![Audience::Room(Channel::Post(comment.post_id))],
            ))
        }
        Operation::Modify => Ok(decision),
        Operation::Remove => {
            let comment: Comment = change.old()?;
            Ok(decision.push(
                Event::comment_deleted(&comment, change.time()),
                vec![Audience::Room(Channel::Post(comment.post_id))],
            ))
        }
    }
}

fn message(change: &Change) -> Result<Decision, BadRecord> {
    if change.operation != Operation::Insert {
        return Ok(Decision::default());
    }
    let message: Message = change.new()?;
    let to_recipient = Event::message_for(&message, message.to);
    let to_sender = Event::message_for(&message, message.from);
    if to_recipient == to_sender {
        return Ok(Decision::default().push(to_recipient, vec![Audience::Users(vec![message.to, message.from])]));
    }
    Ok(Decision::default()
        .push(to_recipient, vec![Audience::Users(vec![message.to])])
        .push(to_sender, vec![Audience::Users(vec![message.from])]))
}

fn connection(change: &Change) -> Result<Decision, BadRecord> {
    let decision = Decision::default();
    match change.operation {
        Operation::Insert => {
            let connection: Connection = change.new()?;
            Ok(decision.effect(Effect::AnnounceOnline {
                user: connection.user_id,
                connection_id: connection.connection_id,
                connected_at: connection.connected_at,
            }))
        }
        // Subscriptions bump the connection's version: nothing for anyone else.
        Operation::Modify => Ok(decision),
        Operation::Remove => {
            let connection: Connection = change.old()?;
            let mut decision = decision;
            if change.removed_by_ttl() {
                let image: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
                    change.record.change.old_image.clone().into();
                let stored = StoredConnection::from_item(image).map_err(|source| BadRecord::Image {
                    entity: change.entity.clone(),
                    source,
                })?;
                decision = decision.effect(Effect::ReleaseExpiredConnection(Box::new(stored)));
            }
            Ok(decision.effect(Effect::ScheduleOfflineCheck(PresenceCheck {
                user_id: connection.user_id,
                connection_id: connection.connection_id,
                disconnected_at: change.time(),
            })))
        }
    }
}
