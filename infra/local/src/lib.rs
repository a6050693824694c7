//! Ripple's local gateway: API Gateway (HTTP API + WebSocket API + `@connections`) and the
//! Lambda event-source mappings (DynamoDB stream, SQS), in one process, in front of the very
//! handler code that runs on AWS.

// Event sources and the SQS server process.
pub mod event_filter;
pub mod event_source;
pub mod moto;
pub mod sqs_poller;
pub mod stream_poller;

// Gateway core (template, HTTP API, WebSocket API, @connections, invocation, CLI).
pub mod cli;
pub mod functions;
pub mod gateway;
pub mod http_api;
pub mod latency;
pub mod management;
pub mod stack;
pub mod template;
pub mod web_app;
pub mod websocket;

/// API Gateway-shaped ids and timestamps (`lambda-local`'s).
pub use lambda_local::ids;
