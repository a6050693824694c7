//! Queues: moto (unless an SQS endpoint is given) and the queues the template names.

use std::time::Duration;

use anyhow::Context as _;
use aws_config::SdkConfig;

use super::StackOptions;
use crate::moto::{MotoServer, QueueSettings, Queues};
use crate::template::Template;

/// Starts moto unless `options` names an SQS endpoint; returns it and the endpoint to use.
pub(super) async fn start_sqs(
    options: &StackOptions,
) -> anyhow::Result<(Option<MotoServer>, String)> {
    let moto = match &options.sqs_endpoint {
        Some(_) => None,
        None => Some(MotoServer::start(&options.moto_server).await?),
    };
    let sqs_endpoint = match (&options.sqs_endpoint, &moto) {
        (Some(endpoint), _) => endpoint.clone(),
        (None, Some(moto)) => moto.endpoint().to_owned(),
        (None, None) => unreachable!("moto is started whenever no endpoint is given"),
    };
    Ok((moto, sqs_endpoint))
}

/// An SQS client of `sqs_endpoint` and the template's queues, created there.
pub(super) async fn create_queues(
    options: &StackOptions,
    template: &Template,
    sdk: &SdkConfig,
    sqs_endpoint: &str,
) -> anyhow::Result<(aws_sdk_sqs::Client, Queues)> {
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .endpoint_url(sqs_endpoint)
            .build(),
    );
    let queue_settings = queue_settings(template, options.visibility_timeout);
    let queues = crate::moto::ensure_queues(&sqs, &queue_settings).await?;
    Ok((sqs, queues))
}

/// Queue names and behaviour from the template: the SQS event source's queue is the fan-out
/// queue (its redrive target the DLQ), the stream's on-failure destination the failure queue.
pub(super) fn queue_settings(
    template: &Template,
    visibility_timeout: Option<Duration>,
) -> QueueSettings {
    let mut settings = QueueSettings::default();
    let fanout = template
        .sqs_sources
        .first()
        .and_then(|source| template.queues.get(&source.queue));
    if let Some(fanout) = fanout {
        settings.fanout_queue_name = fanout.name.clone();
        if let Some(seconds) = fanout.visibility_timeout_seconds {
            settings.visibility_timeout = Duration::from_secs(seconds.into());
        }
        if let Some(redrive) = &fanout.redrive {
            settings.max_receive_count = redrive.max_receive_count;
            if let Some(dlq) = template.queues.get(&redrive.dead_letter_queue) {
                settings.fanout_dlq_name = dlq.name.clone();
            }
        }
    }
    let stream_failures = template
        .stream_sources
        .iter()
        .find_map(|source| template.queues.get(source.on_failure_queue.as_ref()?));
    if let Some(queue) = stream_failures {
        settings.stream_failure_queue_name = queue.name.clone();
    }
    if let Some(timeout) = visibility_timeout {
        settings.visibility_timeout = timeout;
    }
    settings
}

/// The URL of the template queue `logical_id` among the queues the stack created.
pub(super) fn queue_url(
    template: &Template,
    queues: &Queues,
    logical_id: &str,
) -> anyhow::Result<String> {
    let name = template
        .queues
        .get(logical_id)
        .map(|q| q.name.as_str())
        .unwrap_or(logical_id);
    [&queues.fanout, &queues.fanout_dlq, &queues.stream_failures]
        .into_iter()
        .find(|queue| queue.name == name)
        .map(|queue| queue.url.clone())
        .with_context(|| {
            format!("queue {logical_id} is not the fan-out, DLQ or stream-failure queue")
        })
}
