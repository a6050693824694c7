//! DynamoDB stream records as Lambda receives them: the conversion of records read through
//! `aws-sdk-dynamodbstreams` into a Lambda `DynamoDbEvent`, and [`StreamReader`], which reads
//! a table's real stream shard by shard (what a test of a stream-triggered function needs
//! instead of a poller).

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::dynamo::stream_shard_ids;

/// The record of a Lambda DynamoDB stream event (one element of `Records`, as
/// `aws_lambda_events::event::dynamodb::EventRecord` reads it) for a record read from a
/// stream through `aws-sdk-dynamodbstreams`. `None` for a record without a sequence number,
/// which no stream produces.
///
/// The `userIdentity` of a TTL deletion, the only stream records that have one.
const TTL_IDENTITY_TYPE: &str = "Service";
const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// The one conversion of stream records to Lambda's JSON: `ripple-local`'s stream poller
/// sends it, and tests that read a table's stream themselves ([`StreamReader`]) build their
/// events with it.
pub fn lambda_record(record: &Record, stream_arn: &str) -> Option<Value> {
    let change = record.dynamodb.as_ref()?;
    let sequence_number = change.sequence_number.as_ref()?;
    let mut dynamodb = Map::new();
    if let Some(created) = change.approximate_creation_date_time {
        // Lambda sends whole epoch seconds as an integer.
        let seconds = if created.subsec_nanos() == 0 {
            json!(created.secs())
        } else {
            json!(created.as_secs_f64())
        };
        dynamodb.insert("ApproximateCreationDateTime".into(), seconds);
    }
    if let Some(keys) = &change.keys {
        dynamodb.insert("Keys".into(), Value::Object(item_json(keys)));
    }
    if let Some(image) = &change.new_image {
        dynamodb.insert("NewImage".into(), Value::Object(item_json(image)));
    }
    if let Some(image) = &change.old_image {
        dynamodb.insert("OldImage".into(), Value::Object(item_json(image)));
    }
    dynamodb.insert("SequenceNumber".into(), json!(sequence_number));
    if let Some(size) = change.size_bytes {
        dynamodb.insert("SizeBytes".into(), json!(size));
    }
    if let Some(view) = &change.stream_view_type {
        dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
    }
    let mut event = json!({
        "eventID": record.event_id,
        "eventName": record.event_name.as_ref().map(|name| name.as_str()),
        "eventVersion": record.event_version,
        "eventSource": record.event_source.as_deref().unwrap_or("aws:dynamodb"),
        "awsRegion": record.aws_region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    });
    // Present for TTL deletions only: {"type": "Service", "principalId": "dynamodb.amazonaws.com"}.
    // dynoxide writes the identity's members in camelCase where the SDK reads AWS's PascalCase,
    // so they arrive empty; null members would make every TTL record unreadable to Lambda's
    // type (and, retried in order, stall the shard), so the only values AWS sends stand in.
    if let Some(identity) = &record.user_identity {
        event["userIdentity"] = json!({
            "type": identity.r#type.as_deref().unwrap_or(TTL_IDENTITY_TYPE),
            "principalId": identity.principal_id.as_deref().unwrap_or(TTL_PRINCIPAL),
        });
    }
    Some(event)
}

/// An item in DynamoDB JSON (`{"attr": {"S": "…"}}`), as stream events carry it.
pub fn item_json(item: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    item.iter()
        .filter_map(|(name, value)| Some((name.clone(), attribute_json(value)?)))
        .collect()
}

/// One attribute value in DynamoDB JSON (`{"S": "…"}`, `{"M": {…}}`, …); `None` for a type
/// newer than this SDK.
pub fn attribute_json(value: &AttributeValue) -> Option<Value> {
    let base64 = |blob: &aws_smithy_types::Blob| {
        base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
    };
    Some(match value {
        AttributeValue::S(text) => json!({ "S": text }),
        AttributeValue::N(number) => json!({ "N": number }),
        AttributeValue::B(blob) => json!({ "B": base64(blob) }),
        AttributeValue::Ss(texts) => json!({ "SS": texts }),
        AttributeValue::Ns(numbers) => json!({ "NS": numbers }),
        AttributeValue::Bs(blobs) => json!({ "BS": blobs.iter().map(base64).collect::<Vec<_>>() }),
        AttributeValue::M(map) => json!({ "M": item_json(map) }),
        AttributeValue::L(list) => {
            json!({ "L": list.iter().filter_map(attribute_json).collect::<Vec<_>>() })
        }
        AttributeValue::Null(is_null) => json!({ "NULL": is_null }),
        AttributeValue::Bool(boolean) => json!({ "BOOL": boolean }),
        // A type newer than this SDK: nothing sensible to forward.
        _ => return None,
    })
}

