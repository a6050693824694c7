//! Authentication: access tokens (JWT), refresh tokens and password hashing.
//!
//! Access tokens are JWTs with the algorithm PINNED (HS256 by default, or RS256 with a
//! configured public key for an external identity provider); `exp`, `iat`, `iss` and `aud`
//! are required and validated; `sub` is the user id. Tokens are never logged.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{JwtConfig, JwtKey};
use crate::domain::UserId;
use crate::error::{Error, Result};
use crate::http::ApiRequest;

pub mod passwords;
pub mod refresh;

/// Claims of a Ripple access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct TokenService {
    algorithm: Algorithm,
    encoding: Option<EncodingKey>,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenService {
    pub fn new(config: &JwtConfig) -> Result<Self> {
        let (algorithm, encoding, decoding) = match &config.key {
            JwtKey::Hs256 { secret } => (
                Algorithm::HS256,
                Some(EncodingKey::from_secret(secret)),
                DecodingKey::from_secret(secret),
            ),
            JwtKey::Rs256 { public_key_pem } => (
                Algorithm::RS256,
                None,
                DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
                    .map_err(|e| Error::internal("JWT public key", e))?,
            ),
        };
        Ok(Self {
            algorithm,
            encoding,
            decoding,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl_seconds: i64::try_from(config.access_token_ttl.as_secs()).unwrap_or(900),
        })
    }

    /// Access-token lifetime in seconds (the `expires_in` of auth responses).
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// Signs an access token for `user`. Only possible with an HS256 secret: with RS256 the
    /// external identity provider issues tokens.
    pub fn issue(&self, user: UserId, now: DateTime<Utc>) -> Result<String> {
        let encoding = self.encoding.as_ref().ok_or_else(|| {
            Error::invariant("this deployment verifies external tokens and cannot issue its own")
        })?;
        let claims = Claims {
            sub: user.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl_seconds,
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, encoding)
            .map_err(|e| Error::internal("signing access token", e))
    }

    /// Verifies a token: pinned algorithm, signature, `exp`, `iss`, `aud`, and a UUID `sub`.
    pub fn verify(&self, token: &str) -> Result<UserId> {
        let mut validation = Validation::new(self.algorithm);
        validation.algorithms = vec![self.algorithm];
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(|e| {
                tracing::debug!(reason = %e, "access token rejected");
                Error::unauthorized("invalid or expired access token")
            })?;
        crate::domain::parse_id(&data.claims.sub, "sub")
            .map_err(|_| Error::unauthorized("invalid or expired access token"))
    }

    /// The authenticated user of a request (`Authorization: Bearer <token>`).
    pub fn authenticate(&self, request: &ApiRequest) -> Result<UserId> {
        self.verify(request.bearer_token()?)
    }
}
