//! Time per tick of the agent's pure core at scale: the planner over 100 services × 10
//! analytics, and the cluster view taking a friend's message of 1,000 node reports.
//!
//! A plain `harness = false` bench (no criterion: no registry is reachable from the build
//! machines, and the figures are wanted as printed lines, like every other gru benchmark).
//! Each case runs its warm-up, then times every iteration with `std::time::Instant` (up to
//! 2,000, or fewer once the case has run 10 s, never fewer than 200) and prints the median,
//! the 99th percentile and the mean, in µs per tick.
//!
//! * **plan 100×10**: `tick::plan` (which is `mape::plan` plus the claims its decision leads
//!   to, what the daemon and the simulator call once per loop) over 100 services, each with
//!   10 analytics of its own and `cpu_avg` / `mem_avg`, under the example's policy
//!   (`configs/example/policy.json`: scale-out above 0.75 and scale-in below 0.35 on the
//!   service's analytics, Period 10 s / 20 s, cooldowns 15 s / 30 s, no swap) with Gru's
//!   default strategy `probcumulative`. The state is carried from one tick to the next and
//!   the clock advances 1 s per tick (loop 1 s), so breaches start, last and end, and
//!   actions start cooldowns, as in a running agent; every 10th tick the analytic values
//!   change. A second case enables swap (Gru's pairs of a service running here and one not
//!   running here: half of the 100 run here, so 2,500 swap candidates).
//! * **view merge 1,000**: `ClusterView::merge_all` of one message holding 1,000 node
//!   reports (each node runs 5 of the 100 services and reports `cpu_avg`, `mem_avg` and
//!   their 10 analytics), every one a newer version than the view holds, into a view that
//!   already holds those 1,000 nodes: the merge a gossip round does when every node
//!   changed. The reports are built outside the timed part (the daemon gets them owned from
//!   the decoder).
//! * **view read 1,000**: `ClusterView::service` for each of the 100 services over that
//!   view: what the tick reads of it to build its snapshots.
//! * **gossip receive 1,000**: the receiving side of a digest exchange's push of those
//!   1,000 reports (what a friend that lacked all of them receives): `wire::open` (size cap,
//!   HMAC, freshness, replay, postcard decode, shape check) then the merge, and the answer
//!   (the wanted reports, none here, and `wire::seal`). The message's size is printed too.
//!
//!   cargo bench -p gru-agent --bench planner            # or: scripts/bench.sh planner
//!   cargo bench -p gru-agent --bench planner -- --iterations 5000
//!   cargo bench -p gru-agent --bench planner -- --only plan   # or swap, view: one case group
//!
//! `--only` runs one group of cases (`plan`, `swap`, or `view`: merge, read and receive),
//! e.g. under `valgrind --tool=callgrind`, whose instruction counts compare two builds
//! even on a busy machine; the last line then holds that group's figures only.
//!
//! Last line: `plan_us_per_tick_100x10=... plan_us_per_tick_100x10_swap=...
//! view_merge_us_1000=... view_read_us_1000=... gossip_receive_us_1000=...
//! gossip_msg_bytes_1000=...` (medians).
//!
//! Without `--bench` (that is, under `cargo test --benches` or `--all-targets`) each case
//! runs a few iterations only, so the target is checked without taking the time of a
//! measurement.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::config::{PlannerStrategy, PolicyConfig, PolicyRule};
use gru_agent::gossip::wire::{self, Body, Credentials, GossipMessage, ReplayGuard};
use gru_agent::gossip::{ClusterView, NodeReport, ServiceReport};
use gru_agent::mape::{AnalyticValue, LastScale, Millis, PlanInput, PlannerState, ServiceSnapshot};
use gru_agent::tick;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Services in the planner's input and in the cluster.
const SERVICES: usize = 100;
/// Analytics of each service.
const ANALYTICS_PER_SERVICE: usize = 10;
/// Node reports in one gossip message (and nodes in the view).
const REPORTS: usize = 1_000;
/// Services each node runs, so reports (10 would make a message of 1,000 reports larger
/// than the wire's 4 MiB cap: `seal` would drop a quarter of them).
const SERVICES_PER_NODE: usize = 5;
/// The agent's loop in the planner case: the clock advances this much per tick.
const LOOP: Duration = Duration::from_secs(1);
/// The analytic values change every this many ticks.
const VALUES_CHANGE_EVERY: usize = 10;
/// Timed iterations of each case with `--bench`, unless `--iterations` says otherwise.
const DEFAULT_ITERATIONS: usize = 2_000;
/// Iterations run before timing starts (caches, allocator, branch predictors).
const WARM_UP_ITERATIONS: usize = 50;
/// A case stops early once its loop has run this long, after at least
/// [`MIN_TIMED_ITERATIONS`]: the swap and gossip cases take tens of ms per iteration.
const CASE_BUDGET: Duration = Duration::from_secs(10);
const MIN_TIMED_ITERATIONS: usize = 200;
/// Iterations of each case without `--bench` (a smoke run under `cargo test`).
const SMOKE_ITERATIONS: usize = 3;
const SECRET: &str = "bench-cluster-secret";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let measuring = args.iter().any(|a| a == "--bench");
    let iterations = match args.iter().position(|a| a == "--iterations") {
        Some(i) => match args.get(i + 1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n > 0 => n,
            _ => {
                eprintln!("planner bench: --iterations takes a whole number > 0");
                std::process::exit(64);
            }
        },
        None if measuring => DEFAULT_ITERATIONS,
        None => SMOKE_ITERATIONS,
    };
    let only = match args.iter().position(|a| a == "--only") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some(group @ ("plan" | "swap" | "view")) => Some(group),
            _ => {
                eprintln!("planner bench: --only takes plan, swap or view");
                std::process::exit(64);
            }
        },
        None => None,
    };
    let runs_group = |group: &str| only.is_none_or(|only| only == group);
    let warm_up = if measuring { WARM_UP_ITERATIONS } else { 0 };
    println!(
        "planner bench: up to {iterations} timed iterations per case (at least {} unless fewer are asked, then until the case has run {} s) after {warm_up} of warm-up{}",
        MIN_TIMED_ITERATIONS.min(iterations),
        CASE_BUDGET.as_secs(),
        if measuring {
            ""
        } else {
            " (smoke run: pass --bench, as cargo bench does, to measure)"
        }
    );

    let runs = Runs {
        warm_up,
        iterations,
    };
    let mut figures = Vec::new();
    if runs_group("plan") {
        let plan = plan_case(false, runs);
        figures.push(format!("plan_us_per_tick_100x10={:.1}", plan.median));
    }
    if runs_group("swap") {
        let plan_swap = plan_case(true, runs);
        figures.push(format!(
            "plan_us_per_tick_100x10_swap={:.1}",
            plan_swap.median
        ));
    }
    if runs_group("view") {
        let view = view_cases(runs);
        figures.push(format!("view_merge_us_1000={:.1}", view.merge.median));
        figures.push(format!("view_read_us_1000={:.1}", view.read.median));
        figures.push(format!("gossip_receive_us_1000={:.1}", view.receive.median));
        figures.push(format!("gossip_msg_bytes_1000={}", view.message_bytes));
    }
    println!("{}", figures.join(" "));
}

