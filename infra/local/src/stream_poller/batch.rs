//! Processing a batch as Lambda does: invoking it, retrying, bisecting, checkpointing at
//! a partial batch response, and sending what it gives up on to the on-failure destination.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{retry_delay, PolledRecord, StreamPoller, ON_FAILURE_SEND_ATTEMPTS};
use crate::event_source::batch_item_failures;

/// A run of records being processed, with its retry bookkeeping.
#[derive(Debug)]
struct PendingBatch {
    records: Vec<PolledRecord>,
    retries: u32,
    invocations: u32,
    last_request_id: Option<String>,
    /// Set when the last invocation raised an error (Lambda's `functionError`).
    last_function_error: bool,
}

impl PendingBatch {
    fn new(records: Vec<PolledRecord>, retries: u32) -> Self {
        Self {
            records,
            retries,
            invocations: 0,
            last_request_id: None,
            last_function_error: false,
        }
    }
}

/// What one invocation of a batch decided.
enum BatchOutcome {
    Success,
    /// Retry from this index (the lowest reported failure); earlier records are done.
    RetryFrom(usize),
    /// The whole batch failed.
    Failed,
}

/// Why a batch went to the on-failure destination (Lambda's `condition`).
#[derive(Debug, Clone, Copy)]
enum DiscardCondition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

