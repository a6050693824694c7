//! `api-users`: profiles, username search, follows, follow requests and blocks.
//!
//! | route | result |
//! |---|---|
//! | `GET /users/me` | 200 profile |
//! | `PATCH /users/me` | 200 profile; body `{display_name?, bio?, is_private?, show_presence?}` with at least one field |
//! | `GET /users/{user_id}` | 200 profile + `relationship`; 404 if a block stands between the two |
//! | `GET /users?q=<prefix>` | 200 list of user summaries (case-insensitive username prefix) |
//! | `PUT /users/{user_id}/follow` | 200 `{"status":"following"\|"requested"}` (requested for private accounts); 409 `follow_limit_reached` at 5,000 followed accounts |
//! | `DELETE /users/{user_id}/follow` | 204 (unfollows and cancels a pending request) |
//! | `GET /users/{user_id}/followers`, `…/following` | 200 list of related users |
//! | `GET /follow-requests` | 200 list of related users (the caller's pending requests, oldest first) |
//! | `POST /follow-requests/{user_id}/accept`, `…/reject` | 204; accept: 409 `follow_limit_reached` if the requester follows 5,000 accounts (the request stays pending) |
//! | `PUT /users/{user_id}/block`, `DELETE /users/{user_id}/block` | 204 |
//! | `GET /blocks` | 200 list of related users |
//!
//! Follows, blocks and unblocks, and profile edits spend the caller's per-minute budget
//! (`RATE_LIMIT_FOLLOWS_PER_MINUTE`, `…_BLOCKS_…` for both block routes,
//! `…_PROFILE_EDITS_…`) right after authentication and input checks, before any read or
//! write: over it, 429 with `Retry-After`.
//!
//! Every route needs an access token. Follow requests and blocks are always the caller's
//! own: the routes take no owner id, so nobody can read or answer someone else's.
//!
//! Blocks hide everything both ways: a profile behind a block is a 404, search results and
//! other people's follower lists leave out accounts on the other side of a block of the
//! caller (those pages may therefore hold fewer than `limit` items; `next_cursor` stays
//! correct). Blocking also marks read the unread notifications either user has from the
//! other, which the notifications list hides, so the unread count matches the list.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use shared::domain::{self, Bio, DisplayName, Follow, Relationship, User, UserId, UserSummary};
use shared::error::{Error, Result};
pub use shared::http::lambda_function;
use shared::http::{
    caller_profile, with_user_summaries, ApiRequest, ApiResponse, Router, WriterRoutes, WriterState,
};
use shared::store::Page;
use shared::store::RateLimitedAction;
use shared::store::{ProfileUpdate, MAX_SEARCH_PREFIX};
use shared::visibility;

/// Everything a handler needs, built once per cold start (the parts every writing REST
/// function holds; the routes are [`UserRoutes`]).
pub type State = WriterState<UserRoutes>;

/// The routes of `api-users`.
pub struct UserRoutes;

impl WriterRoutes for UserRoutes {
    fn router() -> Router<State> {
        Router::new()
            .route(Method::GET, "/users/me", get_me)
            .route(Method::PATCH, "/users/me", update_me)
            .route(Method::GET, "/users", search_users)
            .route(Method::GET, "/users/{user_id}", get_user)
            .route(Method::PUT, "/users/{user_id}/follow", follow)
            .route(Method::DELETE, "/users/{user_id}/follow", unfollow)
            .route(Method::GET, "/users/{user_id}/followers", followers)
            .route(Method::GET, "/users/{user_id}/following", following)
            .route(Method::GET, "/follow-requests", follow_requests)
            .route(
                Method::POST,
                "/follow-requests/{user_id}/accept",
                accept_follow_request,
            )
            .route(
                Method::POST,
                "/follow-requests/{user_id}/reject",
                reject_follow_request,
            )
            .route(Method::PUT, "/users/{user_id}/block", block)
            .route(Method::DELETE, "/users/{user_id}/block", unblock)
            .route(Method::GET, "/blocks", blocks)
    }
}

