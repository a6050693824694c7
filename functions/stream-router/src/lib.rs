//! `stream-router`: the DynamoDB stream consumer of the push tier.
//!
//! For each record of a batch: [`decide()`] says which events it causes and for whom
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
//! Ordering and concurrency: records are grouped by item (their table key). Groups run
//! concurrently ([`ITEM_CONCURRENCY`] at a time), so one popular author's post does not hold
//! up other users' events; within a group records run in stream order, and once one fails
//! the group's later records are reported failed without being pushed — Lambda redelivers
//! from the first failure, so an item's events never leave out of order (a `post_created`
//! never arrives after its own `post_updated`).
//!
//! Time per record is bounded whatever the audience: "author + followers" is resolved in
//! place only for authors with at most `FANOUT_INLINE_MAX_FOLLOWERS` followers (one small
//! probe of the keys-only follower index tells); a larger audience becomes one `audience`
//! work item on the queue, which a push worker resolves and pushes (see `shared::fanout`).
//!
//! Each distinct audience is resolved once per batch (`ResolvedAudiences`), and the
//! online-users index is read at most once per batch (`OnlineSnapshot`): a burst of likes
//! on one post, or several posts by one author, reads the room or the followers once. The
//! answer is as fresh as the batch, which is already how stale a single record's resolution
//! is by the time it is pushed.

mod decide;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use lambda_runtime::LambdaEvent;
use shared::domain::{NotificationId, UserId};
use shared::error::{cause_chain, Error, Result};
use shared::events::{Event, EventBody};
use shared::fanout::{Audience, OnlineSnapshot, Resolution};
use shared::feed::FeedTask;
use shared::function::{BoxError, LambdaFunction, TypedFunction};
use shared::push::{DispatchPath, DispatchReport, PushMetrics};
use shared::store::DeliveryProgress;
use shared::store::PRESENCE_GRACE;
use shared::writer_push::WRITER_PUSHED_EVENTS;
use tokio::sync::Mutex;
use uuid::Uuid;

pub use crate::decide::{decide, BadRecord, Decision, Effect, Push};

/// The `Function` dimension of this function's metrics.
pub const FUNCTION_NAME: &str = "stream-router";

/// Items whose records are processed at once. Each may post to up to
/// `FANOUT_DIRECT_MAX_CONNECTIONS` connections with its own bounded concurrency.
pub const ITEM_CONCURRENCY: usize = 8;

/// Everything the handler needs, built once per cold start: the push tier's one state
/// (`State::new(config, clients)` in production, `State::from_parts` over given parts).
pub use shared::fanout::PushFunctionState as State;

/// The function as the local gateway and tests invoke it.
pub fn lambda_function(state: Arc<State>) -> Arc<dyn LambdaFunction> {
    TypedFunction::serving(state, handle)
}

/// What [`decide`] made of one record.
type Decided = std::result::Result<Decision, BadRecord>;

