//! Access-token verification (`shared::auth::TokenService::verify`): the bearer token of
//! every authenticated request and of the WebSocket `$connect`. Never a panic.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shared::auth::TokenService;

static TOKENS: LazyLock<TokenService> = LazyLock::new(token_service);

/// The verifier under test. The seed corpus holds a token this service issued (with a
/// lifetime long enough to stay valid): `fuzz/corpus/token/README.md` says how it was made.
fn token_service() -> TokenService {
    use shared::config::{JwtConfig, JwtKey};
    use std::time::Duration;
    TokenService::new(&JwtConfig {
        key: JwtKey::Hs256 {
            secret: b"ripple-fuzz-secret-0123456789abcdef".to_vec(),
        },
        issuer: "ripple".into(),
        audience: "ripple-clients".into(),
        access_token_ttl: Duration::from_secs(100 * 365 * 24 * 3600),
        refresh_token_ttl: Duration::from_secs(3600),
    })
    .expect("token service")
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let _ = TOKENS.verify(token);
});
