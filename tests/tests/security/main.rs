//! Security properties checked end to end through the local gateway (one binary, one module each).
mod tokens;
