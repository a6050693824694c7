//! Access-token verification (`shared::auth::TokenService::verify`): the bearer token of
//! every authenticated request and of the WebSocket `$connect`. Never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shared::auth::TokenService;

static TOKENS: LazyLock<TokenService> = LazyLock::new(token_service);

/// The fuzz target's own Ed25519 key (test-only: it signs the seed tokens of
/// `fuzz/corpus/token`, nothing else; the README there says how they were made).
const FUZZ_SIGNING_KEY: &str = r#"{"alg":"EdDSA","crv":"Ed25519","d":"Cqb-Q0ZCFTL58_dQ87Gs65dnK2JcWP2BD7CwaB08ItE","kid":"fuzz-key","kty":"OKP","use":"sig","x":"Li4rKl9L8iMpNOiMuVcaOBX4tPTUjh32u05wFi3xvc4"}"#;

/// The verifier under test: a JWKS of the fuzz key, as every verifying function holds one.
/// The seed corpus holds a token of this key valid until 2126 and an expired one.
fn token_service() -> TokenService {
    use shared::auth::{Jwks, SigningKey};
    let key = SigningKey::from_jwk_json(FUZZ_SIGNING_KEY).expect("the fuzz key");
    let jwks = Jwks::new(vec![key.public_key()]).expect("a JWKS");
    let config = shared::config::Config::from_vars([
        ("TABLE_NAME", "t".to_owned()),
        ("JWT_PUBLIC_KEYS", jwks.to_json().to_string()),
    ])
    .expect("configuration");
    TokenService::new(&config.jwt).expect("token service")
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TOKENS.verify(token);
});
