//! The data every invocation reads: the seeded database and the events built from it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use ripple_local::stream_poller::lambda_record;
use ripple_tests::runtime_api::RuntimeApi;
use ripple_tests::RestStack;
use serde_json::{json, Value};
use shared::events::Event;
use shared::fanout::{FanoutChunk, QueueMessage};
use shared::function::LambdaFunction;
use shared::testkit::api::{TestAccount, TestRequest};
use shared::testkit::ws::WsEvent;
use shared::testkit::{test_public_keys, test_signing_key};

use super::workspace_root;

/// `$connect`s per pool user (under the default `MAX_CONNECTIONS_PER_USER` of 10).
const CONNECTS_PER_USER: usize = 5;

/// The seeded database and the events built from it.
pub(crate) struct World {
    stack: RestStack,
    alice: TestAccount,
    bob: TestAccount,
    /// A refresh token of alice's; each `POST /auth/refresh` rotates it.
    refresh_token: Mutex<String>,
    /// Accounts whose tokens the `$connect` runs use, a few connections each.
    pool: Vec<TestAccount>,
    /// alice's open connection (subscribes; receives the pushes).
    alice_connection: String,
    post_channel: String,
    stream_batch: Value,
    sqs_batch: Value,
    /// Connections opened by the `ws-connect` runs, closed by the `ws-disconnect` runs.
    opened: Mutex<Vec<String>>,
    /// Secrets Manager (moto), where `api-auth` reads its signing key at every cold start.
    secrets: ripple_local::moto::MotoServer,
}

/// The secret `api-auth`'s runs read their signing key from.
const SIGNING_KEY_SECRET: &str = "bench/jwt-signing-key";

