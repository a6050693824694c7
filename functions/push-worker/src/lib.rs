//! `push-worker`: the SQS consumer of the push tier.
//!
//! Each message of the fan-out queue is one of (see `shared::fanout::queue`):
//!
//! - `audience` — an event whose audience the stream router left unresolved (an author
//!   with more than `FANOUT_INLINE_MAX_FOLLOWERS` followers): resolved here through the
//!   online-users index intersected with the keys-only follower pages, then pushed directly
//!   up to `FANOUT_DIRECT_MAX_CONNECTIONS` connections or split into `fanout` chunks that
//!   other worker invocations push in parallel.
//! - `fanout` — an event and a chunk of connection ids: posted to every connection with
//!   bounded concurrency. A gone connection (410) is removed with its room memberships and
//!   counts as delivered; throttling and 5xx are retried with backoff.
//! - `feed` — a change to materialized home feeds (`shared::feed`): a post written into its
//!   followers' feeds (or its author promoted to the merged feed), a deleted post withdrawn,
//!   a new follow backfilled, an unfollow pruned. Idempotent; a failure is redelivered.
//! - `presence_check` — the grace period after a disconnect is over: connections of the user
//!   that API Gateway no longer has (a lost `$disconnect`) are pruned first; if the user still
//!   has no connection, the online-index entry goes and the presence item flips to offline (each
//!   one conditional transaction). That write is the announcement: the stream router sees
//!   `online` go from true to false and pushes `user_offline` to the user's watchers.
//!
//! Messages of a batch are handled concurrently. Connections still failing after the
//! in-invocation retries are re-enqueued as a new `fanout` chunk of just those connections,
//! visible after a short delay (1 s, 2 s, 4 s … up to `MAX_RETRY_DELAY`), so the ones that
//! got the event are not pushed it again; after [`MAX_REENQUEUES`] the message itself is
//! reported failed and SQS's redrive policy takes it to the DLQ. Whole-message redelivery
//! (after the visibility timeout) remains the path of a crash or of a failed re-enqueue.
//!
//! A message that cannot be read (not JSON, unknown kind, another version) is logged with
//! its id and dropped — counted in the `MalformedMessages` metric, which has an alarm —
//! rather than reported: the same bytes would fail every time, and bouncing them until the
//! DLQ only delays the batch. Such a body can only come from a bug or a foreign writer.

// The fan-out path awaits the store's async methods directly (no boxed trait futures), so
// the handler's future type nests deeper than the default limit of 128.
#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use shared::error::{cause_chain, Result};
use shared::fanout::{AudienceWork, FanoutChunk, PresenceCheck, QueueMessage};
use shared::function::{BoxError, LambdaFunction, TypedFunction};
use shared::push::{DispatchReport, PushMetrics};
use shared::store::GoneRemoval;

/// `GET @connections` calls in flight during one presence check.
const PRUNE_CHECKS_IN_FLIGHT: usize = 4;

/// The `Function` dimension of this function's metrics.
pub const FUNCTION_NAME: &str = "push-worker";

/// Characters of a malformed body quoted in the log.
const MALFORMED_BODY_LOG_CHARS: usize = 200;

/// Messages of one batch handled at once (the mapping's batch size is 10).
pub const MESSAGE_CONCURRENCY: usize = 10;

pub use shared::fanout::MAX_REENQUEUES;

/// Everything the handler needs, built once per cold start: the push tier (resolver,
/// dispatcher with the queue, presence and online index), the clock.
pub use shared::fanout::PushFunctionState as State;

/// The function as the local gateway and tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::serving(state, handle)
}

