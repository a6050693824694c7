//! The security suite: abuse limits and log hygiene, end to end through the local gateway.
mod limits;
mod secrets;
