//! The SQS event-source mapping against a real moto server (the pinned `.venv` one).

mod event_sources_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_sources_support::{
    queue_depth, receive_messages, records, sqs_client, start_moto, RecordingFunction,
};
use ripple_local::moto::{ensure_queues, MotoServer, QueueSettings, Queues};
use ripple_local::sqs_poller::{spawn, SqsPollerConfig, SqsPollerHandle};
use serde_json::{json, Value};
use shared::function::{BoxError, LambdaFunction};

/// moto with the fan-out queue (1 s visibility timeout, DLQ after 3 receives).
async fn moto_with_queues() -> (MotoServer, aws_sdk_sqs::Client, Queues) {
    let moto = start_moto().await;
    let sqs = sqs_client(moto.endpoint());
    let settings = QueueSettings {
        visibility_timeout: Duration::from_secs(1),
        max_receive_count: 3,
        ..QueueSettings::default()
    };
    let queues = ensure_queues(&sqs, &settings)
        .await
        .unwrap_or_else(|error| panic!("cannot create the queues: {error:#}"));
    (moto, sqs, queues)
}

async fn send(sqs: &aws_sdk_sqs::Client, queue_url: &str, bodies: &[&str]) {
    for body in bodies {
        sqs.send_message()
            .queue_url(queue_url)
            .message_body(*body)
            .message_attributes(
                "origin",
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value("test")
                    .build()
                    .unwrap_or_else(|error| panic!("invalid attribute: {error}")),
            )
            .send()
            .await
            .unwrap_or_else(|error| panic!("SendMessage failed: {error:?}"));
    }
}

async fn start_poller(
    sqs: &aws_sdk_sqs::Client,
    config: SqsPollerConfig,
    function: Arc<dyn LambdaFunction>,
) -> SqsPollerHandle {
    spawn(config, sqs.clone(), function)
        .await
        .unwrap_or_else(|error| panic!("SQS poller did not start: {error:#}"))
}

fn bodies(event: &Value) -> Vec<String> {
    records(event)
        .iter()
        .map(|record| record["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn succeed(_event: &Value) -> Result<Value, BoxError> {
    Ok(Value::Null)
}

#[tokio::test]
async fn partial_failure_is_redelivered_until_the_dlq_and_successes_are_deleted() {
    let (_moto, sqs, queues) = moto_with_queues().await;
    let (function, mut invocations) = RecordingFunction::scripted(|event: &Value| {
        let failures: Vec<Value> = records(event)
            .iter()
            .filter(|record| record["body"] == "poison")
            .map(|record| json!({"itemIdentifier": record["messageId"]}))
            .collect();
        Ok(json!({ "batchItemFailures": failures }))
    });
    let mut config = SqsPollerConfig::new("push-worker", &queues.fanout.url);
    config.report_batch_item_failures = true;
    // Paused while the batch is sent, so that one receive gets all three messages.
    config.start_paused = true;
    let poller = start_poller(&sqs, config, function).await;
    send(&sqs, &queues.fanout.url, &["ok-1", "poison", "ok-2"]).await;
    poller.resume();

    let first = invocations.next().await;
    serde_json::from_value::<aws_lambda_events::event::sqs::SqsEvent>(first.clone())
        .unwrap_or_else(|error| panic!("not an SQS event ({error}): {first}"));
    let mut first_bodies = bodies(&first);
    first_bodies.sort();
    assert_eq!(first_bodies, ["ok-1", "ok-2", "poison"]);
    for record in records(&first) {
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(record["eventSourceARN"], queues.fanout.arn);
        assert_eq!(record["awsRegion"], "us-east-1");
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
        assert!(record["attributes"]["SentTimestamp"].is_string());
        assert!(record["md5OfBody"].is_string());
        assert!(record["receiptHandle"].is_string());
        assert_eq!(
            record["messageAttributes"]["origin"]["stringValue"], "test",
            "{record}"
        );
        assert_eq!(record["messageAttributes"]["origin"]["dataType"], "String");
    }

    // After each visibility timeout only the reported failure comes back.
    for receive_count in ["2", "3"] {
        let retry = invocations.next().await;
        assert_eq!(bodies(&retry), ["poison"]);
        assert_eq!(
            records(&retry)[0]["attributes"]["ApproximateReceiveCount"],
            receive_count
        );
    }
    // maxReceiveCount (3) reached: SQS's redrive moves it to the DLQ.
    let dead = receive_messages(&sqs, &queues.fanout_dlq.url, 1).await;
    assert_eq!(dead[0].body(), Some("poison"));
    assert_eq!(queue_depth(&sqs, &queues.fanout.url).await, 0);
    invocations.assert_none_for(Duration::from_secs(2)).await;
    poller.shutdown().await;
}

#[tokio::test]
async fn invocation_error_leaves_the_whole_batch_for_redelivery() {
    let (_moto, sqs, queues) = moto_with_queues().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let (function, mut invocations) = RecordingFunction::scripted(move |_event: &Value| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            Err("the first invocation crashes".into())
        } else {
            Ok(Value::Null)
        }
    });
    let mut config = SqsPollerConfig::new("push-worker", &queues.fanout.url);
    config.report_batch_item_failures = true;
    config.start_paused = true;
    let poller = start_poller(&sqs, config, function).await;
    send(&sqs, &queues.fanout.url, &["m1", "m2"]).await;
    poller.resume();

    let mut first = bodies(&invocations.next().await);
    first.sort();
    assert_eq!(first, ["m1", "m2"]);
    // Both come back together after the visibility timeout, and are then deleted.
    let retry = invocations.next().await;
    let mut retried = bodies(&retry);
    retried.sort();
    assert_eq!(retried, ["m1", "m2"]);
    for record in records(&retry) {
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "2");
    }
    invocations.assert_none_for(Duration::from_secs(2)).await;
    assert_eq!(queue_depth(&sqs, &queues.fanout.url).await, 0);
    poller.shutdown().await;
}

