//! Ripple's one error type, and the single place where it becomes an HTTP status and body.
//! Its WebSocket form is built in exactly one place too, `events::Event::error`, from the
//! same [`Error::code`] and [`Error::public_message`].
//!
//! Handlers return `Result<_, Error>`; nothing else decides status codes. A 5xx never
//! reveals its cause to the client: the body is generic and the cause chain goes to the log.

use std::error::Error as StdError;

use serde_json::{json, Value};

/// Boxed error carried by [`Error::Internal`].
pub type BoxedCause = Box<dyn StdError + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that is malformed or breaks a rule (400 `validation_failed`).
    #[error("{0}")]
    Validation(String),
    /// Missing, malformed, expired or revoked credentials (401 `unauthorized`).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this (403). `code` is `forbidden` unless a more precise
    /// machine-readable reason exists, such as `edit_window_closed`.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The object does not exist, or the caller may not know that it exists (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with current state (409). `code` is `conflict` (e.g. a taken
    /// username) unless a more precise machine-readable reason exists, such as
    /// `follow_limit_reached`.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request body is larger than allowed (413).
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A per-user budget is exhausted (429 with `Retry-After`).
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// Anything the client cannot fix. The context is logged, never sent.
    #[error("internal error: {context}")]
    Internal {
        context: String,
        #[source]
        source: Option<BoxedCause>,
    },
}

impl Error {
    pub fn validation(message: impl Into<String>) -> Self {
        Self::Validation(message.into())
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            code: "forbidden",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            code: "conflict",
            message: message.into(),
        }
    }

    /// An internal error with its cause kept for the log.
    pub fn internal(context: impl Into<String>, source: impl Into<BoxedCause>) -> Self {
        Self::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// An internal error that has no underlying cause (a broken invariant).
    pub fn invariant(context: impl Into<String>) -> Self {
        Self::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Validation(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden { .. } => 403,
            Self::NotFound(_) => 404,
            Self::Conflict { .. } => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::RateLimited { .. } => 429,
            Self::Internal { .. } => 500,
        }
    }

    /// Stable machine-readable code, the contract clients branch on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "validation_failed",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden { code, .. } => code,
            Self::NotFound(_) => "not_found",
            Self::Conflict { code, .. } => code,
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal { .. } => "internal",
        }
    }

    /// The message a client may see. Internal errors get a generic one.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal { .. } => "something went wrong; try again later".to_owned(),
            other => other.to_string(),
        }
    }

    /// Seconds a client should wait before retrying, when that is known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The HTTP error body: `{"error":{"code","message","request_id"}}`.
    pub fn http_body(&self, request_id: &str) -> Value {
        json!({
            "error": {
                "code": self.code(),
                "message": self.public_message(),
                "request_id": request_id,
            }
        })
    }

    /// Logs the error at the level it deserves: the whole cause chain for server faults,
    /// one debug line for client mistakes.
    pub fn log(&self, request_id: &str) {
        if self.status() >= 500 {
            tracing::error!(request_id, error = %self, causes = %cause_chain(self), "request failed");
        } else {
            tracing::debug!(request_id, code = self.code(), error = %self, "request rejected");
        }
    }
}

/// `a: b: c` rendering of an error's sources.
pub fn cause_chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts = Vec::new();
    let mut current = error.source();
    while let Some(cause) = current {
        parts.push(cause.to_string());
        current = cause.source();
    }
    parts.join(": ")
}

impl From<serde_dynamo::Error> for Error {
    fn from(source: serde_dynamo::Error) -> Self {
        Self::internal("DynamoDB item (de)serialisation", source)
    }
}

impl From<serde_json::Error> for Error {
    fn from(source: serde_json::Error) -> Self {
        Self::internal("JSON (de)serialisation", source)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause_from_clients() {
        let error = Error::internal("loading user", std::io::Error::other("disk on fire"));
        let body = error.http_body("req-1");
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("disk on fire"));
        assert!(cause_chain(&error).contains("disk on fire"));
        assert_eq!(error.status(), 500);
    }

    #[test]
    fn each_variant_maps_to_its_status_and_code() {
        let cases = [
            (Error::validation("x"), 400, "validation_failed"),
            (Error::unauthorized("x"), 401, "unauthorized"),
            (Error::forbidden("x"), 403, "forbidden"),
            (Error::not_found("x"), 404, "not_found"),
            (Error::conflict("x"), 409, "conflict"),
            (
                Error::PayloadTooLarge { limit: 10 },
                413,
                "payload_too_large",
            ),
            (
                Error::RateLimited {
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
            ),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.http_body("r")["error"]["message"], error.to_string());
        }
    }

    #[test]
    fn conflict_can_carry_a_precise_code() {
        let error = Error::Conflict {
            code: "follow_limit_reached",
            message: "you already follow 5000 accounts".into(),
        };
        assert_eq!(error.code(), "follow_limit_reached");
        assert_eq!(error.status(), 409);
        assert_eq!(
            error.http_body("r")["error"]["code"],
            "follow_limit_reached"
        );
    }

    #[test]
    fn forbidden_can_carry_a_precise_code() {
        let error = Error::Forbidden {
            code: "edit_window_closed",
            message: "posts can be edited for 120 s".into(),
        };
        assert_eq!(error.code(), "edit_window_closed");
        assert_eq!(error.status(), 403);
    }
}
