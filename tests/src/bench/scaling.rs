//! Time-to-last-delivery on AWS, on paper: a seeded discrete-event simulation of one post
//! to N online recipients through the push path, from the published distributions and
//! quotas (the same figures as `ripple-local`'s AWS latency model, [`LatencyModel::aws`]).
//!
//! Modelled: the stream → router delay; authors above the inline bound handed to a push
//! worker as one work item (one more SQS hop); audiences up to the direct threshold pushed
//! by whoever resolved them; larger ones enqueued as SQS messages of `chunk` recipients
//! (one batched send), each visible to Lambda after the SQS → Lambda delay; the SQS event source's
//! concurrency (5 concurrent batches at first, up to 300 more per minute, capped by
//! `MaximumConcurrency`); each invocation pushing with `push_concurrency` calls in flight
//! per message; every `@connections` call drawn from the management distribution and
//! passing one account-wide token bucket (a throttled call waits for the next token).
//! Not modelled: cold starts, Lambda's own account concurrency (1,000 by default, not
//! reached by these shapes), retries' back-off beyond the bucket, DynamoDB reads of the
//! workers (single-digit ms).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use ripple_local::latency::{Distribution, LatencyModel};
use serde_json::{json, Value};

use super::stats::round;

/// The seed of every simulation in `docs/scaling.md`.
pub const SEED: u64 = 20_261_204;

/// The event queue's time resolution.
const RESOLUTION_MS: f64 = 0.001;

/// Trials per audience size: 200, fewer for the largest audiences (2,000,000 simulated
/// deliveries per size at most, which keeps `make bench` quick).
pub fn trials_for(recipients: usize) -> usize {
    (2_000_000 / recipients.max(1)).clamp(20, 200)
}

/// The push path's shape, as the code and template have it.
#[derive(Debug, Clone)]
pub struct PushShape {
    /// Audiences up to this many connections are pushed by the resolving function itself.
    pub direct_max: usize,
    /// Authors with more followers are resolved by a push worker (one work item on the
    /// queue), not by the router.
    pub inline_max_followers: usize,
    /// Recipients per SQS message.
    pub chunk: usize,
    /// `@connections` calls in flight per message being pushed.
    pub push_concurrency: usize,
    /// SQS event source `BatchSize`.
    pub batch_size: usize,
    /// SQS event source `ScalingConfig.MaximumConcurrency`.
    pub max_concurrency: usize,
    /// Whether a worker pushes the messages of its batch concurrently.
    pub messages_concurrently: bool,
}

/// AWS's figures.
#[derive(Debug, Clone)]
pub struct AwsQuotas {
    pub stream: Distribution,
    pub sqs: Distribution,
    pub management: Distribution,
    /// Account-wide `@connections` rate (calls/s) and burst.
    pub rate_per_second: f64,
    pub burst: f64,
    /// SQS event source: concurrent batches at first, and added per minute.
    pub initial_batches: usize,
    pub added_per_minute: f64,
    /// One SendMessageBatch call (an assumption: single-digit to low tens of ms in-region).
    pub send_batch_ms: f64,
}

impl AwsQuotas {
    /// The published figures (`LatencyModel::aws()`), the default quotas.
    pub fn published() -> Self {
        let model = LatencyModel::aws();
        let limit = model.management_rate_limit;
        Self {
            stream: model
                .stream
                .unwrap_or_else(Distribution::dynamodb_streams_to_lambda),
            sqs: model.sqs.unwrap_or_else(Distribution::sqs_to_lambda),
            management: model
                .management
                .unwrap_or_else(Distribution::management_api_call),
            rate_per_second: limit.map_or(10_000.0, |l| f64::from(l.per_second)),
            burst: limit.map_or(5_000.0, |l| f64::from(l.burst)),
            initial_batches: 5,
            added_per_minute: 300.0,
            send_batch_ms: 10.0,
        }
    }
}

/// What this machine adds when it plays AWS (the AWS-modelled local stack): measured in the
/// same bench run on the local-speed stack, never on the run the simulation is checked
/// against.
///
/// - Every push passes one server of `push_capacity_per_s` (the local `@connections`
///   ceiling: two cores run the gateway, the sockets and the functions), so a delivery
///   completes no earlier than the server has worked through the pushes before it.
/// - `pipeline_ms` of work before the first push (the router and the push worker reading
///   and enqueueing; on AWS a few ms of DynamoDB and SQS calls, here tens to hundreds).
/// - The local SQS poller starts all `MaximumConcurrency` batches at once (it does not play
///   Lambda's 5-batch start and ramp).
#[derive(Debug, Clone, Copy)]
pub struct MachineTerms {
    pub push_capacity_per_s: f64,
    pub pipeline_ms: f64,
}

