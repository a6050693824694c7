//! Test harness: a real DynamoDB engine behind the real SDK, one fresh database per test.
//!
//! By default [`TestDb::start`] runs an embedded **dynoxide** server, in memory, on
//! `127.0.0.1:0`, on its own thread, and creates the table from the single definition.
//! When `RIPPLE_TEST_DYNAMODB_ENDPOINT` is set (e.g. to AWS DynamoDB Local, which
//! `make test` starts), the same tests run against that endpoint instead, each in a table
//! of its own. This module is compiled only with the `testkit` feature (dev-dependencies
//! and the local gateway), so dynoxide never reaches a Lambda binary.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::auth::keys::{Jwks, SigningKey};
use crate::auth::TokenService;
use crate::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use crate::config::Config;
use crate::store::{table::create_table, DynamoStore};

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

/// Opens an embedded dynoxide database — in memory, or in `file` — whose writes and stream
/// reads do not slow down as stream records pile up.
///
/// dynoxide 3.2 keeps every stream record in one SQLite table with no index on the sequence
/// number: each write finds the next one with `MAX(CAST(sequence_number AS INTEGER))` over
/// the whole table and each `GetRecords` sorts the shard's records, so both grow linearly
/// with the writes so far (seeding 5,000 users and follows slowed to a few writes a
/// second, every profile sample in SQLite's b-tree walk). Two expression indexes matching
/// those queries make both an index seek. They are created through a second connection to
/// the same database (a named shared-cache in-memory database when there is no file), since
/// dynoxide does not expose its own; the queries are dynoxide's, unchanged, and
/// [`STREAM_RECORD_QUERIES`] is checked against the plan in this module's tests.
pub fn open_dynoxide(file: Option<&str>) -> Result<dynoxide::Database, String> {
    match file {
        Some(file) => open_dynoxide_at(file),
        None => open_dynoxide_at(&memory_database_uri()),
    }
}

/// A fresh named in-memory database that a second connection can open too.
fn memory_database_uri() -> String {
    format!(
        "file:dynoxide-{}?mode=memory&cache=shared",
        uuid::Uuid::new_v4().simple()
    )
}

fn open_dynoxide_at(path: &str) -> Result<dynoxide::Database, String> {
    let database =
        dynoxide::Database::new(path).map_err(|e| format!("opening dynoxide at {path}: {e}"))?;
    let indexer = rusqlite::Connection::open(path)
        .map_err(|e| format!("opening {path} to index stream records: {e}"))?;
    indexer
        .execute_batch(STREAM_RECORD_INDEXES)
        .map_err(|e| format!("indexing stream records in {path}: {e}"))?;
    Ok(database)
}

/// The indexes [`open_dynoxide`] adds to dynoxide's `_stream_records` table.
const STREAM_RECORD_INDEXES: &str = "
    CREATE INDEX IF NOT EXISTS ripple_stream_records_by_shard
        ON _stream_records (table_name, shard_id, CAST(sequence_number AS INTEGER));
    CREATE INDEX IF NOT EXISTS ripple_stream_records_by_table
        ON _stream_records (table_name, CAST(sequence_number AS INTEGER));";

/// dynoxide 3.2's stream-record queries (`storage.rs`), with the index each must use.
pub const STREAM_RECORD_QUERIES: [(&str, &str); 3] = [
    (
        "SELECT COALESCE(MAX(CAST(sequence_number AS INTEGER)), 0) + 1 FROM _stream_records WHERE table_name = ?1",
        "ripple_stream_records_by_table",
    ),
    (
        "SELECT event_name, keys_json, new_image, old_image, sequence_number, created_at, user_identity, event_id
             FROM _stream_records
             WHERE table_name = ?1 AND shard_id = ?2 AND CAST(sequence_number AS INTEGER) > ?3
             ORDER BY CAST(sequence_number AS INTEGER) ASC
             LIMIT ?4",
        "ripple_stream_records_by_shard",
    ),
    (
        "SELECT MIN(CAST(sequence_number AS INTEGER)), MAX(CAST(sequence_number AS INTEGER)) FROM _stream_records WHERE table_name = ?1 AND shard_id = ?2",
        "ripple_stream_records_by_shard",
    ),
];

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

