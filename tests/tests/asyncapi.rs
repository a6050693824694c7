//! The WebSocket contract, as `contracts.rs` is the REST one: every event the server can
//! send and every frame a client can send is a message of `docs/asyncapi.yaml`, and nothing
//! is documented that the code does not send or read.
//!
//! - Server events: one sample of every `EventBody` variant, built by the same constructors
//!   the functions use, is serialised and validated against the payload schema of the
//!   asyncapi message whose `name` is its `type`: every required field sent, every sent
//!   field documented, types, consts, enums, bounds and formats as declared.
//! - Client frames: every documented frame's example (or, where it has none, a minimal
//!   instance of its schema) is accepted by `ws-message`'s frame parser, and every action the
//!   parser accepts has its documented frame, route and operation.
//!
//! `every_event_kind` matches `EventBody` without a wildcard: a new event type does not
//! compile here until it has a sample, and then fails until `asyncapi.yaml` documents it.

use std::collections::BTreeSet;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use shared::domain::{Comment, Message, Notification, Post};
use shared::error::Error;
use shared::events::{Event, EventBody, TypingState};
use shared::replay::Replay;
use ws_message::{Frame, Route};

fn asyncapi() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/asyncapi.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("asyncapi.yaml parses");
    serde_json::to_value(yaml).expect("asyncapi.yaml is JSON-compatible")
}

fn time(raw: &str) -> DateTime<Utc> {
    raw.parse().expect("fixture time")
}

// ---- samples ---------------------------------------------------------------------------------

const ALICE: &str = "0196a3a0-0000-7000-8000-000000000001";
const BOB: &str = "0196a3a0-0000-7000-8000-000000000002";
const POST: &str = "0196a3b0-7d1e-7c44-9a6b-3f0a2b1c4d5e";

/// Domain values from their stored JSON shape, so the samples do not depend on how the
/// domain types are constructed.
fn post(edited: bool) -> Post {
    serde_json::from_value(json!({
        "id": POST, "author_id": ALICE, "text": "hello", "media_url": null,
        "created_at": "2025-05-01T12:00:00.000Z",
        "edited_at": if edited { json!("2025-05-01T12:01:00.000Z") } else { Value::Null },
        "like_count": 2, "like_version": 3, "comment_count": 1,
    }))
    .expect("post fixture")
}

fn comment() -> Comment {
    serde_json::from_value(json!({
        "id": "0196a3b1-0000-7000-8000-000000000010", "post_id": POST, "author_id": BOB,
        "text": "nice", "created_at": "2025-05-01T12:02:00.000Z",
    }))
    .expect("comment fixture")
}

fn notification() -> Notification {
    serde_json::from_value(json!({
        "id": "0196a3b2-0000-7000-8000-000000000020", "recipient_id": ALICE, "type": "comment",
        "actor_id": BOB, "post_id": POST, "comment_id": "0196a3b1-0000-7000-8000-000000000010",
        "created_at": "2025-05-01T12:02:00.000Z", "read": false,
    }))
    .expect("notification fixture")
}

fn message(status: &str) -> Message {
    serde_json::from_value(json!({
        "id": "0196a3af-1a2b-7c44-9a6b-3f0a2b1c4d5e", "from": BOB,
        "to": ALICE, "text": "hi", "created_at": "2025-05-01T11:59:00.000Z", "status": status,
        "client_message_id": "m-1",
    }))
    .expect("message fixture")
}

/// One event of every type, built by the constructors the functions call.
fn samples() -> Vec<Event> {
    let now = time("2025-05-01T12:03:00Z");
    let alice = ALICE.parse().expect("id");
    let bob = BOB.parse().expect("id");
    let with_request = |body| Event::ephemeral(body, now);
    let resumable = vec![
        Event::new_notification(&notification()),
        Event::message_for(&message("sent"), alice),
        Event::message_for(&message("requested"), alice),
    ];
    vec![
        Event::post_created(&post(false)),
        Event::post_updated(&post(true)),
        Event::post_deleted(&post(false), now),
        resumable[0].clone(),
        Event::notifications_read(
            vec![
                notification().id,
                "0196a3b2-0000-7000-8000-000000000021".parse().expect("id"),
            ],
            now,
        ),
        Event::new_comment(&comment()),
        Event::comment_deleted(post(false).id, comment().id, now),
        Event::like_updated(&post(false), now),
        resumable[1].clone(),
        resumable[2].clone(),
        Event::user_typing(bob, TypingState::Start, now),
        Event::user_online(bob, "connect", now),
        Event::user_offline(bob, "disconnect", now),
        with_request(EventBody::Subscribed {
            channel: format!("post:{POST}"),
            request_id: Some("r-1".into()),
        }),
        with_request(EventBody::Unsubscribed {
            channel: format!("presence:{BOB}"),
            request_id: None,
        }),
        with_request(EventBody::Pong {
            server_time: now,
            request_id: Some("r-2".into()),
        }),
        with_request(EventBody::Replay {
            events: resumable,
            request_id: Some("r-3".into()),
        }),
        Replay {
            events: Vec::new(),
            replayed: 3,
            gap: false,
            feed_new_posts: 1,
            position: "0196a3af-1a2b-7c44-9a6b-3f0a2b1c4d5e"
                .parse()
                .expect("cursor"),
        }
        .resumed(Some("r-3".into()), now),
        Event::error(
            &Error::RateLimited {
                retry_after_secs: 12,
            },
            Some("r-4"),
            now,
        ),
        Event::error(&Error::validation("bad frame"), None, now),
    ]
}

