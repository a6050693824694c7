//! Properties of what clients send back and what the store builds: page cursors, replay
//! cursors, access tokens and the single-table keys. Pure functions, no table: quick enough
//! for every `cargo test` (proptest's 256 cases each).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use shared::auth::TokenService;
use shared::domain::Id;
use shared::replay::{parse_cursor, time_cursor};
use shared::store::keys;
use shared::store::page::{
    decode_key, decode_token, encode_key, encode_token, KeyShape, PageRequest, MAX_CURSOR_LEN,
};
use uuid::Uuid;

const SHAPES: [KeyShape; 4] = [
    KeyShape::Table,
    KeyShape::Gsi1,
    KeyShape::Gsi2,
    KeyShape::Gsi3,
];

fn shape() -> impl Strategy<Value = KeyShape> {
    prop::sample::select(SHAPES.to_vec())
}

/// Any UUID but the nil one, which is no entity's id.
fn uuid() -> impl Strategy<Value = Uuid> {
    (1..=u128::MAX).prop_map(Uuid::from_u128)
}

/// `uuid` as the kind of id the call site needs.
fn t<T: Id>(uuid: Uuid) -> T {
    T::from_uuid(uuid).expect("uuid() is never nil")
}

/// A key of `shape` whose values are `values` (one per attribute; the first is the partition).
fn key_of(shape: KeyShape, values: &[String]) -> HashMap<String, AttributeValue> {
    shape
        .attributes()
        .iter()
        .zip(values)
        .map(|(name, value)| (name.to_string(), AttributeValue::S(value.clone())))
        .collect()
}

// ---- page cursors ------------------------------------------------------------------------

