//! Lambda entry point of `api-notifications`: configuration and clients once per cold start, then the
//! runtime loop. Everything else lives in the library so tests run the same code.

use std::sync::Arc;

use lambda_http::service_fn;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let config = shared::config::Config::from_vars(std::env::vars())?;
    shared::telemetry::init(&config.log_filter);
    let clients = shared::aws::Clients::from_env(&config).await;
    let state = Arc::new(api_notifications::State::new(config, &clients)?);
    lambda_http::run(service_fn(|request| {
        api_notifications::handle(&state, request)
    }))
    .await
}
