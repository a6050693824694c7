//! `bench_realtime` (`make bench`): the realtime benchmark — latency, fan-out efficiency,
//! cost per operation and scaling on paper — through the whole local stack, once at local
//! speed and once with the AWS latency model. Writes `docs/benchmarks.{json,md}` (its own
//! sections only), `docs/cost.md` and `docs/scaling.md`; see `ripple_tests::bench`.
//!
//! Run: `make bench`, or `cargo run -p ripple-tests --release --bin bench_realtime -- --help`
//! (needs `make tools` for `.venv/bin/moto_server`).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use ripple_tests::bench::docs::{self, Results, SideResults};
use ripple_tests::bench::fanout::{self, FanoutResult};
use ripple_tests::bench::latency::{self, LatencyPlan};
use ripple_tests::bench::lean::{raise_open_file_limit, Fleet};
use ripple_tests::bench::seed::Seeder;
use ripple_tests::bench::{bench_environment, cost, progress, BenchStack, Profile};
use ripple_tests::realtime::{repository_root, User};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench_realtime",
    about = "Realtime benchmark: latency, fan-out efficiency, cost and scaling, through the local stack"
)]
struct Args {
    /// Latency samples per series at local speed (posts, DMs, comment notifications).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    samples: u32,
    /// Latency samples per series with the AWS latency model (each takes ~0.3-0.6 s).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    modelled_samples: u32,
    /// Followers (one socket each) of the small-audience author.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    followers: u32,
    /// Fan-out audience sizes (online connections, one per follower).
    #[arg(long, value_delimiter = ',', default_values_t = [1000u32, 5000])]
    fanout: Vec<u32>,
    /// Fan-out measurements per K; the median ratio is reported, every ratio recorded.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    fanout_repeats: u32,
    /// Followers of the cost scenario's author, and how many of them are online.
    #[arg(long, default_value_t = 10_000)]
    cost_followers: u32,
    #[arg(long, default_value_t = 100)]
    cost_online: u32,
    /// The local stream poller's interval (the local latency floor of stream-borne events).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=5_000))]
    stream_poll_ms: u64,
    /// Skip the AWS-modelled stack (its latency and K = 5,000 check stay out of the report).
    #[arg(long)]
    local_only: bool,
    /// Where the documents are written.
    #[arg(long, default_value_os_t = repository_root().join("docs"))]
    docs: PathBuf,
    /// Copy the functions' EMF metric lines to stderr instead of discarding them.
    #[arg(long)]
    function_logs: bool,
}

impl Args {
    fn plan(&self, profile: Profile) -> LatencyPlan {
        let samples = match profile {
            Profile::Local => self.samples,
            Profile::AwsModelled => self.modelled_samples,
        };
        let count = usize::try_from(samples).unwrap_or(usize::MAX);
        LatencyPlan {
            posts: count,
            followers: usize::try_from(self.followers).unwrap_or(5),
            messages: count,
            notifications: count,
            warmup: 3,
            pace: Duration::from_millis(20),
            jitter: Duration::from_millis(self.stream_poll_ms),
            timeout: Duration::from_secs(20),
        }
    }

    fn fanout_sizes(&self) -> Vec<usize> {
        self.fanout.iter().map(|&k| k as usize).collect()
    }