proptest! {
    /// A key the store returned comes back as the same key, for the partition it was read
    /// from; keys with key-like values (what `keys` builds) always fit in a cursor.
    #[test]
    fn page_cursors_round_trip(
        shape in shape(),
        values in prop::collection::vec("[A-Za-z0-9#:_.-]{1,100}", 4),
    ) {
        let key = key_of(shape, &values);
        let cursor = encode_key(&key).unwrap();
        prop_assert!(cursor.len() <= MAX_CURSOR_LEN);
        prop_assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        prop_assert_eq!(decode_key(&cursor, shape, &values[0]).unwrap(), key);
    }

    /// Any string values: the cursor decodes to the same key exactly when it is within the
    /// accepted size; beyond it, it is a 400, never a panic or another key.
    #[test]
    fn page_cursors_of_any_text_round_trip_or_are_refused(
        shape in shape(),
        values in prop::collection::vec(".{1,60}", 4),
    ) {
        let key = key_of(shape, &values);
        let cursor = encode_key(&key).unwrap();
        match decode_key(&cursor, shape, &values[0]) {
            Ok(decoded) => prop_assert_eq!(decoded, key),
            Err(error) => {
                prop_assert!(cursor.len() > MAX_CURSOR_LEN, "refused a cursor of {} bytes", cursor.len());
                prop_assert_eq!(error.status(), 400);
            }
        }
    }

    /// A cursor is only good for the partition and key shape it was made for.
    #[test]
    fn page_cursors_do_not_open_other_partitions(
        shape in shape(),
        values in prop::collection::vec("[A-Za-z0-9#]{1,40}", 4),
        other in "[A-Za-z0-9#]{1,40}",
    ) {
        prop_assume!(other != values[0]);
        let cursor = encode_key(&key_of(shape, &values)).unwrap();
        prop_assert_eq!(decode_key(&cursor, shape, &other).unwrap_err().status(), 400);
    }

    /// Typed positions (the feed's and the user search's cursors) round-trip.
    #[test]
    fn position_tokens_round_trip(after in ".{0,30}", id in uuid()) {
        let position = Position { after, id };
        let cursor = encode_token(&position).unwrap();
        prop_assert_eq!(decode_token::<Position>(&cursor).unwrap(), position);
    }

    /// Whatever a client sends as a cursor: a value or a 400, never a panic.
    #[test]
    fn page_cursor_decoding_never_panics(cursor in any::<String>(), shape in shape(), partition in ".{0,20}") {
        check_cursor_text(&cursor, shape, &partition)?;
    }

    /// The same on cursor-shaped input (URL-safe base64, so it gets past the first step).
    #[test]
    fn page_cursor_decoding_never_panics_on_base64(
        cursor in "[A-Za-z0-9_-]{0,200}",
        shape in shape(),
    ) {
        check_cursor_text(&cursor, shape, "USER#1")?;
    }

    /// Base64 of arbitrary JSON-ish bytes, so decoding reaches the key checks.
    #[test]
    fn page_cursor_decoding_never_panics_on_json(
        plain in prop::collection::btree_map("pk|sk|gsi[123](pk|sk)|[a-z]{1,5}", ".{0,10}", 0..6),
        shape in shape(),
    ) {
        let cursor = encode_token(&plain).unwrap();
        check_cursor_text(&cursor, shape, plain.get("pk").map_or("", String::as_str))?;
    }
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Position {
    after: String,
    id: Uuid,
}

fn check_cursor_text(cursor: &str, shape: KeyShape, partition: &str) -> Result<(), TestCaseError> {
    if let Err(error) = decode_key(cursor, shape, partition) {
        prop_assert_eq!(error.status(), 400);
    }
    if let Err(error) = decode_token::<Position>(cursor) {
        prop_assert_eq!(error.status(), 400);
    }
    if let Err(error) = PageRequest::from_query(None, Some(cursor)) {
        prop_assert_eq!(error.status(), 400);
    }
    Ok(())
}

// ---- replay cursors -----------------------------------------------------------------------

/// Every millisecond a UUIDv7 can name (48 bits).
fn millis() -> impl Strategy<Value = u64> {
    0u64..(1 << 48)
}

proptest! {
    /// An event id (UUIDv7) sent back as `since` names the id and its millisecond.
    #[test]
    fn replay_cursors_round_trip(ms in millis(), random in any::<[u8; 10]>()) {
        let id = uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid();
        let (cursor, at) = parse_cursor(&id.to_string()).unwrap();
        prop_assert_eq!(cursor, id);
        prop_assert_eq!(u64::try_from(at.timestamp_millis()).unwrap(), ms);
    }

    /// `time_cursor` is the first id of its millisecond, and parses back to that moment.
    #[test]
    fn time_cursors_round_trip(ms in millis()) {
        let at = DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap()).unwrap();
        let cursor = time_cursor(at);
        prop_assert_eq!(parse_cursor(&cursor.to_string()).unwrap(), (cursor, at));
        let later = uuid::Builder::from_unix_timestamp_millis(ms, &[0xff; 10]).into_uuid();
        prop_assert!(cursor <= later);
    }

    /// Anything else: a 400, never a panic.
    #[test]
    fn replay_cursor_parsing_never_panics(since in any::<String>()) {
        if let Err(error) = parse_cursor(&since) {
            prop_assert_eq!(error.status(), 400);
        }
    }

    /// Id-shaped input with any version and variant bits.
    #[test]
    fn replay_cursor_parsing_never_panics_on_ids(id in uuid()) {
        match parse_cursor(&id.to_string()) {
            Ok((cursor, _)) => prop_assert_eq!(cursor.get_version_num(), 7),
            Err(error) => prop_assert_eq!(error.status(), 400),
        }
    }
}

// ---- access tokens ------------------------------------------------------------------------

/// The verifier under test (the only place these properties configure tokens): the test
/// JWKS and, to issue the genuine tokens the properties alter, the test signing key.
fn token_service() -> TokenService {
    let config = shared::config::Config::from_vars([
        ("TABLE_NAME", "t".to_owned()),
        ("JWT_PUBLIC_KEYS", shared::testkit::test_public_keys()),
    ])
    .unwrap();
    shared::testkit::test_token_service(&config)
}

