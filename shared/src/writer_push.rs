//! The writer push: a REST function pushes the events its write causes to small audiences
//! itself, right after its commit and before it answers.
//!
//! On AWS a DynamoDB stream record reaches its Lambda consumer p50 213 ms / p99 552 ms after
//! the write, so an event that waits for the stream router cannot reach a screen within
//! 100 ms of the REST response. The function that committed the write already has the item,
//! so for the events below it resolves the audience, posts to the connections with
//! [`DirectPush`] and, when every connection got the event, writes a delivery marker
//! (`store::delivered`) that lets the stream router skip the event.
//!
//! | write | events (exactly what `stream-router`'s `decide` makes of the write's records) |
//! |---|---|
//! | `POST /posts` | `post_created` → author + followers (online ones) |
//! | send a message | `new_message` → recipient + sender, or `message_request` → recipient and `new_message` → sender |
//! | like, comment, message, follow, follow request, accepted request | `new_notification` → recipient |
//!
//! The events come from the same [`Event`] constructors over the same item, so their
//! `event_id`s are the router's: a client that gets both copies drops the second.
//!
//! Bounds — the push never makes a response wait on a big audience:
//! - a post is pushed only when its author has at most `WRITER_PUSH_MAX_FOLLOWERS`
//!   followers (read from the profile the handler already has): resolving is then one
//!   follower page, the block set and one connections read, whoever posts;
//! - an event whose audience has more than `WRITER_PUSH_MAX_CONNECTIONS` connections, or
//!   none, is left to the router;
//! - the resolution is one round of concurrent reads for all of a write's events, run by
//!   the handler alongside the write's transaction ([`WriterPush::resolve_ahead`]: an
//!   audience depends only on user ids), so the response waits only for the posts and the
//!   marker; posts run concurrently with short retries; each phase is cut at
//!   `WRITER_PUSH_BUDGET_MS`.
//!
//! The stream stays the guaranteed path: a failure here (a read, a post, the marker) is
//! logged and the response goes out as usual; without a marker the router pushes the event
//! as it always did. Without `WS_MANAGEMENT_ENDPOINT` (unit tests, a function that never
//! pushes) the writer push is off.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{join_all, try_join_all};
use uuid::Uuid;

use crate::aws::WriterClients;
use crate::clock::Clock;
use crate::config::{Config, WriterPushLimits};
use crate::domain::{Notification, Post, User, UserId};
use crate::error::{cause_chain, Result};
use crate::events::Event;
use crate::fanout::{Audience, AudienceResolver, OnlineSnapshot, Resolution as FanoutResolution};
use crate::push::{DirectPush, ManagementApiPush, PushClient};
use crate::retry::RetryPolicy;
use crate::store::messages::SentMessage;
use crate::store::DynamoStore;

/// The event types a writer push may have delivered (the stream router reads markers for
/// these only).
pub const WRITER_PUSHED_EVENTS: [&str; 4] = [
    "post_created",
    "new_message",
    "message_request",
    "new_notification",
];

/// Posts in flight at once for one event.
pub const WRITER_PUSH_CONCURRENCY: usize = 50;

/// Retries of the writer push: short, since the response waits and the router is behind it.
pub const WRITER_PUSH_RETRY: RetryPolicy = RetryPolicy {
    attempts: 2,
    base_delay: Duration::from_millis(10),
    max_delay: Duration::from_millis(25),
};

/// An event a write causes and who gets it: the shape of the router's decision.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterEvent {
    pub event: Event,
    pub audience: Vec<Audience>,
}

/// The events of a write, as `stream-router`'s `decide` makes them of the write's stream
/// records (pure; a contract test compares the two item by item).
pub mod plan {
    use super::WriterEvent;
    use crate::domain::{Message, Notification, Post};
    use crate::events::Event;
    use crate::fanout::Audience;

    /// A post insert: `post_created` to the author and their followers.
    pub fn post_created(post: &Post) -> Vec<WriterEvent> {
        vec![WriterEvent {
            event: Event::post_created(post),
            audience: vec![Audience::AuthorAndFollowers(post.author_id)],
        }]
    }

    /// A message insert: one event to both sides, or a `message_request` to the recipient
    /// and a `new_message` to the sender while the message waits as a request.
    pub fn message(message: &Message) -> Vec<WriterEvent> {
        let to_recipient = Event::message_for(message, message.to);
        let to_sender = Event::message_for(message, message.from);
        if to_recipient == to_sender {
            return vec![WriterEvent {
                event: to_recipient,
                audience: vec![Audience::Users(vec![message.to, message.from])],
            }];
        }
        vec![
            WriterEvent {
                event: to_recipient,
                audience: vec![Audience::Users(vec![message.to])],
            },
            WriterEvent {
                event: to_sender,
                audience: vec![Audience::Users(vec![message.from])],
            },
        ]
    }