/// Why a record is reported as failed.
#[derive(Debug, thiserror::Error)]
enum RecordFailure {
    #[error(transparent)]
    Bad(#[from] BadRecord),
    #[error(transparent)]
    Store(#[from] Error),
    #[error("held back behind an earlier failed record of the same item")]
    HeldBack,
    #[error("event {event_id} still failing for {failing} connections; redelivery keeps the item's order")]
    Undelivered { event_id: Uuid, failing: usize },
}

/// Times a record is reported failed because some of its connections are still failing
/// (after the in-invocation retries) while later records of its item wait in the same
/// batch, before those connections go round through the queue instead. Reporting holds the
/// later records back, so a connection never gets them before the failed one. It is done
/// only when such records exist: every report costs the whole batch one of the mapping's
/// `MaximumRetryAttempts` (5), and a batch that runs out of them is discarded — so an item
/// alone in its batch goes round through the queue at once, and the bound keeps one sick
/// connection from spending the batch's budget. Past it, and across batches, the client's
/// "latest state wins" rule (versions on state events) keeps its screen right.
pub const MAX_HOLD_BACKS: u32 = 2;

/// What one batch shares: resolved audiences, the online index, and what the delivery
/// markers say of its events (the writer push's, and the router's own after a hold-back).
#[derive(Default)]
struct BatchContext {
    resolved: ResolvedAudiences,
    online: OnlineSnapshot,
    progress: HashMap<Uuid, DeliveryProgress>,
}

/// The markers of the batch's events that can have one (one batch read): those the writer
/// push sends, and those of items with several records in the batch — only such a record is
/// ever held back, and its redelivery brings the item's later records with it. A failed read
/// only costs duplicates, which clients drop by `event_id`, so it does not fail the batch.
async fn delivery_markers(
    state: &State,
    groups: &[Vec<(usize, Decided)>],
) -> HashMap<Uuid, DeliveryProgress> {
    let event_ids: Vec<Uuid> = groups
        .iter()
        .flat_map(|group| {
            let may_have_been_held_back = group.len() > 1;
            group
                .iter()
                .filter_map(|(_, decided)| decided.as_ref().ok())
                .flat_map(|decision| &decision.pushes)
                .filter(move |push| {
                    may_have_been_held_back || WRITER_PUSHED_EVENTS.contains(&push.event.kind())
                })
                .map(|push| push.event.event_id)
        })
        .collect();
    if event_ids.is_empty() {
        return HashMap::new();
    }
    match state.tier.store.delivery_progress(&event_ids).await {
        Ok(reached) => reached,
        Err(error) => {
            tracing::warn!(error = %error, causes = %cause_chain(&error), "delivery markers unreadable; pushing everything");
            HashMap::new()
        }
    }
}

/// Handles one batch of stream records; reports failed records for redelivery.
#[tracing::instrument(skip(state, event), fields(request_id = %event.context.request_id, records = event.payload.records.len()))]
pub async fn handle(
    state: Arc<State>,
    event: LambdaEvent<DynamoDbEvent>,
) -> std::result::Result<DynamoDbEventResponse, BoxError> {
    let state = state.as_ref();
    let records = &event.payload.records;
    // Each record is decided once; the groups below take their records' decisions.
    let mut decisions: Vec<Option<Decided>> =
        records.iter().map(|record| Some(decide(record))).collect();
    // Feed tasks go first, all in a few messages; if queueing them fails, Lambda retries the
    // whole batch before anything of it was pushed.
    queue_feed_tasks(state, &decisions).await?;
    let mut groups: Vec<Vec<(usize, Decided)>> = group_by_item(records)
        .into_iter()
        .map(|positions| {
            positions
                .into_iter()
                .filter_map(|position| Some((position, decisions[position].take()?)))
                .collect()
        })
        .collect();
    for group in &mut groups {
        decide::coalesce_like_updates(
            group
                .iter_mut()
                .filter_map(|(_, decided)| decided.as_mut().ok()),
        );
    }
    let reads = ReadsToMerge::take_from(&mut groups);
    let context = BatchContext {
        progress: delivery_markers(state, &groups).await,
        ..BatchContext::default()
    };
    let outcomes: Vec<GroupOutcome> = stream::iter(groups)
        .map(|group| process_group(state, records, group, &context))
        .buffer_unordered(ITEM_CONCURRENCY)
        .collect()
        .await;
    let mut metrics = PushMetrics::default();
    let mut failed: Vec<usize> = Vec::new();
    for outcome in outcomes {
        metrics.merge(&outcome.metrics);
        failed.extend(outcome.failed);
    }
    // After every group: a read never overtakes the `new_notification` of the same batch.
    failed.extend(reads.push(state, &failed, &context, &mut metrics).await);
    failed.sort_unstable();
    metrics.inputs = records.len();
    metrics.failures = failed.len();
    let mut response = DynamoDbEventResponse::default();
    for record in failed.into_iter().map(|index| &records[index]) {
        let mut item = DynamoDbBatchItemFailure::default();
        // Lambda identifies stream records by sequence number; the eventID is only a
        // fallback for hand-built events that lack one.
        item.item_identifier = Some(
            record
                .change
                .sequence_number
                .clone()
                .unwrap_or_else(|| record.event_id.clone()),
        );
        response.batch_item_failures.push(item);
    }
    shared::telemetry::emf::emit(
        &metrics.emf_document(FUNCTION_NAME, state.clock.now().timestamp_millis()),
    );
    Ok(response)
}

/// The positions of a batch's records grouped by item, each group in stream order, groups
/// in the order their first record appears.
fn group_by_item(records: &[EventRecord]) -> Vec<Vec<usize>> {
    let mut index: HashMap<(Option<&str>, Option<&str>), usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (position, record) in records.iter().enumerate() {
        let key = (key_part(record, "pk"), key_part(record, "sk"));
        // A record without keys (hand-built) is its own group.
        let slot = match key {
            (None, None) => None,
            key => Some(*index.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            })),
        };
        match slot {
            Some(slot) => groups[slot].push(position),
            None => groups.push(vec![position]),
        }
    }
    groups
}

