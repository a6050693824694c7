//! The DynamoDB Streams event-source mapping against embedded dynoxide (through the real
//! `aws-sdk-dynamodbstreams`) and, for the on-failure destination, a real moto server.

mod event_sources_support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use event_sources_support::{receive_messages, records, sqs_client, start_moto, RecordingFunction};
use ripple_local::moto::{ensure_queues, MotoServer, QueueSettings};
use ripple_local::stream_poller::{
    spawn, StreamPollerClients, StreamPollerConfig, StreamPollerHandle,
};
use serde_json::{json, Value};
use shared::function::{BoxError, LambdaFunction};
use shared::testkit::TestDb;

/// The `sk` of every record of an event, in order (tests write items with `pk` "item").
fn sort_keys(event: &Value) -> Vec<String> {
    records(event)
        .iter()
        .map(|record| {
            record["dynamodb"]["Keys"]["sk"]["S"]
                .as_str()
                .unwrap_or_else(|| panic!("record without sk: {record}"))
                .to_owned()
        })
        .collect()
}

fn sequence_number(record: &Value) -> String {
    record["dynamodb"]["SequenceNumber"]
        .as_str()
        .unwrap_or_else(|| panic!("record without SequenceNumber: {record}"))
        .to_owned()
}

async fn put(db: &TestDb, sk: &str, text: &str) {
    db.dynamodb
        .put_item()
        .table_name(&db.table_name)
        .item("pk", AttributeValue::S("item".into()))
        .item("sk", AttributeValue::S(sk.into()))
        .item("text", AttributeValue::S(text.into()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PutItem {sk} failed: {error:?}"));
}

async fn put_all(db: &TestDb, sort_keys: &[&str]) {
    for sk in sort_keys {
        put(db, sk, "v1").await;
    }
}

async fn start_poller(
    db: &TestDb,
    moto: Option<&MotoServer>,
    config: StreamPollerConfig,
    function: Arc<dyn LambdaFunction>,
) -> StreamPollerHandle {
    let clients = StreamPollerClients {
        dynamodb: db.dynamodb.clone(),
        streams: db.streams.clone(),
        sqs: moto.map(|moto| sqs_client(moto.endpoint())),
    };
    spawn(config, clients, function)
        .await
        .unwrap_or_else(|error| panic!("stream poller did not start: {error:#}"))
}

/// A configuration with a short retry delay; batches gather for up to `window`.
fn config(db: &TestDb, batch_size: usize, window: Duration) -> StreamPollerConfig {
    let mut config = StreamPollerConfig::new("stream-router", &db.table_name);
    config.batch_size = batch_size;
    config.maximum_batching_window = window;
    config.retry_delay = Duration::from_millis(20);
    config
}

/// A moto server with the stream on-failure queue; returns the server, a client and the
/// queue URL.
async fn on_failure_queue() -> (MotoServer, aws_sdk_sqs::Client, String) {
    let moto = start_moto().await;
    let sqs = sqs_client(moto.endpoint());
    let queues = ensure_queues(&sqs, &QueueSettings::default())
        .await
        .unwrap_or_else(|error| panic!("cannot create the queues: {error:#}"));
    (moto, sqs, queues.stream_failures.url)
}

fn succeed(_event: &Value) -> Result<Value, BoxError> {
    Ok(Value::Null)
}

#[tokio::test]
async fn insert_modify_remove_events_carry_the_images_of_the_writes() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let poller = start_poller(&db, None, config(&db, 10, Duration::from_secs(2)), function).await;

    put(&db, "a", "first").await;
    db.dynamodb
        .update_item()
        .table_name(&db.table_name)
        .key("pk", AttributeValue::S("item".into()))
        .key("sk", AttributeValue::S("a".into()))
        .update_expression("SET #text = :text")
        .expression_attribute_names("#text", "text")
        .expression_attribute_values(":text", AttributeValue::S("second".into()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("UpdateItem failed: {error:?}"));
    db.dynamodb
        .delete_item()
        .table_name(&db.table_name)
        .key("pk", AttributeValue::S("item".into()))
        .key("sk", AttributeValue::S("a".into()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("DeleteItem failed: {error:?}"));

    let mut delivered: Vec<Value> = Vec::new();
    while delivered.len() < 3 {
        let event = invocations.next().await;
        // The event is exactly what the Rust runtime deserialises a stream event from.
        serde_json::from_value::<aws_lambda_events::event::dynamodb::Event>(event.clone())
            .unwrap_or_else(|error| panic!("not a DynamoDB stream event ({error}): {event}"));
        delivered.extend(records(&event).iter().cloned());
    }
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    let names: Vec<&str> = delivered
        .iter()
        .map(|record| record["eventName"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["INSERT", "MODIFY", "REMOVE"]);

    let keys = json!({"pk": {"S": "item"}, "sk": {"S": "a"}});
    let first_image = json!({"pk": {"S": "item"}, "sk": {"S": "a"}, "text": {"S": "first"}});
    let second_image = json!({"pk": {"S": "item"}, "sk": {"S": "a"}, "text": {"S": "second"}});
    let (insert, modify, remove) = (&delivered[0], &delivered[1], &delivered[2]);
    for record in &delivered {
        assert_eq!(record["eventSource"], "aws:dynamodb");
        assert_eq!(record["eventSourceARN"], poller.stream_arn());
        assert!(record["eventID"].as_str().is_some_and(|id| !id.is_empty()));
        assert!(record["eventVersion"].is_string());
        assert!(record["awsRegion"].is_string());
        assert_eq!(record["dynamodb"]["Keys"], keys);
        assert_eq!(record["dynamodb"]["StreamViewType"], "NEW_AND_OLD_IMAGES");
        assert!(record["dynamodb"]["ApproximateCreationDateTime"].is_number());
        assert!(record["dynamodb"]["SizeBytes"]
            .as_i64()
            .is_some_and(|size| size > 0));
    }
    assert_eq!(insert["dynamodb"]["NewImage"], first_image);
    assert!(insert["dynamodb"].get("OldImage").is_none(), "{insert}");
    assert_eq!(modify["dynamodb"]["OldImage"], first_image);
    assert_eq!(modify["dynamodb"]["NewImage"], second_image);
    assert_eq!(remove["dynamodb"]["OldImage"], second_image);
    assert!(remove["dynamodb"].get("NewImage").is_none(), "{remove}");
    let sequence: Vec<u128> = delivered
        .iter()
        .map(|record| sequence_number(record).parse().unwrap_or_default())
        .collect();
    assert!(
        sequence.windows(2).all(|pair| pair[0] < pair[1]),
        "sequence numbers must increase: {sequence:?}"
    );
    poller.shutdown().await;
}

#[tokio::test]
async fn starts_at_latest_so_writes_before_start_are_not_delivered() {
    let db = TestDb::start().await;
    put_all(&db, &["before-1", "before-2"]).await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let poller = start_poller(&db, None, config(&db, 10, Duration::ZERO), function).await;

    put(&db, "after", "v1").await;

    let event = invocations.next().await;
    assert_eq!(sort_keys(&event), ["after"]);
    poller.shutdown().await;
}

#[tokio::test]
async fn batch_size_is_honoured() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    // The window gathers full batches; the last, short one goes when the window ends.
    let poller = start_poller(&db, None, config(&db, 2, Duration::from_secs(3)), function).await;

    put_all(&db, &["r1", "r2", "r3", "r4", "r5"]).await;

    let batches: Vec<Vec<String>> = invocations.next_n(3).await.iter().map(sort_keys).collect();
    assert_eq!(batches, [vec!["r1", "r2"], vec!["r3", "r4"], vec!["r5"]]);
    poller.shutdown().await;
}

#[tokio::test]
async fn partial_failure_retries_from_the_lowest_reported_record_then_sends_it_to_the_on_failure_queue(
) {
    let db = TestDb::start().await;
    let (moto, sqs, on_failure_url) = on_failure_queue().await;
    // Reports two failures, the higher one first: the checkpoint is the lower one ("poison").
    let (function, mut invocations) = RecordingFunction::scripted(|event: &Value| {
        let failures: Vec<Value> = ["e", "poison"]
            .iter()
            .filter_map(|failing| {
                records(event)
                    .iter()
                    .find(|record| record["dynamodb"]["Keys"]["sk"]["S"] == *failing)
                    .map(|record| json!({"itemIdentifier": sequence_number(record)}))
            })
            .collect();
        Ok(json!({ "batchItemFailures": failures }))
    });
    let mut config = config(&db, 5, Duration::from_secs(5));
    config.report_batch_item_failures = true;
    config.maximum_retry_attempts = Some(2);
    config.on_failure_queue_url = Some(on_failure_url.clone());
    let poller = start_poller(&db, Some(&moto), config, function).await;

    put_all(&db, &["a", "b", "poison", "d", "e"]).await;

    let first = invocations.next().await;
    assert_eq!(sort_keys(&first), ["a", "b", "poison", "d", "e"]);
    let poison_sequence = sequence_number(&records(&first)[2]);
    let last_sequence = sequence_number(&records(&first)[4]);
    // Two retries, each from the poison record: a and b are never redelivered.
    for _ in 0..2 {
        let retry = invocations.next().await;
        assert_eq!(sort_keys(&retry), ["poison", "d", "e"]);
    }

    let failure = receive_messages(&sqs, &on_failure_url, 1).await;
    let body: Value = serde_json::from_str(failure[0].body().unwrap_or_default())
        .unwrap_or_else(|error| panic!("on-failure record is not JSON: {error}"));
    let info = &body["DDBStreamBatchInfo"];
    assert_eq!(info["startSequenceNumber"], poison_sequence.as_str());
    assert_eq!(info["endSequenceNumber"], last_sequence.as_str());
    assert_eq!(info["batchSize"], 3);
    assert_eq!(info["streamArn"], poller.stream_arn());
    assert!(info["shardId"].is_string());
    assert_eq!(
        body["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert_eq!(body["requestContext"]["approximateInvokeCount"], 3);
    assert!(body["requestContext"]["functionArn"]
        .as_str()
        .is_some_and(|arn| arn.ends_with(":function:stream-router")));
    assert_eq!(body["responseContext"]["statusCode"], 200);
    assert_eq!(body["version"], "1.0");
    assert!(body["timestamp"].is_string());

    // The poller has moved on: the next write is delivered alone.
    put(&db, "f", "v1").await;
    let next = invocations.next().await;
    assert_eq!(sort_keys(&next), ["f"]);
    poller.shutdown().await;
}

#[tokio::test]
async fn function_error_bisects_the_batch_until_the_poison_record_is_isolated() {
    let db = TestDb::start().await;
    let (moto, sqs, on_failure_url) = on_failure_queue().await;
    let (function, mut invocations) = RecordingFunction::scripted(|event: &Value| {
        if sort_keys(event).iter().any(|sk| sk == "poison") {
            Err("cannot process the poison record".into())
        } else {
            Ok(Value::Null)
        }
    });
    let mut config = config(&db, 4, Duration::from_secs(5));
    config.bisect_batch_on_function_error = true;
    config.maximum_retry_attempts = Some(1);
    config.on_failure_queue_url = Some(on_failure_url.clone());
    let poller = start_poller(&db, Some(&moto), config, function).await;

    put_all(&db, &["a", "b", "poison", "d"]).await;

    let batches: Vec<Vec<String>> = invocations.next_n(6).await.iter().map(sort_keys).collect();
    assert_eq!(
        batches,
        [
            vec!["a", "b", "poison", "d"],
            vec!["a", "b"],
            vec!["poison", "d"],
            // Alone, it fails once and is retried once (MaximumRetryAttempts 1).
            vec!["poison"],
            vec!["poison"],
            vec!["d"],
        ]
    );
    let failure = receive_messages(&sqs, &on_failure_url, 1).await;
    let body: Value = serde_json::from_str(failure[0].body().unwrap_or_default())
        .unwrap_or_else(|error| panic!("on-failure record is not JSON: {error}"));
    assert_eq!(body["DDBStreamBatchInfo"]["batchSize"], 1);
    assert_eq!(
        body["DDBStreamBatchInfo"]["startSequenceNumber"],
        body["DDBStreamBatchInfo"]["endSequenceNumber"]
    );
    assert_eq!(body["responseContext"]["functionError"], "Unhandled");
    assert_eq!(body["requestContext"]["approximateInvokeCount"], 2);
    poller.shutdown().await;
}

#[tokio::test]
async fn invocation_error_without_bisect_retries_the_whole_batch() {
    let db = TestDb::start().await;
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&attempts);
    let (function, mut invocations) = RecordingFunction::scripted(move |_event: &Value| {
        // The first invocation fails; the retry succeeds.
        if counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Err("transient failure".into())
        } else {
            Ok(Value::Null)
        }
    });
    let poller = start_poller(&db, None, config(&db, 3, Duration::from_secs(5)), function).await;

    put_all(&db, &["a", "b", "c"]).await;

    let batches: Vec<Vec<String>> = invocations.next_n(2).await.iter().map(sort_keys).collect();
    assert_eq!(batches, [vec!["a", "b", "c"], vec!["a", "b", "c"]]);
    put(&db, "d", "v1").await;
    assert_eq!(sort_keys(&invocations.next().await), ["d"]);
    poller.shutdown().await;
}

#[tokio::test]
async fn duplicate_batch_fault_delivers_each_batch_twice() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let mut config = config(&db, 10, Duration::ZERO);
    config.deliver_each_batch_twice = true;
    let poller = start_poller(&db, None, config, function).await;

    put(&db, "once", "v1").await;

    let deliveries = invocations.next_n(2).await;
    assert_eq!(sort_keys(&deliveries[0]), ["once"]);
    assert_eq!(
        deliveries[0], deliveries[1],
        "the duplicate must be the identical event"
    );
    poller.shutdown().await;
}

#[tokio::test]
async fn failed_batch_fault_bisects_a_batch_down_to_single_records() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    // Batches gather for a second, so the four records arrive as one.
    let mut config = config(&db, 10, Duration::from_secs(1));
    config.bisect_batch_on_function_error = true;
    let poller = start_poller(&db, None, config, function).await;
    let faults = std::sync::Arc::clone(poller.faults());
    faults
        .fail_multi_record_batches
        .store(true, std::sync::atomic::Ordering::SeqCst);

    put_all(&db, &["a", "b", "c", "d"]).await;

    // The whole batch ran and "failed", then its halves, then every single record.
    let batches: Vec<Vec<String>> = invocations.next_n(7).await.iter().map(sort_keys).collect();
    assert_eq!(
        batches,
        [
            vec!["a", "b", "c", "d"],
            vec!["a", "b"],
            vec!["a"],
            vec!["b"],
            vec!["c", "d"],
            vec!["c"],
            vec!["d"],
        ]
    );
    assert_eq!(
        faults
            .injected_errors
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    poller.shutdown().await;
}

#[tokio::test]
async fn records_older_than_the_maximum_age_go_to_the_on_failure_queue() {
    let db = TestDb::start().await;
    let (moto, sqs, on_failure_url) = on_failure_queue().await;
    let (function, mut invocations) =
        RecordingFunction::scripted(|_event: &Value| Err("always failing".into()));
    let mut config = config(&db, 10, Duration::ZERO);
    // Unbounded retries: only the record age ends them.
    config.maximum_retry_attempts = None;
    config.maximum_record_age = Some(Duration::from_secs(1));
    config.retry_delay = Duration::from_millis(200);
    config.on_failure_queue_url = Some(on_failure_url.clone());
    let poller = start_poller(&db, Some(&moto), config, function).await;

    put(&db, "stale", "v1").await;

    let first = invocations.next().await;
    assert_eq!(sort_keys(&first), ["stale"]);
    let failure = receive_messages(&sqs, &on_failure_url, 1).await;
    let body: Value = serde_json::from_str(failure[0].body().unwrap_or_default())
        .unwrap_or_else(|error| panic!("on-failure record is not JSON: {error}"));
    assert_eq!(body["requestContext"]["condition"], "RecordAgeExceeded");
    assert_eq!(
        body["DDBStreamBatchInfo"]["startSequenceNumber"],
        sequence_number(&records(&first)[0]).as_str()
    );
    assert_eq!(body["DDBStreamBatchInfo"]["batchSize"], 1);
    poller.shutdown().await;
}

#[tokio::test]
async fn modelled_visibility_delays_keep_each_shard_in_order() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let mut config = config(&db, 100, Duration::ZERO);
    // Wide random delays (a few ms to a few hundred): later writes often draw shorter ones
    // than earlier writes, and must still wait for them.
    config.visibility_delay = Some("p1=2,p50=40,p99=250".parse().unwrap());
    config.latency_seed = 7;
    let poller = start_poller(&db, None, config, function).await;

    let keys: Vec<String> = (0..40).map(|i| format!("k{i:02}")).collect();
    for key in &keys {
        put(&db, key, "v").await;
    }
    let mut delivered = Vec::new();
    while delivered.len() < keys.len() {
        delivered.extend(sort_keys(&invocations.next().await));
    }
    assert_eq!(delivered, keys, "the shard's order");
    poller.shutdown().await;
}

#[tokio::test]
async fn a_record_is_not_delivered_before_its_modelled_delay() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let mut config = config(&db, 10, Duration::ZERO);
    config.visibility_delay = Some("p50=600".parse().unwrap());
    let poller = start_poller(&db, None, config, function).await;

    let written = std::time::Instant::now();
    put(&db, "late", "v").await;
    let event = invocations.next().await;
    // A lower bound only: the injected delay happened (a slow machine adds, never removes).
    // It counts from the estimated write, the middle of the poll window (50 ms plus two
    // GetRecords), hence the margin.
    assert!(written.elapsed() >= Duration::from_millis(450));
    assert_eq!(sort_keys(&event), ["late"]);
    poller.shutdown().await;
}
