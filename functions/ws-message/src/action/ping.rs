//! `ping`: the keep-alive, answered with `pong {server_time}`. Like every action it needs a
//! registered connection, so it is also the client's check that the push tier still knows
//! its connection.

use serde::Deserialize;
use shared::events::{Event, EventBody};

use super::Received;

/// Keep-alive; answered with `pong`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ping {}

impl Ping {
    pub fn apply(self, received: Received) -> Event {
        Event::ephemeral(
            EventBody::Pong {
                server_time: received.at,
                request_id: received.request_id,
            },
            received.at,
        )
    }
}