/// The shard ids of a table's stream (`DescribeStream`).
pub async fn stream_shard_ids(
    streams: &aws_sdk_dynamodbstreams::Client,
    stream_arn: &str,
) -> Result<Vec<String>, String> {
    let description = streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .map_err(|e| format!("DescribeStream: {e:?}"))?;
    Ok(description
        .stream_description()
        .map(|d| {
            d.shards()
                .iter()
                .filter_map(|s| s.shard_id().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// A running embedded dynoxide server; stops when dropped.
pub struct EmbeddedDynamo {
    pub address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedDynamo {
    /// Starts dynoxide on `127.0.0.1:0` over `database`, on a thread with its own runtime
    /// (so a test's single-threaded runtime never has to drive the server too).
    pub fn start(database: dynoxide::Database) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = std::thread::Builder::new()
            .name(format!("dynoxide-{}", address.port()))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _unreachable_receiver_is_fine = ready_tx.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(error) => {
                            let _unreachable_receiver_is_fine = ready_tx.send(Err(error));
                            return;
                        }
                    };
                    let _unreachable_receiver_is_fine = ready_tx.send(Ok(()));
                    let served = dynoxide::server::serve_with_shutdown(listener, database, async {
                        // A dropped sender also means stop.
                        let _either_way_we_stop = stop.await;
                    })
                    .await;
                    if let Err(error) = served {
                        eprintln!("embedded dynoxide stopped with an error: {error}");
                    }
                });
            })?;
        ready_rx
            .recv()
            .map_err(|_| std::io::Error::other("dynoxide thread exited before starting"))??;
        Ok(Self {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for EmbeddedDynamo {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may already be gone; then there is nothing to stop.
            let _server_may_be_gone = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("embedded dynoxide thread panicked");
            }
        }
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

/// Calls HTTP functions the way API Gateway does: a payload-2.0 JSON event in, the
/// function's JSON response out, through the same deserialisation as on Lambda.
pub mod api {
    use std::collections::{BTreeSet, HashMap};
    use std::path::Path;
    use std::sync::Arc;

    use chrono::Utc;
    use serde_json::{json, Value};

    use super::TestDb;
    use crate::auth::TokenService;
    use crate::aws::ClientSet;
    use crate::config::Config;
    use crate::domain::{new_id, DisplayName, User, UserId, Username};
    use crate::error::Result;
    use crate::function::LambdaFunction;
    use crate::store::users::{NewUser, ProfileUpdate};
    use crate::store::DynamoStore;

    /// A writer push over `push` (a [`crate::push::testing::RecordingPush`] in route tests)
    /// with the limits of `config`, for `State::with_writer_push` of the functions that push.
    #[cfg(feature = "push")]
    pub fn writer_push(
        config: &Config,
        clients: &crate::aws::WriterClients,
        push: Arc<dyn crate::push::PushClient>,
    ) -> crate::writer_push::WriterPush {
        let store = Arc::new(DynamoStore::new(
            clients.dynamodb.clone(),
            &config.table_name,
        ));
        crate::writer_push::WriterPush::new(
            push,
            store,
            config.writer_push,
            Arc::new(crate::clock::SystemClock),
        )
    }

    /// Opens WebSocket connection `connection_id` of `user` directly in the store.
    pub async fn open_connection(store: &DynamoStore, user: UserId, connection_id: &str) {
        let now = Utc::now();
        store
            .add_connection(
                &crate::domain::Connection {
                    connection_id: connection_id.to_owned(),
                    user_id: user,
                    connected_at: crate::clock::to_millis(now),
                    user_agent: None,
                    expires_at: now.timestamp() + 7200,
                },
                10,
            )
            .await
            .unwrap_or_else(|e| panic!("opening connection {connection_id}: {e:?}"));
    }

    /// Whether a delivery marker records that the writer push reached every connection of
    /// `event_id` (so the stream router skips it).
    pub async fn delivery_marked(store: &DynamoStore, event_id: uuid::Uuid) -> bool {
        store
            .delivered_among(&[event_id])
            .await
            .unwrap_or_else(|e| panic!("reading the marker of {event_id}: {e:?}"))
            .contains(&event_id)
    }

    /// `user`'s newest notifications, read or not (at most 10), as the store holds them.
    pub async fn recent_notifications(
        store: &DynamoStore,
        user: UserId,
    ) -> Vec<crate::domain::Notification> {
        use crate::store::page::PageRequest;
        store
            .notifications(user, false, &PageRequest::first(10))
            .await
            .unwrap_or_else(|e| panic!("reading {user}'s notifications: {e:?}"))
            .items
    }

    /// A password hash for users created directly in the store: a well-formed argon2id PHC
    /// string that no password matches (these users never log in).
    pub const UNUSABLE_PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    /// A decoded HTTP response.
    #[derive(Debug, Clone)]
    pub struct TestResponse {
        pub status: u16,
        pub headers: HashMap<String, String>,
        /// The JSON body (`Value::Null` when empty).
        pub body: Value,
    }

    impl TestResponse {
        /// The `error.code` of an error response.
        pub fn error_code(&self) -> Option<&str> {
            self.body["error"]["code"].as_str()
        }
    }

    /// A request under construction.
    #[derive(Debug, Clone)]
    pub struct TestRequest {
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        body: Option<String>,
        source_ip: String,
    }

    impl TestRequest {
        /// `path` may carry a query string (`/users?q=al`).
        pub fn new(method: &str, path: &str) -> Self {
            let (path, query) = path.split_once('?').unwrap_or((path, ""));
            Self {
                method: method.to_owned(),
                path: path.to_owned(),
                query: query.to_owned(),
                headers: Vec::new(),
                body: None,
                source_ip: "127.0.0.1".to_owned(),
            }
        }

        /// The caller's address (`requestContext.http.sourceIp`; 127.0.0.1 by default).
        pub fn source_ip(mut self, ip: &str) -> Self {
            self.source_ip = ip.to_owned();
            self
        }

        pub fn token(self, token: &str) -> Self {
            self.header("Authorization", &format!("Bearer {token}"))
        }

        pub fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }

        pub fn json(mut self, body: Value) -> Self {
            self.body = Some(body.to_string());
            self.header("content-type", "application/json")
        }

        /// A JSON body when there is one (route tables carry `Option<Value>` bodies).
        pub fn optional_json(self, body: Option<Value>) -> Self {
            match body {
                Some(body) => self.json(body),
                None => self,
            }
        }

        /// A raw body (malformed JSON, oversize payloads…).
        pub fn raw_body(mut self, body: impl Into<String>) -> Self {
            self.body = Some(body.into());
            self
        }

        /// The API Gateway HTTP API (payload 2.0) event for this request.
        pub fn event(&self) -> Value {
            let mut headers = serde_json::Map::new();
            for (name, value) in &self.headers {
                headers.insert(name.to_ascii_lowercase(), Value::String(value.clone()));
            }
            headers.insert("host".into(), json!("api.ripple.test"));
            let mut query = serde_json::Map::new();
            for pair in self.query.split('&').filter(|p| !p.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    url::form_urlencoded::parse(format!("k={s}").as_bytes())
                        .next()
                        .map(|(_, v)| v.into_owned())
                        .unwrap_or_default()
                };
                query.insert(decode(key), Value::String(decode(value)));
            }
            let now = chrono::Utc::now();
            json!({
                "version": "2.0",
                "routeKey": "$default",
                "rawPath": self.path,
                "rawQueryString": self.query,
                "headers": headers,
                "queryStringParameters": if query.is_empty() { Value::Null } else { Value::Object(query) },
                "requestContext": {
                    "accountId": "123456789012",
                    "apiId": "ripple-test",
                    "domainName": "api.ripple.test",
                    "domainPrefix": "api",
                    "http": {
                        "method": self.method,
                        "path": self.path,
                        "protocol": "HTTP/1.1",
                        "sourceIp": self.source_ip,
                        "userAgent": "ripple-test"
                    },
                    "requestId": uuid::Uuid::new_v4().to_string(),
                    "routeKey": "$default",
                    "stage": "$default",
                    "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
                    "timeEpoch": now.timestamp_millis()
                },
                "body": self.body,
                "isBase64Encoded": false
            })
        }

        /// Invokes `function` with this request and decodes its response.
        pub async fn send(&self, function: &Arc<dyn LambdaFunction>) -> TestResponse {
            let response = function
                .invoke(self.event(), lambda_runtime::Context::default())
                .await
                .unwrap_or_else(|e| panic!("{} {} failed to invoke: {e}", self.method, self.path));
            let status = response["statusCode"]
                .as_u64()
                .unwrap_or_else(|| panic!("response without statusCode: {response}"))
                as u16;
            let headers: HashMap<String, String> = response["headers"]
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
                .unwrap_or_default();
            let body = match response["body"].as_str() {
                Some(text) if !text.is_empty() => serde_json::from_str(text)
                    .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {text}")),
                _ => Value::Null,
            };
            // The router gives every response, error or not, the request id.
            assert!(
                headers.contains_key("x-request-id"),
                "{} {}: response without x-request-id",
                self.method,
                self.path
            );
            TestResponse {
                status,
                headers,
                body,
            }
        }
    }

    /// Asserts an error response: its status and code, the standard error body (a message
    /// and the request id) and the `x-request-id` header naming the same request.
    #[track_caller]
    pub fn assert_error(response: &TestResponse, status: u16, code: &str) {
        assert_error_for(response, status, code, "response");
    }

    /// [`assert_error`] with `what` was sent in the failure messages (for loops over cases).
    #[track_caller]
    pub fn assert_error_for(response: &TestResponse, status: u16, code: &str, what: &str) {
        assert_eq!(response.status, status, "{what}: {}", response.body);
        assert_eq!(
            response.error_code(),
            Some(code),
            "{what}: {}",
            response.body
        );
        let error = &response.body["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: error without a message: {}",
            response.body
        );
        assert!(
            error["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{what}: error without a request id: {}",
            response.body
        );
        assert_eq!(
            response.headers.get("x-request-id").map(String::as_str),
            error["request_id"].as_str(),
            "{what}: x-request-id names the error's request"
        );
    }

    /// Walks a list endpoint page by page with `?limit=` (and the `next_cursor` of each page
    /// after the first), asserting every page is a 200 of at most `limit` items; returns all
    /// items and the number of pages. `path` may already carry a query string.
    pub async fn walk_pages(
        function: &Arc<dyn LambdaFunction>,
        token: &str,
        path: &str,
        limit: usize,
    ) -> (Vec<Value>, usize) {
        let separator = if path.contains('?') { '&' } else { '?' };
        let first = format!("{path}{separator}limit={limit}");
        let mut url = first.clone();
        let mut items = Vec::new();
        let mut pages = 0;
        loop {
            let response = TestRequest::new("GET", &url)
                .token(token)
                .send(function)
                .await;
            assert_eq!(response.status, 200, "GET {url}: {}", response.body);
            pages += 1;
            let page = response.body["items"]
                .as_array()
                .unwrap_or_else(|| panic!("GET {url}: not a list: {}", response.body));
            assert!(page.len() <= limit, "GET {url}: more than {limit} items");
            items.extend(page.iter().cloned());
            match response.body["next_cursor"].as_str() {
                Some(cursor) => url = format!("{first}&cursor={cursor}"),
                None => {
                    assert!(
                        response.body["next_cursor"].is_null(),
                        "GET {url}: the last page's next_cursor is null: {}",
                        response.body
                    );
                    return (items, pages);
                }
            }
            assert!(pages < 100, "GET {path}: pagination does not end");
        }
    }

    /// A user created directly in the store, with a valid access token.
    #[derive(Debug, Clone)]
    pub struct TestAccount {
        pub user: User,
        pub token: String,
    }

    impl TestAccount {
        pub fn id(&self) -> UserId {
            self.user.id
        }
    }

    /// One HTTP function under test over a fresh database, with direct access to the
    /// database, its store and the token service (to create users and tokens without
    /// going through `api-auth`).
    pub struct TestApi {
        pub db: TestDb,
        pub config: Config,
        pub store: DynamoStore,
        pub tokens: TokenService,
        pub function: Arc<dyn LambdaFunction>,
    }

    impl TestApi {
        /// Starts a fresh database and builds the function with `build` over its own client
        /// set `C`, e.g.
        /// `|config, clients| Ok(api_x::lambda_function(Arc::new(api_x::State::new(config, clients)?)))`.
        pub async fn start<C: ClientSet>(
            build: impl FnOnce(Config, &C) -> Result<Arc<dyn LambdaFunction>>,
        ) -> Self {
            Self::start_with(&[], build).await
        }

        /// [`TestApi::start`] with configuration overrides (`("RATE_LIMIT_…", "2")`).
        pub async fn start_with<C: ClientSet>(
            config: &[(&str, &str)],
            build: impl FnOnce(Config, &C) -> Result<Arc<dyn LambdaFunction>>,
        ) -> Self {
            let db = TestDb::start().await;
            let config = db.config_with(config);
            let clients = db.client_set::<C>(&config);
            let tokens = crate::testkit::test_token_service(&config);
            let function = build(config.clone(), &clients)
                .unwrap_or_else(|e| panic!("building the function under test: {e:?}"));
            Self {
                store: db.store(),
                db,
                config,
                tokens,
                function,
            }
        }

        /// Writes `viewer`'s materialized feed from the follow graph, as the push worker's
        /// feed tasks would have (a REST-only test has no stream pipeline to run them).
        pub async fn materialize_feed(&self, viewer: UserId) {
            let feeds = crate::feed::FeedMaterializer::new(
                std::sync::Arc::new(self.store.clone()),
                self.config.feed,
            );
            feeds
                .rebuild_feed(viewer, chrono::Utc::now())
                .await
                .unwrap_or_else(|e| panic!("materializing {viewer}'s feed: {e:?}"));
        }

        /// Another function over the same database and configuration (cross-function tests).
        pub fn other_function<C: ClientSet>(
            &self,
            build: impl FnOnce(Config, &C) -> Result<Arc<dyn LambdaFunction>>,
        ) -> Arc<dyn LambdaFunction> {
            build(self.config.clone(), &self.db.client_set::<C>(&self.config))
                .unwrap_or_else(|e| panic!("building a function: {e:?}"))
        }

        /// Creates `username` (display name "`username` display") in the store and issues
        /// an access token valid now.
        pub async fn account(&self, username: &str) -> TestAccount {
            self.account_with_id(new_id(), username).await
        }

        /// [`TestApi::account`] with a given id (e.g. the one event fixtures name).
        pub async fn account_with_id(&self, id: UserId, username: &str) -> TestAccount {
            let user = self
                .store
                .create_user(NewUser {
                    id,
                    username: Username::parse(username).expect("a valid username"),
                    display_name: DisplayName::parse(&format!("{username} display"))
                        .expect("a valid display name"),
                    password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
                    created_at: Utc::now(),
                })
                .await
                .unwrap_or_else(|e| panic!("creating {username}: {e:?}"));
            // Tokens are checked against real time, whatever clock the function uses.
            let token = self
                .tokens
                .issue(user.id, Utc::now())
                .unwrap_or_else(|e| panic!("issuing a token for {username}: {e:?}"));
            TestAccount { user, token }
        }

        /// [`TestApi::account`] with a private profile.
        pub async fn private_account(&self, username: &str) -> TestAccount {
            let account = self.account(username).await;
            self.make_private(account.id()).await;
            account
        }

        /// Makes `user`'s profile private, directly in the store.
        pub async fn make_private(&self, user: UserId) {
            self.store
                .update_profile(
                    user,
                    &ProfileUpdate {
                        is_private: Some(true),
                        ..ProfileUpdate::default()
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("making {user} private: {e:?}"));
        }

        pub async fn send(&self, request: TestRequest) -> TestResponse {
            request.send(&self.function).await
        }

        /// `method path` as `who`, without a body.
        pub async fn call(&self, who: &TestAccount, method: &str, path: &str) -> TestResponse {
            self.send(TestRequest::new(method, path).token(&who.token))
                .await
        }

        /// `method path` as `who`, with a JSON body.
        pub async fn call_json(
            &self,
            who: &TestAccount,
            method: &str,
            path: &str,
            body: Value,
        ) -> TestResponse {
            self.send(TestRequest::new(method, path).token(&who.token).json(body))
                .await
        }

        /// [`walk_pages`] of `path` as `who`.
        pub async fn walk_pages(
            &self,
            who: &TestAccount,
            path: &str,
            limit: usize,
        ) -> (Vec<Value>, usize) {
            walk_pages(&self.function, &who.token, path, limit).await
        }

        /// Invokes every `*.json` event fixture (`cargo lambda invoke --data-file`) of
        /// `directory` in name order, with `<ACCESS_TOKEN>` replaced by `token`. Asserts
        /// there is one fixture per route (`route_count`) and that together they reach
        /// every route; returns the responses, in order, for the caller's expectations.
        pub async fn invoke_fixtures(
            &self,
            directory: &Path,
            token: &str,
            route_count: usize,
        ) -> Vec<FixtureResponse> {
            let mut fixtures: Vec<_> = std::fs::read_dir(directory)
                .unwrap_or_else(|e| panic!("reading {}: {e}", directory.display()))
                .map(|entry| {
                    entry
                        .unwrap_or_else(|e| panic!("fixture entry: {e}"))
                        .path()
                })
                .filter(|path| path.extension().is_some_and(|e| e == "json"))
                .collect();
            fixtures.sort();
            assert_eq!(fixtures.len(), route_count, "one fixture per route");
            let mut routes_hit = BTreeSet::new();
            let mut responses = Vec::new();
            for path in fixtures {
                let name = path
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
                let event: Value = serde_json::from_str(&text.replace("<ACCESS_TOKEN>", token))
                    .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
                let method = event["requestContext"]["http"]["method"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} has no method"))
                    .to_owned();
                let route_path = event["rawPath"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name} has no rawPath"))
                    .to_owned();
                routes_hit.insert((method, route_path));
                let response = self
                    .function
                    .invoke(event, lambda_runtime::Context::default())
                    .await
                    .unwrap_or_else(|e| panic!("{name} failed to invoke: {e}"));
                let status = response["statusCode"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{name}: response without statusCode"));
                let body = match response["body"].as_str() {
                    Some(text) if !text.is_empty() => serde_json::from_str(text)
                        .unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {text}")),
                    _ => Value::Null,
                };
                responses.push(FixtureResponse {
                    name,
                    status,
                    body,
                    response,
                });
            }
            assert_eq!(routes_hit.len(), route_count, "every route has its fixture");
            responses
        }
    }

    /// What one event fixture's invocation answered.
    #[derive(Debug, Clone)]
    pub struct FixtureResponse {
        /// The fixture's file stem (`send-message`).
        pub name: String,
        pub status: u64,
        /// The decoded JSON body (`Value::Null` when empty).
        pub body: Value,
        /// The raw Lambda response.
        pub response: Value,
    }
}

/// WebSocket API events (`$connect`, `$disconnect`, messages) for the WebSocket functions.
pub mod ws;

#[cfg(test)]
mod stream_record_index_tests {
    use super::*;

    #[test]
    fn dynoxides_stream_record_queries_seek_the_added_indexes() {
        let path = memory_database_uri();
        let _database = open_dynoxide_at(&path).expect("dynoxide opens");
        // The database lives while dynoxide's connection is open; this one sees the same.
        let connection = rusqlite::Connection::open(&path).expect("second connection");
        for (query, index) in STREAM_RECORD_QUERIES {
            let mut plan = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .expect("dynoxide's query still prepares against its table");
            let params = query.matches('?').count();
            let values: Vec<rusqlite::types::Value> = (0..params)
                .map(|i| rusqlite::types::Value::Integer(i as i64))
                .collect();
            let details: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(values), |row| row.get(3))
                .expect("plan")
                .collect::<Result<_, _>>()
                .expect("plan rows");
            let plan = details.join(" | ");
            assert!(plan.contains(index), "{query}: {plan}");
            assert!(!plan.contains("SCAN"), "{query}: {plan}");
        }
    }
}
