//! `api-auth`: registration, login, refresh-token rotation, logout and the health check.
//!
//! | route | auth | result |
//! |---|---|---|
//! | `POST /auth/register` | — | 201 session: `{user, access_token, refresh_token, expires_in}` |
//! | `POST /auth/login` | — | 200 session |
//! | `POST /auth/refresh` | refresh token in the body | 200 session (rotated pair) |
//! | `POST /auth/logout[?all=true]` | access token | 204 |
//! | `GET /health` | — | 200 `{"status":"ok"}` |
//! | `GET /.well-known/jwks.json` | — | 200 the JWKS access tokens are verified with (cacheable) |
//!
//! Access tokens are signed with the Ed25519 key only this function holds: it reads it from
//! Secrets Manager (`JWT_SIGNING_KEY_SECRET`) at cold start (`RestState::load_parts`), and refuses to
//! start when its public half is not in `JWT_PUBLIC_KEYS`.
//!
//! Brute force: failed logins are counted per username (existing or not) and per source IP,
//! failed refreshes per source IP, registrations per source IP (every attempt) and per
//! username (attempts on a taken one) (`shared::store::lockout`, limits in
//! `Config::auth_limits`); a locked subject gets 429 with `Retry-After` before any argon2 or
//! token work, the same answer whether or not the account exists, and each lockout is twice
//! the last.
//!
//! Passwords are hashed with argon2id (`shared::auth::passwords`) on the blocking pool;
//! refresh tokens are hashed, rotated and revoked by `shared::auth::refresh`. Neither a
//! password nor a token is ever logged: handlers skip their arguments in spans and request
//! bodies do not implement `Debug`.

use std::sync::Arc;

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::auth::passwords;
use shared::auth::refresh::{IssuedRefreshToken, RefreshTokens};
use shared::auth::SigningKey;
use shared::auth::TokenService;
use shared::aws::{AuthClients, DynamoClients};
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::domain::{self, DisplayName, User, Username};
use shared::error::{Error, Result};
pub use shared::http::lambda_function;
use shared::http::{ApiParts, ApiRequest, ApiResponse, RestState, Router};
use shared::store::{Door, Subject};
use shared::store::{DynamoStore, NewUser};

/// The one message for every failed login, whatever the reason, so a caller cannot probe
/// which usernames exist.
pub const BAD_CREDENTIALS: &str = "invalid username or password";

/// Longest `refresh_token` field accepted. Real tokens are 43 characters; anything far longer
/// is a client bug, reported as such instead of being looked up. Room is left for an access
/// token sent by mistake (about 300 characters as EdDSA with a `kid`): it gets the same 401
/// as any unknown token.
pub const MAX_REFRESH_TOKEN_FIELD: usize = 512;

/// Everything a handler needs, built once per cold start.
pub struct State {
    config: Config,
    /// Users and their credentials, and the lockouts of the login, register and refresh doors.
    store: Arc<DynamoStore>,
    refresh_tokens: RefreshTokens,
    tokens: TokenService,
    clock: Arc<dyn Clock>,
}

/// How long clients and caches may keep the JWKS. A rotation waits at least this long
/// after publishing a new key before signing with it (docs/deploy.md).
const JWKS_MAX_AGE_SECONDS: u32 = 300;

impl State {
    /// Production state over the DynamoDB part of its clients, tokens signed with
    /// `signing_key` (the cold start reads it from Secrets Manager; tests pass one).
    pub fn new(config: Config, clients: &DynamoClients, signing_key: &SigningKey) -> Result<Self> {
        let parts = ApiParts::new(config, &clients.dynamodb, Arc::new(SystemClock))?;
        Self::signing(parts.signing_with(signing_key)?)
    }

    /// The state over parts whose token service signs.
    fn signing(parts: ApiParts) -> Result<Self> {
        if !parts.tokens.can_issue() {
            return Err(Error::invariant(
                "api-auth reads its signing key at cold start: build it with FunctionState::load",
            ));
        }
        let refresh_tokens =
            RefreshTokens::new(parts.store.clone(), parts.config.jwt.refresh_token_ttl)?;
        Ok(Self {
            store: parts.store,
            refresh_tokens,
            tokens: parts.tokens,
            config: parts.config,
            clock: parts.clock,
        })
    }
}

impl RestState for State {
    type Clients = AuthClients;

    /// Only parts that sign will do: [`RestState::load_parts`] reads the key first.
    fn from_parts(parts: ApiParts, _clients: &AuthClients) -> Result<Self> {
        Self::signing(parts)
    }

    /// Reads the signing key from Secrets Manager (`JWT_SIGNING_KEY_SECRET`), once per cold
    /// start.
    async fn load_parts(config: Config, clients: &AuthClients) -> Result<ApiParts> {
        let secret = config.jwt.require_signing_key_secret()?.to_owned();
        let signing_key = clients.signing_key(&secret).await?;
        ApiParts::new(config, &clients.dynamodb, Arc::new(SystemClock))?.signing_with(&signing_key)
    }

