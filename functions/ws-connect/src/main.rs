//! Lambda entry point of `ws-connect`: the cold start (typed configuration, exactly the SDK
//! clients `ws_connect::State` is given, the state) once, then the runtime loop. Everything
//! else lives in the library so tests run the same code.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};

// One thread: a Lambda instance handles one event at a time, and a multi-thread runtime
// spawns its workers during init (measured: docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    let state = Arc::new(shared::function::cold_start::<ws_connect::State>().await?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<_>| {
        ws_connect::handle(Arc::clone(&state), event)
    }))
    .await
}
