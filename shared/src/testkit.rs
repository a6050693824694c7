//! Test harness: a real DynamoDB engine behind the real SDK, one fresh database per test.
//!
//! By default [`TestDb::start`] runs an embedded **dynoxide** server, in memory, on
//! `127.0.0.1:0`, on its own thread, and creates the table from the single definition.
//! When `RIPPLE_TEST_DYNAMODB_ENDPOINT` is set (e.g. to AWS DynamoDB Local, which
//! `make test` starts), the same tests run against that endpoint instead, each in a table
//! of its own. The engine itself (the embedded dynoxide server, the moto server, the Lambda
//! event types) is the `lambda-local` crate's; this module adds what is Ripple's: the table,
//! the stores, tokens and the request helpers. It is compiled only with the `testkit`
//! feature (dev-dependencies), so dynoxide never reaches a Lambda binary.

use std::sync::Arc;

use crate::auth::TokenService;
use crate::auth::{Jwks, SigningKey};
use crate::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use crate::config::Config;
use crate::store::{table::create_table, DynamoStore};

pub use lambda_local::dynamo::{
    open_dynoxide, stream_shard_ids, EmbeddedDynamo, STREAM_RECORD_QUERIES,
};

/// Environment variable naming an external DynamoDB endpoint for the store suite.
pub const EXTERNAL_ENDPOINT_VAR: &str = "RIPPLE_TEST_DYNAMODB_ENDPOINT";

/// The `kid` of [`test_signing_key`].
pub const TEST_KID: &str = "test-key";

/// The access-token signing key of tests: an Ed25519 key generated once per process.
pub fn test_signing_key() -> &'static SigningKey {
    static KEY: std::sync::LazyLock<SigningKey> = std::sync::LazyLock::new(|| {
        SigningKey::generate(TEST_KID).unwrap_or_else(|e| panic!("test signing key: {e}"))
    });
    &KEY
}

/// `JWT_PUBLIC_KEYS` of tests: the JWKS holding [`test_signing_key`]'s public key.
pub fn test_public_keys() -> String {
    Jwks::new(vec![test_signing_key().public_key()])
        .unwrap_or_else(|e| panic!("test JWKS: {e}"))
        .to_json()
        .to_string()
}

/// A token service of `config`'s claims that signs with `key` and trusts only `key`: with a
/// fresh key under [`TEST_KID`] it mints tokens that look right to a function under test
/// (same `kid`, issuer, audience) but are signed by a key it does not hold.
pub fn token_service_signing_with(config: &Config, key: &SigningKey) -> TokenService {
    let mut jwt = config.jwt.clone();
    jwt.public_keys =
        Some(Jwks::new(vec![key.public_key()]).unwrap_or_else(|e| panic!("test JWKS: {e}")));
    TokenService::new(&jwt)
        .and_then(|tokens| tokens.with_signing_key(key))
        .unwrap_or_else(|e| panic!("test token service: {e}"))
}

/// The token service tests issue genuine tokens with: `config`'s JWKS and the test key.
pub fn test_token_service(config: &Config) -> TokenService {
    TokenService::new(&config.jwt)
        .and_then(|tokens| tokens.with_signing_key(test_signing_key()))
        .unwrap_or_else(|e| panic!("test token service: {e}"))
}

