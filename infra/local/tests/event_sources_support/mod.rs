//! Shared by the event-source tests: the pinned moto server, SQS clients, and a recording
//! function whose answers each test scripts.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use ripple_local::moto::MotoServer;
use serde_json::Value;
use shared::function::{BoxError, LambdaFunction};
use tokio::sync::mpsc;

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(30);

/// The pinned `moto_server` that `make tools` installs into the repository's `.venv`.
pub fn moto_binary() -> PathBuf {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    assert!(
        binary.is_file(),
        "{} is missing: run `make tools` to install the pinned moto server",
        binary.display()
    );
    binary
}

pub async fn start_moto() -> MotoServer {
    MotoServer::start(&moto_binary())
        .await
        .unwrap_or_else(|error| panic!("moto_server did not start: {error:#}"))
}

pub fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&shared::aws::local_sdk_config())
            .endpoint_url(endpoint)
            .build(),
    )
}

/// Long-polls `queue_url` until `count` messages have arrived (deleting them), failing the
/// test after [`WAIT`].
pub async fn receive_messages(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    count: usize,
) -> Vec<Message> {
    let deadline = Instant::now() + WAIT;
    let mut messages = Vec::new();
    while messages.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages arrived in {queue_url}",
            messages.len()
        );
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|error| panic!("ReceiveMessage on {queue_url} failed: {error:?}"));
        for message in output.messages.unwrap_or_default() {
            if let Some(handle) = &message.receipt_handle {
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("DeleteMessage failed: {error:?}"));
            }
            messages.push(message);
        }
    }
    messages
}

/// The number of messages in a queue, visible or in flight.
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GetQueueAttributes failed: {error:?}"))
        .attributes
        .unwrap_or_default();
    [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|name| attributes.get(name)?.parse::<usize>().ok())
    .sum()
}

/// The scripted answer of a [`RecordingFunction`] to one event.
pub type Script = dyn Fn(&Value) -> Result<Value, BoxError> + Send + Sync;

/// A function that records every event it receives (in order) and answers as scripted.
pub struct RecordingFunction {
    script: Box<Script>,
    events: mpsc::UnboundedSender<Value>,
}

impl RecordingFunction {
    /// The function, and the receiving end of the events it is invoked with.
    pub fn scripted(
        script: impl Fn(&Value) -> Result<Value, BoxError> + Send + Sync + 'static,
    ) -> (Arc<dyn LambdaFunction>, Invocations) {
        let (events, received) = mpsc::unbounded_channel();
        let function = Arc::new(Self {
            script: Box::new(script),
            events,
        });
        (function, Invocations { received })
    }
}

#[async_trait]
impl LambdaFunction for RecordingFunction {
    async fn invoke(
        &self,
        event: Value,
        _context: lambda_runtime::Context,
    ) -> Result<Value, BoxError> {
        let answer = (self.script)(&event);
        // The test may have finished listening; the answer still stands.
        let _listener_may_be_gone = self.events.send(event);
        answer
    }
}

/// The events a [`RecordingFunction`] was invoked with.
pub struct Invocations {
    received: mpsc::UnboundedReceiver<Value>,
}

impl Invocations {
    /// The next event, failing the test after [`WAIT`].
    pub async fn next(&mut self) -> Value {
        tokio::time::timeout(WAIT, self.received.recv())
            .await
            .unwrap_or_else(|_| panic!("the function was not invoked within {WAIT:?}"))
            .unwrap_or_else(|| panic!("the function is gone"))
    }

    /// The next `count` events.
    pub async fn next_n(&mut self, count: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }

    /// Asserts that no invocation happens during `quiet` (a bounded negative check).
    pub async fn assert_none_for(&mut self, quiet: Duration) {
        if let Ok(Some(event)) = tokio::time::timeout(quiet, self.received.recv()).await {
            panic!("unexpected invocation: {event}");
        }
    }
}

/// The `Records` array of an event.
pub fn records(event: &Value) -> &Vec<Value> {
    event["Records"]
        .as_array()
        .unwrap_or_else(|| panic!("event without Records: {event}"))
}
