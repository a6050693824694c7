//! `bench_feed`: what a home-feed page costs, by how many accounts the viewer follows, and
//! what a post costs to materialize, by how many followers its author has.
//!
//! One embedded dynoxide (through the real SDK and the request meter). Viewers following
//! N = 10, 500 and 5,000 accounts, two of them above the materialization bound (the bench
//! sets `FEED_MATERIALIZE_MAX_FOLLOWERS` to 50 so "large" authors are cheap to seed: the
//! read path does not depend on the bound's value). Every account posts; each post is
//! distributed by the push worker's task (`shared::feed`). Then `--samples` first pages
//! (limit 20) per viewer, timed, and the requests of a three-page walk counted; the merged
//! feed (one query per followed account, the design this replaces) is counted beside it.
//!
//! `make bench` runs it and it writes `docs/benchmarks.md` (between the `feed` markers),
//! `docs/benchmarks.json` (`"feed"`, `"feed_distribute"`) and `docs/cost.md` (between the
//! `feed` markers). Goals (issue 11): requests per page ≤ 3 + large authors followed, and
//! p99(5,000) / p99(10) ≤ 1.5 in the same run. By hand: `cargo run -p ripple-tests
//! --profile bench-stack --bin bench_feed -- --print-only`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use futures::stream::{self, StreamExt, TryStreamExt};
use ripple_tests::bench::report;
use ripple_tests::realtime::repository_root;
use serde_json::{json, Value};
use shared::aws::{local_sdk_config, ClientSet, DynamoClients, Endpoints};
use shared::config::FeedLimits;
use shared::domain::{new_id, DisplayName, PostText, User, UserId, Username};
use shared::feed::{FeedMaterializer, FeedTask};
use shared::metering::{MeterSnapshot, RequestMeter};
use shared::store::page::PageRequest;
use shared::store::DynamoStore;
use shared::store::NewPost;
use shared::store::NewUser;
use shared::testkit::api::UNUSABLE_PASSWORD_HASH;
use shared::testkit::TestDb;

const BEGIN: &str = "<!-- feed:begin -->";
const END: &str = "<!-- feed:end -->";
const PAGE: usize = 20;
const LARGE_AUTHORS: usize = 2;
const MATERIALIZE_MAX_FOLLOWERS: usize = 50;
/// Requests in flight while seeding.
const SEED_CONCURRENCY: usize = 32;

#[derive(Debug, Clone, Parser)]
#[command(name = "bench_feed", about = "Home feed read and write costs")]
struct Args {
    /// Timed first-page reads per viewer.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Followed-account counts measured.
    #[arg(long, value_delimiter = ',', default_values_t = [10usize, 500, 5000])]
    following: Vec<usize>,
    /// Where `benchmarks.md`, `benchmarks.json` and `cost.md` are updated.
    #[arg(long, default_value_os_t = repository_root().join("docs"))]
    docs: PathBuf,
    /// Print the tables only; write no document.
    #[arg(long)]
    print_only: bool,
}

/// One viewer's figures.
struct ViewerRow {
    following: usize,
    requests_per_page: f64,
    read_units_per_page: f64,
    merged_requests_per_page: u64,
    p50_ms: f64,
    p99_ms: f64,
}

/// A post's materialization cost for an author with `followers` followers.
struct DistributeRow {
    followers: usize,
    snapshot: MeterSnapshot,
}

struct Bench {
    db: TestDb,
    store: DynamoStore,
    metered: DynamoStore,
    meter: RequestMeter,
    feeds: FeedMaterializer,
}

impl Bench {
    async fn start() -> anyhow::Result<Self> {
        let db = TestDb::start().await;
        let config = db.config();
        let meter = RequestMeter::new();
        let clients = DynamoClients::from_sdk_config(
            &local_sdk_config(),
            &config,
            &Endpoints {
                dynamodb: Some(db.endpoint.clone()),
                meter: Some(meter.clone()),
                ..Endpoints::default()
            },
        )?;
        let store = db.store();
        let metered = DynamoStore::new(clients.dynamodb, &config.table_name);
        let limits = FeedLimits {
            materialize_max_followers: MATERIALIZE_MAX_FOLLOWERS,
            ..FeedLimits::default()
        };
        let feeds = FeedMaterializer::new(Arc::new(store.clone()), limits);
        Ok(Self {
            db,
            store,
            metered,
            meter,
            feeds,
        })
    }

