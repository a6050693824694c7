//! Lambda entry point of `api-auth`: the cold start (typed configuration, exactly the SDK
//! clients `api_auth::State` is given, the state and its router) once, then the runtime
//! loop. Everything else lives in the library so tests run the same code.

use shared::http::RestFunction;

// One thread: a Lambda instance handles one event at a time, and a multi-thread runtime
// spawns its workers during init (measured: docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    RestFunction::<api_auth::State>::run().await
}
