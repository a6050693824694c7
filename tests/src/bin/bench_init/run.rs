//! Running binaries: each a fresh process under the Runtime API emulator, timed and
//! sampled (RSS) from exec through its invocations.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ripple_tests::runtime_api::{ApiEvent, Invocation, RuntimeApi};
use serde_json::Value;

use crate::world::World;

/// Longest wait for anything from a runtime.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The invocation count whose RSS the growth is measured from.
const RSS_BASELINE_INVOCATIONS: usize = 100;

pub(crate) struct Plan {
    pub(crate) bin_dir: PathBuf,
    /// A command the binaries are started under (profiling), empty for none.
    pub(crate) wrap: Vec<String>,
    pub(crate) binaries: Vec<&'static str>,
    pub(crate) runs: usize,
    pub(crate) invocations: usize,
}

/// Everything measured for one binary.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) binary: &'static str,
    pub(crate) size_bytes: u64,
    pub(crate) init: Vec<Duration>,
    pub(crate) rss_init_kb: Vec<u64>,
    pub(crate) first_invoke: Vec<Duration>,
    pub(crate) rss_baseline_kb: u64,
    pub(crate) rss_after_kb: u64,
}

/// The long runs first (they also warm the page cache), then `runs` rounds of one fresh
/// process per binary, round-robin so a noisy moment on a shared machine hits every
/// binary alike.
pub(crate) fn measure(plan: &Plan, world: &World, home: &Path) -> Result<Vec<Measured>, String> {
    let mut measured = Vec::new();
    let mut counters = vec![0usize; plan.binaries.len()];
    for (i, binary) in plan.binaries.iter().enumerate() {
        eprintln!(
            "bench_init: {binary}: {} invocations in one process",
            plan.invocations
        );
        let path = plan.bin_dir.join(binary);
        let size_bytes = std::fs::metadata(&path)
            .map_err(|e| format!("{binary}: {e}"))?
            .len();
        let process = run_process(
            plan,
            &path,
            binary,
            world,
            home,
            plan.invocations,
            &mut counters[i],
        )?;
        measured.push(Measured {
            binary,
            size_bytes,
            init: Vec::new(),
            rss_init_kb: Vec::new(),
            first_invoke: Vec::new(),
            rss_baseline_kb: process
                .rss_kb
                .get(RSS_BASELINE_INVOCATIONS)
                .copied()
                .unwrap_or(0),
            rss_after_kb: process.rss_kb.last().copied().unwrap_or(0),
        });
    }
    for round in 0..plan.runs {
        eprintln!("bench_init: cold starts, round {}/{}", round + 1, plan.runs);
        for (i, binary) in plan.binaries.iter().enumerate() {
            let path = plan.bin_dir.join(binary);
            let process = run_process(plan, &path, binary, world, home, 1, &mut counters[i])?;
            let entry = &mut measured[i];
            entry.init.push(process.init);
            entry.rss_init_kb.push(process.rss_kb[0]);
            entry.first_invoke.push(process.invoke_times[0]);
        }
    }
    Ok(measured)
}

/// One process: init, then `invocations` events.
struct Process {
    init: Duration,
    /// `VmRSS` at each `/next`: index 0 at init, index n after n invocations.
    rss_kb: Vec<u64>,
    invoke_times: Vec<Duration>,
}