    async fn users(&self, prefix: &str, count: usize) -> anyhow::Result<Vec<User>> {
        let store = &self.store;
        Ok(stream::iter(0..count)
            .map(|i| async move {
                store
                    .create_user(NewUser {
                        id: new_id(),
                        username: Username::parse(&format!("{prefix}{i}")).unwrap(),
                        display_name: DisplayName::parse(&format!("{prefix} {i}")).unwrap(),
                        password_hash: UNUSABLE_PASSWORD_HASH.to_owned(),
                        created_at: Utc::now(),
                    })
                    .await
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect()
            .await?)
    }

    async fn follow_all(&self, viewer: UserId, authors: &[UserId]) -> anyhow::Result<()> {
        stream::iter(authors.iter().copied())
            .map(|author| async move { self.store.follow(viewer, author, Utc::now()).await })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// One post by each author, distributed by the worker's task.
    async fn post_round(&self, authors: &[UserId], round: usize) -> anyhow::Result<()> {
        stream::iter(authors.iter().copied())
            .map(|author| async move {
                let post = self
                    .store
                    .create_post(NewPost {
                        author,
                        text: PostText::parse(&format!("round {round} by {author}")).unwrap(),
                        media_url: None,
                        created_at: Utc::now(),
                    })
                    .await?;
                self.feeds
                    .apply(&FeedTask::Distribute {
                        post_id: post.id,
                        author_id: author,
                        created_at: post.created_at,
                    })
                    .await
            })
            .buffer_unordered(SEED_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }
}

async fn measure_viewer(
    bench: &Bench,
    viewer: UserId,
    following: usize,
    samples: usize,
) -> anyhow::Result<ViewerRow> {
    // Requests of a three-page walk, per page.
    bench.meter.reset();
    let mut page = PageRequest::first(PAGE);
    let mut pages = 0u32;
    for _ in 0..3 {
        let read = bench.metered.home_feed(viewer, &page).await?;
        pages += 1;
        match read.next_cursor {
            Some(cursor) => page = PageRequest::after(PAGE, cursor),
            None => break,
        }
    }
    let walk = bench.meter.snapshot();
    bench.meter.reset();
    bench
        .metered
        .merged_feed(viewer, &PageRequest::first(PAGE))
        .await?;
    let merged = bench.meter.snapshot().dynamodb_requests();
    let mut times = Vec::with_capacity(samples);
    for _ in 0..10 {
        bench
            .store
            .home_feed(viewer, &PageRequest::first(PAGE))
            .await?;
    }
    for _ in 0..samples {
        let started = Instant::now();
        bench
            .store
            .home_feed(viewer, &PageRequest::first(PAGE))
            .await?;
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    Ok(ViewerRow {
        following,
        requests_per_page: walk.dynamodb_requests() as f64 / f64::from(pages),
        read_units_per_page: walk.dynamodb_read_units / f64::from(pages),
        merged_requests_per_page: merged,
        p50_ms: ms(ripple_tests::bench::stats::percentile(&times, 50.0)),
        p99_ms: ms(ripple_tests::bench::stats::percentile(&times, 99.0)),
    })
}

async fn measure_distribute(bench: &Bench, followers: usize) -> anyhow::Result<DistributeRow> {
    let author = bench
        .users(&format!("d{followers}x"), 1)
        .await?
        .remove(0)
        .id;
    shared::testkit::seed_followers(&bench.store, author, followers).await?;
    let post = bench
        .store
        .create_post(NewPost {
            author,
            text: PostText::parse("measured").unwrap(),
            media_url: None,
            created_at: Utc::now(),
        })
        .await?;
    let metered = FeedMaterializer::new(Arc::new(bench.metered.clone()), FeedLimits::default());
    bench.meter.reset();
    metered
        .apply(&FeedTask::Distribute {
            post_id: post.id,
            author_id: author,
            created_at: post.created_at,
        })
        .await?;
    Ok(DistributeRow {
        followers,
        snapshot: bench.meter.snapshot(),
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bench = Bench::start().await?;
    let most = args.following.iter().copied().max().unwrap_or(0);
    report_progress(&format!(
        "seeding {most} authors, {LARGE_AUTHORS} large ones"
    ));
    let authors: Vec<UserId> = bench
        .users("a", most.saturating_sub(LARGE_AUTHORS))
        .await?
        .iter()
        .map(|u| u.id)
        .collect();
    let large: Vec<UserId> = bench
        .users("star", LARGE_AUTHORS)
        .await?
        .iter()
        .map(|u| u.id)
        .collect();
    for star in &large {
        shared::testkit::seed_followers(&bench.store, *star, MATERIALIZE_MAX_FOLLOWERS + 10)
            .await?;
    }
    let mut viewers = Vec::new();
    for &following in &args.following {
        let viewer = bench
            .users(&format!("viewer{following}x"), 1)
            .await?
            .remove(0)
            .id;
        let mut followed: Vec<UserId> = authors[..following.saturating_sub(LARGE_AUTHORS)].to_vec();
        followed.extend(&large);
        bench.follow_all(viewer, &followed).await?;
        viewers.push((viewer, following));
    }
    report_progress("posting two rounds (every post distributed by its feed task)");
    let mut everyone = authors.clone();
    everyone.extend(&large);
    for round in 0..2 {
        bench.post_round(&everyone, round).await?;
    }
    let mut rows = Vec::new();
    for (viewer, following) in viewers {
        report_progress(&format!(
            "reading the feed of a viewer following {following}"
        ));
        rows.push(measure_viewer(&bench, viewer, following, args.samples).await?);
    }
    let mut distribute = Vec::new();
    for followers in [10, 1_000, 10_000] {
        report_progress(&format!("distributing a post to {followers} followers"));
        distribute.push(measure_distribute(&bench, followers).await?);
    }
    let conditions = report::conditions(json!({}));
    let (section, cost_section, value) = documents(&args, &rows, &distribute, &conditions);
    println!("{section}\n{cost_section}");
    if !args.print_only {
        report::merge_json_keys(
            &args.docs.join("benchmarks.json"),
            &value,
            &["feed", "feed_distribute"],
        )?;
        report::merge_markdown_between(&args.docs.join("benchmarks.md"), BEGIN, END, &section)?;
        report::merge_markdown_between(&args.docs.join("cost.md"), BEGIN, END, &cost_section)?;
        eprintln!("bench_feed: wrote {}", args.docs.display());
    }
    drop(bench.db);
    Ok(())
}

fn report_progress(message: &str) {
    eprintln!("bench_feed: {message}");
}

/// DynamoDB on-demand, us-east-1 (`docs/cost.md`): $ per million write / read request units.
const WRITE_UNIT_USD_PER_MILLION: f64 = 0.625;
const READ_UNIT_USD_PER_MILLION: f64 = 0.125;
/// SQS standard: $ per million requests (the feed task's one message).
const SQS_USD_PER_MILLION: f64 = 0.40;

fn documents(
    args: &Args,
    rows: &[ViewerRow],
    distribute: &[DistributeRow],
    conditions: &Value,
) -> (String, String, Value) {
    let (section, goals) = feed_section(args, rows, conditions);
    let cost = cost_section(distribute);
    let value = results_json(rows, distribute, conditions, goals);
    (section, cost, value)
}

/// The page-cost goal, the worst page and the p99 ratio the feed section reports.
#[derive(Clone, Copy)]
struct FeedGoals {
    bound: f64,
    worst: f64,
    ratio: f64,
}

/// The `docs/benchmarks.md` section on a feed page's cost by accounts followed.
fn feed_section(args: &Args, rows: &[ViewerRow], conditions: &Value) -> (String, FeedGoals) {
    let mut section = String::from("## Home feed: a page's cost by accounts followed\n\n");
    let _ = writeln!(
        section,
        "Written by `tests/src/bin/bench_feed.rs` (run by `make bench`). Machine: {}.\n\n\
         Embedded dynoxide through the SDK and the request meter. Each viewer follows N accounts, \
         {LARGE_AUTHORS} of them above the materialization bound (set to {MATERIALIZE_MAX_FOLLOWERS} \
         followers for the bench); every account posted twice and every post was distributed by its \
         feed task. Requests: a three-page walk (limit {PAGE}), per page. Times: {} first pages, \
         after 10 warm-up reads. `merged` = the read-time merge this replaces (one query per \
         followed account), first page.\n",
        report::machine_line(conditions),
        args.samples
    );
    let header = [
        "following",
        "requests / page",
        "read units / page",
        "p50 (ms)",
        "p99 (ms)",
        "merged: requests / page",
    ];
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.following.to_string(),
                format!("{:.1}", r.requests_per_page),
                format!("{:.1}", r.read_units_per_page),
                format!("{:.2}", r.p50_ms),
                format!("{:.2}", r.p99_ms),
                r.merged_requests_per_page.to_string(),
            ]
        })
        .collect();
    section.push_str(&report::table(&header, &table_rows));
    let bound = 3.0 + LARGE_AUTHORS as f64;
    let worst = rows.iter().map(|r| r.requests_per_page).fold(0.0, f64::max);
    let smallest = rows.iter().min_by_key(|r| r.following);
    let largest = rows.iter().max_by_key(|r| r.following);
    let ratio = match (smallest, largest) {
        (Some(s), Some(l)) if s.p99_ms > 0.0 => l.p99_ms / s.p99_ms,
        _ => f64::NAN,
    };
    let verdict = |met: bool| if met { "**met**" } else { "**missed**" };
    let _ = writeln!(
        section,
        "\nGoals: requests per page ≤ 3 + large authors followed ({bound:.0}): worst {worst:.1}, {}; \
         p99(largest N) / p99(smallest N) ≤ 1.5: {ratio:.2}, {}",
        verdict(worst <= bound),
        verdict(ratio <= 1.5)
    );
    (
        section,
        FeedGoals {
            bound,
            worst,
            ratio,
        },
    )
}

/// The section on what a post costs to materialize.
fn cost_section(distribute: &[DistributeRow]) -> String {
    let mut cost = String::from("## Home feed: what a post costs to materialize\n\n");
    let _ = writeln!(
        cost,
        "Written by `tests/src/bin/bench_feed.rs` (`make bench`): the push worker's `distribute` \
         task for one post, counted by the request meter (prices above: writes \
         ${WRITE_UNIT_USD_PER_MILLION}/M units, reads ${READ_UNIT_USD_PER_MILLION}/M units, SQS \
         ${SQS_USD_PER_MILLION}/M requests for the task's message). An entry is one write unit per \
         follower, paid once per post; the read it saves is one query per followed account on every \
         page view (`merged` column of the feed table in `docs/benchmarks.md`).\n"
    );
    let cost_rows: Vec<Vec<String>> = distribute
        .iter()
        .map(|d| {
            let s = &d.snapshot;
            let usd = s.dynamodb_write_units * WRITE_UNIT_USD_PER_MILLION
                + s.dynamodb_read_units * READ_UNIT_USD_PER_MILLION
                + SQS_USD_PER_MILLION;
            vec![
                d.followers.to_string(),
                s.dynamodb_requests().to_string(),
                format!("{:.1}", s.dynamodb_read_units),
                format!("{:.1}", s.dynamodb_write_units),
                format!("{usd:.2}"),
            ]
        })
        .collect();
    cost.push_str(&report::table(
        &[
            "followers",
            "DynamoDB requests",
            "read units",
            "write units",
            "$ / million posts",
        ],
        &cost_rows,
    ));
    cost
}

/// The JSON results of both.
fn results_json(
    rows: &[ViewerRow],
    distribute: &[DistributeRow],
    conditions: &Value,
    goals: FeedGoals,
) -> Value {
    let FeedGoals {
        bound,
        worst,
        ratio,
    } = goals;
    let feed: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "following": r.following,
                "large_authors_followed": LARGE_AUTHORS,
                "dynamodb_requests_per_page": r.requests_per_page,
                "dynamodb_read_units_per_page": r.read_units_per_page,
                "p50_ms": r.p50_ms,
                "p99_ms": r.p99_ms,
                "merged_feed_requests_per_page": r.merged_requests_per_page,
            })
        })
        .collect();
    let distribute_json: Vec<Value> = distribute
        .iter()
        .map(|d| {
            json!({
                "followers": d.followers,
                "dynamodb_requests": d.snapshot.dynamodb_requests(),
                "dynamodb_read_units": d.snapshot.dynamodb_read_units,
                "dynamodb_write_units": d.snapshot.dynamodb_write_units,
            })
        })
        .collect();
    json!({
        "feed": feed,
        "feed_distribute": {"conditions": conditions, "posts": distribute_json,
            "goal_requests_per_page": bound, "worst_requests_per_page": worst,
            "p99_ratio_largest_to_smallest": ratio},
    })
}
