//! `bench_init`: cold start and footprint of every Ripple function binary, against a
//! hello-world `lambda_runtime` binary built the same way (`tests/hello`).
//!
//! Each binary is a real release `bootstrap` started as Lambda starts it: a fresh process,
//! the Lambda environment variables, and a minimal Runtime API emulator on 127.0.0.1
//! ([`ripple_tests::runtime_api`]). DynamoDB is an embedded dynoxide in this process (over
//! HTTP, as the functions' SDK client sees a real endpoint), seeded through the in-process
//! functions; the management API (`@connections`) is answered by the emulator.
//!
//! For each binary:
//! - size (bytes of the file, as built: the release profile strips it);
//! - init: exec → the first `GET /runtime/invocation/next`, p50 and p95 over `--runs`
//!   fresh processes;
//! - RSS (`VmRSS`) when the first `/next` arrives, after 100 invocations and after
//!   `--invocations` (1,000) in one process, and the growth between the last two;
//! - the first invocation: event written → response posted, with a realistic event: a REST
//!   route that reads DynamoDB, a `$connect`/`$disconnect`/`subscribe`, a DynamoDB stream
//!   batch (a new post to an online follower: one push), an SQS `fanout` batch (one push).
//!
//! Results go to stdout, and (unless `--no-write`) to `docs/benchmarks.md` between the
//! `cold_start` markers and to `docs/benchmarks.json` under `"cold_start"`; other sections
//! of both files are kept.
//!
//! Run: `make bench-init` (builds the release binaries first), or
//! `cargo run -p ripple-tests --bin bench_init -- --help`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use clap::Parser;
use ripple_local::stream_poller::lambda_record;
use ripple_tests::runtime_api::{ApiEvent, Invocation, RuntimeApi};
use ripple_tests::RestStack;
use serde_json::{json, Value};
use shared::events::Event;
use shared::fanout::{FanoutChunk, QueueMessage};
use shared::function::LambdaFunction;
use shared::testkit::api::{TestAccount, TestRequest};
use shared::testkit::ws::WsEvent;
use shared::testkit::{test_public_keys, test_signing_key};

/// The binaries measured, hello first (the baseline of every ratio). `hello-multi-thread`
/// is hello on tokio's multi-thread runtime: a reference row for the choice of flavour.
const BINARIES: &[&str] = &[
    "hello",
    "hello-multi-thread",
    "api-auth",
    "api-users",
    "api-posts",
    "api-messages",
    "api-notifications",
    "ws-connect",
    "ws-disconnect",
    "ws-message",
    "stream-router",
    "push-worker",
];

/// Longest wait for anything from a runtime.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// `$connect`s per pool user (under the default `MAX_CONNECTIONS_PER_USER` of 10).
const CONNECTS_PER_USER: usize = 5;

/// The invocation count whose RSS the growth is measured from.
const RSS_BASELINE_INVOCATIONS: usize = 100;

/// The goals of issue 16, as ratios against hello.
const INIT_GOAL: f64 = 2.0;
const RSS_GOAL: f64 = 3.0;
const GROWTH_GOAL_PERCENT: f64 = 5.0;
const SIZE_GOAL_BYTES: u64 = 10 * 1024 * 1024;

