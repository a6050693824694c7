//! Ripple's domain types and the validation rules every entry point shares.
//!
//! Ids are UUIDv7 (time ordered, so sorting by id sorts by creation time) and travel as
//! strings; timestamps are RFC 3339 UTC. These are the shapes handlers work with; how
//! they are laid out in DynamoDB is the store's business.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

/// An id with its own type, so a post id cannot be passed where a user id is expected.
///
/// Every constructor checks the value: [`Id::from_uuid`] refuses the nil UUID, which no
/// Ripple entity ever has. The generic helpers [`new_id`] and [`parse_id`] build whichever
/// id type the call site asks for.
///
/// Ids of different kinds do not mix: a post id is not a user id.
///
/// ```compile_fail
/// use shared::domain::{PostId, UserId};
/// fn profile_of(_user: UserId) {}
/// profile_of(PostId::new());
/// ```
///
/// The same call with a user id compiles:
///
/// ```
/// use shared::domain::UserId;
/// fn profile_of(_user: UserId) {}
/// profile_of(UserId::new());
/// ```
pub trait Id: Copy + Eq + std::hash::Hash + Ord + fmt::Display + fmt::Debug {
    /// The id of a UUID, `None` for the nil UUID.
    fn from_uuid(uuid: Uuid) -> Option<Self>;
    /// The UUID underneath, for code that really works on UUIDs (cursors, ordering by time).
    fn as_uuid(self) -> Uuid;
}

/// Declares an id newtype: serialised as the same hyphenated string a bare `Uuid` was, so
/// neither the wire format nor stored items change.
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered id (UUIDv7).
            #[allow(clippy::new_without_default)] // a "default" id would be a fresh one
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// Parses an id a client sent; a bad one is a 400 `validation` error naming `field`.
            pub fn parse(raw: &str, field: &str) -> Result<Self> {
                Uuid::parse_str(raw)
                    .ok()
                    .and_then(Self::from_uuid)
                    .ok_or_else(|| Error::validation(format!("{field} must be a UUID")))
            }

            /// Parses an id read back from a stored key or attribute; a bad one is an
            /// invariant error (the table holds something Ripple never wrote).
            pub fn from_stored(raw: &str) -> Result<Self> {
                Uuid::parse_str(raw)
                    .ok()
                    .and_then(Self::from_uuid)
                    .ok_or_else(|| {
                        Error::invariant(format!(
                            "stored {} {raw:?} is not a UUID",
                            stringify!($name)
                        ))
                    })
            }

            /// The id of a UUID, `None` for the nil UUID.
            pub fn from_uuid(uuid: Uuid) -> Option<Self> {
                (!uuid.is_nil()).then_some(Self(uuid))
            }

            /// The UUID underneath.
            pub const fn as_uuid(self) -> Uuid {
                self.0
            }

            /// A fixed id for tests and fixtures: `n` must not be 0 (the nil UUID).
            #[cfg(any(test, feature = "testkit"))]
            pub fn from_u128(n: u128) -> Self {
                Self::from_uuid(Uuid::from_u128(n)).expect("a fixture id must not be nil")
            }
        }

        impl Id for $name {
            fn from_uuid(uuid: Uuid) -> Option<Self> {
                $name::from_uuid(uuid)
            }
            fn as_uuid(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(raw: &str) -> Result<Self> {
                Self::parse(raw, "id")
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(raw: String) -> Result<Self> {
                Self::parse(&raw, "id")
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.to_string()
            }
        }
    };
}

typed_id!(
    /// A user's id.
    UserId
);
typed_id!(
    /// A post's id.
    PostId
);
typed_id!(
    /// A comment's id.
    CommentId
);
typed_id!(
    /// A direct message's id.
    MessageId
);
typed_id!(
    /// A notification's id.
    NotificationId
);

/// A new time-ordered id of whichever kind the call site needs.
pub fn new_id<T: Id>() -> T {
    T::from_uuid(Uuid::now_v7()).expect("a v7 UUID is never nil")
}

/// A fixed id of whichever kind the call site needs, for tests and fixtures: `n` must not
/// be 0 (the nil UUID).
#[cfg(any(test, feature = "testkit"))]
pub fn fixture_id<T: Id>(n: u128) -> T {
    T::from_uuid(Uuid::from_u128(n)).expect("a fixture id must not be nil")
}

/// Parses an id that came from a client (path parameter or body field).
pub fn parse_id<T: Id>(raw: &str, what: &str) -> Result<T> {
    Uuid::parse_str(raw)
        .ok()
        .and_then(T::from_uuid)
        .ok_or_else(|| Error::validation(format!("{what} must be a UUID")))
}

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

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