/// `count` new followers of `followee` in `store`'s table, written as the store writes
/// follow items (both index entries) but in bulk (25 per request, 8 requests in flight) and
/// without profiles or counters: the shape fan-out reads, for audiences of tens of
/// thousands (a transactional follow each would take minutes). When `followee` has a
/// profile, its follower count grows by `count`, so what the functions read of the profile
/// (the writer push's follower bound) matches the follower index.
pub async fn seed_followers(
    store: &DynamoStore,
    followee: crate::domain::UserId,
    count: usize,
) -> crate::Result<Vec<crate::domain::UserId>> {
    use futures::stream::{self, TryStreamExt};
    let followers: Vec<_> = (0..count).map(|_| crate::domain::new_id()).collect();
    let created_at = crate::clock::to_millis(chrono::Utc::now());
    let items = followers
        .iter()
        .map(|follower| {
            crate::store::social::follow_item(&crate::domain::Follow {
                follower_id: *follower,
                followee_id: followee,
                created_at,
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let table = &store.table;
    stream::iter(items.chunks(25).map(|chunk| Ok(chunk.to_vec())))
        .try_for_each_concurrent(8, |chunk| async move { table.batch_put(chunk).await })
        .await?;
    let added = i64::try_from(count).unwrap_or(i64::MAX);
    let counter = crate::store::transaction::tx::update(
        &table.name,
        &crate::store::keys::user_profile(followee),
        "ADD follower_count :added",
        Some("attribute_exists(pk)"),
        &[],
        vec![(
            ":added",
            aws_sdk_dynamodb::types::AttributeValue::N(added.to_string()),
        )],
    )?;
    match table.transact(vec![counter]).await {
        // No profile (an id without a user): nothing to count.
        Ok(()) | Err(crate::store::transaction::TransactFailure::ConditionFailed { .. }) => {
            Ok(followers)
        }
        Err(crate::store::transaction::TransactFailure::Other(error)) => Err(error),
    }
}

/// A fresh database with the Ripple table, and clients pointed at it.
pub struct TestDb {
    pub endpoint: String,
    pub table_name: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// Which engine: `dynoxide` or the external endpoint.
    pub engine: &'static str,
    _server: Option<Arc<EmbeddedDynamo>>,
}

impl TestDb {
    /// Starts (or connects to) the engine and creates a fresh table.
    ///
    /// Panics with a clear message when the engine cannot be reached: this is test
    /// set-up, and a failed set-up must fail the test loudly.
    pub async fn start() -> Self {
        // Test code may read the environment: this is how `make test` points the same
        // suite at DynamoDB Local.
        let external = std::env::var(EXTERNAL_ENDPOINT_VAR)
            .ok()
            .filter(|v| !v.is_empty());
        let (endpoint, server, table_name, engine) = match external {
            Some(endpoint) => {
                let table = format!("ripple-test-{}", uuid::Uuid::new_v4().simple());
                (endpoint, None, table, "external")
            }
            None => {
                let database = open_dynoxide(None)
                    .unwrap_or_else(|e| panic!("cannot open in-memory dynoxide: {e}"));
                let server = EmbeddedDynamo::start(database)
                    .unwrap_or_else(|e| panic!("cannot start embedded dynoxide: {e}"));
                (
                    server.endpoint(),
                    Some(Arc::new(server)),
                    "ripple".to_owned(),
                    "dynoxide",
                )
            }
        };
        let sdk = local_sdk_config();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .endpoint_url(&endpoint)
                .build(),
        );
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(&sdk)
                .endpoint_url(&endpoint)
                .build(),
        );
        create_table(&dynamodb, &table_name)
            .await
            .unwrap_or_else(|e| panic!("cannot create table on {endpoint}: {e:?}"));
        Self {
            endpoint,
            table_name,
            dynamodb,
            streams,
            engine,
            _server: server,
        }
    }

    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.dynamodb.clone(), &self.table_name)
    }

    /// A reader of this table's stream from its beginning (for stream-triggered functions).
    pub async fn stream_reader(&self) -> lambda_local::StreamReader {
        lambda_local::StreamReader::new(&self.dynamodb, &self.streams, &self.table_name).await
    }

    /// A reader of this table's stream from the records written after now.
    pub async fn stream_reader_from_now(&self) -> lambda_local::StreamReader {
        lambda_local::StreamReader::from_now(&self.dynamodb, &self.streams, &self.table_name).await
    }

    /// `count` new followers of `followee`, written as the store writes follow items (both
    /// index entries) but in bulk (25 per request, 8 requests in flight) and without
    /// profiles or counters: the shape fan-out reads, for audiences of tens of thousands.
    pub async fn seed_followers(
        &self,
        followee: crate::domain::UserId,
        count: usize,
    ) -> Vec<crate::domain::UserId> {
        seed_followers(&self.store(), followee, count)
            .await
            .unwrap_or_else(|e| panic!("seeding followers: {e}"))
    }

    /// A configuration for this database with the test JWKS ([`test_public_keys`]);
    /// `extra` overrides.
    pub fn config_with(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            ("TABLE_NAME".to_owned(), self.table_name.clone()),
            ("JWT_PUBLIC_KEYS".to_owned(), test_public_keys()),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        Config::from_vars(vars).unwrap_or_else(|e| panic!("test configuration is invalid: {e}"))
    }

    pub fn config(&self) -> Config {
        self.config_with(&[])
    }

    /// The DynamoDB client set of functions under test, pointed at this database.
    pub fn clients(&self, config: &Config) -> DynamoClients {
        self.client_set(config)
    }

    /// Any function's client set over `config`, DynamoDB pointed at this database (a
    /// writer's management client only when `config` names an endpoint).
    pub fn client_set<C: ClientSet>(&self, config: &Config) -> C {
        C::from_sdk_config(&local_sdk_config(), config, &self.endpoints())
            .unwrap_or_else(|e| panic!("client set for the test database: {e:?}"))
    }

    /// This database as the DynamoDB (and streams) endpoint override; no SQS.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            dynamodb: Some(self.endpoint.clone()),
            dynamodb_streams: Some(self.endpoint.clone()),
            sqs: None,
            secrets_manager: None,
            meter: None,
        }
    }

    /// Every item of the table, following `LastEvaluatedKey` (for "what is stored"
    /// assertions such as "no item holds a secret").
    pub async fn scan_all(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .dynamodb
                .scan()
                .table_name(&self.table_name)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan failed: {e:?}"));
            items.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return items,
            }
        }
    }

    /// Number of items in the table (for "nothing was written" assertions).
    pub async fn item_count(&self) -> usize {
        let mut count = 0usize;
        let mut start = None;
        loop {
            let output = self
                .dynamodb
                .scan()
                .table_name(&self.table_name)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap_or_else(|e| panic!("scan failed: {e:?}"));
            count += output.count as usize;
            match output.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return count,
            }
        }
    }
}

/// A Lambda proxy response's headers, names lower-cased (HTTP header names are
/// case-insensitive; the tests look them up in lower case).
fn response_headers(response: &serde_json::Value) -> std::collections::HashMap<String, String> {
    response["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| {
                    (
                        k.to_ascii_lowercase(),
                        v.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub mod api;

/// WebSocket API events (`$connect`, `$disconnect`, messages) for the WebSocket functions.
pub mod ws;
