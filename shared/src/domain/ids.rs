//! Typed ids: one newtype per entity kind, so ids of different kinds do not mix.

use std::fmt;
use std::str::FromStr;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
