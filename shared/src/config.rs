//! Typed configuration, read once at cold start.
//!
//! `main.rs` passes `std::env::vars()` to [`Config::from_vars`]; library code never reads
//! the environment itself, so tests and the local gateway build a `Config` from a plain map.
//! A missing required value is an error at start-up, never a silent default.

use std::collections::HashMap;
use std::time::Duration;

use crate::auth::Jwks;
use crate::error::{Error, Result};
use crate::store::lockout::LockoutPolicy;

/// Access tokens: the keys and claims.
///
/// No variable here is required by [`Config::from_vars`]: a function that verifies tokens
/// asks for the JWKS ([`JwtConfig::require_public_keys`], when it builds its
/// `TokenService`), `api-auth` also for its signing key's secret, and the functions that
/// verify nothing (`stream-router`, `push-worker`, `ws-disconnect`) are given neither.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `JWT_PUBLIC_KEYS`: the JWKS access tokens are verified with (public keys only).
    pub public_keys: Option<Jwks>,
    /// `JWT_SIGNING_KEY_SECRET`: name or ARN of the Secrets Manager secret holding the
    /// private signing key, which `api-auth` reads at cold start. Only the name is here.
    pub signing_key_secret: Option<String>,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
}

impl JwtConfig {
    /// The JWKS, for a function that verifies access tokens.
    pub fn require_public_keys(&self) -> Result<&Jwks> {
        required(self.public_keys.as_ref(), "JWT_PUBLIC_KEYS")
    }

    /// The signing key's secret id, for `api-auth`.
    pub fn require_signing_key_secret(&self) -> Result<&str> {
        required(self.signing_key_secret.as_deref(), "JWT_SIGNING_KEY_SECRET")
    }
}

/// Variables of the retired shared-secret (HS256) and RS256 modes. A function still given
/// one fails its cold start: a leftover signing secret in a function's environment is what
/// the asymmetric keys exist to remove.
pub const RETIRED_JWT_VARIABLES: [&str; 2] = ["JWT_SECRET", "JWT_PUBLIC_KEY_PEM"];

/// Per-user budgets, per minute: each a `RATE_LIMIT_*` variable (see
/// [`RATE_LIMIT_VARIABLES`]). They bound what one account can make the backend do — writes,
/// fan-out, notification spam, replay reads — whoever holds its tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub posts_per_minute: u32,
    pub comments_per_minute: u32,
    pub messages_per_minute: u32,
    pub follows_per_minute: u32,
    /// Likes and unlikes together: toggling a like is one notification each time.
    pub likes_per_minute: u32,
    /// Blocks and unblocks together: a block also marks notifications read both ways.
    pub blocks_per_minute: u32,
    /// `POST /notifications/{id}/read` and `/notifications/read-all` together.
    pub mark_reads_per_minute: u32,
    /// `PATCH /users/me`.
    pub profile_edits_per_minute: u32,
    /// WebSocket `subscribe` frames (a reconnecting client re-subscribes its rooms at once).
    pub subscribes_per_minute: u32,
    /// WebSocket `resume` frames (each may read up to 500 missed events).
    pub resumes_per_minute: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            posts_per_minute: 30,
            comments_per_minute: 60,
            messages_per_minute: 60,
            follows_per_minute: 60,
            likes_per_minute: 120,
            blocks_per_minute: 30,
            mark_reads_per_minute: 120,
            profile_edits_per_minute: 10,
            subscribes_per_minute: 120,
            resumes_per_minute: 20,
        }
    }
}

/// The field of [`RateLimits`] a variable sets.
pub type RateLimitField = fn(&mut RateLimits) -> &mut u32;

