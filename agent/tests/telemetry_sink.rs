//! The InfluxDB sink against a real time-series server (VictoriaMetrics, which speaks
//! InfluxDB's v2 write API): every field of every measurement read back with its tags,
//! and a 30-second outage under load: the producer never waits, the buffer stays within
//! its bound, drops are counted, and writing resumes when the server is back.
#![allow(clippy::unwrap_used)]

mod telemetry_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gru_agent::mape::{
    Action, AnalyticValue, BlockedBy, CandidateWeight, Decision, Millis, WindowSettings,
};
use gru_agent::runtime::usage::InstanceUsage;
use gru_agent::runtime::{InstanceInfo, Knowledge};
use gru_agent::telemetry::{
    FieldValue, InfluxWriter, NodeFacts, Origin, Point, PointBuffer, SinkSettings, Telemetry,
    WriterTiming, action_point, agent_point, decision_points, knowledge_points, shared_point,
    spawn_writer,
};
use telemetry_support::victoria::{self, Series, Victoria};
use testkit::{figure, wait_until};
use tokio_util::sync::CancellationToken;

fn origin(node: &str) -> Origin {
    Origin {
        cluster: "telemetry-test".into(),
        node: node.into(),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn settings(vm: &Victoria, timing: WriterTiming, buffer_points: usize) -> SinkSettings {
    let mut settings = SinkSettings::new(&vm.url(), "gru", "gru", "a-token").unwrap();
    settings.timing = timing;
    settings.buffer_points = buffer_points;
    settings
}

/// A knowledge with two instances of `web`, metrics (one a user metric) and analytics.
fn knowledge(now: Millis) -> Knowledge {
    let mut knowledge = Knowledge::new(WindowSettings {
        warmup: Duration::ZERO,
        warmup_samples: 1,
        ..WindowSettings::for_loop_interval(Duration::from_secs(60))
    });
    knowledge.active = true;
    for (id, instance, state) in [("c1", "i1", "running"), ("c2", "i2", "running")] {
        knowledge.instances.insert(
            id.into(),
            InstanceInfo {
                id: id.into(),
                service: "web".into(),
                instance: instance.into(),
                state: state.into(),
                address: Some("127.0.0.1:18080".into()),
                started_at: Millis(now.0 - 30_000),
                version: None,
                image: String::new(),
                ready: true,
                health: None,
                replaces: Vec::new(),
            },
        );
    }
    for (instance, cpu, time) in [("i1", 0.25, 40.0), ("i2", 0.75, 60.0)] {
        let at = Millis(now.0 - 1_000);
        knowledge
            .metrics
            .record("web", instance, "cpu_avg", at, cpu)
            .unwrap();
        knowledge
            .metrics
            .record("web", instance, "execution_time", at, time)
            .unwrap();
    }
    for (id, cores, bytes) in [("c1", 0.25, 1 << 20), ("c2", 0.5, 3 << 20)] {
        knowledge.usage.insert(
            id.into(),
            InstanceUsage {
                cpu_cores: Some(cores),
                memory_bytes: bytes,
            },
        );
    }
    knowledge.analytics.insert(
        "web".into(),
        BTreeMap::from([
            ("cpu_load".to_owned(), AnalyticValue::Available(0.5)),
            (
                "resp_time_ratio".to_owned(),
                AnalyticValue::unavailable("no execution_time"),
            ),
        ]),
    );
    knowledge
}

fn decision(at: Millis) -> Decision {
    let out = Action::ScaleOut {
        service: "web".into(),
        count: 1,
    };
    let candidate = |action: Action, weight: f64, blocked: bool| CandidateWeight {
        action,
        weight,
        explanation: Default::default(),
        blocked_by: if blocked {
            vec!["cooldown-in".to_owned()].into()
        } else {
            BlockedBy::default()
        },
        clamped: None,
    };
    Decision {
        action: out.clone(),
        weights: vec![
            candidate(Action::None, 0.375, false),
            candidate(out, 0.625, false),
            candidate(
                Action::ScaleIn {
                    service: "web".into(),
                    count: 1,
                },
                0.125,
                true,
            ),
        ],
        draw: Some(0.8125),
        reason: "scale-out web".into(),
        dry_run: false,
        at,
    }
}

/// The series a point's field becomes in VictoriaMetrics: `<measurement>_<field>`, the
/// point's tags as labels, and the bucket as a `db` label if the server adds one.
fn series_of<'a>(
    stored: &'a [Series],
    point: &Point,
    field: &str,
    bucket: &str,
) -> Option<&'a Series> {
    let name = format!("{}_{field}", point.measurement);
    let tags: BTreeMap<String, String> = point
        .tags
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    stored.iter().find(|s| {
        let mut expected = tags.clone();
        if s.labels.contains_key("db") {
            expected.insert("db".into(), bucket.into());
        }
        s.name == name && s.labels == expected
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measurement_reads_back_field_by_field() {
    let test = "every_measurement_reads_back_field_by_field";
    if !victoria::require(test) {
        return;
    }
    let vm = Victoria::start();
    let timing = WriterTiming {
        flush_interval: Duration::from_millis(200),
        ..WriterTiming::default()
    };
    let settings = settings(&vm, timing, 10_000);
    let buffer = Arc::new(PointBuffer::new(settings.buffer_points, 1_000));
    let cancel = CancellationToken::new();
    let writer = spawn_writer(
        buffer.clone(),
        InfluxWriter::new(&settings).unwrap(),
        settings.timing,
        cancel.clone(),
    );

    let now = Millis(now_ms());
    let origin = origin("node 1,a=b");
    let facts = NodeFacts {
        cpus: 2,
        memory_bytes: 8 << 30,
    };
    let mut points = knowledge_points(&origin, facts, &mut knowledge(now), now);
    points.extend(decision_points(&origin, &decision(Millis(now.0 + 1))));
    points.push(action_point(
        &origin,
        "scale-out",
        "web",
        "ok",
        Millis(now.0 + 2),
    ));
    points.push(action_point(
        &origin,
        "min-instances",
        "web",
        "failed: image gru-x:latest is missing",
        Millis(now.0 + 2),
    ));
    points.push(shared_point(
        &origin,
        "web",
        &BTreeMap::from([("instances".to_owned(), 3.0), ("cpu_avg".to_owned(), 0.5)]),
        Millis(now.0 + 3),
    ));
    points.push(agent_point(
        &origin,
        0.0125,
        Some(12 << 20),
        buffer.stats(),
        Millis(now.0 + 4),
    ));
    let measurements: std::collections::BTreeSet<&str> =
        points.iter().map(|p| p.measurement).collect();
    assert_eq!(
        measurements.len(),
        gru_agent::telemetry::MEASUREMENTS.len(),
        "every measurement is exercised: {measurements:?}"
    );
    let n = points.len();
    buffer.extend(points.clone());
    let written = wait_until(Duration::from_secs(10), || {
        buffer.stats().written == n as u64
    });
    assert!(written.is_some(), "not written: {:?}", buffer.stats());

    let fields: usize = points.iter().map(|p| p.fields.len()).sum();
    let stored = vm.export_until(r#"{__name__=~"gru_.*",cluster="telemetry-test"}"#, |s| {
        s.iter().map(|s| s.values.len()).sum::<usize>() >= fields
    });
    let mut checked = 0;
    for point in &points {
        for (field, value) in &point.fields {
            let series = series_of(&stored, point, field, "gru").unwrap_or_else(|| {
                panic!(
                    "{}_{field} with tags {:?} not stored; stored:\n{stored:#?}",
                    point.measurement, point.tags
                )
            });
            let expected = match value {
                FieldValue::Float(v) => *v,
                FieldValue::Integer(v) => *v as f64,
            };
            let at = point.timestamp_ns / 1_000_000;
            let found = series
                .timestamps
                .iter()
                .zip(&series.values)
                .any(|(t, v)| (*t - at).abs() <= 1 && *v == expected);
            assert!(
                found,
                "{}_{field} {:?}: expected {expected} at {at}, stored {series:?}",
                point.measurement, point.tags
            );
            checked += 1;
        }
    }
    // Spot checks that the builders wrote what the schema says, with the values given.
    let by = |name: &str, tags: &[(&str, &str)]| -> f64 {
        let s = stored
            .iter()
            .find(|s| {
                s.name == name
                    && tags
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .unwrap_or_else(|| panic!("{name} {tags:?}"));
        s.values[0]
    };
    assert_eq!(by("gru_node_cpus", &[("node", "node 1,a=b")]), 2.0);
    assert_eq!(by("gru_node_instances", &[]), 2.0);
    // Per-node usage: the containers' readings summed, and the cores no pin holds.
    assert_eq!(by("gru_node_cpu_used_cores", &[]), 0.75);
    assert_eq!(by("gru_node_cpu_used_fraction", &[]), 0.375);
    assert_eq!(by("gru_node_memory_used_bytes", &[]), f64::from(4u32 << 20));
    assert_eq!(by("gru_node_free_cores", &[]), 2.0);
    assert_eq!(by("gru_metric_cpu_avg", &[("service", "web")]), 0.5);
    assert_eq!(by("gru_metric_execution_time", &[("service", "web")]), 50.0);
    assert_eq!(
        by("gru_instance_uptime_seconds", &[("instance", "i1")]),
        30.0
    );
    assert_eq!(by("gru_analytic_value", &[("analytic", "cpu_load")]), 0.5);
    assert_eq!(
        by("gru_analytic_available", &[("analytic", "resp_time_ratio")]),
        0.0
    );
    assert_eq!(by("gru_decision_weight", &[("action", "scale-out")]), 0.625);
    assert_eq!(by("gru_decision_draw", &[("action", "scale-out")]), 0.8125);
    assert_eq!(by("gru_policy_chosen", &[("action", "scale-out")]), 1.0);
    assert_eq!(by("gru_policy_eligible", &[("action", "scale-in")]), 0.0);
    assert_eq!(
        by(
            "gru_action_count",
            &[("action", "min-instances"), ("result", "failed")]
        ),
        1.0
    );
    assert_eq!(by("gru_shared_instances", &[("service", "web")]), 3.0);
    assert_eq!(by("gru_agent_rss_bytes", &[]), (12 << 20) as f64);
    figure(
        test,
        "read back from VictoriaMetrics, field by field",
        format!("{n} points, {checked} fields"),
    );
    cancel.cancel();
    writer.await.unwrap();
}

/// One simulated tick of an agent: what the loop hands the telemetry.
fn tick(telemetry: &Telemetry, knowledge: &mut Knowledge, at: Millis) {
    telemetry.observe(knowledge, at);
    telemetry.decided(&decision(at));
    telemetry.acted("scale-out", "web", "ok", at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_s_outage_under_load_keeps_the_bound_counts_drops_and_recovers() {
    let test = "a_30_s_outage_under_load_keeps_the_bound_counts_drops_and_recovers";
    if !victoria::require(test) {
        return;
    }
    let mut vm = Victoria::start();
    const CAPACITY: usize = 2_000;
    const BATCH: usize = 500;
    let timing = WriterTiming {
        flush_interval: Duration::from_millis(500),
        batch_points: BATCH,
        ..WriterTiming::default()
    };
    let settings = settings(&vm, timing, CAPACITY);
    let buffer = Arc::new(PointBuffer::new(CAPACITY, BATCH));
    let telemetry = Arc::new(Telemetry::new());
    let node = format!("outage-{}", std::process::id());
    assert!(telemetry.attach_sink(origin(&node), NodeFacts::default(), buffer.clone()));
    let cancel = CancellationToken::new();
    let writer = spawn_writer(
        buffer.clone(),
        InfluxWriter::new(&settings).unwrap(),
        settings.timing,
        cancel.clone(),
    );

    // The "agent": a tick every 20 ms (about 16 points each, 800 points/s), on its own
    // thread, measuring how long handing the points over takes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticks = Arc::new(std::sync::Mutex::new(Vec::<(Instant, Millis)>::new()));
    let producer = {
        let (telemetry, stop, ticks) = (telemetry.clone(), stop.clone(), ticks.clone());
        std::thread::spawn(move || {
            let mut slowest = Duration::ZERO;
            let mut last = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut at = Millis(now_ms());
                if at.0 <= last {
                    at = Millis(last + 1);
                }
                last = at.0;
                let mut knowledge = knowledge(at);
                let started = Instant::now();
                tick(&telemetry, &mut knowledge, at);
                slowest = slowest.max(started.elapsed());
                ticks.lock().unwrap().push((Instant::now(), at));
                std::thread::sleep(Duration::from_millis(20));
            }
            slowest
        })
    };
    // The bound is watched all along.
    let watcher = {
        let (buffer, stop) = (buffer.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(buffer.stats().buffered);
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        })
    };

    std::thread::sleep(Duration::from_secs(3));
    let before = buffer.stats();
    assert!(
        before.written > 0,
        "nothing written before the outage: {before:?}"
    );
    assert_eq!(before.dropped(), 0);

    vm.stop();
    let outage = Instant::now();
    let at_stop = buffer.stats();
    std::thread::sleep(Duration::from_secs(30));
    let during = buffer.stats();
    assert!(
        during.dropped_overflow > 0,
        "a 30 s outage at 800 points/s must overflow {CAPACITY} points: {during:?}"
    );
    assert!(during.write_errors > 0, "{during:?}");
    assert!(
        during.written <= at_stop.written + BATCH as u64,
        "nothing can be written while the server is down: {at_stop:?} -> {during:?}"
    );

    vm.resume();
    let back = Instant::now();
    // Writing resumes at the writer's next retry (the backoff is capped) ...
    let resumed = wait_until(Duration::from_secs(30), || {
        buffer.stats().written > during.written + BATCH as u64
    });
    assert!(
        resumed.is_some(),
        "writing did not resume: {:?}",
        buffer.stats()
    );
    let resumed_at = Millis(now_ms());
    figure(
        test,
        "outage",
        format!("{:.1} s", (back - outage).as_secs_f64()),
    );
    figure(
        test,
        "writing resumed after the server came back",
        format!("{:.1} s", back.elapsed().as_secs_f64()),
    );
    // ... and catches up with the producer.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let slowest = producer.join().unwrap();
    let peak = watcher.join().unwrap();
    let drained = wait_until(Duration::from_secs(20), || buffer.stats().buffered == 0);
    assert!(drained.is_some(), "not drained: {:?}", buffer.stats());
    let after = buffer.stats();
    cancel.cancel();
    writer.await.unwrap();

    assert!(
        peak <= CAPACITY + BATCH,
        "buffer peaked at {peak} points, bound {CAPACITY} + one batch of {BATCH}"
    );
    assert!(
        slowest < Duration::from_millis(250),
        "a tick's hand-over took {slowest:?}: the producer must never wait for the server"
    );
    let produced: Vec<Millis> = ticks.lock().unwrap().iter().map(|(_, at)| *at).collect();
    assert!(produced.len() > 1_000, "{} ticks", produced.len());

    // Every tick produced once writing resumed is stored (one gru_decision point each).
    let after_recovery: Vec<Millis> = produced
        .iter()
        .copied()
        .filter(|at| *at > resumed_at)
        .collect();
    assert!(!after_recovery.is_empty());
    let missing_from = |stored: &[Series]| -> Vec<Millis> {
        let stored_at: std::collections::BTreeSet<i64> = stored
            .iter()
            .flat_map(|s| s.timestamps.iter().copied())
            .collect();
        after_recovery
            .iter()
            .copied()
            .filter(|at| !stored_at.contains(&(at.0 as i64)))
            .collect()
    };
    let stored = vm.export_until(
        &format!(r#"{{__name__="gru_decision_candidates",node="{node}"}}"#),
        |stored| missing_from(stored).is_empty(),
    );
    let missing = missing_from(&stored);
    assert!(
        missing.is_empty(),
        "{} of {} ticks after recovery are missing, e.g. {:?}",
        missing.len(),
        after_recovery.len(),
        &missing[..missing.len().min(5)]
    );
    figure(
        test,
        "sink",
        format!(
            "ticks {}, written {}, dropped {} (overflow), write errors {}, peak buffer {peak}/{CAPACITY}, slowest hand-over {slowest:?}",
            produced.len(),
            after.written,
            after.dropped_overflow,
            after.write_errors,
        ),
    );
    figure(
        test,
        "ticks after writing resumed, all read back",
        after_recovery.len(),
    );
}