/// Handles one batch of queue messages; reports the ones to redeliver.
#[tracing::instrument(skip(state, event), fields(request_id = %event.context.request_id, messages = event.payload.records.len()))]
pub async fn handle(
    state: Arc<State>,
    event: LambdaEvent<SqsEvent>,
) -> std::result::Result<SqsBatchResponse, BoxError> {
    let state = state.as_ref();
    let messages = &event.payload.records;
    let outcomes: Vec<(usize, Handled)> = stream::iter(0..messages.len())
        .map(
            |position| async move { (position, process_message(state, &messages[position]).await) },
        )
        .buffer_unordered(MESSAGE_CONCURRENCY)
        .collect()
        .await;
    let mut metrics = PushMetrics {
        inputs: messages.len(),
        ..PushMetrics::default()
    };
    let mut response = SqsBatchResponse::default();
    for (position, handled) in outcomes {
        metrics.merge(&handled.metrics);
        if handled.retry {
            metrics.failures += 1;
            match &messages[position].message_id {
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

/// What became of one message.
#[derive(Default)]
struct Handled {
    metrics: PushMetrics,
    /// Report for redelivery.
    retry: bool,
}

#[tracing::instrument(level = "debug", skip_all, fields(message_id = message.message_id.as_deref().unwrap_or("")))]
async fn process_message(state: &State, message: &SqsMessage) -> Handled {
    let mut handled = Handled::default();
    let message_id = message.message_id.as_deref().unwrap_or("");
    let body = message.body.as_deref().unwrap_or("");
    let parsed = match QueueMessage::parse(body) {
        Ok(parsed) => parsed,
        Err(error) => {
            handled.metrics.malformed += 1;
            let quoted: String = body.chars().take(MALFORMED_BODY_LOG_CHARS).collect();
            tracing::error!(message_id, error = %error, body = quoted, "malformed queue message dropped");
            return handled;
        }
    };
    let outcome = match parsed {
        QueueMessage::Fanout(chunk) => deliver_chunk(state, &chunk, &mut handled.metrics).await,
        QueueMessage::Audience(work) => resolve_and_push(state, &work, &mut handled.metrics).await,
        QueueMessage::PresenceCheck(check) => check_presence(state, &check).await,
        QueueMessage::Feed(work) => state.feed.apply_all(&work.tasks).await.map(|_| ()),
    };
    if let Err(error) = outcome {
        tracing::warn!(message_id, error = %error, causes = %cause_chain(&error), "queue message failed; it will be redelivered");
        handled.retry = true;
    }
    handled
}

/// Posts a chunk's event to its connections; the ones still failing are re-enqueued.
async fn deliver_chunk(
    state: &State,
    chunk: &FanoutChunk,
    metrics: &mut PushMetrics,
) -> Result<()> {
    let report = state
        .tier
        .dispatcher
        .direct
        .deliver(&chunk.event, &chunk.connection_ids)
        .await?;
    settle(state, chunk, report, metrics).await
}

/// Resolves an `audience` work item and pushes it: directly for a small audience, as
/// `fanout` chunks for other workers otherwise.
async fn resolve_and_push(
    state: &State,
    work: &AudienceWork,
    metrics: &mut PushMetrics,
) -> Result<()> {
    let connection_ids = state.tier.resolver.resolve(&work.audiences).await?;
    let report = state
        .tier
        .dispatcher
        .dispatch(&work.event, &connection_ids)
        .await?;
    let chunk = FanoutChunk {
        event: work.event.clone(),
        connection_ids: Vec::new(),
        attempt: 0,
    };
    settle(state, &chunk, report, metrics).await
}

/// Counts a delivery and re-enqueues its still-failing connections (only those) after a
/// short delay; an error makes SQS redeliver the whole message.
async fn settle(
    state: &State,
    chunk: &FanoutChunk,
    report: DispatchReport,
    metrics: &mut PushMetrics,
) -> Result<()> {
    metrics.add(&report);
    metrics.retried_connections += state
        .tier
        .dispatcher
        .retry_failures(&chunk.event, &report, chunk.attempt)
        .await?;
    Ok(())
}

/// The grace period is over: if the user is still disconnected, their online-index entry
/// goes and they are recorded offline (both conditioned on "no connection", so a reconnect
/// racing the check keeps both). The stream router pushes `user_offline` from the write.
async fn check_presence(state: &State, check: &PresenceCheck) -> Result<()> {
    let pruned = prune_gone_connections(state, check.user_id).await?;
    let cause = format!("disconnect:{}", check.connection_id);
    let (retired, announced) = futures::try_join!(
        state.tier.store.retire_online_entry(check.user_id),
        state
            .tier
            .store
            .announce_offline(check.user_id, &cause, check.disconnected_at),
    )?;
    tracing::debug!(user = %check.user_id, retired, announced, pruned, cause, "presence check");
    Ok(())
}

/// Connections of the user that API Gateway no longer has (`GET @connections` answers 410)
/// are removed before the check: a `$disconnect` that never arrived would otherwise keep
/// the user "online" until the connection's TTL, two hours later. A connection still inside
/// its handshake window is kept (`DynamoStore::remove_gone_connection`). One `GET` per
/// open connection of one user: at most the per-user connection limit.
async fn prune_gone_connections(state: &State, user: shared::domain::UserId) -> Result<usize> {
    let connection_ids = state.tier.store.connections_of_user(user).await?;
    let push = &state.tier.dispatcher.direct.push;
    let connected_before = state.clock.now() - state.config.ws_handshake_window;
    let answers: Vec<(String, bool)> = stream::iter(connection_ids)
        .map(|connection_id| async move {
            // An unanswered GET proves nothing: the connection is kept.
            let connected = push.is_connected(&connection_id).await.unwrap_or(true);
            (connection_id, connected)
        })
        .buffer_unordered(PRUNE_CHECKS_IN_FLIGHT)
        .collect()
        .await;
    let mut pruned = 0;
    for (connection_id, _) in answers.iter().filter(|(_, connected)| !connected) {
        let removal = state
            .tier
            .store
            .remove_gone_connection(connection_id, connected_before)
            .await?;
        if matches!(removal, GoneRemoval::Removed(_)) {
            tracing::info!(%user, connection_id, "connection without $disconnect pruned");
            pruned += 1;
        }
    }
    Ok(pruned)
}
