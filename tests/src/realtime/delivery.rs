//! Delivery checks: bounded waits, and what a socket kept compared with what it should
//! have.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::WsClient;

/// Waits (bounded) until `condition` holds, polling every 50 ms.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a delivery is about: its type and the id of its item (`data.id`: the post,
/// comment, message or notification).
pub type DeliveryKey = (String, String);

/// The keys of `deliveries` with how often each occurs. `like_updated` is left out: the
/// router may coalesce the likes of one post into one event per stream batch, so its count
/// is not a fixed number (check its last `like_count` instead).
pub fn delivery_counts(deliveries: &[Value]) -> BTreeMap<DeliveryKey, usize> {
    let mut counts = BTreeMap::new();
    for event in deliveries {
        let kind = event["type"].as_str().unwrap_or_default();
        if kind == "like_updated" {
            continue;
        }
        let id = event["data"]["id"].as_str().unwrap_or_default();
        *counts.entry((kind.to_owned(), id.to_owned())).or_insert(0) += 1;
    }
    counts
}

/// Compares what a socket kept (its [`WsClient::deliveries`] minus `baseline` event ids)
/// with `expected`: `Err` lists what is missing, extra, or came as two different events.
pub fn check_deliveries(
    socket: &WsClient,
    baseline: &HashSet<String>,
    expected: &BTreeSet<DeliveryKey>,
) -> Result<(), String> {
    let kept: Vec<Value> = socket
        .deliveries()
        .into_iter()
        .filter(|event| {
            event["event_id"]
                .as_str()
                .is_none_or(|id| !baseline.contains(id))
        })
        .collect();
    let counts = delivery_counts(&kept);
    let missing: Vec<&DeliveryKey> = expected
        .iter()
        .filter(|k| !counts.contains_key(k))
        .collect();
    let extra: Vec<&DeliveryKey> = counts.keys().filter(|k| !expected.contains(k)).collect();
    let twice: Vec<(&DeliveryKey, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let errors = socket.events_of_type("error");
    if missing.is_empty() && extra.is_empty() && twice.is_empty() && errors.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}: missing {missing:?}; extra {extra:?}; under two event ids {twice:?}; errors {errors:?}",
        socket.label
    ))
}

/// The event ids a socket has received so far (what later checks leave out).
pub fn event_ids(socket: &WsClient) -> HashSet<String> {
    socket
        .events()
        .iter()
        .filter_map(|event| event["event_id"].as_str().map(str::to_owned))
        .collect()
}