/// Fails to compile when `EventBody` gains a variant this file has no sample for.
fn every_event_kind(body: &EventBody) -> &'static str {
    match body {
        EventBody::PostCreated(_)
        | EventBody::PostUpdated(_)
        | EventBody::PostDeleted { .. }
        | EventBody::NewNotification(_)
        | EventBody::NotificationRead { .. }
        | EventBody::NewComment(_)
        | EventBody::CommentDeleted { .. }
        | EventBody::LikeUpdated { .. }
        | EventBody::NewMessage(_)
        | EventBody::MessageRequest(_)
        | EventBody::UserTyping { .. }
        | EventBody::UserOnline { .. }
        | EventBody::UserOffline { .. }
        | EventBody::Subscribed { .. }
        | EventBody::Unsubscribed { .. }
        | EventBody::Pong { .. }
        | EventBody::Replay { .. }
        | EventBody::Resumed { .. }
        | EventBody::Error { .. } => body.kind(),
    }
}

/// Every `type` the server can send: the variants, as `every_event_kind` lists them.
const EVENT_KINDS: usize = 19;

// ---- the documented messages -------------------------------------------------------------------

/// `(message name, payload schema)` of every message the connection channel lists.
fn channel_messages(doc: &Value) -> Vec<(String, Value)> {
    let listed = doc["channels"]["connection"]["messages"]
        .as_object()
        .expect("channels.connection.messages");
    listed
        .values()
        .map(|reference| {
            let message = resolve(doc, reference);
            let name = message["name"].as_str().expect("message name").to_owned();
            (name, message["payload"].clone())
        })
        .collect()
}

/// The names of the messages the server receives (client frames): those some `receive`
/// operation lists.
fn received_message_names(doc: &Value) -> BTreeSet<String> {
    let operations = doc["operations"].as_object().expect("operations");
    operations
        .values()
        .filter(|operation| operation["action"] == "receive")
        .flat_map(|operation| {
            operation["messages"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|reference| {
            let channel_message = resolve(doc, &reference);
            resolve(doc, channel_message)["name"]
                .as_str()
                .expect("message name")
                .to_owned()
        })
        .collect()
}

/// Follows `$ref` (a local JSON pointer such as `#/components/messages/x/payload`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} resolves"));
            resolve(doc, target)
        }
        None => value,
    }
}

// ---- a JSON Schema check, for the keywords asyncapi.yaml uses ---------------------------------

/// What is wrong with `instance` under `schema` (empty when it conforms). Objects are also
/// checked for fields the schema does not document: the union of `properties` over the
/// schema and its `allOf` branches.
fn violations(doc: &Value, schema: &Value, instance: &Value, at: &str) -> Vec<String> {
    checked(doc, schema, instance, at, true)
}

/// [`violations`]; `whole` is false for one `allOf` branch, which documents only part of
/// the object's fields (the union is checked once, by the schema holding the `allOf`).
fn checked(doc: &Value, schema: &Value, instance: &Value, at: &str, whole: bool) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut found = Vec::new();
    if let Some(branches) = schema["allOf"].as_array() {
        for branch in branches {
            found.extend(checked(doc, branch, instance, at, false));
        }
    }
    if let Some(branches) = schema["oneOf"].as_array() {
        let matching = branches
            .iter()
            .filter(|branch| violations(doc, branch, instance, at).is_empty())
            .count();
        if matching != 1 {
            found.push(format!(
                "{at}: matches {matching} of oneOf's branches, not 1"
            ));
        }
    }
    found.extend(scalar_violations(schema, instance, at));
    if let Some(object) = instance.as_object() {
        found.extend(object_violations(doc, schema, object, at));
        if whole {
            found.extend(undocumented_fields(doc, schema, object, at));
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), instance.as_array()) {
        for (index, item) in array.iter().enumerate() {
            found.extend(violations(doc, items, item, &format!("{at}[{index}]")));
        }
        if let Some(min) = schema["minItems"].as_u64() {
            if (array.len() as u64) < min {
                found.push(format!("{at}: fewer than {min} items"));
            }
        }
    }
    found
}