    /// A notification insert: `new_notification` to its recipient.
    pub fn notification(notification: &Notification) -> Vec<WriterEvent> {
        vec![WriterEvent {
            event: Event::new_notification(notification),
            audience: vec![Audience::Users(vec![notification.recipient_id])],
        }]
    }
}

/// What one writer push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterPushReport {
    /// Events every connection of their audience got, marked delivered.
    pub delivered: Vec<Uuid>,
    /// Events left to the stream router: no connection, audience over the bound, a post
    /// that failed, a failed read or marker write, the budget spent, or the push off.
    pub left_to_router: Vec<Uuid>,
    /// Connections posted to, summed over events.
    pub connections: usize,
    pub elapsed: Duration,
}

impl WriterPushReport {
    fn left(events: &[WriterEvent]) -> Self {
        Self {
            left_to_router: events.iter().map(|e| e.event.event_id).collect(),
            ..Self::default()
        }
    }
}

/// Connections read for some audiences.
struct Resolution {
    /// Every user whose connections were read (those without any are absent below).
    users: HashSet<UserId>,
    by_user: HashMap<UserId, Vec<String>>,
    by_audience: HashMap<Audience, Vec<String>>,
}

impl Resolution {
    /// Each event's connections, sorted; `None` if an audience was not read.
    fn connections(&self, events: &[WriterEvent]) -> Option<Vec<Vec<String>>> {
        events
            .iter()
            .map(|event| {
                let mut connections = BTreeSet::new();
                for audience in &event.audience {
                    match audience {
                        Audience::Users(users) => {
                            for user in users {
                                if !self.users.contains(user) {
                                    return None;
                                }
                                connections
                                    .extend(self.by_user.get(user).into_iter().flatten().cloned());
                            }
                        }
                        other => connections.extend(self.by_audience.get(other)?.iter().cloned()),
                    }
                }
                Some(connections.into_iter().collect())
            })
            .collect()
    }
}

/// The connections of a write's audience, read while the write commits: an audience
/// depends only on user ids, so reading it alongside the transaction takes a round off
/// the response. Empty when the writer push is off, the read failed or was not worth it
/// (the push then reads after the commit, or leaves the event to the router).
pub struct Ahead(Option<Resolution>);

impl Ahead {
    /// Nothing read ahead.
    pub fn none() -> Self {
        Self(None)
    }
}

/// What became of one event.
enum EventOutcome {
    Delivered { connections: usize },
    Left { connections: usize },
}

/// Pushes a write's events to small audiences (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct WriterPush {
    parts: Option<Arc<Parts>>,
}

struct Parts {
    resolver: AudienceResolver,
    direct: DirectPush,
    /// Users' connections and the delivery markers the stream router reads.
    store: Arc<DynamoStore>,
    limits: WriterPushLimits,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WriterPush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterPush")
            .field("limits", &self.parts.as_ref().map(|parts| parts.limits))
            .finish_non_exhaustive()
    }
}

impl WriterPush {
    /// The writer push turned off: every event is left to the router.
    pub fn off() -> Self {
        Self { parts: None }
    }

    /// The writer push of a REST function: on when `WS_MANAGEMENT_ENDPOINT` is configured
    /// and `WRITER_PUSH_MAX_CONNECTIONS` is not 0.
    pub fn from_clients(
        config: &Config,
        clients: &WriterClients,
        store: Arc<DynamoStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        match &clients.management {
            Some(client) => Self::new(
                Arc::new(ManagementApiPush::new(client.clone())),
                store,
                config.writer_push,
                clock,
            ),
            None => Self::off(),
        }
    }

    /// The writer push over `push` (tests pass a recording client).
    pub fn new(
        push: Arc<dyn PushClient>,
        store: Arc<DynamoStore>,
        limits: WriterPushLimits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        if limits.max_connections == 0 {
            return Self::off();
        }
        let mut direct = DirectPush::new(push, store.clone()).with_clock(Arc::clone(&clock));
        direct.handshake_window = limits.handshake_window;
        direct.concurrency = WRITER_PUSH_CONCURRENCY;
        direct.retry = WRITER_PUSH_RETRY;
        Self {
            parts: Some(Arc::new(Parts {
                resolver: AudienceResolver {
                    store: store.clone(),
                },
                direct,
                store,
                limits,
                clock,
            })),
        }
    }

    pub fn is_on(&self) -> bool {
        self.parts.is_some()
    }

