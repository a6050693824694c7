//! The fan-out queue: typed, versioned SQS messages between the stream router and the
//! push worker.
//!
//! Three kinds of message share the queue, told apart by `kind`:
//!
//! - `audience`: an event and the audiences it is for, when resolving them would hold up
//!   the stream router (an author with many followers). A push worker resolves it and pushes
//!   directly, or splits it into `fanout` chunks for other workers.
//! - `fanout`: an event and a chunk of at most [`FANOUT_CHUNK_CONNECTIONS`] connection ids.
//!   Large audiences are split so each message stays far below SQS's 256 KiB body limit
//!   (an event is at most a few tens of KiB: the longest text is a 4000-character message)
//!   and one worker invocation's work stays bounded. `attempt` counts re-enqueues: a worker
//!   re-sends only the connections that still failed, after a short delay.
//! - `feed`: up to [`FEED_TASKS_PER_MESSAGE`] [`FeedTask`]s (posts to distribute into
//!   followers' feeds, follows to backfill, …), the feed tasks of one stream batch, which
//!   the push worker carries out with `shared::feed::FeedMaterializer` (an author gaining
//!   20,000 followers at once is 200 messages, not 20,000).
//! - `presence_check`: sent with a delay equal to the presence grace period when a
//!   connection closes; the worker records the user offline only if they still have no
//!   connection when it arrives, and the router pushes `user_offline` from that write (see
//!   `shared::store::presence`).
//!
//! Every body carries `"version": 1`. A body of another version, or one that does not parse,
//! is malformed: the worker logs and drops it instead of letting it bounce until the DLQ.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audience::Audience;
use crate::domain::{rfc3339, UserId};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::feed::FeedTask;
#[cfg(feature = "sqs")]
use crate::retry::RetryPolicy;

/// The body format version this code writes and reads.
pub const QUEUE_MESSAGE_VERSION: u32 = 1;

/// Connection ids per `fanout` message.
pub const FANOUT_CHUNK_CONNECTIONS: usize = 200;

/// Feed tasks per `feed` message (a task is ~150 bytes of JSON).
pub const FEED_TASKS_PER_MESSAGE: usize = 100;

/// Entries per `SendMessageBatch` call (the SQS maximum).
pub const SEND_BATCH_MAX: usize = 10;

/// SQS's body limit; a body at or above it is a bug, reported before sending.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Longest delay SQS accepts on a message.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// One queue message body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum QueueMessage {
    Audience(AudienceWork),
    Fanout(FanoutChunk),
    PresenceCheck(PresenceCheck),
    Feed(FeedWork),
}

/// Feed tasks for a push worker, carried out together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedWork {
    pub tasks: Vec<FeedTask>,
}

/// An event whose audience a push worker resolves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceWork {
    pub event: Event,
    pub audiences: Vec<Audience>,
}

/// An event and the connections it goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FanoutChunk {
    pub event: Event,
    pub connection_ids: Vec<String>,
    /// How many times failed connections of this event were re-enqueued (0: first try).
    #[serde(default)]
    pub attempt: u32,
}

impl FanoutChunk {
    /// The same event for `connection_ids`, one attempt later.
    pub fn retry_of(&self, connection_ids: Vec<String>) -> Self {
        Self {
            event: self.event.clone(),
            connection_ids,
            attempt: self.attempt + 1,
        }
    }
}

/// "Is `user_id` still disconnected?", asked once the grace period after a disconnect ran out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceCheck {
    pub user_id: UserId,
    /// The connection whose closing started the grace period; names the check, so a
    /// redelivered check produces the same `user_offline` event id.
    pub connection_id: String,
    #[serde(with = "rfc3339")]
    pub disconnected_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct VersionedRef<'a> {
    version: u32,
    #[serde(flatten)]
    message: &'a QueueMessage,
}

