//! The server → client WebSocket events and the rules that give each one its identity.
//!
//! Every event travels in one envelope:
//!
//! ```json
//! {"type": "new_notification", "event_id": "…", "occurred_at": "2025-01-01T00:00:00.000Z",
//!  "cursor": "…", "data": {…}}
//! ```
//!
//! - `event_id` is **deterministic**: a name-based UUID over the source item and its change
//!   (`new_notification:{notification_id}`, `post_updated:{post_id}:{edited_at}`, …). A
//!   retried or duplicated stream batch, an SQS redelivery and a `resume` replay all produce
//!   the same id for the same fact, so clients dedupe on it.
//! - `cursor` is set on the resumable events only (`new_notification`, `new_message`,
//!   `message_request`): the item's UUIDv7 id, which is time ordered, so a client resumes
//!   with the last cursor it saw.
//! - `occurred_at` comes from the item (creation or edit time) or, for removals and counter
//!   changes, from the stream record's approximate creation time — never from "now", so it
//!   is stable across retries too.
//!
//! The constructors below are the only place an event's id, cursor and time are chosen:
//! the stream router, the push worker and the `resume` replay all call them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::{
    format_time, rfc3339, Comment, CommentId, Message, MessageStatus, Notification, NotificationId,
    Post, PostId, UserId,
};
use crate::error::Error;

/// Namespace mixed into every derived event id, so Ripple's ids never collide with other
/// name-based UUIDs over the same strings.
const EVENT_ID_NAMESPACE: &[u8] = b"ripple.events.v1:";

/// How long a `user_typing` start holds before the client should consider it stopped.
pub const TYPING_EXPIRES_AFTER_SECONDS: i64 = 5;

/// A name-based event id: RFC 9562 UUIDv8 over SHA-256 (the name-based construction of
/// RFC 9562 appendix B.2), so equal names give equal ids and nothing else does.
pub fn derive_event_id(name: &str) -> Uuid {
    let mut hasher = Sha256::new();
    hasher.update(EVENT_ID_NAMESPACE);
    hasher.update(name.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// One server → client event: the envelope plus its typed `type`/`data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: Uuid,
    #[serde(with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// Resume position (the item's UUIDv7 id) on resumable events only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Uuid>,
    #[serde(flatten)]
    pub body: EventBody,
}

/// `type` and `data` of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum EventBody {
    /// A new post by the author or someone the recipient follows.
    PostCreated(Post),
    /// The post's text or media changed (`edited_at` is set).
    PostUpdated(Post),
    PostDeleted {
        post_id: PostId,
        author_id: UserId,
    },
    NewNotification(Notification),
    /// Notifications the user read (on another device, or over REST).
    NotificationRead {
        notification_ids: Vec<NotificationId>,
    },
    NewComment(Comment),
    CommentDeleted {
        post_id: PostId,
        comment_id: CommentId,
    },
    LikeUpdated {
        post_id: PostId,
        like_count: i64,
        /// Grows with every like and unlike of the post: the newest count wins.
        version: i64,
    },
    NewMessage(Message),
    /// A message from someone the recipient has not accepted a conversation with.
    MessageRequest(Message),
    UserTyping {
        from: UserId,
        state: TypingState,
        #[serde(with = "rfc3339")]
        expires_at: DateTime<Utc>,
    },
    UserOnline {
        user_id: UserId,
    },
    UserOffline {
        user_id: UserId,
    },
    Subscribed {
        channel: String,
        #[serde(default)]
        request_id: Option<String>,
    },
    Unsubscribed {
        channel: String,
        #[serde(default)]
        request_id: Option<String>,
    },
    Pong {
        #[serde(with = "rfc3339")]
        server_time: DateTime<Utc>,
        #[serde(default)]
        request_id: Option<String>,
    },
    /// End of a `resume` replay. `gap: true` means the replay could not be complete
    /// (bound or retention exceeded): refetch over REST.
    /// Missed events sent by `resume`, oldest first, several per frame (each frame at most
    /// [`crate::replay::REPLAY_FRAME_BYTES`]); the client handles each as if it came alone.
    Replay {
        events: Vec<Event>,
        #[serde(default)]
        request_id: Option<String>,
    },
    Resumed {
        gap: bool,
        replayed: u32,
        feed_new_posts: u32,
        #[serde(default)]
        request_id: Option<String>,
    },
    Error {
        code: String,
        message: String,
        #[serde(default)]
        request_id: Option<String>,
        /// Seconds to wait before trying again (`rate_limited` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypingState {
    Start,
    Stop,
}

impl TypingState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }
}

