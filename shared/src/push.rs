//! Delivering events to WebSocket connections — what every function that posts needs.
//!
//! - [`PushClient`]: one post to one connection, with a typed outcome — delivered, or
//!   gone (API Gateway's `GoneException`, HTTP 410: the socket is closed) — and errors typed
//!   retryable (throttling, 5xx, timeouts) or permanent. [`ManagementApiPush`] is the real
//!   one, over ONE `aws-sdk-apigatewaymanagement` client built at cold start from
//!   `WS_MANAGEMENT_ENDPOINT`.
//! - [`DirectPush`]: posts with bounded concurrency and retry-with-backoff; a gone
//!   connection is removed (with its room memberships) and counts as delivered. The only
//!   path of functions whose audiences are small by construction (`ws-message`).
//! - [`PushMetrics`]: one EMF line per invocation.
//!
//! Who an event is for and how large audiences travel (audiences, the online index, the
//! queue, work items) is the fan-out tier's business: [`crate::fanout`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::stream::{self, StreamExt};

use crate::aws::PushClients;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::{cause_chain, Result};
use crate::events::Event;
pub use crate::retry::RetryPolicy;
use crate::store::connections::{GoneRemoval, HANDSHAKE_WINDOW};
use crate::store::DynamoStore;

/// Posts in flight at once per dispatch. API Gateway's account-wide quota is shared by
/// every concurrent invocation, so this stays modest; throttling is retried anyway.
pub const DEFAULT_PUSH_CONCURRENCY: usize = 32;

/// What happened to one post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Delivered,
    /// The connection no longer exists (HTTP 410 `GoneException`).
    Gone,
}

/// A post that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Throttling, a 5xx or a transport failure: trying again later may work.
    #[error("retryable push failure: {0}")]
    Retryable(String),
    /// The request itself is refused (payload too large, forbidden…): it never will work.
    #[error("permanent push failure: {0}")]
    Permanent(String),
}

impl PushError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

/// Sends bytes to one WebSocket connection.
#[async_trait]
pub trait PushClient: Send + Sync {
    async fn post(
        &self,
        connection_id: &str,
        payload: &[u8],
    ) -> std::result::Result<PushOutcome, PushError>;

    /// Whether API Gateway still has the connection (`GET @connections/{id}`): `false` on
    /// 410. The presence check asks it of the connections a lost `$disconnect` left behind.
    async fn is_connected(&self, connection_id: &str) -> std::result::Result<bool, PushError>;
}

/// [`PushClient`] over the API Gateway management API (`POST /@connections/{id}`).
#[derive(Debug, Clone)]
pub struct ManagementApiPush {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ManagementApiPush {
    pub fn new(client: aws_sdk_apigatewaymanagement::Client) -> Self {
        Self { client }
    }

    /// The push client of a function that pushes (its set is only built with
    /// `WS_MANAGEMENT_ENDPOINT` configured).
    pub fn from_clients(clients: &PushClients) -> Self {
        Self::new(clients.management.clone())
    }
}

#[async_trait]
impl PushClient for ManagementApiPush {
    async fn post(
        &self,
        connection_id: &str,
        payload: &[u8],
    ) -> std::result::Result<PushOutcome, PushError> {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(payload))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(PushOutcome::Delivered),
            Err(error) => classify_post_error(error),
        }
    }

    async fn is_connected(&self, connection_id: &str) -> std::result::Result<bool, PushError> {
        use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
        match self
            .client
            .get_connection()
            .connection_id(connection_id)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(service))
                if matches!(service.err(), GetConnectionError::GoneException(_)) =>
            {
                Ok(false)
            }
            Err(error) => Err(PushError::Retryable(cause_chain(&error))),
        }
    }
}

/// Maps a management-API failure onto [`PushOutcome::Gone`] or a typed [`PushError`].
fn classify_post_error(
    error: SdkError<PostToConnectionError, HttpResponse>,
) -> std::result::Result<PushOutcome, PushError> {
    let described = cause_chain(&error);
    match &error {
        SdkError::ServiceError(service) => match service.err() {
            PostToConnectionError::GoneException(_) => Ok(PushOutcome::Gone),
            PostToConnectionError::LimitExceededException(_) => {
                Err(PushError::Retryable(described))
            }
            PostToConnectionError::PayloadTooLargeException(_)
            | PostToConnectionError::ForbiddenException(_) => Err(PushError::Permanent(described)),
            // Unmodelled errors: 5xx and 429 are worth another try, other 4xx are not.
            _ => match service.raw().status().as_u16() {
                status if status >= 500 || status == 429 => Err(PushError::Retryable(described)),
                _ => Err(PushError::Permanent(described)),
            },
        },
        SdkError::ConstructionFailure(_) => Err(PushError::Permanent(described)),
        // Timeouts, connection failures, unparseable responses.
        _ => Err(PushError::Retryable(described)),
    }
}

