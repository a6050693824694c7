//! Reads of the stack's table and queues through their endpoints, and the DLQ redrive.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use shared::store::keys::{self, Key};

use super::{RealtimeStack, User, WAIT};

impl RealtimeStack {
    /// Number of items in the table (a paginated `Scan` with `Select: COUNT`).
    pub async fn item_count(&self) -> usize {
        let mut count = 0usize;
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.stack.table_name)
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap_or_else(|e| panic!("scanning the table: {e:?}"));
            count += usize::try_from(page.count()).unwrap_or_default();
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return count,
            }
        }
    }

    /// The table's item count once it has stopped changing (background writes such as
    /// presence announcements settle first).
    pub async fn settled_item_count(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut last = self.item_count().await;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.item_count().await;
            if now == last {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "the item count kept changing for {WAIT:?} ({last} → {now})"
            );
            last = now;
        }
    }

    /// Whether the connection item of `connection_id` exists.
    pub async fn connection_item_exists(&self, connection_id: &str) -> bool {
        self.item(&keys::connection(connection_id)).await.is_some()
    }

    /// The ids in `user`'s connection set (the item fan-out reads).
    pub async fn user_connection_ids(&self, user: &User) -> Vec<String> {
        self.item(&keys::user_connections(user.user_id()))
            .await
            .and_then(|item| item.get("connection_ids")?.as_ss().ok().cloned())
            .unwrap_or_default()
    }

    /// The sort keys of `user`'s notification items.
    pub async fn notification_items(&self, user: &User) -> Vec<String> {
        self.sort_keys(&keys::user_pk(user.user_id()), keys::NOTIFICATION_PREFIX)
            .await
    }

    /// The sort keys of the items in partition `pk` whose sort key starts with `prefix`.
    pub async fn sort_keys(&self, pk: &str, prefix: &str) -> Vec<String> {
        let page = self
            .dynamodb
            .query()
            .table_name(&self.stack.table_name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .expression_attribute_values(":prefix", AttributeValue::S(prefix.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("querying {pk}: {e:?}"));
        assert!(page.last_evaluated_key.is_none(), "one page is enough here");
        page.items()
            .iter()
            .filter_map(|item| item.get("sk")?.as_s().ok().cloned())
            .collect()
    }

    /// The item at `key`, if present.
    pub async fn item(&self, key: &Key) -> Option<HashMap<String, AttributeValue>> {
        self.dynamodb
            .get_item()
            .table_name(&self.stack.table_name)
            .key("pk", AttributeValue::S(key.pk.clone()))
            .key("sk", AttributeValue::S(key.sk.clone()))
            .consistent_read(true)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading {key:?}: {e:?}"))
            .item
    }

    /// Messages in the fan-out queue, visible or in flight.
    pub async fn fanout_queue_depth(&self) -> u64 {
        let (visible, in_flight) = self.queue_counts(&self.stack.queues.fanout.url).await;
        visible + in_flight
    }

    /// The fan-out DLQ's `ApproximateNumberOfMessages`: what CloudWatch publishes as
    /// `ApproximateNumberOfMessagesVisible`, the metric the template's `FanoutDlqDepthAlarm`
    /// watches.
    pub async fn fanout_dlq_depth(&self) -> u64 {
        self.queue_counts(&self.stack.queues.fanout_dlq.url).await.0
    }

    /// A queue's `ApproximateNumberOfMessages` and `ApproximateNumberOfMessagesNotVisible`.
    async fn queue_counts(&self, queue_url: &str) -> (u64, u64) {
        use aws_sdk_sqs::types::QueueAttributeName as Name;
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(Name::ApproximateNumberOfMessages)
            .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap_or_else(|e| panic!("reading the attributes of {queue_url}: {e:?}"));
        let read = |name: Name| -> u64 {
            attributes
                .attributes()
                .and_then(|all| all.get(&name))
                .and_then(|value| value.parse().ok())
                .unwrap_or_default()
        };
        (
            read(Name::ApproximateNumberOfMessages),
            read(Name::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Moves every message of the fan-out DLQ back to the fan-out queue, as an operator's
    /// redrive does once the cause is fixed; returns how many.
    pub async fn redrive_fanout_dlq(&self) -> usize {
        let queues = &self.stack.queues;
        let mut moved = 0;
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&queues.fanout_dlq.url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap_or_else(|e| panic!("receiving from the DLQ: {e:?}"));
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return moved;
            }
            for message in messages {
                self.sqs
                    .send_message()
                    .queue_url(&queues.fanout.url)
                    .message_body(message.body.clone().unwrap_or_default())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("sending back to the fan-out queue: {e:?}"));
                self.sqs
                    .delete_message()
                    .queue_url(&queues.fanout_dlq.url)
                    .set_receipt_handle(message.receipt_handle.clone())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("deleting from the DLQ: {e:?}"));
                moved += 1;
            }
        }
    }
}
