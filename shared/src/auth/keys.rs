//! Ed25519 keys of access tokens: the signing key only `api-auth` holds, and the JWKS (the
//! public halves, RFC 7517 / RFC 8037) every verifying function is given.
//!
//! Formats (docs/deploy.md, "Access-token keys"):
//! - a public key is an OKP JWK `{"kty":"OKP","crv":"Ed25519","x":…,"kid":…,"alg":"EdDSA",
//!   "use":"sig"}`; the JWKS is `{"keys":[…]}` (`JWT_PUBLIC_KEYS`, and what
//!   `GET /.well-known/jwks.json` serves);
//! - the signing key (the Secrets Manager secret's `SecretString`) is the same JWK plus `d`,
//!   the base64url 32-byte private seed.
//!
//! Parsing errors never quote the input: the signing key's JSON is secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Most keys a JWKS may hold. Two are active during a rotation; a few more leave room for
/// an overlapping emergency rotation without letting a bad parameter grow unbounded.
pub const MAX_PUBLIC_KEYS: usize = 8;

/// Longest `kid` accepted (a short label such as `2026-12-a`).
pub const MAX_KID_LENGTH: usize = 64;

/// One Ed25519 public key and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    kid: String,
    x: [u8; 32],
}

impl PublicKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The base64url (unpadded) public key, the JWK's `x`.
    pub fn x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.x)
    }

    /// The key as a public JWK.
    pub fn to_jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x(),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }

    fn from_jwk(jwk: RawJwk) -> Result<Self> {
        let kid = checked_kid(jwk.kid)?;
        if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
            return Err(key_error(format!("key {kid:?} is not an OKP Ed25519 key")));
        }
        if jwk.alg.as_deref().is_some_and(|alg| alg != "EdDSA") {
            return Err(key_error(format!(
                "key {kid:?} has an alg other than EdDSA"
            )));
        }
        if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err(key_error(format!("key {kid:?} has a use other than sig")));
        }
        let x = jwk
            .x
            .ok_or_else(|| key_error(format!("key {kid:?} has no x")))?;
        let x = decode_32(&x)
            .ok_or_else(|| key_error(format!("key {kid:?}: x is not a base64url 32-byte value")))?;
        ed25519_dalek::VerifyingKey::from_bytes(&x)
            .map_err(|_| key_error(format!("key {kid:?}: x is not an Ed25519 point")))?;
        Ok(Self { kid, x })
    }
}

/// The public keys tokens are verified with, by `kid`: the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<PublicKey>,
}

impl Jwks {
    /// A JWKS of `keys`: at least one, at most [`MAX_PUBLIC_KEYS`], ids unique.
    pub fn new(keys: Vec<PublicKey>) -> Result<Self> {
        if keys.is_empty() {
            return Err(key_error("the JWKS has no keys".to_owned()));
        }
        if keys.len() > MAX_PUBLIC_KEYS {
            return Err(key_error(format!(
                "the JWKS has {} keys, at most {MAX_PUBLIC_KEYS} are allowed",
                keys.len()
            )));
        }
        for (index, key) in keys.iter().enumerate() {
            if keys[..index].iter().any(|earlier| earlier.kid == key.kid) {
                return Err(key_error(format!("kid {:?} appears twice", key.kid)));
            }
        }
        Ok(Self { keys })
    }

