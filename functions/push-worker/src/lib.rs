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
//!   no connection, the presence item flips to offline (one conditional transaction) and
//!   `user_offline` goes to the user's presence watchers.
//!
//! A message that cannot be read (not JSON, unknown kind, another version) is logged with
//! its id and dropped — counted in the `MalformedMessages` metric, which has an alarm —
//! rather than reported: the same bytes would fail every time, and bouncing them until the
//! DLQ only delays the batch. Such a body can only come from a bug or a foreign writer.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use shared::error::{cause_chain, Result};
use shared::events::Event;
use shared::function::{BoxError, LambdaFunction, TypedFunction};
use shared::push::{Audience, DispatchReport, PushMetrics};
use shared::queue::{FanoutChunk, PresenceCheck, QueueMessage};

/// The `Function` dimension of this function's metrics.
pub const FUNCTION_NAME: &str = "push-worker";

/// Characters of a malformed body quoted in the log.
const MALFORMED_BODY_LOG_CHARS: usize = 200;

/// Everything the handler needs, built once per cold start: the push tier's one state
/// (`State::new(config, clients)` in production, `State::from_parts` over given parts).
pub use shared::push::PushFunctionState as State;

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
        QueueMessage::PresenceCheck(check) => check_presence(state, &check).await,
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
        .tier
        .dispatcher
        .direct
        .deliver(&chunk.event, &chunk.connection_ids)
        .await
        .map(Some)
}

/// Announces the user offline if they are still disconnected once the grace period is over.
async fn check_presence(state: &State, check: &PresenceCheck) -> Result<Option<DispatchReport>> {
    let cause = format!("disconnect:{}", check.connection_id);
    let announced = state
        .tier
        .presence
        .announce_offline(check.user_id, &cause, check.disconnected_at)
        .await?;
    if !announced {
        tracing::debug!(user = %check.user_id, "user reconnected within the grace period (or already offline)");
        return Ok(None);
    }
    let event = Event::user_offline(check.user_id, &cause, check.disconnected_at);
    state
        .tier
        .send(&event, &[Audience::PresenceWatchers(check.user_id)])
        .await
        .map(Some)
}
