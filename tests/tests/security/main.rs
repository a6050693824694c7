//! The security suite, end to end through the local gateway (REST over HTTP, real sockets):
//! privacy across blocks and private accounts, abuse limits, tokens.
//!
//! Run: `cargo test -p ripple-tests --test security` (needs `make tools` for moto).

mod privacy;
mod tokens;