/// How many iterations a case runs.
#[derive(Debug, Clone, Copy)]
struct Runs {
    warm_up: usize,
    iterations: usize,
}

impl Runs {
    /// Whether iteration `i` (warm-up included) of a case whose loop began at `began` runs:
    /// until `iterations` were timed, or [`CASE_BUDGET`] passed after the minimum.
    fn go(&self, i: usize, began: Instant) -> bool {
        let Some(timed) = i.checked_sub(self.warm_up) else {
            return true;
        };
        timed < self.iterations && (timed < MIN_TIMED_ITERATIONS || began.elapsed() < CASE_BUDGET)
    }

    fn timed(&self, i: usize) -> bool {
        i >= self.warm_up
    }
}

/// Median, 99th percentile and mean of a case, in µs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    p99: f64,
    mean: f64,
}

impl Summary {
    fn of(name: &str, mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| us(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        let summary = Summary {
            median: at(0.5),
            p99: at(0.99),
            mean: samples.iter().copied().map(us).sum::<f64>() / samples.len() as f64,
        };
        println!(
            "  {name:<34} median {:>9.1} µs   p99 {:>9.1} µs   mean {:>9.1} µs   ({} iterations)",
            summary.median,
            summary.p99,
            summary.mean,
            samples.len()
        );
        summary
    }
}

fn analytic_name(i: usize) -> String {
    format!("analytic_{i}")
}

fn service_name(i: usize) -> String {
    format!("service-{i:03}")
}

/// The example's policy (configs/example/policy.json), on the services' own analytics.
fn example_policy(swap: bool) -> PolicyConfig {
    let rule = |threshold: f64, period_secs: u64| PolicyRule {
        enable: true,
        threshold,
        metrics: Vec::new(),
        analytics: Vec::new(),
        period_secs,
        step: 1,
        ..PolicyRule::disabled(threshold)
    };
    PolicyConfig {
        scaleout: rule(0.75, 10),
        scalein: rule(0.35, 20),
        swap: if swap {
            rule(0.6, 0)
        } else {
            PolicyRule::disabled(0.6)
        },
        cooldown_out_secs: 15,
        cooldown_in_secs: 30,
    }
}

/// 100 services with 10 analytics each; half run here. Values are drawn from `rng`.
fn snapshots(rng: &mut StdRng) -> Vec<ServiceSnapshot> {
    let mut services: Vec<ServiceSnapshot> = (0..SERVICES)
        .map(|i| {
            let running_here = if i % 2 == 0 { 2 } else { 0 };
            ServiceSnapshot {
                name: service_name(i),
                running_here,
                pending_here: 0,
                cluster_instances: running_here + 3,
                min_instances: 1,
                max_instances: Some(20),
                base_service: false,
                free_slots_here: 4,
                cpu_number: 0,
                own_analytics: (0..ANALYTICS_PER_SERVICE).map(analytic_name).collect(),
                cpu_avg: Some(rng.random_range(0.0..1.0)),
                mem_avg: Some(rng.random_range(0.0..1.0)),
                analytics: BTreeMap::new(),
                cluster_last_scale: LastScale::default(),
                start_held: None,
                policy: None,
            }
        })
        .collect();
    for snapshot in &mut services {
        redraw(snapshot, rng);
    }
    services
}

/// New analytic values for `snapshot`: a mix of calm, busy and idle services.
fn redraw(snapshot: &mut ServiceSnapshot, rng: &mut StdRng) {
    let level: f64 = rng.random_range(0.0..1.0);
    snapshot.analytics = (0..ANALYTICS_PER_SERVICE)
        .map(|a| {
            let value = (level + rng.random_range(-0.15..0.15)).clamp(0.0, 1.0);
            (analytic_name(a), AnalyticValue::Available(value))
        })
        .collect();
}

fn plan_case(swap: bool, runs: Runs) -> Summary {
    let mut rng = StdRng::seed_from_u64(14);
    let policy = example_policy(swap);
    let mut services = snapshots(&mut rng);
    let mut state = PlannerState::new();
    let mut now = Millis::from_secs(1_000);
    let mut samples = Vec::new();
    let mut actions = 0_usize;
    let mut candidates = 0_usize;
    let case_began = Instant::now();
    for i in (0..).take_while(|&i| runs.go(i, case_began)) {
        if i % VALUES_CHANGE_EVERY == 0 {
            for snapshot in &mut services {
                redraw(snapshot, &mut rng);
            }
        }
        let input = PlanInput {
            services: &services,
            policy: &policy,
            strategy: PlannerStrategy::ProbCumulative,
            dry_run: false,
            now,
        };
        let began = Instant::now();
        let planned = one_tick(black_box(&input), &state, &mut rng);
        let took = began.elapsed();
        if runs.timed(i) {
            samples.push(took);
            actions += usize::from(!planned.wants.is_empty());
            candidates = candidates.max(planned.decision.weights.len());
        }
        state = black_box(planned).state;
        now = Millis(now.0 + LOOP.as_millis() as u64);
    }
    let ticks = samples.len();
    let name = if swap {
        "plan 100x10, swap on"
    } else {
        "plan 100x10 (example policy)"
    };
    let summary = Summary::of(name, samples);
    println!(
        "  {:<34} {candidates} candidates weighed per tick (at most); {actions} of {ticks} ticks led to a claim",
        ""
    );
    summary
}

/// One timed tick, never inlined, so that a profiler (`valgrind --tool=callgrind
/// --toggle-collect=planner::one_tick`) counts the tick alone.
#[inline(never)]
fn one_tick(input: &PlanInput<'_>, state: &PlannerState, rng: &mut StdRng) -> tick::Planned {
    tick::plan(input, state, rng)
}

/// The figures of the view's cases and the message's size.
#[derive(Debug)]
struct ViewFigures {
    merge: Summary,
    read: Summary,
    receive: Summary,
    message_bytes: usize,
}

/// 1,000 reports at `version`: node i runs services i..i+5 (mod 100).
fn reports(version: u64, rng: &mut StdRng) -> Vec<NodeReport> {
    (0..REPORTS)
        .map(|node| NodeReport {
            node: format!("node-{node:04}"),
            version,
            services: (0..SERVICES_PER_NODE)
                .map(|k| {
                    let mut metrics = BTreeMap::new();
                    metrics.insert("cpu_avg".to_owned(), rng.random_range(0.0..1.0));
                    metrics.insert("mem_avg".to_owned(), rng.random_range(0.0..1.0));
                    let analytics = (0..ANALYTICS_PER_SERVICE)
                        .map(|a| (analytic_name(a), rng.random_range(0.0..1.0)))
                        .collect();
                    let report = ServiceReport {
                        instances: rng.random_range(1..4),
                        metrics,
                        analytics,
                    };
                    (service_name((node + k) % SERVICES), report)
                })
                .collect(),
        })
        .collect()
}

fn view_cases(runs: Runs) -> ViewFigures {
    let mut rng = StdRng::seed_from_u64(1_000);
    let template = reports(0, &mut rng);
    let mut view = ClusterView::new();
    let mut now = Millis::from_secs(1_000);
    view.merge_all(template.clone(), now);

    // Merge: every report one version newer than the view holds.
    let mut samples = Vec::new();
    let case_began = Instant::now();
    for i in (0..).take_while(|&i| runs.go(i, case_began)) {
        let version = i as u64 + 1;
        let mut message = template.clone();
        for report in &mut message {
            report.version = version;
        }
        now = Millis(now.0 + LOOP.as_millis() as u64);
        let began = Instant::now();
        let changed = view.merge_all(black_box(message), now);
        let took = began.elapsed();
        assert_eq!(changed, REPORTS, "every report is newer");
        if runs.timed(i) {
            samples.push(took);
        }
    }
    let merge = Summary::of("view merge, 1,000 newer reports", samples);

    // Read: the tick's per-service values.
    let names: Vec<String> = (0..SERVICES).map(service_name).collect();
    let mut samples = Vec::new();
    let case_began = Instant::now();
    for i in (0..).take_while(|&i| runs.go(i, case_began)) {
        let began = Instant::now();
        for name in &names {
            black_box(view.service(black_box(name)));
        }
        let took = began.elapsed();
        if runs.timed(i) {
            samples.push(took);
        }
    }
    let read = Summary::of("view read, 100 services x 1,000", samples);

    // Receive: open (HMAC, decode, checks), merge, answer (reports, seal).
    let mut replay = ReplayGuard::default();
    let mut samples = Vec::new();
    let mut message_bytes = 0;
    let base = 1_000_000_u64;
    let case_began = Instant::now();
    for i in (0..).take_while(|&i| runs.go(i, case_began)) {
        let version = base + i as u64;
        let mut reports = template.clone();
        for report in &mut reports {
            report.version = version;
        }
        let mut message = GossipMessage {
            from: "node-friend".to_owned(),
            body: Body::Push {
                reports,
                wants: Vec::new(),
            },
        };
        let body = wire::seal(&mut message);
        message_bytes = body.len();
        now = Millis(now.0 + LOOP.as_millis() as u64);
        let timestamp = now.0.to_string();
        let nonce = format!("nonce-{i}");
        let signature = wire::sign(SECRET, &timestamp, &nonce, &body);
        let keys = [SECRET.to_owned()];
        let credentials = Credentials {
            timestamp: Some(&timestamp),
            nonce: Some(&nonce),
            signature: Some(&signature),
        };
        let began = Instant::now();
        let opened = wire::open(&keys, credentials, black_box(&body), now, &mut replay)
            .unwrap_or_else(|why| panic!("the bench's own message was refused: {why:?}"));
        let Body::Push { reports, wants } = opened.body else {
            panic!("the bench's own push opened as something else");
        };
        let changed = view.merge_all(reports, now);
        let mut answer = GossipMessage {
            from: "node-self".to_owned(),
            body: Body::Reports(view.wanted(&wants)),
        };
        let answer = wire::seal(&mut answer);
        let took = began.elapsed();
        assert_eq!(changed, REPORTS, "every report is newer");
        black_box(answer);
        if runs.timed(i) {
            samples.push(took);
        }
    }
    let receive = Summary::of("gossip receive + answer, 1,000", samples);
    println!(
        "  {:<34} one message of 1,000 reports: {message_bytes} bytes ({:.0} KiB)",
        "",
        message_bytes as f64 / 1024.0
    );
    ViewFigures {
        merge,
        read,
        receive,
        message_bytes,
    }
}
