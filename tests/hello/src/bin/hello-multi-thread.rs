//! `hello` on tokio's multi-thread runtime (`#[tokio::main]`'s default): the reference row
//! that shows what the runtime flavour costs at start-up, which is why every Ripple function
//! uses the current-thread runtime (docs/benchmarks.md).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let name = event.payload["name"].as_str().unwrap_or("world").to_owned();
        Ok::<Value, Error>(json!({ "message": format!("hello {name}") }))
    }))
    .await
}
