//! The security suite, end to end through the local gateway (REST over HTTP, real sockets):
//! privacy across blocks and private accounts, abuse limits, tokens and log hygiene.
//!
//! Run: `cargo test -p ripple-tests --test security` (needs `make tools` for moto; without
//! `RUST_LOG`: the secrets test installs its own log capture).

mod limits;
mod privacy;
mod secrets;
mod tokens;
