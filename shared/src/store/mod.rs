//! The single-table DynamoDB store.
//!
//! - [`keys`]: every key of the design (the only place keys are built).
//! - [`table`]: the table definition from `infra/table.json` and its creation.
//! - [`page`]: cursors and pages.
//! - [`dynamo`]: item mapping (`serde_dynamo`), transactions, paged queries, batches.
//! - One module per area, each with a small trait and its DynamoDB implementation on
//!   [`DynamoStore`]: [`users`], [`social`], [`posts`], [`messages`], [`notifications`],
//!   [`tokens`], [`rate_limit`], [`connections`] (WebSocket connections and rooms),
//!   [`presence`] (the online state announced to watchers; debounces online/offline),
//!   [`online`] (the sharded online-users index fan-out intersects with followers),
//!   [`delivered`] (delivery markers of events the writer push already delivered),
//!   [`feed`] (the materialized home feed: entries, large-followee markers, the page read).
//!
//! Handlers hold the traits as `Arc<dyn …Store>` so narrow unit tests can substitute a fake;
//! every test that exercises storage runs against a real DynamoDB engine (see `testkit`).
//!
//! Invariants are enforced by DynamoDB conditions and transactions, never by
//! read-then-write: username uniqueness, follow counters, likes, notifications written in
//! the same transaction as their cause.

pub mod connections;
pub mod delivered;
pub mod dynamo;
pub mod feed;
pub mod keys;
pub mod lockout;
pub mod messages;
pub mod notifications;
pub mod online;
pub mod page;
pub mod posts;
pub mod presence;
pub mod rate_limit;
pub mod social;
pub mod table;
pub mod tokens;
pub mod transaction;
pub mod users;

pub use dynamo::Table;
pub use page::{Page, PageRequest};

/// The DynamoDB implementation of every store trait.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub table: Table,
}

impl DynamoStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table_name: impl Into<String>) -> Self {
        Self {
            table: Table::new(client, table_name),
        }
    }
}
