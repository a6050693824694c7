//! AWS SDK clients, built once per cold start and shared by every invocation.
//!
//! Each function is given exactly the clients it uses, as one typed [`ClientSet`]:
//!
//! | set | clients | functions |
//! |---|---|---|
//! | [`DynamoClients`] | DynamoDB | `api-notifications`, `ws-connect`, `ws-disconnect` |
//! | `AuthClients` (feature `secrets`) | DynamoDB, Secrets Manager (its signing key, at cold start) | `api-auth` |
//! | `WriterClients` (feature `push`) | DynamoDB, management API when configured | `api-posts`, `api-messages`, `api-users` (the writer push) |
//! | `PushClients` (feature `push`) | DynamoDB, management API | `ws-message` |
//! | `RouterClients` (feature `sqs`) | DynamoDB, management API, SQS | `stream-router`, `push-worker` |
//!
//! A function's `State` takes its set by type, so a REST function cannot reach an SQS
//! client (no REST set has one) and `api-auth` / `api-notifications` cannot reach a
//! management client either. Without the `push` / `sqs` features of this crate, which only
//! the functions that post or queue enable, a binary does not even link those SDK crates.
//! The sets that need an endpoint or a queue fail to build without it, so a missing
//! `WS_MANAGEMENT_ENDPOINT` or `FANOUT_QUEUE_URL` stops the cold start.
//!
//! On Lambda the SDK finds its endpoints itself (including the standard
//! `AWS_ENDPOINT_URL_<SERVICE>` variables, which is how the local stack points the
//! functions at dynoxide and moto). The local gateway and tests, which must not mutate
//! the process environment, pass explicit [`Endpoints`] instead.

use aws_config::{BehaviorVersion, SdkConfig};

use crate::config::Config;
use crate::error::Result;
use crate::metering::RequestMeter;

/// Explicit per-service endpoint overrides (local gateway and tests only).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub dynamodb_streams: Option<String>,
    pub sqs: Option<String>,
    /// Secrets Manager (the local stack's moto), for `api-auth`'s signing key.
    pub secrets_manager: Option<String>,
    /// Counts the requests of the DynamoDB, SQS and management clients (tests, benchmark).
    pub meter: Option<RequestMeter>,
}

/// An AWS service a [`ClientSet`] may hold a client of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    ApiGatewayManagement,
    Sqs,
    SecretsManager,
}

/// The SDK clients one function is given at cold start.
pub trait ClientSet: Sized + Send + Sync + 'static {
    /// The services this set can reach, nothing more.
    const SERVICES: &'static [Service];

    /// The clients over an SDK configuration and endpoint overrides. Fails when the
    /// configuration lacks what a client needs (the management endpoint, the queue).
    fn from_sdk_config(sdk: &SdkConfig, config: &Config, endpoints: &Endpoints) -> Result<Self>;

    /// The DynamoDB client every set holds.
    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client;
}

/// The clients of a set from the Lambda environment (what `main.rs` uses): the standard
/// configuration chain (credentials and region from Lambda's variables, endpoint overrides
/// from `AWS_ENDPOINT_URL_<SERVICE>`), over [`https_client`].
pub async fn from_env<C: ClientSet>(config: &Config) -> Result<C> {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client()?)
        .load()
        .await;
    C::from_sdk_config(&sdk, config, &Endpoints::default())
}

/// The root certificates of Amazon Trust Services (`aws_roots.pem`), which issue the
/// certificate of every AWS endpoint a function calls.
pub const AWS_ROOT_CERTIFICATES_PEM: &[u8] = include_bytes!("aws_roots.pem");

/// The SDK's HTTPS client (hyper + rustls on aws-lc, as the SDK's default) trusting only
/// the compiled-in [`AWS_ROOT_CERTIFICATES_PEM`]. The default client loads the system
/// trust store instead, during `load()`: on Debian that is one 220 KB bundle plus ~300
/// files of `/etc/ssl/certs`, the largest avoidable part of a cold start (see
/// docs/benchmarks.md). The price: an endpoint whose certificate is not issued by Amazon
/// (a TLS proxy, an HTTPS local emulator) is refused; plain-HTTP local endpoints work.
pub fn https_client() -> Result<aws_sdk_dynamodb::config::SharedHttpClient> {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let trust_store = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AWS_ROOT_CERTIFICATES_PEM);
    let context = TlsContext::builder()
        .with_trust_store(trust_store)
        .build()
        .map_err(|e| crate::Error::internal("building the TLS context", e))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

