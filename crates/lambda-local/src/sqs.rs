//! SQS messages as Lambda receives them, and the queue reads a test of an SQS-triggered
//! function needs (everything visible now, how many wait delayed).

use aws_sdk_sqs::types::{
    Message, MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
};
use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The Lambda event record of one SQS message (an element of `SqsEvent.Records`): the one
/// conversion, used by `ripple-local`'s SQS poller and by [`sqs_event`].
pub fn sqs_record(message: &Message, queue_arn: &str, region: &str) -> Value {
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

/// The `SqsEvent` (`{"Records": [...]}`) Lambda sends for `messages` of the queue `queue_arn`.
pub fn sqs_event(queue_arn: &str, region: &str, messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|message| sqs_record(message, queue_arn, region))
        .collect();
    json!({ "Records": records })
}

/// The `itemIdentifier`s of a partial batch response (`SqsBatchResponse` or a stream
/// function's); panics without `batchItemFailures` (test helper).
pub fn batch_item_failures(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("no batchItemFailures in {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every message now visible on `queue_url`, with their system attributes (received, so
/// hidden afterwards). Test helper: panics on an SQS error.
pub async fn receive_all(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Message> {
    let mut messages = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ReceiveMessage: {e:?}"));
        let batch = output.messages().to_vec();
        if batch.is_empty() {
            return messages;
        }
        messages.extend(batch);
    }
}

/// How many messages wait in `queue_url` with a delay still running. Test helper: panics on
/// an SQS error.
pub async fn delayed_count(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> usize {
    let delayed = QueueAttributeName::ApproximateNumberOfMessagesDelayed;
    let output = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(delayed.clone())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetQueueAttributes: {e:?}"));
    output
        .attributes()
        .and_then(|attributes| attributes.get(&delayed))
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("no ApproximateNumberOfMessagesDelayed"))
}
