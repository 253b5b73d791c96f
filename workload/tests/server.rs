//! The server in-process (port 0): admission, the health route and the readiness switch.

mod support;

use std::time::{Duration, Instant};

use gru_workload::server::{self, ServerSettings};
use support::{http_get, http_post, wait_healthy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_while_healthz_still_answers() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let settings = ServerSettings {
        service: "admit".into(),
        service_time: Duration::from_millis(600),
        concurrency: 1,
        queue: 0,
        ..ServerSettings::with_defaults(addr)
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::run(
        listener,
        settings,
        std::io::sink(),
        stop.clone().cancelled_owned(),
    ));
    let up = tokio::task::spawn_blocking(move || wait_healthy(addr, Duration::from_secs(10)));
    assert!(up.await.expect("probe"), "server not up");

    let busy = tokio::task::spawn_blocking(move || http_get(addr, "/"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (turned_away, health) = tokio::task::spawn_blocking(move || {
        let turned_away = http_get(addr, "/");
        let asked = Instant::now();
        let health = http_get(addr, "/healthz").map(|(status, _)| (status, asked.elapsed()));
        (turned_away, health)
    })
    .await
    .expect("probes");

    assert!(matches!(turned_away, Ok((503, _))), "{turned_away:?}");
    assert!(
        matches!(health, Ok((200, took)) if took < Duration::from_millis(300)),
        "healthz must not wait for the work: {health:?}"
    );
    let (status, body) = busy.await.expect("client").expect("answer");
    assert_eq!(status, 200);
    let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(reply["service"], "admit");
    assert!(
        reply["instance"].as_str().is_some_and(|i| !i.is_empty()),
        "{reply}"
    );
    assert!(
        reply["ms"].as_f64().is_some_and(|ms| ms >= 150.0),
        "{reply}"
    );

    stop.cancel();
    server
        .await
        .expect("server task")
        .expect("server ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wait_holds_the_worker_without_burning_cpu() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let wait = Duration::from_millis(300);
    let settings = ServerSettings {
        service: "waits".into(),
        service_time: Duration::from_millis(1),
        wait,
        concurrency: 1,
        ..ServerSettings::with_defaults(addr)
    };
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::run(
        listener,
        settings,
        std::io::sink(),
        stop.clone().cancelled_owned(),
    ));
    let up = tokio::task::spawn_blocking(move || wait_healthy(addr, Duration::from_secs(10)));
    assert!(up.await.expect("probe"), "server not up");

    // Two requests at once on one worker: the second waits for the first's wait.
    let asks: Vec<_> = (0..2)
        .map(|_| tokio::task::spawn_blocking(move || http_get(addr, "/")))
        .collect();
    let mut served_ms = Vec::new();
    for ask in asks {
        let (status, body) = ask.await.expect("client").expect("answer");
        assert_eq!(status, 200, "{body}");
        let reply: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        served_ms.push(reply["ms"].as_f64().expect("ms"));
    }
    served_ms.sort_by(f64::total_cmp);
    assert!(served_ms[0] >= 300.0, "each request waits: {served_ms:?}");
    assert!(
        served_ms[1] >= 600.0,
        "the worker is held while waiting, so the second request queues: {served_ms:?}"
    );

    stop.cancel();
    server
        .await
        .expect("server task")
        .expect("server ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_the_delay_and_follows_its_switch_while_healthz_stays_up() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let delay = Duration::from_millis(1_500);
    let settings = ServerSettings {
        service: "ready".into(),
        ready_delay: delay,
        ..ServerSettings::with_defaults(addr)
    };
    let started = Instant::now();
    let stop = CancellationToken::new();
    let server = tokio::spawn(server::run(
        listener,
        settings,
        std::io::sink(),
        stop.clone().cancelled_owned(),
    ));
    let checks = tokio::task::spawn_blocking(move || {
        assert!(wait_healthy(addr, Duration::from_secs(10)), "server not up");
        let mut answers = Vec::new();
        // During the delay: alive, not ready.
        answers.push(("during the delay", http_get(addr, "/ready")));
        assert!(
            started.elapsed() < delay,
            "the first probe came too late to see the delay"
        );
        while started.elapsed() < delay + Duration::from_millis(100) {
            std::thread::sleep(Duration::from_millis(50));
        }
        answers.push(("after the delay", http_get(addr, "/ready")));
        answers.push(("switched off", http_post(addr, "/ready?value=false")));
        answers.push(("while off", http_get(addr, "/ready")));
        answers.push(("healthz while off", http_get(addr, "/healthz")));
        answers.push(("switched on", http_post(addr, "/ready?value=true")));
        answers.push(("while on", http_get(addr, "/ready")));
        answers.push(("a bad value", http_post(addr, "/ready?value=maybe")));
        answers.push(("still on", http_get(addr, "/ready")));
        answers
    })
    .await
    .expect("client");
    let statuses: Vec<(&str, u16)> = checks
        .into_iter()
        .map(|(what, answer)| (what, answer.expect(what).0))
        .collect();
    assert_eq!(
        statuses,
        [
            ("during the delay", 503),
            ("after the delay", 200),
            ("switched off", 503),
            ("while off", 503),
            ("healthz while off", 200),
            ("switched on", 200),
            ("while on", 200),
            ("a bad value", 400),
            ("still on", 200),
        ]
    );
    stop.cancel();
    server
        .await
        .expect("server task")
        .expect("server ends cleanly");
}