fn scalar_violations(schema: &Value, instance: &Value, at: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.iter().any(|kind| is_of_type(instance, kind)) {
            found.push(format!("{at}: {instance} is not of type {types}"));
        }
    }
    if let Some(expected) = schema.get("const") {
        if expected != instance {
            found.push(format!("{at}: {instance} is not the const {expected}"));
        }
    }
    if let Some(options) = schema["enum"].as_array() {
        if !options.contains(instance) {
            found.push(format!("{at}: {instance} is not one of {options:?}"));
        }
    }
    if let (Some(max), Some(text)) = (schema["maxLength"].as_u64(), instance.as_str()) {
        if text.chars().count() as u64 > max {
            found.push(format!("{at}: longer than {max} characters"));
        }
    }
    if let (Some(min), Some(number)) = (schema["minimum"].as_i64(), instance.as_i64()) {
        if number < min {
            found.push(format!("{at}: {number} is below the minimum {min}"));
        }
    }
    if let (Some(max), Some(number)) = (schema["maximum"].as_i64(), instance.as_i64()) {
        if number > max {
            found.push(format!("{at}: {number} is above the maximum {max}"));
        }
    }
    if let (Some(format), Some(text)) = (schema["format"].as_str(), instance.as_str()) {
        let conforms = match format {
            "uuid" => uuid::Uuid::parse_str(text).is_ok(),
            "date-time" => DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !conforms {
            found.push(format!("{at}: {text:?} is not a {format}"));
        }
    }
    found
}

fn object_violations(
    doc: &Value,
    schema: &Value,
    object: &Map<String, Value>,
    at: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().expect("required names are strings");
        if !object.contains_key(name) {
            found.push(format!("{at}: required field {name:?} is missing"));
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            if let Some(value) = object.get(name) {
                found.extend(violations(doc, property, value, &format!("{at}.{name}")));
            }
        }
    }
    found
}

fn undocumented_fields(
    doc: &Value,
    schema: &Value,
    object: &Map<String, Value>,
    at: &str,
) -> Vec<String> {
    let documented = documented_fields(doc, schema);
    if documented.is_empty() {
        return Vec::new();
    }
    object
        .keys()
        .filter(|name| !documented.contains(*name))
        .map(|name| format!("{at}: field {name:?} is sent but not documented"))
        .collect()
}

/// The field names a schema documents for an object: its `properties` and those of its
/// `allOf` branches (refs followed). Empty when the schema says nothing of fields.
fn documented_fields(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let schema = resolve(doc, schema);
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default();
    for branch in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(documented_fields(doc, branch));
    }
    names
}

fn is_of_type(instance: &Value, kind: &str) -> bool {
    match kind {
        "object" => instance.is_object(),
        "array" => instance.is_array(),
        "string" => instance.is_string(),
        "integer" => instance.is_i64() || instance.is_u64(),
        "number" => instance.is_number(),
        "boolean" => instance.is_boolean(),
        "null" => instance.is_null(),
        _ => false,
    }
}

// ---- the tests ---------------------------------------------------------------------------------

#[test]
fn every_event_the_server_sends_is_documented_and_conforms_to_its_schema() {
    let doc = asyncapi();
    let documented = channel_messages(&doc);
    let samples = samples();
    let kinds: BTreeSet<&str> = samples
        .iter()
        .map(|event| every_event_kind(&event.body))
        .collect();
    assert_eq!(kinds.len(), EVENT_KINDS, "one sample of every event type");
    let mut problems = Vec::new();
    for event in &samples {
        let kind = event.kind();
        let Some((_, payload)) = documented.iter().find(|(name, _)| name == kind) else {
            problems.push(format!(
                "{kind}: no message named {kind:?} in asyncapi.yaml"
            ));
            continue;
        };
        let instance: Value =
            serde_json::from_str(&event.to_json().expect("serialises")).expect("an event is JSON");
        problems.extend(violations(&doc, payload, &instance, kind));
    }
    assert!(
        problems.is_empty(),
        "asyncapi.yaml vs the events sent:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_documented_server_message_is_an_event_the_server_sends() {
    let doc = asyncapi();
    let received = received_message_names(&doc);
    let sent: BTreeSet<&str> = samples().iter().map(Event::kind).collect();
    let unsent: Vec<String> = channel_messages(&doc)
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| !received.contains(name) && !sent.contains(name.as_str()))
        .collect();
    assert!(
        unsent.is_empty(),
        "documented in asyncapi.yaml but sent by no code: {unsent:?}"
    );
}

