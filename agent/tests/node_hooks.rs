//! Node hooks against real processes and a real HTTP server: the environment a command
//! gets, the signed webhook body, retries after a failure, a hanging command killed at its
//! timeout, and every run recorded as an action.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::config::hooks::HookConfig;
use gru_agent::mape::WindowSettings;
use gru_agent::runtime::Shared;
use gru_agent::runtime::hooks::{self, HookCall, HookKind, signature};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "hook-test-secret";

fn call(kind: HookKind, node: Option<&str>) -> HookCall {
    HookCall {
        cluster: "demo".to_owned(),
        hook: kind,
        reason: "web: a scale-out of 1 no node can hold".to_owned(),
        wanted: 1,
        node: node.map(str::to_owned),
    }
}

fn exec_hook(script: &Path, timeout_secs: u64, retries: u32) -> HookConfig {
    HookConfig {
        command: vec!["/bin/sh".to_owned(), script.display().to_string()],
        url: None,
        timeout_secs,
        retries,
    }
}

fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    path
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test]
async fn an_exec_hook_gets_the_cluster_reason_and_wanted_count() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let script = script(
        dir.path(),
        "add.sh",
        &format!(
            "echo \"$GRU_CLUSTER|$GRU_HOOK|$GRU_REASON|$GRU_WANTED|${{GRU_NODE-none}}\" > {}\necho started node-3\n",
            out.display()
        ),
    );
    let run = hooks::run(
        &exec_hook(&script, 5, 0),
        &call(HookKind::AddNode, None),
        SECRET,
    )
    .await;
    assert_eq!(run.attempts, 1, "{run:?}");
    assert_eq!(run.result(), "ok: exit 0: started node-3 (attempt 1 of 1)");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().trim(),
        "demo|add-node|web: a scale-out of 1 no node can hold|1|none"
    );

    let run = hooks::run(
        &exec_hook(&script, 5, 0),
        &call(HookKind::RemoveNode, Some("node-2")),
        SECRET,
    )
    .await;
    assert!(run.succeeded.is_some(), "{run:?}");
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .trim()
            .ends_with("|remove-node|web: a scale-out of 1 no node can hold|1|node-2")
    );
}

#[tokio::test]
async fn a_failing_exec_hook_is_retried_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    // Fails on its first call, succeeds on the second.
    let flaky = script(
        dir.path(),
        "flaky.sh",
        &format!(
            "if [ -e {c} ]; then echo second; exit 0; fi\ntouch {c}\necho 'no capacity left' >&2\nexit 3\n",
            c = count.display()
        ),
    );
    let run = hooks::run(
        &exec_hook(&flaky, 5, 2),
        &call(HookKind::AddNode, None),
        SECRET,
    )
    .await;
    assert_eq!(run.attempts, 2, "{run:?}");
    assert_eq!(run.failures.len(), 1);
    assert!(
        run.failures[0].contains("exit status: 3: no capacity left"),
        "{run:?}"
    );
    assert_eq!(run.succeeded.as_deref(), Some("exit 0: second"));

    let broken = script(dir.path(), "broken.sh", "exit 1\n");
    let run = hooks::run(
        &exec_hook(&broken, 5, 1),
        &call(HookKind::AddNode, None),
        SECRET,
    )
    .await;
    assert_eq!(run.attempts, 2);
    assert!(run.succeeded.is_none());
    assert!(
        run.result().starts_with("failed: 2 attempt(s): "),
        "{}",
        run.result()
    );
}

