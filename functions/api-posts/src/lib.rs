//! `api-posts`: posts, the home feed, likes and comments.
//!
//! | route | who | result |
//! |---|---|---|
//! | `POST /posts` | anyone (rate limited) | 201 post |
//! | `GET /posts/{post_id}` | whoever may see the author | 200 post |
//! | `PATCH /posts/{post_id}` | the author, within 120 s | 200 post (`edited_at` set) |
//! | `DELETE /posts/{post_id}` | the author | 204 |
//! | `GET /feed` | the caller | 200 page of posts, newest first |
//! | `GET /users/{user_id}/posts` | whoever may see the author | 200 page of posts, newest first |
//! | `PUT /posts/{post_id}/like` | whoever may see the post (rate limited) | 200 `{liked: true, like_count, like_version}` |
//! | `DELETE /posts/{post_id}/like` | whoever may see the post (rate limited) | 200 `{liked: false, like_count, like_version}` |
//! | `GET /posts/{post_id}/comments` | whoever may see the post | 200 page of comments, oldest first |
//! | `POST /posts/{post_id}/comments` | whoever may see the post (rate limited) | 201 comment |
//! | `DELETE /posts/{post_id}/comments/{comment_id}` | the comment's or the post's author | 204 |
//!
//! What a caller may see is `shared::visibility`'s one policy (its table): a block either way
//! hides everything (404); a private account's posts are for itself and its approved
//! followers. A post the caller may not see is a 404 on every verb, edit and delete
//! included (its existence is not revealed); the post list of a private account the caller
//! does not follow is a 403. Comments of users in a block relation with the caller are left
//! out of the comment list.
//!
//! Rate limited routes spend the caller's per-minute budget (`RATE_LIMIT_*`; likes and
//! unlikes share one) right after authentication, before any read, write or push: over it,
//! 429 with `Retry-After`.
//!
//! Counters, idempotent likes and notifications are the store's job (`DynamoStore`): each
//! write is one DynamoDB transaction with its conditions.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use shared::domain::{
    self, Comment, CommentId, CommentText, MediaUrl, Post, PostId, PostText, User, UserId,
    UserSummary,
};
use shared::error::{Error, Result};
pub use shared::http::lambda_function;
use shared::http::{caller_profile, ApiRequest, ApiResponse, Router, WriterRoutes, WriterState};
use shared::store::page::Page;
use shared::store::RateLimitedAction;
use shared::store::{NewComment, NewPost, PostEdit};
use shared::visibility;

/// Everything a handler needs, built once per cold start (the parts every writing REST
/// function holds; the routes are [`PostRoutes`]).
pub type State = WriterState<PostRoutes>;

/// The routes of `api-posts`.
pub struct PostRoutes;

impl WriterRoutes for PostRoutes {
    fn router() -> Router<State> {
        Router::new()
            .route(Method::POST, "/posts", create_post)
            .route(Method::GET, "/posts/{post_id}", get_post)
            .route(Method::PATCH, "/posts/{post_id}", edit_post)
            .route(Method::DELETE, "/posts/{post_id}", delete_post)
            .route(Method::GET, "/feed", feed)
            .route(Method::GET, "/users/{user_id}/posts", user_posts)
            .route(Method::PUT, "/posts/{post_id}/like", like)
            .route(Method::DELETE, "/posts/{post_id}/like", unlike)
            .route(Method::GET, "/posts/{post_id}/comments", comments)
            .route(Method::POST, "/posts/{post_id}/comments", add_comment)
            .route(
                Method::DELETE,
                "/posts/{post_id}/comments/{comment_id}",
                delete_comment,
            )
    }
}

/// The answer to a refused write on a post: 404 if the caller cannot see it.
async fn refusal_on_post(state: &State, caller: UserId, post: PostId, refusal: Error) -> Error {
    visibility::hidden_post_error(&state.store, caller, post, refusal).await
}

/// The routes that read the request body, for [`read_body`].
#[doc(hidden)]
pub const BODY_ROUTES: &[&str] = &["/posts", "/posts/{post_id}", "/posts/{post_id}/comments"];

/// Reads and validates `request`'s body exactly as the handler of `route` does, without
/// the handler's I/O. For the fuzz target `rest_body` (fuzz/); not part of the function's API.
#[doc(hidden)]
pub fn read_body(route: &str, request: &ApiRequest) -> Result<()> {
    match route {
        "/posts" => CreatePostBody::read(request).map(drop),
        "/posts/{post_id}" => PostText::parse(&request.json::<TextBody>()?.text).map(drop),
        "/posts/{post_id}/comments" => {
            CommentText::parse(&request.json::<TextBody>()?.text).map(drop)
        }
        other => Err(Error::invariant(format!("{other} reads no body"))),
    }
}

// ---- bodies and views ----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePostBody {
    text: String,
    #[serde(default)]
    media_url: Option<String>,
}