    /// Whether `author`'s posts are pushed by the writer (few enough followers for the
    /// response to wait on resolving them).
    fn pushes_posts_of(&self, author: &User) -> bool {
        self.parts
            .as_ref()
            .is_some_and(|parts| author.follower_count <= i64::from(parts.limits.max_followers))
    }

    /// Reads the connections of `audiences` within the budget, to run concurrently with
    /// the write whose events go to them. Never fails: an empty [`Ahead`] instead.
    pub async fn resolve_ahead(&self, audiences: &[Audience]) -> Ahead {
        let Some(parts) = &self.parts else {
            return Ahead::none();
        };
        match tokio::time::timeout(parts.limits.budget, parts.read(audiences.iter())).await {
            Ok(Ok(resolution)) => Ahead(Some(resolution)),
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "writer push: reading the audience ahead failed");
                Ahead::none()
            }
            Err(_) => {
                tracing::warn!("writer push: reading the audience ahead is over the budget");
                Ahead::none()
            }
        }
    }

    /// [`WriterPush::resolve_ahead`] for a post by `author`: nothing when the author is over
    /// the follower bound (the post is then the router's alone).
    pub async fn resolve_post_audience(&self, author: &User) -> Ahead {
        if !self.pushes_posts_of(author) {
            return Ahead::none();
        }
        self.resolve_ahead(&[Audience::AuthorAndFollowers(author.id)])
            .await
    }

    /// [`WriterPush::resolve_ahead`] for the notification of `actor`'s write to
    /// `recipient` (nothing for a self-action, which notifies nobody).
    pub async fn resolve_recipient(&self, actor: UserId, recipient: UserId) -> Ahead {
        if actor == recipient {
            return Ahead::none();
        }
        self.resolve_ahead(&[Audience::Users(vec![recipient])])
            .await
    }

    /// After `POST /posts`: `post_created`, unless `author` has too many followers for the
    /// response to wait on resolving them.
    pub async fn post_created(&self, post: &Post, author: &User, ahead: Ahead) -> WriterPushReport {
        let events = plan::post_created(post);
        if self.is_on() && !self.pushes_posts_of(author) {
            tracing::debug!(post_id = %post.id, followers = author.follower_count, "writer push: author over the follower bound; left to the router");
            return WriterPushReport::left(&events);
        }
        self.push_with(events, ahead).await
    }

    /// After a message was sent: the message's events and the recipient's notification,
    /// resolved together. A replayed send (nothing new written) pushes nothing.
    pub async fn message_sent(&self, sent: &SentMessage, ahead: Ahead) -> WriterPushReport {
        if !sent.created {
            return WriterPushReport::default();
        }
        let mut events = plan::message(&sent.message);
        if let Some(notification) = &sent.notification {
            events.extend(plan::notification(notification));
        }
        self.push_with(events, ahead).await
    }

    /// After a write that may have notified someone (like, comment, follow…).
    pub async fn notified(
        &self,
        notification: Option<&Notification>,
        ahead: Ahead,
    ) -> WriterPushReport {
        match notification {
            Some(notification) => {
                self.push_with(plan::notification(notification), ahead)
                    .await
            }
            None => WriterPushReport::default(),
        }
    }

    /// Pushes `events` within the budget; never fails (what it could not deliver is the
    /// router's, as it always was).
    pub async fn push(&self, events: Vec<WriterEvent>) -> WriterPushReport {
        self.push_with(events, Ahead::none()).await
    }

    /// [`WriterPush::push`] over connections read ahead (read now what `ahead` lacks).
    pub async fn push_with(&self, events: Vec<WriterEvent>, ahead: Ahead) -> WriterPushReport {
        let Some(parts) = &self.parts else {
            return WriterPushReport::left(&events);
        };
        if events.is_empty() {
            return WriterPushReport::default();
        }
        let started = Instant::now();
        let pushed = parts.push(&events, ahead);
        let mut report = match tokio::time::timeout(parts.limits.budget, pushed).await {
            Ok(Ok(report)) => report,
            Ok(Err(error)) => {
                tracing::warn!(error = %error, causes = %cause_chain(&error), "writer push failed; left to the router");
                WriterPushReport::left(&events)
            }
            Err(_) => {
                tracing::warn!(
                    budget_ms = parts.limits.budget.as_millis(),
                    "writer push over its budget; left to the router"
                );
                WriterPushReport::left(&events)
            }
        };
        report.elapsed = started.elapsed();
        tracing::info!(
            delivered = report.delivered.len(),
            left_to_router = report.left_to_router.len(),
            connections = report.connections,
            elapsed_ms = report.elapsed.as_secs_f64() * 1000.0,
            "writer push"
        );
        report
    }
}

