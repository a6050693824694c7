//! `stream-router`: the DynamoDB stream consumer of the push tier.
//!
//! For each record of a batch: [`decide::decide`] says which events it causes and for whom
//! (pure), the effects are carried out (presence announcements, delayed offline checks,
//! releasing TTL-deleted connections), each audience is resolved to connection ids (online
//! users only; the connections of 100 users are one `BatchGetItem`), and the event is
//! dispatched — pushed directly with bounded concurrency up to
//! `FANOUT_DIRECT_MAX_CONNECTIONS` connections, split into SQS `fanout` messages for the
//! push worker above that.
//!
//! Failure handling (`ReportBatchItemFailures`): a record that fails — unreadable image,
//! DynamoDB or SQS error, pushes still throttled after retries — is reported by its
//! `SequenceNumber`; the others are still processed, so one bad record never delays the
//! events of the rest. Lambda checkpoints at the lowest reported sequence number and
//! redelivers from there, so reporting every failed record is equivalent to reporting the
//! first; records after it that were already handled are redelivered and pushed again
//! with the same `event_id` (clients dedupe), and presence writes are idempotent. After the
//! mapping's `MaximumRetryAttempts` (with bisection) a poison record goes to the stream's
//! on-failure destination.
//!
//! Records are processed in order, one at a time, so events about one item leave in the
//! order they happened (a `post_created` never overtakes its `post_updated`).
//!
//! Each distinct audience is resolved once per batch (`ResolvedAudiences`): a burst of
//! likes on one post, or several posts by one author, reads the room or the followers once
//! instead of once per record. The answer is as fresh as the batch, which is already how
//! stale a single record's resolution is by the time it is pushed.

pub mod decide;

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use shared::error::{cause_chain, Error, Result};
use shared::events::Event;
use shared::function::{BoxError, LambdaFunction, TypedFunction};
use shared::push::{Audience, AudienceResolver, PushMetrics};
use shared::store::presence::PRESENCE_GRACE;

use crate::decide::{decide, BadRecord, Effect, Push};

/// The `Function` dimension of this function's metrics.
pub const FUNCTION_NAME: &str = "stream-router";

/// Everything the handler needs, built once per cold start: the push tier's one state
/// (`State::new(config, clients)` in production, `State::from_parts` over given parts).
pub use shared::push::PushFunctionState as State;

/// The function as the local gateway and tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::new(move |event: LambdaEvent<DynamoDbEvent>| {
        let state = Arc::clone(&state);
        async move { handle(&state, event).await }
    })
}

/// Why a record is reported as failed.
#[derive(Debug, thiserror::Error)]
enum RecordFailure {
    #[error(transparent)]
    Bad(#[from] BadRecord),
    #[error(transparent)]
    Store(#[from] Error),
    #[error("{0} connections still failing after retries")]
    Undelivered(usize),
}

/// Handles one batch of stream records; reports failed records for redelivery.
#[tracing::instrument(skip(state, event), fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn handle(
    state: &State,
    event: LambdaEvent<DynamoDbEvent>,
) -> std::result::Result<DynamoDbEventResponse, BoxError> {
    let mut metrics = PushMetrics::default();
    let mut response = DynamoDbEventResponse::default();
    let mut resolved = ResolvedAudiences::default();
    for record in &event.payload.records {
        metrics.inputs += 1;
        if let Err(failure) = process_record(state, record, &mut resolved, &mut metrics).await {
            metrics.failures += 1;
            let sequence_number = record.change.sequence_number.clone();
            match &failure {
                RecordFailure::Bad(bad) => {
                    tracing::error!(sequence_number, event_id = record.event_id, error = %bad, "unreadable stream record")
                }
                RecordFailure::Store(error) => {
                    tracing::warn!(sequence_number, error = %error, causes = %cause_chain(error), "stream record failed")
                }
                RecordFailure::Undelivered(count) => {
                    tracing::warn!(sequence_number, count, "stream record not fully delivered")
                }
            }
            let mut item = DynamoDbBatchItemFailure::default();
            // Lambda identifies stream records by sequence number; the eventID is only a
            // fallback for hand-built events that lack one.
            item.item_identifier = Some(sequence_number.unwrap_or_else(|| record.event_id.clone()));
            response.batch_item_failures.push(item);
        }
    }
    shared::telemetry::emf::emit(
        &metrics.emf_document(FUNCTION_NAME, state.clock.now().timestamp_millis()),
    );
    Ok(response)
}

/// The connection ids of the audiences resolved so far in one batch.
#[derive(Default)]
struct ResolvedAudiences {
    connection_ids: HashMap<Vec<Audience>, Vec<String>>,
}

impl ResolvedAudiences {
    async fn connection_ids(
        &mut self,
        resolver: &AudienceResolver,
        audiences: &[Audience],
    ) -> Result<&[String]> {
        let entry = self.connection_ids.entry(audiences.to_vec());
        Ok(match entry {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(resolver.resolve(audiences).await?)
            }
        })
    }
}

async fn process_record(
    state: &State,
    record: &EventRecord,
    resolved: &mut ResolvedAudiences,
    metrics: &mut PushMetrics,
) -> std::result::Result<(), RecordFailure> {
    let decision = decide(record)?;
    let mut pushes = decision.pushes;
    for effect in decision.effects {
        if let Some(push) = apply(state, effect).await? {
            pushes.push(push);
        }
    }
    let mut undelivered = 0;
    for push in pushes {
        let connection_ids = resolved
            .connection_ids(&state.tier.resolver, &push.audience)
            .await?;
        let report = state
            .tier
            .dispatcher
            .dispatch(&push.event, connection_ids)
            .await?;
        tracing::debug!(
            event_type = push.event.kind(),
            event_id = %push.event.event_id,
            connections = report.connections,
            path = report.path.as_str(),
            "event dispatched"
        );
        undelivered += report.retryable_failures.len();
        metrics.add(&report);
    }
    if undelivered > 0 {
        return Err(RecordFailure::Undelivered(undelivered));
    }
    Ok(())
}

/// Carries out an effect; an announced presence change becomes a push.
async fn apply(state: &State, effect: Effect) -> Result<Option<Push>> {
    match effect {
        Effect::ReleaseExpiredConnection(stored) => {
            state
                .tier
                .connections
                .release_expired_connection(&stored)
                .await?;
            Ok(None)
        }
        Effect::ScheduleOfflineCheck(check) => {
            state
                .tier
                .queue()
                .schedule_presence_check(&check, PRESENCE_GRACE)
                .await?;
            Ok(None)
        }
        Effect::AnnounceOnline {
            user,
            connection_id,
            connected_at,
        } => {
            let cause = format!("connect:{connection_id}");
            if !state
                .tier
                .presence
                .announce_online(user, &cause, connected_at)
                .await?
            {
                return Ok(None);
            }
            Ok(Some(Push {
                event: Event::user_online(user, &cause, connected_at),
                audience: vec![Audience::PresenceWatchers(user)],
            }))
        }
    }
}
