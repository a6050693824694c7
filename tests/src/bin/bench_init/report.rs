//! The report: percentiles and ratios against hello, printed and written to
//! docs/benchmarks.{md,json}.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::run::Measured;
use crate::Args;

/// The goals of issue 16, as ratios against hello.
const INIT_GOAL: f64 = 2.0;
const RSS_GOAL: f64 = 3.0;
const GROWTH_GOAL_PERCENT: f64 = 5.0;
const SIZE_GOAL_BYTES: u64 = 10 * 1024 * 1024;

const MD_BEGIN: &str = "<!-- cold_start:begin -->";
const MD_END: &str = "<!-- cold_start:end -->";

struct Row {
    binary: &'static str,
    size_bytes: u64,
    init_p50: Duration,
    init_p95: Duration,
    rss_init_kb: u64,
    rss_baseline_kb: u64,
    rss_after_kb: u64,
    first_invoke: Duration,
}

impl Row {
    fn of(measured: &Measured) -> Self {
        let mut init = measured.init.clone();
        init.sort();
        let mut first = measured.first_invoke.clone();
        first.sort();
        let mut rss = measured.rss_init_kb.clone();
        rss.sort_unstable();
        Self {
            binary: measured.binary,
            size_bytes: measured.size_bytes,
            init_p50: percentile(&init, 0.50),
            init_p95: percentile(&init, 0.95),
            rss_init_kb: rss.get(rss.len() / 2).copied().unwrap_or(0),
            rss_baseline_kb: measured.rss_baseline_kb,
            rss_after_kb: measured.rss_after_kb,
            first_invoke: percentile(&first, 0.50),
        }
    }