impl Parts {
    async fn push(&self, events: &[WriterEvent], ahead: Ahead) -> Result<WriterPushReport> {
        let audiences = match ahead
            .0
            .and_then(|resolution| resolution.connections(events))
        {
            Some(audiences) => audiences,
            None => self
                .read(events.iter().flat_map(|event| &event.audience))
                .await?
                .connections(events)
                .ok_or_else(|| crate::Error::invariant("an audience read is missing"))?,
        };
        let outcomes = join_all(
            events
                .iter()
                .zip(&audiences)
                .map(|(event, connections)| self.push_one(&event.event, connections)),
        )
        .await;
        let mut report = WriterPushReport::default();
        for (event, outcome) in events.iter().zip(outcomes) {
            let id = event.event.event_id;
            match outcome {
                EventOutcome::Delivered { connections } => {
                    report.delivered.push(id);
                    report.connections += connections;
                }
                EventOutcome::Left { connections } => {
                    report.left_to_router.push(id);
                    report.connections += connections;
                }
            }
        }
        Ok(report)
    }

    /// The connections of `audiences`, in one round of concurrent reads: the connections
    /// of every user named by a `Users` audience in one `BatchGetItem`, each other distinct
    /// audience (a post's followers) through the resolver.
    async fn read<'a>(&self, audiences: impl Iterator<Item = &'a Audience>) -> Result<Resolution> {
        let mut users = BTreeSet::new();
        let mut others: Vec<Audience> = Vec::new();
        for audience in audiences {
            match audience {
                Audience::Users(listed) => users.extend(listed.iter().copied()),
                other if !others.contains(other) => others.push(other.clone()),
                _ => {}
            }
        }
        let users: Vec<UserId> = users.into_iter().collect();
        let read_users = async {
            if users.is_empty() {
                return Ok(HashMap::new());
            }
            self.store.connections_of_users(&users).await
        };
        // The follower bound again, on the follower index itself: the profile's count is a
        // counter that can lag a burst of follows, and the response must not wait on reading
        // a big audience. An author found over it is left to the router (no entry below).
        let max_followers = usize::try_from(self.limits.max_followers).unwrap_or(usize::MAX);
        let online = OnlineSnapshot::default();
        let read_others = try_join_all(others.iter().map(|audience| {
            self.resolver
                .resolve_within(std::slice::from_ref(audience), max_followers, &online)
        }));
        let (by_user, resolved) = futures::try_join!(read_users, read_others)?;
        Ok(Resolution {
            users: users.into_iter().collect(),
            by_user,
            by_audience: others
                .into_iter()
                .zip(resolved)
                .filter_map(|(audience, resolution)| match resolution {
                    FanoutResolution::Connections(ids) => Some((audience, ids)),
                    FanoutResolution::Deferred => None,
                })
                .collect(),
        })
    }

    /// Posts one event to its connections and marks it delivered when every one got it.
    async fn push_one(&self, event: &Event, connections: &[String]) -> EventOutcome {
        let event_id = event.event_id;
        if connections.is_empty() {
            // Nobody online: the router's own resolution is as cheap as a marker write.
            return EventOutcome::Left { connections: 0 };
        }
        if connections.len() > self.limits.max_connections {
            tracing::debug!(%event_id, connections = connections.len(), "writer push: audience over the bound; left to the router");
            return EventOutcome::Left { connections: 0 };
        }
        let count = connections.len();
        let report = match self.direct.deliver(event, connections).await {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(%event_id, error = %error, "writer push could not post; left to the router");
                return EventOutcome::Left { connections: count };
            }
        };
        // The marker lists who was reached, so the router pushes only to the rest: after a
        // partial failure the connections that got the event do not get it twice.
        let failed: HashSet<&String> = report
            .retryable_failures
            .iter()
            .chain(&report.refused)
            .collect();
        let reached: Vec<String> = connections
            .iter()
            .filter(|connection| !failed.contains(connection))
            .cloned()
            .collect();
        if reached.is_empty() {
            return EventOutcome::Left { connections: count };
        }
        let complete = !report.needs_retry();
        if !complete {
            tracing::warn!(%event_id, failed = failed.len(), "writer push did not reach every connection; the router pushes to the rest");
        }
        match self
            .store
            .mark_delivered(event_id, &reached, self.clock.now())
            .await
        {
            Ok(()) if !complete => EventOutcome::Left { connections: count },
            Ok(()) => EventOutcome::Delivered { connections: count },
            Err(error) => {
                // Delivered, but the router does not know: it pushes again, clients dedupe.
                tracing::warn!(%event_id, error = %error, "writer push could not mark the event delivered");
                EventOutcome::Left { connections: count }
            }
        }
    }
}
