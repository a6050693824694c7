//! The whole stack in-process: embedded dynoxide, real moto_server, the gateway and both
//! event-source mappings wired from a template to test functions.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use ripple_local::functions::FunctionRegistry;
use ripple_local::latency::LatencyModel;
use ripple_local::stack::{LocalStack, StackOptions};
use serde_json::{json, Value};
use shared::function::{LambdaFunction, TypedFunction};
use tokio::sync::mpsc;

const MOTO_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/moto_server");

/// A batch function that reports every event it receives and succeeds.
fn reporting_function(events: mpsc::UnboundedSender<Value>) -> Arc<dyn LambdaFunction> {
    TypedFunction::new(move |event: lambda_runtime::LambdaEvent<Value>| {
        let events = events.clone();
        async move {
            let _test_may_not_listen = events.send(event.payload);
            Ok::<_, shared::function::BoxError>(json!({"batchItemFailures": []}))
        }
    })
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event within the wait")
        .expect("channel open")
}

#[tokio::test]
async fn the_stack_wires_storage_queues_gateway_and_both_event_sources_from_the_template() {
    let mut options = StackOptions::new(PathBuf::from(format!(
        "{}/tests/fixtures/stack.yaml",
        env!("CARGO_MANIFEST_DIR")
    )));
    options.in_memory = true;
    options.moto_server = PathBuf::from(MOTO_SERVER);
    options.stream_poll_interval = Duration::from_millis(20);
    let (stream_tx, mut stream_events) = mpsc::unbounded_channel();
    let (worker_tx, mut worker_events) = mpsc::unbounded_channel();
    let tests = FunctionRegistry::new()
        .with("test-stream", reporting_function(stream_tx))
        .with("test-worker", reporting_function(worker_tx));
    let stack = LocalStack::start_with_functions(options, tests)
        .await
        .unwrap();
    let moto_pid = stack.moto_pid().expect("moto was started");

    // Queue names come from the template.
    assert_eq!(stack.queues.fanout.name, "StackFanoutQueue");
    assert_eq!(stack.queues.fanout_dlq.name, "StackFanoutDlq");
    assert_eq!(stack.queues.stream_failures.name, "StreamFailureQueue");

    // HTTP through the real handler.
    let health = http_request(
        "GET",
        &format!("{}/health", stack.urls.http_url()),
        &[],
        b"",
    )
    .await;
    assert_eq!(health.status, 200);

    // A table write reaches the stream function.
    let sdk = shared::aws::local_sdk_config();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(&stack.dynamodb_endpoint)
            .build(),
    );
    dynamodb
        .put_item()
        .table_name(&stack.table_name)
        .item("pk", AttributeValue::S("STACK#1".into()))
        .item("sk", AttributeValue::S("TEST".into()))
        .send()
        .await
        .unwrap();
    let event = next_event(&mut stream_events).await;
    assert_eq!(event["Records"][0]["eventName"], "INSERT");
    assert_eq!(
        event["Records"][0]["dynamodb"]["Keys"]["pk"]["S"],
        "STACK#1"
    );

    // A fan-out message reaches the worker.
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(&stack.sqs_endpoint)
            .build(),
    );
    sqs.send_message()
        .queue_url(&stack.queues.fanout.url)
        .message_body(r#"{"push":"hello"}"#)
        .send()
        .await
        .unwrap();
    let event = next_event(&mut worker_events).await;
    assert_eq!(event["Records"][0]["body"], r#"{"push":"hello"}"#);
    assert_eq!(event["Records"][0]["eventSource"], "aws:sqs");

    stack.stop().await;
    assert!(
        !std::path::Path::new(&format!("/proc/{moto_pid}")).exists(),
        "moto_server stopped with the stack"
    );
}

#[tokio::test]
async fn the_stack_starts_aws_modelled_from_the_latency_model() {
    let mut options = StackOptions::new(PathBuf::from(format!(
        "{}/tests/fixtures/stack.yaml",
        env!("CARGO_MANIFEST_DIR")
    )))
    .with_latency(LatencyModel::aws().with_seed(1));
    options.in_memory = true;
    options.moto_server = PathBuf::from(MOTO_SERVER);
    options.stream_poll_interval = Duration::from_millis(20);
    let (stream_tx, mut stream_events) = mpsc::unbounded_channel();
    let (worker_tx, mut worker_events) = mpsc::unbounded_channel();
    let tests = FunctionRegistry::new()
        .with("test-stream", reporting_function(stream_tx))
        .with("test-worker", reporting_function(worker_tx));
    let stack = LocalStack::start_with_functions(options, tests)
        .await
        .unwrap();
    assert!(
        stack
            .banner()
            .contains("AWS latency:     stream p50=213ms,p90=341ms,p99=552ms"),
        "{}",
        stack.banner()
    );

    // Both event sources still deliver, through their modelled delays.
    let sdk = shared::aws::local_sdk_config();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(&stack.dynamodb_endpoint)
            .build(),
    );
    dynamodb
        .put_item()
        .table_name(&stack.table_name)
        .item("pk", AttributeValue::S("STACK#2".into()))
        .item("sk", AttributeValue::S("TEST".into()))
        .send()
        .await
        .unwrap();
    let event = next_event(&mut stream_events).await;
    assert_eq!(
        event["Records"][0]["dynamodb"]["Keys"]["pk"]["S"],
        "STACK#2"
    );
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(&stack.sqs_endpoint)
            .build(),
    );
    sqs.send_message()
        .queue_url(&stack.queues.fanout.url)
        .message_body("modelled")
        .send()
        .await
        .unwrap();
    let event = next_event(&mut worker_events).await;
    assert_eq!(event["Records"][0]["body"], "modelled");
    stack.stop().await;
}
