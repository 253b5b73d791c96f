//! `gru-sim bench`: every experiment, its tables, and one `key=value` line at the end.
//!
//! The tables go to the writer it is given (stdout), how long each part took to stderr, so
//! that the tables of a seed are the same from run to run and the summary is the last
//! line.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;

use crate::experiments::{self, ConvergenceResult, ConvergenceSetup, EqualCostHow};
use crate::report::{self, Summary};
use crate::scenario::{DYNAMITE, Mode, ViewKind, gru_original_policy, sim_policy};
use crate::sim::RunReport;
use crate::trace::{Trace, TraceKind};

/// What `gru-sim bench` runs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub seed: u64,
    /// Clusters of at most 1,000 agents, for a quick look (no N = 10,000 row).
    pub quick: bool,
    /// Where the shipped traces are read from.
    pub traces: std::path::PathBuf,
    /// The seeds every trace kind is generated from for the Pareto comparison.
    pub trace_seeds: SeedRange,
}

/// Nodes in the trace table and the Pareto comparison.
const TRACE_NODES: usize = 50;

/// The seeds of the Pareto comparison when none are given: 10 per kind.
pub const DEFAULT_TRACE_SEEDS: SeedRange = SeedRange { first: 0, last: 9 };

/// Most seeds one bench takes, so that a typo does not start a week-long run.
pub const MAX_TRACE_SEEDS: u64 = 1_000;

/// Seeds `first..=last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRange {
    pub first: u64,
    pub last: u64,
}

impl SeedRange {
    pub fn seeds(&self) -> Vec<u64> {
        (self.first..=self.last).collect()
    }
}

impl std::fmt::Display for SeedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.first, self.last)
    }
}

impl std::str::FromStr for SeedRange {
    type Err = String;

    /// `A..B` and `A..=B` both mean A to B with both ends included (`0..9` is ten seeds);
    /// a single `A` is that seed alone.
    fn from_str(text: &str) -> Result<SeedRange, String> {
        let number = |part: &str| {
            part.trim()
                .parse::<u64>()
                .map_err(|_| format!("{part:?} is not a seed (a whole number)"))
        };
        let (first, last) = match text.split_once("..") {
            Some((first, last)) => (
                number(first)?,
                number(last.strip_prefix('=').unwrap_or(last))?,
            ),
            None => {
                let seed = number(text)?;
                (seed, seed)
            }
        };
        if last < first {
            return Err(format!("{text:?}: the last seed is below the first"));
        }
        if last - first >= MAX_TRACE_SEEDS {
            return Err(format!(
                "{text:?}: more than {MAX_TRACE_SEEDS} seeds per kind"
            ));
        }
        Ok(SeedRange { first, last })
    }
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    eprintln!("gru-sim: {what}: {:.1} s", started.elapsed().as_secs_f64());
    value
}