pub const USERNAME_MIN: usize = 3;
pub const USERNAME_MAX: usize = 30;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;
pub const DISPLAY_NAME_MAX: usize = 50;
pub const BIO_MAX: usize = 300;
pub const POST_TEXT_MAX: usize = 2000;
pub const COMMENT_TEXT_MAX: usize = 2000;
pub const MESSAGE_TEXT_MAX: usize = 4000;
pub const MEDIA_URL_MAX: usize = 2048;
pub const CLIENT_MESSAGE_ID_MAX: usize = 64;
/// How long after its creation a post may be edited (by its author).
pub const POST_EDIT_WINDOW_SECONDS: i64 = 120;

/// The username rule: 3–30 letters a–z (any case), digits or underscores.
fn check_username(raw: &str) -> Result<()> {
    let len = raw.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&len) {
        return Err(Error::validation(format!(
            "username must be {USERNAME_MIN}–{USERNAME_MAX} characters"
        )));
    }
    if !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::validation(
            "username may contain only letters a–z, digits and underscores",
        ));
    }
    Ok(())
}

pub fn validate_password(raw: &str) -> Result<()> {
    let len = raw.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&len) {
        return Err(Error::validation(format!(
            "password must be {PASSWORD_MIN}–{PASSWORD_MAX} characters"
        )));
    }
    Ok(())
}

/// Validates user-written text: `min..=max` characters after trimming, no control
/// characters except newline. Returns the text trimmed of surrounding whitespace.
fn validate_text(raw: &str, field: &str, min: usize, max: usize) -> Result<String> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len < min || len > max {
        return Err(Error::validation(if min == 0 {
            format!("{field} must be at most {max} characters")
        } else {
            format!("{field} must be {min}–{max} characters")
        }));
    }
    if trimmed.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::validation(format!(
            "{field} must not contain control characters other than newline"
        )));
    }
    Ok(trimmed.to_owned())
}

