//! Authentication: access tokens (JWT), refresh tokens and password hashing.
//!
//! Access tokens are EdDSA (Ed25519) JWTs carrying a `kid` header. Only `api-auth` holds a
//! private key ([`SigningKey`], read from Secrets Manager at its cold start); every
//! verifying function holds only the JWKS (`JWT_PUBLIC_KEYS`), so no function but `api-auth`
//! can mint a token. Verification is pinned to EdDSA, picks the key by `kid` (a missing or
//! unknown `kid` is refused), and requires `exp`, `iat`, `iss`, `aud` and a user-id `sub`.
//! Two keys may be in the JWKS at once, which is how a key is rotated (docs/deploy.md).
//! Tokens are never logged.
//!
//! This module knows nothing of HTTP: reading the token of a request is
//! `TokenService::authenticate`, in `crate::http`.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::JwtConfig;
use crate::domain::UserId;
use crate::error::{Error, Result};

mod keys;
pub mod passwords;
pub mod refresh;

pub use keys::{Jwks, PublicKey, SigningKey, MAX_KID_LENGTH, MAX_PUBLIC_KEYS};

/// Claims of a Ripple access token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// Verifies access tokens, and issues them when given the signing key (`api-auth`).
#[derive(Clone)]
pub struct TokenService {
    jwks: Arc<Jwks>,
    decoding: Arc<HashMap<String, DecodingKey>>,
    signing: Option<Arc<Signer>>,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_seconds: i64,
}

/// The signing key as jsonwebtoken uses it, with the header every issued token carries.
struct Signer {
    header: Header,
    key: EncodingKey,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.jwks.keys().iter().map(|key| key.kid()).collect();
        f.debug_struct("TokenService")
            .field("kids", &kids)
            .field("signing_kid", &self.signing.as_ref().map(|s| &s.header.kid))
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The one answer to every rejected token, whatever the reason.
fn rejected(reason: &dyn std::fmt::Display) -> Error {
    tracing::debug!(reason = %reason, "access token rejected");
    Error::unauthorized("invalid or expired access token")
}

impl TokenService {
    /// A verifier over `config`'s JWKS (`JWT_PUBLIC_KEYS`, required).
    pub fn new(config: &JwtConfig) -> Result<Self> {
        let jwks = config.require_public_keys()?.clone();
        let decoding = jwks
            .keys()
            .iter()
            .map(|key| {
                DecodingKey::from_ed_components(&key.x())
                    .map(|decoding| (key.kid().to_owned(), decoding))
                    .map_err(|e| Error::internal("JWT public key", e))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self {
            jwks: Arc::new(jwks),
            decoding: Arc::new(decoding),
            signing: None,
            validation,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            ttl_seconds: i64::try_from(config.access_token_ttl.as_secs()).unwrap_or(900),
        })
    }

    /// The same service, issuing tokens signed with `key`. The key's public half must be in
    /// the JWKS: a token nobody could verify is never issued.
    pub fn with_signing_key(mut self, key: &SigningKey) -> Result<Self> {
        if self.jwks.get(key.kid()) != Some(&key.public_key()) {
            return Err(Error::invariant(format!(
                "configuration: the signing key {:?} is not in JWT_PUBLIC_KEYS \
                 (publish its public key before api-auth signs with it; docs/deploy.md)",
                key.kid()
            )));
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        self.signing = Some(Arc::new(Signer {
            header,
            key: key.encoding_key(),
        }));
        Ok(self)
    }

    /// Whether this service was given the signing key (only `api-auth`'s is).
    pub fn can_issue(&self) -> bool {
        self.signing.is_some()
    }

    /// The public keys tokens are verified with (what `GET /.well-known/jwks.json` serves).
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// Access-token lifetime in seconds (the `expires_in` of auth responses).
    pub fn ttl_seconds(&self) -> i64 {
        self.ttl_seconds
    }

    /// Signs an access token for `user`; only a service given the signing key can.
    pub fn issue(&self, user: UserId, now: DateTime<Utc>) -> Result<String> {
        let signer = self.signing.as_ref().ok_or_else(|| {
            Error::invariant("this function verifies access tokens and cannot issue them")
        })?;
        let claims = Claims {
            sub: user.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now.timestamp(),
            exp: now.timestamp() + self.ttl_seconds,
        };
        jsonwebtoken::encode(&signer.header, &claims, &signer.key)
            .map_err(|e| Error::internal("signing access token", e))
    }

    /// Verifies a token: EdDSA only, the key named by its `kid`, the signature, `exp`,
    /// `iss`, `aud`, and a UUID `sub`.
    pub fn verify(&self, token: &str) -> Result<UserId> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| rejected(&e))?;
        if header.alg != Algorithm::EdDSA {
            return Err(rejected(&format_args!("alg {:?}", header.alg)));
        }
        let kid = header.kid.as_deref().ok_or_else(|| rejected(&"no kid"))?;
        let key = self
            .decoding
            .get(kid)
            .ok_or_else(|| rejected(&"unknown kid"))?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| rejected(&e))?;
        crate::domain::parse_id(&data.claims.sub, "sub").map_err(|_| rejected(&"sub"))
    }
}