/// Kills the function when the run ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // Already exited is fine: nothing is left to stop.
        let _already_exited = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn run_process(
    plan: &Plan,
    path: &Path,
    binary: &str,
    world: &World,
    home: &Path,
    invocations: usize,
    counter: &mut usize,
) -> Result<Process, String> {
    let api = RuntimeApi::start().map_err(|e| format!("emulator: {e}"))?;
    let mut stderr_file = tempfile::tempfile().map_err(|e| format!("stderr file: {e}"))?;
    let stderr = stderr_file
        .try_clone()
        .map_err(|e| format!("stderr file: {e}"))?;
    let mut command = match plan.wrap.split_first() {
        Some((wrapper, wrapper_args)) => {
            let mut command = Command::new(wrapper);
            command.args(wrapper_args).arg(path);
            command
        }
        None => Command::new(path),
    };
    command
        .env_clear()
        .envs(world.environment(binary, &api, home))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let started = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("starting {binary}: {e}"))?;
    let mut running = Running(child);
    let outcome = drive(
        &api,
        &mut running,
        binary,
        world,
        started,
        invocations,
        counter,
    );
    if outcome.is_err() {
        let mut log = String::new();
        let _unreadable_is_empty = std::io::Seek::rewind(&mut stderr_file)
            .and_then(|()| stderr_file.read_to_string(&mut log));
        let tail: String = log
            .chars()
            .rev()
            .take(2000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return outcome.map_err(|e| format!("{binary}: {e}\n--- stderr ---\n{tail}"));
    }
    outcome
}

fn drive(
    api: &RuntimeApi,
    running: &mut Running,
    binary: &str,
    world: &World,
    started: Instant,
    invocations: usize,
    counter: &mut usize,
) -> Result<Process, String> {
    let pid = running.0.id();
    let init_at = wait_next(api, running)?;
    let mut process = Process {
        init: init_at - started,
        rss_kb: vec![rss_kb(pid)?],
        invoke_times: Vec::with_capacity(invocations),
    };
    for _ in 0..invocations {
        let request_id = uuid::Uuid::new_v4().to_string();
        let payload = world.event(binary, *counter)?;
        *counter += 1;
        api.invoke(Invocation {
            request_id: request_id.clone(),
            payload: serde_json::to_vec(&payload).map_err(|e| e.to_string())?,
        })?;
        let (elapsed, response, pushes) = wait_response(api, running, &request_id)?;
        world.check(binary, &response)?;
        if pushes < World::expected_pushes(binary) {
            return Err(format!(
                "{binary} made {pushes} pushes, expected at least one"
            ));
        }
        process.invoke_times.push(elapsed);
        wait_next(api, running)?;
        process.rss_kb.push(rss_kb(pid)?);
    }
    Ok(process)
}

/// Waits for the runtime's `/next`; an init error or an exit is an error.
fn wait_next(api: &RuntimeApi, running: &mut Running) -> Result<Instant, String> {
    loop {
        match next_event(api, running)? {
            ApiEvent::Next { at } => return Ok(at),
            ApiEvent::InitError { body, .. } => {
                return Err(format!("init error: {}", String::from_utf8_lossy(&body)))
            }
            ApiEvent::Push { .. } => {}
            other => return Err(format!("expected /next, got {other:?}")),
        }
    }
}

/// Waits for the response to `request_id`: (event written → response, body, pushes made).
fn wait_response(
    api: &RuntimeApi,
    running: &mut Running,
    request_id: &str,
) -> Result<(Duration, Value, usize), String> {
    let mut delivered = None;
    let mut pushes = 0;
    loop {
        match next_event(api, running)? {
            ApiEvent::Delivered { at, .. } => delivered = Some(at),
            ApiEvent::Push { .. } => pushes += 1,
            ApiEvent::Response {
                request_id: id,
                body,
                at,
            } if id == request_id => {
                let delivered = delivered.ok_or("a response before its event was delivered")?;
                let body =
                    serde_json::from_slice(&body).map_err(|e| format!("response body: {e}"))?;
                return Ok((at - delivered, body, pushes));
            }
            ApiEvent::Error { body, .. } => {
                return Err(format!(
                    "invocation error: {}",
                    String::from_utf8_lossy(&body)
                ))
            }
            other => return Err(format!("expected the response, got {other:?}")),
        }
    }
}

fn next_event(api: &RuntimeApi, running: &mut Running) -> Result<ApiEvent, String> {
    api.next_event(STEP_TIMEOUT)
        .map_err(|e| match running.0.try_wait() {
            Ok(Some(status)) => format!("the process exited ({status})"),
            _ => e,
        })
}

/// Resident set size of `pid`, in KiB (`VmRSS` of /proc/<pid>/status).
fn rss_kb(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("reading /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}
