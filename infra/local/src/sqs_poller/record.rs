//! What a received message becomes: its Lambda event record, and when a modelled latency
//! lets it be delivered.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};

/// Milliseconds since the epoch.
pub(super) fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The message's `SentTimestamp` (epoch milliseconds), if the receive asked for it.
pub(super) fn sent_timestamp_ms(message: &Message) -> Option<u64> {
    message
        .attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()
}

/// Splits messages with their due times (epoch ms) into invocations: those due by `now`
/// together at once, each later one alone after its wait.
pub(super) fn delivery_groups<T>(due: Vec<(u64, T)>, now: u64) -> Vec<(Duration, Vec<T>)> {
    let mut ready = Vec::new();
    let mut later = Vec::new();
    for (at, item) in due {
        if at <= now {
            ready.push(item);
        } else {
            later.push((Duration::from_millis(at - now), vec![item]));
        }
    }
    let mut groups = Vec::with_capacity(later.len() + 1);
    if !ready.is_empty() {
        groups.push((Duration::ZERO, ready));
    }
    groups.extend(later);
    groups
}

pub(super) use lambda_local::sqs::sqs_record;
