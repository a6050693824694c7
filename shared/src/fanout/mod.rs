//! Fan-out: who an event is for, and how it reaches every online recipient at any
//! audience size without holding up the stream.
//!
//! - `audience`: [`Audience`] and [`AudienceResolver`] — audiences turned into connection
//!   ids at a cost that follows *online* recipients (the online-users index intersected
//!   with keys-only follower pages), bounded in place or deferred to a push worker.
//! - `dispatch`: [`Dispatcher`] — direct posts for small audiences, `fanout` chunks on the
//!   queue for large ones, `audience` work items for what the router must not resolve.
//! - `queue`: the typed, versioned SQS messages between the stream router and the push
//!   workers (work items, chunks, retries of failed connections, presence checks).
//! - `tier`: [`PushTier`] and [`PushFunctionState`], the state of `stream-router` and
//!   `push-worker`.
//!
//! Posting to a connection itself (the management API, retries, 410 clean-up, metrics)
//! is [`crate::push`], shared with every function that posts.

mod audience;
mod dispatch;
mod queue;
mod tier;

pub use audience::{
    Audience, AudienceResolver, OnlineSnapshot, Resolution, MAX_AUDIENCE_FOLLOWERS,
};
pub use dispatch::{retry_delay, Dispatcher, MAX_REENQUEUES, MAX_RETRY_DELAY};
#[cfg(feature = "sqs")]
pub use queue::SqsEventQueue;
pub use queue::{
    fanout_messages, AudienceWork, EventQueue, FanoutChunk, FeedWork, MalformedMessage,
    PresenceCheck, QueueMessage, FANOUT_CHUNK_CONNECTIONS, FEED_TASKS_PER_MESSAGE, MAX_DELAY,
    MAX_MESSAGE_BYTES, QUEUE_MESSAGE_VERSION, SEND_BATCH_MAX,
};
pub use tier::{PushFunctionState, PushTier};
