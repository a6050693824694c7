//! The REST request bodies: every route that reads one, parsed and validated exactly as its
//! handler does (each `api-*` crate's `read_body`). The first byte picks the route, the rest
//! is the body. Never a panic, and never anything but a 400 for a bad body.
#![no_main]

use std::collections::HashMap;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use shared::error::Result;
use shared::http::ApiRequest;

type ReadBody = fn(&str, &ApiRequest) -> Result<()>;

/// Every (crate, route) pair that reads a body.
static ROUTES: LazyLock<Vec<(ReadBody, &'static str)>> = LazyLock::new(|| {
    let crates: [(ReadBody, &[&'static str]); 5] = [
        (api_auth::read_body, api_auth::BODY_ROUTES),
        (api_users::read_body, api_users::BODY_ROUTES),
        (api_posts::read_body, api_posts::BODY_ROUTES),
        (api_messages::read_body, api_messages::BODY_ROUTES),
        (api_notifications::read_body, api_notifications::BODY_ROUTES),
    ];
    crates
        .iter()
        .flat_map(|(read, routes)| routes.iter().map(move |route| (*read, *route)))
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let (read_body, route) = ROUTES[usize::from(selector) % ROUTES.len()];
    let request = ApiRequest {
        method: http::Method::POST,
        path: route.into(),
        route,
        params: HashMap::new(),
        query: HashMap::new(),
        headers: http::HeaderMap::new(),
        body: body.to_vec(),
        request_id: "fuzz".into(),
        source_ip: "192.0.2.1".into(),
    };
    if let Err(error) = read_body(route, &request) {
        assert_eq!(error.status(), 400, "{route}: {error}");
    }
});