/// Runs the bench, writing its tables and summary to `out`.
pub fn bench(options: &BenchOptions, out: &mut impl Write) -> anyhow::Result<()> {
    let started = Instant::now();
    let seed = options.seed;
    let traces = load_traces(&options.traces)?;
    let policy = sim_policy();
    let mut summary = Summary::default();
    writeln!(out, "# gru-sim bench (seed {seed})\n")?;

    // Convergence.
    let big = if options.quick { 1_000 } else { 10_000 };
    let wire_cap = gru_agent::gossip::digest::DETAIL_CAP;
    let mut setups = vec![
        ConvergenceSetup::acceptance(1_000, ViewKind::Cluster, seed),
        ConvergenceSetup::acceptance(1_000, ViewKind::Compact, seed),
    ];
    if !options.quick {
        let at_big = ConvergenceSetup::acceptance(big, ViewKind::Compact, seed);
        setups.extend([
            at_big,
            ConvergenceSetup {
                loss: 0.2,
                ..at_big
            },
            ConvergenceSetup {
                loss: 0.2,
                attempts: 1,
                ..at_big
            },
            ConvergenceSetup {
                message_limit: wire_cap / 2,
                ..at_big
            },
            ConvergenceSetup {
                message_limit: 4 * wire_cap,
                ..at_big
            },
        ]);
    }
    let convergence: Vec<ConvergenceResult> = setups
        .iter()
        .map(|setup| {
            timed(
                &format!("convergence at N = {} ({:?})", setup.nodes, setup.view),
                || experiments::convergence(setup),
            )
        })
        .collect();
    if convergence[0].share_by_round != convergence[1].share_by_round
        || convergence[0].steady_bytes_per_agent_round
            != convergence[1].steady_bytes_per_agent_round
        || convergence[0].change_bytes_per_agent_round
            != convergence[1].change_bytes_per_agent_round
    {
        bail!("the compact view and ClusterView disagree at N = 1,000: {convergence:?}");
    }
    writeln!(out, "## Convergence after a load change on one service\n")?;
    writeln!(
        out,
        "MaxFriends 5, the agent's digest exchange (fingerprints, versions where they differ,\n\
         then only the reports a side lacks), every leg built from the views as the round began\n\
         (one hop per round). Before the change {steady} rounds of steady state: nodes publish\n\
         only on their heartbeat (digest::heartbeat: every N/100 rounds); then every node's\n\
         `web` load changes at once. Rounds until 99 % of the agents hold an instance-weighted\n\
         load within 5 % of the true cluster value. Bytes are the agent's wire (postcard),\n\
         counted for the sender, requests and answers. ClusterView and the compact view agree\n\
         round by round at N = 1,000 (checked, bytes included). {wire_cap} versions per answer\n\
         is the agent's cap (DETAIL_CAP).\n",
        steady = experiments::STEADY_ROUNDS
    )?;
    writeln!(out, "{}", report::convergence_table(&convergence))?;
    let attempts = gru_agent::gossip::digest::LEG_ATTEMPTS;
    let rounds = |n: usize, limit: Option<usize>, loss: f64| {
        convergence
            .iter()
            .find(|r| {
                r.nodes == n && r.message_limit == limit && r.loss == loss && r.attempts == attempts
            })
            .map_or_else(
                || "skipped".to_owned(),
                |r| r.rounds.map_or("never".to_owned(), |x| x.to_string()),
            )
    };
    summary.add("rounds_99_at_1000", rounds(1_000, Some(wire_cap), 0.0));
    summary.add("rounds_99_at_10000", rounds(10_000, Some(wire_cap), 0.0));
    summary.add("goal_at_10000", format!("{:.2}", goal(10_000)));
    summary.add(
        "rounds_99_at_10000_loss20",
        rounds(10_000, Some(wire_cap), 0.2),
    );
    summary.add(
        "rounds_99_at_10000_loss20_sent_once",
        convergence
            .iter()
            .find(|r| r.nodes == 10_000 && r.loss == 0.2 && r.attempts == 1)
            .map_or_else(
                || "skipped".to_owned(),
                |r| r.rounds.map_or("never".to_owned(), |x| x.to_string()),
            ),
    );
    summary.add(
        &format!("rounds_99_at_10000_cap{}", wire_cap / 2),
        rounds(10_000, Some(wire_cap / 2), 0.0),
    );
    summary.add(
        &format!("rounds_99_at_10000_cap{}", 4 * wire_cap),
        rounds(10_000, Some(4 * wire_cap), 0.0),
    );
    let bytes = |n: usize, f: fn(&ConvergenceResult) -> f64| {
        convergence
            .iter()
            .find(|r| r.nodes == n && r.message_limit == Some(wire_cap) && r.loss == 0.0)
            .map_or_else(|| "skipped".to_owned(), |r| format!("{:.0}", f(r)))
    };
    summary.add(
        "gossip_bytes_per_agent_round_10000",
        bytes(10_000, |r| r.steady_bytes_per_agent_round),
    );
    summary.add(
        "gossip_bytes_per_agent_round_10000_change",
        bytes(10_000, |r| r.change_bytes_per_agent_round),
    );
    summary.add(
        "gossip_bytes_per_agent_round_1000",
        bytes(1_000, |r| r.steady_bytes_per_agent_round),
    );

    // Overshoot.
    let sizes: &[usize] = &[10, 100, 1_000];
    let overshoot = timed("overshoot", || experiments::overshoot(sizes, seed));
    writeln!(out, "## Overshoot: every agent sees the same overload\n")?;
    writeln!(
        out,
        "web at load 0.9 on every node (scale-out weight 0.6), 2 instances at the start, max {},\n\
         Step {}, CooldownOut {} s, {} s, 4 slots per node. gru claims each step in the ledger;\n\
         gru-original runs Gru 2016's policy (one START per decision, no Period, no cooldown)\n\
         and acts on every scale-out it draws; its herds are counted in gru's CooldownOut\n\
         windows.\n",
        experiments::OVERLOAD_MAX,
        policy.scaleout.step,
        policy.cooldown_out_secs,
        experiments::OVERLOAD_SECS
    )?;
    writeln!(out, "{}", report::overshoot_table(&overshoot))?;
    let most =
        |f: fn(&experiments::OvershootRow) -> u32| overshoot.iter().map(f).max().unwrap_or(0);
    summary.add("overshoot_gru_max", most(|r| r.gru.max_added_per_window));
    summary.add(
        "overshoot_gru_original_max",
        most(|r| r.original.max_added_per_window),
    );
    summary.add("step", policy.scaleout.step);
    summary.add("peak_gru_max", most(|r| r.gru.peak_instances));
    summary.add("peak_gru_original_max", most(|r| r.original.peak_instances));
    summary.add("overload_max_instances", experiments::OVERLOAD_MAX);

    // The four modes on the shipped traces.
    let table = timed("trace table", || {
        experiments::trace_table(&traces, TRACE_NODES, seed)
    });
    let original = gru_original_policy();
    writeln!(out, "## The four modes on the shipped traces\n")?;
    writeln!(
        out,
        "N = {TRACE_NODES} nodes × 4 slots; web serves 10 req/s per instance, 25 instances at the start,\n\
         between 2 and 120; the load balancer gives each node's instances 0.75..1.25 of a fair\n\
         share; start delay 5 s. Agents loop every 10 s, gossip every 5 s; gru's policy: out above\n\
         0.75 by {} (Period 10 s), in below 0.35 by {} (Period 60 s), CooldownOut {} s, CooldownIn\n\
         {} s. gru-original: the same thresholds, Step {}, no Period, no cooldown. HPA: target 0.6,\n\
         sync 15 s, reading metrics-server's 15 s means, starting pods not ready, scale-up at most\n\
         max(4, 100 %) per 15 s, scale-down stabilization 300 s. Dynamite: the same thresholds\n\
         sustained {} s, one instance per action, metrics ignored for {} s after one (per\n\
         direction). SLO violation: a second whose demand exceeds the running capacity. Bound\n\
         violations are ticks above max (or below min); step violations are ticks at which a\n\
         cooldown window held more than one Step, the rule gru enforces (the baselines do not\n\
         claim to).\n",
        policy.scaleout.step,
        policy.scalein.step,
        policy.cooldown_out_secs,
        policy.cooldown_in_secs,
        original.scaleout.step,
        DYNAMITE.period_secs,
        DYNAMITE.cooldown_secs,
    )?;
    writeln!(out, "{}", report::trace_table(&table))?;
    for mode in Mode::ALL {
        let of_mode = || table.iter().filter(move |r| r.mode == mode);
        let key = mode.name().replace('-', "_");
        summary.add(
            &format!("slo_violation_secs_{key}"),
            of_mode().map(|r| r.slo_violation_secs).sum::<u64>(),
        );
        summary.add(
            &format!("container_secs_{key}"),
            of_mode().map(|r| r.container_secs).sum::<u64>(),
        );
    }

    // The Pareto comparison.
    pareto_section(options.trace_seeds, &mut summary, out)?;

    // Faults.
    let fault_nodes = if options.quick { 50 } else { 100 };
    let bursty = &traces[2];
    let faults = timed("fault table", || {
        experiments::fault_table(bursty, fault_nodes, seed)
    });
    let (hazard, faults): (Vec<RunReport>, Vec<RunReport>) = faults
        .into_iter()
        .partition(|r| r.scenario.contains("near max"));
    writeln!(out, "## gru and gru-original under faults\n")?;
    writeln!(
        out,
        "bursty trace, N = {fault_nodes}, web as above and db (constant 20 req/s, 3 instances on\n\
         nodes 0-2, between 3 and 10). crash: a tenth of the nodes (among them two of db's) at\n\
         20 min, for good; loss: 20 % of all messages throughout; partition: three tenths of the\n\
         nodes cut off from the others and from the store from 30 to 40 min. Repairs restore\n\
         MinInstances (not a step: no cooldown, serialised by the ledger's intent).\n"
    )?;
    writeln!(out, "{}", report::fault_table(&faults))?;
    writeln!(out, "## A partition while the cluster is at MaxInstances\n")?;
    writeln!(
        out,
        "20 agents under the overload above (max {}); from 60 s to 240 s five nodes, among them\n\
         the two that run the first instances, are cut off. Their leases expire, discovery no\n\
         longer lists their instances, and the majority scales up to max while they keep\n\
         running: the cluster holds more than max while the partition lasts (unavoidable).\n\
         When it heals, gru's agents that run an instance claim one stop each through the\n\
         ledger (a repair like the floor's: no cooldown, one instance per claim) until the\n\
         cluster is back under max; gru-original has no such repair and stays above it.\n",
        experiments::OVERLOAD_MAX
    )?;
    writeln!(out, "{}", report::partition_at_max_table(&hazard))?;

    let gru_runs = || {
        table
            .iter()
            .chain(&faults)
            .chain(overshoot.iter().map(|r| &r.gru))
            .filter(|r| r.mode == Mode::Gru)
    };
    let original_runs = || {
        table
            .iter()
            .chain(&faults)
            .chain(overshoot.iter().map(|r| &r.original))
            .filter(|r| r.mode == Mode::GruOriginal)
    };
    let agent_runs = || table.iter().chain(&faults).filter(|r| r.mode.has_agents());
    let msgs = convergence
        .iter()
        .map(|r| r.requests_per_agent_round + r.replies_per_agent_round)
        .chain(agent_runs().map(RunReport::messages_per_agent_round))
        .fold(0.0, f64::max);
    let requests = convergence
        .iter()
        .map(|r| r.max_requests_per_agent)
        .chain(agent_runs().map(|r| r.max_requests_per_agent_round))
        .max()
        .unwrap_or(0);
    summary.add("msgs_per_agent_round_max", format!("{msgs:.2}"));
    summary.add("requests_per_agent_round_max", requests);
    summary.add(
        "invariant_violations_gru",
        gru_runs().map(|r| r.violations.total()).sum::<u64>(),
    );
    summary.add(
        "invariant_violations_gru_original",
        original_runs().map(|r| r.violations.total()).sum::<u64>(),
    );
    summary.add(
        "restore_min_secs_gru_max",
        faults
            .iter()
            .filter(|r| r.mode == Mode::Gru)
            .map(|r| r.longest_below_min_secs)
            .max()
            .unwrap_or(0),
    );
    let hazard_gru = |f: fn(&RunReport) -> u64| {
        hazard
            .iter()
            .filter(|r| r.mode == Mode::Gru)
            .map(f)
            .sum::<u64>()
    };
    summary.add(
        "partition_at_max_above_max_ticks_gru",
        hazard_gru(|r| r.violations.above_max),
    );
    summary.add(
        "partition_at_max_above_max_ticks_during_gru",
        hazard_gru(|r| r.above_max_during_partition),
    );
    summary.add(
        "partition_at_max_above_max_ticks_after_heal_gru",
        hazard_gru(|r| r.above_max_after_heal),
    );
    summary.add(
        "bench_secs",
        format!("{:.0}", started.elapsed().as_secs_f64()),
    );
    writeln!(out, "{}", summary.line())?;
    Ok(())
}