const MD_BEGIN: &str = "<!-- cold_start:begin -->";
const MD_END: &str = "<!-- cold_start:end -->";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench_init",
    about = "Cold start and footprint of every function binary against hello-world lambda_runtime"
)]
struct Args {
    /// Where the release binaries are (default: the workspace's target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Fresh processes per binary for the init and first-invocation figures.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(10..=1000))]
    runs: u32,
    /// Invocations of the one long-lived process per binary (RSS after).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    invocations: u32,
    /// Only these binaries (comma-separated); hello is always measured.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print the table only; leave docs/benchmarks.{md,json} alone.
    #[arg(long)]
    no_write: bool,
    /// Start each binary under this command, for profiling (e.g. "strace -f -r -o
    /// /tmp/init.trace"); the figures then include the wrapper's cost. Implies --no-write.
    #[arg(long)]
    wrap: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_init: cannot start tokio: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_init: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let root = workspace_root();
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| release_dir(&root));
    let binaries: Vec<&'static str> = BINARIES
        .iter()
        .copied()
        .filter(|b| *b == "hello" || args.only.is_empty() || args.only.iter().any(|o| o == b))
        .collect();
    for binary in &binaries {
        let path = bin_dir.join(binary);
        if !path.is_file() {
            return Err(format!(
                "{} is missing: build the release binaries first (`make bench-init` does)",
                path.display()
            ));
        }
    }
    eprintln!("bench_init: seeding dynoxide through the in-process functions");
    let world = World::seed((args.invocations + args.runs) as usize).await?;
    let plan = Plan {
        bin_dir,
        wrap: args
            .wrap
            .as_deref()
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        binaries,
        runs: args.runs as usize,
        invocations: args.invocations as usize,
    };
    let home = tempfile::tempdir().map_err(|e| format!("temp HOME: {e}"))?;
    let world = Arc::new(world);
    let measure_world = Arc::clone(&world);
    let home_path = home.path().to_owned();
    let results = tokio::task::spawn_blocking(move || measure(&plan, &measure_world, &home_path))
        .await
        .map_err(|e| format!("the measurement panicked: {e}"))??;
    let report = Report::new(results, &args);
    print!("{}", report.table());
    if !args.no_write && args.wrap.is_none() {
        report.write(&root.join("docs"))?;
        eprintln!("bench_init: wrote docs/benchmarks.md and docs/benchmarks.json (cold_start)");
    }
    drop(world);
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn release_dir(root: &Path) -> PathBuf {
    // Only the harness reads this: where cargo put the release build.
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release")
}

// ---- the data every invocation reads ------------------------------------------------------------

