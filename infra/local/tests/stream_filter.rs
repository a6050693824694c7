//! The stream mapping's `FilterCriteria` (template.yaml) against the router it guards:
//!
//! - a contract with `functions/stream-router/src/decide.rs`: every (entity, change) the
//!   decide table acts on passes the filter, so a new item kind the router handles cannot be
//!   silently dropped in front of it;
//! - the kinds that never produce an event are dropped;
//! - through the real stream poller and dynoxide: a filtered record never reaches the
//!   function, an event-producing one does.

mod event_sources_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use event_sources_support::{records, RecordingFunction};
use ripple_local::event_filter::FilterCriteria;
use ripple_local::stream_poller::{spawn, StreamPollerClients, StreamPollerConfig};
use ripple_local::template::Template;
use serde_json::{json, Value};
use shared::testkit::TestDb;

const CHANGES: [&str; 3] = ["INSERT", "MODIFY", "REMOVE"];

/// Item kinds the router never acts on (their consequences reach clients through the
/// records of other kinds, e.g. a like through its post's `like_count`). The feed's own
/// items are among them: a feed entry written per follower must never reach the router.
const SILENT_ENTITIES: &[&str] = &[
    "like",
    "feed_entry",
    "feed_large_followee",
    "user_search",
    "admin_checkpoint",
    "follow_request",
    "block",
    "rate_window",
    "lockout",
    "refresh_token",
    "token_family",
    "notification_dedup",
    "notification_state",
    "room_member",
    "client_message",
    "user",
    "username",
    "credentials",
    "user_connections",
    "conversation",
    "message_request",
];

fn repository_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative)
}

/// The stream mapping's filter, as `make dev` reads it from template.yaml.
fn template_filter() -> FilterCriteria {
    let template = Template::from_file(&repository_file("template.yaml"))
        .unwrap_or_else(|error| panic!("template.yaml: {error}"));
    let [stream] = template.stream_sources.as_slice() else {
        panic!("one stream mapping expected: {:?}", template.stream_sources);
    };
    stream
        .filter
        .clone()
        .expect("StreamRouterStreamMapping has FilterCriteria")
}