    /// Parses a JWKS document (`{"keys":[…]}`), e.g. `JWT_PUBLIC_KEYS`.
    pub fn parse(json: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct RawJwks {
            keys: Vec<RawJwk>,
        }
        let raw: RawJwks = serde_json::from_str(json).map_err(|e| {
            key_error(format!(
                "not a JWKS ({{\"keys\":[…]}}), {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Self::new(
            raw.keys
                .into_iter()
                .map(PublicKey::from_jwk)
                .collect::<Result<_>>()?,
        )
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// The key with id `kid`.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|key| key.kid == kid)
    }

    /// The JWKS document (`{"keys":[…]}`).
    pub fn to_json(&self) -> Value {
        json!({ "keys": self.keys.iter().map(PublicKey::to_jwk).collect::<Vec<_>>() })
    }
}

/// The private key `api-auth` signs access tokens with. Its `Debug` shows the `kid` only;
/// the seed is wiped on drop (ed25519-dalek's `zeroize`).
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key (the local stack, tests, a rotation).
    pub fn generate(kid: &str) -> Result<Self> {
        use rand::RngCore;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        Ok(Self {
            kid: checked_kid(kid.to_owned())?,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Parses the private JWK (the secret's `SecretString`); when it carries `x`, `x` must be
    /// the public key of `d`, so a mismatched secret fails the cold start.
    pub fn from_jwk_json(json: &str) -> Result<Self> {
        let raw: RawJwk = serde_json::from_str(json).map_err(|e| {
            key_error(format!(
                "the signing key is not a JWK, {:?} error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let kid = checked_kid(raw.kid)?;
        if raw.kty != "OKP" || raw.crv != "Ed25519" {
            return Err(key_error(format!(
                "signing key {kid:?} is not an OKP Ed25519 key"
            )));
        }
        let seed = raw
            .d
            .as_deref()
            .and_then(|d| decode_32(d.trim()))
            .map(zeroize::Zeroizing::new)
            .ok_or_else(|| {
                key_error(format!(
                    "signing key {kid:?}: d is missing or not a base64url 32-byte value"
                ))
            })?;
        let key = Self {
            kid,
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        };
        if let Some(x) = raw.x {
            if decode_32(&x) != Some(key.key.verifying_key().to_bytes()) {
                return Err(key_error(format!(
                    "signing key {:?}: x is not the public key of d",
                    key.kid
                )));
            }
        }
        Ok(key)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as it belongs in the JWKS.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            kid: self.kid.clone(),
            x: self.key.verifying_key().to_bytes(),
        }
    }

    /// The private JWK, the format of the Secrets Manager secret. Secret: only the local
    /// stack writes it (to its own state directory and its Secrets Manager).
    pub fn to_private_jwk_json(&self) -> String {
        let mut jwk = self.public_key().to_jwk();
        jwk["d"] = Value::String(URL_SAFE_NO_PAD.encode(self.key.to_bytes()));
        jwk.to_string()
    }

    /// The key as jsonwebtoken signs with: PKCS#8 DER (RFC 8410), which is the fixed
    /// 16-byte prefix for Ed25519 followed by the 32-byte seed.
    pub(crate) fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        const PKCS8_ED25519_PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut der = zeroize::Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&PKCS8_ED25519_PREFIX);
        der.extend_from_slice(self.key.as_bytes());
        jsonwebtoken::EncodingKey::from_ed_der(&der)
    }
}

/// A JWK as found in a JWKS or in the signing-key secret; checked into the types above.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: String,
    kid: String,
    x: Option<String>,
    d: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
}

fn checked_kid(kid: String) -> Result<String> {
    let valid = !kid.is_empty()
        && kid.len() <= MAX_KID_LENGTH
        && kid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
    if valid {
        Ok(kid)
    } else {
        Err(key_error(format!(
            "kid must be 1-{MAX_KID_LENGTH} characters of A-Z a-z 0-9 - _ . :"
        )))
    }
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

fn key_error(message: String) -> Error {
    Error::invariant(format!("access-token keys: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_round_trips_through_its_private_jwk_and_debug_hides_it() {
        let key = SigningKey::generate("k1").unwrap();
        let json = key.to_private_jwk_json();
        let parsed = SigningKey::from_jwk_json(&json).unwrap();
        assert_eq!(parsed.public_key(), key.public_key());
        let d = serde_json::from_str::<Value>(&json).unwrap()["d"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!format!("{parsed:?}").contains(&d));
        assert!(format!("{parsed:?}").contains("k1"));
    }

    #[test]
    fn a_private_jwk_whose_x_is_another_key_is_refused_without_quoting_it() {
        let key = SigningKey::generate("k1").unwrap();
        let other = SigningKey::generate("k1").unwrap();
        let mut jwk: Value = serde_json::from_str(&key.to_private_jwk_json()).unwrap();
        jwk["x"] = Value::String(other.public_key().x());
        let error = SigningKey::from_jwk_json(&jwk.to_string()).unwrap_err();
        assert!(
            error.to_string().contains("x is not the public key"),
            "{error}"
        );
        let d = jwk["d"].as_str().unwrap();
        assert!(!error.to_string().contains(d));
        let broken = format!("{{\"d\": \"{d}\", oops}}");
        let error = SigningKey::from_jwk_json(&broken).unwrap_err();
        assert!(!error.to_string().contains(d), "{error}");
    }

    #[test]
    fn a_jwks_round_trips_and_rejects_bad_keys() {
        let a = SigningKey::generate("a").unwrap().public_key();
        let b = SigningKey::generate("b").unwrap().public_key();
        let jwks = Jwks::new(vec![a.clone(), b.clone()]).unwrap();
        let parsed = Jwks::parse(&jwks.to_json().to_string()).unwrap();
        assert_eq!(parsed, jwks);
        assert_eq!(parsed.get("b"), Some(&b));
        assert!(parsed.get("c").is_none());

        assert!(
            Jwks::new(vec![a.clone(), a.clone()]).is_err(),
            "duplicate kid"
        );
        assert!(Jwks::parse(r#"{"keys":[]}"#).is_err(), "empty");
        let mut short = a.to_jwk();
        short["x"] = Value::String(URL_SAFE_NO_PAD.encode([1u8; 16]));
        assert!(Jwks::parse(&json!({ "keys": [short] }).to_string()).is_err());
        let mut rsa = a.to_jwk();
        rsa["kty"] = Value::String("RSA".into());
        assert!(Jwks::parse(&json!({ "keys": [rsa] }).to_string()).is_err());
        let mut hs = a.to_jwk();
        hs["alg"] = Value::String("HS256".into());
        assert!(Jwks::parse(&json!({ "keys": [hs] }).to_string()).is_err());
        assert!(Jwks::parse("not json").is_err());
    }
}