fn key_part<'a>(record: &'a EventRecord, name: &str) -> Option<&'a str> {
    match record.change.keys.get(name) {
        Some(serde_dynamo::AttributeValue::S(value)) => Some(value.as_str()),
        _ => None,
    }
}

/// What one item's records came to.
struct GroupOutcome {
    metrics: PushMetrics,
    /// Positions of the failed records.
    failed: Vec<usize>,
}

/// Processes one item's records in order; after a failure, the rest are held back.
async fn process_group(
    state: &State,
    records: &[EventRecord],
    group: Vec<(usize, Decided)>,
    context: &BatchContext,
) -> GroupOutcome {
    let mut outcome = GroupOutcome {
        metrics: PushMetrics::default(),
        failed: Vec::new(),
    };
    let count = group.len();
    for (index, (position, decided)) in group.into_iter().enumerate() {
        let record = &records[position];
        // Only a record with later records of its item in this batch can be overtaken.
        let may_hold_back = index + 1 < count;
        let result = if outcome.failed.is_empty() {
            process_record(state, decided, context, may_hold_back, &mut outcome.metrics).await
        } else {
            Err(RecordFailure::HeldBack)
        };
        if let Err(failure) = result {
            log_failure(record, &failure);
            outcome.failed.push(position);
        }
    }
    outcome
}

fn log_failure(record: &EventRecord, failure: &RecordFailure) {
    let sequence_number = record.change.sequence_number.as_deref();
    match failure {
        RecordFailure::Bad(bad) => {
            tracing::error!(sequence_number, event_id = record.event_id, error = %bad, "unreadable stream record")
        }
        RecordFailure::Store(error) => {
            tracing::warn!(sequence_number, error = %error, causes = %cause_chain(error), "stream record failed")
        }
        RecordFailure::Undelivered { .. } => {
            tracing::warn!(sequence_number, error = %failure, "stream record held back for a redelivery")
        }
        RecordFailure::HeldBack => {
            tracing::debug!(
                sequence_number,
                "stream record held back behind a failure of its item"
            )
        }
    }
}

/// The resolutions of the audiences met so far in one batch.
#[derive(Default)]
struct ResolvedAudiences {
    resolutions: Mutex<HashMap<Vec<Audience>, Arc<Resolution>>>,
}

impl ResolvedAudiences {
    /// Resolves `audiences` once per batch. Two items racing on the same audience may both
    /// resolve it; the answer is the same, so that only costs a duplicate read.
    async fn resolve(
        &self,
        state: &State,
        audiences: &[Audience],
        online: &OnlineSnapshot,
    ) -> Result<Arc<Resolution>> {
        if let Some(found) = self.resolutions.lock().await.get(audiences) {
            return Ok(Arc::clone(found));
        }
        let resolution = Arc::new(
            state
                .tier
                .resolver
                .resolve_within(audiences, state.config.fanout_inline_max_followers, online)
                .await?,
        );
        self.resolutions
            .lock()
            .await
            .insert(audiences.to_vec(), Arc::clone(&resolution));
        Ok(resolution)
    }
}

