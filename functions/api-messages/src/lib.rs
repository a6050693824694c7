//! `api-messages`: direct messages, conversations and message requests.
//!
//! Every route acts on the caller's own side of a thread: the thread partition is derived
//! from the caller and the path's user, so no id a client sends can reach another pair's
//! messages. Conversations and requests involving a user in a block relation with the
//! caller are not listed; sending across a block is refused by the send transaction itself.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use shared::domain::{rfc3339, Message, UserId, UserSummary};
use shared::error::{Error, Result};
use shared::fanout::Audience;
pub use shared::http::lambda_function;
use shared::http::{
    with_user_summaries, ApiRequest, ApiResponse, Router, WriterRoutes, WriterState,
};
use shared::store::NewMessage;
use shared::store::Page;
use shared::store::RateLimitedAction;

/// Everything a handler needs, built once per cold start (the parts every writing REST
/// function holds; the routes are [`MessageRoutes`]).
pub type State = WriterState<MessageRoutes>;

/// The routes of `api-messages`.
pub struct MessageRoutes;

impl WriterRoutes for MessageRoutes {
    fn router() -> Router<State> {
        Router::new()
            .route(Method::GET, "/conversations", list_conversations)
            .route(
                Method::GET,
                "/conversations/{user_id}/messages",
                list_messages,
            )
            .route(
                Method::POST,
                "/conversations/{user_id}/messages",
                send_message,
            )
            .route(Method::POST, "/conversations/{user_id}/read", mark_read)
            .route(Method::GET, "/message-requests", list_message_requests)
            .route(
                Method::POST,
                "/message-requests/{user_id}/accept",
                accept_request,
            )
            .route(
                Method::POST,
                "/message-requests/{user_id}/reject",
                reject_request,
            )
    }
}

/// The routes that read the request body, for [`read_body`].
#[doc(hidden)]
pub const BODY_ROUTES: &[&str] = &[
    "/conversations/{user_id}/messages",
    "/conversations/{user_id}/read",
    "/message-requests/{user_id}/accept",
    "/message-requests/{user_id}/reject",
];

/// Reads and validates `request`'s body exactly as the handler of `route` does, without
/// the handler's I/O. For the fuzz target `rest_body` (fuzz/); not part of the function's API.
#[doc(hidden)]
pub fn read_body(route: &str, request: &ApiRequest) -> Result<()> {
    match route {
        "/conversations/{user_id}/messages" => {
            // Any two distinct ids: the body is what is read.
            let (from, to) = (UserId::new(), UserId::new());
            SendMessageBody::read(request, from, to, DateTime::UNIX_EPOCH).map(drop)
        }
        "/conversations/{user_id}/read"
        | "/message-requests/{user_id}/accept"
        | "/message-requests/{user_id}/reject" => request.expect_no_body(),
        other => Err(Error::invariant(format!("{other} reads no body"))),
    }
}

// ---- bodies and views ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessageBody {
    text: String,
    #[serde(default)]
    client_message_id: Option<String>,
}

impl SendMessageBody {
    /// The message a `POST /conversations/{user_id}/messages` body asks to send.
    fn read(
        request: &ApiRequest,
        from: UserId,
        to: UserId,
        now: DateTime<Utc>,
    ) -> Result<NewMessage> {
        let body: Self = request.json()?;
        NewMessage::new(from, to, &body.text, body.client_message_id.as_deref(), now)
    }
}

/// A conversation as the caller sees it.
#[derive(Debug, Serialize)]
struct ConversationView {
    other_user: UserSummary,
    last_message: Option<Message>,
    unread_count: i64,
    #[serde(with = "rfc3339")]
    updated_at: DateTime<Utc>,
}

/// A message request waiting for the caller.
#[derive(Debug, Serialize)]
struct MessageRequestView {
    other_user: UserSummary,
    last_message: Option<Message>,
    #[serde(with = "rfc3339")]
    created_at: DateTime<Utc>,
}

/// The user of a `{user_id}` path: a UUID, and never the caller.
fn other_user(request: &ApiRequest, caller: UserId) -> Result<UserId> {
    let other = request.path_id("user_id")?;
    if other == caller {
        return Err(Error::validation("user_id must be another user"));
    }
    Ok(other)
}

/// [`with_user_summaries`] over this function's stores.
async fn with_other_users<T, V>(
    state: &State,
    caller: UserId,
    page: Page<T>,
    other: impl Fn(&T) -> UserId,
    view: impl Fn(T, UserSummary) -> V,
) -> Result<Page<V>> {
    with_user_summaries(&state.store, caller, page, other, view).await
}

// ---- handlers ----------------------------------------------------------------------------

async fn list_conversations(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let page = request.page()?;
    let conversations = state.store.conversations(caller, &page).await?;
    let views = with_other_users(
        &state,
        caller,
        conversations,
        |c| c.other_user_id,
        |c, other_user| ConversationView {
            other_user,
            last_message: c.last_message,
            unread_count: c.unread_count,
            updated_at: c.updated_at,
        },
    )
    .await?;
    ApiResponse::ok(views)
}

async fn list_messages(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let other = other_user(&request, caller)?;
    let page = request.page()?;
    if state.store.get_user(other).await?.is_none() {
        return Err(Error::not_found("user not found"));
    }
    // The thread is the caller's with `other`: nobody else's messages are reachable.
    ApiResponse::ok(state.store.messages(caller, other, &page).await?)
}

/// `201` with the new message; `200` with the message stored earlier when the
/// `client_message_id` was already used (a retry stores nothing new).
async fn send_message(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let other = other_user(&request, caller)?;
    let now = state.clock.now();
    let new = SendMessageBody::read(&request, caller, other, now)?;
    state
        .budgets
        .spend(caller, RateLimitedAction::Message)
        .await?;
    // Both sides' connections are read while the message commits.
    let both_sides = [Audience::Users(vec![other, caller])];
    let (sent, ahead) = futures::join!(
        state.store.send_message(new),
        state.writer.resolve_ahead(&both_sides)
    );
    let sent = sent?;
    tracing::info!(
        message_id = %sent.message.id,
        status = ?sent.message.status,
        created = sent.created,
        "message sent"
    );
    state.writer.message_sent(&sent, ahead).await;
    if sent.created {
        ApiResponse::created(sent.message)
    } else {
        ApiResponse::ok(sent.message)
    }
}

async fn mark_read(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    request.expect_no_body()?;
    let other = other_user(&request, caller)?;
    state.store.mark_conversation_read(caller, other).await?;
    Ok(ApiResponse::no_content())
}

async fn list_message_requests(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let page = request.page()?;
    let requests = state.store.message_requests(caller, &page).await?;
    let views = with_other_users(
        &state,
        caller,
        requests,
        |r| r.from,
        |r, other_user| MessageRequestView {
            other_user,
            last_message: r.last_message,
            created_at: r.created_at,
        },
    )
    .await?;
    ApiResponse::ok(views)
}

async fn accept_request(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    request.expect_no_body()?;
    let from = other_user(&request, caller)?;
    state.store.accept_message_request(caller, from).await?;
    tracing::info!(%from, "message request accepted");
    Ok(ApiResponse::no_content())
}

async fn reject_request(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    request.expect_no_body()?;
    let from = other_user(&request, caller)?;
    state.store.reject_message_request(caller, from).await?;
    tracing::info!(%from, "message request rejected");
    Ok(ApiResponse::no_content())
}
