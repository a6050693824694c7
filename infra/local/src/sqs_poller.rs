//! The SQS event-source mapping: what Lambda does between a queue and a function (the push
//! worker), played locally against moto or any SQS endpoint.
//!
//! # Behaviour (as Lambda's SQS event-source mapping)
//!
//! - **Polling.** Long-polls the queue (`WaitTimeSeconds` = `wait_time`, default 1 s, so a
//!   shutdown or pause is noticed quickly; a stop also cancels the poll in flight), asking
//!   for every system attribute and message attribute.
//! - **Batching.** Up to `batch_size` messages per invocation (Lambda's default 10). With a
//!   `maximum_batching_window` the poller keeps receiving until the batch is full or the
//!   window (counted from the first message) has passed; as on AWS, a batch size above 10
//!   requires a window of at least one second.
//! - **Event.** The function receives exactly the JSON Lambda sends
//!   (`aws_lambda_events::event::sqs::SqsEvent`): `Records[]` with `messageId`,
//!   `receiptHandle`, `body`, `attributes` (`ApproximateReceiveCount`, `SentTimestamp`,
//!   `SenderId`, `ApproximateFirstReceiveTimestamp`, …), `messageAttributes`, `md5OfBody`,
//!   `md5OfMessageAttributes` (when there are attributes), `eventSource` `aws:sqs`,
//!   `eventSourceARN`, `awsRegion`.
//! - **Outcome.** Success deletes the whole batch. An invocation error (or timeout) deletes
//!   nothing: the messages come back after the queue's visibility timeout, and the queue's
//!   redrive policy moves them to the DLQ after `maxReceiveCount` receives. With
//!   `report_batch_item_failures`, a response `{"batchItemFailures":[{"itemIdentifier":
//!   "<messageId>"}]}` deletes every message except those listed; an absent/null/empty list
//!   is success; an empty, null or unknown identifier fails the whole batch.
//! - **Concurrency.** Up to `maximum_concurrency` batches are invoked at once (Lambda's
//!   `ScalingConfig.MaximumConcurrency`); the poller keeps receiving meanwhile.
//! - **AWS-modelled latency.** With `delivery_delay`, a message reaches the function no
//!   earlier than its `SentTimestamp` plus a drawn delay (see [`crate::latency`]): the
//!   messages of a receive that are already due form one batch, each later one is invoked
//!   when it is due (within the same concurrency slot).
//! - **Fault injection.** [`SqsPollerHandle::pause`] stops delivery until
//!   [`SqsPollerHandle::resume`]: messages a poll in flight returns after the pause are made
//!   visible again at once (their receive count has grown by one, as on any receive).
//!   [`SqsPollerHandle::faults`] ([`SqsPollerFaults`]) kills invocations mid-way (nothing
//!   deleted: the messages come back after the visibility timeout, as after a crash) and
//!   poisons messages (the function reports them failed every time, so SQS's redrive policy
//!   takes them to the DLQ, while the rest of their batch succeeds).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use serde_json::{json, Value};
use shared::function::LambdaFunction;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::event_source::{
    batch_item_failures, source_region, stopped, validate_batching, Invoker, PollerTask,
};
use crate::latency::{DelaySite, Delays, Distribution};

mod faults;
mod record;
mod settle;

pub use faults::{PoisonedBatch, SqsPollerFaults};
use record::{delivery_groups, epoch_ms, sent_timestamp_ms, sqs_record};

/// The event source name in logs.
const EVENT_SOURCE: &str = "sqs";

/// Lambda's cap on `BatchSize` for standard queues.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// SQS returns at most 10 messages per `ReceiveMessage`, and deletes 10 per batch call.
const SQS_BATCH_LIMIT: usize = 10;

/// SQS's longest long poll.
const MAX_WAIT_TIME: Duration = Duration::from_secs(20);

/// How long a stopping poller lets in-flight invocations finish before abandoning them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Pause after a failed `ReceiveMessage` (the endpoint is down or the queue is gone).
const RECEIVE_ERROR_PAUSE: Duration = Duration::from_millis(500);