impl EventBody {
    /// The wire `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PostCreated(_) => "post_created",
            Self::PostUpdated(_) => "post_updated",
            Self::PostDeleted { .. } => "post_deleted",
            Self::NewNotification(_) => "new_notification",
            Self::NotificationRead { .. } => "notification_read",
            Self::NewComment(_) => "new_comment",
            Self::CommentDeleted { .. } => "comment_deleted",
            Self::LikeUpdated { .. } => "like_updated",
            Self::NewMessage(_) => "new_message",
            Self::MessageRequest(_) => "message_request",
            Self::UserTyping { .. } => "user_typing",
            Self::UserOnline { .. } => "user_online",
            Self::UserOffline { .. } => "user_offline",
            Self::Subscribed { .. } => "subscribed",
            Self::Unsubscribed { .. } => "unsubscribed",
            Self::Pong { .. } => "pong",
            Self::Replay { .. } => "replay",
            Self::Resumed { .. } => "resumed",
            Self::Error { .. } => "error",
        }
    }
}

impl Event {
    /// An event whose id is derived from `name` (see [`derive_event_id`]).
    fn derived(
        name: String,
        occurred_at: DateTime<Utc>,
        cursor: Option<Uuid>,
        body: EventBody,
    ) -> Self {
        Self {
            event_id: derive_event_id(&name),
            occurred_at,
            cursor,
            body,
        }
    }

    /// A reply or relay that has no stored source (pong, subscribed, typing…): nothing
    /// can replay it, so a fresh time-ordered id is its identity.
    pub fn ephemeral(body: EventBody, now: DateTime<Utc>) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            occurred_at: now,
            cursor: None,
            body,
        }
    }

    pub fn post_created(post: &Post) -> Self {
        Self::derived(
            format!("post_created:{}", post.id),
            post.created_at,
            None,
            EventBody::PostCreated(post.clone()),
        )
    }

    /// `edited_at` identifies the edit; a post without one (never edited) falls back to
    /// its creation time, which still names exactly one state of the post.
    pub fn post_updated(post: &Post) -> Self {
        let edited_at = post.edited_at.unwrap_or(post.created_at);
        Self::derived(
            format!("post_updated:{}:{}", post.id, format_time(edited_at)),
            edited_at,
            None,
            EventBody::PostUpdated(post.clone()),
        )
    }

    pub fn post_deleted(post: &Post, deleted_at: DateTime<Utc>) -> Self {
        Self::derived(
            format!("post_deleted:{}", post.id),
            deleted_at,
            None,
            EventBody::PostDeleted {
                post_id: post.id,
                author_id: post.author_id,
            },
        )
    }

    pub fn new_notification(notification: &Notification) -> Self {
        Self::derived(
            format!("new_notification:{}", notification.id),
            notification.created_at,
            Some(notification.id.as_uuid()),
            EventBody::NewNotification(notification.clone()),
        )
    }

    /// Notifications read together (one stream batch's worth for one recipient, so marking
    /// thousands read is a few events, not thousands). The id names the sorted set, so a
    /// single read keeps the id `notification_read:{id}`.
    pub fn notifications_read(
        mut notification_ids: Vec<NotificationId>,
        read_at: DateTime<Utc>,
    ) -> Self {
        notification_ids.sort_unstable();
        notification_ids.dedup();
        let names: Vec<String> = notification_ids.iter().map(|id| id.to_string()).collect();
        Self::derived(
            format!("notification_read:{}", names.join(",")),
            read_at,
            None,
            EventBody::NotificationRead { notification_ids },
        )
    }

    pub fn notification_read(notification: NotificationId, read_at: DateTime<Utc>) -> Self {
        Self::notifications_read(vec![notification], read_at)
    }

    pub fn new_comment(comment: &Comment) -> Self {
        Self::derived(
            format!("new_comment:{}", comment.id),
            comment.created_at,
            None,
            EventBody::NewComment(comment.clone()),
        )
    }

    /// A comment deleted by a user (its author or the post's author). A post's deletion
    /// removes its comments without this event: `post_deleted` says it all.
    pub fn comment_deleted(post: PostId, comment: CommentId, deleted_at: DateTime<Utc>) -> Self {
        Self::derived(
            format!("comment_deleted:{comment}"),
            deleted_at,
            None,
            EventBody::CommentDeleted {
                post_id: post,
                comment_id: comment,
            },
        )
    }

    /// The post's like count as of its `like_version`, which every like and unlike bumps in
    /// the same write: a client keeps the count of the greatest version, so a late or
    /// repeated event never rolls the count back. The version also names the event (the
    /// count alone would repeat: like, unlike, like again gives 1 twice).
    pub fn like_updated(post: &Post, changed_at: DateTime<Utc>) -> Self {
        Self::derived(
            format!("like_updated:{}:{}", post.id, post.like_version),
            changed_at,
            None,
            EventBody::LikeUpdated {
                post_id: post.id,
                like_count: post.like_count,
                version: post.like_version,
            },
        )
    }

    /// The event a message is to `viewer` (its sender or recipient): a message still
    /// waiting as a request is a `message_request` to its recipient, and a `new_message`
    /// everywhere else. Live pushes and the `resume` replay both use this, so their ids match.
    pub fn message_for(message: &Message, viewer: UserId) -> Self {
        if message.status == MessageStatus::Requested && viewer == message.to {
            Self::derived(
                format!("message_request:{}", message.id),
                message.created_at,
                Some(message.id.as_uuid()),
                EventBody::MessageRequest(message.clone()),
            )
        } else {
            Self::derived(
                format!("new_message:{}", message.id),
                message.created_at,
                Some(message.id.as_uuid()),
                EventBody::NewMessage(message.clone()),
            )
        }
    }

    /// `cause` names what brought the user online (the connection that did).
    pub fn user_online(user: UserId, cause: &str, at: DateTime<Utc>) -> Self {
        Self::derived(
            format!("user_online:{user}:{cause}"),
            at,
            None,
            EventBody::UserOnline { user_id: user },
        )
    }

    /// `cause` names the disconnect whose grace period ran out.
    pub fn user_offline(user: UserId, cause: &str, at: DateTime<Utc>) -> Self {
        Self::derived(
            format!("user_offline:{user}:{cause}"),
            at,
            None,
            EventBody::UserOffline { user_id: user },
        )
    }

    /// A typing relay; a start expires [`TYPING_EXPIRES_AFTER_SECONDS`] after it was sent.
    pub fn user_typing(from: UserId, state: TypingState, now: DateTime<Utc>) -> Self {
        let expires_at = match state {
            TypingState::Start => now + chrono::Duration::seconds(TYPING_EXPIRES_AFTER_SECONDS),
            TypingState::Stop => now,
        };
        Self::ephemeral(
            EventBody::UserTyping {
                from,
                state,
                expires_at,
            },
            now,
        )
    }

    /// The `error` event for a request that failed (code and message from
    /// [`Error::code`] / [`Error::public_message`]).
    pub fn error(error: &Error, request_id: Option<&str>, now: DateTime<Utc>) -> Self {
        Self::ephemeral(
            EventBody::Error {
                code: error.code().to_owned(),
                message: error.public_message(),
                request_id: request_id.map(str::to_owned),
                retry_after: error.retry_after(),
            },
            now,
        )
    }

    /// The wire form.
    pub fn to_json(&self) -> crate::error::Result<String> {
        serde_json::to_string(self).map_err(|e| Error::internal("serialising an event", e))
    }

    pub fn kind(&self) -> &'static str {
        self.body.kind()
    }
}