/// How a dispatch reached its audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchPath {
    /// Nobody to send to.
    Nobody,
    /// Pushed from this invocation.
    Direct,
    /// Handed to the push worker through the queue.
    Queued,
    /// Unresolved: a push worker resolves the audience (an `audience` work item).
    Deferred,
}

impl DispatchPath {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nobody => "nobody",
            Self::Direct => "direct",
            Self::Queued => "queued",
            Self::Deferred => "deferred",
        }
    }
}

/// What one dispatch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchReport {
    pub path: DispatchPath,
    /// Size of the audience in connections.
    pub connections: usize,
    pub delivered: usize,
    /// Connections found gone (and removed); they count as delivered.
    pub gone: usize,
    /// Connections still failing with retryable errors after every attempt.
    pub retryable_failures: Vec<String>,
    /// Connections that refused the post for good (logged and dropped).
    pub dropped: usize,
    /// Which connections refused it.
    pub refused: Vec<String>,
    /// `fanout` messages queued.
    pub queued_messages: usize,
    /// Time spent posting (direct path only).
    pub push_latency: Duration,
}

impl DispatchReport {
    pub fn new(path: DispatchPath, connections: usize) -> Self {
        Self {
            path,
            connections,
            delivered: 0,
            gone: 0,
            retryable_failures: Vec::new(),
            dropped: 0,
            refused: Vec::new(),
            queued_messages: 0,
            push_latency: Duration::ZERO,
        }
    }

    /// Whether the source must be retried (some connection could not be reached yet).
    pub fn needs_retry(&self) -> bool {
        !self.retryable_failures.is_empty()
    }
}

/// What became of one event posted to one connection, retries included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// The connection was gone (410) and has been removed with its memberships.
    Gone,
    /// Refused for good ([`PushError::Permanent`]) or still failing after the last attempt
    /// ([`PushError::Retryable`]).
    Failed(PushError),
}

/// The direct path: posts events straight to connections with bounded concurrency,
/// retrying retryable failures with backoff; a gone connection is removed (with its room
/// memberships) so later fan-outs stop reaching for it.
///
/// Used on its own by functions whose audiences are small by construction (`ws-message`:
/// typing relays, `resume` replays), and by [`Dispatcher`] for audiences under the queue
/// threshold and for the push worker's queued chunks.
#[derive(Clone)]
pub struct DirectPush {
    pub push: Arc<dyn PushClient>,
    /// Where a gone connection is removed.
    pub store: Arc<DynamoStore>,
    /// Posts in flight at once per [`DirectPush::deliver`].
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Dates a 410: a connection younger than the handshake window is not removed.
    pub clock: Arc<dyn Clock>,
    /// `Config::ws_handshake_window`.
    pub handshake_window: chrono::Duration,
}