impl CreatePostBody {
    /// The validated text and media URL of a `POST /posts` body.
    fn read(request: &ApiRequest) -> Result<(PostText, Option<MediaUrl>)> {
        let body: Self = request.json()?;
        let text = PostText::parse(&body.text)?;
        let media_url = body.media_url.as_deref().map(MediaUrl::parse).transpose()?;
        Ok((text, media_url))
    }
}

/// `PATCH /posts/{post_id}` and `POST /posts/{post_id}/comments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TextBody {
    text: String,
}

/// A post as clients see it.
#[derive(Debug, Serialize)]
struct PostView {
    id: PostId,
    author: UserSummary,
    text: String,
    media_url: Option<String>,
    #[serde(with = "domain::rfc3339")]
    created_at: DateTime<Utc>,
    #[serde(with = "domain::rfc3339::option")]
    edited_at: Option<DateTime<Utc>>,
    like_count: i64,
    /// Orders this count against `like_updated` events (the greater version is newer).
    like_version: i64,
    comment_count: i64,
    liked_by_me: bool,
}

impl PostView {
    fn new(post: Post, author: &User, liked_by_me: bool) -> Self {
        Self {
            id: post.id,
            author: author.into(),
            text: post.text,
            media_url: post.media_url,
            created_at: post.created_at,
            edited_at: post.edited_at,
            like_count: post.like_count,
            like_version: post.like_version,
            comment_count: post.comment_count,
            liked_by_me,
        }
    }
}

/// A comment as clients see it.
#[derive(Debug, Serialize)]
struct CommentView {
    id: CommentId,
    post_id: PostId,
    author: UserSummary,
    text: String,
    #[serde(with = "domain::rfc3339")]
    created_at: DateTime<Utc>,
}

impl CommentView {
    fn new(comment: Comment, author: &User) -> Self {
        Self {
            id: comment.id,
            post_id: comment.post_id,
            author: author.into(),
            text: comment.text,
            created_at: comment.created_at,
        }
    }
}

// ---- shared steps --------------------------------------------------------------------------

/// The post and its author, if `viewer` may see it; otherwise `NotFound`.
async fn visible_post(state: &State, viewer: UserId, post_id: PostId) -> Result<(Post, User)> {
    visibility::post(&state.store, viewer, post_id).await
}

/// Unique author ids of a page, in order of first appearance.
fn author_ids(ids: impl Iterator<Item = UserId>) -> Vec<UserId> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}

