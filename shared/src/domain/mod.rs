//! Ripple's domain types and the validation rules every entry point shares.
//!
//! Ids are UUIDv7 (time ordered, so sorting by id sorts by creation time) and travel as
//! strings; timestamps are RFC 3339 UTC. These are the shapes handlers work with; how
//! they are laid out in DynamoDB is the store's business.
//!
//! The typed ids live in `ids`, the validated text types and their limits in `text`; both
//! are re-exported here, so callers name everything as `domain::X`.

mod ids;
mod text;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

#[cfg(any(test, feature = "testkit"))]
pub use ids::fixture_id;
pub use ids::{new_id, parse_id, CommentId, Id, MessageId, NotificationId, PostId, UserId};
pub use text::{
    validate_password, Bio, ClientMessageId, CommentText, DisplayName, MediaUrl, MessageText,
    PostText, Username, BIO_MAX, CLIENT_MESSAGE_ID_MAX, COMMENT_TEXT_MAX, DISPLAY_NAME_MAX,
    MEDIA_URL_MAX, MESSAGE_TEXT_MAX, PASSWORD_MAX, PASSWORD_MIN, POST_EDIT_WINDOW_SECONDS,
    POST_TEXT_MAX, USERNAME_MAX, USERNAME_MIN,
};

/// RFC 3339 with millisecond precision and a `Z` suffix: the one timestamp format on the wire.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde helpers so timestamps are stored and sent as RFC 3339 strings.
pub mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }

    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            time: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(t) => s.serialize_str(&super::super::format_time(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|raw| {
                    DateTime::parse_from_rfc3339(&raw)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Entities
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    /// As the user typed it (case preserved); uniqueness is case-insensitive.
    pub username: String,
    pub display_name: String,
    pub bio: String,
    pub is_private: bool,
    pub show_presence: bool,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub follower_count: i64,
    pub following_count: i64,
    pub post_count: i64,
}

/// The slice of a user embedded in posts, comments, messages and notifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self {
            id: user.id,
            username: user.username.clone(),
            display_name: user.display_name.clone(),
        }
    }
}

/// How the caller relates to another user (profile responses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    /// The caller follows them.
    pub following: bool,
    /// They follow the caller.
    pub followed_by: bool,
    /// The caller has a pending follow request to them.
    pub requested: bool,
    /// The caller blocks them.
    pub blocking: bool,
    /// They block the caller (never sent to clients; a block hides the profile).
    #[serde(skip)]
    pub blocked_by: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Follow {
    pub follower_id: UserId,
    pub followee_id: UserId,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowRequest {
    pub requester_id: UserId,
    pub target_id: UserId,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub blocker_id: UserId,
    pub blocked_id: UserId,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Post {
    pub id: PostId,
    pub author_id: UserId,
    pub text: String,
    pub media_url: Option<String>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "rfc3339::option", default)]
    pub edited_at: Option<DateTime<Utc>>,
    pub like_count: i64,
    /// Bumped by every like and unlike with the count: orders like counts that arrive out of
    /// order (a `like_updated` or a REST answer), the greatest version being the newest.
    #[serde(default)]
    pub like_version: i64,
    pub comment_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Like {
    pub post_id: PostId,
    pub user_id: UserId,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub id: CommentId,
    pub post_id: PostId,
    pub author_id: UserId,
    pub text: String,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

/// Whether a message was delivered into an accepted conversation or is waiting as a
/// message request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Sent,
    Requested,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub from: UserId,
    pub to: UserId,
    pub text: String,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub status: MessageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_message_id: Option<String>,
}

/// One user's view of their thread with another user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub user_id: UserId,
    pub other_user_id: UserId,
    pub last_message: Option<Message>,
    pub unread_count: i64,
    /// `accepted`, or `requested` while the thread waits as a message request.
    pub state: ConversationState,
    #[serde(with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    Accepted,
    Requested,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRequest {
    pub from: UserId,
    pub to: UserId,
    pub last_message: Option<Message>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    Follow,
    FollowRequest,
    FollowAccepted,
    Like,
    Comment,
    Message,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Follow => "follow",
            Self::FollowRequest => "follow_request",
            Self::FollowAccepted => "follow_accepted",
            Self::Like => "like",
            Self::Comment => "comment",
            Self::Message => "message",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: NotificationId,
    pub recipient_id: UserId,
    #[serde(rename = "type")]
    pub kind: NotificationKind,
    pub actor_id: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<PostId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<CommentId>,
    #[serde(with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    pub read: bool,
}

/// An open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub connection_id: String,
    pub user_id: UserId,
    #[serde(with = "rfc3339")]
    pub connected_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    /// Epoch seconds after which the connection is certainly gone (API Gateway's 2 h cap).
    pub expires_at: i64,
}

/// A connection's membership of a room such as `post:{id}` or `presence:{user_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub channel: String,
    pub connection_id: String,
    pub user_id: UserId,
}
