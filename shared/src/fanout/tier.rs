//! The push tier as one value.

use std::sync::Arc;

use super::audience::AudienceResolver;
use super::dispatch::Dispatcher;
use super::queue::EventQueue;
#[cfg(feature = "sqs")]
use super::queue::SqsEventQueue;
#[cfg(feature = "sqs")]
use crate::aws::RouterClients;
use crate::clock::Clock;
#[cfg(feature = "sqs")]
use crate::clock::SystemClock;
use crate::config::Config;
#[cfg(feature = "sqs")]
use crate::error::Result;
use crate::feed::FeedMaterializer;
#[cfg(feature = "sqs")]
use crate::push::pushing_parts;
use crate::push::{DirectPush, PushClient};
use crate::retry::RetryPolicy;
use crate::store::DynamoStore;

/// Everything a function that fans out needs: audience resolution, dispatch, presence
/// state, the online index. The stream router and the push worker hold one (through
/// [`PushFunctionState`]); `ws-message`, whose audiences are one user's connections, holds
/// only a [`crate::push::DirectPush`].
#[derive(Clone)]
pub struct PushTier {
    pub resolver: AudienceResolver,
    pub dispatcher: Dispatcher,
    /// Connections, presence, the online index, and what the writer push already delivered
    /// (the router pushes only the rest).
    pub store: Arc<DynamoStore>,
}

impl std::fmt::Debug for PushTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushTier")
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

impl PushTier {
    /// The push tier over the DynamoDB store, with the default concurrency and retry policy.
    pub fn new(
        store: Arc<DynamoStore>,
        push: Arc<dyn PushClient>,
        queue: Arc<dyn EventQueue>,
        direct_max_connections: usize,
    ) -> Self {
        Self {
            resolver: AudienceResolver {
                store: store.clone(),
            },
            dispatcher: Dispatcher {
                direct: DirectPush::new(push, store.clone()),
                queue,
                direct_max_connections,
            },
            store,
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.dispatcher.direct.retry = retry;
        self
    }

    /// The fan-out queue (also where delayed presence checks are scheduled).
    pub fn queue(&self) -> &dyn EventQueue {
        self.dispatcher.queue.as_ref()
    }
}

/// The state of the functions that fan out — `stream-router` and `push-worker` re-export
/// this as their `State`: the configuration, the push tier (with the queue), the clock.
pub struct PushFunctionState {
    pub config: Config,
    pub tier: PushTier,
    /// Carries out feed tasks (the push worker; the router only queues them).
    pub feed: FeedMaterializer,
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PushFunctionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushFunctionState")
            .field("table", &self.config.table_name)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

impl PushFunctionState {
    /// Production state: DynamoDB, the management API and the SQS fan-out queue (both
    /// `WS_MANAGEMENT_ENDPOINT` and `FANOUT_QUEUE_URL` are required), the system clock.
    #[cfg(feature = "sqs")]
    pub fn new(config: Config, clients: &RouterClients) -> Result<Self> {
        let queue = Arc::new(SqsEventQueue::new(
            clients.sqs.clone(),
            config.require_fanout_queue_url()?,
        ));
        let (store, push) = pushing_parts(&config, &clients.push())?;
        Ok(Self::from_parts(
            config,
            store,
            push,
            queue,
            Arc::new(SystemClock),
        ))
    }

    /// State over the given store, push client, queue and clock.
    pub fn from_parts(
        config: Config,
        store: Arc<DynamoStore>,
        push: Arc<dyn PushClient>,
        queue: Arc<dyn EventQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let feed = FeedMaterializer::new(store.clone(), config.feed);
        let mut tier = PushTier::new(store, push, queue, config.fanout_direct_max_connections);
        tier.dispatcher.direct.clock = Arc::clone(&clock);
        tier.dispatcher.direct.handshake_window = config.ws_handshake_window;
        Self {
            config,
            tier,
            feed,
            clock,
        }
    }
}

#[cfg(feature = "sqs")]
impl crate::function::FunctionState for PushFunctionState {
    type Clients = RouterClients;

    fn build(config: Config, clients: &RouterClients) -> Result<Self> {
        Self::new(config, clients)
    }
}