/// A page of posts as views: authors in one batch read, `liked_by_me` in another.
async fn post_views(state: &State, viewer: UserId, page: Page<Post>) -> Result<Page<PostView>> {
    let authors = state
        .store
        .get_users(&author_ids(page.items.iter().map(|p| p.author_id)))
        .await?;
    let post_ids: Vec<PostId> = page.items.iter().map(|p| p.id).collect();
    let liked = state.store.liked_among(viewer, &post_ids).await?;
    let mut items = Vec::with_capacity(page.items.len());
    for post in page.items {
        match authors.get(&post.author_id) {
            Some(author) => {
                let liked_by_me = liked.contains(&post.id);
                items.push(PostView::new(post, author, liked_by_me));
            }
            None => tracing::warn!(post_id = %post.id, "post without an author profile skipped"),
        }
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// A page of comments as views, authors in one batch read.
async fn comment_views(state: &State, page: Page<Comment>) -> Result<Page<CommentView>> {
    let authors = state
        .store
        .get_users(&author_ids(page.items.iter().map(|c| c.author_id)))
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for comment in page.items {
        match authors.get(&comment.author_id) {
            Some(author) => items.push(CommentView::new(comment, author)),
            None => {
                tracing::warn!(comment_id = %comment.id, "comment without an author profile skipped")
            }
        }
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

// ---- handlers ------------------------------------------------------------------------------

async fn create_post(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let (text, media_url) = CreatePostBody::read(&request)?;
    let author = caller_profile(state.store.as_ref(), caller).await?;
    state.budgets.spend(caller, RateLimitedAction::Post).await?;
    // The post's audience is read while the post commits (it depends on the author only).
    let (post, ahead) = futures::join!(
        state.store.create_post(NewPost {
            author: caller,
            text,
            media_url,
            created_at: state.clock.now(),
        }),
        state.writer.resolve_post_audience(&author)
    );
    let post = post?;
    tracing::info!(user_id = %caller, post_id = %post.id, "post created");
    state.writer.post_created(&post, &author, ahead).await;
    ApiResponse::created(PostView::new(post, &author, false))
}

async fn get_post(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let viewer = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    let (post, author) = visible_post(&state, viewer, post_id).await?;
    let liked_by_me = state.store.has_liked(viewer, post.id).await?;
    ApiResponse::ok(PostView::new(post, &author, liked_by_me))
}

async fn edit_post(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    let text = PostText::parse(&request.json::<TextBody>()?.text)?;
    // Author and edit window are conditions of the write itself; a refusal of a post the
    // caller cannot see is a 404.
    let edited = state
        .store
        .edit_post(PostEdit {
            post: post_id,
            editor: caller,
            text,
            now: state.clock.now(),
        })
        .await;
    let post = match edited {
        Ok(post) => post,
        Err(refusal @ Error::Forbidden { .. }) => {
            return Err(refusal_on_post(&state, caller, post_id, refusal).await)
        }
        Err(other) => return Err(other),
    };
    let author = caller_profile(state.store.as_ref(), caller).await?;
    let liked_by_me = state.store.has_liked(caller, post.id).await?;
    ApiResponse::ok(PostView::new(post, &author, liked_by_me))
}

async fn delete_post(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    match state.store.delete_post(post_id, caller).await {
        Ok(()) => {}
        Err(refusal @ Error::Forbidden { .. }) => {
            return Err(refusal_on_post(&state, caller, post_id, refusal).await)
        }
        Err(other) => return Err(other),
    }
    tracing::info!(user_id = %caller, %post_id, "post deleted");
    Ok(ApiResponse::no_content())
}

async fn feed(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let viewer = state.tokens.authenticate(&request)?;
    let page = request.page()?;
    let posts = state.store.home_feed(viewer, &page).await?;
    ApiResponse::ok(post_views(&state, viewer, posts).await?)
}

async fn user_posts(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let viewer = state.tokens.authenticate(&request)?;
    let author = request.path_id("user_id")?;
    let page = request.page()?;
    visibility::of_author(&state.store, viewer, author)
        .await?
        .require_visible("this post list")?;
    let posts = state.store.author_posts(author, &page).await?;
    ApiResponse::ok(post_views(&state, viewer, posts).await?)
}

async fn like(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    state.budgets.spend(caller, RateLimitedAction::Like).await?;
    let (post, _) = visible_post(&state, caller, post_id).await?;
    let (liked, ahead) = futures::join!(
        state.store.like(&post, caller, state.clock.now()),
        state.writer.resolve_recipient(caller, post.author_id)
    );
    let liked = liked?;
    state
        .writer
        .notified(liked.notification.as_ref(), ahead)
        .await;
    ApiResponse::ok(liked.outcome)
}

async fn unlike(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    state.budgets.spend(caller, RateLimitedAction::Like).await?;
    let (post, _) = visible_post(&state, caller, post_id).await?;
    let unliked = state.store.unlike(post.id, caller).await?;
    ApiResponse::ok(unliked)
}

async fn comments(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let viewer = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    let page = request.page()?;
    let ((post, _), blocked) = futures::try_join!(
        visible_post(&state, viewer, post_id),
        state.store.block_set(viewer)
    )?;
    let mut comments = state.store.comments(post.id, &page).await?;
    comments.items = visibility::hide_blocked(comments.items, &blocked, |c| c.author_id);
    ApiResponse::ok(comment_views(&state, comments).await?)
}

async fn add_comment(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    let text = CommentText::parse(&request.json::<TextBody>()?.text)?;
    let (post, _) = visible_post(&state, caller, post_id).await?;
    let author = caller_profile(state.store.as_ref(), caller).await?;
    state
        .budgets
        .spend(caller, RateLimitedAction::Comment)
        .await?;
    let new = NewComment {
        author: caller,
        text,
        created_at: state.clock.now(),
    };
    let (comment, ahead) = futures::join!(
        state.store.add_comment(&post, new),
        state.writer.resolve_recipient(caller, post.author_id)
    );
    let comment = comment?;
    tracing::info!(user_id = %caller, %post_id, comment_id = %comment.id, "comment added");
    state
        .writer
        .notified(comment.notification.as_ref(), ahead)
        .await;
    ApiResponse::created(CommentView::new(comment.outcome, &author))
}

async fn delete_comment(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let post_id = request.path_id("post_id")?;
    let comment_id = request.path_id("comment_id")?;
    // No visibility check up front: whoever wrote a comment may always withdraw it, and the
    // post author always moderates their post. The store's condition enforces exactly that;
    // a refusal on a post the caller cannot see is a 404.
    let post = state
        .store
        .get_post(post_id)
        .await?
        .ok_or_else(visibility::post_not_found)?;
    match state.store.delete_comment(&post, comment_id, caller).await {
        Ok(()) => {}
        Err(refusal @ Error::Forbidden { .. }) => {
            return Err(refusal_on_post(&state, caller, post_id, refusal).await)
        }
        Err(other) => return Err(other),
    }
    tracing::info!(user_id = %caller, %post_id, %comment_id, "comment deleted");
    Ok(ApiResponse::no_content())
}