    fn fleet_size(&self) -> usize {
        self.fanout_sizes()
            .into_iter()
            .chain([self.cost_online as usize])
            .max()
            .unwrap_or(0)
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.cost_online > args.cost_followers {
        eprintln!("bench_realtime: --cost-online must not exceed --cost-followers");
        return std::process::ExitCode::from(2);
    }
    init_logs();
    use shared::telemetry::emf::{set_sink, Sink};
    set_sink(if args.function_logs {
        Sink::Stderr
    } else {
        Sink::Discard
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bench_realtime: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(summary) => {
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(summary.as_bytes()) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(_) => std::process::ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("bench_realtime: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// With `RUST_LOG` set, the stack's logs go to stderr with each span's busy and idle time
/// when it closes: where a run's milliseconds go (`RUST_LOG=stream_router=info,...`).
fn init_logs() {
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::EnvFilter;
    if let Ok(filter) = EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_span_events(FmtSpan::CLOSE)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
    }
}

async fn run(args: Args) -> anyhow::Result<String> {
    let started = Instant::now();
    let limit = raise_open_file_limit()?;
    progress(&format!("open-file limit {limit}"));
    let local = side(&args, Profile::Local).await?;
    let modelled = if args.local_only {
        None
    } else {
        Some(side(&args, Profile::AwsModelled).await?)
    };
    let results = Results {
        local,
        modelled,
        shape: docs::push_shape()?,
        run_seconds: started.elapsed().as_secs_f64(),
        stream_poll_ms: args.stream_poll_ms,
    };
    let summary = docs::write_all(&args.docs, &results)?;
    progress(&format!(
        "wrote {} (benchmarks.json, benchmarks.md, cost.md, scaling.md) in {:.0} s",
        args.docs.display(),
        started.elapsed().as_secs_f64()
    ));
    Ok(summary)
}

/// Everything measured on one stack.
async fn side(args: &Args, profile: Profile) -> anyhow::Result<SideResults> {
    progress(&format!("starting the {} stack", profile.key()));
    let environment = bench_environment(&[]);
    let bench = BenchStack::start(
        profile,
        Duration::from_millis(args.stream_poll_ms),
        environment,
    )
    .await;
    let measured = measure(args, &bench).await;
    bench.stop().await;
    measured
}

async fn measure(args: &Args, bench: &BenchStack) -> anyhow::Result<SideResults> {
    let profile = bench.profile;
    let latency = latency::measure(bench, &args.plan(profile), profile.key()).await;
    let seeder = Seeder::new(&bench.stack)?;
    let fleet_size = args.fleet_size();
    progress(&format!("seeding {fleet_size} fan-out followers"));
    let fleet_users = seeder
        .users(&format!("{}f", &profile.key()[..1]), fleet_size)
        .await?;
    let mut audiences = Vec::new();
    for k in args.fanout_sizes() {
        let author = bench
            .stack
            .register(&format!("{}_fanout_{k}", profile.key()))
            .await;
        seeder.follow(&fleet_users[..k], &author).await?;
        audiences.push((k, author));
    }
    // The many-follower cost post, first with only its online followers connected (the
    // issue's F = 10,000, O = 100), later again with the whole fleet online.
    let cost_shape = (args.cost_followers as usize, args.cost_online as usize);
    let mut alone_cost = None;
    let big_author = match profile {
        Profile::Local => {
            let (followers, online) = cost_shape;
            let author = cost::big_author(bench, &seeder, &fleet_users, followers, online).await?;
            let url = bench.stack.stack.urls.websocket_url();
            let few = Fleet::connect(&url, &fleet_users[..online]).await?;
            alone_cost =
                Some(cost::big_post(bench, &few, &author, followers, online, online).await?);
            few.close();
            Some(author)
        }
        Profile::AwsModelled => None,
    };
    let before = bench.stack.open_connection_ids();
    progress(&format!("connecting {fleet_size} lean sockets"));
    let fleet = Fleet::connect(&bench.stack.stack.urls.websocket_url(), &fleet_users).await?;
    let connection_ids: Vec<String> = bench
        .stack
        .open_connection_ids()
        .difference(&before)
        .cloned()
        .collect();
    progress(&format!("{} sockets open", connection_ids.len()));
    let repeats = args.fanout_repeats as usize;
    let fanout = fanouts(bench, &fleet, &connection_ids, &audiences, repeats).await?;
    let costs = match (big_author, alone_cost) {
        (Some(author), Some(alone)) => {
            let mut costs = cost::everyday(bench).await?;
            costs.push(alone);
            let (followers, online) = cost_shape;
            costs
                .push(cost::big_post(bench, &fleet, &author, followers, online, fleet_size).await?);
            Some(costs)
        }
        _ => None,
    };
    fleet.close();
    Ok(SideResults {
        profile,
        latency,
        fanout,
        costs,
    })
}

async fn fanouts(
    bench: &BenchStack,
    fleet: &Fleet,
    connection_ids: &[String],
    audiences: &[(usize, User)],
    repeats: usize,
) -> anyhow::Result<Vec<FanoutResult>> {
    let mut results = Vec::new();
    for (k, author) in audiences {
        let timeout = Duration::from_secs(60 + 30 * (*k as u64 / 1000));
        let target = fanout::Target {
            fleet,
            connection_ids,
            author,
            k: *k,
            timeout,
        };
        results.push(fanout::measure_repeated(bench, &target, repeats).await?);
    }
    Ok(results)
}
