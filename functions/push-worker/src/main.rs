//! Lambda entry point of `push-worker`: configuration and clients once per cold start, then
//! the runtime loop over SQS batches. Everything else lives in the library.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = shared::config::Config::from_vars(std::env::vars())?;
    shared::telemetry::init(&config.log_filter);
    let clients = shared::aws::Clients::from_env(&config).await;
    let state = Arc::new(push_worker::State::new(config, &clients)?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        push_worker::handle(&state, event)
    }))
    .await
}
