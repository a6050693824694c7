//! The DynamoDB Streams event-source mapping: what Lambda does between a table's stream and
//! a function, played locally against any DynamoDB Streams endpoint (embedded dynoxide by
//! default) through `aws-sdk-dynamodbstreams`.
//!
//! # Behaviour (as Lambda's event-source mapping)
//!
//! - **Start.** [`spawn`] finds the table's stream (`DescribeTable` → `LatestStreamArn`, else
//!   `ListStreams`), lists its shards and positions a `LATEST` iterator on every open (leaf)
//!   shard *before it returns*: every write after `spawn` returns is delivered, nothing
//!   earlier. Iterators are then kept and advanced (`NextShardIterator`); the stream is never
//!   re-read from `TRIM_HORIZON` (dynoxide's stream writes slow down as records pile up).
//! - **Shards.** A shard is closed only when `GetRecords` returns no `NextShardIterator`;
//!   `EndingSequenceNumber` is ignored (dynoxide reports one on its open shard). A closed
//!   shard's children (by `ParentShardId`) are read from `TRIM_HORIZON`.
//! - **Batching.** Every `poll_interval` (default 50 ms) each shard is read; a batch of up to
//!   `batch_size` records is invoked as soon as it is full, or when `maximum_batching_window`
//!   has passed since its first record arrived (immediately with the default window of 0).
//!   Records of a shard are processed strictly in order, one batch at a time.
//! - **Event.** The function receives exactly the JSON Lambda sends
//!   (`aws_lambda_events::event::dynamodb::Event`): `Records[]` with `eventID`, `eventName`
//!   (`INSERT`/`MODIFY`/`REMOVE`), `eventVersion`, `eventSource` `aws:dynamodb`, `awsRegion`,
//!   `dynamodb{ApproximateCreationDateTime, Keys, NewImage?, OldImage?, SequenceNumber,
//!   SizeBytes, StreamViewType}`, `eventSourceARN` and, for TTL deletions, `userIdentity`.
//! - **Errors.** An invocation error (or timeout, or a malformed partial-batch response)
//!   retries the whole batch. With `bisect_batch_on_function_error` a failing batch of more
//!   than one record is split in two halves that are processed in order; splitting does not
//!   use a retry attempt, so a poison record ends up isolated in a batch of one.
//! - **Partial batch response.** With `report_batch_item_failures`, a response
//!   `{"batchItemFailures":[{"itemIdentifier":"<SequenceNumber>"}]}` checkpoints at the
//!   *lowest* reported record: the retry starts there and earlier records are never
//!   redelivered. An absent/null/empty list is success; an empty, null or unknown
//!   identifier fails the whole batch. Without the setting the response is ignored.
//! - **Giving up.** A batch that failed `maximum_retry_attempts` retries (unbounded when
//!   `None`, Lambda's `-1`), or records older than `maximum_record_age`, are sent as
//!   Lambda's on-failure record (`requestContext`, `responseContext`, `version`,
//!   `timestamp`, `DDBStreamBatchInfo`) to the `on_failure_queue_url` SQS queue, and the
//!   poller moves past them.
//! - **Filtering.** With `filter` (the mapping's `FilterCriteria`), records that match no
//!   pattern are dropped as they are read, before batches form: they never reach the
//!   function, and a poll that read only dropped records invokes nothing (see
//!   [`crate::event_filter`]).
//! - **AWS-modelled latency.** With `visibility_delay`, a record becomes visible (eligible
//!   for a batch) a drawn delay after its write (estimated as the middle of the poll window
//!   it was read in, so the local poll interval is not counted twice), never before it was
//!   read, and never before the record ahead of it in its shard, so the shard's order
//!   holds (see [`crate::latency`]).
//! - **Fault injection.** `deliver_each_batch_twice` invokes every batch a second time with
//!   the identical event (an at-least-once duplicate); only the first response counts. The
//!   same and more can be switched while the poller runs through
//!   [`StreamPollerHandle::faults`] ([`StreamPollerFaults`]): duplicate batches, and a
//!   function error reported after a batch of several records ran (a timeout after the work
//!   was done), which makes the poller retry or bisect it.
//!
//! One log line per invocation (function, event source, status, duration, request id);
//! `verbose` also logs each event.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::function::LambdaFunction;
use tokio::sync::watch;

