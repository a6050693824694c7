//! The WebSocket frame parser (`ws_message::frame`): any text a client can send.
//! Never a panic; an accepted frame keeps the limits the parser promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_message::{Frame, Route, MAX_FRAME_BYTES, MAX_REQUEST_ID_CHARS};

fuzz_target!(|data: &[u8]| {
    // API Gateway delivers text frames as UTF-8 strings; the first byte picks the flag.
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(rest) else {
        return;
    };
    let frame = Frame::read(Some(body), flags & 1 == 1);
    if let Some(id) = &frame.request_id {
        assert!(id.chars().count() <= MAX_REQUEST_ID_CHARS);
    }
    if let Ok(action) = &frame.action {
        assert!(body.len() <= MAX_FRAME_BYTES);
        assert!(action.arrives_on(Route::Default));
        assert!(action.arrives_on(action.route()));
    }
    // The route key API Gateway passes is client-chosen too.
    let _ = Route::parse(body);
});
