//! What a client asks for: one enum, one file per action, each with its `apply`.
//!
//! A frame's action arrives parsed ([`crate::frame`]); [`Action::apply`] only matches and
//! hands the action what it answers ([`Received`]: the caller's registered connection, the
//! frame's `request_id`, the time it arrived).

mod ping;
mod resume;
mod subscribe;
mod typing;
mod unsubscribe;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::domain::Connection;
use shared::error::Result;
use shared::events::Event;

pub use ping::Ping;
pub use resume::Resume;
pub use subscribe::Subscribe;
pub use typing::{Typing, TypingLimiter, TYPING_INTERVAL};
pub use unsubscribe::Unsubscribe;

use crate::frame::Route;
use crate::State;

/// What a client asks for. Each variant's fields deny unknown ones: the action is never
/// guessed from loose JSON.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Typing(Typing),
    Ping(Ping),
    Resume(Resume),
}

/// The frame an action answers: the caller's registered connection, the frame's
/// `request_id` (echoed in the reply) and when it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub caller: Connection,
    pub request_id: Option<String>,
    pub at: DateTime<Utc>,
}

impl Action {
    /// The route API Gateway selects for this action.
    pub fn route(&self) -> Route {
        match self {
            Self::Subscribe(_) => Route::Subscribe,
            Self::Unsubscribe(_) => Route::Unsubscribe,
            Self::Typing(_) => Route::Typing,
            Self::Ping(_) => Route::Ping,
            Self::Resume(_) => Route::Resume,
        }
    }

    /// Whether API Gateway could have delivered this action on `route`: its own route, or
    /// `$default` (a stage whose template lacks the action route still works).
    pub fn arrives_on(&self, route: Route) -> bool {
        route == Route::Default || route == self.route()
    }

    /// Runs the action; `Ok(None)` when there is nothing to reply.
    pub async fn apply(self, state: &State, received: Received) -> Result<Option<Event>> {
        match self {
            Self::Ping(ping) => Ok(Some(ping.apply(received))),
            Self::Subscribe(subscribe) => subscribe.apply(state, received).await.map(Some),
            Self::Unsubscribe(unsubscribe) => unsubscribe.apply(state, received).await.map(Some),
            Self::Typing(typing) => typing.apply(state, &received.caller).await.map(|()| None),
            Self::Resume(resume) => resume.apply(state, received).await,
        }
    }
}