/// The DynamoDB client every set holds.
fn dynamodb_client(sdk: &SdkConfig, endpoints: &Endpoints) -> aws_sdk_dynamodb::Client {
    let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(url) = &endpoints.dynamodb {
        dynamodb = dynamodb.endpoint_url(url);
    }
    if let Some(meter) = &endpoints.meter {
        dynamodb = dynamodb.interceptor(meter.clone());
    }
    aws_sdk_dynamodb::Client::from_conf(dynamodb.build())
}

/// A management API client for `url`, without SDK retries.
#[cfg(feature = "push")]
fn management_client(
    sdk: &SdkConfig,
    url: &str,
    endpoints: &Endpoints,
) -> aws_sdk_apigatewaymanagement::Client {
    // The push tier retries posts itself (`shared::retry`, per connection, with jitter,
    // then re-enqueues the still failing ones): the SDK's own retries would multiply those
    // attempts and sleep up to seconds inside a stream batch or a REST response.
    let mut management = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
        .endpoint_url(url)
        .retry_config(aws_config::retry::RetryConfig::disabled());
    if let Some(meter) = &endpoints.meter {
        management = management.interceptor(meter.clone());
    }
    aws_sdk_apigatewaymanagement::Client::from_conf(management.build())
}

/// DynamoDB only: `api-notifications`, `ws-connect`, `ws-disconnect` (and the DynamoDB
/// part of `api-auth`'s set).
#[derive(Debug, Clone)]
pub struct DynamoClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl ClientSet for DynamoClients {
    const SERVICES: &'static [Service] = &[Service::DynamoDb];

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    fn from_sdk_config(sdk: &SdkConfig, _config: &Config, endpoints: &Endpoints) -> Result<Self> {
        Ok(Self {
            dynamodb: dynamodb_client(sdk, endpoints),
        })
    }
}

/// DynamoDB and Secrets Manager: `api-auth`, the one function holding the private key access
/// tokens are signed with, which it reads from Secrets Manager once per cold start
/// ([`AuthClients::signing_key`]). No other set has a Secrets Manager client.
#[cfg(feature = "secrets")]
#[derive(Debug, Clone)]
pub struct AuthClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub secrets_manager: aws_sdk_secretsmanager::Client,
}

#[cfg(feature = "secrets")]
impl AuthClients {
    /// The DynamoDB part of the set.
    pub fn dynamo(&self) -> DynamoClients {
        DynamoClients {
            dynamodb: self.dynamodb.clone(),
        }
    }

    /// The signing key in the secret `secret_id` (name or ARN): its `SecretString` is the
    /// private JWK (`crate::auth::keys`). Errors name the secret, never its value.
    pub async fn signing_key(&self, secret_id: &str) -> Result<crate::auth::SigningKey> {
        let output = self
            .secrets_manager
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                crate::Error::internal(format!("reading the signing key secret {secret_id}"), e)
            })?;
        let secret = output.secret_string().ok_or_else(|| {
            crate::Error::invariant(format!(
                "the signing key secret {secret_id} has no SecretString"
            ))
        })?;
        crate::auth::SigningKey::from_jwk_json(secret)
    }
}

#[cfg(feature = "secrets")]
impl ClientSet for AuthClients {
    const SERVICES: &'static [Service] = &[Service::DynamoDb, Service::SecretsManager];

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    fn from_sdk_config(sdk: &SdkConfig, _config: &Config, endpoints: &Endpoints) -> Result<Self> {
        let mut secrets = aws_sdk_secretsmanager::config::Builder::from(sdk);
        if let Some(url) = &endpoints.secrets_manager {
            secrets = secrets.endpoint_url(url);
        }
        Ok(Self {
            dynamodb: dynamodb_client(sdk, endpoints),
            secrets_manager: aws_sdk_secretsmanager::Client::from_conf(secrets.build()),
        })
    }
}

/// DynamoDB and, when `WS_MANAGEMENT_ENDPOINT` is configured, the management API: the REST
/// functions whose writes are pushed by the writer (`api-posts`, `api-messages`,
/// `api-users`; see `crate::writer_push`, which is off without the endpoint). No SQS.
#[cfg(feature = "push")]
#[derive(Debug, Clone)]
pub struct WriterClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub management: Option<aws_sdk_apigatewaymanagement::Client>,
}

#[cfg(feature = "push")]
impl ClientSet for WriterClients {
    const SERVICES: &'static [Service] = &[Service::DynamoDb, Service::ApiGatewayManagement];

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    fn from_sdk_config(sdk: &SdkConfig, config: &Config, endpoints: &Endpoints) -> Result<Self> {
        Ok(Self {
            dynamodb: dynamodb_client(sdk, endpoints),
            management: config
                .ws_management_endpoint
                .as_deref()
                .map(|url| management_client(sdk, url, endpoints)),
        })
    }
}