#[tokio::test]
async fn batch_size_is_honoured() {
    let (_moto, sqs, queues) = moto_with_queues().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let mut config = SqsPollerConfig::new("push-worker", &queues.fanout.url);
    config.batch_size = 2;
    config.start_paused = true;
    let poller = start_poller(&sqs, config, function).await;
    send(&sqs, &queues.fanout.url, &["m1", "m2", "m3", "m4", "m5"]).await;
    poller.resume();

    let mut delivered = Vec::new();
    while delivered.len() < 5 {
        let batch = bodies(&invocations.next().await);
        assert!(
            (1..=2).contains(&batch.len()),
            "batch of {}: {batch:?}",
            batch.len()
        );
        delivered.extend(batch);
    }
    delivered.sort();
    assert_eq!(delivered, ["m1", "m2", "m3", "m4", "m5"]);
    invocations.assert_none_for(Duration::from_secs(2)).await;
    poller.shutdown().await;
}

#[tokio::test]
async fn pause_stops_delivery_until_resumed() {
    let (_moto, sqs, queues) = moto_with_queues().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let poller = start_poller(
        &sqs,
        SqsPollerConfig::new("push-worker", &queues.fanout.url),
        function,
    )
    .await;

    send(&sqs, &queues.fanout.url, &["before-pause"]).await;
    assert_eq!(bodies(&invocations.next().await), ["before-pause"]);

    poller.pause();
    assert!(poller.is_paused());
    send(&sqs, &queues.fanout.url, &["while-paused"]).await;
    // Longer than two long polls of the poller: nothing may be delivered.
    invocations.assert_none_for(Duration::from_secs(3)).await;

    poller.resume();
    assert_eq!(bodies(&invocations.next().await), ["while-paused"]);
    poller.shutdown().await;
}

#[tokio::test]
async fn modelled_delivery_delays_hold_messages_and_every_one_is_delivered_and_deleted() {
    let (_moto, sqs, queues) = moto_with_queues().await;
    let (function, mut invocations) = RecordingFunction::scripted(succeed);
    let mut config = SqsPollerConfig::new("push-worker", &queues.fanout.url);
    // A constant 400 ms from the send: a lower bound the test can check without timing the
    // machine (a slow run only adds).
    config.delivery_delay = Some("p50=400".parse().unwrap());
    let poller = start_poller(&sqs, config, function).await;

    let sent = std::time::Instant::now();
    send(&sqs, &queues.fanout.url, &["one", "two", "three"]).await;
    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        delivered.extend(bodies(&invocations.next().await));
        assert!(sent.elapsed() >= Duration::from_millis(400));
    }
    delivered.sort();
    assert_eq!(delivered, ["one", "three", "two"]);
    // Delivered successfully: deleted, nothing comes back.
    let mut depth = queue_depth(&sqs, &queues.fanout.url).await;
    for _ in 0..50 {
        if depth == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        depth = queue_depth(&sqs, &queues.fanout.url).await;
    }
    assert_eq!(depth, 0);
    poller.shutdown().await;
}