/// Pause between short polls while filling a batching window.
const WINDOW_POLL_PAUSE: Duration = Duration::from_millis(50);

/// How an SQS event-source mapping behaves; field names follow the Lambda
/// `EventSourceMapping` properties of `template.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct SqsPollerConfig {
    /// The function's name (logs, the invocation context).
    pub function_name: String,
    /// The queue read.
    pub queue_url: String,
    /// `BatchSize` (1..=10 000, Lambda's default 10).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (0..=300 s, default 0).
    pub maximum_batching_window: Duration,
    /// The long poll of each `ReceiveMessage` (1 to 20 whole seconds).
    pub wait_time: Duration,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency`: batches invoked at the same time (≥ 1).
    pub maximum_concurrency: usize,
    /// The function's timeout; an invocation running longer is a function error.
    pub function_timeout: Duration,
    /// AWS-modelled delay from a message's send to its delivery; `None`: as received.
    pub delivery_delay: Option<Distribution>,
    /// Seed of the delivery delays.
    pub latency_seed: u64,
    /// Start paused (fault injection; see [`SqsPollerHandle::resume`]).
    pub start_paused: bool,
    /// Log every event delivered.
    pub verbose: bool,
}

impl SqsPollerConfig {
    /// Lambda's defaults for `function_name` reading `queue_url`.
    pub fn new(function_name: impl Into<String>, queue_url: impl Into<String>) -> Self {
        Self {
            function_name: function_name.into(),
            queue_url: queue_url.into(),
            batch_size: 10,
            maximum_batching_window: Duration::ZERO,
            wait_time: Duration::from_secs(1),
            report_batch_item_failures: false,
            maximum_concurrency: 2,
            function_timeout: Duration::from_secs(30),
            delivery_delay: None,
            latency_seed: 0,
            start_paused: false,
            verbose: false,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        validate_batching(
            &self.function_name,
            self.batch_size,
            MAX_BATCH_SIZE,
            self.maximum_batching_window,
        )?;
        if self.batch_size > SQS_BATCH_LIMIT
            && self.maximum_batching_window < Duration::from_secs(1)
        {
            bail!(
                "{}: a BatchSize above 10 needs MaximumBatchingWindowInSeconds of at least 1",
                self.function_name
            );
        }
        // Whole seconds only: a zero wait would turn an idle queue into a busy loop.
        if self.wait_time < Duration::from_secs(1) || self.wait_time > MAX_WAIT_TIME {
            bail!("the SQS long poll must be 1 to 20 seconds");
        }
        if self.maximum_concurrency == 0 {
            bail!(
                "MaximumConcurrency of {} must be at least 1",
                self.function_name
            );
        }
        Ok(())
    }
}

/// A running SQS poller; stops on [`shutdown`](Self::shutdown) or drop.
pub struct SqsPollerHandle {
    queue_arn: String,
    paused: watch::Sender<bool>,
    faults: Arc<SqsPollerFaults>,
    task: PollerTask,
}

impl SqsPollerHandle {
    /// The fault switches.
    pub fn faults(&self) -> &Arc<SqsPollerFaults> {
        &self.faults
    }

    /// The queue being read (the events' `eventSourceARN`).
    pub fn queue_arn(&self) -> &str {
        &self.queue_arn
    }

    /// Stops delivering (fault injection). Invocations already running finish.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Delivers again after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }

    /// Stops polling, lets in-flight invocations finish (up to 5 s) and waits for the task.
    pub async fn shutdown(self) {
        self.task.shutdown(&self.queue_arn).await;
    }
}

/// Starts the event-source mapping of `function` on `config.queue_url`.
pub async fn spawn(
    config: SqsPollerConfig,
    sqs: aws_sdk_sqs::Client,
    function: Arc<dyn LambdaFunction>,
) -> anyhow::Result<SqsPollerHandle> {
    config.validate()?;
    let queue_arn = crate::moto::queue_arn(&sqs, &config.queue_url).await?;
    let region = source_region(&queue_arn).to_owned();
    let invoker = Invoker::new(
        function,
        &config.function_name,
        &queue_arn,
        EVENT_SOURCE,
        config.function_timeout,
        config.verbose,
    );
    let (paused, paused_signal) = watch::channel(config.start_paused);
    let delays = config
        .delivery_delay
        .clone()
        .map(|distribution| Delays::new(distribution, config.latency_seed, DelaySite::Sqs));
    let faults = Arc::new(SqsPollerFaults::default());
    let poller = Arc::new(SqsPoller {
        config,
        faults: Arc::clone(&faults),
        delays,
        sqs,
        invoker,
        queue_arn: queue_arn.clone(),
        region,
        paused_signal,
    });
    let task = PollerTask::spawn(|stop_signal| poller.run(stop_signal));
    Ok(SqsPollerHandle {
        queue_arn,
        paused,
        faults,
        task,
    })
}

struct SqsPoller {
    config: SqsPollerConfig,
    faults: Arc<SqsPollerFaults>,
    /// The modelled delivery delays, if any.
    delays: Option<Delays>,
    sqs: aws_sdk_sqs::Client,
    invoker: Invoker,
    queue_arn: String,
    region: String,
    paused_signal: watch::Receiver<bool>,
}

impl SqsPoller {
    async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let mut in_flight = JoinSet::new();
        tokio::select! {
            () = Arc::clone(&self).receive_forever(&mut in_flight) => {}
            () = stopped(stop) => {}
        }
        // Messages of an abandoned invocation simply reappear after the visibility timeout.
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                function = %self.config.function_name,
                "SQS poller stopped with invocations still running; they were abandoned"
            );
        }
    }

    async fn receive_forever(self: Arc<Self>, in_flight: &mut JoinSet<()>) {
        let slots = Arc::new(Semaphore::new(self.config.maximum_concurrency));
        loop {
            let mut paused = self.paused_signal.clone();
            if paused.wait_for(|paused| !*paused).await.is_err() {
                return;
            }
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                return;
            };
            while in_flight.try_join_next().is_some() {}
            let messages = self.receive_batch().await;
            if messages.is_empty() {
                continue;
            }
            if *self.paused_signal.borrow() {
                self.release(&messages).await;
                continue;
            }
            let poller = Arc::clone(&self);
            in_flight.spawn(async move {
                poller.deliver(messages).await;
                drop(slot);
            });
        }
    }

    /// Receives up to a batch: one long poll, then (with a batching window) more polls until
    /// the batch is full or the window has passed.
    async fn receive_batch(&self) -> Vec<Message> {
        let batch_size = self.config.batch_size;
        let window = self.config.maximum_batching_window;
        let mut messages = Vec::new();
        let mut first_arrival: Option<Instant> = None;
        loop {
            let wait = match first_arrival {
                None => self.config.wait_time,
                Some(since) => window
                    .saturating_sub(since.elapsed())
                    .min(self.config.wait_time),
            };
            let wanted = (batch_size - messages.len()).min(SQS_BATCH_LIMIT);
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.config.queue_url)
                .max_number_of_messages(i32::try_from(wanted).unwrap_or(10))
                .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let arrived = match received {
                Ok(output) => output.messages.unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(
                        queue_url = %self.config.queue_url,
                        error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                        "ReceiveMessage failed"
                    );
                    tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
                    return messages;
                }
            };
            if !arrived.is_empty() && first_arrival.is_none() {
                first_arrival = Some(Instant::now());
            }
            let got_some = !arrived.is_empty();
            messages.extend(arrived);
            let Some(since) = first_arrival else {
                // Nothing yet: hand control back (pause and stop are checked there).
                return messages;
            };
            if messages.len() >= batch_size || since.elapsed() >= window {
                return messages;
            }
            if !got_some {
                tokio::time::sleep(WINDOW_POLL_PAUSE).await;
            }
        }
    }

    /// Delivers a received batch: at once, or (with a modelled latency) each message when
    /// it is due, those already due together.
    async fn deliver(&self, messages: Vec<Message>) {
        let Some(delays) = &self.delays else {
            return self.invoke(messages).await;
        };
        let now = epoch_ms(SystemTime::now());
        let due: Vec<(u64, Message)> = messages
            .into_iter()
            .map(|message| {
                let sent = sent_timestamp_ms(&message).unwrap_or(now);
                let delay = u64::try_from(delays.draw().as_millis()).unwrap_or(u64::MAX);
                (sent.saturating_add(delay), message)
            })
            .collect();
        let groups = delivery_groups(due, now)
            .into_iter()
            .map(|(wait, batch)| async move {
                tokio::time::sleep(wait).await;
                self.invoke(batch).await;
            });
        futures::future::join_all(groups).await;
    }

    /// Invokes the function with one batch and deletes what succeeded.
    async fn invoke(&self, messages: Vec<Message>) {
        let (messages, poisoned) = self.faults.split_poisoned(messages);
        if !poisoned.is_empty() {
            tracing::info!(
                function = %self.config.function_name,
                poisoned = poisoned.len(),
                "fault injection: poisoned messages fail"
            );
        }
        if messages.is_empty() {
            return;
        }
        let event = json!({
            "Records": messages
                .iter()
                .map(|message| sqs_record(message, &self.queue_arn, &self.region))
                .collect::<Vec<_>>(),
        });
        let invoked = self.invoker.invoke(&event, messages.len());
        let invocation = match self.faults.take_kill(&messages) {
            None => invoked.await,
            Some(after) => {
                // Whatever the function did within `after` stands; nothing is deleted.
                let _killed_or_finished = tokio::time::timeout(after, invoked).await;
                self.faults.killed.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    function = %self.config.function_name,
                    messages = messages.len(),
                    "fault injection: invocation killed; its messages come back after the visibility timeout"
                );
                return;
            }
        };
        let Ok(response) = invocation.result else {
            // Everything stays: visible again after the visibility timeout.
            return;
        };
        let failed: HashSet<String> = if self.config.report_batch_item_failures {
            match self.reported_failures(&response, &messages) {
                Ok(failed) => failed,
                Err(problem) => {
                    tracing::warn!(
                        function = %self.config.function_name,
                        request_id = %invocation.request_id,
                        "invalid partial batch response ({problem}): the whole batch failed"
                    );
                    return;
                }
            }
        } else {
            HashSet::new()
        };
        let succeeded: Vec<&Message> = messages
            .iter()
            .filter(|message| {
                message
                    .message_id
                    .as_ref()
                    .is_none_or(|id| !failed.contains(id))
            })
            .collect();
        self.delete(&succeeded).await;
    }

    /// The message ids a partial batch response reports; every one must be in the batch.
    fn reported_failures(
        &self,
        response: &Value,
        messages: &[Message],
    ) -> Result<HashSet<String>, String> {
        let batch_ids: HashSet<&str> = messages
            .iter()
            .filter_map(|message| message.message_id.as_deref())
            .collect();
        let reported = batch_item_failures(response)?;
        if let Some(unknown) = reported.iter().find(|id| !batch_ids.contains(id.as_str())) {
            return Err(format!(
                "itemIdentifier {unknown} is not a messageId of the batch"
            ));
        }
        Ok(reported.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_sqs::types::MessageAttributeValue;
    use aws_smithy_types::Blob;

    use super::*;

    const QUEUE_ARN: &str = "arn:aws:sqs:eu-west-1:123456789012:ripple-push";

    #[test]
    fn a_message_becomes_the_lambda_record() {
        let message = Message::builder()
            .message_id("m-1")
            .receipt_handle("rh-1")
            .body("{\"event\":1}")
            .md5_of_body("digest")
            .md5_of_message_attributes("attributes-digest")
            .set_attributes(Some(HashMap::from([
                (
                    MessageSystemAttributeName::ApproximateReceiveCount,
                    "2".to_owned(),
                ),
                (
                    MessageSystemAttributeName::SentTimestamp,
                    "1700000000000".to_owned(),
                ),
            ])))
            .message_attributes(
                "payload",
                MessageAttributeValue::builder()
                    .data_type("Binary")
                    .binary_value(Blob::new(b"\x01\x02"))
                    .build()
                    .expect("a valid attribute"),
            )
            .build();
        let record = sqs_record(&message, QUEUE_ARN, "eu-west-1");
        assert_eq!(
            record,
            json!({
                "messageId": "m-1",
                "receiptHandle": "rh-1",
                "body": "{\"event\":1}",
                "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1700000000000"},
                "messageAttributes": {"payload": {
                    "binaryValue": "AQI=",
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": "Binary",
                }},
                "md5OfBody": "digest",
                "md5OfMessageAttributes": "attributes-digest",
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "eu-west-1",
            })
        );
        let parsed: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(json!({ "Records": [record] })).expect("an SQS event");
        assert_eq!(parsed.records[0].message_id.as_deref(), Some("m-1"));
    }

    #[test]
    fn messages_already_due_go_together_and_later_ones_alone() {
        let groups = delivery_groups(vec![(90, "a"), (130, "b"), (100, "c"), (105, "d")], 100);
        assert_eq!(
            groups,
            [
                (Duration::ZERO, vec!["a", "c"]),
                (Duration::from_millis(30), vec!["b"]),
                (Duration::from_millis(5), vec!["d"]),
            ]
        );
        assert!(delivery_groups(Vec::<(u64, ())>::new(), 5).is_empty());
        let message = Message::builder()
            .set_attributes(Some(HashMap::from([(
                MessageSystemAttributeName::SentTimestamp,
                "1700000000123".to_owned(),
            )])))
            .build();
        assert_eq!(sent_timestamp_ms(&message), Some(1_700_000_000_123));
        assert_eq!(sent_timestamp_ms(&Message::builder().build()), None);
    }

    fn message(body: &str) -> Message {
        Message::builder().message_id(body).body(body).build()
    }

    #[test]
    fn poisoned_messages_are_split_off_and_their_batches_recorded() {
        let faults = SqsPollerFaults::default();
        let (healthy, poisoned) = faults.split_poisoned(vec![message("a"), message("b")]);
        assert_eq!((healthy.len(), poisoned.len()), (2, 0), "no poison set");
        faults.poison(Some("bad"));
        let (healthy, poisoned) =
            faults.split_poisoned(vec![message("ok"), message("a bad one"), message("fine")]);
        assert_eq!(poisoned.len(), 1);
        assert_eq!(healthy.len(), 2);
        let (_, poisoned) = faults.split_poisoned(vec![message("ok")]);
        assert!(poisoned.is_empty());
        assert_eq!(
            faults.poisoned_batches(),
            [PoisonedBatch {
                poisoned: 1,
                others: 2
            }]
        );
        faults.poison(None);
        let (healthy, _) = faults.split_poisoned(vec![message("a bad one")]);
        assert_eq!(healthy.len(), 1, "cured");
    }

    #[test]
    fn a_kill_rule_matches_its_batches_only_and_only_so_many_times() {
        let faults = SqsPollerFaults::default();
        assert_eq!(faults.take_kill(&[message("target")]), None);
        faults.kill_invocations("target", 2, Duration::from_millis(7));
        assert_eq!(faults.take_kill(&[message("other")]), None);
        let batch = [message("other"), message("the target")];
        assert_eq!(faults.take_kill(&batch), Some(Duration::from_millis(7)));
        assert_eq!(faults.take_kill(&batch), Some(Duration::from_millis(7)));
        assert_eq!(faults.take_kill(&batch), None, "used up");
    }

    #[test]
    fn a_batch_above_ten_needs_a_batching_window() {
        let mut config = SqsPollerConfig::new("push-worker", "http://queue");
        config.batch_size = 11;
        assert!(config.validate().is_err());
        config.maximum_batching_window = Duration::from_secs(1);
        assert!(config.validate().is_ok());
        config.maximum_concurrency = 0;
        assert!(config.validate().is_err());
    }
}
