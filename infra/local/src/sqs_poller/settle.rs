//! Settling received messages: deleting those processed, releasing those received while
//! paused.

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
};

use super::{SqsPoller, SQS_BATCH_LIMIT};

impl SqsPoller {
    pub(super) async fn delete(&self, messages: &[&Message]) {
        for chunk in messages.chunks(SQS_BATCH_LIMIT) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, message)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .set_receipt_handle(message.receipt_handle.clone())
                        .build()
                        .ok()
                })
                .collect();
            let deleted = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match deleted {
                Ok(output) if output.failed.is_empty() => {}
                Ok(output) => tracing::warn!(
                    queue_url = %self.config.queue_url,
                    failed = output.failed.len(),
                    "some processed messages could not be deleted; they will be redelivered"
                ),
                Err(error) => tracing::warn!(
                    queue_url = %self.config.queue_url,
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                    "DeleteMessageBatch failed; the processed messages will be redelivered"
                ),
            }
        }
    }

    /// Makes messages received while paused visible again at once.
    pub(super) async fn release(&self, messages: &[Message]) {
        for chunk in messages.chunks(SQS_BATCH_LIMIT) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, message)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .set_receipt_handle(message.receipt_handle.clone())
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            let released = self
                .sqs
                .change_message_visibility_batch()
                .queue_url(&self.config.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            if let Err(error) = released {
                tracing::warn!(
                    queue_url = %self.config.queue_url,
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                    "cannot release messages received while paused; they reappear after the visibility timeout"
                );
            }
        }
    }
}
