//! Lambda entry point of `ws-disconnect`: the cold start (typed configuration, exactly the SDK
//! clients `ws_disconnect::State` is given, the state) once, then the runtime loop. Everything
//! else lives in the library so tests run the same code.

// The handler awaits the store's async methods directly (no boxed trait futures), so its
// future type nests deeper than the default limit of 128.
#![recursion_limit = "256"]

// One thread: a Lambda instance handles one event at a time, and a multi-thread runtime
// spawns its workers during init (measured: docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::function::run(ws_disconnect::handle).await
}
