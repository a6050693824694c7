//! Fault switches of a running SQS poller: killed invocations and poisoned messages.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_sqs::types::Message;

/// Which invocations to kill: those of a batch with a message whose body contains
/// `body_contains`, `remaining` more times, each `after` it started.
#[derive(Debug, Clone)]
struct KillRule {
    body_contains: String,
    remaining: u32,
    after: Duration,
}

/// A batch in which poisoned messages failed: how many, and how many others it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoisonedBatch {
    pub poisoned: usize,
    pub others: usize,
}

/// Fault switches of a running SQS poller (tests set them while it runs).
#[derive(Debug, Default)]
pub struct SqsPollerFaults {
    kill: Mutex<Option<KillRule>>,
    poison: Mutex<Option<String>>,
    pub(super) killed: AtomicU64,
    poisoned_batches: Mutex<Vec<PoisonedBatch>>,
}

impl SqsPollerFaults {
    /// Kills the next `count` invocations whose batch holds a message with a body containing
    /// `body_contains`, `after` each started: the function's work so far stands, but no
    /// message of the batch is deleted (a worker crash, or a timeout), so SQS redelivers
    /// them after the visibility timeout.
    pub fn kill_invocations(&self, body_contains: &str, count: u32, after: Duration) {
        *lock(&self.kill) = Some(KillRule {
            body_contains: body_contains.to_owned(),
            remaining: count,
            after,
        });
    }

    /// Invocations killed so far.
    pub fn killed(&self) -> u64 {
        self.killed.load(Ordering::Relaxed)
    }

    /// From now on, a message whose body contains `body_contains` fails every time: the
    /// function gets the rest of its batch, and the poisoned message is reported failed as a
    /// `batchItemFailures` entry would (never deleted). `None` cures it.
    pub fn poison(&self, body_contains: Option<&str>) {
        *lock(&self.poison) = body_contains.map(str::to_owned);
    }

    /// The batches in which poisoned messages failed, in order.
    pub fn poisoned_batches(&self) -> Vec<PoisonedBatch> {
        lock(&self.poisoned_batches).clone()
    }

    /// Takes one kill for a batch of `messages`, if the rule matches it: the delay after
    /// which to kill.
    pub(super) fn take_kill(&self, messages: &[Message]) -> Option<Duration> {
        let mut rule = lock(&self.kill);
        let matching = rule.as_ref().is_some_and(|rule| {
            rule.remaining > 0
                && messages
                    .iter()
                    .any(|m| body_contains(m, &rule.body_contains))
        });
        if !matching {
            return None;
        }
        let rule = rule.as_mut()?;
        rule.remaining -= 1;
        Some(rule.after)
    }

    /// Splits off the poisoned messages of a batch (recording the batch if any).
    pub(super) fn split_poisoned(&self, messages: Vec<Message>) -> (Vec<Message>, Vec<Message>) {
        let Some(poison) = lock(&self.poison).clone() else {
            return (messages, Vec::new());
        };
        let (poisoned, healthy): (Vec<Message>, Vec<Message>) = messages
            .into_iter()
            .partition(|message| body_contains(message, &poison));
        if !poisoned.is_empty() {
            lock(&self.poisoned_batches).push(PoisonedBatch {
                poisoned: poisoned.len(),
                others: healthy.len(),
            });
        }
        (healthy, poisoned)
    }
}

fn body_contains(message: &Message, text: &str) -> bool {
    message
        .body
        .as_deref()
        .is_some_and(|body| body.contains(text))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Single assignments only: a poisoned lock still holds a consistent value.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