impl World {
    /// Seeds the database; `connects` is how many `$connect`s the bench will make.
    pub(crate) async fn seed(connects: usize) -> Result<Self, String> {
        let stack = RestStack::start().await;
        let (alice, refresh_token) = register(&stack, "alice").await?;
        let bob = stack.register("bob").await;
        expect_2xx(
            stack
                .call(
                    &stack.users,
                    &alice,
                    "PUT",
                    &format!("/users/{}/follow", bob.id()),
                    None,
                )
                .await
                .status,
            "alice follows bob",
        )?;
        for i in 0..10 {
            let body = json!({ "text": format!("post {i} of the init bench") });
            let response = stack
                .call(&stack.posts, &bob, "POST", "/posts", Some(body))
                .await;
            expect_2xx(response.status, "bob posts")?;
        }
        let dm = json!({ "text": "hello alice" });
        let path = format!("/conversations/{}/messages", alice.id());
        expect_2xx(
            stack
                .call(&stack.messages, &bob, "POST", &path, Some(dm))
                .await
                .status,
            "bob writes to alice",
        )?;
        let alice_connection = connect(&stack, &alice).await?;
        let mut pool = Vec::new();
        for i in 0..connects.div_ceil(CONNECTS_PER_USER) {
            pool.push(stack.api.account(&format!("pool{i}")).await);
        }
        let (post_id, stream_batch) = stream_batch_of_a_new_post(&stack, &bob).await?;
        let sqs_batch = sqs_batch_of(&stack, post_id, &alice_connection).await?;
        let secrets =
            ripple_local::moto::MotoServer::start(&workspace_root().join(".venv/bin/moto_server"))
                .await
                .map_err(|e| format!("starting moto for Secrets Manager (`make tools`): {e:#}"))?;
        let sdk = shared::aws::local_sdk_config();
        let client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .endpoint_url(secrets.endpoint())
                .build(),
        );
        ripple_local::moto::put_signing_key(&client, SIGNING_KEY_SECRET, test_signing_key())
            .await
            .map_err(|e| format!("storing the signing key: {e:#}"))?;
        Ok(Self {
            stack,
            alice,
            bob,
            refresh_token: Mutex::new(refresh_token),
            pool,
            alice_connection,
            post_channel: format!("post:{post_id}"),
            stream_batch,
            sqs_batch,
            opened: Mutex::new(Vec::new()),
            secrets,
        })
    }

    /// The environment of one binary: Lambda's variables, the function's configuration,
    /// DynamoDB at dynoxide, the management API at the emulator.
    pub(crate) fn environment(
        &self,
        binary: &str,
        api: &RuntimeApi,
        home: &Path,
    ) -> Vec<(String, String)> {
        let db = &self.stack.api.db;
        // Key material as the template gives it: the JWKS to the functions that verify
        // tokens, the signing key's secret to api-auth only, nothing to the others.
        let keys: Vec<(&str, String)> = match binary {
            "api-auth" => vec![
                ("JWT_PUBLIC_KEYS", test_public_keys()),
                ("JWT_SIGNING_KEY_SECRET", SIGNING_KEY_SECRET.to_owned()),
                (
                    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
                    self.secrets.endpoint().to_owned(),
                ),
            ],
            "stream-router" | "push-worker" | "ws-disconnect" | "ws-message" | "hello"
            | "hello-multi-thread" => Vec::new(),
            _ => vec![("JWT_PUBLIC_KEYS", test_public_keys())],
        };
        [
            ("AWS_LAMBDA_RUNTIME_API", api.host_port()),
            ("AWS_LAMBDA_FUNCTION_NAME", binary.to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{binary}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]bench".to_owned(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
            ("AWS_SESSION_TOKEN", "bench".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", db.endpoint.clone()),
            ("HOME", home.display().to_string()),
            ("TZ", ":UTC".to_owned()),
            ("TABLE_NAME", db.table_name.clone()),
            ("WS_MANAGEMENT_ENDPOINT", api.url()),
            (
                "FANOUT_QUEUE_URL",
                format!("{}/000000000000/ripple-fanout", api.url()),
            ),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .chain(keys)
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The `n`-th event for `binary` (0-based over the whole bench).
    pub(crate) fn event(&self, binary: &str, n: usize) -> Result<Value, String> {
        let get = |who: &TestAccount, path: &str| -> Result<Value, String> {
            Ok(TestRequest::new("GET", path).token(&who.token).event())
        };
        match binary {
            "hello" | "hello-multi-thread" => Ok(json!({ "name": "bench" })),
            "api-auth" => {
                let token = lock(&self.refresh_token)?.clone();
                Ok(TestRequest::new("POST", "/auth/refresh")
                    .json(json!({ "refresh_token": token }))
                    .event())
            }
            "api-users" => get(&self.alice, &format!("/users/{}", self.bob.id())),
            "api-posts" => get(&self.alice, "/feed"),
            "api-messages" => get(&self.alice, "/conversations"),
            "api-notifications" => get(&self.bob, "/notifications"),
            "ws-connect" => {
                let who = &self.pool[(n / CONNECTS_PER_USER) % self.pool.len()];
                let connection_id = shared::testkit::ws::connection_id();
                lock(&self.opened)?.push(connection_id.clone());
                Ok(WsEvent::connect(&connection_id)
                    .query("token", &who.token)
                    .event())
            }
            "ws-disconnect" => {
                let opened = lock(&self.opened)?;
                let connection_id = opened.get(n % opened.len().max(1)).cloned();
                Ok(WsEvent::disconnect(
                    &connection_id.unwrap_or_else(shared::testkit::ws::connection_id),
                )
                .event())
            }
            "ws-message" => {
                let frame = json!({ "action": "subscribe", "channel": self.post_channel, "request_id": format!("r{n}") });
                Ok(WsEvent::message(&self.alice_connection, frame.to_string()).event())
            }
            "stream-router" => Ok(self.stream_batch.clone()),
            "push-worker" => Ok(self.sqs_batch.clone()),
            other => Err(format!("no event for {other}")),
        }
    }

    /// Checks a response as the event source would; rotates the refresh token.
    pub(crate) fn check(&self, binary: &str, response: &Value) -> Result<(), String> {
        match binary {
            "hello" | "hello-multi-thread" => Ok(()),
            "stream-router" | "push-worker" => match response["batchItemFailures"].as_array() {
                Some(failures) if failures.is_empty() => Ok(()),
                _ => Err(format!("{binary} reported failures: {response}")),
            },
            _ => {
                let status = response["statusCode"].as_u64().unwrap_or(0);
                if !(200..300).contains(&status) {
                    return Err(format!("{binary} answered {status}: {response}"));
                }
                if binary == "api-auth" {
                    let body: Value =
                        serde_json::from_str(response["body"].as_str().unwrap_or("{}"))
                            .map_err(|e| format!("api-auth body: {e}"))?;
                    let next = body["refresh_token"]
                        .as_str()
                        .ok_or("api-auth: no refresh_token")?;
                    *lock(&self.refresh_token)? = next.to_owned();
                }
                Ok(())
            }
        }
    }

    /// Pushes a successful invocation of `binary` must have made.
    pub(crate) fn expected_pushes(binary: &str) -> usize {
        usize::from(matches!(binary, "stream-router" | "push-worker"))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, String> {
    mutex
        .lock()
        .map_err(|_| "a bench lock was poisoned".to_owned())
}

fn expect_2xx(status: u16, what: &str) -> Result<(), String> {
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("seeding: {what} answered {status}"))
    }
}

/// Registers `username` through `api-auth`, keeping the refresh token.
async fn register(stack: &RestStack, username: &str) -> Result<(TestAccount, String), String> {
    let response = TestRequest::new("POST", "/auth/register")
        .json(json!({ "username": username, "password": "correct horse battery" }))
        .send(&stack.auth)
        .await;
    expect_2xx(response.status, "register")?;
    let refresh = response.body["refresh_token"]
        .as_str()
        .ok_or("register: no refresh_token")?
        .to_owned();
    let id = response.body["user"]["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or("register: no user id")?;
    let user = stack
        .api
        .store
        .get_user(id)
        .await
        .map_err(|e| format!("reading {username}: {e:?}"))?
        .ok_or("register: the user is not stored")?;
    let token = response.body["access_token"]
        .as_str()
        .ok_or("register: no access_token")?
        .to_owned();
    Ok((TestAccount { user, token }, refresh))
}

/// Opens a connection for `who` through the in-process `ws-connect`.
async fn connect(stack: &RestStack, who: &TestAccount) -> Result<String, String> {
    let ws_connect = in_process(stack, "ws-connect").await?;
    let connection_id = shared::testkit::ws::connection_id();
    let response = WsEvent::connect(&connection_id)
        .query("token", &who.token)
        .send(&ws_connect)
        .await;
    expect_2xx(response.status, "alice connects")?;
    Ok(connection_id)
}

/// A function of the local gateway's registry, over the stack's database.
async fn in_process(stack: &RestStack, name: &str) -> Result<Arc<dyn LambdaFunction>, String> {
    let (_, build) = ripple_local::functions::IN_PROCESS_FUNCTIONS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("{name} is not an in-process function"))?;
    let config = stack.api.config.clone();
    build(
        config,
        shared::aws::local_sdk_config(),
        stack.api.db.endpoints(),
    )
    .await
    .map_err(|e| format!("building {name}: {e}"))
}

/// The stream records bob's next post writes, as the Lambda event the router receives.
async fn stream_batch_of_a_new_post(
    stack: &RestStack,
    bob: &TestAccount,
) -> Result<(shared::domain::PostId, Value), String> {
    let stream_arn = stack
        .api
        .db
        .dynamodb
        .describe_table()
        .table_name(&stack.api.db.table_name)
        .send()
        .await
        .map_err(|e| format!("DescribeTable: {e:?}"))?
        .table()
        .and_then(|t| t.latest_stream_arn())
        .ok_or("the table has no stream")?
        .to_owned();
    let before = stream_records(stack, &stream_arn).await?.len();
    let body = json!({ "text": "the post the stream batch carries" });
    let response = stack
        .call(&stack.posts, bob, "POST", "/posts", Some(body))
        .await;
    expect_2xx(response.status, "bob posts")?;
    let post_id = response.body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or("POST /posts: no id")?;
    let records: Vec<Value> = stream_records(stack, &stream_arn)
        .await?
        .iter()
        .skip(before)
        .filter_map(|record| lambda_record(record, &stream_arn))
        .collect();
    if records.is_empty() {
        return Err("the new post wrote no stream record".to_owned());
    }
    Ok((post_id, json!({ "Records": records })))
}

/// Every record of the table's stream so far.
async fn stream_records(
    stack: &RestStack,
    stream_arn: &str,
) -> Result<Vec<aws_sdk_dynamodbstreams::types::Record>, String> {
    let streams = &stack.api.db.streams;
    let shards = shared::testkit::stream_shard_ids(streams, stream_arn).await?;
    let mut records = Vec::new();
    for shard in shards {
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(&shard)
            .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| format!("GetShardIterator: {e:?}"))?
            .shard_iterator
            .clone();
        while let Some(current) = iterator.take() {
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .map_err(|e| format!("GetRecords: {e:?}"))?;
            let empty = page.records().is_empty();
            records.extend(page.records().iter().cloned());
            // The shard never closes: an empty page means "caught up".
            if !empty {
                iterator = page.next_shard_iterator;
            }
        }
    }
    Ok(records)
}

/// An SQS batch of one `fanout` message: the post's `post_created` for alice's connection.
async fn sqs_batch_of(
    stack: &RestStack,
    post_id: shared::domain::PostId,
    connection_id: &str,
) -> Result<Value, String> {
    let post = stack
        .api
        .store
        .get_post(post_id)
        .await
        .map_err(|e| format!("reading the post: {e:?}"))?
        .ok_or("the post is not stored")?;
    let body = QueueMessage::Fanout(FanoutChunk {
        event: Event::post_created(&post),
        connection_ids: vec![connection_id.to_owned()],
        attempt: 0,
    })
    .to_body()
    .map_err(|e| format!("fanout body: {e:?}"))?;
    let mut message = SqsMessage::default();
    message.message_id = Some(uuid::Uuid::new_v4().to_string());
    message.receipt_handle = Some("bench".to_owned());
    message.body = Some(body);
    message.event_source = Some("aws:sqs".to_owned());
    message.event_source_arn = Some("arn:aws:sqs:us-east-1:000000000000:ripple-fanout".to_owned());
    message.aws_region = Some("us-east-1".to_owned());
    let mut event = SqsEvent::default();
    event.records = vec![message];
    serde_json::to_value(event).map_err(|e| format!("SQS event: {e}"))
}
