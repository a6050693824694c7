//! Direct push for small audiences, the queue for large ones and for work the router
//! must not do itself.

use std::sync::Arc;
use std::time::Duration;

use super::audience::Audience;
use super::queue::{AudienceWork, EventQueue, FanoutChunk};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::push::{DirectPush, DispatchPath, DispatchReport};

/// Pushes events directly or through the queue: an audience up to
/// `direct_max_connections` goes through [`DirectPush`], a larger one is split into
/// `fanout` messages for the push worker.
#[derive(Clone)]
pub struct Dispatcher {
    pub direct: DirectPush,
    pub queue: Arc<dyn EventQueue>,
    /// Audiences up to this many connections are pushed directly.
    pub direct_max_connections: usize,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("direct", &self.direct)
            .field("direct_max_connections", &self.direct_max_connections)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Direct push for small audiences, the queue for large ones. A queue failure is an
    /// error (the caller retries its source); push failures are in the report.
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %event.event_id, connections = connection_ids.len()))]
    pub async fn dispatch(
        &self,
        event: &Event,
        connection_ids: &[String],
    ) -> Result<DispatchReport> {
        if connection_ids.is_empty() {
            return Ok(DispatchReport::new(DispatchPath::Nobody, 0));
        }
        if connection_ids.len() > self.direct_max_connections {
            let mut report = DispatchReport::new(DispatchPath::Queued, connection_ids.len());
            report.queued_messages = self.queue.enqueue_fanout(event, connection_ids).await?;
            return Ok(report);
        }
        self.direct.deliver(event, connection_ids).await
    }
}

/// Re-enqueues of an event's failing connections before the source itself is reported
/// failed (and, for a queue message, left to SQS's redrive policy and the DLQ).
pub const MAX_REENQUEUES: u32 = 5;

/// Longest delay before re-enqueued connections are tried again.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(16);

/// 1 s, 2 s, 4 s … capped at [`MAX_RETRY_DELAY`] (SQS delays are whole seconds): long
/// enough for a throttle or a 5xx burst to pass, far shorter than a visibility timeout.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(10)).min(MAX_RETRY_DELAY)
}

impl Dispatcher {
    /// Re-enqueues the connections of `report` still failing after the in-invocation
    /// retries — only those, so the ones that got `event` are not pushed it again — as a
    /// `fanout` chunk one attempt after `attempt`, visible after [`retry_delay`]. Returns
    /// how many were re-enqueued. An error (the queue failed, or [`MAX_REENQUEUES`] are
    /// used up) means the caller must have its source redelivered.
    pub async fn retry_failures(
        &self,
        event: &Event,
        report: &DispatchReport,
        attempt: u32,
    ) -> Result<usize> {
        let failing = report.retryable_failures.len();
        if failing == 0 {
            return Ok(0);
        }
        if attempt >= MAX_REENQUEUES {
            return Err(Error::invariant(format!(
                "{failing} connections still failing after {MAX_REENQUEUES} re-enqueues"
            )));
        }
        let retry = FanoutChunk {
            event: event.clone(),
            connection_ids: report.retryable_failures.clone(),
            attempt: attempt + 1,
        };
        let delay = retry_delay(retry.attempt);
        self.queue.enqueue_retry(&retry, delay).await?;
        tracing::info!(
            event_id = %event.event_id,
            failing,
            attempt = retry.attempt,
            delay_s = delay.as_secs(),
            "failing connections re-enqueued"
        );
        Ok(failing)
    }

    /// Hands `event` and its unresolved `audiences` to a push worker (an `audience` work
    /// item): the router's time per record stays bounded whatever the audience.
    pub async fn defer(&self, event: &Event, audiences: &[Audience]) -> Result<DispatchReport> {
        self.queue
            .enqueue_audience(&AudienceWork {
                event: event.clone(),
                audiences: audiences.to_vec(),
            })
            .await?;
        let mut report = DispatchReport::new(DispatchPath::Deferred, 0);
        report.queued_messages = 1;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=7).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 16, 16]);
    }
}