    fn growth_percent(&self) -> f64 {
        if self.rss_baseline_kb == 0 {
            return 0.0;
        }
        (self.rss_after_kb as f64 - self.rss_baseline_kb as f64) / self.rss_baseline_kb as f64
            * 100.0
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

pub(crate) struct Report {
    rows: Vec<Row>,
    machine: String,
    runs: u32,
    invocations: u32,
}

impl Report {
    pub(crate) fn new(measured: Vec<Measured>, args: &Args) -> Self {
        Self {
            rows: measured.iter().map(Row::of).collect(),
            machine: machine_line(),
            runs: args.runs,
            invocations: args.invocations,
        }
    }

    fn hello(&self) -> &Row {
        &self.rows[0]
    }

    fn init_ratio(&self, row: &Row) -> f64 {
        row.init_p50.as_secs_f64() / self.hello().init_p50.as_secs_f64().max(1e-9)
    }

    fn rss_ratio(&self, row: &Row) -> f64 {
        row.rss_after_kb as f64 / (self.hello().rss_after_kb as f64).max(1.0)
    }

    fn goals_met(&self, row: &Row) -> Vec<&'static str> {
        let mut missed = Vec::new();
        if self.init_ratio(row) > INIT_GOAL {
            missed.push("init");
        }
        if self.rss_ratio(row) > RSS_GOAL {
            missed.push("rss");
        }
        if row.growth_percent() > GROWTH_GOAL_PERCENT {
            missed.push("growth");
        }
        if row.size_bytes > SIZE_GOAL_BYTES {
            missed.push("size");
        }
        missed
    }

    /// "met", "missed: …", or what a hello row is for.
    fn verdict(&self, row: &Row) -> String {
        match row.binary {
            "hello" => "baseline".to_owned(),
            "hello-multi-thread" => "reference (tokio multi-thread)".to_owned(),
            _ => {
                let missed = self.goals_met(row);
                if missed.is_empty() {
                    "met".to_owned()
                } else {
                    format!("missed: {}", missed.join(", "))
                }
            }
        }
    }

    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "machine: {}\nruns: {} cold starts per binary; RSS after {} invocations in one process\n\n",
            self.machine, self.runs, self.invocations
        ));
        out.push_str("| binary | size (MB) | init p50 (ms) | init p95 (ms) | init ×hello | RSS init (MB) | RSS after 100 (MB) | RSS after (MB) | RSS ×hello | growth 100→after | first invoke (ms) | goals |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for row in &self.rows {
            let verdict = self.verdict(row);
            out.push_str(&format!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} | {:.2} | {:+.1} % | {:.2} | {} |\n",
                row.binary,
                row.size_bytes as f64 / 1_048_576.0,
                ms(row.init_p50),
                ms(row.init_p95),
                self.init_ratio(row),
                row.rss_init_kb as f64 / 1024.0,
                row.rss_baseline_kb as f64 / 1024.0,
                row.rss_after_kb as f64 / 1024.0,
                self.rss_ratio(row),
                row.growth_percent(),
                ms(row.first_invoke),
                verdict,
            ));
        }
        out
    }

    fn json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    json!({
                        "binary": row.binary,
                        "size_bytes": row.size_bytes,
                        "init_p50_ms": ms(row.init_p50),
                        "init_p95_ms": ms(row.init_p95),
                        "rss_init_kb": row.rss_init_kb,
                        "rss_after_kb": row.rss_after_kb,
                        "first_invoke_ms": ms(row.first_invoke),
                        "rss_after_100_kb": row.rss_baseline_kb,
                        "init_ratio_to_hello": (self.init_ratio(row) * 100.0).round() / 100.0,
                        "rss_ratio_to_hello": (self.rss_ratio(row) * 100.0).round() / 100.0,
                        "rss_growth_percent": (row.growth_percent() * 10.0).round() / 10.0,
                        "goals": self.verdict(row),
                    })
                })
                .collect(),
        )
    }

    /// Replaces this bench's part of docs/benchmarks.{json,md}, keeping every other part.
    pub(crate) fn write(&self, docs: &Path) -> Result<(), String> {
        let json_path = docs.join("benchmarks.json");
        let mut document = match std::fs::read_to_string(&json_path) {
            Ok(text) => serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("{} is not JSON: {e}", json_path.display()))?,
            Err(_) => json!({}),
        };
        let object = document
            .as_object_mut()
            .ok_or_else(|| format!("{} is not a JSON object", json_path.display()))?;
        object.insert("cold_start".to_owned(), self.json());
        object.insert(
            "cold_start_conditions".to_owned(),
            json!({
                "machine": self.machine,
                "runs": self.runs,
                "invocations": self.invocations,
                "goals": {
                    "init_p50_ratio_max": INIT_GOAL,
                    "rss_after_ratio_max": RSS_GOAL,
                    "rss_growth_percent_max": GROWTH_GOAL_PERCENT,
                    "size_bytes_max": SIZE_GOAL_BYTES,
                },
            }),
        );
        let text = serde_json::to_string_pretty(&document).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&json_path, text).map_err(|e| format!("{}: {e}", json_path.display()))?;

        let md_path = docs.join("benchmarks.md");
        let existing = std::fs::read_to_string(&md_path).unwrap_or_else(|_| {
            "# Benchmarks\n\nResults of `make bench-*`, one section per benchmark.\n".to_owned()
        });
        let section = format!(
            "{MD_BEGIN}\n## Cold start and footprint (`make bench-init`)\n\n\
             Release binaries (the workspace's `[profile.release]`, x86_64) started as Lambda starts them, \
             under the Runtime API emulator of `tests/src/runtime_api.rs`; DynamoDB is dynoxide on 127.0.0.1. \
             init = exec → first `/next`; first invoke = event written → response posted. \
             Goals: init p50 ≤ {INIT_GOAL}× hello, RSS after ≤ {RSS_GOAL}× hello, growth ≤ {GROWTH_GOAL_PERCENT} %, size ≤ 10 MB.\n\n\
             {}\n{MD_END}",
            self.table()
        );
        let updated = match (existing.find(MD_BEGIN), existing.find(MD_END)) {
            (Some(begin), Some(end)) if end > begin => {
                format!(
                    "{}{section}{}",
                    &existing[..begin],
                    &existing[end + MD_END.len()..]
                )
            }
            _ => format!("{}\n{section}\n", existing.trim_end()),
        };
        std::fs::write(&md_path, updated).map_err(|e| format!("{}: {e}", md_path.display()))
    }
}

/// CPU model, cores, kernel and compiler, for the report.
fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cpu}, {cores} cores, Linux {kernel}, {rustc}, {}",
        std::env::consts::ARCH
    )
}
