//! The fuzz targets' seed corpora (fuzz/corpus/) are real inputs: each seed is accepted by
//! the parser its target drives, so the fuzzers start from valid frames, bodies, cursors
//! and stream records, and a schema change that makes a seed stale fails here. (The token
//! seed is signed with the fuzz target's own key: `fuzz/corpus/token/README.md`.)

use std::collections::HashMap;
use std::path::PathBuf;

use aws_lambda_events::event::dynamodb::EventRecord;
use shared::http::ApiRequest;
use shared::store::page::{decode_key, decode_token, KeyShape};

/// The seeds of one target: (file name, bytes).
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .filter(|(name, _)| name != "README.md")
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

#[test]
fn rest_body_seeds_are_valid_bodies_of_their_routes() {
    // The same route table, in the same order, as fuzz/fuzz_targets/rest_body.rs.
    type ReadBody = fn(&str, &ApiRequest) -> shared::Result<()>;
    let crates: [(ReadBody, &[&'static str]); 5] = [
        (api_auth::read_body, api_auth::BODY_ROUTES),
        (api_users::read_body, api_users::BODY_ROUTES),
        (api_posts::read_body, api_posts::BODY_ROUTES),
        (api_messages::read_body, api_messages::BODY_ROUTES),
        (api_notifications::read_body, api_notifications::BODY_ROUTES),
    ];
    let routes: Vec<(ReadBody, &str)> = crates
        .iter()
        .flat_map(|(read, routes)| routes.iter().map(move |route| (*read, *route)))
        .collect();
    for (name, seed) in seeds("rest_body") {
        let (read_body, route) = routes[usize::from(seed[0]) % routes.len()];
        let request = ApiRequest {
            method: http::Method::POST,
            path: route.into(),
            route,
            params: HashMap::new(),
            query: HashMap::new(),
            headers: http::HeaderMap::new(),
            body: seed[1..].to_vec(),
            request_id: "seed".into(),
            source_ip: "192.0.2.1".into(),
        };
        if let Err(error) = read_body(route, &request) {
            panic!("seed {name} ({route}): {error}");
        }
    }
}

#[test]
fn cursor_seeds_decode() {
    const SHAPES: [KeyShape; 4] = [
        KeyShape::Table,
        KeyShape::Gsi1,
        KeyShape::Gsi2,
        KeyShape::Gsi3,
    ];
    let partition = "USER#0190a0b0-0000-7000-8000-000000000001";
    for (name, seed) in seeds("cursor") {
        let shape = SHAPES[usize::from(seed[0]) % SHAPES.len()];
        let cursor = std::str::from_utf8(&seed[1..]).unwrap();
        let accepted = decode_key(cursor, shape, partition).is_ok()
            || decode_token::<serde_json::Value>(cursor).is_ok_and(|v| v.is_object())
            || shared::replay::parse_cursor(cursor).is_ok();
        assert!(accepted, "seed {name} decodes as no cursor");
    }
}

#[test]
fn frame_seeds_are_frames() {
    for (name, seed) in seeds("frame") {
        let body = std::str::from_utf8(&seed[1..]).unwrap();
        let frame = ws_message::Frame::read(Some(body), seed[0] & 1 == 1);
        assert_eq!(frame.action.is_ok(), name != "not-json", "seed {name}");
    }
}

#[test]
fn stream_record_seeds_decide_into_events_or_feed_tasks() {
    for (name, seed) in seeds("stream_record") {
        let record: EventRecord = serde_json::from_slice(&seed).unwrap();
        let decision =
            stream_router::decide(&record).unwrap_or_else(|bad| panic!("seed {name}: {bad:?}"));
        assert!(!decision.is_empty(), "seed {name} decides nothing");
    }
}
