//! Cursor decoding: page cursors (`shared::store::page`: typed tokens and
//! `ExclusiveStartKey` cursors for every key shape) and replay cursors
//! (`shared::replay::parse_cursor`). All come back from clients. Never a panic; a cursor
//! that decodes re-encodes to one that decodes to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use shared::domain::{PostId, UserId};
use shared::store::page::{decode_key, decode_token, encode_key, KeyShape, PageRequest};

const SHAPES: [KeyShape; 4] = [
    KeyShape::Table,
    KeyShape::Gsi1,
    KeyShape::Gsi2,
    KeyShape::Gsi3,
];

/// The shapes the store decodes with `decode_token` (the feed and the user search).
#[derive(Deserialize)]
#[allow(dead_code)]
struct FeedCursor {
    before: PostId,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SearchCursor {
    after: String,
    id: UserId,
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(cursor) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = PageRequest::from_query(None, Some(cursor));
    let _ = decode_token::<FeedCursor>(cursor);
    let _ = decode_token::<SearchCursor>(cursor);
    let _ = shared::replay::parse_cursor(cursor);
    let shape = SHAPES[usize::from(selector) % SHAPES.len()];
    // The partition the caller may read; the seeds use it.
    let partition = "USER#0190a0b0-0000-7000-8000-000000000001";
    if let Ok(key) = decode_key(cursor, shape, partition) {
        let again = encode_key(&key).expect("a decoded key re-encodes");
        assert_eq!(decode_key(&again, shape, partition).ok(), Some(key));
    }
});
