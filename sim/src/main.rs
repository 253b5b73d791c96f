//! `gru-sim`: runs the simulator's benchmark, writes the shipped traces, or runs one
//! scenario. The binary parses arguments and calls the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gru_sim::bench::{self, BenchOptions};
use gru_sim::experiments::{self, ConvergenceSetup};
use gru_sim::scenario::{Mode, Scenario, ViewKind};
use gru_sim::trace::{self, Trace, TraceKind};

#[derive(Debug, Parser)]
#[command(
    name = "gru-sim",
    version,
    about = "Deterministic simulation of many gru agents"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the convergence, overshoot, trace and fault tables, then one key=value line.
    Bench {
        /// The seed of every run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Smaller clusters (N ≤ 1,000), for a quick look.
        #[arg(long)]
        quick: bool,
        /// Where the shipped traces are read from.
        #[arg(long, default_value_os_t = trace::shipped_dir())]
        traces: PathBuf,
        /// The Pareto comparison generates every trace kind from these seeds instead of
        /// using the shipped traces: `A..B` includes both A and B (`0..9` is ten seeds);
        /// `A..=B` means the same, a single `A` one seed.
        #[arg(long, default_value_t = bench::DEFAULT_TRACE_SEEDS)]
        trace_seeds: bench::SeedRange,
    },
    /// Runs only the Pareto comparison of `bench` and prints its tables and keys.
    Pareto {
        /// Every trace kind is generated from these seeds (`A..B`, both ends included).
        #[arg(long, default_value_t = bench::DEFAULT_TRACE_SEEDS)]
        trace_seeds: bench::SeedRange,
    },
    /// Writes the shipped traces (step, ramp, bursty, diurnal, double-spike, sawtooth) from
    /// their seeds.
    Traces {
        #[arg(long, default_value_os_t = trace::shipped_dir())]
        out: PathBuf,
    },
    /// Spreads a load change through N agents' views and prints how it went as JSON.
    Convergence {
        #[arg(long, default_value_t = 1_000)]
        nodes: usize,
        /// Hold the views in real ClusterViews (slow beyond N = 1,000) rather than compactly.
        #[arg(long)]
        cluster_view: bool,
        /// Most versions an answer to a digest lists (default: the agent's, digest::DETAIL_CAP).
        #[arg(long)]
        limit: Option<usize>,
        /// Share of messages lost (each independently); a lost leg is sent again.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Times a leg is sent at most (default: the agent's, digest::LEG_ATTEMPTS; 1 sends
        /// nothing again).
        #[arg(long)]
        attempts: Option<usize>,
        #[arg(long, default_value_t = 40)]
        rounds: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Runs the overload scenario (every agent sees web at load 0.9) and prints its report
    /// as JSON.
    Overload {
        #[arg(long, default_value = "gru")]
        mode: String,
        #[arg(long, default_value_t = 100)]
        nodes: usize,
        #[arg(long, default_value_t = experiments::OVERLOAD_MAX)]
        max: u32,
        #[arg(long, default_value_t = experiments::OVERLOAD_SECS)]
        secs: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Runs one scenario on a shipped trace (or one generated from --trace-seed) and prints
    /// its report as JSON.
    Run {
        #[arg(long, default_value = "gru")]
        mode: String,
        #[arg(long, default_value = "step")]
        trace: String,
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_os_t = trace::shipped_dir())]
        traces: PathBuf,
        /// Generates the trace kind from this seed instead of reading the shipped file.
        #[arg(long)]
        trace_seed: Option<u64>,
        /// Runs gru at `gru_target_policy(T)`, or HPA at target T.
        #[arg(long)]
        target: Option<f64>,
        /// Overrides the policy's scale-out Step.
        #[arg(long)]
        step_out: Option<u32>,
        /// Overrides the policy's CooldownOut, in seconds.
        #[arg(long)]
        cooldown_out: Option<u64>,
        /// Overrides the policy's scale-in Step.
        #[arg(long)]
        step_in: Option<u32>,
        /// Overrides the policy's CooldownIn, in seconds.
        #[arg(long)]
        cooldown_in: Option<u64>,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gru-sim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Bench {
            seed,
            quick,
            traces,
            trace_seeds,
        } => {
            let options = BenchOptions {
                seed,
                quick,
                traces,
                trace_seeds,
            };
            bench::bench(&options, &mut std::io::stdout().lock())
        }
        Command::Pareto { trace_seeds } => {
            let started = std::time::Instant::now();
            let mut out = std::io::stdout().lock();
            let mut summary = gru_sim::report::Summary::default();
            bench::pareto_section(trace_seeds, &mut summary, &mut out)?;
            summary.add(
                "pareto_secs",
                format!("{:.0}", started.elapsed().as_secs_f64()),
            );
            writeln!(out, "{}", summary.line())?;
            Ok(())
        }
        Command::Traces { out } => {
            for path in trace::write_traces(&out)? {
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Command::Convergence {
            nodes,
            cluster_view,
            limit,
            loss,
            attempts,
            rounds,
            seed,
        } => {
            let view = if cluster_view {
                ViewKind::Cluster
            } else {
                ViewKind::Compact
            };
            let setup = ConvergenceSetup {
                message_limit: limit.unwrap_or(gru_agent::gossip::digest::DETAIL_CAP),
                loss,
                attempts: attempts
                    .unwrap_or(gru_agent::gossip::digest::LEG_ATTEMPTS)
                    .max(1),
                max_rounds: rounds,
                ..ConvergenceSetup::acceptance(nodes, view, seed)
            };
            let result = experiments::convergence(&setup);
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(())
        }
        Command::Overload {
            mode,
            nodes,
            max,
            secs,
            seed,
        } => {
            let mode = parse_mode(&mode)?;
            let report = gru_sim::sim::run(&Scenario::overload(mode, nodes, max, secs, seed));
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Run {
            mode,
            trace,
            nodes,
            seed,
            traces,
            trace_seed,
            target,
            step_out,
            cooldown_out,
            step_in,
            cooldown_in,
        } => {
            let mode = parse_mode(&mode)?;
            let Some(kind) = TraceKind::from_name(&trace) else {
                let kinds: Vec<&str> = TraceKind::ALL.iter().map(|k| k.name()).collect();
                bail!("unknown trace {trace:?} ({})", kinds.join(", "));
            };
            let trace = match trace_seed {
                Some(trace_seed) => Arc::new(kind.generate(trace_seed)),
                None => Arc::new(Trace::load(&traces.join(format!("{trace}.json")))?),
            };
            let mut scenario = Scenario::trace_run(mode, trace, nodes, seed);
            if let Some(target) = target {
                scenario = scenario.with_target(target);
            }
            if let Some(step) = step_out {
                scenario.policy.scaleout.step = step;
            }
            if let Some(cooldown) = cooldown_out {
                scenario.policy.cooldown_out_secs = cooldown;
            }
            if let Some(step) = step_in {
                scenario.policy.scalein.step = step;
            }
            if let Some(cooldown) = cooldown_in {
                scenario.policy.cooldown_in_secs = cooldown;
            }
            let report = gru_sim::sim::run(&scenario);
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
    }
}

fn parse_mode(mode: &str) -> anyhow::Result<Mode> {
    Mode::from_name(mode)
        .with_context(|| format!("unknown mode {mode:?} (gru, gru-original, hpa, dynamite)"))
}