/// Why a body could not be read. Never retryable: the same bytes will fail the same way.
#[derive(Debug, thiserror::Error)]
pub enum MalformedMessage {
    #[error("queue message version {0} is not supported (expected {QUEUE_MESSAGE_VERSION})")]
    Version(u32),
    #[error("queue message does not parse: {0}")]
    Parse(#[from] serde_json::Error),
}

impl QueueMessage {
    /// The versioned JSON body.
    pub fn to_body(&self) -> Result<String> {
        let body = serde_json::to_string(&VersionedRef {
            version: QUEUE_MESSAGE_VERSION,
            message: self,
        })
        .map_err(|e| Error::internal("serialising a queue message", e))?;
        if body.len() >= MAX_MESSAGE_BYTES {
            return Err(Error::invariant(format!(
                "queue message of {} bytes exceeds the SQS limit",
                body.len()
            )));
        }
        Ok(body)
    }

    /// Reads a body written by [`QueueMessage::to_body`].
    pub fn parse(body: &str) -> std::result::Result<Self, MalformedMessage> {
        // The version is checked before the payload, so a future version is reported as such
        // instead of as whatever parse error its new shape causes.
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let VersionOnly { version } = serde_json::from_str(body)?;
        if version != QUEUE_MESSAGE_VERSION {
            return Err(MalformedMessage::Version(version));
        }
        // `version` is one more field to the message types, which ignore it.
        Ok(serde_json::from_str(body)?)
    }
}

/// Splits an audience into `fanout` messages of at most [`FANOUT_CHUNK_CONNECTIONS`] ids.
pub fn fanout_messages(event: &Event, connection_ids: &[String]) -> Vec<QueueMessage> {
    connection_ids
        .chunks(FANOUT_CHUNK_CONNECTIONS)
        .map(|chunk| {
            QueueMessage::Fanout(FanoutChunk {
                event: event.clone(),
                connection_ids: chunk.to_vec(),
                attempt: 0,
            })
        })
        .collect()
}

/// Where the push tier parks work for later or for the push worker.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Sends `event` for `connection_ids` as `fanout` messages; returns how many messages.
    /// An error means some messages may not have been sent: the caller retries the whole
    /// fan-out (duplicates carry the same `event_id`).
    async fn enqueue_fanout(&self, event: &Event, connection_ids: &[String]) -> Result<usize>;

    /// Sends a presence check that becomes visible after `delay`.
    async fn schedule_presence_check(&self, check: &PresenceCheck, delay: Duration) -> Result<()>;

    /// Hands an event's audiences to a push worker.
    async fn enqueue_audience(&self, work: &AudienceWork) -> Result<()>;

    /// Re-sends a chunk (the connections that still failed) after `delay`.
    async fn enqueue_retry(&self, chunk: &FanoutChunk, delay: Duration) -> Result<()>;

    /// Hands feed tasks to the push workers, [`FEED_TASKS_PER_MESSAGE`] per message; returns
    /// how many messages. An error means some may not have been sent: the caller retries
    /// all of them (tasks are idempotent).
    async fn enqueue_feed(&self, tasks: &[FeedTask]) -> Result<usize>;
}

/// [`EventQueue`] over one SQS queue.
#[cfg(feature = "sqs")]
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    retry: RetryPolicy,
}

