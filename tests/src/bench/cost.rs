//! What operations cost, counted by the [`shared::metering::RequestMeter`] on every
//! function's SDK clients over exactly one operation (settled stack before and after), and
//! priced at us-east-1 on-demand list prices.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::metering::MeterSnapshot;
use uuid::Uuid;

use super::lean::Fleet;
use super::seed::Seeder;
use super::stats::round;
use super::{progress, BenchStack};
use crate::realtime::User;

/// us-east-1 list prices (USD), checked on [`PRICES_CHECKED`]; sources in `docs/cost.md`.
pub const DYNAMODB_WRITE_REQUEST_UNIT: f64 = 0.625e-6;
pub const DYNAMODB_READ_REQUEST_UNIT: f64 = 0.125e-6;
/// Per request (each 64 KB chunk of a payload is a request).
pub const SQS_STANDARD_REQUEST: f64 = 0.40e-6;
/// Per message, first billion a month; each 32 KB of a message is a message.
pub const APIGW_WEBSOCKET_MESSAGE: f64 = 1.00e-6;
pub const PRICES_CHECKED: &str = "2026-12-04";

/// Requests Lambda's SQS poller makes per message the functions send, which no client of
/// ours makes and the meter cannot see: one ReceiveMessage and one DeleteMessage(Batch)
/// each, at worst (batches of up to 10 make it less).
pub const SQS_POLLER_REQUESTS_PER_SEND: u64 = 2;

/// The counts of one operation and their price.
#[derive(Debug, Clone)]
pub struct OperationCost {
    pub name: String,
    pub description: String,
    pub meter: MeterSnapshot,
    /// WebSocket messages the operation pushed (each is API Gateway's fee).
    pub pushes: u64,
}

impl OperationCost {
    /// SQS requests including the Lambda poller's receive and delete of what was sent.
    pub fn sqs_billed_requests(&self) -> u64 {
        let sends: u64 = self
            .meter
            .requests
            .iter()
            .filter(|((service, operation), _)| {
                service == shared::metering::SQS && operation.starts_with("SendMessage")
            })
            .map(|(_, count)| count)
            .sum();
        self.meter.sqs_requests() + sends * SQS_POLLER_REQUESTS_PER_SEND
    }

    /// Everything but API Gateway's fees, per million operations.
    pub fn usd_per_million(&self) -> f64 {
        1e6 * (self.meter.dynamodb_write_units * DYNAMODB_WRITE_REQUEST_UNIT
            + self.meter.dynamodb_read_units * DYNAMODB_READ_REQUEST_UNIT
            + self.sqs_billed_requests() as f64 * SQS_STANDARD_REQUEST)
    }

    /// API Gateway's message fee of the pushes, per million operations.
    pub fn apigw_usd_per_million(&self) -> f64 {
        1e6 * self.pushes as f64 * APIGW_WEBSOCKET_MESSAGE
    }

    pub fn to_json(&self) -> Value {
        let requests: serde_json::Map<String, Value> = self
            .meter
            .requests
            .iter()
            .map(|((service, operation), count)| (format!("{service}.{operation}"), json!(count)))
            .collect();
        json!({
            "description": self.description,
            "dynamodb_requests": self.meter.dynamodb_requests(),
            "dynamodb_read_units": round(self.meter.dynamodb_read_units, 2),
            "dynamodb_write_units": round(self.meter.dynamodb_write_units, 2),
            "sqs_requests": self.meter.sqs_requests(),
            "sqs_billed_requests_with_poller": self.sqs_billed_requests(),
            "management_requests": self.meter.management_requests(),
            "websocket_messages": self.pushes,
            "fanout_usd_per_million_posts": round(self.usd_per_million(), 4),
            "apigw_message_usd_per_million_posts": round(self.apigw_usd_per_million(), 4),
            "ratio_to_apigw": round(self.usd_per_million() / self.apigw_usd_per_million().max(f64::MIN_POSITIVE), 4),
            "requests": requests,
        })
    }
}

/// The key of the big post's figures: `post_10000_followers_100_online` at the defaults.
pub fn big_post_name(followers: usize, online: usize) -> String {
    format!("post_{followers}_followers_{online}_online")
}

/// The big post's author: `followers` followers, the first `online` of `fleet_users` among
/// them, the rest seeded in bulk (no profiles, never online).
pub async fn big_author(
    bench: &BenchStack,
    seeder: &Seeder,
    fleet_users: &[User],
    followers: usize,
    online: usize,
) -> anyhow::Result<User> {
    let author = bench.stack.register("cost_author").await;
    progress(&format!(
        "cost: seeding {} offline followers",
        followers - online
    ));
    seeder
        .offline_followers(&author, followers - online)
        .await?;
    seeder.follow(&fleet_users[..online], &author).await?;
    Ok(author)
}