async fn process_record(
    state: &State,
    decided: Decided,
    context: &BatchContext,
    may_hold_back: bool,
    metrics: &mut PushMetrics,
) -> std::result::Result<(), RecordFailure> {
    let decision = decided?;
    for effect in decision.effects {
        apply(state, effect).await?;
    }
    for push in decision.pushes {
        dispatch_push(state, push, context, may_hold_back, metrics).await?;
    }
    Ok(())
}

/// Resolves one push's audience (once per batch) and sends it, directly or through the
/// queue; connections still failing go round again through the queue.
async fn dispatch_push(
    state: &State,
    push: Push,
    context: &BatchContext,
    may_hold_back: bool,
    metrics: &mut PushMetrics,
) -> std::result::Result<(), RecordFailure> {
    let resolution = context
        .resolved
        .resolve(state, &push.audience, &context.online)
        .await?;
    let dispatcher = &state.tier.dispatcher;
    let progress = context.progress.get(&push.event.event_id);
    let (report, remaining) = match resolution.as_ref() {
        Resolution::Connections(connection_ids) => {
            let remaining = not_reached(connection_ids, progress.map(|p| &p.reached));
            (
                dispatcher.dispatch(&push.event, &remaining).await?,
                remaining,
            )
        }
        Resolution::Deferred => (
            dispatcher.defer(&push.event, &push.audience).await?,
            Vec::new(),
        ),
    };
    tracing::debug!(
        event_type = push.event.kind(),
        event_id = %push.event.event_id,
        connections = report.connections,
        path = report.path.as_str(),
        "event dispatched"
    );
    metrics.add(&report);
    if report.retryable_failures.is_empty() {
        return Ok(());
    }
    let held_back = progress.map_or(0, |p| p.held_back);
    if may_hold_back && report.path == DispatchPath::Direct && held_back < MAX_HOLD_BACKS {
        return Err(hold_back(state, &push, &report, &remaining, progress, held_back).await?);
    }
    // Only the connections still failing go round again (through the queue, after a short
    // delay): redelivering the record would push everyone else a second time.
    metrics.retried_connections += dispatcher.retry_failures(&push.event, &report, 0).await?;
    Ok(())
}

/// Marks the connections the event reached (so the redelivery skips them) and returns the
/// failure that reports the record: Lambda redelivers it, and the item's later records wait.
async fn hold_back(
    state: &State,
    push: &Push,
    report: &DispatchReport,
    attempted: &[String],
    progress: Option<&DeliveryProgress>,
    held_back: u32,
) -> Result<RecordFailure> {
    let failing: HashSet<&String> = report.retryable_failures.iter().collect();
    let mut reached: Vec<String> = progress
        .map(|p| p.reached.iter().cloned().collect())
        .unwrap_or_default();
    reached.extend(attempted.iter().filter(|id| !failing.contains(id)).cloned());
    state
        .tier
        .store
        .mark_held_back(
            push.event.event_id,
            &reached,
            held_back + 1,
            state.clock.now(),
        )
        .await?;
    Ok(RecordFailure::Undelivered {
        event_id: push.event.event_id,
        failing: failing.len(),
    })
}

/// The audience minus the connections the writer push already reached.
fn not_reached(connection_ids: &[String], reached: Option<&HashSet<String>>) -> Vec<String> {
    match reached {
        None => connection_ids.to_vec(),
        Some(reached) => connection_ids
            .iter()
            .filter(|id| !reached.contains(*id))
            .cloned()
            .collect(),
    }
}

/// The `notification_read`s of a batch, merged into one event per recipient: marking a
/// thousand notifications read is one event per stream batch, not a thousand.
#[derive(Default)]
struct ReadsToMerge {
    by_recipient: HashMap<UserId, RecipientReads>,
}

/// One recipient's reads in a batch: each record's position and notification ids, and the
/// latest read time.
type RecipientReads = (Vec<(usize, Vec<NotificationId>)>, DateTime<Utc>);