fn goal(nodes: usize) -> f64 {
    (nodes as f64).ln() / 5_f64.ln() + 3.0
}

fn load_traces(dir: &Path) -> anyhow::Result<Vec<Arc<Trace>>> {
    TraceKind::ALL
        .iter()
        .map(|kind| Trace::load(&dir.join(format!("{kind}.json"))).map(Arc::new))
        .collect()
}

/// The Pareto comparison on every kind generated from `trace_seeds`: its tables to `out`,
/// its keys into `summary`.
pub fn pareto_section(
    trace_seeds: SeedRange,
    summary: &mut Summary,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let kinds = TraceKind::ALL;
    let seeds = trace_seeds.seeds();
    let cells = timed(
        &format!(
            "Pareto comparison ({} kinds x {} seeds x {} settings)",
            kinds.len(),
            seeds.len(),
            experiments::pareto_settings().len()
        ),
        || experiments::pareto(&kinds, &seeds, TRACE_NODES),
    );
    let verdicts = experiments::verdicts(&cells);
    writeln!(
        out,
        "## Pareto comparison: every trace kind from seeds {}\n",
        trace_seeds
    )?;
    writeln!(
        out,
        "Each kind generated from each seed (`--trace-seeds`), N = {TRACE_NODES}, the cluster and\n\
         service above; each run's simulation seed is its trace's. gru-T runs\n\
         `gru_target_policy(T)`, hpa-T aims for T; Dynamite and gru-original at their one setting.\n\
         Per kind and setting: the mean over the seeds of the SLO-violation seconds and of the\n\
         container-seconds; invariant violations summed.\n"
    )?;
    writeln!(out, "{}", report::pareto_table(&cells))?;
    writeln!(
        out,
        "Per kind: gru's SLO-seconds at hpa-{:.1}'s container-seconds (the best gru setting\n\
         within ±{:.0} %, else interpolated between the two gru settings that bracket it), over\n\
         hpa-{:.1}'s; 0/0 counts as 1, x/0 and no gru setting that cheap as inf. A baseline is\n\
         dominated when some gru setting is at least as good on both axes.\n",
        experiments::REFERENCE_HPA_TARGET,
        experiments::EQUAL_COST_BAND * 100.0,
        experiments::REFERENCE_HPA_TARGET
    )?;
    writeln!(out, "{}", report::verdict_table(&verdicts))?;
    for verdict in &verdicts {
        if let Some(equal) = verdict.equal_cost {
            let note = match equal.how {
                EqualCostHow::InBand => continue,
                EqualCostHow::Interpolated => "no gru setting within the band: interpolated",
                EqualCostHow::GruCheaper => {
                    "every gru setting is cheaper than the band: gru's costliest setting"
                }
                EqualCostHow::GruCostlier => {
                    "every gru setting costs more than the band: no equal-cost figure (inf)"
                }
            };
            writeln!(out, "Note: {}: {note}.", verdict.kind)?;
        }
    }
    writeln!(out)?;
    let worst = verdicts
        .iter()
        .map(|v| v.equal_cost.map_or(f64::INFINITY, |e| e.ratio))
        .fold(0.0, f64::max);
    summary.add("trace_seeds", trace_seeds);
    summary.add("slo_ratio_vs_hpa_at_equal_cost", report::ratio(worst));
    summary.add(
        "dominates_dynamite",
        u8::from(verdicts.iter().all(|v| v.dominates_dynamite)),
    );
    summary.add(
        "dominates_gru_original",
        u8::from(verdicts.iter().all(|v| v.dominates_gru_original)),
    );
    summary.add(
        "pareto_invariant_violations_gru",
        cells
            .iter()
            .filter(|c| c.setting.mode == Mode::Gru)
            .map(|c| c.violations)
            .sum::<u64>(),
    );

    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_seeds_parse_with_both_ends_included() {
        // (text, first, last)
        let good = [
            ("0..9", 0, 9),
            ("100..109", 100, 109),
            ("3..=5", 3, 5),
            (" 7 .. 7 ", 7, 7),
            ("42", 42, 42),
        ];
        for (text, first, last) in good {
            assert_eq!(text.parse(), Ok(SeedRange { first, last }), "{text:?}");
        }
        assert_eq!(DEFAULT_TRACE_SEEDS.seeds().len(), 10);
        assert_eq!(
            "100..109".parse::<SeedRange>().map(|r| r.seeds().len()),
            Ok(10)
        );
        for bad in [
            "", "a..3", "5..2", "1..", "..4", "-1..3", "0..5000", "1...3",
        ] {
            assert!(bad.parse::<SeedRange>().is_err(), "{bad:?} was accepted");
        }
    }
}