/// Every per-user budget's variable, with the field it sets.
pub const RATE_LIMIT_VARIABLES: [(&str, RateLimitField); 10] = [
    ("RATE_LIMIT_POSTS_PER_MINUTE", |l| &mut l.posts_per_minute),
    ("RATE_LIMIT_COMMENTS_PER_MINUTE", |l| {
        &mut l.comments_per_minute
    }),
    ("RATE_LIMIT_MESSAGES_PER_MINUTE", |l| {
        &mut l.messages_per_minute
    }),
    ("RATE_LIMIT_FOLLOWS_PER_MINUTE", |l| {
        &mut l.follows_per_minute
    }),
    ("RATE_LIMIT_LIKES_PER_MINUTE", |l| &mut l.likes_per_minute),
    ("RATE_LIMIT_BLOCKS_PER_MINUTE", |l| &mut l.blocks_per_minute),
    ("RATE_LIMIT_MARK_READS_PER_MINUTE", |l| {
        &mut l.mark_reads_per_minute
    }),
    ("RATE_LIMIT_PROFILE_EDITS_PER_MINUTE", |l| {
        &mut l.profile_edits_per_minute
    }),
    ("RATE_LIMIT_SUBSCRIBES_PER_MINUTE", |l| {
        &mut l.subscribes_per_minute
    }),
    ("RATE_LIMIT_RESUMES_PER_MINUTE", |l| {
        &mut l.resumes_per_minute
    }),
];

/// Lockouts on the credential doors (`crate::store::lockout`), each a
/// [`LockoutPolicy`]: so many failures within `AUTH_WINDOW_SECONDS` (default 900) lock the
/// subject for `AUTH_FIRST_LOCKOUT_SECONDS` (60), doubling with every later lockout up to
/// `AUTH_MAX_LOCKOUT_SECONDS` (3600).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failed logins of one username, existing or not (`AUTH_LOGIN_FAILURES_PER_USER`, 5).
    pub login_per_user: LockoutPolicy,
    /// Failed logins from one source IP (`AUTH_LOGIN_FAILURES_PER_IP`, 20).
    pub login_per_ip: LockoutPolicy,
    /// Refreshes with an unknown, expired or reused token from one source IP
    /// (`AUTH_REFRESH_FAILURES_PER_IP`, 20).
    pub refresh_per_ip: LockoutPolicy,
    /// Registrations tried from one source IP, successful or not
    /// (`AUTH_REGISTER_ATTEMPTS_PER_IP`, 20): bounds account farming and argon2 work.
    pub register_per_ip: LockoutPolicy,
    /// Registrations of one username that is already taken
    /// (`AUTH_REGISTER_TAKEN_PER_USER`, 5).
    pub register_per_user: LockoutPolicy,
}

impl Default for AuthLimits {
    fn default() -> Self {
        let policy = |max_failures| LockoutPolicy {
            max_failures,
            window: chrono::Duration::seconds(900),
            first_lockout: chrono::Duration::seconds(60),
            max_lockout: chrono::Duration::seconds(3600),
        };
        Self {
            login_per_user: policy(5),
            login_per_ip: policy(20),
            refresh_per_ip: policy(20),
            register_per_ip: policy(20),
            register_per_user: policy(5),
        }
    }
}

/// Bounds of the writer push: a REST function that commits an event for a small audience
/// pushes it itself before it answers (`shared::writer_push`); anything larger is left to
/// the stream router. These bounds are what keeps the REST latency it adds small and flat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterPushLimits {
    /// Most connections one event is pushed to by the writer (`WRITER_PUSH_MAX_CONNECTIONS`,
    /// default 100); `0` turns the writer push off.
    pub max_connections: usize,
    /// A post is pushed by the writer only when its author has at most this many followers
    /// (`WRITER_PUSH_MAX_FOLLOWERS`, default 100), so resolving the audience is one page of
    /// followers and one connections read whoever posts.
    pub max_followers: u32,
    /// Most time the writer push may add to a response, resolution and posts included
    /// (`WRITER_PUSH_BUDGET_MS`, default 250): past it the push is abandoned, unmarked, and
    /// the stream router delivers.
    pub budget: Duration,
    /// A 410 for a connection younger than this leaves it in place (its `$connect` may still
    /// be running): [`Config::ws_handshake_window`], which the writer's pushes share.
    pub handshake_window: chrono::Duration,
}

impl Default for WriterPushLimits {
    fn default() -> Self {
        Self {
            max_connections: 100,
            max_followers: 100,
            budget: Duration::from_millis(250),
            handshake_window: crate::store::connections::HANDSHAKE_WINDOW,
        }
    }
}

/// Bounds of the materialized home feed (`shared::feed`, `docs/data-model.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// An author with at most this many followers has each post written into every
    /// follower's feed; a larger author is promoted once and merged at read time
    /// (`FEED_MATERIALIZE_MAX_FOLLOWERS`, default 10,000).
    pub materialize_max_followers: usize,
    /// Latest posts of an author written into a new follower's feed
    /// (`FEED_BACKFILL_POSTS`, default 20).
    pub backfill_posts: usize,
    /// Days a feed entry lives after its post (`FEED_ENTRY_TTL_DAYS`, default 30; TTL).
    pub entry_ttl_days: u32,
}

