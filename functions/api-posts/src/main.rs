//! Lambda entry point of `api-posts`: the cold start (typed configuration, exactly the SDK
//! clients `api_posts::State` is given, the state) once, then the runtime loop. Everything
//! else lives in the library so tests run the same code.

use std::sync::Arc;

use lambda_http::service_fn;

// One thread: a Lambda instance handles one event at a time, and a multi-thread runtime
// spawns its workers during init (measured: docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let state = Arc::new(shared::function::cold_start::<api_posts::State>().await?);
    lambda_http::run(service_fn(|request| api_posts::handle(&state, request))).await
}