/// The routes that read the request body, for [`read_body`].
#[doc(hidden)]
pub const BODY_ROUTES: &[&str] = &["/users/me"];

/// Reads and validates `request`'s body exactly as the handler of `route` does, without
/// the handler's I/O. For the fuzz target `rest_body` (fuzz/); not part of the function's API.
#[doc(hidden)]
pub fn read_body(route: &str, request: &ApiRequest) -> Result<()> {
    match route {
        "/users/me" => ProfilePatch::read(request).map(drop),
        other => Err(Error::invariant(format!("{other} reads no body"))),
    }
}

// ---- bodies and responses ------------------------------------------------------------------

/// `PATCH /users/me`. An explicit `null` means "leave unchanged", like an absent field.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilePatch {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    bio: Option<String>,
    #[serde(default)]
    is_private: Option<bool>,
    #[serde(default)]
    show_presence: Option<bool>,
}

impl ProfilePatch {
    /// The `PATCH /users/me` body, validated.
    fn read(request: &ApiRequest) -> Result<ProfileUpdate> {
        request.json::<Self>()?.validate()
    }

    fn validate(self) -> Result<ProfileUpdate> {
        let update = ProfileUpdate {
            display_name: self
                .display_name
                .as_deref()
                .map(DisplayName::parse)
                .transpose()?,
            bio: self.bio.as_deref().map(Bio::parse).transpose()?,
            is_private: self.is_private,
            show_presence: self.show_presence,
        };
        if update.is_empty() {
            // An empty patch is almost certainly a client bug; say so instead of a silent no-op.
            return Err(Error::validation(
                "set at least one of display_name, bio, is_private, show_presence",
            ));
        }
        Ok(update)
    }
}

/// Another user's profile as the caller sees it.
#[derive(Serialize)]
struct ProfileView {
    #[serde(flatten)]
    user: User,
    relationship: Relationship,
}

/// An entry of the followers, following, follow-request and block lists: the other user and
/// when the relation began.
#[derive(Debug, Serialize)]
struct RelatedUser {
    user: UserSummary,
    #[serde(with = "domain::rfc3339")]
    created_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct FollowStatus {
    status: &'static str,
}

// ---- helpers --------------------------------------------------------------------------------

/// The `{user_id}` of a route that acts on another user; acting on oneself is a 400.
fn other_user(request: &ApiRequest, caller: UserId, action: &str) -> Result<UserId> {
    let other = request.path_id("user_id")?;
    if other == caller {
        return Err(Error::validation(format!("you cannot {action} yourself")));
    }
    Ok(other)
}

/// The `?q=` of a search, lower-cased: 1–30 characters a username may contain.
fn search_prefix(request: &ApiRequest) -> Result<String> {
    let raw = request
        .query("q")
        .ok_or_else(|| Error::validation("q (a username prefix) is required"))?;
    let len = raw.chars().count();
    if !(1..=MAX_SEARCH_PREFIX).contains(&len)
        || !raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::validation(format!(
            "q must be 1–{MAX_SEARCH_PREFIX} letters, digits or underscores"
        )));
    }
    Ok(raw.to_ascii_lowercase())
}

