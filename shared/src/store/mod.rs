//! The single-table DynamoDB store.
//!
//! - [`keys`]: every key of the design (the only place keys are built).
//! - `table`: the table definition from `infra/table.json` and its creation ([`create_table`]).
//! - [`page`]: cursors and pages.
//! - [`dynamo`]: item mapping (`serde_dynamo`), paged queries, batches.
//! - `transaction`: `TransactWriteItems` with a handle per item, so a failure names the
//!   condition that failed (`failure.failed(&block_checks)`), never a position.
//! - One private module per area, each adding its methods to [`DynamoStore`]: `users`,
//!   `social`, `posts`, `messages`, `notifications`, `tokens`, `rate_limit`, `lockout`,
//!   `connections` (WebSocket connections and rooms), `presence` (the online state
//!   announced to watchers; debounces online/offline), `online` (the sharded online-users
//!   index fan-out intersects with followers), `delivered` (delivery markers of events the
//!   writer push already delivered), `feed` (the materialized home feed: entries,
//!   large-followee markers, the page read). What callers name from them is re-exported
//!   below.
//!
//! There are no store traits: each had one implementation and no fake. Handlers hold the
//! one [`DynamoStore`], and every test that exercises storage runs it against a real
//! DynamoDB engine (see `testkit`).
//!
//! Invariants are enforced by DynamoDB conditions and transactions, never by
//! read-then-write: username uniqueness, follow counters, likes, notifications written in
//! the same transaction as their cause.

pub(crate) mod connections;
pub(crate) mod delivered;
pub mod dynamo;
pub(crate) mod feed;
pub mod keys;
pub(crate) mod lockout;
pub(crate) mod messages;
pub(crate) mod notifications;
pub(crate) mod online;
pub mod page;
pub(crate) mod posts;
pub(crate) mod presence;
pub(crate) mod rate_limit;
pub(crate) mod social;
pub(crate) mod table;
pub(crate) mod tokens;
pub(crate) mod transaction;
pub(crate) mod users;

// What functions, tools and tests name from the area modules (each module's items are
// reached through `DynamoStore`'s methods otherwise).
pub use connections::{
    GoneRemoval, StoredConnection, HANDSHAKE_WINDOW, MAX_ROOMS_PER_CONNECTION, MAX_ROOM_MEMBERS,
};
pub use delivered::{DeliveryProgress, DELIVERY_MARKER_ENTITY, DELIVERY_MARKER_TTL};
pub use dynamo::Table;
pub use feed::FeedMode;
pub use lockout::{Door, LockoutPolicy, Subject};
pub use messages::{message_status, NewMessage, SentMessage, MAX_PENDING_REQUEST_MESSAGES};
pub use notifications::{notification_items, NewNotification, NotificationItems, Notified};
pub use page::{Page, PageRequest};
pub use posts::{NewComment, NewPost, PostEdit};
pub use presence::{PresenceRecord, PRESENCE_GRACE};
pub use rate_limit::{Budgets, RateLimitedAction, WINDOW_SECONDS};
pub use social::{FollowerIds, FOLLOW_LIMIT_REACHED, MAX_FOLLOWING};
pub use table::create_table;
pub use tokens::{NewRefreshToken, Rotation};
pub use users::{NewUser, ProfileUpdate, SearchEntryRebuild, MAX_SEARCH_PREFIX};

/// The store: the table client, with every area's methods (one `impl` block per module).
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
