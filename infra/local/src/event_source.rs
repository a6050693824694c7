//! What the event-source mappings share (the DynamoDB stream poller and the SQS poller):
//! invoking a function the way Lambda's event-source mapping does — the function ARN in the
//! source's region and account, a deadline, a timeout, one log line per invocation — and
//! reading a partial batch response (`batchItemFailures`) the way Lambda reads it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared::function::LambdaFunction;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The account id used when an event source's ARN has none.
const DEFAULT_ACCOUNT: &str = "000000000000";

/// The region used when an event source's ARN has none.
const DEFAULT_REGION: &str = "us-east-1";

/// Lambda's cap on `MaximumBatchingWindowInSeconds`, for every event source.
pub const MAX_BATCHING_WINDOW: Duration = Duration::from_secs(300);

/// The batching checks Lambda makes on every event-source mapping: `BatchSize` within
/// `1..=max_batch_size` (the source's own cap) and a batching window of at most
/// [`MAX_BATCHING_WINDOW`].
pub fn validate_batching(
    function_name: &str,
    batch_size: usize,
    max_batch_size: usize,
    batching_window: Duration,
) -> anyhow::Result<()> {
    if !(1..=max_batch_size).contains(&batch_size) {
        anyhow::bail!("BatchSize {batch_size} of {function_name} is outside 1..={max_batch_size}");
    }
    if batching_window > MAX_BATCHING_WINDOW {
        anyhow::bail!("MaximumBatchingWindowInSeconds of {function_name} exceeds 300");
    }
    Ok(())
}

/// Invokes one function for one event source, with a timeout and the per-invocation
/// log line.
pub struct Invoker {
    function: Arc<dyn LambdaFunction>,
    function_name: String,
    function_arn: String,
    event_source: &'static str,
    timeout: Duration,
    verbose: bool,
}

/// The request id of an invocation and its response, or the error as text.
pub struct Invocation {
    pub request_id: String,
    pub result: Result<Value, String>,
}

impl Invoker {
    /// `source_arn` (a stream or queue ARN) gives the function ARN's region and account.
    pub fn new(
        function: Arc<dyn LambdaFunction>,
        function_name: &str,
        source_arn: &str,
        event_source: &'static str,
        timeout: Duration,
        verbose: bool,
    ) -> Self {
        Self {
            function,
            function_name: function_name.to_owned(),
            function_arn: function_arn(source_arn, function_name),
            event_source,
            timeout,
            verbose,
        }
    }

    /// The ARN the function is invoked as (`Context::invoked_function_arn`).
    pub fn function_arn(&self) -> &str {
        &self.function_arn
    }

    /// Invokes the function with `event` (of `records` records) and logs the outcome.
    pub async fn invoke(&self, event: &Value, records: usize) -> Invocation {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut context = lambda_runtime::Context::default();
        context.request_id = request_id.clone();
        context.invoked_function_arn = self.function_arn.clone();
        let deadline = SystemTime::now() + self.timeout;
        context.deadline = deadline
            .duration_since(UNIX_EPOCH)
            .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default();
        if self.verbose {
            tracing::info!(
                function = %self.function_name,
                source = self.event_source,
                request_id = %request_id,
                "event: {event}"
            );
        }
        let started = Instant::now();
        let result =
            match tokio::time::timeout(self.timeout, self.function.invoke(event.clone(), context))
                .await
            {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err(format!("Task timed out after {:?}", self.timeout)),
            };
        let duration_ms = started.elapsed().as_millis();
        match &result {
            Ok(_) => tracing::info!(
                function = %self.function_name,
                source = self.event_source,
                status = "ok",
                records,
                duration_ms,
                request_id = %request_id,
                "invoked"
            ),
            Err(error) => tracing::warn!(
                function = %self.function_name,
                source = self.event_source,
                status = "error",
                records,
                duration_ms,
                request_id = %request_id,
                error = %error,
                "invoked"
            ),
        }
        Invocation { request_id, result }
    }
}

