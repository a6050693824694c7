//! The documents a run writes, from its results.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::cost::{self, OperationCost};
use super::fanout::FanoutResult;
use super::latency::LatencyResult;
use super::report::{self, table};
use super::scaling::{self, AwsQuotas, MachineTerms, PushShape, Simulated};
use super::stats::round;
use super::Profile;
use crate::realtime::repository_root;

/// The latency series the product target applies to.
pub const TARGET_SERIES: [&str; 3] = ["post_created_direct", "new_message", "new_notification"];

/// Whether push-worker handles the messages of one batch concurrently (the code's behaviour,
/// `push_worker::MESSAGE_CONCURRENCY` = the batch size; the simulation models what the code
/// does).
pub const WORKER_MESSAGES_CONCURRENTLY: bool = true;

/// Audience sizes of `docs/scaling.md`.
pub const SCALING_SIZES: [usize; 4] = [1_000, 5_000, 10_000, 100_000];

/// What one stack measured.
pub struct SideResults {
    pub profile: Profile,
    pub latency: LatencyResult,
    pub fanout: Vec<FanoutResult>,
    /// Measured on the local stack only.
    pub costs: Option<Vec<OperationCost>>,
}

pub struct Results {
    pub local: SideResults,
    pub modelled: Option<SideResults>,
    pub shape: PushShape,
    pub run_seconds: f64,
    pub stream_poll_ms: u64,
}

/// The push path's shape, read from the code's constants and `template.yaml`.
pub fn push_shape() -> anyhow::Result<PushShape> {
    let template =
        ripple_local::template::Template::from_file(&repository_root().join("template.yaml"))?;
    let source = template
        .sqs_sources
        .first()
        .ok_or_else(|| anyhow::anyhow!("template.yaml has no SQS event source"))?;
    let config = shared::config::Config::from_vars([("TABLE_NAME", "ripple")])?;
    Ok(PushShape {
        direct_max: config.fanout_direct_max_connections,
        inline_max_followers: config.fanout_inline_max_followers,
        chunk: shared::fanout::FANOUT_CHUNK_CONNECTIONS,
        push_concurrency: shared::push::DEFAULT_PUSH_CONCURRENCY,
        batch_size: usize::try_from(source.batch_size)?,
        max_concurrency: source.maximum_concurrency.map_or(1_000, |n| n as usize),
        messages_concurrently: WORKER_MESSAGES_CONCURRENTLY,
    })
}

/// The quotas a 100,000-recipient post within about a second needs.
fn raised_quotas() -> AwsQuotas {
    AwsQuotas {
        rate_per_second: 100_000.0,
        burst: 50_000.0,
        ..AwsQuotas::published()
    }
}

fn raised_shape(shape: &PushShape) -> PushShape {
    PushShape {
        max_concurrency: 1_000,
        ..shape.clone()
    }
}

struct Scaling {
    default: Vec<Simulated>,
    raised: Vec<Simulated>,
    /// The largest AWS-modelled fan-out against the simulation of the same K.
    check: Option<Check>,
}

/// The AWS-modelled local run at K against the simulation: of AWS alone, and of this
/// machine playing AWS (the AWS model plus [`MachineTerms`] measured on the local-speed
/// stack of the same run). The ±30 % check is against the latter: it is what the run is.
struct Check {
    k: usize,
    modelled_ms: f64,
    aws: Simulated,
    machine: Option<(MachineTerms, Simulated)>,
}

impl Check {
    /// The simulation the run is checked against.
    fn reference(&self) -> &Simulated {
        self.machine.as_ref().map_or(&self.aws, |(_, sim)| sim)
    }

    fn ratio(&self) -> f64 {
        self.modelled_ms / self.reference().p50_ms
    }
}

/// This machine's terms, from the local-speed fan-out at `k`: its ceiling rate, and the
/// time to its first delivery less the half stream-poll interval a record waits on average.
fn machine_terms(results: &Results, k: usize) -> Option<MachineTerms> {
    let local = results.local.fanout.iter().find(|f| f.connections == k)?;
    if !(local.ceiling_per_s.is_finite() && local.first_delivery_ms.is_finite()) {
        return None;
    }
    Some(MachineTerms {
        push_capacity_per_s: local.ceiling_per_s,
        pipeline_ms: (local.first_delivery_ms - results.stream_poll_ms as f64 / 2.0).max(0.0),
    })
}

