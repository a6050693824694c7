//! A local AWS endpoint for SQS (and Secrets Manager): a `moto_server` child process that
//! never outlives the process that started it.
//!
//! # Process lifetime
//!
//! [`MotoServer::start`] runs `moto_server` on `127.0.0.1` and a free port and waits until it
//! answers HTTP. The server must never outlive the gateway, even when the gateway is killed
//! with `SIGKILL` (no destructor runs then). Rather than `prctl(PR_SET_PDEATHSIG)` — Linux-only,
//! needs `unsafe` and a `libc` dependency this crate does not have, and fires when the
//! *spawning thread* exits, which in a multi-threaded runtime is not the process exiting — the
//! server is started under a tiny POSIX `sh` watchdog that works wherever `sh` exists:
//!
//! - the gateway holds the write end of the watchdog's stdin (the *lifeline*) and never
//!   writes to it;
//! - the watchdog starts `moto_server` in the background and blocks reading the lifeline;
//! - the lifeline reaches end-of-file when the gateway closes it ([`MotoServer::shutdown`],
//!   `Drop`) **or when the gateway process dies for any reason** (the kernel closes its
//!   descriptors); the watchdog then sends `SIGTERM` to `moto_server`, reaps it and exits.
//!
//! The watchdog runs in its own process group, so a terminal Ctrl-C reaches only the gateway,
//! which then shuts moto down in order (rather than both racing). Shutdown and `Drop` close
//! the lifeline and wait (bounded) for the watchdog to exit, by which time `moto_server` has
//! been reaped: when they return, the server process is gone.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// How long `moto_server` may take to answer after being spawned (its Python imports are
/// slow on a cold cache).
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long shutdown waits for the watchdog (and so `moto_server`) to exit before it kills
/// the watchdog outright.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// How many fresh ports to try when the chosen port was taken between choosing and binding.
const PORT_ATTEMPTS: usize = 3;

/// How many of moto's last output lines to keep for start-up error messages.
const OUTPUT_TAIL_LINES: usize = 40;

/// The watchdog. Positional parameters: the `moto_server` command line.
///
/// Prints moto's pid on stdout (moto's own output goes to stderr), then exits when moto
/// exits; a background watcher stops moto when the lifeline (fd 3, a copy of stdin taken
/// before `&` redirects a background job's stdin to /dev/null) reaches end-of-file.
const WATCHDOG_SCRIPT: &str = r#"
exec 3<&0
"$@" </dev/null >&2 3<&- &
moto=$!
echo "$moto"
( while read -r _ <&3; do :; done; kill -TERM "$moto" 2>/dev/null ) &
watcher=$!
exec 3<&-
wait "$moto"
status=$?
kill "$watcher" 2>/dev/null
exit "$status"
"#;

/// A running `moto_server`; stopped (and reaped) on [`shutdown`](Self::shutdown) or drop.
pub struct MotoServer {
    endpoint: String,
    port: u16,
    moto_pid: u32,
    /// The watchdog shell (our direct child).
    watchdog: Option<Child>,
    /// The write end of the watchdog's stdin; closing it stops moto.
    lifeline: Option<ChildStdin>,
}

impl MotoServer {
    /// Starts `binary` (a `moto_server` executable, e.g. `.venv/bin/moto_server`) on
    /// `127.0.0.1` and a free port, and waits until it answers (at most
    /// [`DEFAULT_STARTUP_TIMEOUT`]).
    pub async fn start(binary: &Path) -> anyhow::Result<Self> {
        Self::start_with_timeout(binary, DEFAULT_STARTUP_TIMEOUT).await
    }