#[test]
fn the_schema_check_catches_a_missing_an_undocumented_and_a_mistyped_field() {
    let doc = asyncapi();
    let documented = channel_messages(&doc);
    let payload = &documented
        .iter()
        .find(|(name, _)| name == "like_updated")
        .expect("like_updated is documented")
        .1;
    let event = Event::like_updated(&post(false), time("2025-05-01T12:03:00Z"));
    let good: Value = serde_json::from_str(&event.to_json().expect("json")).expect("json");
    assert!(violations(&doc, payload, &good, "e").is_empty());

    let mut missing = good.clone();
    missing["data"]
        .as_object_mut()
        .expect("data")
        .remove("like_count");
    let mut extra = good.clone();
    extra["data"]["secret"] = json!("leak");
    let mut mistyped = good.clone();
    mistyped["data"]["like_count"] = json!("two");
    let mut wrong_type = good;
    wrong_type["type"] = json!("post_created");
    for (case, instance) in [
        ("missing", missing),
        ("extra", extra),
        ("mistyped", mistyped),
        ("wrong type", wrong_type),
    ] {
        assert!(
            !violations(&doc, payload, &instance, "e").is_empty(),
            "the check passed a {case} field"
        );
    }
}

/// A minimal instance of a client frame's schema: its example, else its required fields
/// from the schema's own consts and examples.
fn frame_instance(doc: &Value, message: &Value) -> Value {
    if let Some(example) = message["examples"][0].get("payload") {
        return example.clone();
    }
    let payload = resolve(doc, &message["payload"]);
    let mut instance = Map::new();
    for name in payload["required"].as_array().into_iter().flatten() {
        let name = name.as_str().expect("required name");
        let property = resolve(doc, &payload["properties"][name]);
        let value = property
            .get("const")
            .or_else(|| property["examples"].get(0))
            .or_else(|| property["enum"].get(0))
            .cloned()
            .unwrap_or_else(|| panic!("no sample value for {name}"));
        instance.insert(name.to_owned(), value);
    }
    Value::Object(instance)
}

#[test]
fn every_documented_client_frame_is_read_by_the_frame_parser_and_routed() {
    let doc = asyncapi();
    let received = received_message_names(&doc);
    assert!(
        !received.is_empty(),
        "asyncapi.yaml documents client frames"
    );
    let messages = doc["components"]["messages"].as_object().expect("messages");
    for name in &received {
        let message = messages
            .values()
            .find(|message| message["name"] == name.as_str())
            .expect("the frame's message");
        let instance = frame_instance(&doc, message);
        let problems = violations(&doc, &message["payload"], &instance, name);
        assert!(problems.is_empty(), "{name}'s own sample: {problems:?}");
        let frame = Frame::read(Some(&instance.to_string()), false);
        let action = frame
            .action
            .unwrap_or_else(|e| panic!("{name}: the parser refused {instance}: {e}"));
        assert_eq!(
            Some(action.route()),
            Route::parse(name),
            "{name}: routed as its own action"
        );
        assert!(
            doc["operations"].get(name.as_str()).is_some(),
            "{name}: an operation documents it"
        );
    }
}

#[test]
fn every_action_the_frame_parser_reads_is_a_documented_client_frame() {
    let doc = asyncapi();
    let received = received_message_names(&doc);
    // Route keys are the actions' names; `$default` is the fallback, not an action.
    let actions = ["subscribe", "unsubscribe", "typing", "ping", "resume"];
    for action in actions {
        assert!(
            Route::parse(action).is_some(),
            "{action} is a route the parser knows"
        );
        assert!(
            received.contains(action),
            "{action}: no client frame in asyncapi.yaml"
        );
    }
    let undocumented: Vec<&String> = received
        .iter()
        .filter(|name| !actions.contains(&name.as_str()))
        .collect();
    assert!(
        undocumented.is_empty(),
        "frames no action reads: {undocumented:?}"
    );
    // And an action the parser does not know is refused, so the list above is complete
    // for what the parser accepts by name.
    let unknown = Frame::read(Some(r#"{"action":"shout"}"#), false);
    assert!(unknown.action.is_err());
}