impl Scaling {
    fn compute(results: &Results) -> Self {
        let quotas = AwsQuotas::published();
        let raised = raised_quotas();
        let raised_shape = raised_shape(&results.shape);
        Self {
            default: SCALING_SIZES
                .iter()
                .map(|&n| {
                    scaling::simulate(
                        &results.shape,
                        &quotas,
                        n,
                        scaling::SEED,
                        scaling::trials_for(n),
                    )
                })
                .collect(),
            raised: SCALING_SIZES
                .iter()
                .map(|&n| {
                    scaling::simulate(
                        &raised_shape,
                        &raised,
                        n,
                        scaling::SEED,
                        scaling::trials_for(n),
                    )
                })
                .collect(),
            check: results.modelled.as_ref().and_then(|side| {
                let largest = side.fanout.iter().max_by_key(|f| f.connections)?;
                let k = largest.connections;
                let trials = scaling::trials_for(k);
                let aws = scaling::simulate(&results.shape, &quotas, k, scaling::SEED, trials);
                let machine = machine_terms(results, k).map(|terms| {
                    let sim = scaling::simulate_on(
                        &results.shape,
                        &quotas,
                        Some(terms),
                        k,
                        scaling::SEED,
                        trials,
                    );
                    (terms, sim)
                });
                Some(Check {
                    k,
                    modelled_ms: largest.last_delivery_ms,
                    aws,
                    machine,
                })
            }),
        }
    }

    fn to_json(&self) -> Value {
        let check = self.check.as_ref();
        let k = check.map(|c| c.k);
        let simulated = check.map(|c| round(c.reference().p50_ms, 0));
        let modelled = check.map(|c| round(c.modelled_ms, 0));
        let ratio = check.map(|c| round(c.ratio(), 3));
        let machine = check.and_then(|c| c.machine.as_ref());
        let mut value = json!({
            "check_connections": k,
            "simulated_ms": simulated,
            "simulated_aws_only_ms": check.map(|c| round(c.aws.p50_ms, 0)),
            "machine_terms": machine.map(|(terms, _)| json!({
                "push_capacity_per_s": round(terms.push_capacity_per_s, 0),
                "pipeline_ms": round(terms.pipeline_ms, 0),
            })),
            "modelled_local_ms": modelled,
            "ratio": ratio,
            "within_30_percent": ratio.map(|r| (0.7..=1.3).contains(&r)),
            "seed": scaling::SEED,
            "default_quotas": self.default.iter().map(Simulated::to_json).collect::<Vec<_>>(),
            "raised_quotas": self.raised.iter().map(Simulated::to_json).collect::<Vec<_>>(),
        });
        if k == Some(5_000) {
            value["simulated_ms_5000"] = json!(simulated);
            value["modelled_local_ms_5000"] = json!(modelled);
        }
        value
    }
}

/// Writes the four documents into `dir`; returns the console summary.
pub fn write_all(dir: &Path, results: &Results) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    let scaling = Scaling::compute(results);
    let conditions = report::conditions(json!({
        "run_seconds": round(results.run_seconds, 0),
        "stream_poll_ms": results.stream_poll_ms,
        "aws_latency_model": "ripple_local::latency::LatencyModel::aws() (docs/local-aws-model.md)",
    }));
    report::merge_json(
        &dir.join("benchmarks.json"),
        &to_json(results, &scaling, &conditions),
    )?;
    report::merge_markdown(
        &dir.join("benchmarks.md"),
        &benchmarks_section(results, &scaling, &conditions),
    )?;
    if let Some(costs) = &results.local.costs {
        std::fs::write(dir.join("cost.md"), cost_doc(costs, &conditions))?;
    }
    std::fs::write(
        dir.join("scaling.md"),
        scaling_doc(results, &scaling, &conditions),
    )?;
    Ok(summary(results, &scaling))
}

fn to_json(results: &Results, scaling: &Scaling, conditions: &Value) -> Value {
    let mut latency = json!({ "local": results.local.latency.to_json() });
    let fanout_json = |side: &SideResults| {
        side.fanout
            .iter()
            .map(FanoutResult::to_json)
            .collect::<Vec<_>>()
    };
    let mut document = json!({
        "conditions": conditions,
        "fanout": fanout_json(&results.local),
        "scaling": scaling.to_json(),
    });
    if let Some(modelled) = &results.modelled {
        latency["aws_modelled"] = modelled.latency.to_json();
        document["fanout_aws_modelled"] = json!(fanout_json(modelled));
    }
    document["latency"] = latency;
    if let Some(costs) = &results.local.costs {
        let mut operations = serde_json::Map::new();
        for operation in costs {
            if operation.name.ends_with("_online") {
                document["cost"] = json!({ operation.name.clone(): operation.to_json() });
            } else {
                operations.insert(operation.name.clone(), operation.to_json());
            }
        }
        document["cost_operations"] = Value::Object(operations);
    }
    document
}

