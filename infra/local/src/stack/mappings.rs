//! Event-source mappings: a stream poller per DynamoDB event source and an SQS poller per
//! queue event source of the template, each invoking its function from the registry.

use std::sync::Arc;

use anyhow::Context as _;
use shared::function::LambdaFunction;

use super::queues::queue_url;
use super::StackOptions;
use crate::functions::FunctionRegistry;
use crate::moto::Queues;
use crate::sqs_poller::{self, SqsPollerConfig, SqsPollerHandle};
use crate::stream_poller::{self, StreamPollerClients, StreamPollerConfig, StreamPollerHandle};
use crate::template::{FunctionResource, Template};

/// One stream poller per DynamoDB stream event source; discarded batches go to the
/// stream-failure queue.
pub(super) async fn spawn_stream_pollers(
    options: &StackOptions,
    template: &Template,
    registry: &FunctionRegistry,
    clients: &StreamPollerClients,
    queues: &Queues,
) -> anyhow::Result<Vec<StreamPollerHandle>> {
    let mut stream_pollers = Vec::new();
    for source in &template.stream_sources {
        let function = &template.functions[&source.function];
        let mut config = StreamPollerConfig::new(&function.handler, &options.table_name);
        config.poll_interval = options.stream_poll_interval;
        config.batch_size = usize::try_from(source.batch_size)?;
        config.maximum_batching_window = source.maximum_batching_window;
        config.bisect_batch_on_function_error = source.bisect_batch_on_function_error;
        config.maximum_retry_attempts = source.maximum_retry_attempts;
        config.maximum_record_age = source.maximum_record_age;
        if let Some(timeout) = function.timeout {
            config.function_timeout = timeout;
        }
        config.report_batch_item_failures = source.report_batch_item_failures;
        config.on_failure_queue_url = source
            .on_failure_queue
            .as_ref()
            .map(|_| queues.stream_failures.url.clone());
        config.filter = source.filter.clone();
        config.visibility_delay = options.latency.stream.clone();
        config.latency_seed = options.latency.seed;
        config.deliver_each_batch_twice = options.duplicate_stream_batches;
        config.verbose = options.verbose;
        let handler = registered(registry, function)?;
        stream_pollers.push(stream_poller::spawn(config, clients.clone(), handler).await?);
    }
    Ok(stream_pollers)
}

/// One SQS poller per queue event source.
pub(super) async fn spawn_sqs_pollers(
    options: &StackOptions,
    template: &Template,
    registry: &FunctionRegistry,
    sqs: &aws_sdk_sqs::Client,
    queues: &Queues,
) -> anyhow::Result<Vec<SqsPollerHandle>> {
    let mut sqs_pollers = Vec::new();
    for source in &template.sqs_sources {
        let function = &template.functions[&source.function];
        let queue_url = queue_url(template, queues, &source.queue)?;
        let mut config = SqsPollerConfig::new(&function.handler, queue_url);
        config.batch_size = usize::try_from(source.batch_size)?;
        config.maximum_batching_window = source.maximum_batching_window;
        config.report_batch_item_failures = source.report_batch_item_failures;
        if let Some(concurrency) = source.maximum_concurrency {
            config.maximum_concurrency = usize::try_from(concurrency)?;
        }
        if let Some(timeout) = function.timeout {
            config.function_timeout = timeout;
        }
        config.delivery_delay = options.latency.sqs.clone();
        config.latency_seed = options.latency.seed;
        config.start_paused = options.pause_sqs;
        config.verbose = options.verbose;
        let handler = registered(registry, function)?;
        sqs_pollers.push(sqs_poller::spawn(config, sqs.clone(), handler).await?);
    }
    Ok(sqs_pollers)
}

/// The handler of `function`: the poller logs its invocations itself, so unwrapped.
fn registered(
    registry: &FunctionRegistry,
    function: &FunctionResource,
) -> anyhow::Result<Arc<dyn LambdaFunction>> {
    registry
        .unlogged(&function.handler)
        .with_context(|| format!("{} is not registered", function.handler))
}