    /// [`start`](Self::start) with an explicit start-up timeout.
    pub async fn start_with_timeout(binary: &Path, timeout: Duration) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "moto_server not found at {}: run `make tools` to install the pinned SQS emulator",
                binary.display()
            );
        }
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            match Self::spawn_on(binary, port, deadline).await {
                Ok(server) => return Ok(server),
                // The process exited (typically: the port was taken meanwhile); try another.
                Err(StartError::Exited(error)) => last_error = Some(error),
                Err(StartError::Fatal(error)) => return Err(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("moto_server did not start")))
    }

    async fn spawn_on(binary: &Path, port: u16, deadline: Instant) -> Result<Self, StartError> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("ripple-moto-watchdog")
            .arg(binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Our own group: a terminal Ctrl-C goes to the gateway only, which stops moto.
            .process_group(0)
            .kill_on_drop(true);
        let mut watchdog = command
            .spawn()
            .with_context(|| format!("cannot spawn sh to run {}", binary.display()))
            .map_err(StartError::Fatal)?;
        let lifeline = watchdog.stdin.take();
        let output_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = watchdog.stderr.take() {
            tokio::spawn(drain_output(stderr, Arc::clone(&output_tail)));
        }
        // Constructed now so that every early return below stops the watchdog.
        let mut server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            moto_pid: 0,
            watchdog: Some(watchdog),
            lifeline,
        };
        let started = server.await_ready(deadline, &output_tail).await;
        match started {
            Ok(()) => Ok(server),
            Err(error) => {
                server.stop().await;
                Err(error)
            }
        }
    }

    async fn await_ready(
        &mut self,
        deadline: Instant,
        output_tail: &Arc<Mutex<VecDeque<String>>>,
    ) -> Result<(), StartError> {
        let tail = || {
            let lines = output_tail
                .lock()
                .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default();
            if lines.is_empty() {
                "(no output)".to_owned()
            } else {
                lines
            }
        };
        let watchdog = self
            .watchdog
            .as_mut()
            .ok_or_else(|| StartError::Fatal(anyhow!("moto watchdog already stopped")))?;
        let stdout = watchdog
            .stdout
            .take()
            .ok_or_else(|| StartError::Fatal(anyhow!("moto watchdog has no stdout")))?;
        let mut first_line = String::new();
        let remaining = deadline.saturating_duration_since(Instant::now());
        let read =
            tokio::time::timeout(remaining, BufReader::new(stdout).read_line(&mut first_line))
                .await;
        self.moto_pid = match read {
            Ok(Ok(_)) => first_line.trim().parse().map_err(|_| {
                StartError::Fatal(anyhow!(
                    "moto watchdog printed {first_line:?} instead of a pid; output:\n{}",
                    tail()
                ))
            })?,
            Ok(Err(error)) => {
                return Err(StartError::Fatal(
                    anyhow!(error).context("cannot read the moto watchdog's output"),
                ))
            }
            Err(_) => {
                return Err(StartError::Fatal(anyhow!(
                    "moto watchdog did not start in time"
                )))
            }
        };
        loop {
            if let Ok(Some(status)) = watchdog.try_wait() {
                return Err(StartError::Exited(anyhow!(
                    "moto_server exited during start-up ({status}); output:\n{}",
                    tail()
                )));
            }
            if answers_http(self.port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(anyhow!(
                    "moto_server did not answer on {} in time; output:\n{}",
                    self.endpoint,
                    tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The endpoint URL for the SDK, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The process id of `moto_server` itself (not of its watchdog).
    pub fn pid(&self) -> u32 {
        self.moto_pid
    }

    /// Stops `moto_server` and waits until it has exited and been reaped.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        // Closing the lifeline makes the watchdog stop moto, reap it and exit.
        drop(self.lifeline.take());
        if let Some(mut watchdog) = self.watchdog.take() {
            let exited = tokio::time::timeout(SHUTDOWN_TIMEOUT, watchdog.wait()).await;
            if !matches!(exited, Ok(Ok(_))) {
                tracing::warn!(
                    pid = self.moto_pid,
                    "moto watchdog did not exit; killing it"
                );
                // kill_on_drop reaps what is left; moto itself still sees the lifeline close.
                let _already_gone_is_fine = watchdog.start_kill();
            }
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.lifeline.take());
        if let Some(mut watchdog) = self.watchdog.take() {
            // No runtime is guaranteed here: poll the exit status (moto stops on SIGTERM in
            // well under a second), then fall back to kill_on_drop.
            let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
            while Instant::now() < deadline {
                match watchdog.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            tracing::warn!(
                pid = self.moto_pid,
                "moto watchdog did not exit; killing it"
            );
        }
    }
}

enum StartError {
    /// The server process exited during start-up: worth another port.
    Exited(anyhow::Error),
    /// Anything else: give up.
    Fatal(anyhow::Error),
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free local port for moto_server")?;
    Ok(listener.local_addr()?.port())
}

/// True when something on `port` answers an HTTP request with an HTTP status line.
async fn answers_http(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(
                b"GET /moto-api/data.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            )
            .await?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await?;
        Ok::<bool, std::io::Error>(&head == b"HTTP/")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

/// Forwards moto's output (one line per request) to `tracing` at debug level and keeps the
/// last lines for start-up error messages. Draining also keeps moto from blocking on a full
/// pipe.
async fn drain_output(output: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(output).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(target: "moto", "{line}");
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == OUTPUT_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}