impl Default for FeedLimits {
    fn default() -> Self {
        Self {
            materialize_max_followers: 10_000,
            backfill_posts: 20,
            entry_ttl_days: 30,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub jwt: JwtConfig,
    pub fanout_queue_url: Option<String>,
    pub ws_management_endpoint: Option<String>,
    pub rate_limits: RateLimits,
    pub max_connections_per_user: u32,
    pub fanout_direct_max_connections: usize,
    /// Followers an author may have for the stream router to resolve a post's audience in
    /// place (`FANOUT_INLINE_MAX_FOLLOWERS`, default 1000); above it a push worker does, so
    /// the router's time per record stays bounded.
    pub fanout_inline_max_followers: usize,
    /// How long after `$connect` a 410 from `@connections` means "not yet" rather than
    /// "gone" (`WS_HANDSHAKE_WINDOW_SECONDS`, default 30: API Gateway's integration timeout
    /// is 29 s). The local stack's tests shorten it to see the removal of a dead socket.
    pub ws_handshake_window: chrono::Duration,
    pub auth_limits: AuthLimits,
    pub writer_push: WriterPushLimits,
    pub feed: FeedLimits,
    /// Log filter: `RUST_LOG`, else Lambda's `AWS_LAMBDA_LOG_LEVEL`, else `info`.
    pub log_filter: String,
}

impl Config {
    /// Builds the configuration from environment-style pairs.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        let get = |name: &str| vars.get(name).map(String::as_str);

        let table_name = required(get("TABLE_NAME"), "TABLE_NAME")?.to_owned();

        let jwt = jwt_config(&vars)?;
        let rate_limits = rate_limits(&vars)?;
        let ws_handshake_window = chrono::Duration::seconds(number(
            &vars,
            "WS_HANDSHAKE_WINDOW_SECONDS",
            crate::store::connections::HANDSHAKE_WINDOW.num_seconds(),
        )?);
        let auth_limits = auth_limits(&vars)?;
        let writer_push = writer_push_limits(&vars, ws_handshake_window)?;
        let feed = feed_limits(&vars)?;

        Ok(Self {
            table_name,
            jwt,
            fanout_queue_url: get("FANOUT_QUEUE_URL").map(str::to_owned),
            ws_management_endpoint: get("WS_MANAGEMENT_ENDPOINT").map(str::to_owned),
            rate_limits,
            max_connections_per_user: number(&vars, "MAX_CONNECTIONS_PER_USER", 10)?,
            fanout_direct_max_connections: number(&vars, "FANOUT_DIRECT_MAX_CONNECTIONS", 100)?,
            fanout_inline_max_followers: number(&vars, "FANOUT_INLINE_MAX_FOLLOWERS", 1000)?,
            ws_handshake_window,
            auth_limits,
            writer_push,
            feed,
            log_filter: get("RUST_LOG")
                .map(str::to_owned)
                .or_else(|| get("AWS_LAMBDA_LOG_LEVEL").map(str::to_ascii_lowercase))
                .unwrap_or_else(|| "info".to_owned()),
        })
    }

    /// The fan-out queue, for functions that cannot run without it.
    pub fn require_fanout_queue_url(&self) -> Result<&str> {
        required(self.fanout_queue_url.as_deref(), "FANOUT_QUEUE_URL")
    }

    /// The WebSocket management endpoint, for functions that push.
    pub fn require_ws_management_endpoint(&self) -> Result<&str> {
        required(
            self.ws_management_endpoint.as_deref(),
            "WS_MANAGEMENT_ENDPOINT",
        )
    }
}

/// [`JwtConfig`] from `JWT_*` and the token lifetimes; a retired variable is an error.
fn jwt_config(vars: &HashMap<String, String>) -> Result<JwtConfig> {
    let get = |name: &str| vars.get(name).map(String::as_str);
    if let Some(retired) = RETIRED_JWT_VARIABLES.iter().find(|v| get(v).is_some()) {
        return Err(config_error(format!(
            "{retired} is no longer read: access tokens are EdDSA, verified with \
             JWT_PUBLIC_KEYS and signed by api-auth only (docs/deploy.md); remove it"
        )));
    }
    let public_keys = get("JWT_PUBLIC_KEYS")
        .map(|json| Jwks::parse(json).map_err(|e| config_error(format!("JWT_PUBLIC_KEYS: {e}"))))
        .transpose()?;
    Ok(JwtConfig {
        public_keys,
        signing_key_secret: get("JWT_SIGNING_KEY_SECRET").map(str::to_owned),
        issuer: get("JWT_ISSUER").unwrap_or("ripple").to_owned(),
        audience: get("JWT_AUDIENCE").unwrap_or("ripple-clients").to_owned(),
        access_token_ttl: Duration::from_secs(number(vars, "ACCESS_TOKEN_TTL_SECONDS", 900)?),
        refresh_token_ttl: Duration::from_secs(
            number(vars, "REFRESH_TOKEN_TTL_DAYS", 30)? * 24 * 3600,
        ),
    })
}

/// [`WriterPushLimits`] from `WRITER_PUSH_*`, over the defaults; the handshake window is
/// the one [`Config::ws_handshake_window`] was given.
fn writer_push_limits(
    vars: &HashMap<String, String>,
    handshake_window: chrono::Duration,
) -> Result<WriterPushLimits> {
    let defaults = WriterPushLimits::default();
    Ok(WriterPushLimits {
        max_connections: number(
            vars,
            "WRITER_PUSH_MAX_CONNECTIONS",
            defaults.max_connections,
        )?,
        max_followers: number(vars, "WRITER_PUSH_MAX_FOLLOWERS", defaults.max_followers)?,
        budget: Duration::from_millis(number(
            vars,
            "WRITER_PUSH_BUDGET_MS",
            u64::try_from(defaults.budget.as_millis()).unwrap_or(u64::MAX),
        )?),
        handshake_window,
    })
}

/// [`FeedLimits`] from `FEED_*`, over the defaults.
fn feed_limits(vars: &HashMap<String, String>) -> Result<FeedLimits> {
    let defaults = FeedLimits::default();
    Ok(FeedLimits {
        materialize_max_followers: number(
            vars,
            "FEED_MATERIALIZE_MAX_FOLLOWERS",
            defaults.materialize_max_followers,
        )?,
        backfill_posts: number(vars, "FEED_BACKFILL_POSTS", defaults.backfill_posts)?,
        entry_ttl_days: number(vars, "FEED_ENTRY_TTL_DAYS", defaults.entry_ttl_days)?,
    })
}

/// [`RateLimits`] from `RATE_LIMIT_*`, over the defaults.
fn rate_limits(vars: &HashMap<String, String>) -> Result<RateLimits> {
    let mut limits = RateLimits::default();
    for (name, field) in RATE_LIMIT_VARIABLES {
        let budget = field(&mut limits);
        *budget = number(vars, name, *budget)?;
    }
    Ok(limits)
}

/// [`AuthLimits`] from `AUTH_*`, over the defaults.
fn auth_limits(vars: &HashMap<String, String>) -> Result<AuthLimits> {
    let defaults = AuthLimits::default();
    let seconds = |name: &str, default: chrono::Duration| -> Result<chrono::Duration> {
        Ok(chrono::Duration::seconds(number(
            vars,
            name,
            default.num_seconds(),
        )?))
    };
    let base = defaults.login_per_user;
    let window = seconds("AUTH_WINDOW_SECONDS", base.window)?;
    let first_lockout = seconds("AUTH_FIRST_LOCKOUT_SECONDS", base.first_lockout)?;
    let max_lockout = seconds("AUTH_MAX_LOCKOUT_SECONDS", base.max_lockout)?;
    let policy = |name: &str, default: &LockoutPolicy| -> Result<LockoutPolicy> {
        Ok(LockoutPolicy {
            max_failures: number(vars, name, default.max_failures)?.max(1),
            window,
            first_lockout,
            max_lockout,
        })
    };
    Ok(AuthLimits {
        login_per_user: policy("AUTH_LOGIN_FAILURES_PER_USER", &defaults.login_per_user)?,
        login_per_ip: policy("AUTH_LOGIN_FAILURES_PER_IP", &defaults.login_per_ip)?,
        refresh_per_ip: policy("AUTH_REFRESH_FAILURES_PER_IP", &defaults.refresh_per_ip)?,
        register_per_ip: policy("AUTH_REGISTER_ATTEMPTS_PER_IP", &defaults.register_per_ip)?,
        register_per_user: policy("AUTH_REGISTER_TAKEN_PER_USER", &defaults.register_per_user)?,
    })
}

fn number<T: std::str::FromStr>(
    vars: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T> {
    match vars.get(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            config_error(format!(
                "{name} must be a non-negative integer, got {raw:?}"
            ))
        }),
    }
}

