//! Lambda entry point of `push-worker`: the cold start (typed configuration, exactly the SDK
//! clients `push_worker::State` is given, the state) once, then the runtime loop. Everything
//! else lives in the library so tests run the same code.

// One thread: a Lambda instance handles one event at a time, and a multi-thread runtime
// spawns its workers during init (measured: docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::function::run(push_worker::handle).await
}