/// The `DynamoDbEvent` (`{"Records": [...]}`) Lambda sends for `records` of `stream_arn`;
/// records without a sequence number (which no stream produces) are left out.
pub fn dynamodb_event(records: &[Record], stream_arn: &str) -> Value {
    let records: Vec<Value> = records
        .iter()
        .filter_map(|record| lambda_record(record, stream_arn))
        .collect();
    json!({ "Records": records })
}

/// Reads a table's real stream, shard by shard, from where it last stopped. Test harness:
/// panics on any stream API error.
pub struct StreamReader {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Next iterator per shard.
    positions: HashMap<String, String>,
    /// Where a shard not read yet starts.
    start_at: ShardIteratorType,
}

impl StreamReader {
    /// Starts at the beginning of `table`'s stream (`DescribeTable` finds it).
    pub async fn new(
        dynamodb: &aws_sdk_dynamodb::Client,
        streams: &aws_sdk_dynamodbstreams::Client,
        table: &str,
    ) -> Self {
        let description = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeTable: {e:?}"));
        let stream_arn = description
            .table()
            .and_then(|t| t.latest_stream_arn())
            .unwrap_or_else(|| panic!("the table {table} has no stream"))
            .to_owned();
        Self {
            streams: streams.clone(),
            stream_arn,
            positions: HashMap::new(),
            start_at: ShardIteratorType::TrimHorizon,
        }
    }

    /// Starts after the last record written so far (a stream of a big seed need not be
    /// read back).
    pub async fn from_now(
        dynamodb: &aws_sdk_dynamodb::Client,
        streams: &aws_sdk_dynamodbstreams::Client,
        table: &str,
    ) -> Self {
        let mut reader = Self::new(dynamodb, streams, table).await;
        reader.start_at = ShardIteratorType::Latest;
        reader
    }

    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// Every record written since the last call (the first call: since the reader's start).
    pub async fn read(&mut self) -> Vec<Record> {
        let shards = stream_shard_ids(&self.streams, &self.stream_arn)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut records = Vec::new();
        for shard in shards {
            let iterator = match self.positions.get(&shard) {
                Some(iterator) => iterator.clone(),
                None => self.first_iterator(&shard).await,
            };
            let iterator = self.read_shard(iterator, &mut records).await;
            self.positions.insert(shard, iterator);
        }
        records
    }

    /// Where reading `shard` starts.
    async fn first_iterator(&self, shard: &str) -> String {
        self.streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard)
            .shard_iterator_type(self.start_at.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetShardIterator: {e:?}"))
            .shard_iterator()
            .unwrap_or_else(|| panic!("no shard iterator"))
            .to_owned()
    }

    /// Reads one shard from `iterator` until it has nothing more; returns where to go on.
    async fn read_shard(&self, mut iterator: String, records: &mut Vec<Record>) -> String {
        loop {
            let output = self
                .streams
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GetRecords: {e:?}"));
            let batch = output.records().to_vec();
            let next = output.next_shard_iterator().map(str::to_owned);
            if let Some(next) = &next {
                iterator = next.clone();
            }
            if batch.is_empty() || next.is_none() {
                return iterator;
            }
            records.extend(batch);
        }
    }

    /// The `DynamoDbEvent` Lambda sends for the records written since the last read.
    pub async fn next_event(&mut self) -> Value {
        let records = self.read().await;
        self.event(&records)
    }

    /// The `DynamoDbEvent` of `records` read from this stream.
    pub fn event(&self, records: &[Record]) -> Value {
        for record in records {
            assert!(
                lambda_record(record, &self.stream_arn).is_some(),
                "stream record without a sequence number: {record:?}"
            );
        }
        dynamodb_event(records, &self.stream_arn)
    }
}
