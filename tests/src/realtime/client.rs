//! A recording WebSocket client: every frame is kept in the background, so a test can ask
//! for "the next event of this type" or "nothing of this type" without racing the socket.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{SplitSink, StreamExt};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::{Socket, WAIT};

/// Event types that are not deliveries of something that happened: replies to the
/// socket's own requests and presence, which the delivery checks leave out.
pub const NOT_DELIVERIES: [&str; 6] = [
    "pong",
    "subscribed",
    "unsubscribed",
    "resumed",
    "user_online",
    "user_offline",
];

/// One event a socket received: a text frame, or one event of a `replay` frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub received_at: Instant,
    pub text: String,
    /// The frame as JSON (`Null` if it was not JSON: the server never sends such frames).
    pub json: Value,
}

#[derive(Debug, Default)]
struct Inbox {
    /// Every event, a `replay` frame's events unpacked in order.
    frames: Vec<Frame>,
    /// The text frames as the server sent them (`replay` frames whole).
    raw: Vec<String>,
    /// Indexes of frames already returned by a `next_*` call.
    consumed: HashSet<usize>,
    closed: bool,
}

/// A WebSocket client that records every frame in the background, so a test can ask for
/// "the next event of this type" or "nothing of this type" without racing the socket.
pub struct WsClient {
    pub label: String,
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    inbox: Arc<Mutex<Inbox>>,
    changes: watch::Receiver<usize>,
    /// Owns the socket's read half; `None` once closed or killed.
    reader: Option<JoinHandle<()>>,
    request_counter: Mutex<u64>,
}