/// The big one: `author` (from [`big_author`]) posts once while `fleet` is connected, its
/// first `online` sockets being the online followers. `connected` is how many sockets are
/// open in all: the online index, read once per post, grows with everyone online.
pub async fn big_post(
    bench: &BenchStack,
    fleet: &Fleet,
    author: &User,
    followers: usize,
    online: usize,
    connected: usize,
) -> anyhow::Result<OperationCost> {
    let stack = &bench.stack;
    // The seeded follows' stream records never invoke a function, so the stack looks
    // settled while the poller still reads them, and the records of the online follows
    // behind them (each a notification to the author) would land in the metered window.
    // A warm-up post arrives behind all of them.
    bench.settle(Duration::from_secs(300)).await?;
    let warm_up = Uuid::new_v4().simple().to_string();
    fleet.watch(&warm_up, online);
    stack.post(author, &format!("warm-up {warm_up}")).await;
    fleet.wait(Duration::from_secs(120)).await;
    let nonce = Uuid::new_v4().simple().to_string();
    let (delivered, meter) = bench
        .metered(|| async {
            fleet.watch(&nonce, online);
            let started = Instant::now();
            stack.post(author, &format!("cost {nonce}")).await;
            let arrivals = fleet.wait(Duration::from_secs(60)).await;
            progress(&format!(
                "cost: {} of {online} online followers ({connected} sockets open) got the post in {:.0} ms",
                arrivals.times.len(),
                started.elapsed().as_secs_f64() * 1000.0
            ));
            Ok(arrivals.times.len())
        })
        .await?;
    anyhow::ensure!(
        delivered == online,
        "only {delivered} of {online} online followers got the post"
    );
    let (name, description) = if connected <= online {
        (
            big_post_name(followers, online),
            format!("one post by an author with {followers} followers, {online} of them online (nobody else)"),
        )
    } else {
        (
            format!("{}_{connected}_connected", big_post_name(followers, online)),
            format!("the same post with {connected} users online in all (the online index grows with them)"),
        )
    };
    Ok(OperationCost {
        name,
        description,
        pushes: u64::try_from(online)?,
        meter,
    })
}

/// `@connections` POSTs counted: each one is a WebSocket message API Gateway bills.
fn pushed(meter: &MeterSnapshot) -> u64 {
    meter.operation_requests(shared::metering::MANAGEMENT, "PostToConnection")
}

/// Everyday operations between two users, the reader online with one socket.
pub async fn everyday(bench: &BenchStack) -> anyhow::Result<Vec<OperationCost>> {
    let stack = &bench.stack;
    let writer = stack.register("cost_writer").await;
    let reader = stack.register("cost_reader").await;
    stack.follow(&reader, &writer).await;
    let reader_socket = stack.connect(&reader).await;
    let writer_socket = stack.connect(&writer).await;
    let mut costs = Vec::new();
    let (post, meter) = bench
        .metered(|| async { Ok(stack.post(&writer, "an everyday post").await) })
        .await?;
    costs.push(OperationCost {
        name: "post".to_owned(),
        description: "post by an author with 1 follower, online".to_owned(),
        pushes: pushed(&meter),
        meter,
    });
    let post_id = post["id"].as_str().unwrap_or_default().to_owned();
    let (_, meter) = bench
        .metered(|| async { Ok(stack.comment(&reader, &post_id, "a comment").await) })
        .await?;
    costs.push(OperationCost {
        name: "comment".to_owned(),
        description: "comment on an online author's post (new_notification to the author)"
            .to_owned(),
        pushes: pushed(&meter),
        meter,
    });
    let (_, meter) = bench
        .metered(|| async { Ok(stack.like(&reader, &post_id).await) })
        .await?;
    costs.push(OperationCost {
        name: "like".to_owned(),
        description: "like of an online author's post (new_notification to the author)".to_owned(),
        pushes: pushed(&meter),
        meter,
    });
    let (_, meter) = bench
        .metered(|| async { Ok(stack.message(&writer, &reader, "a DM").await) })
        .await?;
    costs.push(OperationCost {
        name: "dm".to_owned(),
        description: "DM to an online follower (new_message to the recipient)".to_owned(),
        pushes: pushed(&meter),
        meter,
    });
    reader_socket.close().await;
    writer_socket.close().await;
    Ok(costs)
}
