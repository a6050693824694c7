//! Client → server frames: `{"action": "...", "request_id": "...", ...}`.
//!
//! A frame is read in two steps. First the envelope: a text frame of at most
//! [`MAX_FRAME_BYTES`] holding a JSON object, whose optional `request_id` (a string of at
//! most [`MAX_REQUEST_ID_CHARS`]) is taken out so that even a frame rejected later gets an
//! `error` carrying it. Then the rest is deserialised into [`Action`], a tagged enum whose
//! actions deny unknown fields — the action is never guessed from loose JSON.

use serde_json::Value;
use shared::error::{Error, Result};

use crate::action::Action;

/// Largest frame accepted. Every action fits in a few hundred bytes; API Gateway's own
/// limit (128 KB) is far above what a well-behaved client ever sends.
pub const MAX_FRAME_BYTES: usize = 4 * 1024;

/// Longest `request_id` echoed back.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// The WebSocket API's route keys (`$request.body.action`, else `$default`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Default,
    Subscribe,
    Unsubscribe,
    Typing,
    Ping,
    Resume,
}

impl Route {
    /// `None` for a route key this function does not serve (`$connect`, `$disconnect`…).
    pub fn parse(route_key: &str) -> Option<Self> {
        Some(match route_key {
            "$default" => Self::Default,
            "subscribe" => Self::Subscribe,
            "unsubscribe" => Self::Unsubscribe,
            "typing" => Self::Typing,
            "ping" => Self::Ping,
            "resume" => Self::Resume,
            _ => return None,
        })
    }
}

/// A read frame: the request id (when one could be read) and the action or why not.
#[derive(Debug)]
pub struct Frame {
    pub request_id: Option<String>,
    pub action: Result<Action>,
}

impl Frame {
    /// Reads the body of a WebSocket message event.
    pub fn read(body: Option<&str>, is_base64_encoded: bool) -> Self {
        let rejected = |error| Self {
            request_id: None,
            action: Err(error),
        };
        if is_base64_encoded {
            return rejected(Error::validation(
                "binary frames are not supported; send JSON text frames",
            ));
        }
        let body = body.unwrap_or_default();
        if body.trim().is_empty() {
            return rejected(Error::validation(
                "empty frame; send a JSON object with an action",
            ));
        }
        if body.len() > MAX_FRAME_BYTES {
            return rejected(Error::PayloadTooLarge {
                limit: MAX_FRAME_BYTES,
            });
        }
        let mut object = match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return rejected(Error::validation("a frame must be a JSON object")),
            Err(error) => {
                return rejected(Error::validation(format!("frame is not JSON: {error}")))
            }
        };
        let request_id = match object.remove("request_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if id.chars().count() <= MAX_REQUEST_ID_CHARS => Some(id),
            Some(_) => {
                return rejected(Error::validation(format!(
                    "request_id must be a string of at most {MAX_REQUEST_ID_CHARS} characters"
                )))
            }
        };
        let action = serde_json::from_value::<Action>(Value::Object(object))
            .map_err(|error| Error::validation(format!("invalid frame: {error}")));
        Self { request_id, action }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::{Ping, Resume, Subscribe, Typing, Unsubscribe};
    use shared::events::TypingState;

    fn read(body: &str) -> Frame {
        Frame::read(Some(body), false)
    }

    #[test]
    fn reads_every_action_with_its_request_id() {
        let user = shared::domain::UserId::from_u128(7);
        let cases = [
            (
                r#"{"action":"subscribe","request_id":"r1","channel":"post:x"}"#,
                Action::Subscribe(Subscribe {
                    channel: "post:x".into(),
                }),
            ),
            (
                r#"{"action":"unsubscribe","request_id":"r1","channel":"post:x"}"#,
                Action::Unsubscribe(Unsubscribe {
                    channel: "post:x".into(),
                }),
            ),
            (
                &format!(
                    r#"{{"action":"typing","request_id":"r1","to":"{user}","state":"start"}}"#
                ),
                Action::Typing(Typing {
                    to: user,
                    state: TypingState::Start,
                }),
            ),
            (
                r#"{"action":"ping","request_id":"r1"}"#,
                Action::Ping(Ping {}),
            ),
            (
                r#"{"action":"resume","request_id":"r1","since":"c"}"#,
                Action::Resume(Resume { since: "c".into() }),
            ),
        ];
        for (body, expected) in cases {
            let frame = read(body);
            assert_eq!(frame.request_id.as_deref(), Some("r1"), "{body}");
            assert_eq!(frame.action.unwrap(), expected, "{body}");
        }
    }

    #[test]
    fn request_id_is_optional() {
        let frame = read(r#"{"action":"ping"}"#);
        assert_eq!(frame.request_id, None);
        assert_eq!(frame.action.unwrap(), Action::Ping(Ping {}));
    }

    #[test]
    fn unknown_actions_missing_and_unknown_fields_keep_the_request_id() {
        for body in [
            r#"{"action":"dance","request_id":"r2"}"#,
            r#"{"request_id":"r2","channel":"post:x"}"#,
            r#"{"action":"subscribe","request_id":"r2"}"#,
            r#"{"action":"ping","request_id":"r2","extra":1}"#,
            r#"{"action":"typing","request_id":"r2","to":"not-a-uuid","state":"start"}"#,
            r#"{"action":"typing","request_id":"r2","to":"00000000-0000-0000-0000-000000000001","state":"shouting"}"#,
            r#"{"action":7,"request_id":"r2"}"#,
        ] {
            let frame = read(body);
            assert_eq!(frame.request_id.as_deref(), Some("r2"), "{body}");
            assert_eq!(
                frame.action.unwrap_err().code(),
                "validation_failed",
                "{body}"
            );
        }
    }

    #[test]
    fn garbage_is_rejected_without_a_request_id() {
        for body in [
            "not json",
            "[1,2]",
            "\"ping\"",
            "",
            "   ",
            r#"{"action":"ping","request_id":5}"#,
        ] {
            let frame = read(body);
            assert_eq!(frame.request_id, None, "{body}");
            assert_eq!(
                frame.action.unwrap_err().code(),
                "validation_failed",
                "{body}"
            );
        }
        let long_id = "r".repeat(MAX_REQUEST_ID_CHARS + 1);
        let frame = read(&format!(r#"{{"action":"ping","request_id":"{long_id}"}}"#));
        assert_eq!(frame.request_id, None);
        assert!(frame.action.is_err());
    }

    #[test]
    fn oversize_and_binary_frames_are_rejected() {
        let big = format!(
            r#"{{"action":"ping","pad":"{}"}}"#,
            "x".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(read(&big).action.unwrap_err().code(), "payload_too_large");
        let binary = Frame::read(Some("AAEC"), true);
        assert_eq!(binary.action.unwrap_err().code(), "validation_failed");
    }

    #[test]
    fn actions_arrive_on_their_route_or_default() {
        let ping = Action::Ping(Ping {});
        assert!(ping.arrives_on(Route::Ping));
        assert!(ping.arrives_on(Route::Default));
        assert!(!ping.arrives_on(Route::Typing));
        assert_eq!(Route::parse("$connect"), None);
        assert_eq!(Route::parse("resume"), Some(Route::Resume));
    }
}