impl ReadsToMerge {
    /// Takes the `notification_read` pushes out of the groups' decisions.
    fn take_from(groups: &mut [Vec<(usize, Decided)>]) -> Self {
        let mut reads = Self::default();
        for (position, decided) in groups.iter_mut().flatten() {
            let Ok(decision) = decided else { continue };
            decision.pushes.retain(|push| {
                let (EventBody::NotificationRead { notification_ids }, [Audience::Users(users)]) =
                    (&push.event.body, push.audience.as_slice())
                else {
                    return true;
                };
                let [recipient] = users.as_slice() else {
                    return true;
                };
                let (records, read_at) = reads
                    .by_recipient
                    .entry(*recipient)
                    .or_insert_with(|| (Vec::new(), push.event.occurred_at));
                records.push((*position, notification_ids.clone()));
                *read_at = (*read_at).max(push.event.occurred_at);
                false
            });
        }
        reads
    }

    /// Pushes one merged event per recipient, leaving out the reads of records that failed
    /// (they come again). Returns the positions of reads whose push failed.
    async fn push(
        self,
        state: &State,
        failed: &[usize],
        context: &BatchContext,
        metrics: &mut PushMetrics,
    ) -> Vec<usize> {
        let failed: HashSet<usize> = failed.iter().copied().collect();
        let merged: Vec<(Push, Vec<usize>)> = self
            .by_recipient
            .into_iter()
            .filter_map(|(recipient, (records, read_at))| {
                let settled: Vec<(usize, Vec<NotificationId>)> = records
                    .into_iter()
                    .filter(|(position, _)| !failed.contains(position))
                    .collect();
                if settled.is_empty() {
                    return None;
                }
                let ids = settled.iter().flat_map(|(_, ids)| ids.iter().copied());
                let push = Push {
                    event: Event::notifications_read(ids.collect(), read_at),
                    audience: vec![Audience::Users(vec![recipient])],
                };
                Some((
                    push,
                    settled.into_iter().map(|(position, _)| position).collect(),
                ))
            })
            .collect();
        // One event per recipient, independent of each other: a few in flight at once.
        let outcomes: Vec<(PushMetrics, Vec<usize>)> = stream::iter(merged)
            .map(|(push, positions)| async move {
                let mut pushed = PushMetrics::default();
                match dispatch_push(state, push, context, false, &mut pushed).await {
                    Ok(()) => (pushed, Vec::new()),
                    Err(error) => {
                        tracing::warn!(error = %error, causes = %cause_chain(&error), "merged notification_read failed");
                        (pushed, positions)
                    }
                }
            })
            .buffer_unordered(ITEM_CONCURRENCY)
            .collect()
            .await;
        let mut push_failed = Vec::new();
        for (pushed, positions) in outcomes {
            metrics.merge(&pushed);
            push_failed.extend(positions);
        }
        push_failed
    }
}

/// Queues the feed tasks of every decided record of the batch (packed, so an author gaining
/// many followers at once costs a message per 100 follows).
async fn queue_feed_tasks(state: &State, decisions: &[Option<Decided>]) -> Result<()> {
    let tasks: Vec<FeedTask> = decisions
        .iter()
        .flatten()
        .filter_map(|decided| decided.as_ref().ok())
        .flat_map(|decision| decision.feed.iter().cloned())
        .collect();
    if !tasks.is_empty() {
        let messages = state.tier.queue().enqueue_feed(&tasks).await?;
        tracing::debug!(tasks = tasks.len(), messages, "feed tasks queued");
    }
    Ok(())
}

/// Carries out an effect. None pushes by itself: a presence change is announced from the
/// presence item's own stream record.
async fn apply(state: &State, effect: Effect) -> Result<()> {
    match effect {
        Effect::ReleaseExpiredConnection(stored) => {
            state.tier.store.release_expired_connection(&stored).await
        }
        Effect::ScheduleOfflineCheck(check) => {
            state
                .tier
                .queue()
                .schedule_presence_check(&check, PRESENCE_GRACE)
                .await
        }
        Effect::AnnounceOnline {
            user,
            connection_id,
            connected_at,
        } => {
            let cause = format!("connect:{connection_id}");
            let recorded = state
                .tier
                .store
                .announce_online(user, &cause, connected_at)
                .await?;
            tracing::debug!(%user, recorded, cause, "presence online");
            Ok(())
        }
    }
}
