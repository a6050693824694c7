//! `bench_init`: cold start and footprint of every Ripple function binary, against a
//! hello-world `lambda_runtime` binary built the same way (`tests/hello`).
//!
//! Each binary is a real release `bootstrap` started as Lambda starts it: a fresh process,
//! the Lambda environment variables, and a minimal Runtime API emulator on 127.0.0.1
//! ([`ripple_tests::runtime_api`]). DynamoDB is an embedded dynoxide in this process (over
//! HTTP, as the functions' SDK client sees a real endpoint), seeded through the in-process
//! functions; the management API (`@connections`) is answered by the emulator.
//!
//! For each binary:
//! - size (bytes of the file, as built: the release profile strips it);
//! - init: exec → the first `GET /runtime/invocation/next`, p50 and p95 over `--runs`
//!   fresh processes;
//! - RSS (`VmRSS`) when the first `/next` arrives, after 100 invocations and after
//!   `--invocations` (1,000) in one process, and the growth between the last two;
//! - the first invocation: event written → response posted, with a realistic event: a REST
//!   route that reads DynamoDB, a `$connect`/`$disconnect`/`subscribe`, a DynamoDB stream
//!   batch (a new post to an online follower: one push), an SQS `fanout` batch (one push).
//!
//! Results go to stdout, and (unless `--no-write`) to `docs/benchmarks.md` between the
//! `cold_start` markers and to `docs/benchmarks.json` under `"cold_start"`; other sections
//! of both files are kept.
//!
//! Run: `make bench-init` (builds the release binaries first), or
//! `cargo run -p ripple-tests --bin bench_init -- --help`.
//!
//! Here: the flags and the run. The seeded database and the events are in `world`, running
//! and sampling the binaries in `run`, the figures and the docs update in `report`.

mod report;
mod run;
mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;

use report::Report;
use run::{measure, Plan};
use world::World;

/// The binaries measured, hello first (the baseline of every ratio). `hello-multi-thread`
/// is hello on tokio's multi-thread runtime: a reference row for the choice of flavour.
const BINARIES: &[&str] = &[
    "hello",
    "hello-multi-thread",
    "api-auth",
    "api-users",
    "api-posts",
    "api-messages",
    "api-notifications",
    "ws-connect",
    "ws-disconnect",
    "ws-message",
    "stream-router",
    "push-worker",
];

#[derive(Debug, Clone, Parser)]
#[command(
    name = "bench_init",
    about = "Cold start and footprint of every function binary against hello-world lambda_runtime"
)]
struct Args {
    /// Where the release binaries are (default: the workspace's target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Fresh processes per binary for the init and first-invocation figures.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(10..=1000))]
    runs: u32,
    /// Invocations of the one long-lived process per binary (RSS after).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..=100_000))]
    invocations: u32,
    /// Only these binaries (comma-separated); hello is always measured.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print the table only; leave docs/benchmarks.{md,json} alone.
    #[arg(long)]
    no_write: bool,
    /// Start each binary under this command, for profiling (e.g. "strace -f -r -o
    /// /tmp/init.trace"); the figures then include the wrapper's cost. Implies --no-write.
    #[arg(long)]
    wrap: Option<String>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench_init: cannot start tokio: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_init: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let root = workspace_root();
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| release_dir(&root));
    let binaries: Vec<&'static str> = BINARIES
        .iter()
        .copied()
        .filter(|b| *b == "hello" || args.only.is_empty() || args.only.iter().any(|o| o == b))
        .collect();
    for binary in &binaries {
        let path = bin_dir.join(binary);
        if !path.is_file() {
            return Err(format!(
                "{} is missing: build the release binaries first (`make bench-init` does)",
                path.display()
            ));
        }
    }
    eprintln!("bench_init: seeding dynoxide through the in-process functions");
    let world = World::seed((args.invocations + args.runs) as usize).await?;
    let plan = Plan {
        bin_dir,
        wrap: args
            .wrap
            .as_deref()
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        binaries,
        runs: args.runs as usize,
        invocations: args.invocations as usize,
    };
    let home = tempfile::tempdir().map_err(|e| format!("temp HOME: {e}"))?;
    let world = Arc::new(world);
    let measure_world = Arc::clone(&world);
    let home_path = home.path().to_owned();
    let results = tokio::task::spawn_blocking(move || measure(&plan, &measure_world, &home_path))
        .await
        .map_err(|e| format!("the measurement panicked: {e}"))??;
    let report = Report::new(results, &args);
    print!("{}", report.table());
    if !args.no_write && args.wrap.is_none() {
        report.write(&root.join("docs"))?;
        eprintln!("bench_init: wrote docs/benchmarks.md and docs/benchmarks.json (cold_start)");
    }
    drop(world);
    Ok(())
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn release_dir(root: &Path) -> PathBuf {
    // Only the harness reads this: where cargo put the release build.
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release")
}