/// DynamoDB and the management API: a function that posts to connections but never queues
/// (`ws-message`). `WS_MANAGEMENT_ENDPOINT` is required.
#[cfg(feature = "push")]
#[derive(Debug, Clone)]
pub struct PushClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub management: aws_sdk_apigatewaymanagement::Client,
}

#[cfg(feature = "push")]
impl ClientSet for PushClients {
    const SERVICES: &'static [Service] = &[Service::DynamoDb, Service::ApiGatewayManagement];

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    fn from_sdk_config(sdk: &SdkConfig, config: &Config, endpoints: &Endpoints) -> Result<Self> {
        let url = config.require_ws_management_endpoint()?;
        Ok(Self {
            dynamodb: dynamodb_client(sdk, endpoints),
            management: management_client(sdk, url, endpoints),
        })
    }
}

/// DynamoDB, the management API and SQS: the fan-out tier (`stream-router`, which pushes
/// small audiences and queues the rest, and `push-worker`, which re-enqueues failed
/// connections and schedules presence checks). `WS_MANAGEMENT_ENDPOINT` and
/// `FANOUT_QUEUE_URL` are required.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone)]
pub struct RouterClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub management: aws_sdk_apigatewaymanagement::Client,
    pub sqs: aws_sdk_sqs::Client,
}

#[cfg(feature = "sqs")]
impl RouterClients {
    /// The push part of the set (everything but SQS).
    pub fn push(&self) -> PushClients {
        PushClients {
            dynamodb: self.dynamodb.clone(),
            management: self.management.clone(),
        }
    }
}

#[cfg(feature = "sqs")]
impl ClientSet for RouterClients {
    const SERVICES: &'static [Service] = &[
        Service::DynamoDb,
        Service::ApiGatewayManagement,
        Service::Sqs,
    ];

    fn dynamodb(&self) -> &aws_sdk_dynamodb::Client {
        &self.dynamodb
    }

    fn from_sdk_config(sdk: &SdkConfig, config: &Config, endpoints: &Endpoints) -> Result<Self> {
        config.require_fanout_queue_url()?;
        let PushClients {
            dynamodb,
            management,
        } = PushClients::from_sdk_config(sdk, config, endpoints)?;
        let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
        if let Some(url) = &endpoints.sqs {
            sqs = sqs.endpoint_url(url);
        }
        if let Some(meter) = &endpoints.meter {
            sqs = sqs.interceptor(meter.clone());
        }
        Ok(Self {
            dynamodb,
            management,
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
        })
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

#[cfg(test)]
mod tests {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    use super::*;

    #[test]
    fn the_compiled_in_roots_are_the_five_amazon_trust_services_certificates() {
        let certificates = CertificateDer::pem_slice_iter(AWS_ROOT_CERTIFICATES_PEM)
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("aws_roots.pem does not parse: {e:?}"));
        assert_eq!(certificates.len(), 5);
        for certificate in &certificates {
            // A DER SEQUENCE of plausible size (the PEM parser only checks base64).
            assert_eq!(certificate.first(), Some(&0x30));
            assert!(certificate.len() > 400, "{}", certificate.len());
        }
        assert!(https_client().is_ok());
    }

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![("TABLE_NAME".to_owned(), "t".to_owned())];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Config::from_vars(vars).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_sets_that_push_or_queue_need_their_endpoint_and_queue() {
        let sdk = local_sdk_config();
        let none = Endpoints::default();
        let bare = config(&[]);
        assert!(DynamoClients::from_sdk_config(&sdk, &bare, &none).is_ok());
        let writer =
            WriterClients::from_sdk_config(&sdk, &bare, &none).unwrap_or_else(|e| panic!("{e}"));
        assert!(writer.management.is_none(), "the writer push is optional");
        assert!(PushClients::from_sdk_config(&sdk, &bare, &none).is_err());
        assert!(RouterClients::from_sdk_config(&sdk, &bare, &none).is_err());

        let pushing = config(&[("WS_MANAGEMENT_ENDPOINT", "http://127.0.0.1:1")]);
        let writer =
            WriterClients::from_sdk_config(&sdk, &pushing, &none).unwrap_or_else(|e| panic!("{e}"));
        assert!(writer.management.is_some());
        assert!(PushClients::from_sdk_config(&sdk, &pushing, &none).is_ok());
        assert!(
            RouterClients::from_sdk_config(&sdk, &pushing, &none).is_err(),
            "the router needs FANOUT_QUEUE_URL too"
        );
        let routing = config(&[
            ("WS_MANAGEMENT_ENDPOINT", "http://127.0.0.1:1"),
            ("FANOUT_QUEUE_URL", "http://127.0.0.1:2/q"),
        ]);
        assert!(RouterClients::from_sdk_config(&sdk, &routing, &none).is_ok());
    }
}
