//! `unsubscribe {channel}`: leaves a channel; idempotent (leaving a channel never joined is
//! answered the same way).

use serde::Deserialize;
use shared::error::Result;
use shared::events::{Channel, Event, EventBody};

use super::Received;
use crate::State;

/// Leave a channel (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unsubscribe {
    pub channel: String,
}

impl Unsubscribe {
    /// Removes the membership; the reply is `unsubscribed {channel}`.
    pub async fn apply(self, state: &State, received: Received) -> Result<Event> {
        let caller = &received.caller;
        let channel = Channel::parse(&self.channel)?.to_string();
        state
            .store
            .unsubscribe(&caller.connection_id, &channel)
            .await?;
        Ok(Event::ephemeral(
            EventBody::Unsubscribed {
                channel,
                request_id: received.request_id,
            },
            received.at,
        ))
    }
}
