//! The baseline of `bench_init`: the smallest useful `lambda_runtime` function, started the
//! way every Ripple function is (same tokio flavour, same release profile). It answers
//! `{"message": "hello <name>"}`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let name = event.payload["name"].as_str().unwrap_or("world").to_owned();
        Ok::<Value, Error>(json!({ "message": format!("hello {name}") }))
    }))
    .await
}
