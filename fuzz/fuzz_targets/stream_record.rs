//! The stream-record decoder: a DynamoDB stream record (as the Lambda event carries it)
//! read into `EventRecord` and decided by `stream_router::decide` (its `NewImage`/`OldImage`
//! parsed into domain items, then into events and effects). Never a panic: a record that
//! cannot be read is a `BadRecord`.
#![no_main]

use aws_lambda_events::event::dynamodb::EventRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = serde_json::from_slice::<EventRecord>(data) else {
        return;
    };
    if let Ok(decision) = stream_router::decide(&record) {
        for push in &decision.pushes {
            push.event.to_json().expect("a decided event serialises");
        }
    }
});