// ---- channels ----------------------------------------------------------------------------------

/// A room a connection may subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Live comments and like counts of a post.
    Post(PostId),
    /// Online state of a user.
    Presence(UserId),
}

impl Channel {
    /// Parses `post:{uuid}` or `presence:{uuid}`; anything else is a validation error.
    pub fn parse(raw: &str) -> crate::error::Result<Self> {
        let invalid = || Error::validation("channel must be post:{post_id} or presence:{user_id}");
        let (kind, id) = raw.split_once(':').ok_or_else(invalid)?;
        match kind {
            "post" => Ok(Self::Post(
                PostId::parse(id, "channel").map_err(|_| invalid())?,
            )),
            "presence" => Ok(Self::Presence(
                UserId::parse(id, "channel").map_err(|_| invalid())?,
            )),
            _ => Err(invalid()),
        }
    }
}

/// Channels travel (in queue work items) as their names, `post:{id}` / `presence:{id}`.
impl serde::Serialize for Channel {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Channel {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Post(id) => write!(f, "post:{id}"),
            Self::Presence(id) => write!(f, "presence:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::{json, Value};

    use super::*;
    use crate::domain::{fixture_id, new_id, NotificationKind};

    fn time(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap()
    }

    fn post() -> Post {
        Post {
            id: fixture_id(1),
            author_id: fixture_id(2),
            text: "hello".into(),
            media_url: None,
            created_at: time(0),
            edited_at: None,
            like_count: 3,
            like_version: 0,
            comment_count: 0,
        }
    }

    #[test]
    fn envelope_has_type_event_id_occurred_at_and_data() {
        let event = Event::post_created(&post());
        let value: Value = serde_json::from_str(&event.to_json().unwrap()).unwrap();
        assert_eq!(value["type"], "post_created");
        assert_eq!(value["event_id"], event.event_id.to_string());
        assert_eq!(value["occurred_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(value["data"]["id"], fixture_id::<PostId>(1).to_string());
        assert!(
            value.get("cursor").is_none(),
            "posts are not resumable: {value}"
        );
        let back: Event = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn resumable_events_carry_the_item_id_as_cursor() {
        let notification = Notification {
            id: new_id(),
            recipient_id: fixture_id(2),
            kind: NotificationKind::Like,
            actor_id: fixture_id(3),
            post_id: Some(fixture_id(1)),
            comment_id: None,
            created_at: time(5),
            read: false,
        };
        let event = Event::new_notification(&notification);
        assert_eq!(event.cursor, Some(notification.id.as_uuid()));
        let value: Value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["cursor"], notification.id.to_string());
        assert_eq!(value["data"]["type"], "like");
    }

    #[test]
    fn event_ids_are_stable_for_the_same_fact_and_distinct_otherwise() {
        assert_eq!(
            Event::post_created(&post()).event_id,
            Event::post_created(&post()).event_id
        );
        assert_ne!(
            Event::post_created(&post()).event_id,
            Event::post_updated(&post()).event_id
        );
        let mut edited = post();
        edited.edited_at = Some(time(30));
        let mut edited_again = post();
        edited_again.edited_at = Some(time(60));
        assert_ne!(
            Event::post_updated(&edited).event_id,
            Event::post_updated(&edited_again).event_id
        );
        // The same count reached twice (like, unlike, like) is two changes: two versions.
        let mut liked_again = post();
        liked_again.like_version = 3;
        let mut liked = post();
        liked.like_version = 1;
        assert_eq!(liked.like_count, liked_again.like_count);
        assert_ne!(
            Event::like_updated(&liked, time(1)).event_id,
            Event::like_updated(&liked_again, time(1)).event_id
        );
        // Reads of many notifications: one id per set, whatever the order.
        let (a, b) = (NotificationId::from_u128(1), NotificationId::from_u128(2));
        assert_eq!(
            Event::notifications_read(vec![a, b], time(1)).event_id,
            Event::notifications_read(vec![b, a, b], time(1)).event_id
        );
        assert_eq!(
            Event::notifications_read(vec![a], time(1)).event_id,
            Event::notification_read(a, time(1)).event_id
        );
        let id = derive_event_id("x");
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id, derive_event_id("x"));
    }

    #[test]
    fn a_requested_message_is_a_request_to_its_recipient_only() {
        let message = Message {
            id: new_id(),
            from: fixture_id(1),
            to: fixture_id(2),
            text: "hi".into(),
            created_at: time(0),
            status: MessageStatus::Requested,
            client_message_id: None,
        };
        assert_eq!(
            Event::message_for(&message, message.to).kind(),
            "message_request"
        );
        assert_eq!(
            Event::message_for(&message, message.from).kind(),
            "new_message"
        );
        let sent = Message {
            status: MessageStatus::Sent,
            ..message.clone()
        };
        assert_eq!(Event::message_for(&sent, sent.to).kind(), "new_message");
        assert_eq!(
            Event::message_for(&sent, sent.to).cursor,
            Some(message.id.as_uuid())
        );
    }

    #[test]
    fn reply_events_serialise_as_documented() {
        let typing = Event::user_typing(fixture_id(9), TypingState::Start, time(0));
        let value = serde_json::to_value(&typing).unwrap();
        assert_eq!(value["type"], "user_typing");
        assert_eq!(value["data"]["state"], "start");
        assert_eq!(value["data"]["expires_at"], "2023-11-14T22:13:25.000Z");

        let error = Event::error(&Error::forbidden("no"), Some("r1"), time(0));
        let value = serde_json::to_value(&error).unwrap();
        assert_eq!(
            value["data"],
            json!({"code": "forbidden", "message": "no", "request_id": "r1"})
        );
        let resumed = Event::ephemeral(
            EventBody::Resumed {
                gap: true,
                replayed: 0,
                feed_new_posts: 2,
                request_id: None,
            },
            time(0),
        );
        assert_eq!(serde_json::to_value(&resumed).unwrap()["data"]["gap"], true);
    }

    #[test]
    fn channels_parse_and_print() {
        let post = PostId::new();
        let channel = Channel::parse(&format!("post:{post}")).unwrap();
        assert_eq!(channel, Channel::Post(post));
        assert_eq!(channel.to_string(), format!("post:{post}"));
        assert!(matches!(
            Channel::parse(&format!("presence:{post}")),
            Ok(Channel::Presence(_))
        ));
        for bad in [
            "",
            "post",
            "post:",
            "post:nope",
            "room:1",
            &format!("posts:{post}"),
        ] {
            assert!(Channel::parse(bad).is_err(), "{bad}");
        }
    }
}
