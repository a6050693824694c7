//! Posting events to connections from `ws-message`: typing relays (to the recipient's
//! connections) and `resume` replays (to the caller's own connection, in order).
//!
//! `shared::push::Dispatcher` is built for the stream tier (it needs the fan-out queue,
//! which this function has no use for: its audiences are at most one user's connections).
//! This is the direct path only: the same `PushClient`, the same retry policy, and the same
//! rule for a connection API Gateway answers `410 Gone` for — remove it and its memberships.

use std::sync::Arc;

use futures::future::join_all;
use shared::error::{cause_chain, Error, Result};
use shared::events::Event;
use shared::push::{PushClient, PushError, PushOutcome, RetryPolicy};
use shared::store::connections::ConnectionStore;

/// Posts events to connections.
#[derive(Clone)]
pub struct Relay {
    pub push: Arc<dyn PushClient>,
    pub connections: Arc<dyn ConnectionStore>,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What happened to one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The connection was gone and has been removed.
    Gone,
}

impl Relay {
    /// Posts `event` to one connection, retrying retryable failures. A permanent failure or
    /// one still failing after the last attempt is an error.
    pub async fn send(&self, connection_id: &str, event: &Event) -> Result<Delivery> {
        let payload = event.to_json()?.into_bytes();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.push.post(connection_id, &payload).await {
                Ok(PushOutcome::Delivered) => return Ok(Delivery::Delivered),
                Ok(PushOutcome::Gone) => {
                    self.forget(connection_id).await;
                    return Ok(Delivery::Gone);
                }
                Err(PushError::Retryable(reason)) if attempt < self.retry.attempts.max(1) => {
                    tracing::debug!(connection_id, attempt, reason, "push failed; retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(error) => {
                    return Err(Error::internal(
                        format!("posting {} to a connection", event.kind()),
                        error,
                    ))
                }
            }
        }
    }

    /// Posts `event` to every connection at once (at most one user's few connections). Best
    /// effort: failures are logged, not returned; returns how many were delivered.
    pub async fn broadcast(&self, connection_ids: &[String], event: &Event) -> usize {
        let outcomes = join_all(connection_ids.iter().map(|id| self.send(id, event))).await;
        let mut delivered = 0;
        for (connection_id, outcome) in connection_ids.iter().zip(outcomes) {
            match outcome {
                Ok(Delivery::Delivered) => delivered += 1,
                Ok(Delivery::Gone) => {}
                Err(error) => tracing::warn!(
                    connection_id,
                    event_type = event.kind(),
                    error = %error,
                    causes = %cause_chain(&error),
                    "relay failed"
                ),
            }
        }
        delivered
    }

    /// A gone connection is removed with its memberships. If that fails, its TTL cleans up.
    async fn forget(&self, connection_id: &str) {
        if let Err(error) = self.connections.remove_connection(connection_id).await {
            tracing::warn!(connection_id, error = %error, causes = %cause_chain(&error), "removing a gone connection failed");
        }
    }
}
