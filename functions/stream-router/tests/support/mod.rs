//! Test harness of the push tier, shared by the `stream-router` and `push-worker` tests
//! (`push-worker` includes this file by path): a fresh dynoxide table, a moto SQS server with
//! the fan-out queue, the real stores and a recording push client. The generic parts (the
//! moto server, reading the table's real stream and the queue's real messages, and turning
//! them into Lambda events with the same conversion `ripple-local` uses) are `lambda-local`'s;
//! what is here is the push tier's state and fixtures.
#![allow(dead_code)] // Each test crate uses a different part of it.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use lambda_local::MotoServer;
use serde_json::Value;
use shared::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use shared::clock::ManualClock;
use shared::config::Config;
use shared::domain::{new_id, Connection, DisplayName, UserId, Username};
use shared::fanout::PushFunctionState;
use shared::fanout::SqsEventQueue;
use shared::function::LambdaFunction;
use shared::push::testing::RecordingPush;
use shared::retry::RetryPolicy;
use shared::store::DynamoStore;
use shared::store::NewUser;
use shared::testkit::TestDb;

/// Retries without waiting: the tests check what is retried, not how long it waits.
pub const FAST_RETRY: RetryPolicy = RetryPolicy {
    attempts: 3,
    base_delay: std::time::Duration::ZERO,
    max_delay: std::time::Duration::ZERO,
};

pub struct Harness {
    pub db: TestDb,
    pub moto: MotoServer,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub config: Config,
    pub store: Arc<DynamoStore>,
    pub push: Arc<RecordingPush>,
    pub queue: Arc<SqsEventQueue>,
}

/// An SQS client for moto at `endpoint`, its requests counted by `meter` if given.
fn sqs_client(
    endpoint: &str,
    meter: Option<&shared::metering::RequestMeter>,
) -> aws_sdk_sqs::Client {
    let mut sqs = aws_sdk_sqs::config::Builder::from(&local_sdk_config()).endpoint_url(endpoint);
    if let Some(meter) = meter {
        sqs = sqs.interceptor(meter.clone());
    }
    aws_sdk_sqs::Client::from_conf(sqs.build())
}

fn moto_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
}

impl Harness {
    /// Starts dynoxide and moto (fails with "run `make tools`" when moto is not installed).
    pub async fn start(extra_config: &[(&str, &str)]) -> Self {
        let db = TestDb::start().await;
        let moto = MotoServer::start(&moto_binary())
            .await
            .unwrap_or_else(|e| panic!("cannot start moto (run `make tools`): {e:#}"));
        let sqs = sqs_client(moto.endpoint(), None);
        let queue_url = sqs
            .create_queue()
            .queue_name("ripple-push")
            .send()
            .await
            .unwrap_or_else(|e| panic!("cannot create the fan-out queue: {e:?}"))
            .queue_url()
            .unwrap_or_else(|| panic!("CreateQueue returned no URL"))
            .to_owned();
        let mut vars = vec![("FANOUT_QUEUE_URL", queue_url.as_str())];
        vars.extend_from_slice(extra_config);
        let config = db.config_with(&vars);
        let store = Arc::new(db.store());
        let queue = Arc::new(SqsEventQueue::new(sqs.clone(), &queue_url).with_retry(FAST_RETRY));
        Self {
            sqs,
            queue_url,
            config,
            store,
            push: Arc::new(RecordingPush::new()),
            queue,
            moto,
            db,
        }
    }

    /// The state over this harness with every DynamoDB and SQS request counted by `meter`.
    pub fn metered_state(&self, meter: &shared::metering::RequestMeter) -> PushFunctionState {
        let DynamoClients { dynamodb } = DynamoClients::from_sdk_config(
            &local_sdk_config(),
            &self.config,
            &Endpoints {
                dynamodb: Some(self.db.endpoint.clone()),
                meter: Some(meter.clone()),
                ..Endpoints::default()
            },
        )
        .unwrap_or_else(|e| panic!("metered DynamoDB client: {e:?}"));
        let store = Arc::new(DynamoStore::new(dynamodb, &self.db.table_name));
        let sqs = sqs_client(self.moto.endpoint(), Some(meter));
        let queue = Arc::new(SqsEventQueue::new(sqs, &self.queue_url).with_retry(FAST_RETRY));
        let mut state = PushFunctionState::from_parts(
            self.config.clone(),
            store,
            self.push.clone(),
            queue,
            Arc::new(ManualClock::new(now())),
        );
        state.tier = state.tier.with_retry(FAST_RETRY);
        state
    }

