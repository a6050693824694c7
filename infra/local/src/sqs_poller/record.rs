//! What a received message becomes: its Lambda event record, and when a modelled latency
//! lets it be delivered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// Milliseconds since the epoch.
pub(super) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The message's `SentTimestamp` (epoch milliseconds), if the receive asked for it.
pub(super) fn sent_timestamp_ms(message: &Message) -> Option<u64> {
    message
        .attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()
}

/// Splits messages with their due times (epoch ms) into invocations: those due by `now`
/// together at once, each later one alone after its wait.
pub(super) fn delivery_groups<T>(due: Vec<(u64, T)>, now: u64) -> Vec<(Duration, Vec<T>)> {
    let mut ready = Vec::new();
    let mut later = Vec::new();
    for (at, item) in due {
        if at <= now {
            ready.push(item);
        } else {
            later.push((Duration::from_millis(at - now), vec![item]));
        }
    }
    let mut groups = Vec::with_capacity(later.len() + 1);
    if !ready.is_empty() {
        groups.push((Duration::ZERO, ready));
    }
    groups.extend(later);
    groups
}

/// The Lambda event record of one SQS message.
pub(super) fn sqs_record(message: &Message, queue_arn: &str, region: &str) -> Value {
    let attributes: Map<String, Value> = message
        .attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.as_str().to_owned(), json!(value)))
        .collect();
    let message_attributes: Map<String, Value> = message
        .message_attributes
        .iter()
        .flatten()
        .map(|(name, value)| (name.clone(), message_attribute(value)))
        .collect();
    let mut record = json!({
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.md5_of_body,
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    });
    if let Some(digest) = &message.md5_of_message_attributes {
        record["md5OfMessageAttributes"] = json!(digest);
    }
    record
}

/// A message attribute as Lambda writes it (camelCase, binary as base64).
fn message_attribute(value: &MessageAttributeValue) -> Value {
    let base64 = |blob: &aws_smithy_types::Blob| {
        base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
    };
    let mut attribute = json!({
        "stringListValues": value.string_list_values.clone().unwrap_or_default(),
        "binaryListValues": value
            .binary_list_values
            .iter()
            .flatten()
            .map(base64)
            .collect::<Vec<_>>(),
        "dataType": value.data_type,
    });
    if let Some(text) = &value.string_value {
        attribute["stringValue"] = json!(text);
    }
    if let Some(blob) = &value.binary_value {
        attribute["binaryValue"] = json!(base64(blob));
    }
    attribute
}
