//! AWS SDK clients, built once per cold start and shared by every invocation.
//!
//! On Lambda the SDK finds its endpoints itself (including the standard
//! `AWS_ENDPOINT_URL_<SERVICE>` variables, which is how the local stack points the
//! functions at dynoxide and moto). The local gateway and tests, which must not mutate
//! the process environment, pass explicit [`Endpoints`] instead.

use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Config;
use crate::metering::RequestMeter;

/// Explicit per-service endpoint overrides (local gateway and tests only).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub dynamodb_streams: Option<String>,
    pub sqs: Option<String>,
    /// Counts the requests of the DynamoDB, SQS and management clients (tests, benchmark).
    pub meter: Option<RequestMeter>,
}

/// Every SDK client a Ripple function may use.
#[derive(Debug, Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    /// `None` when `WS_MANAGEMENT_ENDPOINT` is not configured (functions that never push).
    pub management: Option<aws_sdk_apigatewaymanagement::Client>,
}

impl Clients {
    /// Clients from the standard AWS configuration chain (what a Lambda function uses).
    pub async fn from_env(config: &Config) -> Self {
        let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
        Self::from_sdk_config(&sdk, config, &Endpoints::default())
    }

    /// Clients from an explicit SDK configuration and endpoint overrides.
    pub fn from_sdk_config(sdk: &SdkConfig, config: &Config, endpoints: &Endpoints) -> Self {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &endpoints.dynamodb {
            dynamodb = dynamodb.endpoint_url(url);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(url) = &endpoints.sqs {
            sqs = sqs.endpoint_url(url);
        }
        if let Some(meter) = &endpoints.meter {
            dynamodb = dynamodb.interceptor(meter.clone());
            sqs = sqs.interceptor(meter.clone());
        }
        let management = config.ws_management_endpoint.as_ref().map(|url| {
            // The push tier retries posts itself (`shared::retry`, per connection, with
            // jitter, then re-enqueues the still failing ones): the SDK's own retries would
            // multiply those attempts and sleep up to seconds inside a stream batch.
            let mut management = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
                .endpoint_url(url)
                .retry_config(aws_config::retry::RetryConfig::disabled());
            if let Some(meter) = &endpoints.meter {
                management = management.interceptor(meter.clone());
            }
            aws_sdk_apigatewaymanagement::Client::from_conf(management.build())
        });
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            management,
        }
    }
}

/// Static test credentials and region for local endpoints (dynoxide, moto, DynamoDB Local
/// accept any signature).
pub fn local_sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "ripple-local",
                ),
            ),
        )
        .build()
}
