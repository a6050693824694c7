//! `shared` — the core every Ripple function is built on.
//!
//! Ripple is a real-time social backend on AWS serverless: Rust Lambda functions behind an
//! API Gateway HTTP API and WebSocket API, one DynamoDB table whose stream drives the push
//! tier, and SQS for large fan-outs. This crate holds everything those functions share, so
//! each function crate is just its routes and handlers.
//!
//! # Layout
//!
//! - [`config`]: the typed [`config::Config`], built once at cold start from the
//!   environment pairs `main.rs` passes in. Library code never reads the environment.
//! - [`error`]: the one [`error::Error`] enum and its mapping to an HTTP status + JSON body
//!   (the only place it exists; `http::error_response` applies it). Its WebSocket `error`
//!   event is built in one place too: [`events::Event::error`].
//! - [`auth`]: access tokens (JWT, pinned algorithm), refresh tokens (hashed, rotated,
//!   revocable families) and argon2id password hashing.
//! - [`domain`]: users, posts, comments, likes, follows, blocks, messages, notifications,
//!   connections… and the validation rules every entry point shares.
//! - [`store`]: the single-table DynamoDB design. `store::keys` builds every key; one module
//!   per area exposes a small trait with its DynamoDB implementation.
//! - [`http`]: router, request extraction and error responses for the `api-*` functions.
//! - [`function`]: the in-process invocation contract the local gateway uses.
//! - [`events`]: the server → client WebSocket events, their envelope and deterministic ids.
//! - `push` (feature `push`): posting events to connections (management API, bounded
//!   concurrency, retry; gone connections removed) and the push metrics.
//! - `fanout` (feature `push`; its SQS sender and the tier's production state need `sqs`):
//!   audiences and their resolution through the online-users index, direct or queued
//!   dispatch, the fan-out queue's messages (work items, chunks, presence checks).
//! - [`feed`]: the tasks that keep materialized home feeds current (distribute, withdraw,
//!   backfill, prune) and the materializer the push worker runs them with.
//! - [`visibility`]: the one privacy policy — who may see a profile, a post, a comment, a
//!   room event, typing, presence, a replayed item — asked by every door.
//! - [`replay`]: what a client missed while away — the one computation behind the
//!   WebSocket `resume` and `GET /events`, and its packing into `replay` frames.
//! - [`retry`]: the one backoff policy (posts, SQS, DynamoDB batches).
//! - `writer_push` (feature `push`): a REST function pushes the events of its write to small audiences
//!   right after its commit (the stream router stays the guaranteed path and skips what
//!   was delivered).
//! - [`aws`]: SDK clients, built once, one typed set per function.
//! - [`metering`]: the request-counting SDK interceptor (requests per operation, DynamoDB
//!   capacity units) behind cost figures and request-bound tests.
//! - [`clock`]: time as a dependency (the edit window is tested by moving a clock).
//! - [`telemetry`]: JSON logs and CloudWatch Embedded Metric Format lines.
//! - `testkit` (feature `testkit`): the test harness (`TestDb`, tokens, REST and WebSocket
//!   requests) over `lambda-local`'s embedded dynoxide.
//!
//! # Features
//!
//! A function enables only what it calls, so `api-auth`, `api-notifications`, `ws-connect`
//! and `ws-disconnect` link neither the SQS nor the management-API SDK, and no REST function
//! links SQS: `push` (the management API client, delivery to connections, the writer push,
//! fan-out audiences and messages), `sqs` (the SQS fan-out sender and the fan-out tier's
//! state; implies `push`), `testkit`.

pub mod auth;
pub mod aws;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
#[cfg(feature = "push")]
pub mod fanout;
pub mod feed;
pub mod function;
pub mod http;
pub mod metering;
#[cfg(feature = "push")]
pub mod push;
pub mod replay;
pub mod retry;
pub mod store;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod visibility;
#[cfg(feature = "push")]
pub mod writer_push;

pub use error::{Error, Result};
