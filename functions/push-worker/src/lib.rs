//! `push-worker`: the SQS consumer of the push tier.
//!
//! Each message of the fan-out queue is one of (see `shared::queue`):
//!
//! - `fanout` — an event and a chunk of connection ids: posted to every connection with
//!   bounded concurrency. A gone connection (410) is removed with its room memberships and
//!   counts as delivered; throttling and 5xx are retried with backoff, and a chunk with
//!   connections still failing is reported in `batchItemFailures`, so SQS redelivers it
//!   after the visibility timeout (the connections that did receive it get the same
//!   `event_id` again and dedupe) and, after `maxReceiveCount`, moves it to the DLQ.
//! - `presence_check` — the grace period after a disconnect is over: if the user still has
//!   no connection, the presence item flips to offline (one conditional transaction). That
//!   write is the announcement: the stream router sees `online` go from true to false and
//!   pushes `user_offline` to the user's presence watchers, directly or through the queue.
//!   The worker itself never sends to the queue (only the router may, by IAM), and resolves
//!   no audience.
//!
//! A message that cannot be read (not JSON, unknown kind, another version) is logged with
//! its id and dropped — counted in the `MalformedMessages` metric, which has an alarm —
//! rather than reported: the same bytes would fail every time, and bouncing them until the
//! DLQ only delays the batch. Such a body can only come from a bug or a foreign writer.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use shared::aws::Clients;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::error::{cause_chain, Result};
use shared::function::{BoxError, LambdaFunction, TypedFunction};
use shared::push::{DirectPush, DispatchReport, PushClient, PushMetrics, RetryPolicy};
use shared::queue::{FanoutChunk, PresenceCheck, QueueMessage};
use shared::store::presence::PresenceStore;
use shared::store::DynamoStore;

/// The `Function` dimension of this function's metrics.
pub const FUNCTION_NAME: &str = "push-worker";

/// Characters of a malformed body quoted in the log.
const MALFORMED_BODY_LOG_CHARS: usize = 200;

/// Everything the handler needs, built once per cold start: the management API (with the
/// stale-connection cleanup behind it) and the presence store. No queue: the worker only
/// consumes it.
pub struct State {
    pub config: Config,
    pub direct: DirectPush,
    pub presence: Arc<dyn PresenceStore>,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("table", &self.config.table_name)
            .finish_non_exhaustive()
    }
}

impl State {
    /// Production state: DynamoDB, the management API (`WS_MANAGEMENT_ENDPOINT` is
    /// required), the system clock.
    pub fn new(config: Config, clients: &Clients) -> Result<Self> {
        let (store, push) = shared::push::pushing_parts(&config, clients)?;
        Ok(Self::from_parts(config, store, push, Arc::new(SystemClock)))
    }

    /// State over the given store, push client and clock.
    pub fn from_parts(
        config: Config,
        store: Arc<DynamoStore>,
        push: Arc<dyn PushClient>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            direct: DirectPush::new(push, store.clone()),
            presence: store,
            clock,
        }
    }

    /// Replaces the throttling/5xx retry policy of the pushes.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.direct.retry = retry;
        self
    }
}

/// The function as the local gateway and tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::new(move |event: LambdaEvent<SqsEvent>| {
        let state = Arc::clone(&state);
        async move { handle(&state, event).await }
    })
}

/// What became of one message.
enum Handled {
    Done,
    /// Report for redelivery.
    Retry,
}

/// Handles one batch of queue messages; reports the ones to redeliver.
#[tracing::instrument(skip(state, event), fields(request_id = %event.context.request_id, messages = event.payload.records.len()))]
pub async fn handle(
    state: &State,
    event: LambdaEvent<SqsEvent>,
) -> std::result::Result<SqsBatchResponse, BoxError> {
    let mut metrics = PushMetrics::default();
    let mut response = SqsBatchResponse::default();
    for message in &event.payload.records {
        metrics.inputs += 1;
        if let Handled::Retry = process_message(state, message, &mut metrics).await {
            metrics.failures += 1;
            match &message.message_id {
                Some(id) => response.add_failure(id.clone()),
                // SQS always sets it; without one there is nothing to report.
                None => tracing::error!("failed message has no messageId"),
            }
        }
    }
    shared::telemetry::emf::emit(
        &metrics.emf_document(FUNCTION_NAME, state.clock.now().timestamp_millis()),
    );
    Ok(response)
}

async fn process_message(
    state: &State,
    message: &SqsMessage,
    metrics: &mut PushMetrics,
) -> Handled {
    let message_id = message.message_id.as_deref().unwrap_or("");
    let body = message.body.as_deref().unwrap_or("");
    let parsed = match QueueMessage::parse(body) {
        Ok(parsed) => parsed,
        Err(error) => {
            metrics.malformed += 1;
            let quoted: String = body.chars().take(MALFORMED_BODY_LOG_CHARS).collect();
            tracing::error!(message_id, error = %error, body = quoted, "malformed queue message dropped");
            return Handled::Done;
        }
    };
    let outcome = match parsed {
        QueueMessage::Fanout(chunk) => deliver_chunk(state, &chunk).await,
        QueueMessage::PresenceCheck(check) => check_presence(state, &check).await.map(|()| None),
    };
    match outcome {
        Ok(Some(report)) => {
            metrics.add(&report);
            if report.needs_retry() {
                tracing::warn!(
                    message_id,
                    failing = report.retryable_failures.len(),
                    "pushes still failing; message will be redelivered"
                );
                Handled::Retry
            } else {
                Handled::Done
            }
        }
        Ok(None) => Handled::Done,
        Err(error) => {
            tracing::warn!(message_id, error = %error, causes = %cause_chain(&error), "queue message failed");
            Handled::Retry
        }
    }
}

/// Posts a chunk's event to its connections (never re-queued: the router already split it).
async fn deliver_chunk(state: &State, chunk: &FanoutChunk) -> Result<Option<DispatchReport>> {
    state
        .direct
        .deliver(&chunk.event, &chunk.connection_ids)
        .await
        .map(Some)
}

/// Records the user offline if they are still disconnected once the grace period is over;
/// the stream router pushes `user_offline` when it sees the write.
async fn check_presence(state: &State, check: &PresenceCheck) -> Result<()> {
    let cause = format!("disconnect:{}", check.connection_id);
    let announced = state
        .presence
        .announce_offline(check.user_id, &cause, check.disconnected_at)
        .await?;
    if announced {
        tracing::debug!(user = %check.user_id, cause, "user announced offline");
    } else {
        tracing::debug!(user = %check.user_id, "user reconnected within the grace period (or already offline)");
    }
    Ok(())
}