impl std::fmt::Debug for DirectPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectPush")
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl DirectPush {
    /// Direct push with [`DEFAULT_PUSH_CONCURRENCY`] and the default [`RetryPolicy`].
    pub fn new(push: Arc<dyn PushClient>, store: Arc<DynamoStore>) -> Self {
        Self {
            push,
            store,
            concurrency: DEFAULT_PUSH_CONCURRENCY,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            handshake_window: HANDSHAKE_WINDOW,
        }
    }

    /// The same, dating 410s with `clock` (tests move a manual clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Posts `event` to every connection with bounded concurrency. Gone connections are
    /// removed and counted apart; failures are in the report (a permanent one is logged and
    /// dropped, a retryable one still failing is listed for the caller to retry).
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %event.event_id, connections = connection_ids.len()))]
    pub async fn deliver(
        &self,
        event: &Event,
        connection_ids: &[String],
    ) -> Result<DispatchReport> {
        let payload: Arc<[u8]> = event.to_json()?.into_bytes().into();
        let started = Instant::now();
        let results: Vec<(String, Delivery)> = stream::iter(connection_ids.iter().cloned())
            .map(|connection_id| {
                let payload = Arc::clone(&payload);
                async move {
                    let delivery = self.post_with_retry(&connection_id, &payload).await;
                    (connection_id, delivery)
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let mut report = DispatchReport::new(DispatchPath::Direct, connection_ids.len());
        report.push_latency = started.elapsed();
        for (connection_id, delivery) in results {
            match delivery {
                Delivery::Delivered => report.delivered += 1,
                Delivery::Gone => report.gone += 1,
                Delivery::Failed(PushError::Permanent(error)) => {
                    tracing::error!(connection_id, event_id = %event.event_id, error, "push refused; dropped");
                    report.dropped += 1;
                    report.refused.push(connection_id);
                }
                Delivery::Failed(PushError::Retryable(error)) => {
                    tracing::warn!(connection_id, event_id = %event.event_id, error, "push still failing after retries");
                    report.retryable_failures.push(connection_id);
                }
            }
        }
        Ok(report)
    }

    /// Posts `event` to one connection, retrying retryable failures (for callers that must
    /// know the outcome before going on, e.g. an ordered replay that stops when the
    /// connection is gone).
    pub async fn post(&self, connection_id: &str, event: &Event) -> Result<Delivery> {
        let payload = event.to_json()?.into_bytes();
        Ok(self.post_with_retry(connection_id, &payload).await)
    }

    async fn post_with_retry(&self, connection_id: &str, payload: &[u8]) -> Delivery {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.push.post(connection_id, payload).await {
                Ok(PushOutcome::Delivered) => return Delivery::Delivered,
                Ok(PushOutcome::Gone) => {
                    self.forget_gone_connection(connection_id).await;
                    return Delivery::Gone;
                }
                Err(PushError::Retryable(error)) if attempt < self.retry.attempts.max(1) => {
                    tracing::debug!(connection_id, attempt, error, "push failed; retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(error) => return Delivery::Failed(error),
            }
        }
    }

    /// A gone connection is removed with its memberships, so fan-outs stop reaching for it —
    /// unless it is younger than the handshake window, when API Gateway's 410 means its
    /// `$connect` has not returned yet (`DynamoStore::remove_gone_connection`). If the
    /// removal fails, the connection's TTL cleans up later; the event was still handled.
    async fn forget_gone_connection(&self, connection_id: &str) {
        let connected_before = self.clock.now() - self.handshake_window;
        match self
            .store
            .remove_gone_connection(connection_id, connected_before)
            .await
        {
            Ok(GoneRemoval::Removed(_)) => {
                tracing::debug!(connection_id, "gone connection removed")
            }
            Ok(GoneRemoval::TooYoung) => {
                tracing::info!(
                    connection_id,
                    "410 within the handshake window; connection kept"
                )
            }
            Ok(GoneRemoval::Absent) => {}
            Err(error) => {
                tracing::warn!(connection_id, error = %error, causes = %cause_chain(&error), "removing a gone connection failed")
            }
        }
    }
}

/// What every function that posts to connections builds at cold start: the DynamoDB store
/// and the management API client (`WS_MANAGEMENT_ENDPOINT` is required).
pub fn pushing_parts(
    config: &Config,
    clients: &PushClients,
) -> Result<(Arc<DynamoStore>, Arc<ManagementApiPush>)> {
    let push = Arc::new(ManagementApiPush::from_clients(clients));
    let store = Arc::new(DynamoStore::new(
        clients.dynamodb.clone(),
        &config.table_name,
    ));
    Ok((store, push))
}

// ---- metrics -------------------------------------------------------------------------------------

/// Totals of one invocation, emitted as one EMF line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushMetrics {
    /// Records or messages handled.
    pub inputs: usize,
    /// Inputs reported as failed (to be retried).
    pub failures: usize,
    pub events: usize,
    /// Connections addressed, summed over events.
    pub fanout_connections: usize,
    pub direct_dispatches: usize,
    pub queued_dispatches: usize,
    /// Events handed to a push worker unresolved (`audience` work items).
    pub deferred_dispatches: usize,
    /// Connections whose failed posts were re-enqueued with a delay (push worker).
    pub retried_connections: usize,
    pub queued_messages: usize,
    pub delivered: usize,
    pub gone: usize,
    pub dropped: usize,
    pub push_latency: Duration,
    /// Queue messages that could not be read (push worker).
    pub malformed: usize,
}

impl PushMetrics {
    /// Adds another invocation part's totals (concurrent items of one batch).
    pub fn merge(&mut self, other: &PushMetrics) {
        self.inputs += other.inputs;
        self.failures += other.failures;
        self.events += other.events;
        self.fanout_connections += other.fanout_connections;
        self.direct_dispatches += other.direct_dispatches;
        self.queued_dispatches += other.queued_dispatches;
        self.deferred_dispatches += other.deferred_dispatches;
        self.retried_connections += other.retried_connections;
        self.queued_messages += other.queued_messages;
        self.delivered += other.delivered;
        self.gone += other.gone;
        self.dropped += other.dropped;
        self.push_latency += other.push_latency;
        self.malformed += other.malformed;
    }

    pub fn add(&mut self, report: &DispatchReport) {
        self.events += 1;
        self.fanout_connections += report.connections;
        match report.path {
            DispatchPath::Direct => self.direct_dispatches += 1,
            DispatchPath::Queued => self.queued_dispatches += 1,
            DispatchPath::Deferred => self.deferred_dispatches += 1,
            DispatchPath::Nobody => {}
        }
        self.queued_messages += report.queued_messages;
        self.delivered += report.delivered;
        self.gone += report.gone;
        self.dropped += report.dropped;
        self.push_latency += report.push_latency;
    }

    /// The EMF document for `function` (the `Function` dimension).
    pub fn emf_document(&self, function: &str, timestamp_ms: i64) -> serde_json::Value {
        use crate::telemetry::emf::{document, Metric};
        let queued = self.queued_dispatches + self.deferred_dispatches > 0;
        let path = match (self.direct_dispatches > 0, queued) {
            (_, true) => DispatchPath::Queued,
            (true, false) => DispatchPath::Direct,
            (false, false) => DispatchPath::Nobody,
        };
        let mut properties = serde_json::Map::new();
        properties.insert("queue_path_taken".into(), serde_json::Value::Bool(queued));
        properties.insert("dispatch_path".into(), path.as_str().into());
        document(
            timestamp_ms,
            &[("Function", function)],
            &[
                Metric::count("Inputs", self.inputs),
                Metric::count("Failures", self.failures),
                Metric::count("Events", self.events),
                Metric::count("FanoutConnections", self.fanout_connections),
                Metric::count("DirectDispatches", self.direct_dispatches),
                Metric::count("QueuedDispatches", self.queued_dispatches),
                Metric::count("DeferredDispatches", self.deferred_dispatches),
                Metric::count("RetriedConnections", self.retried_connections),
                Metric::count("QueuedMessages", self.queued_messages),
                Metric::count("Delivered", self.delivered),
                Metric::count("GoneConnections", self.gone),
                Metric::count("DroppedPushes", self.dropped),
                Metric::count("MalformedMessages", self.malformed),
                Metric::milliseconds("PushLatency", self.push_latency),
            ],
            properties,
        )
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_apigatewaymanagement::types::error::{
        GoneException, LimitExceededException, PayloadTooLargeException,
    };
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn service_error(
        error: PostToConnectionError,
        status: u16,
    ) -> SdkError<PostToConnectionError, HttpResponse> {
        let status = status
            .try_into()
            .unwrap_or_else(|_| panic!("bad status {status}"));
        SdkError::service_error(error, HttpResponse::new(status, SdkBody::empty()))
    }

    #[test]
    fn management_api_errors_map_to_gone_retryable_or_permanent() {
        let gone = service_error(
            PostToConnectionError::GoneException(GoneException::builder().build()),
            410,
        );
        assert_eq!(classify_post_error(gone).unwrap(), PushOutcome::Gone);

        let throttled = service_error(
            PostToConnectionError::LimitExceededException(
                LimitExceededException::builder().build(),
            ),
            429,
        );
        assert!(classify_post_error(throttled).unwrap_err().is_retryable());

        let too_large = service_error(
            PostToConnectionError::PayloadTooLargeException(
                PayloadTooLargeException::builder().build(),
            ),
            413,
        );
        assert!(!classify_post_error(too_large).unwrap_err().is_retryable());

        let unmodelled = |status| {
            service_error(
                PostToConnectionError::generic(ErrorMetadata::builder().code("X").build()),
                status,
            )
        };
        assert!(classify_post_error(unmodelled(503))
            .unwrap_err()
            .is_retryable());
        assert!(classify_post_error(unmodelled(500))
            .unwrap_err()
            .is_retryable());
        assert!(!classify_post_error(unmodelled(400))
            .unwrap_err()
            .is_retryable());

        let timeout: SdkError<PostToConnectionError, HttpResponse> =
            SdkError::timeout_error("slow");
        assert!(classify_post_error(timeout).unwrap_err().is_retryable());
    }

    #[test]
    fn metrics_sum_reports_and_say_which_path_was_taken() {
        let mut metrics = PushMetrics::default();
        let mut direct = DispatchReport::new(DispatchPath::Direct, 3);
        direct.delivered = 2;
        direct.gone = 1;
        metrics.add(&direct);
        let document = metrics.emf_document("stream-router", 0);
        assert_eq!(document["queue_path_taken"], false);
        assert_eq!(document["GoneConnections"], 1.0);

        let mut queued = DispatchReport::new(DispatchPath::Queued, 500);
        queued.queued_messages = 3;
        metrics.add(&queued);
        let document = metrics.emf_document("stream-router", 0);
        assert_eq!(document["queue_path_taken"], true);
        assert_eq!(document["dispatch_path"], "queued");
        assert_eq!(document["FanoutConnections"], 503.0);
        assert_eq!(document["QueuedMessages"], 3.0);
        assert_eq!(document["Events"], 2.0);
    }
}

/// A [`PushClient`] that records what it is asked to send, for the push tier's handler tests
/// (the management API itself is exercised through the local gateway's end-to-end tests).
#[cfg(feature = "testkit")]
pub mod testing {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::Value;

    use super::{PushClient, PushError, PushOutcome};

    /// Records every post; connections can be declared gone or failing.
    #[derive(Debug, Default)]
    pub struct RecordingPush {
        delivered: Mutex<Vec<(String, Value)>>,
        attempts: Mutex<HashMap<String, usize>>,
        gone: Mutex<HashSet<String>>,
        failing: Mutex<HashMap<String, PushError>>,
    }

    impl RecordingPush {
        pub fn new() -> Self {
            Self::default()
        }

        /// Posts to `connection_id` answer 410 from now on.
        pub fn mark_gone(&self, connection_id: &str) {
            lock(&self.gone).insert(connection_id.to_owned());
        }

        /// Posts to `connection_id` fail with `error` from now on.
        pub fn fail(&self, connection_id: &str, error: PushError) {
            lock(&self.failing).insert(connection_id.to_owned(), error);
        }

        /// Posts to `connection_id` succeed again.
        pub fn recover(&self, connection_id: &str) {
            lock(&self.failing).remove(connection_id);
        }

        /// Every delivered `(connection_id, event)`, in delivery order.
        pub fn delivered(&self) -> Vec<(String, Value)> {
            lock(&self.delivered).clone()
        }

        /// Events delivered to one connection.
        pub fn events_to(&self, connection_id: &str) -> Vec<Value> {
            self.delivered()
                .into_iter()
                .filter(|(id, _)| id == connection_id)
                .map(|(_, event)| event)
                .collect()
        }

        /// Events of one `type` delivered to one connection.
        pub fn events_of_type(&self, connection_id: &str, kind: &str) -> Vec<Value> {
            self.events_to(connection_id)
                .into_iter()
                .filter(|event| event["type"] == kind)
                .collect()
        }

        /// The `event_id`s of the events of one `type` delivered to one connection.
        pub fn event_ids_of_type(&self, connection_id: &str, kind: &str) -> Vec<String> {
            self.events_of_type(connection_id, kind)
                .iter()
                .filter_map(|event| event["event_id"].as_str().map(str::to_owned))
                .collect()
        }

        /// Posts attempted to one connection, failed ones included.
        pub fn attempts(&self, connection_id: &str) -> usize {
            lock(&self.attempts)
                .get(connection_id)
                .copied()
                .unwrap_or(0)
        }

        pub fn clear(&self) {
            lock(&self.delivered).clear();
            lock(&self.attempts).clear();
        }
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        // A panicking test thread poisons the lock; the data is still what was recorded.
        mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[async_trait]
    impl PushClient for RecordingPush {
        async fn post(
            &self,
            connection_id: &str,
            payload: &[u8],
        ) -> Result<PushOutcome, PushError> {
            *lock(&self.attempts)
                .entry(connection_id.to_owned())
                .or_default() += 1;
            if lock(&self.gone).contains(connection_id) {
                return Ok(PushOutcome::Gone);
            }
            if let Some(error) = lock(&self.failing).get(connection_id) {
                return Err(error.clone());
            }
            let event: Value = serde_json::from_slice(payload)
                .map_err(|e| PushError::Permanent(format!("payload is not JSON: {e}")))?;
            lock(&self.delivered).push((connection_id.to_owned(), event));
            Ok(PushOutcome::Delivered)
        }

        async fn is_connected(&self, connection_id: &str) -> Result<bool, PushError> {
            Ok(!lock(&self.gone).contains(connection_id))
        }
    }
}