/// Turns a page of the caller's own relations into [`RelatedUser`]s: `other` picks the other
/// user and the relation's start from each entry; users without a profile are left out.
/// Unlike [`with_user_summaries`] nothing is filtered by blocks: the block list is made of
/// exactly those users.
async fn related_users<T>(
    state: &State,
    page: Page<T>,
    other: impl Fn(&T) -> (UserId, DateTime<Utc>),
) -> Result<Page<RelatedUser>> {
    let entries: Vec<(UserId, DateTime<Utc>)> = page.items.iter().map(other).collect();
    let ids: Vec<UserId> = entries.iter().map(|(id, _)| *id).collect();
    let profiles: HashMap<UserId, User> = state.store.get_users(&ids).await?;
    Ok(Page {
        items: entries
            .into_iter()
            .filter_map(|(id, created_at)| {
                profiles.get(&id).map(|user| RelatedUser {
                    user: UserSummary::from(user),
                    created_at,
                })
            })
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// Which follow list of a user is asked for.
#[derive(Clone, Copy)]
enum FollowList {
    Followers,
    Following,
}

/// `GET /users/{user_id}/followers|following`: visible to the owner and, for a private
/// account, only to approved followers (403 otherwise, 404 behind a block). Accounts on the
/// other side of a block of the caller are left out (of someone else's list: a block ends
/// the follows of the caller's own both ways).
async fn follow_list(state: &State, request: &ApiRequest, list: FollowList) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(request)?;
    let owner = request.path_id("user_id")?;
    let page = request.page()?;
    let store = state.store.as_ref();
    visibility::of_author(store, caller, owner)
        .await?
        .require_visible("this follow list")?;
    let (follows, other): (_, fn(&Follow) -> UserId) = match list {
        FollowList::Followers => (store.followers(owner, &page).await?, |f| f.follower_id),
        FollowList::Following => (store.following(owner, &page).await?, |f| f.followee_id),
    };
    let related = with_user_summaries(store, caller, follows, other, |f, user| RelatedUser {
        user,
        created_at: f.created_at,
    })
    .await?;
    ApiResponse::ok(related)
}

// ---- profiles and search --------------------------------------------------------------------

async fn get_me(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    ApiResponse::ok(caller_profile(state.store.as_ref(), caller).await?)
}

async fn update_me(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let update = ProfilePatch::read(&request)?;
    state
        .budgets
        .spend(caller, RateLimitedAction::ProfileEdit)
        .await?;
    let user = state
        .store
        .update_profile(caller, &update)
        .await
        .map_err(|error| match error {
            Error::NotFound(_) => Error::unauthorized("the account of this token no longer exists"),
            other => other,
        })?;
    tracing::info!(user_id = %caller, "profile updated");
    ApiResponse::ok(user)
}

async fn get_user(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let id = request.path_id("user_id")?;
    let (user, relationship) = if id == caller {
        (
            caller_profile(state.store.as_ref(), caller).await?,
            Relationship::default(),
        )
    } else {
        let (user, relationship) = futures::try_join!(
            state.store.get_user(id),
            state.store.relationship(caller, id)
        )?;
        let user = user
            .filter(|_| !visibility::blocked_either_way(&relationship))
            .ok_or_else(|| Error::not_found("user not found"))?;
        (user, relationship)
    };
    ApiResponse::ok(ProfileView { user, relationship })
}

async fn search_users(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let prefix = search_prefix(&request)?;
    let page = request.page()?;
    let (found, hidden) = futures::try_join!(
        state.store.search_usernames(&prefix, &page),
        state.store.block_set(caller)
    )?;
    let summaries = Page {
        items: found
            .items
            .into_iter()
            .filter(|user| !hidden.contains(&user.id))
            .collect::<Vec<_>>(),
        next_cursor: found.next_cursor,
    };
    ApiResponse::ok(summaries)
}

// ---- follows --------------------------------------------------------------------------------

async fn follow(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let target = other_user(&request, caller, "follow")?;
    let now = state.clock.now();
    state
        .budgets
        .spend(caller, RateLimitedAction::Follow)
        .await?;
    let (user, relationship) = futures::try_join!(
        state.store.get_user(target),
        state.store.relationship(caller, target)
    )?;
    let Some(user) = user.filter(|_| !visibility::blocked_either_way(&relationship)) else {
        return Err(Error::not_found("user not found"));
    };
    // Already following or requested: idempotent, nothing is written.
    let (status, notification) = if relationship.following {
        ("following", None)
    } else if relationship.requested {
        ("requested", None)
    } else if user.is_private {
        // The store re-checks blocks and existing follows in the request's transaction.
        let (requested, ahead) = futures::join!(
            state.store.request_follow(caller, target, now),
            state.writer.resolve_recipient(caller, target)
        );
        ("requested", Some((requested?.notification, ahead)))
    } else {
        // Blocks are re-checked by the follow transaction itself (404 if one appeared).
        let (followed, ahead) = futures::join!(
            state.store.follow(caller, target, now),
            state.writer.resolve_recipient(caller, target)
        );
        ("following", Some((followed?.notification, ahead)))
    };
    tracing::info!(user_id = %caller, %target, status, "follow");
    if let Some((notification, ahead)) = notification {
        state.writer.notified(notification.as_ref(), ahead).await;
    }
    ApiResponse::ok(FollowStatus { status })
}

async fn unfollow(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let target = other_user(&request, caller, "unfollow")?;
    let (unfollowed, cancelled) = futures::try_join!(
        state.store.unfollow(caller, target),
        state.store.cancel_follow_request(caller, target)
    )?;
    tracing::info!(user_id = %caller, %target, unfollowed, cancelled, "unfollow");
    Ok(ApiResponse::no_content())
}

async fn followers(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    follow_list(&state, &request, FollowList::Followers).await
}

async fn following(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    follow_list(&state, &request, FollowList::Following).await
}

// ---- follow requests (always the caller's own) ------------------------------------------------

async fn follow_requests(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let page = request.page()?;
    let requests = state.store.follow_requests(caller, &page).await?;
    let related = related_users(&state, requests, |r| (r.requester_id, r.created_at)).await?;
    ApiResponse::ok(related)
}

async fn accept_follow_request(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    // Nobody can ask to follow themself; without this check the accept's transaction would
    // name the same items twice, which DynamoDB refuses (a 500).
    let requester = other_user(&request, caller, "accept a follow request from")?;
    let (accepted, ahead) = futures::join!(
        state
            .store
            .accept_follow_request(caller, requester, state.clock.now()),
        state.writer.resolve_recipient(caller, requester)
    );
    let accepted = accepted?;
    tracing::info!(user_id = %caller, %requester, "follow request accepted");
    state
        .writer
        .notified(accepted.notification.as_ref(), ahead)
        .await;
    Ok(ApiResponse::no_content())
}

async fn reject_follow_request(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let requester = other_user(&request, caller, "reject a follow request from")?;
    state.store.reject_follow_request(caller, requester).await?;
    tracing::info!(user_id = %caller, %requester, "follow request rejected");
    Ok(ApiResponse::no_content())
}

// ---- blocks (always the caller's own) ---------------------------------------------------------

async fn block(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let target = other_user(&request, caller, "block")?;
    state
        .budgets
        .spend(caller, RateLimitedAction::Block)
        .await?;
    state.store.block(caller, target, state.clock.now()).await?;
    // The notifications list hides both users' notifications from each other from now on;
    // the unread count must agree. Not part of the block's transaction (it may touch many
    // items), but the block is idempotent, so a retried PUT after a failure here finishes it.
    // Each user's sockets leave the other's post and presence rooms (the send-time check
    // already stops those events; this ends the memberships too). Same retry reasoning.
    let (hidden_for_caller, hidden_for_target, rooms_left, rooms_left_by_target) = tokio::try_join!(
        state.store.mark_read_from(caller, target),
        state.store.mark_read_from(target, caller),
        visibility::leave_rooms_of(&state.store, caller, target),
        visibility::leave_rooms_of(&state.store, target, caller),
    )?;
    tracing::info!(
        user_id = %caller,
        %target,
        hidden_for_caller,
        hidden_for_target,
        rooms_left = rooms_left + rooms_left_by_target,
        "blocked"
    );
    Ok(ApiResponse::no_content())
}

async fn unblock(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let target = other_user(&request, caller, "unblock")?;
    state
        .budgets
        .spend(caller, RateLimitedAction::Block)
        .await?;
    state.store.unblock(caller, target).await?;
    tracing::info!(user_id = %caller, %target, "unblocked");
    Ok(ApiResponse::no_content())
}

async fn blocks(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let page = request.page()?;
    let blocks = state.store.blocks(caller, &page).await?;
    let related = related_users(&state, blocks, |b| (b.blocked_id, b.created_at)).await?;
    ApiResponse::ok(related)
}