/// The `entity` values `decide` dispatches on: the string arms of its
/// `match change.entity.as_str()`. Read from the source so that a kind added there is
/// covered by this test without anyone remembering to list it.
fn decided_entities() -> Vec<String> {
    let path = repository_file("functions/stream-router/src/decide.rs");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let start = source
        .find("match change.entity.as_str() {")
        .unwrap_or_else(|| {
            panic!(
                "decide.rs no longer dispatches with `match change.entity.as_str()`: \
                 update decided_entities() in this test to the new dispatch"
            )
        });
    let arms = &source[start..];
    let end = arms.find("_ =>").expect("the dispatch has a `_ =>` arm");
    let entities: Vec<String> = arms[..end]
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (pattern, _) = line.split_once("=>")?;
            Some(
                pattern
                    .split('|')
                    .filter_map(|p| p.trim().strip_prefix('"')?.strip_suffix('"'))
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect();
    assert!(
        entities.iter().any(|e| e == "post") && entities.len() >= 6,
        "could not read decide's entity arms: {entities:?}"
    );
    entities
}

/// A stream record as Lambda delivers it, for an item of `entity` changed by `change`;
/// the images carry only the keys and the entity (what the filter looks at).
fn stream_record(entity: &str, change: &str) -> Value {
    let image = json!({
        "pk": {"S": "PK#1"},
        "sk": {"S": "SK#1"},
        "entity": {"S": entity},
    });
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": 1_700_000_000,
        "Keys": {"pk": {"S": "PK#1"}, "sk": {"S": "SK#1"}},
        "SequenceNumber": "000000000000000000001",
        "SizeBytes": 64,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    if change != "REMOVE" {
        dynamodb["NewImage"] = image.clone();
    }
    if change != "INSERT" {
        dynamodb["OldImage"] = image;
    }
    json!({
        "eventID": "1",
        "eventName": change,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/ripple/stream/x",
    })
}

/// Whether the router acts on the record: a decision, or an error (decide read the images,
/// which these minimal records cannot satisfy: it would act on a real one).
fn router_acts_on(record: &Value) -> bool {
    let parsed: aws_lambda_events::event::dynamodb::EventRecord =
        serde_json::from_value(record.clone())
            .unwrap_or_else(|error| panic!("not a Lambda stream record ({error}): {record}"));
    match stream_router::decide(&parsed) {
        Ok(decision) => !decision.is_empty(),
        Err(_) => true,
    }
}

#[test]
fn every_change_the_router_acts_on_passes_the_filter() {
    let filter = template_filter();
    let mut acted_on = Vec::new();
    for entity in decided_entities() {
        for change in CHANGES {
            let record = stream_record(&entity, change);
            if !router_acts_on(&record) {
                continue;
            }
            acted_on.push(format!("{change} {entity}"));
            assert!(
                filter.matches(&record),
                "decide acts on {change} of `{entity}`, but the FilterCriteria of \
                 StreamRouterStreamMapping in template.yaml drops it: add \"{entity}\" to the \
                 {change} pattern's list"
            );
        }
    }
    // The table of decide.rs, as the filter lists it.
    for expected in [
        "INSERT post",
        "MODIFY post",
        "REMOVE post",
        "INSERT comment",
        "INSERT notification",
        "MODIFY notification",
        "INSERT message",
        "INSERT connection",
        "REMOVE connection",
        "INSERT presence",
        "MODIFY presence",
        "INSERT follow",
        "REMOVE follow",
    ] {
        assert!(
            acted_on.iter().any(|a| a == expected),
            "{expected} is missing from {acted_on:?}"
        );
    }
}

#[test]
fn changes_that_never_produce_an_event_are_dropped() {
    let filter = template_filter();
    for entity in SILENT_ENTITIES {
        for change in CHANGES {
            let record = stream_record(entity, change);
            assert!(
                !router_acts_on(&record),
                "decide now acts on {change} of `{entity}`: move it out of SILENT_ENTITIES"
            );
            assert!(
                !filter.matches(&record),
                "{change} of `{entity}` produces nothing but would invoke the router"
            );
        }
    }
    // Changes of routed kinds that decide ignores are dropped too.
    for (entity, change) in [
        ("connection", "MODIFY"),
        ("presence", "REMOVE"),
        ("comment", "REMOVE"),
        ("message", "MODIFY"),
        ("message", "REMOVE"),
        ("notification", "REMOVE"),
        ("comment", "MODIFY"),
    ] {
        let record = stream_record(entity, change);
        assert!(!router_acts_on(&record), "decide acts on {change} {entity}");
        assert!(!filter.matches(&record), "{change} {entity} passes");
    }
    // A record without an entity (no item of Ripple's) never reaches the router.
    let mut anonymous = stream_record("post", "INSERT");
    anonymous["dynamodb"]["NewImage"]
        .as_object_mut()
        .map(|image| image.remove("entity"));
    assert!(!filter.matches(&anonymous));
}

async fn put_entity(db: &TestDb, sk: &str, entity: &str) {
    db.dynamodb
        .put_item()
        .table_name(&db.table_name)
        .item("pk", AttributeValue::S("item".into()))
        .item("sk", AttributeValue::S(sk.into()))
        .item("entity", AttributeValue::S(entity.into()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("PutItem {sk} failed: {error:?}"));
}

#[tokio::test]
async fn the_poller_delivers_only_what_the_template_filter_lets_through() {
    let db = TestDb::start().await;
    let (function, mut invocations) = RecordingFunction::scripted(|_| Ok(Value::Null));
    let mut config = StreamPollerConfig::new("stream-router", &db.table_name);
    config.filter = Some(template_filter());
    let clients = StreamPollerClients {
        dynamodb: db.dynamodb.clone(),
        streams: db.streams.clone(),
        sqs: None,
    };
    let poller = spawn(config, clients, function)
        .await
        .unwrap_or_else(|error| panic!("stream poller did not start: {error:#}"));

    // Only filtered records: no invocation at all (an empty batch never invokes).
    put_entity(&db, "like-1", "like").await;
    put_entity(&db, "window-1", "rate_window").await;
    invocations
        .assert_none_for(Duration::from_millis(700))
        .await;

    // Filtered records around an event-producing one: only it reaches the function.
    put_entity(&db, "entry-1", "feed_entry").await;
    put_entity(&db, "post-1", "post").await;
    put_entity(&db, "dedup-1", "notification_dedup").await;
    let event = invocations.next().await;
    let delivered: Vec<&str> = records(&event)
        .iter()
        .map(|record| record["dynamodb"]["Keys"]["sk"]["S"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(delivered, ["post-1"]);
    invocations
        .assert_none_for(Duration::from_millis(500))
        .await;
    poller.shutdown().await;
}
