//! The request meter against a real engine through the real SDK: embedded dynoxide, or
//! DynamoDB Local when `RIPPLE_TEST_DYNAMODB_ENDPOINT` is set.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use shared::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use shared::metering::{RequestMeter, DYNAMODB};
use shared::testkit::TestDb;

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn metered_clients(db: &TestDb, meter: &RequestMeter) -> DynamoClients {
    DynamoClients::from_sdk_config(
        &local_sdk_config(),
        &db.config(),
        &Endpoints {
            dynamodb: Some(db.endpoint.clone()),
            meter: Some(meter.clone()),
            ..Endpoints::default()
        },
    )
    .unwrap_or_else(|e| panic!("metered clients: {e:?}"))
}

#[tokio::test]
async fn a_metered_client_counts_each_request_and_the_capacity_it_consumed() {
    let db = TestDb::start().await;
    let meter = RequestMeter::new();
    let dynamodb = metered_clients(&db, &meter).dynamodb;
    let mut item = key("METER#a", "ITEM#1");
    item.insert("body".to_owned(), AttributeValue::S("x".repeat(100)));

    dynamodb
        .put_item()
        .table_name(&db.table_name)
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
    let after_put = meter.snapshot();
    let query = dynamodb
        .query()
        .table_name(&db.table_name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("METER#a".to_owned()))
        .send()
        .await
        .unwrap();
    assert_eq!(query.count, 1);
    let keys = KeysAndAttributes::builder()
        .keys(key("METER#a", "ITEM#1"))
        .keys(key("METER#a", "ITEM#2"))
        .consistent_read(true)
        .build()
        .unwrap();
    let batch = dynamodb
        .batch_get_item()
        .request_items(&db.table_name, keys)
        .send()
        .await
        .unwrap();
    assert_eq!(batch.responses.unwrap()[&db.table_name].len(), 1);

    let counted = meter.snapshot();
    assert_eq!(counted.operation_requests(DYNAMODB, "PutItem"), 1);
    assert_eq!(counted.operation_requests(DYNAMODB, "Query"), 1);
    assert_eq!(counted.operation_requests(DYNAMODB, "BatchGetItem"), 1);
    assert_eq!(counted.dynamodb_requests(), 3);
    assert_eq!(counted.sqs_requests(), 0);
    assert_eq!(counted.management_requests(), 0);
    // One small item written: one write unit. Reads reported, and only by the reads.
    assert_eq!(counted.dynamodb_write_units, 1.0);
    assert_eq!(after_put.dynamodb_read_units, 0.0);
    assert!(
        counted.dynamodb_read_units > 0.0,
        "reads consumed {} units",
        counted.dynamodb_read_units
    );

    let delta = counted.since(&after_put);
    assert_eq!(delta.dynamodb_requests(), 2);
    assert_eq!(delta.dynamodb_write_units, 0.0);
    assert_eq!(delta.dynamodb_read_units, counted.dynamodb_read_units);

    meter.reset();
    assert_eq!(meter.snapshot().total_requests(), 0);
}

#[tokio::test]
async fn a_refused_conditional_write_is_a_request_and_an_error() {
    let db = TestDb::start().await;
    let meter = RequestMeter::new();
    let dynamodb = metered_clients(&db, &meter).dynamodb;
    let put = || {
        dynamodb
            .put_item()
            .table_name(&db.table_name)
            .set_item(Some(key("METER#b", "ONCE")))
            .condition_expression("attribute_not_exists(pk)")
            .send()
    };
    put().await.unwrap();
    assert!(put().await.is_err(), "the second put must be refused");

    let counted = meter.snapshot();
    assert_eq!(counted.operation_requests(DYNAMODB, "PutItem"), 2);
    let refused = (DYNAMODB.to_owned(), "PutItem".to_owned());
    assert_eq!(counted.errors.get(&refused), Some(&1));
    assert_eq!(counted.dynamodb_write_units, 1.0);
}

#[tokio::test]
async fn an_unmetered_client_leaves_the_meter_alone() {
    let db = TestDb::start().await;
    let meter = RequestMeter::new();
    let _metered = metered_clients(&db, &meter);
    db.dynamodb
        .put_item()
        .table_name(&db.table_name)
        .set_item(Some(key("METER#c", "ITEM")))
        .send()
        .await
        .unwrap();
    assert_eq!(meter.snapshot().total_requests(), 0);
}
