//! The moto child process: starts, answers, and never outlives its owner — not after drop,
//! not after `shutdown`, not when the owning process is killed outright.

mod event_sources_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use event_sources_support::{moto_binary, sqs_client, start_moto, WAIT};
use ripple_local::moto::{ensure_queues, MotoServer, QueueSettings};

/// Set in the child process of [`moto_dies_when_its_owning_process_is_killed`].
const ORPHAN_CHILD_VAR: &str = "RIPPLE_MOTO_ORPHAN_CHILD";
const PID_LINE_PREFIX: &str = "moto-pid=";

fn process_exists(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or_else(|error| panic!("cannot run kill -0: {error}"))
}

/// Waits (bounded) until the process is gone.
async fn assert_process_exits(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while process_exists(pid) {
        assert!(
            Instant::now() < deadline,
            "moto_server (pid {pid}) is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_answers(moto: &MotoServer) {
    let sqs = sqs_client(moto.endpoint());
    let queues = ensure_queues(&sqs, &QueueSettings::default())
        .await
        .unwrap_or_else(|error| panic!("moto does not answer SQS calls: {error:#}"));
    let listed = sqs
        .list_queues()
        .send()
        .await
        .unwrap_or_else(|error| panic!("ListQueues failed: {error:?}"));
    let urls = listed.queue_urls();
    for queue in [&queues.fanout, &queues.fanout_dlq, &queues.stream_failures] {
        assert!(
            urls.contains(&queue.url),
            "{} missing from {urls:?}",
            queue.url
        );
    }
}

#[tokio::test]
async fn moto_answers_and_is_gone_after_drop() {
    let moto = start_moto().await;
    let pid = moto.pid();
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));
    assert!(process_exists(pid));
    assert_answers(&moto).await;

    drop(moto);
    // Drop waits for the watchdog, which reaps moto: the pid is gone at once.
    assert!(
        !process_exists(pid),
        "moto_server (pid {pid}) survived drop"
    );
}

#[tokio::test]
async fn shutdown_stops_moto() {
    let moto = start_moto().await;
    let pid = moto.pid();
    assert!(process_exists(pid));

    moto.shutdown().await;
    assert!(
        !process_exists(pid),
        "moto_server (pid {pid}) survived shutdown"
    );
}

#[tokio::test]
async fn ensure_queues_is_idempotent_and_wires_the_redrive_policy() {
    use aws_sdk_sqs::types::QueueAttributeName;

    let moto = start_moto().await;
    let sqs = sqs_client(moto.endpoint());
    let settings = QueueSettings {
        max_receive_count: 4,
        visibility_timeout: Duration::from_secs(90),
        ..QueueSettings::default()
    };
    let created = ensure_queues(&sqs, &settings)
        .await
        .unwrap_or_else(|error| panic!("first ensure_queues failed: {error:#}"));
    // Existing queues with other settings are updated, not duplicated.
    let updated_settings = QueueSettings {
        max_receive_count: 7,
        ..settings
    };
    let again = ensure_queues(&sqs, &updated_settings)
        .await
        .unwrap_or_else(|error| panic!("second ensure_queues failed: {error:#}"));
    assert_eq!(created, again);

    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&again.fanout.url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap_or_else(|error| panic!("GetQueueAttributes failed: {error:?}"))
        .attributes
        .unwrap_or_default();
    assert_eq!(
        attributes
            .get(&QueueAttributeName::VisibilityTimeout)
            .map(String::as_str),
        Some("90")
    );
    let redrive: serde_json::Value = serde_json::from_str(
        attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .unwrap_or_else(|error| panic!("RedrivePolicy is not JSON: {error}"));
    assert_eq!(redrive["deadLetterTargetArn"], again.fanout_dlq.arn);
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "7"
    );
    moto.shutdown().await;
}

#[tokio::test]
async fn a_missing_binary_fails_with_a_hint_to_run_make_tools() {
    let missing = std::env::temp_dir().join("ripple-no-such-dir/moto_server");
    let error = match MotoServer::start(&missing).await {
        Ok(_) => panic!("a missing binary must not start"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("make tools"), "{error}");
}

/// Runs in two roles. In the test run it re-runs itself as a child process (this test
/// binary, this test only), reads the pid of the moto the child started, kills the child
/// with SIGKILL (no destructor runs) and checks moto goes away. In the child
/// (`RIPPLE_MOTO_ORPHAN_CHILD` set) it starts moto, prints its pid and waits to be killed.
#[tokio::test]
async fn moto_dies_when_its_owning_process_is_killed() {
    if std::env::var_os(ORPHAN_CHILD_VAR).is_some() {
        let moto = start_moto().await;
        println!("{PID_LINE_PREFIX}{}", moto.pid());
        tokio::time::sleep(WAIT * 4).await;
        panic!("the orphan-check child was not killed");
    }
    // Fail here, not in the child, if the binary is missing.
    moto_binary();
    let mut child = Command::new(
        std::env::current_exe().unwrap_or_else(|error| panic!("no current exe: {error}")),
    )
    .args([
        "--exact",
        "moto_dies_when_its_owning_process_is_killed",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ORPHAN_CHILD_VAR, "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap_or_else(|error| panic!("cannot start the child test process: {error}"));
    let stdout = child.stdout.take().expect("piped stdout");
    // Read the pid on a thread, so that the wait stays bounded.
    let (pid_tx, pid_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // libtest's "test … ..." may precede it on the same line.
            if let Some((_, pid)) = line.split_once(PID_LINE_PREFIX) {
                let _test_may_have_given_up = pid_tx.send(pid.trim().parse::<u32>().ok());
                return;
            }
        }
    });
    let pid = pid_rx.recv_timeout(WAIT * 2);
    child
        .kill()
        .unwrap_or_else(|error| panic!("cannot kill the child: {error}"));
    let _exit_status = child.wait();
    let pid = match pid {
        Ok(Some(pid)) => pid,
        other => panic!("the child did not report a moto pid: {other:?}"),
    };
    assert_process_exits(pid).await;
}