    fn router() -> Router<Self> {
        Router::new()
            .route(Method::POST, "/auth/register", register)
            .route(Method::POST, "/auth/login", login)
            .route(Method::POST, "/auth/refresh", refresh)
            .route(Method::POST, "/auth/logout", logout)
            .route(Method::GET, "/health", health)
            .route(Method::GET, "/.well-known/jwks.json", jwks)
    }
}

// ---- bodies ------------------------------------------------------------------------------
// No `Debug` on purpose: these carry passwords and tokens.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    username: String,
    password: String,
    #[serde(default)]
    display_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshTokenBody {
    refresh_token: String,
}

impl RefreshTokenBody {
    /// The token, after the checks that make a 400 (empty, absurdly long). A token of the
    /// right size that is not ours is a 401/404 further down, like an unknown one.
    fn token(&self) -> Result<&str> {
        if self.refresh_token.is_empty() {
            return Err(Error::validation("refresh_token must not be empty"));
        }
        if self.refresh_token.len() > MAX_REFRESH_TOKEN_FIELD {
            return Err(Error::validation(format!(
                "refresh_token must be at most {MAX_REFRESH_TOKEN_FIELD} characters"
            )));
        }
        Ok(&self.refresh_token)
    }
}

/// What register, login and refresh return.
#[derive(Serialize)]
struct Session {
    user: User,
    access_token: String,
    refresh_token: String,
    /// Access-token lifetime in seconds.
    expires_in: i64,
}