fn met(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

fn latency_table(results: &Results) -> String {
    let mut rows = Vec::new();
    for (name, description, local) in &results.local.latency.series {
        let mut row = vec![format!("`{name}`"), description.to_string()];
        let cells = |s: &super::stats::Summary| {
            vec![
                format!("{:.1}", super::stats::ms(s.p50)),
                format!("{:.1}", super::stats::ms(s.p95)),
                format!("{:.1}", super::stats::ms(s.p99)),
                format!("{:.1}%", s.within_tail * 100.0),
            ]
        };
        row.extend(cells(local));
        match results.modelled.as_ref().and_then(|m| m.latency.get(name)) {
            Some(modelled) => row.extend(cells(&modelled)),
            None => row.extend([
                "–".to_owned(),
                "–".to_owned(),
                "–".to_owned(),
                "–".to_owned(),
            ]),
        }
        rows.push(row);
    }
    table(
        &[
            "series",
            "what",
            "local p50",
            "p95",
            "p99",
            "≤500 ms",
            "AWS-modelled p50",
            "p95",
            "p99",
            "≤500 ms",
        ],
        &rows,
    )
}

fn latency_goal(results: &Results) -> String {
    let Some(modelled) = &results.modelled else {
        return "Latency goal: not evaluated (no AWS-modelled run).\n".to_owned();
    };
    let mut out = String::from(
        "Goal (AWS-modelled, small audiences): p50 ≤ 100 ms and ≥ 95 % within 500 ms.\n\n",
    );
    for name in TARGET_SERIES {
        if let Some(s) = modelled.latency.get(name) {
            let ok = s.p50 <= super::stats::TARGET && s.within_tail >= 0.95;
            let _ = writeln!(
                out,
                "- `{name}`: p50 {:.0} ms, {:.1} % within 500 ms: {}",
                super::stats::ms(s.p50),
                s.within_tail * 100.0,
                met(ok)
            );
        }
    }
    out
}

fn fanout_table(results: &Results) -> String {
    let mut rows = Vec::new();
    let sides = std::iter::once(&results.local).chain(results.modelled.as_ref());
    for side in sides {
        for f in &side.fanout {
            rows.push(vec![
                side.profile.key().to_owned(),
                f.connections.to_string(),
                f.delivered.to_string(),
                format!("{:.0}", f.last_delivery_ms),
                format!("{:.0}", f.deliveries_per_s),
                format!("{:.0}", f.ceiling_last_ms),
                format!("{:.0}", f.ceiling_per_s),
                format!("{:.2}", f.ratio),
                f.ratio_runs
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
    }
    table(
        &[
            "stack",
            "K",
            "delivered",
            "last delivery (ms after REST)",
            "deliveries/s",
            "ceiling: last delivery (ms)",
            "ceiling/s",
            "ratio (median)",
            "every run",
        ],
        &rows,
    )
}

fn cost_table(costs: &[OperationCost]) -> String {
    let rows: Vec<Vec<String>> = costs
        .iter()
        .map(|c| {
            vec![
                format!("`{}`", c.name),
                c.meter.dynamodb_requests().to_string(),
                format!("{:.1}", c.meter.dynamodb_read_units),
                format!("{:.1}", c.meter.dynamodb_write_units),
                c.meter.sqs_requests().to_string(),
                c.meter.management_requests().to_string(),
                format!("{:.2}", c.usd_per_million()),
                format!("{:.2}", c.apigw_usd_per_million()),
                format!(
                    "{:.2}",
                    c.usd_per_million() / c.apigw_usd_per_million().max(f64::MIN_POSITIVE)
                ),
            ]
        })
        .collect();
    table(
        &[
            "operation",
            "DynamoDB requests",
            "read units",
            "write units",
            "SQS requests",
            "@connections calls",
            "$ / million (all but API GW)",
            "API GW messages $ / million",
            "ratio",
        ],
        &rows,
    )
}

fn benchmarks_section(results: &Results, scaling: &Scaling, conditions: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Realtime: latency, fan-out, cost, scaling\n");
    let _ = writeln!(
        out,
        "Written by `make bench` (`tests/src/bench/`), one run of {:.0} s. Machine: {}.\n",
        results.run_seconds,
        report::machine_line(conditions)
    );
    let _ = writeln!(out, "Local = in-process stack at local speed (stream poll {} ms). AWS-modelled = the same stack with `ripple-local`'s AWS latency model (Streams→Lambda p50 213/p90 341/p99 552 ms, SQS→Lambda p50 16/p99 105 ms, `@connections` calls and the 10,000 rps account throttle; `docs/local-aws-model.md`). Local milliseconds are relative; compare ratios. An event time of 0 means the frame was already on the socket when the REST response was read: the writing function pushed it before answering (the writer push, `docs/realtime.md`).\n", results.stream_poll_ms);
    let _ = writeln!(
        out,
        "### Latency: REST response → WebSocket frame\n\n{}\n{}",
        latency_table(results),
        latency_goal(results)
    );
    let _ = writeln!(out, "### Fan-out efficiency\n\nOne post to K online sockets (one per follower, lean Rust clients in the bench); the ceiling is the bench POSTing frames of the same size straight to the same gateway's `@connections`, {} in flight, no function involved. ratio = deliveries/s ÷ ceiling/s; each K is measured several times (post, then its ceiling run), the row is the median run.\n\n{}", super::fanout::CEILING_CONCURRENCY, fanout_table(results));
    if let Some(f) = results.local.fanout.iter().find(|f| f.connections == 1_000) {
        let _ = writeln!(
            out,
            "Goal ratio ≥ 0.7 at K = 1,000 (local): {:.2}, {}\n",
            f.ratio,
            met(f.ratio >= 0.7)
        );
    }
    if let Some(costs) = &results.local.costs {
        let _ = writeln!(
            out,
            "### Cost (request meter; prices in `docs/cost.md`)\n\n{}",
            cost_table(costs)
        );
        if let Some(big) = costs.iter().find(|c| c.name.ends_with("_online")) {
            let ratio = big.usd_per_million() / big.apigw_usd_per_million();
            let _ = writeln!(out, "Goal for F = 10,000, O = 100 (this run: {}): everything but API Gateway ≤ 0.5 × its message fee: {ratio:.2}×, {}\n", big.description, met(ratio <= 0.5));
        }
    }
    let _ = writeln!(
        out,
        "### Scaling check (details in `docs/scaling.md`)\n\n{}",
        scaling_check(scaling)
    );
    out
}

fn scaling_check(scaling: &Scaling) -> String {
    let Some(check) = &scaling.check else {
        return "No AWS-modelled fan-out to compare with.\n".to_owned();
    };
    let ratio = check.ratio();
    let mut out = format!(
        "K = {}: AWS-modelled local run {:.0} ms to the last delivery.\n\n",
        check.k, check.modelled_ms
    );
    if let Some((terms, sim)) = &check.machine {
        let _ = writeln!(
            out,
            "- Simulation of this machine playing AWS (the AWS model plus this machine's terms, measured on the local-speed stack of this run: a push capacity of {:.0}/s, its local ceiling, and {:.0} ms of router and worker work before the first push): p50 {:.0} ms. Ratio {ratio:.2}, within ±30 %: {}",
            terms.push_capacity_per_s,
            terms.pipeline_ms,
            sim.p50_ms,
            met((0.7..=1.3).contains(&ratio))
        );
    }
    let _ = writeln!(
        out,
        "- Simulation of AWS alone (what `docs/scaling.md` predicts for a deployment): p50 {:.0} ms; the run takes {:.2}× that, the difference being this 2-core machine, which pushes every frame and runs every function itself.",
        check.aws.p50_ms,
        check.modelled_ms / check.aws.p50_ms
    );
    out
}

fn cost_doc(costs: &[OperationCost], conditions: &Value) -> String {
    let mut out = String::from("# Cost per operation\n\n");
    let _ = writeln!(out, "Generated by `make bench` (`tests/src/bench/cost.rs`); do not edit by hand. Machine: {}.\n", report::machine_line(conditions));
    let _ = writeln!(out, "Every function's DynamoDB, SQS and API Gateway management client carries the request meter (`shared::metering::RequestMeter`, an SDK interceptor): it counts each request attempt per operation and sums the capacity units DynamoDB reports (`ReturnConsumedCapacity = TOTAL`, which the meter sets). Each figure is the meter's difference from a settled stack before one operation to a settled stack after it, so it holds every function the operation caused (REST function, stream router, push workers).\n");
    let _ = writeln!(
        out,
        "## Prices (us-east-1, on-demand, list prices as of {})\n",
        cost::PRICES_CHECKED
    );
    let _ = writeln!(out, "| item | price | source |\n|---|---|---|");
    let _ = writeln!(out, "| DynamoDB write request unit | ${:.3} per million | aws.amazon.com/dynamodb/pricing/on-demand (after the November 2024 on-demand price cut) |", cost::DYNAMODB_WRITE_REQUEST_UNIT * 1e6);
    let _ = writeln!(
        out,
        "| DynamoDB read request unit | ${:.3} per million | same |",
        cost::DYNAMODB_READ_REQUEST_UNIT * 1e6
    );
    let _ = writeln!(out, "| SQS standard request (each 64 KB chunk) | ${:.2} per million | aws.amazon.com/sqs/pricing |", cost::SQS_STANDARD_REQUEST * 1e6);
    let _ = writeln!(out, "| API Gateway WebSocket message (each 32 KB, first billion a month) | ${:.2} per million | aws.amazon.com/api-gateway/pricing |\n", cost::APIGW_WEBSOCKET_MESSAGE * 1e6);
    let _ = writeln!(out, "DynamoDB on-demand units are the consumed capacity units the meter sums (1 write unit per 1 KB written, 2 for a transactional write; 1 read unit per 4 KB strongly consistent, ½ eventually consistent). SQS: the functions' own requests are counted; Lambda's SQS poller, which no client of ours runs, adds at most {} requests (receive, delete) per message sent, included in the dollars. DynamoDB Streams reads by Lambda are free. Not included: Lambda invocations and duration, CloudWatch, data transfer, connection minutes.\n", cost::SQS_POLLER_REQUESTS_PER_SEND);
    let _ = writeln!(out, "## Measured\n\n{}", cost_table(costs));
    let _ = writeln!(out, "`$ / million` is every metered request priced (DynamoDB units, SQS requests plus the poller's), per million operations; next to it the API Gateway fee of the WebSocket messages the operation pushed (one per `@connections` call; for the many-follower post, one per online follower).\n");
    if let Some(big) = costs.iter().find(|c| c.name.ends_with("_online")) {
        let ratio = big.usd_per_million() / big.apigw_usd_per_million();
        let _ = writeln!(out, "## The many-follower post\n\n{} (seeded through the store), once: ${:.2} per million posts for everything but API Gateway, against ${:.2} of API Gateway message fees for its {} pushes: **{ratio:.2}×** (goal for F = 10,000, O = 100: ≤ 0.5×; this run: {}).\n", big.description, big.usd_per_million(), big.apigw_usd_per_million(), big.pushes, met(ratio <= 0.5));
        let _ = writeln!(out, "Requests by operation:\n");
        for ((service, operation), count) in &big.meter.requests {
            let _ = writeln!(out, "- {service} {operation}: {count}");
        }
    }
    out
}

fn scaling_rows(simulated: &[Simulated]) -> Vec<Vec<String>> {
    simulated
        .iter()
        .map(|s| {
            vec![
                s.recipients.to_string(),
                s.trials.to_string(),
                format!("{:.0}", s.p50_ms),
                format!("{:.0}", s.p99_ms),
                format!("{:.0}", s.mean_ms),
            ]
        })
        .collect()
}

fn scaling_doc(results: &Results, scaling: &Scaling, conditions: &Value) -> String {
    let shape = &results.shape;
    let quotas = AwsQuotas::published();
    let mut out = String::from("# Scaling on paper: time to the last delivery\n\n");
    let _ = writeln!(out, "Generated by `make bench` (`tests/src/bench/scaling.rs`, seed {}); do not edit by hand. Machine of the run: {}.\n", scaling::SEED, report::machine_line(conditions));
    let _ = writeln!(out, "## Model\n\nOne post to N online recipients, from the REST response to the last `@connections` call completing:\n");
    let _ = writeln!(out, "1. DynamoDB Streams → stream router: Streams→Lambda delay, p50 213 / p90 341 / p99 552 ms (published measurements; the distribution of `ripple-local --aws-latency`, `docs/local-aws-model.md`).");
    let _ = writeln!(
        out,
        "2. Audiences up to {} connections: the router pushes them itself, {} calls in flight.",
        shape.direct_max, shape.push_concurrency
    );
    let _ = writeln!(out, "3. Larger audiences: SQS messages of {} recipients, sent in batches (one SendMessageBatch ≈ {:.0} ms, an assumption), each visible to Lambda after the SQS→Lambda delay (p50 16 / p99 105 ms).", shape.chunk, quotas.send_batch_ms);
    let _ = writeln!(out, "4. The SQS event source (BatchSize {}, MaximumConcurrency {} from `template.yaml`) starts {} concurrent batches and adds up to {:.0} more per minute (AWS Lambda developer guide, \"Configuring scaling behavior for SQS event source mappings\"); function scaling (1,000 execution environments per 10 s per function) and the account's 1,000 default concurrency are not binding below MaximumConcurrency 1,000.", shape.batch_size, shape.max_concurrency, quotas.initial_batches, quotas.added_per_minute);
    let _ = writeln!(
        out,
        "5. Each push-worker invocation pushes with {} calls in flight {}.",
        shape.push_concurrency,
        if shape.messages_concurrently {
            "per message, the messages of its batch concurrently"
        } else {
            "for its whole batch, one message after the other"
        }
    );
    let _ = writeln!(out, "6. Every `@connections` call takes a draw of the management-call distribution ({}) and one token of the account-wide bucket: {:.0} requests/s, burst {:.0} (API Gateway's default account throttle, shared by every API of the account); a throttled call waits for the next token.\n", quotas.management, quotas.rate_per_second, quotas.burst);
    let _ = writeln!(out, "Not modelled: cold starts, retries' back-off beyond the bucket, the workers' DynamoDB reads, other traffic sharing the throttle.\n");
    let _ = writeln!(out, "The check at the end runs the same simulation with this machine's terms added (`MachineTerms` in `tests/src/bench/scaling.rs`): every push also passes one server at the local `@connections` ceiling, the router's and worker's local work before the first push is added, and the SQS source starts all its batches at once as the local poller does. The terms are measured on the local-speed stack of the same run, never on the AWS-modelled run they are checked against; a match says the model's structure (stream and queue hops, batching, concurrency, throttle) is the code's, and the AWS-only figures above are that model without this machine.\n");
    let _ = writeln!(
        out,
        "## Default quotas\n\n{}",
        table(
            &[
                "online recipients",
                "trials",
                "p50 (ms)",
                "p99 (ms)",
                "mean (ms)"
            ],
            &scaling_rows(&scaling.default)
        )
    );
    let _ = writeln!(out, "## With raised quotas (API Gateway throttle 100,000 rps / burst 50,000, MaximumConcurrency 1,000)\n\n{}", table(&["online recipients", "trials", "p50 (ms)", "p99 (ms)", "mean (ms)"], &scaling_rows(&scaling.raised)));
    let _ = writeln!(out, "## What 100,000 online recipients need\n\n- The account-wide API Gateway throttle is the floor: 100,000 calls at 10,000 rps take ≥ 9.5 s after the 5,000 burst, and every other API call of the account (REST included) competes for the same tokens. Delivering in about a second needs a raise of the account-level throttle (Service Quotas, \"Throttle rate\", per Region) to the order of 100,000 rps.\n- The push worker's `PushWorkerMaxConcurrency` (template parameter, MaximumConcurrency ≤ 1,000) must rise with it, and so the account's Lambda concurrency (default 1,000) once it is shared with other functions.\n- The SQS event source's ramp (5 batches, +{:.0}/min) limits a cold burst; a warm, busy queue is already scaled.\n", quotas.added_per_minute);
    let _ = writeln!(
        out,
        "## Check against the AWS-modelled local run\n\n{}",
        scaling_check(scaling)
    );
    out
}

/// The console summary (stdout).
fn summary(results: &Results, scaling: &Scaling) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", latency_table(results));
    let _ = writeln!(out, "{}", latency_goal(results));
    let _ = writeln!(out, "{}", fanout_table(results));
    if let Some(costs) = &results.local.costs {
        let _ = writeln!(out, "{}", cost_table(costs));
    }
    let _ = writeln!(out, "{}", scaling_check(scaling));
    out
}
