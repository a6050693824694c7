//! Local AWS emulation: what it takes to run Lambda functions off AWS, against real engines.
//!
//! This crate is a leaf: it depends on no Ripple crate (not `shared`, no function), only on
//! `aws_lambda_events`, the AWS SDK clients, dynoxide and tokio. Everything that *runs*
//! functions locally builds on it:
//!
//! - `ripple-local` (the dev gateway, `make dev`) turns real HTTP requests, WebSocket
//!   frames, stream records and queue messages into Lambda events with it, and serves its
//!   DynamoDB and SQS endpoints with it;
//! - `shared::testkit` (the `testkit` feature) adds Ripple's parts on top: a `TestDb` with
//!   the Ripple table and `DynamoStore`, test tokens, and the `api`/`ws` request helpers,
//!   whose events come from here;
//! - the push tier's tests (`stream-router`, `push-worker`) read real streams and queues
//!   with it, without depending on the gateway (which depends on all ten functions).
//!
//! # Modules
//!
//! - [`apigw::http`]: [`HttpRequestEvent`], an `ApiGatewayV2httpRequest` (HTTP API payload
//!   2.0: path, query, headers and cookies, body, source IP, request id; no authorizer).
//! - [`apigw::ws`]: [`WsConnection`]'s `$connect` / message / `$disconnect` events, each an
//!   `ApiGatewayWebsocketProxyRequest`.
//! - [`stream`]: DynamoDB stream records → the Lambda `DynamoDbEvent` ([`lambda_record`],
//!   [`dynamodb_event`]) and [`StreamReader`], which reads a table's real stream.
//! - [`sqs`]: SQS messages → the Lambda `SqsEvent` ([`sqs_record`], [`sqs_event`]), partial
//!   batch responses, and the queue reads tests need ([`sqs::receive_all`],
//!   [`sqs::delayed_count`]).
//! - [`dynamo`]: [`EmbeddedDynamo`], an in-process dynoxide server over HTTP on a free
//!   port, opened with [`open_dynoxide`] (which indexes its stream records).
//! - [`moto`]: [`MotoServer`], a `moto_server` child process (SQS, Secrets Manager) that
//!   cannot outlive its parent.
//! - [`ids`]: API Gateway-shaped ids and timestamps.
//!
//! # Which harness to use when
//!
//! | You test…                                           | Use                                             |
//! |-----------------------------------------------------|-------------------------------------------------|
//! | pure logic (a rule table, a parser)                 | a unit test, no harness                         |
//! | a store access pattern                              | `shared::testkit::TestDb` (`shared/tests/store`) |
//! | a REST route of one function                        | `shared::testkit::api::TestApi`                 |
//! | a WebSocket function (`$connect`, an action)        | `shared::testkit::ws::WsEvent` over a `TestDb`  |
//! | a stream- or SQS-triggered function (push tier)     | this crate's [`StreamReader`], [`sqs`] and [`MotoServer`], with `TestDb` (`functions/stream-router/tests/support`) |
//! | the gateway itself (routing, sockets, pollers)      | `ripple-local`'s own tests                      |
//! | the whole system through real sockets               | `tests/` (`ripple-tests`: realtime, fan-out)    |
//!
//! Only the last two build `ripple-local`; a function's own tests build this crate and
//! `shared`, never the other nine functions.

pub mod apigw;
pub mod dynamo;
pub mod ids;
pub mod moto;
pub mod sqs;
pub mod stream;

pub use apigw::http::HttpRequestEvent;
pub use apigw::ws::{WsApi, WsBody, WsConnection};
pub use dynamo::{open_dynoxide, stream_shard_ids, EmbeddedDynamo, STREAM_RECORD_QUERIES};
pub use moto::MotoServer;
pub use sqs::{sqs_event, sqs_record};
pub use stream::{dynamodb_event, lambda_record, StreamReader};
