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

use crate::aws::{local_sdk_config, Clients, Endpoints};
use crate::config::Config;
use crate::store::{table::create_table, DynamoStore};

/// Environment variable naming an external DynamoDB endpoint for the store suite.
pub const EXTERNAL_ENDPOINT_VAR: &str = "RIPPLE_TEST_DYNAMODB_ENDPOINT";

/// A secret that satisfies the HS256 minimum, for tests only.
pub const TEST_JWT_SECRET: &str = "ripple-test-secret-0123456789abcdef0123456789";

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
                let database = dynoxide::Database::memory()
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

    /// A configuration for this database with a test JWT secret; `extra` overrides.
    pub fn config_with(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars = vec![
            ("TABLE_NAME".to_owned(), self.table_name.clone()),
            ("JWT_SECRET".to_owned(), TEST_JWT_SECRET.to_owned()),
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

    /// SDK clients for functions under test (DynamoDB pointed at this database).
    pub fn clients(&self, config: &Config) -> Clients {
        Clients::from_sdk_config(
            &local_sdk_config(),
            config,
            &Endpoints {
                dynamodb: Some(self.endpoint.clone()),
                dynamodb_streams: Some(self.endpoint.clone()),
                sqs: None,
            },
        )
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
    use std::collections::HashMap;
    use std::sync::Arc;

    use serde_json::{json, Value};

    use crate::function::LambdaFunction;

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
            }
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
                        "sourceIp": "127.0.0.1",
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
            let headers = response["headers"]
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
            TestResponse {
                status,
                headers,
                body,
            }
        }
    }
}

/// WebSocket API events (`$connect`, `$disconnect`, messages) for the WebSocket functions.
pub mod ws;