/// Declares a validated-text newtype: its only constructor is `parse`, which applies
/// `$validate`; serialised as the bare string, so stored items and bodies do not change.
macro_rules! validated_text {
    ($(#[$doc:meta])* $name:ident, $validate:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `raw` against the rule; a breach is a 400 `validation` error.
            pub fn parse(raw: &str) -> Result<Self> {
                let validate: fn(&str) -> Result<String> = $validate;
                validate(raw).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(raw: String) -> Result<Self> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(text: $name) -> String {
                text.0
            }
        }
    };
}

validated_text!(
    /// A username as the user typed it (case kept for display): 3–30 letters a–z (any
    /// case), digits or underscores. Uniqueness ignores case: see [`Username::canonical`].
    Username,
    |raw| check_username(raw).map(|()| raw.to_owned())
);

impl Username {
    /// The lower-case form: the uniqueness key and what logins look up.
    pub fn canonical(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

validated_text!(
    /// A display name: 1–50 characters after trimming, one line.
    DisplayName,
    |raw| {
        let name = validate_text(raw, "display_name", 1, DISPLAY_NAME_MAX)?;
        if name.contains('\n') {
            return Err(Error::validation("display_name must be a single line"));
        }
        Ok(name)
    }
);

validated_text!(
    /// A profile bio: at most 300 characters after trimming (may be empty).
    Bio,
    |raw| validate_text(raw, "bio", 0, BIO_MAX)
);

validated_text!(
    /// A post's text: 1–2000 characters after trimming.
    PostText,
    |raw| validate_text(raw, "text", 1, POST_TEXT_MAX)
);

validated_text!(
    /// A comment's text: 1–2000 characters after trimming.
    CommentText,
    |raw| validate_text(raw, "text", 1, COMMENT_TEXT_MAX)
);

validated_text!(
    /// A direct message's text: 1–4000 characters after trimming.
    MessageText,
    |raw| validate_text(raw, "text", 1, MESSAGE_TEXT_MAX)
);

validated_text!(
    /// A post's media: an absolute `https` URL with a host, in its normalised form.
    MediaUrl,
    |raw| {
        if raw.len() > MEDIA_URL_MAX {
            return Err(Error::validation(format!(
                "media_url must be at most {MEDIA_URL_MAX} bytes"
            )));
        }
        let url =
            url::Url::parse(raw).map_err(|_| Error::validation("media_url must be a URL"))?;
        if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
            return Err(Error::validation("media_url must be an https URL"));
        }
        Ok(url.to_string())
    }
);

validated_text!(
    /// A client's idempotency id for a message: 1–64 characters of `[A-Za-z0-9_-]`.
    ClientMessageId,
    |raw| {
        if raw.is_empty()
            || raw.len() > CLIENT_MESSAGE_ID_MAX
            || !raw
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::validation(format!(
                "client_message_id must be 1–{CLIENT_MESSAGE_ID_MAX} characters of [A-Za-z0-9_-]"
            )));
        }
        Ok(raw.to_owned())
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_case_insensitive_and_restricted() {
        let name = Username::parse("Alice_01").unwrap();
        assert_eq!(
            (name.as_str(), name.canonical().as_str()),
            ("Alice_01", "alice_01")
        );
        for bad in [
            "ab",
            "a".repeat(31).as_str(),
            "al ice",
            "alice!",
            "ålice",
            "",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Username::parse(&"a".repeat(30)).is_ok());
    }

    #[test]
    fn text_limits_count_characters_not_bytes() {
        assert!(PostText::parse(&"é".repeat(2000)).is_ok());
        assert!(PostText::parse(&"é".repeat(2001)).is_err());
        assert!(MessageText::parse(&"x".repeat(4000)).is_ok());
        assert!(MessageText::parse(&"x".repeat(4001)).is_err());
        assert!(CommentText::parse(&"x".repeat(2001)).is_err());
        assert!(PostText::parse("   ").is_err());
        assert_eq!(
            PostText::parse("  hi\nthere ").unwrap().as_str(),
            "hi\nthere"
        );
    }

    #[test]
    fn profile_text_rules() {
        assert!(DisplayName::parse("two\nlines").is_err());
        assert!(DisplayName::parse(&"d".repeat(51)).is_err());
        assert_eq!(Bio::parse("  ").unwrap().as_str(), "");
        assert!(Bio::parse(&"b".repeat(301)).is_err());
        assert!(ClientMessageId::parse("abc-1_2").is_ok());
        assert!(ClientMessageId::parse("a b").is_err());
        assert!(ClientMessageId::parse(&"c".repeat(65)).is_err());
    }

    #[test]
    fn validated_text_serialises_as_the_bare_string_and_revalidates() {
        let text = PostText::parse(" hello ").unwrap();
        assert_eq!(
            serde_json::to_value(&text).unwrap(),
            serde_json::json!("hello")
        );
        let back: PostText = serde_json::from_value(serde_json::json!("hello")).unwrap();
        assert_eq!(back, text);
        assert!(serde_json::from_value::<PostText>(serde_json::json!("")).is_err());
    }

    #[test]
    fn control_characters_other_than_newline_are_rejected() {
        assert!(PostText::parse("tab\there").is_err());
        assert!(PostText::parse("nul\u{0}").is_err());
        assert!(PostText::parse("bell\u{7}").is_err());
        assert!(PostText::parse("line\nbreak").is_ok());
    }

    #[test]
    fn media_urls_must_be_https() {
        assert!(MediaUrl::parse("https://cdn.example.com/a.png").is_ok());
        assert!(MediaUrl::parse("http://cdn.example.com/a.png").is_err());
        assert!(MediaUrl::parse("javascript:alert(1)").is_err());
        assert!(MediaUrl::parse("not a url").is_err());
    }

    #[test]
    fn ids_must_be_uuids() {
        assert!(parse_id::<UserId>("not-a-uuid", "user_id").is_err());
        assert!(parse_id::<UserId>("00000000-0000-0000-0000-000000000000", "user_id").is_err());
        let id: UserId = new_id();
        assert_eq!(parse_id::<UserId>(&id.to_string(), "user_id").unwrap(), id);
        assert_eq!(UserId::parse(&id.to_string(), "user_id").unwrap(), id);
        assert_eq!(UserId::from_stored(&id.to_string()).unwrap(), id);
        assert!(UserId::from_stored("nope").is_err());
        let error = PostId::parse("nope", "post_id").unwrap_err();
        assert_eq!((error.status(), error.code()), (400, "validation_failed"));
        assert!(error.public_message().contains("post_id"));
    }

    #[test]
    fn new_ids_sort_by_creation() {
        let first = PostId::new();
        let second = PostId::new();
        assert!(first.to_string() < second.to_string());
    }

    #[test]
    fn ids_serialise_as_the_bare_uuid_string() {
        let uuid = Uuid::now_v7();
        let id = UserId::from_uuid(uuid).unwrap();
        assert_eq!(
            serde_json::to_value(id).unwrap(),
            serde_json::to_value(uuid).unwrap()
        );
        let back: UserId = serde_json::from_value(serde_json::json!(uuid.to_string())).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_value::<UserId>(serde_json::json!(Uuid::nil())).is_err());
        assert_eq!(id.to_string(), uuid.to_string());
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
    }

    #[test]
    fn passwords_have_length_bounds() {
        assert!(validate_password("1234567").is_err());
        assert!(validate_password("12345678").is_ok());
        assert!(validate_password(&"p".repeat(129)).is_err());
    }
}