fn session(
    state: &State,
    user: User,
    refresh: IssuedRefreshToken,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Session> {
    Ok(Session {
        access_token: state.tokens.issue(user.id, now)?,
        refresh_token: refresh.token,
        expires_in: state.tokens.ttl_seconds(),
        user,
    })
}

/// A register body that passed the rules, its username, and the display name (the
/// username's by default).
fn read_register(request: &ApiRequest) -> Result<(RegisterBody, Username, DisplayName)> {
    let body: RegisterBody = request.json()?;
    // The canonical lower-case form is the store's business; keep the case the user typed.
    let username = Username::parse(&body.username)?;
    domain::validate_password(&body.password)?;
    let display_name = DisplayName::parse(body.display_name.as_deref().unwrap_or(&body.username))?;
    Ok((body, username, display_name))
}

/// A login body that passed the rules, and its canonical username.
fn read_login(request: &ApiRequest) -> Result<(LoginBody, String)> {
    let body: LoginBody = request.json()?;
    // No stored account can break these rules, so a 400 here says nothing about existence,
    // and the password limit bounds the hashing work an attacker can ask for.
    let canonical = Username::parse(&body.username)?.canonical();
    domain::validate_password(&body.password)?;
    Ok((body, canonical))
}

/// The routes that read a JSON body, for [`read_body`].
#[doc(hidden)]
pub const BODY_ROUTES: &[&str] = &[
    "/auth/register",
    "/auth/login",
    "/auth/refresh",
    "/auth/logout",
];

/// Reads and validates `request`'s body exactly as the handler of `route` does, without
/// the handler's I/O. For the fuzz target `rest_body` (fuzz/); not part of the function's API.
#[doc(hidden)]
pub fn read_body(route: &str, request: &ApiRequest) -> Result<()> {
    match route {
        "/auth/register" => read_register(request).map(drop),
        "/auth/login" => read_login(request).map(drop),
        "/auth/refresh" | "/auth/logout" => request.json::<RefreshTokenBody>()?.token().map(drop),
        other => Err(Error::invariant(format!("{other} reads no body"))),
    }
}

// ---- handlers ----------------------------------------------------------------------------

async fn register(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let (body, username, display_name) = read_register(&request)?;
    let now = state.clock.now();
    let subjects = [
        Subject::Username(username.canonical()),
        Subject::SourceIp(request.source_ip.clone()),
    ];
    // Before any argon2 work: an address that registered too much, or a taken name tried
    // too often, is refused with the lockout's 429.
    state.store.check(Door::Register, &subjects, now).await?;
    let limits = &state.config.auth_limits;
    // Every attempt that gets this far counts against the address, while the password hashes.
    let (password_hash, _) = tokio::try_join!(
        passwords::hash(&body.password),
        state
            .store
            .record_failure(Door::Register, &subjects[1], &limits.register_per_ip, now),
    )?;
    // The username item, profile and credentials go in one conditional transaction: a name
    // taken in any letter case is a 409 and nothing is written.
    let created = state
        .store
        .create_user(NewUser {
            id: domain::new_id(),
            username,
            display_name,
            password_hash,
            created_at: now,
        })
        .await;
    let user = match created {
        Ok(user) => user,
        Err(error @ Error::Conflict { .. }) => {
            let policy = &limits.register_per_user;
            if state
                .store
                .record_failure(Door::Register, &subjects[0], policy, now)
                .await?
            {
                tracing::warn!("registration of a taken username locked after repeated tries");
            }
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let refresh = state.refresh_tokens.start_session(user.id, now).await?;
    tracing::info!(user_id = %user.id, "user registered");
    ApiResponse::created(session(&state, user, refresh, now)?)
}

async fn login(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let (body, canonical) = read_login(&request)?;
    let now = state.clock.now();
    let subjects = [
        Subject::Username(canonical),
        Subject::SourceIp(request.source_ip.clone()),
    ];
    // Before any argon2 work: a locked username or address is refused whatever it sends.
    let failures = state.store.check(Door::Login, &subjects, now).await?;

    let user_id = state.store.user_id_by_username(&body.username).await?;
    // An unknown username does the same work as a wrong password: one credentials read (of
    // a fresh id, which never exists) and one argon2id verification (against a dummy hash).
    let credentials_of = user_id.unwrap_or_else(domain::new_id);
    let stored = state.store.password_hash(credentials_of).await?;
    let verified = passwords::verify_login(&body.password, user_id.and(stored)).await?;
    let Some(user_id) = user_id.filter(|_| verified) else {
        count_login_failure(&state, &subjects, now).await?;
        tracing::info!("login rejected");
        return Err(Error::unauthorized(BAD_CREDENTIALS));
    };
    let Some(user) = state.store.get_user(user_id).await? else {
        // Credentials without a profile: a broken registration. Say no more than for a
        // wrong password, but make it visible to operators.
        tracing::error!(%user_id, "credentials exist but the profile does not");
        return Err(Error::unauthorized(BAD_CREDENTIALS));
    };
    if failures.first().is_some_and(|&count| count > 0) {
        state
            .store
            .clear_failures(Door::Login, &subjects[0])
            .await?;
    }
    let refresh = state.refresh_tokens.start_session(user.id, now).await?;
    tracing::info!(user_id = %user.id, "login succeeded");
    ApiResponse::ok(session(&state, user, refresh, now)?)
}

/// A failed login counts against the username and the address, at once.
async fn count_login_failure(
    state: &State,
    subjects: &[Subject; 2],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    let limits = &state.config.auth_limits;
    let [username, address] = subjects;
    let (user_locked, address_locked) = tokio::try_join!(
        state
            .store
            .record_failure(Door::Login, username, &limits.login_per_user, now),
        state
            .store
            .record_failure(Door::Login, address, &limits.login_per_ip, now),
    )?;
    if user_locked || address_locked {
        tracing::warn!(
            user_locked,
            address_locked,
            "login locked after repeated failures"
        );
    }
    Ok(())
}

async fn refresh(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let body: RefreshTokenBody = request.json()?;
    let now = state.clock.now();
    let address = [Subject::SourceIp(request.source_ip.clone())];
    state.store.check(Door::Refresh, &address, now).await?;
    let rotated = match state.refresh_tokens.rotate(body.token()?, now).await {
        Ok(rotated) => rotated,
        Err(error @ Error::Unauthorized(_)) => {
            let policy = &state.config.auth_limits.refresh_per_ip;
            let locked = state
                .store
                .record_failure(Door::Refresh, &address[0], policy, now)
                .await?;
            if locked {
                tracing::warn!("refresh locked after repeated failures");
            }
            return Err(error);
        }
        Err(error) => return Err(error),
    };
    let Some(user) = state.store.get_user(rotated.user_id).await? else {
        tracing::error!(user_id = %rotated.user_id, "refresh token of a user without a profile");
        return Err(Error::unauthorized("invalid or expired refresh token"));
    };
    ApiResponse::ok(session(&state, user, rotated, now)?)
}

async fn logout(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    let caller = state.tokens.authenticate(&request)?;
    let everywhere = request.query_flag("all")?;
    let body: RefreshTokenBody = request.json()?;
    let token = body.token()?;
    let now = state.clock.now();
    if everywhere {
        let revoked = state
            .refresh_tokens
            .revoke_all_sessions(token, caller, now)
            .await?;
        tracing::info!(user_id = %caller, revoked, "logged out everywhere");
    } else {
        state
            .refresh_tokens
            .revoke_session(token, caller, now)
            .await?;
        tracing::info!(user_id = %caller, "logged out");
    }
    Ok(ApiResponse::no_content())
}

async fn health(_state: Arc<State>, _request: ApiRequest) -> Result<ApiResponse> {
    ApiResponse::ok(json!({ "status": "ok" }))
}

/// `GET /.well-known/jwks.json`: the public keys access tokens are verified with, for
/// clients and services that verify Ripple's tokens themselves. Public and cacheable.
async fn jwks(state: Arc<State>, request: ApiRequest) -> Result<ApiResponse> {
    request.expect_no_body()?;
    Ok(ApiResponse::ok(state.tokens.jwks().to_json())?.cacheable_for(JWKS_MAX_AGE_SECONDS))
}
