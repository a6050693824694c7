//! Properties of the stream-record decoder (`stream_router::decide`): whatever a stream
//! record holds — any event name, any attributes, any types — deciding it yields a decision
//! or a `BadRecord`, never a panic, and every event it decides serialises.

use aws_lambda_events::event::dynamodb::{EventRecord, UserIdentity};
use proptest::prelude::*;
use serde_dynamo::{AttributeValue, Item};
use std::collections::HashMap;
use stream_router::decide;

/// Every attribute name the decoded items have (domain records, connections, presence),
/// so generated images sometimes parse and the decoder's later steps are reached too.
const FIELDS: &[&str] = &[
    "id",
    "author_id",
    "text",
    "media_url",
    "created_at",
    "edited_at",
    "like_count",
    "like_version",
    "comment_count",
    "last_deleted_comment",
    "post_id",
    "from",
    "to",
    "status",
    "client_message_id",
    "follower_id",
    "followee_id",
    "recipient_id",
    "kind",
    "actor_id",
    "comment_id",
    "read",
    "connection_id",
    "user_id",
    "connected_at",
    "user_agent",
    "expires_at",
    "connection",
    "rooms",
    "online",
    "cause",
    "changed_at",
    "pk",
    "sk",
];

const ENTITIES: &[&str] = &[
    "post",
    "notification",
    "comment",
    "message",
    "follow",
    "connection",
    "presence",
    "like",
    "user",
    "",
];

/// Values that fit the fields above (ids, times, counts, enum names) and values that don't.
fn attribute() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        any::<u128>().prop_map(|n| AttributeValue::S(uuid::Uuid::from_u128(n).to_string())),
        (0i64..4_000_000_000).prop_map(|secs| AttributeValue::S(
            chrono::DateTime::from_timestamp(secs, 0)
                .unwrap()
                .to_rfc3339()
        )),
        any::<i64>().prop_map(|n| AttributeValue::N(n.to_string())),
        ".{0,12}".prop_map(AttributeValue::N),
        any::<bool>().prop_map(AttributeValue::Bool),
        Just(AttributeValue::Null(true)),
        prop::sample::select(vec![
            "sent",
            "requested",
            "like",
            "follow",
            "comment",
            "message",
            "follow_request",
            "follow_accepted",
            "disconnect",
            "post:x",
            "presence:y",
        ])
        .prop_map(|s| AttributeValue::S(s.to_owned())),
        ".{0,20}".prop_map(AttributeValue::S),
        prop::collection::vec(".{0,8}", 0..3).prop_map(AttributeValue::Ss),
        prop::collection::vec(any::<u8>(), 0..8).prop_map(AttributeValue::B),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
            prop::collection::hash_map(prop::sample::select(FIELDS), inner, 0..4).prop_map(|map| {
                AttributeValue::M(map.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// An item image: maybe an `entity`, and some of the known fields.
fn image() -> impl Strategy<Value = Item> {
    (
        prop::option::of(prop::sample::select(ENTITIES)),
        prop::collection::hash_map(prop::sample::select(FIELDS), attribute(), 0..FIELDS.len()),
    )
        .prop_map(|(entity, fields)| {
            let mut item: HashMap<String, AttributeValue> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            if let Some(entity) = entity {
                item.insert("entity".into(), AttributeValue::S(entity.to_owned()));
            }
            Item::from(item)
        })
}

fn record() -> impl Strategy<Value = EventRecord> {
    (
        prop::sample::select(vec!["INSERT", "MODIFY", "REMOVE", "OTHER"]),
        prop::option::of(image()),
        prop::option::of(image()),
        any::<bool>(),
        "[0-9]{1,20}",
    )
        .prop_map(|(name, old, new, by_ttl, sequence)| {
            let mut record = EventRecord::default();
            record.event_name = name.to_owned();
            record.event_id = format!("event-{sequence}");
            record.change.sequence_number = Some(sequence);
            if let Some(old) = old {
                record.change.old_image = old;
            }
            if let Some(new) = new {
                record.change.new_image = new;
            }
            if by_ttl {
                let mut identity = UserIdentity::default();
                identity.type_ = "Service".into();
                identity.principal_id = "dynamodb.amazonaws.com".into();
                record.user_identity = Some(identity);
            }
            record
        })
}

fn check(record: &EventRecord) -> Result<(), TestCaseError> {
    if let Ok(decision) = decide(record) {
        for push in &decision.pushes {
            prop_assert!(push.event.to_json().is_ok());
        }
    }
    Ok(())
}

proptest! {
    /// Any record: a decision or a bad record, never a panic.
    #[test]
    fn any_record_is_decided_without_panic(record in record()) {
        check(&record)?;
    }

    /// The same for a record as the Lambda event's JSON carries it, re-read from that JSON.
    #[test]
    fn records_read_from_json_are_decided_without_panic(record in record()) {
        let json = serde_json::to_vec(&record).unwrap();
        let reread: EventRecord = serde_json::from_slice(&json).unwrap();
        check(&reread)?;
    }

    /// Arbitrary bytes as a record: refused by the reader or decided, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(record) = serde_json::from_slice::<EventRecord>(&bytes) {
            check(&record)?;
        }
    }
}