#[cfg(feature = "sqs")]
impl SqsEventQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            retry: RetryPolicy::default(),
        }
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends up to [`SEND_BATCH_MAX`] bodies, re-sending the entries SQS reports as failed
    /// (throttling, internal errors) with backoff. Entries failed by the sender's fault
    /// (which a retry cannot fix) and entries still failing after the last attempt are errors.
    async fn send_batch(&self, bodies: &[String]) -> Result<()> {
        let mut pending: Vec<(String, &String)> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| (i.to_string(), body))
            .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let entries = pending
                .iter()
                .map(|(id, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(id)
                        .message_body(*body)
                        .build()
                        .map_err(|e| Error::internal("building an SQS batch entry", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let outcome = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let failed: Vec<_> = match outcome {
                Ok(output) => {
                    if let Some(entry) = output.failed().iter().find(|entry| entry.sender_fault()) {
                        return Err(Error::invariant(format!(
                            "SQS rejected a fan-out message: {} {}",
                            entry.code(),
                            entry.message().unwrap_or_default()
                        )));
                    }
                    output
                        .failed()
                        .iter()
                        .map(|entry| entry.id().to_owned())
                        .collect()
                }
                Err(error) if attempt < self.retry.attempts => {
                    tracing::warn!(attempt, error = %crate::error::cause_chain(&error), "SendMessageBatch failed; retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                    continue;
                }
                Err(error) => return Err(Error::internal("SendMessageBatch", error)),
            };
            if failed.is_empty() {
                return Ok(());
            }
            if attempt >= self.retry.attempts {
                return Err(Error::invariant(format!(
                    "{} fan-out messages still failing after {attempt} attempts",
                    failed.len()
                )));
            }
            pending.retain(|(id, _)| failed.contains(id));
            tokio::time::sleep(self.retry.delay(attempt)).await;
        }
    }
}

#[cfg(feature = "sqs")]
#[async_trait]
impl EventQueue for SqsEventQueue {
    #[tracing::instrument(level = "debug", skip_all, fields(connections = connection_ids.len()))]
    async fn enqueue_fanout(&self, event: &Event, connection_ids: &[String]) -> Result<usize> {
        let bodies = fanout_messages(event, connection_ids)
            .iter()
            .map(QueueMessage::to_body)
            .collect::<Result<Vec<_>>>()?;
        for batch in bodies.chunks(SEND_BATCH_MAX) {
            self.send_batch(batch).await?;
        }
        Ok(bodies.len())
    }

    async fn schedule_presence_check(&self, check: &PresenceCheck, delay: Duration) -> Result<()> {
        self.send_one(&QueueMessage::PresenceCheck(check.clone()), delay)
            .await
    }

    async fn enqueue_audience(&self, work: &AudienceWork) -> Result<()> {
        self.send_one(&QueueMessage::Audience(work.clone()), Duration::ZERO)
            .await
    }

    async fn enqueue_retry(&self, chunk: &FanoutChunk, delay: Duration) -> Result<()> {
        self.send_one(&QueueMessage::Fanout(chunk.clone()), delay)
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(tasks = tasks.len()))]
    async fn enqueue_feed(&self, tasks: &[FeedTask]) -> Result<usize> {
        let bodies = tasks
            .chunks(FEED_TASKS_PER_MESSAGE)
            .map(|chunk| {
                QueueMessage::Feed(FeedWork {
                    tasks: chunk.to_vec(),
                })
                .to_body()
            })
            .collect::<Result<Vec<_>>>()?;
        for batch in bodies.chunks(SEND_BATCH_MAX) {
            self.send_batch(batch).await?;
        }
        Ok(bodies.len())
    }
}

#[cfg(feature = "sqs")]
impl SqsEventQueue {
    /// Sends one message, visible after `delay` (whole seconds, at most [`MAX_DELAY`]),
    /// retrying transport failures with the queue's policy.
    async fn send_one(&self, message: &QueueMessage, delay: Duration) -> Result<()> {
        let body = message.to_body()?;
        let delay_seconds = i32::try_from(delay.min(MAX_DELAY).as_secs()).unwrap_or(0);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(&body)
                .delay_seconds(delay_seconds)
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(error) if attempt < self.retry.attempts => {
                    tracing::warn!(attempt, error = %crate::error::cause_chain(&error), "SendMessage failed; retrying");
                    tokio::time::sleep(self.retry.delay(attempt)).await;
                }
                Err(error) => return Err(Error::internal("SendMessage", error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{fixture_id, Post};

    fn event() -> Event {
        Event::post_created(&Post {
            id: fixture_id(1),
            author_id: fixture_id(2),
            text: "x".repeat(crate::domain::POST_TEXT_MAX),
            media_url: Some(format!("https://example.com/{}", "m".repeat(2000))),
            created_at: Utc.timestamp_opt(1_700_000_000, 0).single().unwrap(),
            edited_at: None,
            like_count: 0,
            like_version: 0,
            comment_count: 0,
        })
    }

    #[test]
    fn fanout_messages_split_the_audience_into_chunks_that_round_trip() {
        let ids: Vec<String> = (0..450).map(|i| format!("conn-{i:04}=")).collect();
        let messages = fanout_messages(&event(), &ids);
        assert_eq!(messages.len(), 3);
        let mut seen = Vec::new();
        for message in &messages {
            let body = message.to_body().unwrap();
            assert!(body.len() < MAX_MESSAGE_BYTES / 4, "{} bytes", body.len());
            assert!(body.contains("\"version\":1"));
            match QueueMessage::parse(&body).unwrap() {
                QueueMessage::Fanout(chunk) => {
                    assert!(chunk.connection_ids.len() <= FANOUT_CHUNK_CONNECTIONS);
                    assert_eq!(chunk.event, event());
                    seen.extend(chunk.connection_ids);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, ids);
    }

    #[test]
    fn audience_work_and_retries_round_trip() {
        let work = QueueMessage::Audience(AudienceWork {
            event: event(),
            audiences: vec![
                Audience::AuthorAndFollowers(fixture_id(2)),
                Audience::PostRoom {
                    post: fixture_id(1),
                    author: None,
                    actor: Some(fixture_id(4)),
                },
                Audience::UsersExcept {
                    users: vec![fixture_id(3)],
                    except_connection: "c=".into(),
                },
            ],
        });
        let body = work.to_body().unwrap();
        assert!(body.contains("\"kind\":\"audience\""), "{body}");
        assert_eq!(QueueMessage::parse(&body).unwrap(), work);

        let first = FanoutChunk {
            event: event(),
            connection_ids: vec!["a=".into(), "b=".into()],
            attempt: 0,
        };
        let retry = QueueMessage::Fanout(first.retry_of(vec!["b=".into()]));
        match QueueMessage::parse(&retry.to_body().unwrap()).unwrap() {
            QueueMessage::Fanout(chunk) => {
                assert_eq!(chunk.attempt, 1);
                assert_eq!(chunk.connection_ids, ["b="]);
            }
            other => panic!("unexpected {other:?}"),
        }
        // Bodies written before `attempt` existed still read (as a first attempt).
        let legacy = QueueMessage::Fanout(first)
            .to_body()
            .unwrap()
            .replace(",\"attempt\":0", "");
        assert!(!legacy.contains("attempt"));
        assert!(matches!(
            QueueMessage::parse(&legacy).unwrap(),
            QueueMessage::Fanout(FanoutChunk { attempt: 0, .. })
        ));
    }

    #[test]
    fn presence_checks_round_trip() {
        let check = QueueMessage::PresenceCheck(PresenceCheck {
            user_id: fixture_id(5),
            connection_id: "abc=".into(),
            disconnected_at: Utc.timestamp_opt(1_700_000_000, 0).single().unwrap(),
        });
        let body = check.to_body().unwrap();
        assert!(body.contains("\"kind\":\"presence_check\""), "{body}");
        assert_eq!(QueueMessage::parse(&body).unwrap(), check);
    }

    #[test]
    fn other_versions_and_garbage_are_malformed() {
        let body = QueueMessage::PresenceCheck(PresenceCheck {
            user_id: fixture_id(5),
            connection_id: "abc=".into(),
            disconnected_at: Utc.timestamp_opt(1_700_000_000, 0).single().unwrap(),
        })
        .to_body()
        .unwrap()
        .replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            QueueMessage::parse(&body),
            Err(MalformedMessage::Version(2))
        ));
        for garbage in [
            "",
            "{}",
            "[1]",
            "{\"version\":1}",
            "{\"version\":1,\"kind\":\"nope\"}",
        ] {
            assert!(QueueMessage::parse(garbage).is_err(), "{garbage}");
        }
    }
}
