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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::types::{Record, Shard, ShardIteratorType};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use shared::function::LambdaFunction;
use tokio::sync::watch;

use crate::event_filter::FilterCriteria;
use crate::event_source::{batch_item_failures, stopped, validate_batching, Invoker, PollerTask};
use crate::latency::{DelaySite, Delays, Distribution};

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

async fn resolve_stream_arn(
    clients: &StreamPollerClients,
    table_name: &str,
) -> anyhow::Result<String> {
    let described = clients
        .dynamodb
        .describe_table()
        .table_name(table_name)
        .send()
        .await
        .with_context(|| format!("DescribeTable {table_name}"))?;
    if let Some(arn) = described.table.and_then(|table| table.latest_stream_arn) {
        return Ok(arn);
    }
    let listed = clients
        .streams
        .list_streams()
        .table_name(table_name)
        .send()
        .await
        .with_context(|| format!("ListStreams {table_name}"))?;
    listed
        .streams
        .unwrap_or_default()
        .into_iter()
        .find_map(|stream| stream.stream_arn)
        .ok_or_else(|| anyhow!("table {table_name} has no stream: enable NEW_AND_OLD_IMAGES"))
}

/// Every shard of the stream (all `DescribeStream` pages).
async fn describe_shards(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> anyhow::Result<Vec<Shard>> {
    let mut shards = Vec::new();
    let mut start_after: Option<String> = None;
    loop {
        let description = streams
            .describe_stream()
            .stream_arn(stream_arn)
            .set_exclusive_start_shard_id(start_after.take())
            .send()
            .await
            .with_context(|| format!("DescribeStream {stream_arn}"))?
            .stream_description
            .ok_or_else(|| anyhow!("DescribeStream {stream_arn} returned no description"))?;
        shards.extend(description.shards.unwrap_or_default());
        match description.last_evaluated_shard_id {
            Some(last) => start_after = Some(last),
            None => return Ok(shards),
        }
    }
}

async fn shard_iterator(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
    shard_id: &str,
    kind: ShardIteratorType,
) -> anyhow::Result<String> {
    streams
        .get_shard_iterator()
        .stream_arn(stream_arn)
        .shard_id(shard_id)
        .shard_iterator_type(kind.clone())
        .send()
        .await
        .with_context(|| format!("GetShardIterator {kind} on {shard_id}"))?
        .shard_iterator
        .ok_or_else(|| anyhow!("GetShardIterator {kind} on {shard_id} returned no iterator"))
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

    /// The pause of an idle loop: the poll interval, shortened to the moment the next
    /// buffered record becomes visible.
    fn idle_pause(&self) -> Duration {
        let now = Instant::now();
        self.shards
            .iter()
            .filter_map(|shard| {
                // Visibility never decreases along a buffer: the first still hidden record.
                let pending = shard.buffer.iter().find(|record| record.visible_at > now)?;
                Some(pending.visible_at - now)
            })
            .fold(self.config.poll_interval, Duration::min)
            .max(Duration::from_millis(1))
    }

    /// One `GetRecords` on the shard, unless a full batch is already buffered (with a
    /// modelled latency the buffer also holds records not yet visible, up to one more read).
    async fn read_shard(&mut self, index: usize) {
        let capacity = match self.delays {
            Some(_) => self.config.batch_size + GET_RECORDS_LIMIT,
            None => self.config.batch_size,
        };
        let shard = &mut self.shards[index];
        let Some(iterator) = shard.iterator.clone() else {
            return;
        };
        if shard.buffer.len() >= capacity {
            return;
        }
        let limit = (capacity - shard.buffer.len()).min(GET_RECORDS_LIMIT);
        let previous_read = shard.last_read_sent_at.replace(Instant::now());
        let output = self
            .clients
            .streams
            .get_records()
            .shard_iterator(iterator)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await;
        match output {
            Ok(output) => {
                shard.consecutive_errors = 0;
                // No next iterator: the shard is closed and fully read.
                shard.iterator = output.next_shard_iterator;
                self.buffer_records(index, &output.records.unwrap_or_default(), previous_read);
            }
            Err(error) => {
                shard.consecutive_errors += 1;
                let expired = matches!(
                    error.as_service_error(),
                    Some(GetRecordsError::ExpiredIteratorException(_))
                );
                let trimmed = matches!(
                    error.as_service_error(),
                    Some(GetRecordsError::TrimmedDataAccessException(_))
                );
                // Log the first failure and then sparsely, not every poll interval.
                if shard.consecutive_errors.is_power_of_two() {
                    tracing::warn!(
                        shard_id = %shard.shard_id,
                        failures = shard.consecutive_errors,
                        error = %aws_sdk_dynamodbstreams::error::DisplayErrorContext(&error),
                        "GetRecords failed"
                    );
                }
                if expired || trimmed {
                    // An expired iterator resumes after the last record read; trimmed data
                    // (older than the retention) resumes at the oldest record still there.
                    let (kind, after) = match (&shard.last_sequence_number, expired) {
                        (Some(last), true) => {
                            (ShardIteratorType::AfterSequenceNumber, Some(last.clone()))
                        }
                        (None, true) => (ShardIteratorType::Latest, None),
                        (_, false) => (ShardIteratorType::TrimHorizon, None),
                    };
                    let renewed = self
                        .clients
                        .streams
                        .get_shard_iterator()
                        .stream_arn(&self.stream_arn)
                        .shard_id(&shard.shard_id)
                        .shard_iterator_type(kind)
                        .set_sequence_number(after)
                        .send()
                        .await;
                    if let Ok(Some(iterator)) = renewed.map(|output| output.shard_iterator) {
                        shard.iterator = Some(iterator);
                    }
                }
            }
        }
    }

    /// Buffers the records a `GetRecords` returned: drops those no filter matches (as
    /// Lambda does before batching) and stamps each with its visibility.
    ///
    /// A modelled delay counts from the record's write, which happened after the previous
    /// read was sent (`previous_read`): the midpoint of that window estimates it without
    /// bias, so the local poll interval is not added on top of the published figure
    /// (whose own polling it already includes).
    fn buffer_records(&mut self, index: usize, records: &[Record], previous_read: Option<Instant>) {
        let read_at = Instant::now();
        let written_at = previous_read.map_or(read_at, |sent| sent + (read_at - sent) / 2);
        let shard = &mut self.shards[index];
        for mut record in records
            .iter()
            .filter_map(|record| polled_record(record, &self.stream_arn, read_at))
        {
            shard.last_sequence_number = Some(record.sequence_number.clone());
            let filtered_out = self
                .config
                .filter
                .as_ref()
                .is_some_and(|filter| !filter.matches(&record.event));
            if filtered_out {
                continue;
            }
            if let Some(delays) = &self.delays {
                // Never visible before the record ahead of it: the shard's order holds.
                let drawn = (written_at + delays.draw()).max(read_at);
                record.visible_at = shard.last_visible_at.map_or(drawn, |at| at.max(drawn));
            }
            shard.last_visible_at = Some(record.visible_at);
            if shard.buffer.is_empty() {
                shard.first_buffered_at = Some(record.visible_at);
            }
            shard.buffer.push_back(record);
        }
    }

    /// The next batch of the shard's visible records if it is full, its window has passed,
    /// or the shard is closed (nothing more will come).
    fn take_ready_batch(&mut self, index: usize) -> Option<Vec<PolledRecord>> {
        let batch_size = self.config.batch_size;
        let window = self.config.maximum_batching_window;
        let shard = &mut self.shards[index];
        let now = Instant::now();
        // Visibility never decreases along the buffer: the visible records are a prefix.
        let visible = shard
            .buffer
            .iter()
            .take_while(|record| record.visible_at <= now)
            .count();
        if visible == 0 {
            return None;
        }
        let full = visible >= batch_size;
        let window_passed = shard
            .first_buffered_at
            .is_none_or(|since| now.saturating_duration_since(since) >= window);
        let closed = shard.iterator.is_none() && visible == shard.buffer.len();
        if !(full || window_passed || closed) {
            return None;
        }
        let count = visible.min(batch_size);
        let batch: Vec<PolledRecord> = shard.buffer.drain(..count).collect();
        shard.first_buffered_at = shard.buffer.front().map(|next| next.visible_at.max(now));
        Some(batch)
    }

    /// Invokes the function with `batch` until it succeeds or is discarded, as Lambda does.
    async fn process(&mut self, shard_id: &str, batch: Vec<PolledRecord>) {
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
        let identifiers = match batch_item_failures(&response) {
            Ok(identifiers) => identifiers,
            Err(problem) => {
                tracing::warn!(
                    function = %self.config.function_name,
                    request_id = %invocation.request_id,
                    "invalid partial batch response ({problem}): the whole batch failed"
                );
                return BatchOutcome::Failed;
            }
        };
        if identifiers.is_empty() {
            return BatchOutcome::Success;
        }
        let positions: HashMap<&str, usize> = batch
            .records
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
                        request_id = %invocation.request_id,
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

    /// Drops fully read closed shards and starts reading shards that appeared since the
    /// poller started (a closed shard's children, or the first shard of a stream that had
    /// none) from `TRIM_HORIZON`: every record in them is newer than the start. A shard whose
    /// parent is still being read waits, so that records stay in order.
    async fn discover_shards(&mut self) {
        let finished = |shard: &ShardReader| shard.iterator.is_none() && shard.buffer.is_empty();
        let needed = self.shards.is_empty() || self.shards.iter().any(finished);
        if !needed || Instant::now() < self.next_shard_discovery {
            return;
        }
        self.next_shard_discovery = Instant::now() + SHARD_DISCOVERY_INTERVAL;
        let listed = match describe_shards(&self.clients.streams, &self.stream_arn).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(stream_arn = %self.stream_arn, "cannot list shards: {error:#}");
                return;
            }
        };
        self.shards.retain(|shard| !finished(shard));
        let still_read: HashSet<String> = self
            .shards
            .iter()
            .map(|shard| shard.shard_id.clone())
            .collect();
        for shard in &listed {
            let Some(shard_id) = shard.shard_id() else {
                continue;
            };
            let parent_unfinished = shard
                .parent_shard_id()
                .is_some_and(|parent| still_read.contains(parent));
            if self.known_shards.contains(shard_id) || parent_unfinished {
                continue;
            }
            match shard_iterator(
                &self.clients.streams,
                &self.stream_arn,
                shard_id,
                ShardIteratorType::TrimHorizon,
            )
            .await
            {
                Ok(iterator) => {
                    self.known_shards.insert(shard_id.to_owned());
                    self.shards.push(ShardReader::new(shard_id, iterator));
                }
                Err(error) => tracing::warn!("cannot read new shard {shard_id}: {error:#}"),
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
    use aws_sdk_dynamodbstreams::types::{
        AttributeValue, Identity, OperationType, StreamRecord, StreamViewType,
    };
    use aws_smithy_types::{Blob, DateTime as SmithyDateTime};

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
