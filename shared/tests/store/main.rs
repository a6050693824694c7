//! The store suite: every access pattern of `docs/data-model.md` against a real DynamoDB
//! engine through the real SDK — embedded dynoxide by default, DynamoDB Local when
//! `RIPPLE_TEST_DYNAMODB_ENDPOINT` is set (`make test` runs both).
//!
//! One module per store area; each test starts its own fresh database.

mod connections;
mod delivered;
mod feed;
mod lockout;
mod messages;
mod notifications;
mod posts;
mod rate_limit;
mod social;
mod support;
mod tokens;
mod users;
