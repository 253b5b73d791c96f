//! Benchmark of the InfluxDB sink's memory: one hour of an agent's uptime in fast time.
//!
//! An agent with `--services` services of `--instances` instances each ticks every second
//! of simulated time (3600 ticks for an hour): its knowledge is fed samples as the monitor
//! would, instances are replaced now and then (new tag values, as scaling does), and each
//! tick hands the telemetry its points exactly as the autonomic loop does (`observe`,
//! `decided`, `acted`). The sink writes them to a real VictoriaMetrics started here, which
//! is stopped for five simulated minutes (an outage: the buffer fills, the oldest points
//! are dropped). The process's resident memory is printed every five simulated minutes;
//! the figure is its growth from minute 15 (after the outage) to the end.
//!
//!   cargo run --release -p gru-agent --example sink_bench -- [--hours 1] [--services 5]
//!       [--instances 4] [--ticks-per-second 100]
//!
//! Run by `scripts/bench.sh sink`, whose last line is this program's last line:
//! `sink_rss_growth_pct=... rss_kb=... peak_rss_kb=... points=... written=... dropped=...`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gru_agent::mape::{Action, AnalyticValue, CandidateWeight, Decision, Millis, WindowSettings};
use gru_agent::runtime::{InstanceInfo, Knowledge};
use gru_agent::telemetry::{
    InfluxWriter, NodeFacts, Origin, PointBuffer, SinkSettings, Telemetry, WriterTiming,
    resident_memory_bytes, spawn_writer,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
struct Args {
    hours: u64,
    services: usize,
    instances: usize,
    ticks_per_second: u64,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        hours: 1,
        services: 5,
        instances: 4,
        ticks_per_second: 100,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    for pair in raw.chunks(2) {
        let value = pair
            .get(1)
            .ok_or_else(|| format!("{} needs a value", pair[0]))?;
        let number: u64 = value
            .parse()
            .map_err(|_| format!("{}: {value:?} is not a number", pair[0]))?;
        match pair[0].as_str() {
            "--hours" => args.hours = number.max(1),
            "--services" => args.services = number.max(1) as usize,
            "--instances" => args.instances = number.max(1) as usize,
            "--ticks-per-second" => args.ticks_per_second = number.max(1),
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

/// VictoriaMetrics on a free port, in a temporary directory; stopped on drop.
struct Victoria {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Victoria {
    fn start() -> Result<Victoria, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let dir = std::env::temp_dir().join(format!("gru-sink-bench-{}", std::process::id()));
        let mut vm = Victoria {
            port,
            dir,
            child: None,
        };
        vm.resume()?;
        Ok(vm)
    }

    fn resume(&mut self) -> Result<(), String> {
        let child = Command::new("victoria-metrics")
            .arg(format!("-storageDataPath={}", self.dir.display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", self.port))
            .args(["-retentionPeriod=100y", "-search.latencyOffset=0s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start victoria-metrics ({e}): scripts/install-deps.sh"))?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("victoria-metrics did not start".into())
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A 32-hex instance id, as the agent makes them.
fn instance_id(n: u64) -> String {
    format!("{n:032x}")
}

fn decision(tick: u64, at: Millis, services: usize) -> Decision {
    let service = format!("svc{}", tick as usize % services);
    let out = Action::ScaleOut {
        service: service.clone(),
        count: 1,
    };
    let weight = (tick % 100) as f64 / 100.0;
    let mut weights = vec![CandidateWeight {
        action: Action::None,
        weight: 1.0 - weight,
        explanation: Default::default(),
        blocked_by: Default::default(),
        clamped: None,
    }];
    for s in 0..services {
        for action in [
            Action::ScaleOut {
                service: format!("svc{s}"),
                count: 1,
            },
            Action::ScaleIn {
                service: format!("svc{s}"),
                count: 1,
            },
        ] {
            weights.push(CandidateWeight {
                action,
                weight,
                explanation: "cpu_avg 0.80 > 0.75".into(),
                blocked_by: Default::default(),
                clamped: None,
            });
        }
    }
    Decision {
        action: if tick.is_multiple_of(10) {
            out
        } else {
            Action::None
        },
        weights,
        draw: Some(weight),
        reason: "bench".into(),
        dry_run: false,
        at,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let args = args()?;
    let mut vm = Victoria::start()?;
    let url = format!("http://127.0.0.1:{}", vm.port);
    let mut settings = SinkSettings::new(&url, "gru", "gru", "").map_err(|e| e.to_string())?;
    // The agent's defaults, with the flush interval scaled to the fast clock.
    settings.timing = WriterTiming {
        flush_interval: Duration::from_millis(100),
        ..WriterTiming::default()
    };
    let buffer = Arc::new(PointBuffer::new(
        settings.buffer_points,
        settings.timing.batch_points,
    ));
    let telemetry = Telemetry::new();
    telemetry.attach_sink(
        Origin {
            cluster: "bench".into(),
            node: "node1".into(),
        },
        NodeFacts {
            cpus: 2,
            memory_bytes: 8 << 30,
        },
        buffer.clone(),
    );
    let cancel = CancellationToken::new();
    let writer = spawn_writer(
        buffer.clone(),
        InfluxWriter::new(&settings).map_err(|e| e.to_string())?,
        settings.timing,
        cancel.clone(),
    );

    let ticks = args.hours * 3600;
    let start = Millis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_millis() as u64
            - ticks * 1000,
    );
    let mut knowledge = Knowledge::new(WindowSettings::for_loop_interval(Duration::from_secs(5)));
    knowledge.active = true;
    let mut next_instance = 0u64;
    let mut add_instance = |knowledge: &mut Knowledge, service: &str, at: Millis| {
        next_instance += 1;
        let id = instance_id(next_instance);
        knowledge.instances.insert(
            id.clone(),
            InstanceInfo {
                id: id.clone(),
                service: service.to_owned(),
                instance: id,
                state: "running".into(),
                address: Some("127.0.0.1:18080".into()),
                started_at: at,
                version: None,
                image: String::new(),
                ready: true,
                health: None,
                replaces: Vec::new(),
            },
        );
    };
    for s in 0..args.services {
        for _ in 0..args.instances {
            add_instance(&mut knowledge, &format!("svc{s}"), start);
        }
    }
    let outage = (5 * 60, 10 * 60);
    let pace = Duration::from_secs_f64(1.0 / args.ticks_per_second as f64);
    let began = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut peak = 0u64;
    println!("minute  rss_kb  buffered  written  dropped");
    for tick in 0..ticks {
        let at = start.plus(Duration::from_secs(tick));
        if tick == outage.0 {
            vm.stop();
            println!("  (server stopped for 5 simulated minutes)");
        }
        if tick == outage.1 {
            vm.resume()?;
        }
        // The monitor: a cpu, memory and user-metric sample per instance per second.
        let instances: Vec<(String, String)> = knowledge
            .instances
            .values()
            .map(|i| (i.service.clone(), i.instance.clone()))
            .collect();
        for (service, instance) in &instances {
            let load = ((tick % 60) as f64) / 60.0;
            for (metric, value) in [
                ("cpu_avg", load),
                ("mem_avg", 0.5),
                ("execution_time", 100.0 * load),
            ] {
                let _ = knowledge
                    .metrics
                    .record(service, instance, metric, at, value);
            }
        }
        // Scaling: every minute one instance of a service is replaced by a new one.
        if tick % 60 == 59 {
            let service = format!("svc{}", (tick / 60) as usize % args.services);
            let victim = knowledge
                .instances
                .values()
                .find(|i| i.service == service)
                .map(|i| (i.id.clone(), i.instance.clone()));
            if let Some((id, instance)) = victim {
                knowledge.instances.remove(&id);
                knowledge.metrics.instance_stopped(&service, &instance);
            }
            add_instance(&mut knowledge, &service, at);
        }
        let analytics: BTreeMap<String, BTreeMap<String, AnalyticValue>> = (0..args.services)
            .map(|s| {
                (
                    format!("svc{s}"),
                    BTreeMap::from([
                        ("cpu_load".to_owned(), AnalyticValue::Available(0.5)),
                        ("resp_time_ratio".to_owned(), AnalyticValue::Available(0.25)),
                    ]),
                )
            })
            .collect();
        knowledge.analytics = analytics;

        // What the loop hands the telemetry each tick.
        telemetry.observe(&mut knowledge, at);
        let decision = decision(tick, at, args.services);
        telemetry.decided(&decision);
        knowledge.record_decision(decision);
        if tick.is_multiple_of(10) {
            telemetry.acted("scale-out", "svc0", "ok", at);
        }

        if tick % 300 == 299 {
            let rss = resident_memory_bytes().unwrap_or(0) / 1024;
            peak = peak.max(rss);
            let stats = buffer.stats();
            samples.push((tick + 1, rss));
            println!(
                "{:>6}  {rss:>6}  {:>8}  {:>7}  {:>7}",
                (tick + 1) / 60,
                stats.buffered,
                stats.written,
                stats.dropped()
            );
        }
        tokio::time::sleep(pace).await;
    }
    // Let the writer catch up, then stop it.
    for _ in 0..100 {
        if buffer.stats().buffered == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cancel.cancel();
    let _ = writer.await;
    let stats = buffer.stats();
    let produced = stats.written + stats.dropped() + stats.buffered as u64;
    let after_outage: Vec<u64> = samples
        .iter()
        .filter(|(tick, _)| *tick >= 15 * 60)
        .map(|(_, rss)| *rss)
        .collect();
    let (first, last) = match (after_outage.first(), after_outage.last()) {
        (Some(first), Some(last)) => (*first, *last),
        _ => return Err("run at least one hour".into()),
    };
    let growth = (last as f64 - first as f64) / first as f64 * 100.0;
    println!(
        "simulated {} h ({} ticks, {} instances replaced) in {:.1} s; resident memory {} kB at minute 15, {} kB at the end, peak {} kB",
        args.hours,
        ticks,
        ticks / 60,
        began.elapsed().as_secs_f64(),
        first,
        last,
        peak
    );
    println!(
        "sink_rss_growth_pct={growth:.1} rss_kb={last} peak_rss_kb={peak} points={produced} written={} dropped={} buffer_capacity={}",
        stats.written,
        stats.dropped(),
        stats.capacity
    );
    Ok(())
}