/// Percentiles of the simulated time-to-last-delivery for one audience size.
#[derive(Debug, Clone, Copy)]
pub struct Simulated {
    pub recipients: usize,
    pub trials: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

impl Simulated {
    pub fn to_json(&self) -> Value {
        json!({
            "recipients": self.recipients,
            "trials": self.trials,
            "p50_ms": round(self.p50_ms, 0),
            "p99_ms": round(self.p99_ms, 0),
            "mean_ms": round(self.mean_ms, 0),
        })
    }
}

/// `trials` seeded runs of one post to `recipients` online connections.
pub fn simulate(
    shape: &PushShape,
    quotas: &AwsQuotas,
    recipients: usize,
    seed: u64,
    trials: usize,
) -> Simulated {
    simulate_on(shape, quotas, None, recipients, seed, trials)
}

/// [`simulate`] with this machine's terms added (`None`: AWS alone).
pub fn simulate_on(
    shape: &PushShape,
    quotas: &AwsQuotas,
    machine: Option<MachineTerms>,
    recipients: usize,
    seed: u64,
    trials: usize,
) -> Simulated {
    let mut rng = StdRng::seed_from_u64(seed ^ recipients as u64);
    let mut lasts: Vec<f64> = (0..trials.max(1))
        .map(|_| one_post(shape, quotas, machine, recipients, &mut rng))
        .collect();
    lasts.sort_by(f64::total_cmp);
    let at = |p: f64| lasts[((p * lasts.len() as f64).ceil() as usize).clamp(1, lasts.len()) - 1];
    Simulated {
        recipients,
        trials: lasts.len(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        mean_ms: lasts.iter().sum::<f64>() / lasts.len() as f64,
    }
}

fn draw(distribution: &Distribution, rng: &mut StdRng) -> f64 {
    distribution.sample(rng).as_secs_f64() * 1000.0
}

/// Time (ms after the REST response) of the last delivery of one post.
fn one_post(
    shape: &PushShape,
    quotas: &AwsQuotas,
    machine: Option<MachineTerms>,
    recipients: usize,
    rng: &mut StdRng,
) -> f64 {
    let mut routed = draw(&quotas.stream, rng);
    if recipients > shape.inline_max_followers {
        // Deferred: one work item through the queue to a worker that resolves it.
        routed += quotas.send_batch_ms + draw(&quotas.sqs, rng);
    }
    if let Some(machine) = machine {
        routed += machine.pipeline_ms;
    }
    let mut sim = Simulation::new(quotas, machine);
    if recipients <= shape.direct_max {
        sim.start_invocation(routed, recipients, shape.push_concurrency);
        return sim.run(shape, rng, &mut Vec::new());
    }
    let sent = routed + quotas.send_batch_ms;
    let messages = recipients.div_ceil(shape.chunk);
    let mut visible: Vec<(f64, usize)> = (0..messages)
        .map(|i| {
            let size = shape.chunk.min(recipients - i * shape.chunk);
            (sent + draw(&quotas.sqs, rng), size)
        })
        .collect();
    visible.sort_by(|a, b| b.0.total_cmp(&a.0)); // popped from the end: earliest first
    let initial = match machine {
        Some(_) => shape.max_concurrency,
        None => quotas.initial_batches.min(shape.max_concurrency),
    };
    for slot in 0..shape.max_concurrency {
        let ramp = slot.saturating_sub(initial) as f64 * 60_000.0 / quotas.added_per_minute;
        sim.push(sent + ramp, Event::Slot);
    }
    sim.run(shape, rng, &mut visible)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A free SQS event-source slot.
    Slot,
    /// A free push lane of invocation n.
    Lane(usize),
}

struct Invocation {
    pending: usize,
    lanes: usize,
}

struct Simulation {
    events: BinaryHeap<Reverse<(u64, Event)>>,
    invocations: Vec<Invocation>,
    tokens: f64,
    refilled_at: f64,
    rate_per_ms: f64,
    burst: f64,
    management: Distribution,
    last_delivery: f64,
    /// This machine's push server: ms of work per push, and when it is next free.
    machine_ms_per_push: Option<f64>,
    machine_free_at: f64,
}

impl Simulation {
    fn new(quotas: &AwsQuotas, machine: Option<MachineTerms>) -> Self {
        Self {
            events: BinaryHeap::new(),
            invocations: Vec::new(),
            tokens: quotas.burst,
            refilled_at: 0.0,
            rate_per_ms: quotas.rate_per_second / 1000.0,
            burst: quotas.burst,
            management: quotas.management.clone(),
            last_delivery: 0.0,
            machine_ms_per_push: machine
                .filter(|m| m.push_capacity_per_s > 0.0)
                .map(|m| 1000.0 / m.push_capacity_per_s),
            machine_free_at: 0.0,
        }
    }

    fn push(&mut self, at_ms: f64, event: Event) {
        // Microsecond resolution, rounded up: an event never fires before its time.
        self.events
            .push(Reverse(((at_ms * 1000.0).ceil() as u64, event)));
    }

    fn start_invocation(&mut self, at: f64, recipients: usize, lanes: usize) {
        let index = self.invocations.len();
        let lanes = lanes.min(recipients).max(1);
        self.invocations.push(Invocation {
            pending: recipients,
            lanes,
        });
        for _ in 0..lanes {
            self.push(at, Event::Lane(index));
        }
    }

    /// When a call wanting to start at `at` gets a token of the account-wide bucket.
    fn token(&mut self, at: f64) -> f64 {
        let now = at.max(self.refilled_at);
        self.tokens = (self.tokens + (now - self.refilled_at) * self.rate_per_ms).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return now;
        }
        let wait = (1.0 - self.tokens) / self.rate_per_ms;
        self.tokens = 0.0;
        self.refilled_at = now + wait;
        now + wait
    }

    /// Runs to the last delivery; `visible` holds the queued messages (time, recipients),
    /// earliest last.
    fn run(&mut self, shape: &PushShape, rng: &mut StdRng, visible: &mut Vec<(f64, usize)>) -> f64 {
        while let Some(Reverse((at_us, event))) = self.events.pop() {
            let at = at_us as f64 / 1000.0;
            match event {
                Event::Slot => self.on_slot(at, shape, visible),
                Event::Lane(index) => self.on_lane(at, index, rng),
            }
        }
        self.last_delivery
    }

    fn on_slot(&mut self, at: f64, shape: &PushShape, visible: &mut Vec<(f64, usize)>) {
        let Some(&(first, _)) = visible.last() else {
            return;
        };
        // Times are compared at the heap's microsecond resolution.
        let at = at + RESOLUTION_MS;
        if first > at {
            self.push(first, Event::Slot);
            return;
        }
        let mut batch = Vec::new();
        while batch.len() < shape.batch_size {
            match visible.last() {
                Some(&(ready, size)) if ready <= at => {
                    batch.push(size);
                    visible.pop();
                }
                _ => break,
            }
        }
        let lanes = if shape.messages_concurrently {
            shape.push_concurrency * batch.len()
        } else {
            shape.push_concurrency
        };
        self.start_invocation(at, batch.iter().sum(), lanes);
    }

    fn on_lane(&mut self, at: f64, index: usize, rng: &mut StdRng) {
        let invocation = &mut self.invocations[index];
        if invocation.pending == 0 {
            invocation.lanes -= 1;
            if invocation.lanes == 0 {
                self.push(at, Event::Slot);
            }
            return;
        }
        invocation.pending -= 1;
        let start = self.token(at);
        let mut done = start + draw(&self.management, rng);
        if let Some(per_push) = self.machine_ms_per_push {
            self.machine_free_at = self.machine_free_at.max(start) + per_push;
            done = done.max(self.machine_free_at);
        }
        self.last_delivery = self.last_delivery.max(done);
        self.push(done, Event::Lane(index));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> PushShape {
        PushShape {
            direct_max: 100,
            inline_max_followers: 1_000,
            chunk: 200,
            push_concurrency: 32,
            batch_size: 10,
            max_concurrency: 10,
            messages_concurrently: true,
        }
    }

    #[test]
    fn the_simulation_is_deterministic_and_grows_with_the_audience() {
        let quotas = AwsQuotas::published();
        let a = simulate(&shape(), &quotas, 5_000, SEED, 10);
        let b = simulate(&shape(), &quotas, 5_000, SEED, 10);
        assert_eq!(a.p50_ms, b.p50_ms);
        let small = simulate(&shape(), &quotas, 50, SEED, 10);
        let large = simulate(&shape(), &quotas, 100_000, SEED, 3);
        assert!(small.p50_ms < a.p50_ms && a.p50_ms < large.p50_ms);
        // 100,000 calls through a 10,000 rps bucket (5,000 burst) take at least 9.5 s.
        assert!(large.p50_ms > 9_500.0, "{large:?}");
    }

    #[test]
    fn a_slower_machine_only_delays_the_last_delivery() {
        let quotas = AwsQuotas::published();
        let aws = simulate(&shape(), &quotas, 5_000, SEED, 20);
        let machine = MachineTerms {
            push_capacity_per_s: 5_000.0,
            pipeline_ms: 200.0,
        };
        let here = simulate_on(&shape(), &quotas, Some(machine), 5_000, SEED, 20);
        // 5,000 pushes through a 5,000/s server take at least a second.
        assert!(
            here.p50_ms > aws.p50_ms && here.p50_ms > 1_000.0,
            "{aws:?} {here:?}"
        );
    }
}
