//! Reading the stream: finding it and its shards, one `GetRecords` per shard and poll,
//! buffering and filtering what it returns, forming batches, and following new shards.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError;
use aws_sdk_dynamodbstreams::types::{Record, Shard, ShardIteratorType};

use super::{
    polled_record, PolledRecord, ShardReader, StreamPoller, StreamPollerClients, GET_RECORDS_LIMIT,
    SHARD_DISCOVERY_INTERVAL,
};

pub(super) async fn resolve_stream_arn(
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
pub(super) async fn describe_shards(
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

pub(super) async fn shard_iterator(
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

impl StreamPoller {
    /// The pause of an idle loop: the poll interval, shortened to the moment the next
    /// buffered record becomes visible.
    pub(super) fn idle_pause(&self) -> Duration {
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
    pub(super) async fn read_shard(&mut self, index: usize) {
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
    pub(super) fn take_ready_batch(&mut self, index: usize) -> Option<Vec<PolledRecord>> {
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

    /// Drops fully read closed shards and starts reading shards that appeared since the
    /// poller started (a closed shard's children, or the first shard of a stream that had
    /// none) from `TRIM_HORIZON`: every record in them is newer than the start. A shard whose
    /// parent is still being read waits, so that records stay in order.
    pub(super) async fn discover_shards(&mut self) {
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