impl DiscardCondition {
    fn as_str(self) -> &'static str {
        match self {
            Self::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Self::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

impl StreamPoller {
    /// Invokes the function with `batch` until it succeeds or is discarded, as Lambda does.
    pub(super) async fn process(&mut self, shard_id: &str, batch: Vec<PolledRecord>) {
        let mut pending = VecDeque::from([PendingBatch::new(batch, 0)]);
        while let Some(mut current) = pending.pop_front() {
            loop {
                self.discard_expired_records(shard_id, &mut current).await;
                if current.records.is_empty() {
                    break;
                }
                match self.invoke(&mut current).await {
                    BatchOutcome::Success => break,
                    BatchOutcome::RetryFrom(first_failed) => {
                        // Checkpoint: records before the lowest failure are never redelivered.
                        current.records.drain(..first_failed);
                    }
                    BatchOutcome::Failed => {
                        if self.config.bisect_batch_on_function_error && current.records.len() > 1 {
                            // Halves keep the retry count: a split is not a retry attempt.
                            let mut first = std::mem::take(&mut current.records);
                            let second = first.split_off(first.len() / 2);
                            pending.push_front(PendingBatch::new(second, current.retries));
                            pending.push_front(PendingBatch::new(first, current.retries));
                            break;
                        }
                    }
                }
                current.retries += 1;
                if self
                    .config
                    .maximum_retry_attempts
                    .is_some_and(|maximum| current.retries > maximum)
                {
                    self.discard(
                        shard_id,
                        &current,
                        &current.records,
                        DiscardCondition::RetryAttemptsExhausted,
                    )
                    .await;
                    break;
                }
                tokio::time::sleep(retry_delay(self.config.retry_delay, current.retries)).await;
            }
        }
    }

    /// Sends the records older than `maximum_record_age` (a prefix: records are in order)
    /// to the on-failure destination.
    async fn discard_expired_records(&mut self, shard_id: &str, batch: &mut PendingBatch) {
        let Some(maximum_age) = self.config.maximum_record_age else {
            return;
        };
        let now = Utc::now();
        let expired = batch
            .records
            .iter()
            .take_while(|record| {
                record.created_at.is_some_and(|created| {
                    (now - created).to_std().unwrap_or_default() > maximum_age
                })
            })
            .count();
        if expired > 0 {
            let records: Vec<PolledRecord> = batch.records.drain(..expired).collect();
            self.discard(
                shard_id,
                batch,
                &records,
                DiscardCondition::RecordAgeExceeded,
            )
            .await;
        }
    }

    async fn invoke(&mut self, batch: &mut PendingBatch) -> BatchOutcome {
        let event = json!({
            "Records": batch.records.iter().map(|record| record.event.clone()).collect::<Vec<_>>(),
        });
        let count = batch.records.len();
        let invocation = self.invoker.invoke(&event, count).await;
        if self.config.deliver_each_batch_twice
            || self.faults.duplicate_batches.load(Ordering::Relaxed)
        {
            // Fault injection: an at-least-once duplicate whose response is ignored.
            let duplicate = self.invoker.invoke(&event, count).await;
            self.faults
                .duplicated_batches
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                function = %self.config.function_name,
                request_id = %duplicate.request_id,
                "fault injection: delivered the batch a second time"
            );
        }
        batch.invocations += 1;
        batch.last_request_id = Some(invocation.request_id.clone());
        batch.last_function_error = invocation.result.is_err();
        if count > 1
            && self
                .faults
                .fail_multi_record_batches
                .load(Ordering::Relaxed)
        {
            // Fault injection: the work is done, but Lambda saw the function fail.
            self.faults.injected_errors.fetch_add(1, Ordering::Relaxed);
            batch.last_function_error = true;
            tracing::info!(
                function = %self.config.function_name,
                request_id = %invocation.request_id,
                records = count,
                "fault injection: the batch counts as a function error"
            );
            return BatchOutcome::Failed;
        }
        let Ok(response) = invocation.result else {
            return BatchOutcome::Failed;
        };
        if !self.config.report_batch_item_failures {
            return BatchOutcome::Success;
        }
        self.partial_batch_outcome(&batch.records, &response, &invocation.request_id)
    }

    /// What a partial batch response (`ReportBatchItemFailures`) decides for `records`.
    fn partial_batch_outcome(
        &self,
        records: &[PolledRecord],
        response: &Value,
        request_id: &str,
    ) -> BatchOutcome {
        let identifiers = match batch_item_failures(response) {
            Ok(identifiers) => identifiers,
            Err(problem) => {
                tracing::warn!(
                    function = %self.config.function_name,
                    request_id = %request_id,
                    "invalid partial batch response ({problem}): the whole batch failed"
                );
                return BatchOutcome::Failed;
            }
        };
        if identifiers.is_empty() {
            return BatchOutcome::Success;
        }
        let positions: HashMap<&str, usize> = records
            .iter()
            .enumerate()
            .map(|(index, record)| (record.sequence_number.as_str(), index))
            .collect();
        let mut lowest = usize::MAX;
        for identifier in &identifiers {
            match positions.get(identifier.as_str()) {
                Some(&index) => lowest = lowest.min(index),
                None => {
                    tracing::warn!(
                        function = %self.config.function_name,
                        request_id = %request_id,
                        item_identifier = %identifier,
                        "batchItemFailures names a sequence number not in the batch: the whole batch failed"
                    );
                    return BatchOutcome::Failed;
                }
            }
        }
        BatchOutcome::RetryFrom(lowest)
    }

    /// Sends Lambda's on-failure record for `records` (part of `batch`) and moves on.
    async fn discard(
        &self,
        shard_id: &str,
        batch: &PendingBatch,
        records: &[PolledRecord],
        condition: DiscardCondition,
    ) {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return;
        };
        let arrival = |record: &PolledRecord| {
            record
                .created_at
                .map(|created| created.to_rfc3339_opts(SecondsFormat::Secs, true))
        };
        let mut response_context = json!({"statusCode": 200, "executedVersion": "$LATEST"});
        if batch.last_function_error {
            response_context["functionError"] = json!("Unhandled");
        }
        // Records too old to invoke were never part of an invocation: they get an id of
        // their own.
        let request_id = batch
            .last_request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let failure_record = json!({
            "requestContext": {
                "requestId": request_id,
                "functionArn": self.invoker.function_arn(),
                "condition": condition.as_str(),
                "approximateInvokeCount": batch.invocations,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first.sequence_number,
                "endSequenceNumber": last.sequence_number,
                "approximateArrivalOfFirstRecord": arrival(first),
                "approximateArrivalOfLastRecord": arrival(last),
                "batchSize": records.len(),
                "streamArn": self.stream_arn,
            },
        });
        tracing::warn!(
            function = %self.config.function_name,
            condition = condition.as_str(),
            start_sequence_number = %first.sequence_number,
            end_sequence_number = %last.sequence_number,
            records = records.len(),
            "stream batch discarded"
        );
        let (Some(queue_url), Some(sqs)) = (&self.config.on_failure_queue_url, &self.clients.sqs)
        else {
            tracing::warn!(
                function = %self.config.function_name,
                "no on-failure destination: the discarded batch is only logged: {failure_record}"
            );
            return;
        };
        for attempt in 1..=ON_FAILURE_SEND_ATTEMPTS {
            let sent = sqs
                .send_message()
                .queue_url(queue_url)
                .message_body(failure_record.to_string())
                .send()
                .await;
            match sent {
                Ok(_) => return,
                Err(error) if attempt == ON_FAILURE_SEND_ATTEMPTS => tracing::error!(
                    queue_url = %queue_url,
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                    "cannot send to the on-failure destination; the record was: {failure_record}"
                ),
                Err(_) => tokio::time::sleep(retry_delay(self.config.retry_delay, attempt)).await,
            }
        }
    }
}
