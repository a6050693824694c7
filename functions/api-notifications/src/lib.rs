//! `api-notifications`: the caller's notifications and their unread count, and
//! `GET /events?since=`, the socket-less catch-up (the same replay as the WebSocket
//! `resume`: `shared::replay`).
//!
//! Marking read (one or all) spends the caller's per-minute budget
//! (`RATE_LIMIT_MARK_READS_PER_MINUTE`) before it writes: over it, 429 with `Retry-After`.
//!
//! Notifications live in the caller's own partition, so every route reads or writes only
//! the caller's; an id of someone else's notification is simply not found. Notifications
//! whose actor is now in a block relation with the caller are not listed (and the block
//! marked them read, in `api-users`, so the unread count agrees).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::Method;
use serde::Serialize;
use serde_json::json;
use shared::auth::TokenService;
use shared::aws::DynamoClients;
use shared::clock::Clock;
use shared::domain::{rfc3339, CommentId, NotificationId, NotificationKind, PostId, UserSummary};
use shared::error::Result;
use shared::events::Event;
pub use shared::http::lambda_function;
use shared::http::{with_user_summaries, ApiParts, ApiRequest, ApiResponse, RestState, Router};
use shared::replay;
use shared::store::DynamoStore;
use shared::store::{Budgets, RateLimitedAction};

/// Everything a handler needs, built once per cold start.
pub struct State {
    /// Notifications, with the profiles and blocks they are shown through, and the messages
    /// and feed count of `GET /events`.
    store: Arc<DynamoStore>,
    budgets: Budgets,
    tokens: TokenService,
    clock: Arc<dyn Clock>,
}

impl RestState for State {
    type Clients = DynamoClients;

    fn from_parts(parts: ApiParts, _clients: &DynamoClients) -> Result<Self> {
        Ok(Self {
            store: parts.store.clone(),
            budgets: parts.budgets(),
            tokens: parts.tokens,
            clock: parts.clock,
        })
    }

    fn router() -> Router<Self> {
        Router::new()
            .route(Method::GET, "/notifications", list_notifications)
            .route(Method::GET, "/notifications/unread-count", unread_count)
            .route(
                Method::POST,
                "/notifications/{notification_id}/read",
                mark_read,
            )
            .route(Method::POST, "/notifications/read-all", mark_all_read)
            .route(Method::GET, "/events", missed_events)
    }
}

/// The routes that read the request body, for [`read_body`].
#[doc(hidden)]
pub const BODY_ROUTES: &[&str] = &[
    "/notifications/{notification_id}/read",
    "/notifications/read-all",
];

/// Reads and validates `request`'s body exactly as the handler of `route` does, without
/// the handler's I/O. For the fuzz target `rest_body` (fuzz/); not part of the function's API.
#[doc(hidden)]
pub fn read_body(route: &str, request: &ApiRequest) -> Result<()> {
    match route {
        "/notifications/{notification_id}/read" | "/notifications/read-all" => {
            request.expect_no_body()
        }
        other => Err(shared::error::Error::invariant(format!(
            "{other} reads no body"
        ))),
    }
}

/// A notification as clients see it: the actor as a summary instead of an id.
#[derive(Debug, Serialize)]
struct NotificationView {
    id: NotificationId,
    #[serde(rename = "type")]
    kind: NotificationKind,
    actor: UserSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    post_id: Option<PostId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comment_id: Option<CommentId>,
    #[serde(with = "rfc3339")]
    created_at: DateTime<Utc>,
    read: bool,
}

async fn list_notifications(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let unread_only = request.query_flag("unread")?;
    let page = request.page()?;
    let notifications = state
        .store
        .notifications(caller, unread_only, &page)
        .await?;
    let views = with_user_summaries(
        &state.store,
        caller,
        notifications,
        |n| n.actor_id,
        |n, actor| NotificationView {
            id: n.id,
            kind: n.kind,
            actor,
            post_id: n.post_id,
            comment_id: n.comment_id,
            created_at: n.created_at,
            read: n.read,
        },
    )
    .await?;
    ApiResponse::ok(views)
}

async fn unread_count(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let count = state.store.unread_count(caller).await?;
    ApiResponse::ok(json!({ "count": count }))
}

async fn mark_read(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    request.expect_no_body()?;
    let notification = request.path_id("notification_id")?;
    state
        .budgets
        .spend(caller, RateLimitedAction::MarkRead)
        .await?;
    state.store.mark_read(caller, notification).await?;
    Ok(ApiResponse::no_content())
}

async fn mark_all_read(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    request.expect_no_body()?;
    state
        .budgets
        .spend(caller, RateLimitedAction::MarkRead)
        .await?;
    let marked = state.store.mark_all_read(caller).await?;
    tracing::info!(marked, "notifications marked read");
    ApiResponse::ok(json!({ "marked": marked }))
}

/// `GET /events`: what `resume` would replay, for clients that cannot hold a socket.
#[derive(Debug, Serialize)]
struct MissedEvents {
    /// Oldest first, exactly as the socket would have delivered them.
    events: Vec<Event>,
    /// Where the client is caught up to (the next `since`).
    cursor: uuid::Uuid,
    gap: bool,
    replayed: usize,
    feed_new_posts: u32,
}

async fn missed_events(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let since = request.query("since").ok_or_else(|| {
        shared::Error::validation("since is required: a cursor received in an event")
    })?;
    let replay = replay::collect(&state.store, caller, since, state.clock.now()).await?;
    tracing::info!(
        replayed = replay.replayed,
        gap = replay.gap,
        "missed events read"
    );
    ApiResponse::ok(MissedEvents {
        cursor: replay.position,
        gap: replay.gap,
        replayed: replay.replayed,
        feed_new_posts: replay.feed_new_posts,
        events: replay.events,
    })
}
