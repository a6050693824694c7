//! Writing the results: `docs/benchmarks.json` and `docs/benchmarks.md` are shared with
//! other benchmarks, so only this benchmark's keys (JSON) and the span between the
//! `realtime` markers (Markdown) are replaced; `docs/cost.md` and `docs/scaling.md` are
//! this benchmark's own and written whole.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

pub const BEGIN: &str = "<!-- realtime:begin -->";
pub const END: &str = "<!-- realtime:end -->";

/// The keys of `benchmarks.json` this benchmark owns.
pub const OWNED_KEYS: [&str; 7] = [
    "conditions",
    "latency",
    "fanout",
    "fanout_aws_modelled",
    "cost",
    "cost_operations",
    "scaling",
];

/// The machine line: what the figures were measured on.
pub fn conditions(extra: Value) -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<f64>()
                        .ok()
                })
        })
        .map_or(0.0, |kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("PRETTY_NAME="))
                .map(|name| name.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut conditions = json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": memory_gib,
        "os": format!("{os} (Linux {})", kernel.trim()),
        "rustc": command_output("rustc", &["--version"]),
        "git_commit": git_commit(),
        "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "build": if cfg!(debug_assertions) { "debug" } else { "optimised (bench-stack profile: release, opt-level 3, no LTO)" },
    });
    if let (Some(target), Value::Object(extra)) = (conditions.as_object_mut(), extra) {
        target.extend(extra);
    }
    conditions
}

/// One line for the Markdown.
pub fn machine_line(conditions: &Value) -> String {
    let text = |key: &str| conditions[key].as_str().unwrap_or("?").to_owned();
    format!(
        "{} × {} cores, {} GiB, {}, {}, commit {}, {}, {} build",
        text("cpu"),
        conditions["cores"],
        conditions["memory_gib"],
        text("os"),
        text("rustc"),
        text("git_commit"),
        text("date"),
        text("build"),
    )
}

fn command_output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn git_commit() -> String {
    let commit = command_output("git", &["rev-parse", "--short=12", "HEAD"]);
    let dirty =
        !command_output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
    if dirty {
        format!("{commit}+uncommitted")
    } else {
        commit
    }
}

/// Replaces this benchmark's keys in `path` (other keys are kept), creating it if needed.
pub fn merge_json(path: &Path, ours: &Value) -> anyhow::Result<()> {
    merge_json_keys(path, ours, &OWNED_KEYS)
}

/// Replaces `keys` in `path` with their values in `ours` (a key `ours` lacks is removed;
/// other keys are kept), creating the file if needed.
pub fn merge_json_keys(path: &Path, ours: &Value, keys: &[&str]) -> anyhow::Result<()> {
    let mut document = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str::<Value>(&text)
            .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(error) => return Err(error.into()),
    };
    let object = document
        .as_object_mut()
        .ok_or_else(|| anyhow::anyhow!("{} is not a JSON object", path.display()))?;
    for &key in keys {
        match ours.get(key) {
            Some(value) => object.insert(key.to_owned(), value.clone()),
            None => object.remove(key),
        };
    }
    std::fs::write(
        path,
        format!("{}\n", serde_json::to_string_pretty(&document)?),
    )?;
    Ok(())
}

/// Replaces the text between the markers of `path` with `section` (appending the markers
/// when absent, creating the file when missing).
pub fn merge_markdown(path: &Path, section: &str) -> anyhow::Result<()> {
    merge_markdown_between(path, BEGIN, END, section)
}

/// Replaces the text between `begin` and `end` in `path` with `section` (appending the
/// markers when absent, creating the file when missing).
pub fn merge_markdown_between(
    path: &Path,
    begin: &str,
    end: &str,
    section: &str,
) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            "# Benchmarks\n\nFigures measured by `make bench` (optimised build, one run). Each section \
             is written by its benchmark.\n"
                .to_owned()
        }
        Err(error) => return Err(error.into()),
    };
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    let updated = match (existing.find(begin), existing.find(end)) {
        (Some(start), Some(stop)) if start < stop => {
            format!(
                "{}{block}{}",
                &existing[..start],
                &existing[stop + end.len()..]
            )
        }
        _ => format!("{}\n{block}\n", existing.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}",
        header.iter().map(|_| "---|").collect::<String>()
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_sections_and_replaces_ours() {
        let dir = tempfile::tempdir().unwrap();
        let json_path = dir.path().join("benchmarks.json");
        std::fs::write(&json_path, r#"{"cold_start": {"x": 1}, "latency": "old"}"#).unwrap();
        merge_json(&json_path, &json!({"latency": {"local": {}}, "fanout": []})).unwrap();
        let merged: Value =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(merged["cold_start"]["x"], 1);
        assert_eq!(merged["latency"], json!({"local": {}}));
        assert_eq!(merged["fanout"], json!([]));

        let md_path = dir.path().join("benchmarks.md");
        std::fs::write(&md_path, "# B\n\n## Cold start\n\ntext\n").unwrap();
        merge_markdown(&md_path, "first").unwrap();
        merge_markdown(&md_path, "second").unwrap();
        let text = std::fs::read_to_string(&md_path).unwrap();
        assert!(text.starts_with("# B\n\n## Cold start\n\ntext\n"));
        assert!(text.contains(&format!("{BEGIN}\nsecond\n{END}")));
        assert!(!text.contains("first"));
        assert_eq!(text.matches(BEGIN).count(), 1);
    }
}