/// The seeded database and the events built from it.
struct World {
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
    async fn seed(connects: usize) -> Result<Self, String> {
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
    fn environment(&self, binary: &str, api: &RuntimeApi, home: &Path) -> Vec<(String, String)> {
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
    fn event(&self, binary: &str, n: usize) -> Result<Value, String> {
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
    fn check(&self, binary: &str, response: &Value) -> Result<(), String> {
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
    fn expected_pushes(binary: &str) -> usize {
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

// ---- running binaries ----------------------------------------------------------------------------

struct Plan {
    bin_dir: PathBuf,
    /// A command the binaries are started under (profiling), empty for none.
    wrap: Vec<String>,
    binaries: Vec<&'static str>,
    runs: usize,
    invocations: usize,
}

/// Everything measured for one binary.
#[derive(Debug, Clone)]
struct Measured {
    binary: &'static str,
    size_bytes: u64,
    init: Vec<Duration>,
    rss_init_kb: Vec<u64>,
    first_invoke: Vec<Duration>,
    rss_baseline_kb: u64,
    rss_after_kb: u64,
}

/// The long runs first (they also warm the page cache), then `runs` rounds of one fresh
/// process per binary, round-robin so a noisy moment on a shared machine hits every
/// binary alike.
fn measure(plan: &Plan, world: &World, home: &Path) -> Result<Vec<Measured>, String> {
    let mut measured = Vec::new();
    let mut counters = vec![0usize; plan.binaries.len()];
    for (i, binary) in plan.binaries.iter().enumerate() {
        eprintln!(
            "bench_init: {binary}: {} invocations in one process",
            plan.invocations
        );
        let path = plan.bin_dir.join(binary);
        let size_bytes = std::fs::metadata(&path)
            .map_err(|e| format!("{binary}: {e}"))?
            .len();
        let process = run_process(
            plan,
            &path,
            binary,
            world,
            home,
            plan.invocations,
            &mut counters[i],
        )?;
        measured.push(Measured {
            binary,
            size_bytes,
            init: Vec::new(),
            rss_init_kb: Vec::new(),
            first_invoke: Vec::new(),
            rss_baseline_kb: process
                .rss_kb
                .get(RSS_BASELINE_INVOCATIONS)
                .copied()
                .unwrap_or(0),
            rss_after_kb: process.rss_kb.last().copied().unwrap_or(0),
        });
    }
    for round in 0..plan.runs {
        eprintln!("bench_init: cold starts, round {}/{}", round + 1, plan.runs);
        for (i, binary) in plan.binaries.iter().enumerate() {
            let path = plan.bin_dir.join(binary);
            let process = run_process(plan, &path, binary, world, home, 1, &mut counters[i])?;
            let entry = &mut measured[i];
            entry.init.push(process.init);
            entry.rss_init_kb.push(process.rss_kb[0]);
            entry.first_invoke.push(process.invoke_times[0]);
        }
    }
    Ok(measured)
}

/// One process: init, then `invocations` events.
struct Process {
    init: Duration,
    /// `VmRSS` at each `/next`: index 0 at init, index n after n invocations.
    rss_kb: Vec<u64>,
    invoke_times: Vec<Duration>,
}

/// Kills the function when the run ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Already exited is fine: nothing is left to stop.
        let _already_exited = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn run_process(
    plan: &Plan,
    path: &Path,
    binary: &str,
    world: &World,
    home: &Path,
    invocations: usize,
    counter: &mut usize,
) -> Result<Process, String> {
    let api = RuntimeApi::start().map_err(|e| format!("emulator: {e}"))?;
    let mut stderr_file = tempfile::tempfile().map_err(|e| format!("stderr file: {e}"))?;
    let stderr = stderr_file
        .try_clone()
        .map_err(|e| format!("stderr file: {e}"))?;
    let mut command = match plan.wrap.split_first() {
        Some((wrapper, wrapper_args)) => {
            let mut command = Command::new(wrapper);
            command.args(wrapper_args).arg(path);
            command
        }
        None => Command::new(path),
    };
    command
        .env_clear()
        .envs(world.environment(binary, &api, home))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting {binary}: {e}"))?;
    let mut running = Running(child);
    let outcome = drive(
        &api,
        &mut running,
        binary,
        world,
        started,
        invocations,
        counter,
    );
    if outcome.is_err() {
        let mut log = String::new();
        let _unreadable_is_empty = std::io::Seek::rewind(&mut stderr_file)
            .and_then(|()| stderr_file.read_to_string(&mut log));
        let tail: String = log
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return outcome.map_err(|e| format!("{binary}: {e}\n--- stderr ---\n{tail}"));
    }
    outcome
}

fn drive(
    api: &RuntimeApi,
    running: &mut Running,
    binary: &str,
    world: &World,
    started: Instant,
    invocations: usize,
    counter: &mut usize,
) -> Result<Process, String> {
    let pid = running.0.id();
    let init_at = wait_next(api, running)?;
    let mut process = Process {
        init: init_at - started,
        rss_kb: vec![rss_kb(pid)?],
        invoke_times: Vec::with_capacity(invocations),
    };
    for _ in 0..invocations {
        let request_id = uuid::Uuid::new_v4().to_string();
        let payload = world.event(binary, *counter)?;
        *counter += 1;
        api.invoke(Invocation {
            request_id: request_id.clone(),
            payload: serde_json::to_vec(&payload).map_err(|e| e.to_string())?,
        })?;
        let (elapsed, response, pushes) = wait_response(api, running, &request_id)?;
        world.check(binary, &response)?;
        if pushes < World::expected_pushes(binary) {
            return Err(format!(
                "{binary} made {pushes} pushes, expected at least one"
            ));
        }
        process.invoke_times.push(elapsed);
        wait_next(api, running)?;
        process.rss_kb.push(rss_kb(pid)?);
    }
    Ok(process)
}

/// Waits for the runtime's `/next`; an init error or an exit is an error.
fn wait_next(api: &RuntimeApi, running: &mut Running) -> Result<Instant, String> {
    loop {
        match next_event(api, running)? {
            ApiEvent::Next { at } => return Ok(at),
            ApiEvent::InitError { body, .. } => {
                return Err(format!("init error: {}", String::from_utf8_lossy(&body)))
            }
            ApiEvent::Push { .. } => {}
            other => return Err(format!("expected /next, got {other:?}")),
        }
    }
}

/// Waits for the response to `request_id`: (event written → response, body, pushes made).
fn wait_response(
    api: &RuntimeApi,
    running: &mut Running,
    request_id: &str,
) -> Result<(Duration, Value, usize), String> {
    let mut delivered = None;
    let mut pushes = 0;
    loop {
        match next_event(api, running)? {
            ApiEvent::Delivered { at, .. } => delivered = Some(at),
            ApiEvent::Push { .. } => pushes += 1,
            ApiEvent::Response {
                request_id: id,
                body,
                at,
            } if id == request_id => {
                let delivered = delivered.ok_or("a response before its event was delivered")?;
                let body =
                    serde_json::from_slice(&body).map_err(|e| format!("response body: {e}"))?;
                return Ok((at - delivered, body, pushes));
            }
            ApiEvent::Error { body, .. } => {
                return Err(format!(
                    "invocation error: {}",
                    String::from_utf8_lossy(&body)
                ))
            }
            other => return Err(format!("expected the response, got {other:?}")),
        }
    }
}

fn next_event(api: &RuntimeApi, running: &mut Running) -> Result<ApiEvent, String> {
    api.next_event(STEP_TIMEOUT)
        .map_err(|e| match running.0.try_wait() {
            Ok(Some(status)) => format!("the process exited ({status})"),
            _ => e,
        })
}

/// Resident set size of `pid`, in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kb(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

// ---- the report ----------------------------------------------------------------------------------

struct Row {
    binary: &'static str,
    size_bytes: u64,
    init_p50: Duration,
    init_p95: Duration,
    rss_init_kb: u64,
    rss_baseline_kb: u64,
    rss_after_kb: u64,
    first_invoke: Duration,
}

impl Row {
    fn of(measured: &Measured) -> Self {
        let mut init = measured.init.clone();
        init.sort();
        let mut first = measured.first_invoke.clone();
        first.sort();
        let mut rss = measured.rss_init_kb.clone();
        rss.sort_unstable();
        Self {
            binary: measured.binary,
            size_bytes: measured.size_bytes,
            init_p50: percentile(&init, 0.50),
            init_p95: percentile(&init, 0.95),
            rss_init_kb: rss.get(rss.len() / 2).copied().unwrap_or(0),
            rss_baseline_kb: measured.rss_baseline_kb,
            rss_after_kb: measured.rss_after_kb,
            first_invoke: percentile(&first, 0.50),
        }
    }

    fn growth_percent(&self) -> f64 {
        if self.rss_baseline_kb == 0 {
            return 0.0;
        }
        (self.rss_after_kb as f64 - self.rss_baseline_kb as f64) / self.rss_baseline_kb as f64
            * 100.0
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

struct Report {
    rows: Vec<Row>,
    machine: String,
    runs: u32,
    invocations: u32,
}

impl Report {
    fn new(measured: Vec<Measured>, args: &Args) -> Self {
        Self {
            rows: measured.iter().map(Row::of).collect(),
            machine: machine_line(),
            runs: args.runs,
            invocations: args.invocations,
        }
    }

    fn hello(&self) -> &Row {
        &self.rows[0]
    }

    fn init_ratio(&self, row: &Row) -> f64 {
        row.init_p50.as_secs_f64() / self.hello().init_p50.as_secs_f64().max(1e-9)
    }

    fn rss_ratio(&self, row: &Row) -> f64 {
        row.rss_after_kb as f64 / (self.hello().rss_after_kb as f64).max(1.0)
    }

    fn goals_met(&self, row: &Row) -> Vec<&'static str> {
        let mut missed = Vec::new();
        if self.init_ratio(row) > INIT_GOAL {
            missed.push("init");
        }
        if self.rss_ratio(row) > RSS_GOAL {
            missed.push("rss");
        }
        if row.growth_percent() > GROWTH_GOAL_PERCENT {
            missed.push("growth");
        }
        if row.size_bytes > SIZE_GOAL_BYTES {
            missed.push("size");
        }
        missed
    }

    /// "met", "missed: …", or what a hello row is for.
    fn verdict(&self, row: &Row) -> String {
        match row.binary {
            "hello" => "baseline".to_owned(),
            "hello-multi-thread" => "reference (tokio multi-thread)".to_owned(),
            _ => {
                let missed = self.goals_met(row);
                if missed.is_empty() {
                    "met".to_owned()
                } else {
                    format!("missed: {}", missed.join(", "))
                }
            }
        }
    }

    fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "machine: {}\nruns: {} cold starts per binary; RSS after {} invocations in one process\n\n",
            self.machine, self.runs, self.invocations
        ));
        out.push_str("| binary | size (MB) | init p50 (ms) | init p95 (ms) | init ×hello | RSS init (MB) | RSS after 100 (MB) | RSS after (MB) | RSS ×hello | growth 100→after | first invoke (ms) | goals |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for row in &self.rows {
            let verdict = self.verdict(row);
            out.push_str(&format!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:+.1} % | {:.2} | {} |\n",
                row.binary,
                row.size_bytes as f64 / 1_048_576.0,
                ms(row.init_p50),
                ms(row.init_p95),
                self.init_ratio(row),
                row.rss_init_kb as f64 / 1024.0,
                row.rss_baseline_kb as f64 / 1024.0,
                row.rss_after_kb as f64 / 1024.0,
                self.rss_ratio(row),
                row.growth_percent(),
                ms(row.first_invoke),
                verdict,
            ));
        }
        out
    }

    fn json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    json!({
                        "binary": row.binary,
                        "size_bytes": row.size_bytes,
                        "init_p50_ms": ms(row.init_p50),
                        "init_p95_ms": ms(row.init_p95),
                        "rss_init_kb": row.rss_init_kb,
                        "rss_after_kb": row.rss_after_kb,
                        "first_invoke_ms": ms(row.first_invoke),
                        "rss_after_100_kb": row.rss_baseline_kb,
                        "init_ratio_to_hello": (self.init_ratio(row) * 100.0).round() / 100.0,
                        "rss_ratio_to_hello": (self.rss_ratio(row) * 100.0).round() / 100.0,
                        "rss_growth_percent": (row.growth_percent() * 10.0).round() / 10.0,
                        "goals": self.verdict(row),
                    })
                })
                .collect(),
        )
    }

    /// Replaces this bench's part of docs/benchmarks.{json,md}, keeping every other part.
    fn write(&self, docs: &Path) -> Result<(), String> {
        let json_path = docs.join("benchmarks.json");
        let mut document = match std::fs::read_to_string(&json_path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("{} is not JSON: {e}", json_path.display()))?,
            Err(_) => json!({}),
        };
        let object = document
            .as_object_mut()
            .ok_or_else(|| format!("{} is not a JSON object", json_path.display()))?;
        object.insert("cold_start".to_owned(), self.json());
        object.insert(
            "cold_start_conditions".to_owned(),
            json!({
                "machine": self.machine,
                "runs": self.runs,
                "invocations": self.invocations,
                "goals": {
                    "init_p50_ratio_max": INIT_GOAL,
                    "rss_after_ratio_max": RSS_GOAL,
                    "rss_growth_percent_max": GROWTH_GOAL_PERCENT,
                    "size_bytes_max": SIZE_GOAL_BYTES,
                },
            }),
        );
        let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&json_path, text).map_err(|e| format!("{}: {e}", json_path.display()))?;

        let md_path = docs.join("benchmarks.md");
        let existing = std::fs::read_to_string(&md_path).unwrap_or_else(|_| {
            "# Benchmarks\n\nResults of `make bench-*`, one section per benchmark.\n".to_owned()
        });
        let section = format!(
            "{MD_BEGIN}\n## Cold start and footprint (`make bench-init`)\n\n\
             Release binaries (the workspace's `[profile.release]`, x86_64) started as Lambda starts them, \
             under the Runtime API emulator of `tests/src/runtime_api.rs`; DynamoDB is dynoxide on 127.0.0.1. \
             init = exec → first `/next`; first invoke = event written → response posted. \
             Goals: init p50 ≤ {INIT_GOAL}× hello, RSS after ≤ {RSS_GOAL}× hello, growth ≤ {GROWTH_GOAL_PERCENT} %, size ≤ 10 MB.\n\n\
             {}\n{MD_END}",
            self.table()
        );
        let updated = match (existing.find(MD_BEGIN), existing.find(MD_END)) {
            (Some(begin), Some(end)) if end > begin => {
                format!(
                    "{}{section}{}",
                    &existing[..begin],
                    &existing[end + MD_END.len()..]
                )
            }
            _ => format!("{}\n{section}\n", existing.trim_end()),
        };
        std::fs::write(&md_path, updated).map_err(|e| format!("{}: {e}", md_path.display()))
    }
}

/// CPU model, cores, kernel and compiler, for the report.
fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, Linux {kernel}, {rustc}, {}",
        std::env::consts::ARCH
    )
}