    /// The stream router's state over this harness (`PushFunctionState`): retries without
    /// waiting, a manual clock. The push worker builds its own from the same parts.
    pub fn state(&self) -> PushFunctionState {
        let mut state = PushFunctionState::from_parts(
            self.config.clone(),
            self.store.clone(),
            self.push.clone(),
            self.queue.clone(),
            Arc::new(ManualClock::new(now())),
        );
        state.tier = state.tier.with_retry(FAST_RETRY);
        state
    }

    pub async fn user(&self, username: &str) -> UserId {
        let user = self
            .store
            .create_user(NewUser {
                id: new_id(),
                username: Username::parse(username).unwrap(),
                display_name: DisplayName::parse(username).unwrap(),
                password_hash: "not-a-real-hash".to_owned(),
                created_at: Utc::now(),
            })
            .await
            .unwrap_or_else(|e| panic!("creating {username}: {e}"));
        user.id
    }

    /// Opens a connection for `user` (as `ws-connect` stores it) and returns its id. It
    /// connected a minute ago: past the handshake window, so a 410 means gone.
    pub async fn connect(&self, user: UserId, connection_id: &str) -> String {
        let connected_at = shared::clock::to_millis(Utc::now() - chrono::Duration::minutes(1));
        self.store
            .add_connection(
                &Connection {
                    connection_id: connection_id.to_owned(),
                    user_id: user,
                    connected_at,
                    user_agent: None,
                    expires_at: connected_at.timestamp() + 8100,
                },
                10,
            )
            .await
            .unwrap_or_else(|e| panic!("connecting {connection_id}: {e}"));
        connection_id.to_owned()
    }

    /// Alice and `watchers` users follow each other, each watcher with one connection
    /// (`m{n}=`); alice was announced online through her connection `a1=`, which is now
    /// closed. Returns alice and the watchers' connections.
    pub async fn alice_gone_with_mutuals(&self, watchers: usize) -> (UserId, Vec<String>) {
        let a = self.user("alice").await;
        let mut connections = Vec::new();
        for n in 0..watchers {
            let watcher = self.user(&format!("mutual{n}")).await;
            self.store.follow(a, watcher, now()).await.unwrap();
            self.store.follow(watcher, a, now()).await.unwrap();
            connections.push(self.connect(watcher, &format!("m{n}=")).await);
        }
        self.connect(a, "a1=").await;
        assert!(self
            .store
            .announce_online(a, "connect:a1=", now())
            .await
            .unwrap());
        self.store.remove_connection("a1=").await.unwrap();
        (a, connections)
    }

    /// Every message now visible on the fan-out queue (received, so hidden afterwards).
    pub async fn receive_all(&self) -> Vec<aws_sdk_sqs::types::Message> {
        lambda_local::sqs::receive_all(&self.sqs, &self.queue_url).await
    }

    /// The visible messages of the push tier, with the feed tasks every post and follow
    /// also queues split off: `(push messages, feed tasks)`.
    pub async fn receive_split(
        &self,
    ) -> (
        Vec<aws_sdk_sqs::types::Message>,
        Vec<shared::feed::FeedTask>,
    ) {
        let mut push = Vec::new();
        let mut feed = Vec::new();
        for message in self.receive_all().await {
            match shared::fanout::QueueMessage::parse(message.body().unwrap_or_default()) {
                Ok(shared::fanout::QueueMessage::Feed(work)) => feed.extend(work.tasks),
                _ => push.push(message),
            }
        }
        (push, feed)
    }

    /// The visible messages of the push tier, feed tasks left out (the feed suites cover them).
    pub async fn receive_push_messages(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.receive_split().await.0
    }

    /// How many messages wait in the queue with a delay still running.
    pub async fn delayed_messages(&self) -> usize {
        lambda_local::sqs::delayed_count(&self.sqs, &self.queue_url).await
    }
}

/// The `SqsEvent` Lambda sends for these messages.
pub fn sqs_event(queue_arn: &str, messages: &[aws_sdk_sqs::types::Message]) -> Value {
    lambda_local::sqs_event(queue_arn, "us-east-1", messages)
}

/// The `itemIdentifier`s of a partial batch response (panics without `batchItemFailures`).
pub use lambda_local::sqs::batch_item_failures as failures;

/// Invokes a function as Lambda would and returns its JSON response.
pub async fn invoke(function: &Arc<dyn LambdaFunction>, event: Value) -> Value {
    function
        .invoke(event, lambda_runtime::Context::default())
        .await
        .unwrap_or_else(|e| panic!("invocation failed: {e}"))
}

/// Ids of the events in a list of pushed events.
pub fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Now, as stored (millisecond precision).
pub fn now() -> DateTime<Utc> {
    shared::clock::to_millis(Utc::now())
}