#[tokio::test]
async fn a_hanging_exec_hook_is_killed_at_its_timeout_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // Records its pid, then hangs far longer than the test.
    let hang = script(
        dir.path(),
        "hang.sh",
        &format!("echo $$ >> {}\nexec sleep 600\n", pids.display()),
    );
    let run = hooks::run(
        &exec_hook(&hang, 1, 1),
        &call(HookKind::AddNode, None),
        SECRET,
    )
    .await;
    assert_eq!(run.attempts, 2, "{run:?}");
    assert!(run.succeeded.is_none());
    assert_eq!(
        run.failures,
        [
            "timed out after 1 s (killed)",
            "timed out after 1 s (killed)"
        ]
    );
    let started: Vec<i32> = std::fs::read_to_string(&pids)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(started.len(), 2, "one process per attempt: {started:?}");
    // kill_on_drop: the killed children are reaped by tokio shortly after.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while started.iter().any(|pid| pid_alive(*pid)) {
        assert!(
            std::time::Instant::now() < deadline,
            "a timed-out hook still runs: {started:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook receiver: answers the first `failures` requests with 500, then 200; keeps
/// each body and its signature header.
async fn receiver(failures: u32) -> (String, Arc<std::sync::Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = Arc::new(AtomicU32::new(0));
    let kept = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as many body bytes as content-length says.
            let (head, body) = loop {
                let n = socket.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).to_string();
                if let Some(at) = text.find("\r\n\r\n") {
                    let head = text[..at].to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if raw.len() >= at + 4 + length {
                        break (head, text[at + 4..at + 4 + length].to_owned());
                    }
                }
            };
            let signature = head
                .lines()
                .find_map(|l| l.strip_prefix("x-gru-signature: "))
                .unwrap_or_default()
                .to_owned();
            kept.lock().unwrap().push((body, signature));
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let answer = if n < failures {
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy"
            } else {
                "HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\naccepted"
            };
            socket.write_all(answer.as_bytes()).await.unwrap();
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

#[tokio::test]
async fn a_webhook_gets_a_signed_json_body_and_is_retried_after_a_500() {
    let (url, seen) = receiver(1).await;
    let hook = HookConfig {
        command: Vec::new(),
        url: Some(url),
        timeout_secs: 5,
        retries: 2,
    };
    let run = hooks::run(&hook, &call(HookKind::RemoveNode, Some("node-2")), SECRET).await;
    assert_eq!(run.attempts, 2, "{run:?}");
    assert!(
        run.failures[0].contains("HTTP 500 Internal Server Error: busy"),
        "{run:?}"
    );
    assert_eq!(run.succeeded.as_deref(), Some("HTTP 200 OK: accepted"));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (body, header) in &seen {
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "cluster": "demo",
                "hook": "remove-node",
                "reason": "web: a scale-out of 1 no node can hold",
                "wanted": 1,
                "node": "node-2",
            })
        );
        assert_eq!(
            *header,
            format!("sha256={}", signature(SECRET, body.as_bytes()))
        );
        assert_ne!(
            *header,
            format!("sha256={}", signature("another secret", body.as_bytes()))
        );
    }
}

#[tokio::test]
async fn a_webhook_that_never_answers_times_out() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            open.push(socket);
        }
    });
    let hook = HookConfig {
        command: Vec::new(),
        url: Some(url),
        timeout_secs: 1,
        retries: 1,
    };
    let run = hooks::run(&hook, &call(HookKind::AddNode, None), SECRET).await;
    assert_eq!(run.failures, ["timed out after 1 s", "timed out after 1 s"]);
    held.abort();
}

#[tokio::test]
async fn a_spawned_hook_leaves_the_runtime_free_and_its_result_in_the_actions() {
    let dir = tempfile::tempdir().unwrap();
    let hang = script(dir.path(), "hang.sh", "exec sleep 600\n");
    let shared = Arc::new(Shared::new(
        "demo",
        "node-1",
        "127.0.0.1",
        SECRET,
        WindowSettings::for_loop_interval(Duration::from_secs(1)),
    ));
    let task = hooks::spawn(
        Arc::clone(&shared),
        exec_hook(&hang, 1, 1),
        call(HookKind::AddNode, None),
    );
    // The caller goes on at once: ticks of a loop run while the hook hangs.
    let mut ticks = 0;
    while !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ticks += 1;
    }
    assert!(ticks >= 10, "only {ticks} ticks ran while the hook hung");
    let run = task.await.unwrap();
    assert_eq!(run.attempts, 2);
    let knowledge = shared.knowledge();
    let record = knowledge.actions.back().expect("the run recorded");
    assert_eq!(record.action, "add-node");
    assert_eq!(
        record.result,
        "failed: 2 attempt(s): timed out after 1 s (killed); timed out after 1 s (killed)"
    );
}