/// A token this service issued just now, for `user`.
fn issued(tokens: &TokenService, user: Uuid) -> String {
    tokens.issue(t(user), Utc::now()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// An issued token verifies as its user.
    #[test]
    fn tokens_round_trip(user in uuid()) {
        let tokens = token_service();
        prop_assert_eq!(tokens.verify(&issued(&tokens, user)).unwrap().as_uuid(), user);
    }

    /// Changing any one character of a valid token makes it invalid (401).
    #[test]
    fn altered_tokens_are_refused(user in uuid(), at in any::<prop::sample::Index>(), with in "[A-Za-z0-9_.=-]") {
        let tokens = token_service();
        let token = issued(&tokens, user);
        let position = at.index(token.len());
        let mut altered = token.clone();
        altered.replace_range(position..=position, &with);
        prop_assume!(altered != token);
        prop_assert_eq!(tokens.verify(&altered).unwrap_err().status(), 401);
    }

    /// Arbitrary text: a 401, never a panic.
    #[test]
    fn token_verification_never_panics(token in any::<String>()) {
        prop_assert_eq!(token_service().verify(&token).unwrap_err().status(), 401);
    }

    /// Token-shaped text (three base64url segments), to get past the first split.
    #[test]
    fn token_verification_never_panics_on_jwt_shapes(
        header in "[A-Za-z0-9_-]{0,60}",
        claims in "[A-Za-z0-9_-]{0,200}",
        signature in "[A-Za-z0-9_-]{0,60}",
    ) {
        let token = format!("{header}.{claims}.{signature}");
        prop_assert_eq!(token_service().verify(&token).unwrap_err().status(), 401);
    }
}

// ---- store keys ---------------------------------------------------------------------------

proptest! {
    /// Every sort key that ends in an id gives that id back after its prefix: what the
    /// store's reads (and `begins_with` queries on the prefix) rely on.
    #[test]
    fn prefixed_ids_parse_back(a in uuid(), b in uuid()) {
        let cases = [
            (keys::follow(t(a), t(b)).sk, keys::FOLLOWING_PREFIX, b),
            (keys::follower_entry(t(a), t(b)).sk, keys::FOLLOWER_PREFIX, a),
            (keys::follow_request(t(a), t(b)).sk, keys::FOLLOW_REQUEST_PREFIX, b),
            (keys::follow_request_recency_entry(t(a), b).sk, keys::FOLLOW_REQUEST_RECENCY_PREFIX, b),
            (keys::block(t(a), t(b)).sk, keys::BLOCKING_PREFIX, b),
            (keys::blocked_by_entry(t(a), t(b)).sk, keys::BLOCKED_BY_PREFIX, a),
            (keys::author_timeline_entry(t(a), t(b)).sk, keys::POST_PREFIX, b),
            (keys::timeline_before(t(b)), keys::POST_PREFIX, b),
            (keys::like(t(a), t(b)).sk, keys::LIKE_PREFIX, b),
            (keys::comment(t(a), t(b)).sk, keys::COMMENT_PREFIX, b),
            (keys::feed_entry(t(a), t(b)).sk, keys::FEED_ENTRY_PREFIX, b),
            (keys::large_followee(t(a), t(b)).sk, keys::LARGE_FOLLOWEE_PREFIX, b),
            (keys::message(t(a), t(a), t(b)).sk, keys::MESSAGE_PREFIX, b),
            (keys::conversation(t(a), t(b)).sk, keys::CONVERSATION_PREFIX, b),
            (keys::conversation_recency_entry(t(a), t(b)).sk, keys::CONVERSATION_RECENCY_PREFIX, b),
            (keys::message_request(t(a), t(b)).sk, keys::MESSAGE_REQUEST_PREFIX, b),
            (keys::notification(t(a), t(b)).sk, keys::NOTIFICATION_PREFIX, b),
            (keys::unread_notification_entry(t(a), t(b)).sk, keys::NOTIFICATION_PREFIX, b),
            (keys::token_family(t(a), b).sk, keys::TOKEN_FAMILY_PREFIX, b),
            (keys::online_entry(t(b)).sk, keys::ONLINE_ENTRY_PREFIX, b),
            (keys::follower_fanout_entry(t(b), t(a)).sk, "", b),
            (keys::user_pk(t(b)), "USER#", b),
            (keys::post_partition(t(b)), "POST#", b),
            (keys::feed_partition(t(b)), "FEED#", b),
            (keys::unread_partition(t(b)), "UNREAD#", b),
            (keys::follower_fanout_partition(t(b)), "FOLLOWERS#", b),
        ];
        for (built, prefix, id) in cases {
            let rest = built.strip_prefix(prefix);
            prop_assert_eq!(rest.and_then(|r| r.parse::<Uuid>().ok()), Some(id), "{}", built);
        }
    }

    /// Sort keys built from ids sort as the ids do (UUIDv7: creation order), so a query on
    /// a prefix pages through time.
    #[test]
    fn id_sort_keys_sort_as_their_ids(a in uuid(), b in uuid(), owner in uuid()) {
        let builders: [fn(Uuid, Uuid) -> String; 5] = [
            |o, id| keys::feed_entry(t(o), t(id)).sk,
            |o, id| keys::author_timeline_entry(t(o), t(id)).sk,
            |o, id| keys::message(t(o), t(o), t(id)).sk,
            |o, id| keys::notification(t(o), t(id)).sk,
            |o, id| keys::conversation_recency_entry(t(o), t(id)).sk,
        ];
        for build in builders {
            prop_assert_eq!(build(owner, a).cmp(&build(owner, b)), a.cmp(&b));
        }
    }

    /// A thread is one partition for both sides, and its two ids come back out of it.
    #[test]
    fn thread_partitions_name_both_sides(a in uuid(), b in uuid(), c in uuid()) {
        let thread = keys::thread_partition(t(a), t(b));
        prop_assert_eq!(&thread, &keys::thread_partition(t(b), t(a)));
        let (low, high) = thread
            .strip_prefix("THREAD#")
            .and_then(|ids| ids.split_once('#'))
            .unwrap();
        let (low, high): (Uuid, Uuid) = (low.parse().unwrap(), high.parse().unwrap());
        prop_assert_eq!((low, high), (a.min(b), a.max(b)));
        prop_assume!(c != a && c != b);
        prop_assert_ne!(thread, keys::thread_partition(t(a), t(c)));
    }

    /// The client-message dedup key keeps the sender's prefix and the client's id as given.
    #[test]
    fn client_message_keys_round_trip(sender in uuid(), recipient in uuid(), client_id in "[A-Za-z0-9_-]{1,64}") {
        let key = keys::client_message(t(sender), t(recipient), &client_id);
        let prefix = keys::client_message_prefix(t(sender));
        prop_assert_eq!(key.sk.strip_prefix(prefix.as_str()), Some(client_id.as_str()));
        prop_assert_eq!(key.pk, keys::thread_partition(t(sender), t(recipient)));
    }

    /// Online entries land in one of the shards, the one their partition names.
    #[test]
    fn online_entries_are_in_their_shard(user in uuid()) {
        let shard = keys::online_shard(t(user));
        prop_assert!(shard < keys::ONLINE_INDEX_SHARDS);
        prop_assert_eq!(keys::online_entry(t(user)).pk, keys::online_shard_partition(shard));
    }

    /// Distinct ids never share an item.
    #[test]
    fn keys_of_distinct_ids_differ(a in uuid(), b in uuid(), c in uuid()) {
        prop_assume!(b != c);
        prop_assert_ne!(keys::follow(t(a), t(b)), keys::follow(t(a), t(c)));
        prop_assert_ne!(keys::like(t(a), t(b)), keys::like(t(a), t(c)));
        prop_assert_ne!(keys::comment(t(a), t(b)), keys::comment(t(a), t(c)));
        prop_assert_ne!(keys::post(t(b)), keys::post(t(c)));
        prop_assert_ne!(keys::user_profile(t(b)), keys::user_profile(t(c)));
        prop_assert_ne!(keys::notification(t(a), t(b)), keys::notification(t(a), t(c)));
    }
}
