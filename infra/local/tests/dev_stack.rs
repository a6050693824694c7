//! `make dev`, end to end: the built `ripple-local` binary over the repository's
//! `template.yaml` with the real functions and the real moto_server from `.venv`
//! (`make tools`), serving `GET /health`, the web app at `/app/` and an authenticated
//! WebSocket connection, and leaving no process behind after Ctrl-C.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MOTO_SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/moto_server");

/// Kills the gateway if the test fails half-way, so no process outlives it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _already_exited_is_fine = self.0.kill();
        let _reaped_or_gone = self.0.wait();
    }
}

/// The banner value after `label`, e.g. `HTTP API:`.
fn banner_value<'a>(banner: &'a [String], label: &str) -> &'a str {
    banner
        .iter()
        .find_map(|line| line.trim().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("banner has no `{label}` line: {banner:#?}"))
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn dev_stack_serves_health_and_websockets_and_ctrl_c_leaves_nothing_running() {
    assert!(
        Path::new(MOTO_SERVER).is_file(),
        "{MOTO_SERVER} is missing: run `make tools`"
    );
    let template = format!("{}/../../template.yaml", env!("CARGO_MANIFEST_DIR"));
    let web_root = format!("{}/../../clients/web", env!("CARGO_MANIFEST_DIR"));
    let web_lib = format!("{}/../../clients/js", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ripple-local"))
        .args([
            "--template",
            &template,
            "--in-memory",
            "--http-port",
            "0",
            "--ws-port",
            "0",
            "--moto-server",
            MOTO_SERVER,
            "--web-root",
            &web_root,
            "--web-lib",
            &web_lib,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ripple-local starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let gateway = Running(child);

    // Read the banner (on a thread: the pipe read blocks) until the ready line.
    let banner = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("stdout is UTF-8");
            let done = line.contains("Press Ctrl-C");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let banner = tokio::time::timeout(Duration::from_secs(120), banner)
        .await
        .expect("ripple-local printed its URLs within 2 minutes")
        .unwrap();
    let http_url = banner_value(&banner, "HTTP API:").to_owned();
    let websocket_url = banner_value(&banner, "WebSocket API:").to_owned();
    let management = banner_value(&banner, "Management API:");
    assert!(websocket_url.ends_with(management.rsplit('/').next().unwrap()));
    let sqs = banner_value(&banner, "SQS:");
    let moto_pid: u32 = sqs
        .rsplit_once("moto_server pid ")
        .and_then(|(_, pid)| pid.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no moto pid in `{sqs}`"));
    assert!(process_exists(moto_pid), "moto_server {moto_pid} runs");

    let health = http_request("GET", &format!("{http_url}/health"), &[], b"").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");

    // The web app beside the API, pointed at this stack's own ports.
    let web_app = banner_value(&banner, "Web app:").to_owned();
    assert_eq!(web_app, format!("{http_url}/app/"));
    let page = http_request("GET", &web_app, &[], b"").await;
    assert_eq!(page.status, 200);
    let config = http_request("GET", &format!("{web_app}config.js"), &[], b"").await;
    assert!(String::from_utf8_lossy(&config.body).contains(&websocket_url));

    // ws-connect checks the access token: register through the HTTP API to get one.
    let session = http_request(
        "POST",
        &format!("{http_url}/auth/register"),
        &[("content-type", "application/json")],
        br#"{"username":"dev_smoke","password":"a long enough password"}"#,
    )
    .await;
    assert_eq!(session.status, 201);
    let token = session.json()["access_token"].as_str().unwrap().to_owned();
    let rejected = connect(&websocket_url, None).await.unwrap_err();
    assert!(
        matches!(&rejected, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401),
        "{rejected:?}"
    );
    let (mut socket, response) = connect(&format!("{websocket_url}?token={token}"), None)
        .await
        .expect("WebSocket accepted");
    assert_eq!(response.status(), 101);

    // Ctrl-C.
    let pid = gateway.0.id().to_string();
    let signalled = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(signalled.success());
    // The socket is closed by the gateway on its way out.
    let (code, _) = next_close(&mut socket).await;
    assert_eq!(code, 1001);

    let mut gateway = gateway;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "ripple-local did not exit after SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "ripple-local exited with {status}");
    assert!(
        !process_exists(moto_pid),
        "moto_server {moto_pid} outlived ripple-local"
    );
}