/// `arn:aws:lambda:{region}:{account}:function:{name}` in the region and account of
/// the event source.
pub fn function_arn(source_arn: &str, function_name: &str) -> String {
    let region = source_region(source_arn);
    let account = source_arn
        .split(':')
        .nth(4)
        .filter(|account| !account.is_empty())
        .unwrap_or(DEFAULT_ACCOUNT);
    format!("arn:aws:lambda:{region}:{account}:function:{function_name}")
}

/// The region of an event source's ARN (`us-east-1` when it has none): the function's
/// region and the events' `awsRegion`.
pub fn source_region(source_arn: &str) -> &str {
    source_arn
        .split(':')
        .nth(3)
        .filter(|region| !region.is_empty())
        .unwrap_or(DEFAULT_REGION)
}

/// A poller's background task and its stop signal. [`shutdown`](Self::shutdown) signals
/// the stop and waits for the task (which decides what to do with in-flight invocations);
/// dropping it signals the stop and aborts the task.
pub struct PollerTask {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl PollerTask {
    /// Spawns `run`, handing it the stop signal to watch (see [`stopped`]).
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (stop, stop_signal) = watch::channel(false);
        let task = tokio::spawn(run(stop_signal));
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops the poller of `source_arn` (named in the log if it panicked) and waits for its
    /// task to end.
    pub async fn shutdown(mut self, source_arn: &str) {
        let _no_receiver_means_already_stopped = self.stop.send(true);
        if let Some(task) = self.task.take() {
            if let Err(error) = task.await {
                if error.is_panic() {
                    tracing::error!(source_arn, "event-source poller panicked");
                }
            }
        }
    }
}

impl Drop for PollerTask {
    fn drop(&mut self) {
        let _no_receiver_means_already_stopped = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The `itemIdentifier`s of a partial batch response, as Lambda reads it.
///
/// Success (an empty list): a null response, an object without `batchItemFailures`, or
/// a null or empty list. Complete failure (`Err`): any other response shape, an entry
/// without a non-empty string `itemIdentifier`. Whether an identifier belongs to the
/// batch is for the caller to check (an unknown one is also a complete failure).
pub fn batch_item_failures(response: &Value) -> Result<Vec<String>, String> {
    let failures = match response {
        Value::Null => return Ok(Vec::new()),
        Value::Object(fields) => match fields.get("batchItemFailures") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(failures)) => failures,
            Some(_) => return Err("batchItemFailures is not a list".to_owned()),
        },
        _ => return Err("the response is not a JSON object".to_owned()),
    };
    failures
        .iter()
        .map(|failure| match failure.get("itemIdentifier") {
            Some(Value::String(identifier)) if !identifier.is_empty() => Ok(identifier.clone()),
            _ => Err(format!("invalid batch item failure {failure}")),
        })
        .collect()
}

/// Completes when `stop` turns true (or its sender is gone).
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _sender_gone_also_means_stop = stop.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn absent_null_or_empty_failure_lists_mean_success() {
        for response in [
            Value::Null,
            json!({}),
            json!({"batchItemFailures": null}),
            json!({"batchItemFailures": []}),
        ] {
            assert_eq!(batch_item_failures(&response), Ok(Vec::new()), "{response}");
        }
    }

    #[test]
    fn identifiers_are_returned_in_order() {
        let response =
            json!({"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "a"}]});
        assert_eq!(
            batch_item_failures(&response),
            Ok(vec!["b".to_owned(), "a".to_owned()])
        );
    }

    #[test]
    fn empty_null_or_misnamed_identifiers_fail_the_whole_batch() {
        for response in [
            json!({"batchItemFailures": [{"itemIdentifier": ""}]}),
            json!({"batchItemFailures": [{"itemIdentifier": null}]}),
            json!({"batchItemFailures": [{"id": "1"}]}),
            json!({"batchItemFailures": "1"}),
            json!("not an object"),
        ] {
            assert!(batch_item_failures(&response).is_err(), "{response}");
        }
    }

    #[test]
    fn function_arn_takes_region_and_account_from_the_source() {
        assert_eq!(
            function_arn(
                "arn:aws:sqs:us-east-1:123456789012:ripple-push",
                "push-worker"
            ),
            "arn:aws:lambda:us-east-1:123456789012:function:push-worker"
        );
        assert_eq!(
            function_arn("not-an-arn", "f"),
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
    }
}