/// An optional setting a function cannot run without: its value, or the error naming it.
fn required<'a, T: ?Sized>(value: Option<&'a T>, name: &str) -> Result<&'a T> {
    value.ok_or_else(|| missing(name))
}

fn missing(name: &str) -> Error {
    config_error(format!("required configuration {name} is not set"))
}

fn config_error(message: String) -> Error {
    Error::invariant(format!("configuration: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_required_and_defaults() {
        let config = Config::from_vars([("TABLE_NAME", "t")]).unwrap();
        assert_eq!(config.table_name, "t");
        assert_eq!(config.jwt.issuer, "ripple");
        assert_eq!(config.jwt.access_token_ttl, Duration::from_secs(900));
        assert_eq!(config.max_connections_per_user, 10);
        assert!(config.require_fanout_queue_url().is_err());
        assert_eq!(config.writer_push, WriterPushLimits::default());
    }

    #[test]
    fn writer_push_limits_are_configurable() {
        let config = Config::from_vars([
            ("TABLE_NAME", "t"),
            ("WRITER_PUSH_MAX_CONNECTIONS", "0"),
            ("WRITER_PUSH_MAX_FOLLOWERS", "20"),
            ("WRITER_PUSH_BUDGET_MS", "80"),
            ("WS_HANDSHAKE_WINDOW_SECONDS", "2"),
        ])
        .unwrap();
        assert_eq!(
            config.writer_push,
            WriterPushLimits {
                max_connections: 0,
                max_followers: 20,
                budget: Duration::from_millis(80),
                handshake_window: chrono::Duration::seconds(2),
            }
        );
        assert_eq!(config.ws_handshake_window, chrono::Duration::seconds(2));
        let error = Config::from_vars([("TABLE_NAME", "t"), ("WRITER_PUSH_MAX_FOLLOWERS", "-1")])
            .unwrap_err();
        assert!(error.to_string().contains("WRITER_PUSH_MAX_FOLLOWERS"));
    }

    #[test]
    fn only_the_table_is_required_and_no_key_is_needed_to_load() {
        let error = Config::from_vars([("RUST_LOG", "info")]).unwrap_err();
        assert!(error.to_string().contains("TABLE_NAME"), "{error}");
        // stream-router and push-worker verify nothing and are given no key at all.
        let config = Config::from_vars([("TABLE_NAME", "t")]).unwrap();
        assert!(config.jwt.public_keys.is_none());
        let error = config.jwt.require_public_keys().unwrap_err();
        assert!(error.to_string().contains("JWT_PUBLIC_KEYS"), "{error}");
        let error = config.jwt.require_signing_key_secret().unwrap_err();
        assert!(
            error.to_string().contains("JWT_SIGNING_KEY_SECRET"),
            "{error}"
        );
    }

    #[test]
    fn reads_the_jwks_and_the_signing_key_secret_name() {
        let key = crate::auth::SigningKey::generate("k1").unwrap();
        let jwks = Jwks::new(vec![key.public_key()]).unwrap();
        let config = Config::from_vars([
            ("TABLE_NAME", "t".to_owned()),
            ("JWT_PUBLIC_KEYS", jwks.to_json().to_string()),
            (
                "JWT_SIGNING_KEY_SECRET",
                "ripple/jwt-signing-key".to_owned(),
            ),
        ])
        .unwrap();
        assert_eq!(config.jwt.require_public_keys().unwrap(), &jwks);
        assert_eq!(
            config.jwt.require_signing_key_secret().unwrap(),
            "ripple/jwt-signing-key"
        );
        let error =
            Config::from_vars([("TABLE_NAME", "t"), ("JWT_PUBLIC_KEYS", "{}")]).unwrap_err();
        assert!(error.to_string().contains("JWT_PUBLIC_KEYS"), "{error}");
    }

    #[test]
    fn the_retired_shared_secret_is_a_start_up_error_that_never_quotes_it() {
        for name in RETIRED_JWT_VARIABLES {
            let error =
                Config::from_vars([("TABLE_NAME", "t"), (name, "leftover-value")]).unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
            assert!(!error.to_string().contains("leftover-value"), "{error}");
        }
    }

    #[test]
    fn rejects_bad_numbers() {
        let error = Config::from_vars([("TABLE_NAME", "t"), ("MAX_CONNECTIONS_PER_USER", "ten")])
            .unwrap_err();
        assert!(error.to_string().contains("MAX_CONNECTIONS_PER_USER"));
    }

    #[test]
    fn every_rate_limit_comes_from_its_variable() {
        let config = Config::from_vars([("TABLE_NAME", "t")]).unwrap();
        assert_eq!(config.rate_limits, RateLimits::default());
        let mut vars = vec![("TABLE_NAME".to_owned(), "t".to_owned())];
        // Each variable gets a distinct value, so a variable wired to the wrong field shows.
        for (value, (name, _)) in (1..).zip(RATE_LIMIT_VARIABLES) {
            vars.push((name.to_owned(), (1000 + value).to_string()));
        }
        let limits = Config::from_vars(vars).unwrap().rate_limits;
        assert_eq!(
            limits,
            RateLimits {
                posts_per_minute: 1001,
                comments_per_minute: 1002,
                messages_per_minute: 1003,
                follows_per_minute: 1004,
                likes_per_minute: 1005,
                blocks_per_minute: 1006,
                mark_reads_per_minute: 1007,
                profile_edits_per_minute: 1008,
                subscribes_per_minute: 1009,
                resumes_per_minute: 1010,
            }
        );
        let error = Config::from_vars([
            ("TABLE_NAME", "t"),
            ("RATE_LIMIT_RESUMES_PER_MINUTE", "many"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("RATE_LIMIT_RESUMES_PER_MINUTE"));
    }

    #[test]
    fn register_limits_come_from_the_environment() {
        let defaults = AuthLimits::default();
        assert_eq!(
            (
                defaults.register_per_ip.max_failures,
                defaults.register_per_user.max_failures
            ),
            (20, 5)
        );
        let config = Config::from_vars([
            ("TABLE_NAME", "t"),
            ("AUTH_REGISTER_ATTEMPTS_PER_IP", "1000"),
            ("AUTH_REGISTER_TAKEN_PER_USER", "2"),
        ])
        .unwrap();
        let limits = config.auth_limits;
        assert_eq!(limits.register_per_ip.max_failures, 1000);
        assert_eq!(limits.register_per_user.max_failures, 2);
        assert_eq!(limits.login_per_user, defaults.login_per_user);
    }

    #[test]
    fn auth_limits_default_and_come_from_the_environment() {
        let config = Config::from_vars([("TABLE_NAME", "t")]).unwrap();
        assert_eq!(config.auth_limits, AuthLimits::default());
        assert_eq!(config.auth_limits.login_per_user.max_failures, 5);
        let config = Config::from_vars([
            ("TABLE_NAME", "t"),
            ("AUTH_LOGIN_FAILURES_PER_USER", "3"),
            ("AUTH_LOGIN_FAILURES_PER_IP", "7"),
            ("AUTH_REFRESH_FAILURES_PER_IP", "9"),
            ("AUTH_WINDOW_SECONDS", "60"),
            ("AUTH_FIRST_LOCKOUT_SECONDS", "5"),
            ("AUTH_MAX_LOCKOUT_SECONDS", "50"),
        ])
        .unwrap();
        let limits = config.auth_limits;
        assert_eq!(
            (
                limits.login_per_user.max_failures,
                limits.login_per_ip.max_failures,
                limits.refresh_per_ip.max_failures
            ),
            (3, 7, 9)
        );
        assert_eq!(limits.login_per_ip.window, chrono::Duration::seconds(60));
        assert_eq!(
            limits.refresh_per_ip.lockout_after(0),
            chrono::Duration::seconds(5)
        );
        assert_eq!(
            limits.refresh_per_ip.lockout_after(2),
            chrono::Duration::seconds(20)
        );
        assert_eq!(
            limits.refresh_per_ip.lockout_after(40),
            chrono::Duration::seconds(50)
        );
        assert!(
            Config::from_vars([("TABLE_NAME", "t"), ("AUTH_WINDOW_SECONDS", "soon"),]).is_err()
        );
    }
}
