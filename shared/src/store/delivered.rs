//! Delivery markers: which connections the writer push already reached with an event.
//!
//! `PUSHED#{event_id}` / `PUSHED` (see [`keys::delivery_marker`]) lists the connections the
//! REST function that wrote the event's source reached right after its commit
//! (`crate::writer_push`): delivered, or found gone. The stream router reads the markers of a
//! batch's events with [`DynamoStore::reached_connections`] (one `BatchGetItem` per
//! 100 events) and pushes each event only to the connections not listed — none at all when
//! the writer reached the whole audience, only the failed ones after a partial failure, so
//! no connection gets the same event twice.
//!
//! The stream router writes one too when a record's push still fails for some connections:
//! it reports the record (so Lambda redelivers it, and holds back the item's later records:
//! order) and marks the connections already reached, so the redelivery pushes only to the
//! rest. `held_back` counts those rounds, bounding how long one item may wait
//! ([`DeliveryProgress`]).
//!
//! A marker is only an optimisation: the stream stays the guaranteed path, so a missing
//! marker (never written, write failed, expired) costs a duplicate push that clients drop
//! by `event_id`, never a lost event. Markers expire after [`DELIVERY_MARKER_TTL`] — long
//! after the stream record (p99 well under a second behind) reaches the router; a record
//! retried later than that is pushed again, harmlessly.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::dynamo::{from_item, to_item, MAX_BATCH_GET};
use super::keys::{self, Key};
use super::DynamoStore;
use crate::error::Result;

/// How long a marker lives (TTL, `expires_at`).
pub const DELIVERY_MARKER_TTL: Duration = Duration::from_secs(3600);

/// `BatchGetItem` requests of one [`DynamoStore::delivered_among`] in flight at once.
const MARKER_READ_CONCURRENCY: usize = 4;

/// What the markers say of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryProgress {
    /// Connections already reached (delivered or found gone).
    pub reached: HashSet<String>,
    /// How many times the stream router reported the event's record failed because some
    /// connections were still failing.
    pub held_back: u32,
}

/// The marker item (besides its key).
#[derive(Debug, Serialize, Deserialize)]
struct DeliveryMarkerRecord {
    event_id: Uuid,
    /// How many connections the writer push reached (delivered or found gone).
    connections: u64,
    /// Which ones.
    #[serde(default)]
    connection_ids: Vec<String>,
    #[serde(with = "crate::domain::rfc3339")]
    delivered_at: DateTime<Utc>,
    /// Rounds the stream router held the event's record back (0 for the writer push).
    #[serde(default)]
    held_back: u32,
    /// Epoch seconds (TTL).
    expires_at: i64,
    entity: String,
}

/// The `entity` attribute of a marker (what the stream filter leaves out).
pub const DELIVERY_MARKER_ENTITY: &str = "delivery_marker";

impl DynamoStore {
    /// Records that `event_id` reached the connections `reached` (delivered or gone) at
    /// `delivered_at`. Idempotent (a later write just replaces the marker).
    pub async fn mark_delivered(
        &self,
        event_id: Uuid,
        reached: &[String],
        delivered_at: DateTime<Utc>,
    ) -> Result<()> {
        self.put_marker(event_id, reached, 0, delivered_at).await
    }

    /// Records that the stream router held `event_id`'s record back (reported it failed)
    /// for the `held_back`-th time, having reached `reached` so far.
    pub async fn mark_held_back(
        &self,
        event_id: Uuid,
        reached: &[String],
        held_back: u32,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.put_marker(event_id, reached, held_back, at).await
    }

    /// Which of `event_ids` have a delivery marker.
    pub async fn delivered_among(&self, event_ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        Ok(self
            .reached_connections(event_ids)
            .await?
            .into_keys()
            .collect())
    }

    /// The connections each of `event_ids` already reached, for those with a marker: one
    /// consistent `BatchGetItem` per 100 distinct ids, a few in flight at once.
    pub async fn reached_connections(
        &self,
        event_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, HashSet<String>>> {
        Ok(self
            .delivery_progress(event_ids)
            .await?
            .into_iter()
            .map(|(event_id, progress)| (event_id, progress.reached))
            .collect())
    }

    /// The markers of `event_ids` (those that have one), as [`DeliveryProgress`].
    pub async fn delivery_progress(
        &self,
        event_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, DeliveryProgress>> {
        let unique: HashSet<Uuid> = event_ids.iter().copied().collect();
        let keys: Vec<Key> = unique.into_iter().map(keys::delivery_marker).collect();
        let chunks: Vec<Vec<Key>> = keys.chunks(MAX_BATCH_GET).map(<[Key]>::to_vec).collect();
        let table = &self.table;
        let found: Vec<Vec<_>> = futures::stream::iter(chunks)
            .map(|chunk| async move { table.batch_get(&chunk).await })
            .buffer_unordered(MARKER_READ_CONCURRENCY)
            .try_collect()
            .await?;
        found
            .into_iter()
            .flatten()
            .map(|item| {
                from_item::<DeliveryMarkerRecord>(item).map(|marker| {
                    let progress = DeliveryProgress {
                        reached: marker.connection_ids.into_iter().collect(),
                        held_back: marker.held_back,
                    };
                    (marker.event_id, progress)
                })
            })
            .collect()
    }
}

impl DynamoStore {
    async fn put_marker(
        &self,
        event_id: Uuid,
        reached: &[String],
        held_back: u32,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let ttl = i64::try_from(DELIVERY_MARKER_TTL.as_secs()).unwrap_or(i64::MAX);
        let record = DeliveryMarkerRecord {
            event_id,
            connections: u64::try_from(reached.len()).unwrap_or(u64::MAX),
            connection_ids: reached.to_vec(),
            delivered_at: at,
            held_back,
            expires_at: at.timestamp().saturating_add(ttl),
            entity: DELIVERY_MARKER_ENTITY.to_owned(),
        };
        self.table
            .put(to_item(&keys::delivery_marker(event_id), &record)?)
            .await
    }
}
