//! Properties of the frame parser (`ws_message::frame`): whatever a client sends, a frame
//! is read into an action or an error (never a panic), and every well-formed action is read
//! back exactly as it was written, with its request id.

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use shared::domain::UserId;
use shared::events::TypingState;
use ws_message::{
    Action, Frame, Ping, Resume, Route, Subscribe, Typing, Unsubscribe, MAX_FRAME_BYTES,
    MAX_REQUEST_ID_CHARS,
};

/// Reads `body` and checks what holds for every frame.
fn read(body: &str) -> Result<Frame, TestCaseError> {
    let frame = Frame::read(Some(body), false);
    if let Some(id) = &frame.request_id {
        prop_assert!(id.chars().count() <= MAX_REQUEST_ID_CHARS);
    }
    match &frame.action {
        Ok(action) => {
            prop_assert!(body.len() <= MAX_FRAME_BYTES);
            prop_assert!(action.arrives_on(Route::Default) && action.arrives_on(action.route()));
        }
        Err(error) => prop_assert!(matches!(error.status(), 400 | 413), "{error}"),
    }
    Ok(frame)
}

fn action() -> impl Strategy<Value = Action> {
    let typing = prop_oneof![Just(TypingState::Start), Just(TypingState::Stop)];
    prop_oneof![
        ".{0,80}".prop_map(|channel| Action::Subscribe(Subscribe { channel })),
        ".{0,80}".prop_map(|channel| Action::Unsubscribe(Unsubscribe { channel })),
        (1..=u128::MAX, typing).prop_map(|(to, state)| Action::Typing(Typing {
            to: UserId::from_u128(to),
            state
        })),
        Just(Action::Ping(Ping {})),
        ".{0,80}".prop_map(|since| Action::Resume(Resume { since })),
    ]
}

/// The JSON a client sends for `action` (Action is read-only: no `Serialize`).
fn frame_json(action: &Action) -> Value {
    match action {
        Action::Subscribe(Subscribe { channel }) => {
            json!({"action": "subscribe", "channel": channel})
        }
        Action::Unsubscribe(Unsubscribe { channel }) => {
            json!({"action": "unsubscribe", "channel": channel})
        }
        Action::Typing(Typing { to, state }) => {
            json!({"action": "typing", "to": to, "state": state.as_str()})
        }
        Action::Ping(Ping {}) => json!({"action": "ping"}),
        Action::Resume(Resume { since }) => json!({"action": "resume", "since": since}),
    }
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,10}", inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    /// A well-formed frame is read back as its action and request id.
    #[test]
    fn actions_round_trip(action in action(), request_id in prop::option::of(".{0,128}")) {
        let mut value = frame_json(&action);
        if let Some(id) = &request_id {
            value["request_id"] = json!(id);
        }
        let frame = read(&value.to_string())?;
        prop_assert_eq!(frame.request_id, request_id);
        prop_assert_eq!(frame.action.unwrap(), action);
    }

    /// Any text: an action or a 400/413, never a panic.
    #[test]
    fn any_text_is_read_without_panic(body in any::<String>()) {
        read(&body)?;
    }

    /// Objects with a known action and arbitrary other members (the deserialiser's paths).
    #[test]
    fn objects_with_any_members_are_read_without_panic(
        name in prop::sample::select(vec!["subscribe", "unsubscribe", "typing", "ping", "resume", "other"]),
        members in prop::collection::btree_map(
            prop_oneof![Just("channel".to_owned()), Just("to".to_owned()), Just("state".to_owned()),
                        Just("since".to_owned()), Just("request_id".to_owned()), ".{0,8}"],
            json_value(),
            0..5,
        ),
    ) {
        let mut object: Map<String, Value> = members.into_iter().collect();
        object.insert("action".into(), json!(name));
        read(&Value::Object(object).to_string())?;
    }

    /// Any JSON value at all as the frame.
    #[test]
    fn any_json_is_read_without_panic(value in json_value()) {
        read(&value.to_string())?;
    }

    /// Binary frames are refused whatever they hold.
    #[test]
    fn binary_frames_are_refused(body in any::<String>()) {
        let frame = Frame::read(Some(&body), true);
        prop_assert_eq!(frame.action.unwrap_err().status(), 400);
    }
}