use crate::event_filter::FilterCriteria;
use crate::event_source::{stopped, validate_batching, Invoker, PollerTask};
use crate::latency::{DelaySite, Delays, Distribution};

mod batch;
mod shard;

use shard::{describe_shards, resolve_stream_arn, shard_iterator};

/// The event source name in logs.
const EVENT_SOURCE: &str = "dynamodb-stream";

/// Lambda's cap on `BatchSize` for DynamoDB streams.
pub const MAX_BATCH_SIZE: usize = 10_000;

/// `GetRecords` returns at most this many records per call.
const GET_RECORDS_LIMIT: usize = 1_000;

/// The longest pause between retries of a failing batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// How often a closed shard's children are looked for.
const SHARD_DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Attempts to deliver one on-failure record before it is only logged.
const ON_FAILURE_SEND_ATTEMPTS: u32 = 3;

/// How a stream event-source mapping behaves; field names follow the Lambda
/// `EventSourceMapping` properties of `template.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPollerConfig {
    /// The function's name (logs, `functionArn`, the invocation context).
    pub function_name: String,
    /// The table whose stream is read.
    pub table_name: String,
    /// The stream ARN; `None` resolves the table's latest stream.
    pub stream_arn: Option<String>,
    /// How often each shard is read (the gateway's `--stream-poll-interval`).
    pub poll_interval: Duration,
    /// `BatchSize` (1..=10 000, Lambda's default 100).
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds` (0..=300 s, default 0).
    pub maximum_batching_window: Duration,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: bool,
    /// `MaximumRetryAttempts`; `None` is Lambda's `-1` (retry until the record expires).
    pub maximum_retry_attempts: Option<u32>,
    /// `MaximumRecordAgeInSeconds`; `None` is Lambda's `-1` (no limit). Values below AWS's
    /// 60 s minimum are accepted so that tests can compress time.
    pub maximum_record_age: Option<Duration>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `DestinationConfig.OnFailure`: the SQS queue URL that receives discarded batches.
    pub on_failure_queue_url: Option<String>,
    /// The function's timeout; an invocation running longer is a function error.
    pub function_timeout: Duration,
    /// Pause before the first retry of a failing batch; doubles per retry up to 10 s.
    pub retry_delay: Duration,
    /// `FilterCriteria`: only records matching a pattern are delivered; `None` delivers all.
    pub filter: Option<FilterCriteria>,
    /// AWS-modelled delay before a record is visible to the poller; `None`: at once.
    pub visibility_delay: Option<Distribution>,
    /// Seed of the visibility delays.
    pub latency_seed: u64,
    /// Fault injection: invoke every batch twice with the identical event.
    pub deliver_each_batch_twice: bool,
    /// Log every event delivered.
    pub verbose: bool,
}

impl StreamPollerConfig {
    /// Lambda's defaults for `function_name` reading `table_name`'s stream.
    pub fn new(function_name: impl Into<String>, table_name: impl Into<String>) -> Self {
        Self {
            function_name: function_name.into(),
            table_name: table_name.into(),
            stream_arn: None,
            poll_interval: Duration::from_millis(50),
            batch_size: 100,
            maximum_batching_window: Duration::ZERO,
            bisect_batch_on_function_error: false,
            maximum_retry_attempts: None,
            maximum_record_age: None,
            report_batch_item_failures: false,
            on_failure_queue_url: None,
            function_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_millis(100),
            filter: None,
            visibility_delay: None,
            latency_seed: 0,
            deliver_each_batch_twice: false,
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
        if self.poll_interval.is_zero() {
            bail!("the stream poll interval must be positive");
        }
        Ok(())
    }
}

/// The clients the poller uses. `sqs` is needed only for an on-failure destination.
#[derive(Debug, Clone)]
pub struct StreamPollerClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub sqs: Option<aws_sdk_sqs::Client>,
}

/// Fault switches of a running stream poller (tests flip them while it runs).
#[derive(Debug, Default)]
pub struct StreamPollerFaults {
    /// Invoke every batch a second time with the identical event (its response ignored).
    pub duplicate_batches: AtomicBool,
    /// After a batch of more than one record was invoked, count the invocation as a
    /// function error whatever it returned — a timeout after the work was done. The batch
    /// is retried, or bisected with `BisectBatchOnFunctionError`, so every record of it is
    /// delivered again; batches of one record are left alone, so bisection ends.
    pub fail_multi_record_batches: AtomicBool,
    /// Function errors injected so far.
    pub injected_errors: AtomicU64,
    /// Batches delivered a second time so far.
    pub duplicated_batches: AtomicU64,
}

/// A running stream poller; stops on [`shutdown`](Self::shutdown) or drop.
pub struct StreamPollerHandle {
    stream_arn: String,
    faults: Arc<StreamPollerFaults>,
    task: PollerTask,
}

impl StreamPollerHandle {
    /// The fault switches.
    pub fn faults(&self) -> &Arc<StreamPollerFaults> {
        &self.faults
    }

    /// The stream being read (the events' `eventSourceARN`).
    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Stops polling (an in-flight invocation is abandoned) and waits for the task to end.
    pub async fn shutdown(self) {
        self.task.shutdown(&self.stream_arn).await;
    }
}

/// Starts the event-source mapping of `function` on `config.table_name`'s stream.
///
/// Returns once every open shard has a `LATEST` iterator, so writes made after this returns
/// are delivered. Fails when the configuration is invalid or the table has no stream.
pub async fn spawn(
    config: StreamPollerConfig,
    clients: StreamPollerClients,
    function: Arc<dyn LambdaFunction>,
) -> anyhow::Result<StreamPollerHandle> {
    config.validate()?;
    if config.on_failure_queue_url.is_some() && clients.sqs.is_none() {
        bail!(
            "{}: an on-failure queue needs an SQS client",
            config.function_name
        );
    }
    let stream_arn = match &config.stream_arn {
        Some(arn) => arn.clone(),
        None => resolve_stream_arn(&clients, &config.table_name).await?,
    };
    let shards = describe_shards(&clients.streams, &stream_arn).await?;
    let parents: HashSet<&str> = shards
        .iter()
        .filter_map(|shard| shard.parent_shard_id())
        .collect();
    let mut readers = Vec::new();
    let mut known_shards = HashSet::new();
    for shard in &shards {
        let Some(shard_id) = shard.shard_id() else {
            continue;
        };
        known_shards.insert(shard_id.to_owned());
        // Only open shards (no child yet) carry new records.
        if parents.contains(shard_id) {
            continue;
        }
        let iterator = shard_iterator(
            &clients.streams,
            &stream_arn,
            shard_id,
            ShardIteratorType::Latest,
        )
        .await?;
        readers.push(ShardReader::new(shard_id, iterator));
    }
    let invoker = Invoker::new(
        function,
        &config.function_name,
        &stream_arn,
        EVENT_SOURCE,
        config.function_timeout,
        config.verbose,
    );
    let poller_stream_arn = stream_arn.clone();
    let faults = Arc::new(StreamPollerFaults::default());
    let poller_faults = Arc::clone(&faults);
    let delays = config
        .visibility_delay
        .clone()
        .map(|distribution| Delays::new(distribution, config.latency_seed, DelaySite::Stream));
    let task = PollerTask::spawn(move |stop_signal| {
        StreamPoller {
            config,
            delays,
            clients,
            invoker,
            stream_arn: poller_stream_arn,
            faults: poller_faults,
            shards: readers,
            known_shards,
            next_shard_discovery: Instant::now(),
            stop_signal,
        }
        .run()
    });
    Ok(StreamPollerHandle {
        stream_arn,
        faults,
        task,
    })
}

/// A stream record as delivered: its Lambda event JSON plus what the poller needs.
#[derive(Debug, Clone)]
struct PolledRecord {
    sequence_number: String,
    created_at: Option<DateTime<Utc>>,
    event: Value,
    /// When the record may join a batch (when it was read, unless a latency is modelled).
    visible_at: Instant,
}

/// Reading position and not-yet-invoked records of one shard.
#[derive(Debug)]
struct ShardReader {
    shard_id: String,
    /// `None` once the shard is closed (no `NextShardIterator`).
    iterator: Option<String>,
    /// The last record read (to renew an expired iterator).
    last_sequence_number: Option<String>,
    buffer: VecDeque<PolledRecord>,
    /// When the oldest buffered record became visible (starts the batching window).
    first_buffered_at: Option<Instant>,
    /// Visibility of the last record buffered: no later record is visible before it.
    last_visible_at: Option<Instant>,
    consecutive_errors: u32,
    /// When the last `GetRecords` was sent: a record read now was written after it.
    last_read_sent_at: Option<Instant>,
}

impl ShardReader {
    fn new(shard_id: &str, iterator: String) -> Self {
        Self {
            shard_id: shard_id.to_owned(),
            iterator: Some(iterator),
            last_sequence_number: None,
            buffer: VecDeque::new(),
            first_buffered_at: None,
            last_visible_at: None,
            consecutive_errors: 0,
            last_read_sent_at: None,
        }
    }
}

struct StreamPoller {
    config: StreamPollerConfig,
    /// The modelled visibility delays, if any.
    delays: Option<Delays>,
    clients: StreamPollerClients,
    invoker: Invoker,
    stream_arn: String,
    faults: Arc<StreamPollerFaults>,
    shards: Vec<ShardReader>,
    known_shards: HashSet<String>,
    next_shard_discovery: Instant,
    stop_signal: watch::Receiver<bool>,
}

impl StreamPoller {
    async fn run(mut self) {
        let stop = self.stop_signal.clone();
        // Stopping cancels whatever is in flight (a GetRecords, a retry pause, an invocation).
        tokio::select! {
            () = self.poll_forever() => {}
            () = stopped(stop) => {}
        }
        tracing::debug!(stream_arn = %self.stream_arn, "stream poller stopped");
    }

    async fn poll_forever(&mut self) {
        loop {
            let mut invoked = false;
            for index in 0..self.shards.len() {
                self.read_shard(index).await;
                if let Some(batch) = self.take_ready_batch(index) {
                    let shard_id = self.shards[index].shard_id.clone();
                    self.process(&shard_id, batch).await;
                    invoked = true;
                }
            }
            self.discover_shards().await;
            // A backlog is drained without pausing; an idle stream is polled at the interval
            // (or sooner, when a buffered record becomes visible).
            if !invoked {
                tokio::time::sleep(self.idle_pause()).await;
            }
        }
    }
}

/// The pause before retry number `retries` (≥ 1): `first`, doubling, at most 10 s.
fn retry_delay(first: Duration, retries: u32) -> Duration {
    let factor = 2u32.saturating_pow(retries.saturating_sub(1));
    first.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// A record as the poller keeps it: its position, its age and its Lambda event record
/// (`None` for a record without a sequence number, which no stream produces).
fn polled_record(record: &Record, stream_arn: &str, read_at: Instant) -> Option<PolledRecord> {
    let change = record.dynamodb.as_ref()?;
    Some(PolledRecord {
        visible_at: read_at,
        sequence_number: change.sequence_number.clone()?,
        created_at: change
            .approximate_creation_date_time
            .and_then(|created| DateTime::from_timestamp(created.secs(), created.subsec_nanos())),
        event: lambda_record(record, stream_arn)?,
    })
}

pub use lambda_local::stream::{attribute_json, item_json, lambda_record};

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodbstreams::types::{
        AttributeValue, Identity, OperationType, StreamRecord, StreamViewType,
    };
    use aws_smithy_types::{Blob, DateTime as SmithyDateTime};
    use serde_json::json;

    use super::*;

    const STREAM_ARN: &str =
        "arn:aws:dynamodb:us-east-1:000000000000:table/ripple/stream/2024-01-01T00:00:00.000";

    fn ttl_removal() -> Record {
        let keys = HashMap::from([
            ("pk".to_owned(), AttributeValue::S("CONN#1".into())),
            ("sk".to_owned(), AttributeValue::S("META".into())),
        ]);
        let mut old_image = keys.clone();
        old_image.extend([
            (
                "expires_at".to_owned(),
                AttributeValue::N("1700000000".into()),
            ),
            ("online".to_owned(), AttributeValue::Bool(true)),
            ("agent".to_owned(), AttributeValue::Null(true)),
            ("raw".to_owned(), AttributeValue::B(Blob::new(b"\x00\x01"))),
            (
                "rooms".to_owned(),
                AttributeValue::L(vec![AttributeValue::Ss(vec!["post:1".into()])]),
            ),
            (
                "meta".to_owned(),
                AttributeValue::M(HashMap::from([(
                    "n".to_owned(),
                    AttributeValue::Ns(vec!["1".into(), "2".into()]),
                )])),
            ),
        ]);
        Record::builder()
            .event_id("e-1")
            .event_name(OperationType::Remove)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("us-east-1")
            .user_identity(
                Identity::builder()
                    .r#type("Service")
                    .principal_id("dynamodb.amazonaws.com")
                    .build(),
            )
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(SmithyDateTime::from_secs(1_700_000_100))
                    .set_keys(Some(keys))
                    .set_old_image(Some(old_image))
                    .sequence_number("000000000000000000042")
                    .size_bytes(120)
                    .stream_view_type(StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build()
    }

    #[test]
    fn a_ttl_removal_becomes_the_lambda_record_with_user_identity() {
        let polled =
            polled_record(&ttl_removal(), STREAM_ARN, Instant::now()).expect("a complete record");
        assert_eq!(polled.sequence_number, "000000000000000000042");
        let event = &polled.event;
        assert_eq!(event["eventName"], "REMOVE");
        assert_eq!(event["eventSourceARN"], STREAM_ARN);
        assert_eq!(
            event["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
        let change = &event["dynamodb"];
        assert_eq!(change["ApproximateCreationDateTime"], 1_700_000_100);
        assert!(change.get("NewImage").is_none());
        assert_eq!(change["OldImage"]["online"], json!({"BOOL": true}));
        assert_eq!(change["OldImage"]["agent"], json!({"NULL": true}));
        assert_eq!(change["OldImage"]["raw"], json!({"B": "AAE="}));
        assert_eq!(
            change["OldImage"]["rooms"],
            json!({"L": [{"SS": ["post:1"]}]})
        );
        assert_eq!(
            change["OldImage"]["meta"],
            json!({"M": {"n": {"NS": ["1", "2"]}}})
        );
        assert_eq!(change["SizeBytes"], 120);
        assert_eq!(change["StreamViewType"], "NEW_AND_OLD_IMAGES");

        // The Lambda runtime's own type reads it back, identity and images included.
        let parsed: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(json!({ "Records": [event] })).expect("a DynamoDB event");
        let record = &parsed.records[0];
        assert_eq!(record.event_name, "REMOVE");
        assert_eq!(
            record
                .user_identity
                .as_ref()
                .map(|identity| identity.type_.as_str()),
            Some("Service")
        );
        assert_eq!(record.change.old_image.len(), 8);
        assert_eq!(
            record.change.approximate_creation_date_time.timestamp(),
            1_700_000_100
        );
    }

    #[test]
    fn a_ttl_identity_without_members_still_reads_as_dynamodbs_service() {
        // What the SDK makes of dynoxide's camelCase identity: present, members empty.
        let mut record = ttl_removal();
        record.user_identity = Some(Identity::builder().build());
        let polled = polled_record(&record, STREAM_ARN, Instant::now()).expect("a complete record");
        assert_eq!(
            polled.event["userIdentity"],
            json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"})
        );
        let parsed: aws_lambda_events::event::dynamodb::Event =
            serde_json::from_value(json!({ "Records": [polled.event] })).expect("readable");
        assert!(parsed.records[0].user_identity.is_some());
    }

    #[test]
    fn retry_delay_doubles_up_to_the_cap() {
        let first = Duration::from_millis(100);
        let delays = [1, 2, 3, 20].map(|retries| retry_delay(first, retries));
        assert_eq!(
            delays,
            [
                Duration::from_millis(100),
                Duration::from_millis(200),
                Duration::from_millis(400),
                MAX_RETRY_DELAY
            ]
        );
    }

    #[test]
    fn invalid_batch_sizes_are_rejected() {
        let mut config = StreamPollerConfig::new("f", "t");
        for invalid in [0, MAX_BATCH_SIZE + 1] {
            config.batch_size = invalid;
            assert!(config.validate().is_err(), "batch size {invalid}");
        }
        config.batch_size = MAX_BATCH_SIZE;
        assert!(config.validate().is_ok());
    }
}
