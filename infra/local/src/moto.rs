//! The queues Ripple needs on the local SQS endpoint, and the signing-key secret.
//!
//! The `moto_server` process itself (start, readiness, process lifetime) is
//! [`lambda_local::moto::MotoServer`], re-exported here.
//!
//! [`ensure_queues`] creates, if missing, the push fan-out queue with its dead-letter queue
//! (a `RedrivePolicy` with `maxReceiveCount`) and the DynamoDB-stream on-failure queue, and
//! returns their URLs and ARNs. It works against moto or any SQS endpoint.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::types::QueueAttributeName;

pub use lambda_local::moto::{MotoServer, DEFAULT_STARTUP_TIMEOUT};

/// The queues the local stack needs, and how they behave. Names come from `template.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// The push fan-out queue (stream router → push worker).
    pub fanout_queue_name: String,
    /// The fan-out queue's dead-letter queue.
    pub fanout_dlq_name: String,
    /// The on-failure destination of the DynamoDB-stream event-source mapping.
    pub stream_failure_queue_name: String,
    /// Receives after which SQS moves a fan-out message to the DLQ (`maxReceiveCount`).
    pub max_receive_count: u32,
    /// The fan-out queue's `VisibilityTimeout` (AWS wants ≥ 6 × the worker's timeout).
    pub visibility_timeout: Duration,
    /// `MessageRetentionPeriod` of the two failure queues (DLQ and stream failures).
    pub failure_retention: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            fanout_queue_name: "ripple-push".to_owned(),
            fanout_dlq_name: "ripple-push-dlq".to_owned(),
            stream_failure_queue_name: "ripple-stream-failures".to_owned(),
            max_receive_count: 5,
            visibility_timeout: Duration::from_secs(60),
            // The SQS maximum: failures are kept for inspection as long as possible.
            failure_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

/// One queue's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    pub name: String,
    pub url: String,
    pub arn: String,
}

/// The queues [`ensure_queues`] made sure exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    pub fanout: QueueRef,
    pub fanout_dlq: QueueRef,
    pub stream_failures: QueueRef,
}

/// Creates the fan-out queue (with `VisibilityTimeout` and a `RedrivePolicy` to its DLQ),
/// the DLQ and the stream on-failure queue if they are missing; existing queues get the
/// configured attributes, so the settings are authoritative either way.
pub async fn ensure_queues(
    sqs: &aws_sdk_sqs::Client,
    settings: &QueueSettings,
) -> anyhow::Result<Queues> {
    if settings.max_receive_count == 0 {
        bail!("maxReceiveCount must be at least 1");
    }
    let retention = HashMap::from([(
        QueueAttributeName::MessageRetentionPeriod,
        settings.failure_retention.as_secs().to_string(),
    )]);
    let fanout_dlq = ensure_queue(sqs, &settings.fanout_dlq_name, retention.clone()).await?;
    let stream_failures = ensure_queue(sqs, &settings.stream_failure_queue_name, retention).await?;
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": fanout_dlq.arn,
        "maxReceiveCount": settings.max_receive_count.to_string(),
    });
    let fanout = ensure_queue(
        sqs,
        &settings.fanout_queue_name,
        HashMap::from([
            (
                QueueAttributeName::VisibilityTimeout,
                settings.visibility_timeout.as_secs().to_string(),
            ),
            (
                QueueAttributeName::RedrivePolicy,
                redrive_policy.to_string(),
            ),
        ]),
    )
    .await?;
    Ok(Queues {
        fanout,
        fanout_dlq,
        stream_failures,
    })
}

/// Creates `name` with `attributes`, or applies them to the existing queue.
async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> anyhow::Result<QueueRef> {
    let created = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await;
    let url = match created {
        Ok(output) => output
            .queue_url
            .ok_or_else(|| anyhow!("CreateQueue {name} returned no QueueUrl"))?,
        // CreateQueue is idempotent only when the attributes match; otherwise update them.
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(CreateQueueError::QueueNameExists(_))
            ) =>
        {
            let url = sqs
                .get_queue_url()
                .queue_name(name)
                .send()
                .await
                .with_context(|| format!("GetQueueUrl {name}"))?
                .queue_url
                .ok_or_else(|| anyhow!("GetQueueUrl {name} returned no QueueUrl"))?;
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .with_context(|| format!("SetQueueAttributes {name}"))?;
            url
        }
        Err(error) => return Err(anyhow!(error).context(format!("CreateQueue {name}"))),
    };
    let arn = queue_arn(sqs, &url).await?;
    Ok(QueueRef {
        name: name.to_owned(),
        url,
        arn,
    })
}

/// The `QueueArn` attribute of the queue at `queue_url`.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> anyhow::Result<String> {
    sqs.get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("GetQueueAttributes QueueArn of {queue_url}"))?
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow!("queue {queue_url} has no QueueArn attribute"))
}

/// Stores `key` as the Secrets Manager secret `name` (its private JWK as the `SecretString`,
/// the format `api-auth` reads on AWS): created the first time, a new version after.
pub async fn put_signing_key(
    secrets: &aws_sdk_secretsmanager::Client,
    name: &str,
    key: &shared::auth::SigningKey,
) -> anyhow::Result<()> {
    let value = zeroize::Zeroizing::new(key.to_private_jwk_json());
    let created = secrets
        .create_secret()
        .name(name)
        .description("Ripple access-token signing key (local development)")
        .secret_string(value.as_str())
        .send()
        .await;
    match created {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_resource_exists_exception()) =>
        {
            secrets
                .put_secret_value()
                .secret_id(name)
                .secret_string(value.as_str())
                .send()
                .await
                .with_context(|| format!("updating the secret {name}"))?;
            Ok(())
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!("creating the secret {name}"))),
    }
}
