//! Lambda entry point of `ws-disconnect`: configuration and clients once per cold start, then the
//! runtime loop. Everything else lives in the library so tests run the same code.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = shared::config::Config::from_vars(std::env::vars())?;
    shared::telemetry::init(&config.log_filter);
    let clients = shared::aws::Clients::from_env(&config).await;
    let state = Arc::new(ws_disconnect::State::new(config, &clients)?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        ws_disconnect::handle(&state, event)
    }))
    .await
}