impl WsClient {
    pub(super) fn spawn(label: &str, socket: Socket) -> Self {
        let (sink, mut stream) = socket.split();
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let (notify, changes) = watch::channel(0usize);
        let reader = tokio::spawn({
            let inbox = Arc::clone(&inbox);
            async move {
                while let Some(message) = stream.next().await {
                    match message {
                        Ok(Message::Text(text)) => {
                            let text = text.as_str().to_owned();
                            let events = unpack(&text);
                            let received_at = Instant::now();
                            {
                                let mut inbox = lock(&inbox);
                                inbox.raw.push(text);
                                inbox
                                    .frames
                                    .extend(events.into_iter().map(|(text, json)| Frame {
                                        received_at,
                                        text,
                                        json,
                                    }));
                            }
                            notify.send_modify(|count| *count += 1);
                        }
                        Ok(Message::Close(_)) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                lock(&inbox).closed = true;
                notify.send_modify(|count| *count += 1);
            }
        });
        Self {
            label: label.to_owned(),
            sink: tokio::sync::Mutex::new(sink),
            inbox,
            changes,
            reader: Some(reader),
            request_counter: Mutex::new(0),
        }
    }

    /// Sends `frame` as a text frame.
    pub async fn send(&self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&self, text: &str) {
        self.send_message(Message::text(text)).await;
    }

    pub async fn send_message(&self, message: Message) {
        let mut sink = self.sink.lock().await;
        tokio::time::timeout(WAIT, sink.send(message))
            .await
            .unwrap_or_else(|_| panic!("{}: send blocked for {WAIT:?}", self.label))
            .unwrap_or_else(|e| panic!("{}: send failed: {e}", self.label));
    }

    /// Sends `frame` with a fresh `request_id` and returns the reply carrying it (any type,
    /// `error` included).
    pub async fn request(&self, mut frame: Value) -> Value {
        let request_id = {
            let mut counter = self
                .request_counter
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            *counter += 1;
            format!("{}-r{}", self.label, *counter)
        };
        frame["request_id"] = json!(request_id);
        self.send(&frame).await;
        // `replay` frames carry the resume's request_id too; the reply is what follows them.
        self.next_event_where(&format!("the reply to {request_id}"), WAIT, |event| {
            event["data"]["request_id"] == request_id.as_str() && event["type"] != "replay"
        })
        .await
    }

    /// Subscribes to `channel`, asserting the server confirmed it.
    pub async fn subscribe(&self, channel: &str) {
        let reply = self
            .request(json!({"action": "subscribe", "channel": channel}))
            .await;
        assert_eq!(reply["type"], "subscribed", "{}: {reply}", self.label);
        assert_eq!(reply["data"]["channel"], channel);
    }

    /// The next not yet returned event of type `kind`, waiting at most `timeout`.
    pub async fn next_event_of_type(&self, kind: &str, timeout: Duration) -> Value {
        self.next_frame_where(&format!("a `{kind}` event"), timeout, |event| {
            event["type"] == kind
        })
        .await
        .json
    }

    /// The next not yet returned event matching `predicate`.
    pub async fn next_event_where(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Value {
        self.next_frame_where(what, timeout, predicate).await.json
    }

    /// The next not yet returned frame matching `predicate` (with its arrival time).
    pub async fn next_frame_where(
        &self,
        what: &str,
        timeout: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) -> Frame {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let mut inbox = lock(&self.inbox);
                let found = (0..inbox.frames.len()).find(|index| {
                    !inbox.consumed.contains(index) && predicate(&inbox.frames[*index].json)
                });
                if let Some(index) = found {
                    inbox.consumed.insert(index);
                    return inbox.frames[index].clone();
                }
                if inbox.closed {
                    panic!(
                        "{}: the socket closed before {what}; received: {}",
                        self.label,
                        summary(&inbox.frames)
                    );
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                panic!(
                    "{}: no {what} within {timeout:?}; received: {}",
                    self.label,
                    summary(&lock(&self.inbox).frames)
                );
            }
        }
    }

    /// Fails if an event of type `kind` arrives (or has arrived unreturned) within `quiet`.
    /// A copy of an event already returned (same `event_id`) is not a new event: clients
    /// drop it, and the writer push and the stream router may both deliver one.
    pub async fn assert_no_event(&self, kind: &str, quiet: Duration) {
        self.assert_nothing_where(&format!("a `{kind}` event"), quiet, |event| {
            event["type"] == kind
        })
        .await;
    }

    /// Fails if an event matching `predicate` arrives (or has arrived unreturned) within
    /// `quiet`; copies of events already returned (same `event_id`) do not count.
    pub async fn assert_nothing_where(
        &self,
        what: &str,
        quiet: Duration,
        predicate: impl Fn(&Value) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + quiet;
        let mut changes = self.changes.clone();
        loop {
            changes.borrow_and_update();
            {
                let inbox = lock(&self.inbox);
                let returned: HashSet<&str> = inbox
                    .consumed
                    .iter()
                    .filter_map(|index| inbox.frames[*index].json["event_id"].as_str())
                    .collect();
                let unexpected = inbox.frames.iter().enumerate().find(|(index, frame)| {
                    let copy = frame.json["event_id"]
                        .as_str()
                        .is_some_and(|id| returned.contains(id));
                    !inbox.consumed.contains(index) && !copy && predicate(&frame.json)
                });
                if let Some((_, frame)) = unexpected {
                    panic!("{}: unexpected {what}: {}", self.label, frame.text);
                }
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                return;
            }
            if lock(&self.inbox).closed {
                // Nothing more can arrive; check what did one last time.
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    /// Every event of type `kind` received so far, returned or not.
    pub fn events_of_type(&self, kind: &str) -> Vec<Value> {
        lock(&self.inbox)
            .frames
            .iter()
            .filter(|frame| frame.json["type"] == kind)
            .map(|frame| frame.json.clone())
            .collect()
    }

    /// Every text frame received so far, as sent by the server (a `replay` frame whole).
    pub fn raw_frames(&self) -> Vec<String> {
        lock(&self.inbox).raw.clone()
    }

    /// Every event received so far with its arrival time, in order.
    pub fn frames(&self) -> Vec<Frame> {
        lock(&self.inbox).frames.clone()
    }

    /// Every event received so far, in order (a `replay` frame's events unpacked).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.inbox)
            .frames
            .iter()
            .map(|frame| frame.json.clone())
            .collect()
    }

    /// The deliveries received so far as a client keeps them: every event except
    /// [`NOT_DELIVERIES`] and `error`s, the first copy of each `event_id` only, in order.
    pub fn deliveries(&self) -> Vec<Value> {
        let mut seen = HashSet::new();
        self.events()
            .into_iter()
            .filter(|event| {
                let kind = event["type"].as_str().unwrap_or_default();
                kind != "error" && !NOT_DELIVERIES.contains(&kind)
            })
            .filter(|event| match event["event_id"].as_str() {
                Some(id) => seen.insert(id.to_owned()),
                None => true,
            })
            .collect()
    }

    /// How many received events repeated an `event_id` seen before on this socket.
    pub fn repeated_deliveries(&self) -> usize {
        let mut seen = HashSet::new();
        self.events()
            .iter()
            .filter_map(|event| event["event_id"].as_str())
            .filter(|id| !seen.insert(*id))
            .count()
    }

    /// The newest resume cursor this socket received (UUIDv7 text order is time order).
    pub fn last_cursor(&self) -> Option<String> {
        self.events()
            .iter()
            .filter_map(|event| event["cursor"].as_str().map(str::to_owned))
            .max()
    }

    /// Whether the server closed the socket.
    pub fn is_closed(&self) -> bool {
        lock(&self.inbox).closed
    }

    /// Closes the socket properly (close frame), waiting (bounded) for the server's close.
    pub async fn close(mut self) {
        {
            let mut sink = self.sink.lock().await;
            let _already_closed_is_fine =
                tokio::time::timeout(WAIT, sink.send(Message::Close(None))).await;
        }
        if let Some(reader) = self.reader.take() {
            let _reader_done_or_not = tokio::time::timeout(WAIT, reader).await;
        }
    }

    /// Drops the connection without a close frame, as a crashed client or a lost network
    /// does: the server only sees the TCP connection end.
    pub async fn kill(mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
            let _aborted = reader.await;
        }
        // Both halves gone: dropping `self` (the write half) closes the TCP connection.
    }
}

impl Drop for WsClient {
    /// The read half lives in the reader task: stop it so the socket really closes.
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

fn lock(inbox: &Mutex<Inbox>) -> MutexGuard<'_, Inbox> {
    // The reader only pushes whole frames; a poisoned lock is still consistent.
    inbox
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The events of a text frame: a `replay` frame's `data.events` in order, any other frame
/// itself. Each comes with its own text.
fn unpack(text: &str) -> Vec<(String, Value)> {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    if json["type"] != "replay" {
        return vec![(text.to_owned(), json)];
    }
    json["data"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| (event.to_string(), event.clone()))
        .collect()
}

/// Types of the received frames, for failure messages.
fn summary(frames: &[Frame]) -> String {
    let types: Vec<&str> = frames
        .iter()
        .map(|frame| frame.json["type"].as_str().unwrap_or("<not JSON>"))
        .collect();
    format!("{} frames {types:?}", frames.len())
}
