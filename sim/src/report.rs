//! The bench's tables and its one-line summary.

use std::fmt::Write as _;

use crate::experiments::{
    ConvergenceResult, EqualCostHow, KindVerdict, OVERLOAD_MAX, OvershootRow, ParetoCell,
};
use crate::scenario::{Mode, ViewKind};
use crate::sim::RunReport;

/// A Markdown table, columns sized to their contents.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut text = String::from("|");
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map_or("", String::as_str);
                let _ = write!(text, " {cell:<width$} |");
            }
            text.push('\n');
            text
        };
        let mut text = line(&self.header);
        text.push('|');
        for width in &widths {
            text.push_str(&"-".repeat(width + 2));
            text.push('|');
        }
        text.push('\n');
        for row in &self.rows {
            text.push_str(&line(row));
        }
        text
    }
}

fn view_name(result: &ConvergenceResult) -> String {
    let view = match result.view {
        ViewKind::Cluster => "ClusterView",
        ViewKind::Compact => "compact",
    };
    match result.message_limit {
        Some(limit) => format!("{view}, ≤ {limit} versions/answer"),
        None => view.to_owned(),
    }
}

pub fn convergence_table(results: &[ConvergenceResult]) -> String {
    let mut table = Table::new(&[
        "N",
        "view",
        "loss",
        "rounds to 99 % within 5 %",
        "goal log₅N+3",
        "requests/agent/round",
        "replies/agent/round",
        "messages/agent/round",
        "max requests by one agent",
        "share holding it at the end",
        "KiB/agent/round steady (max one agent)",
        "KiB/agent/round after the change, worst round (max one agent)",
    ]);
    for r in results {
        table.row(vec![
            r.nodes.to_string(),
            view_name(r),
            match (r.loss > 0.0, r.attempts) {
                (false, _) => "0 %".to_owned(),
                (true, 1) => format!("{:.0} %, not sent again", r.loss * 100.0),
                (true, n) => format!("{:.0} %, each leg sent up to {n} times", r.loss * 100.0),
            },
            r.rounds.map_or_else(
                || format!("not within {}", r.share_by_round.len()),
                |n| n.to_string(),
            ),
            format!("{:.2}", r.goal),
            format!("{:.2}", r.requests_per_agent_round),
            format!("{:.2}", r.replies_per_agent_round),
            format!(
                "{:.2}",
                r.requests_per_agent_round + r.replies_per_agent_round
            ),
            r.max_requests_per_agent.to_string(),
            format!(
                "{:.1} % after {} rounds",
                r.share_by_round.last().copied().unwrap_or(0.0) * 100.0,
                r.share_by_round.len()
            ),
            format!(
                "{:.1} ({:.1})",
                r.steady_bytes_per_agent_round / 1024.0,
                r.steady_max_bytes_per_agent as f64 / 1024.0
            ),
            format!(
                "{:.1} ({:.1})",
                r.change_bytes_per_agent_round / 1024.0,
                r.change_max_bytes_per_agent as f64 / 1024.0
            ),
        ]);
    }
    table.render()
}

pub fn overshoot_table(rows: &[OvershootRow]) -> String {
    let mut table = Table::new(&[
        "N",
        "gru: added per CooldownOut window (max)",
        &format!("gru: peak (max {OVERLOAD_MAX})"),
        "gru: violations",
        "gru-original: added per window (max)",
        "gru-original: peak",
        "gru-original: violations",
    ]);
    for row in rows {
        table.row(vec![
            row.nodes.to_string(),
            row.gru.max_added_per_window.to_string(),
            row.gru.peak_instances.to_string(),
            violations(&row.gru),
            row.original.max_added_per_window.to_string(),
            row.original.peak_instances.to_string(),
            violations(&row.original),
        ]);
    }
    table.render()
}

fn violations(report: &RunReport) -> String {
    let v = report.violations;
    if v.total() == 0 {
        "0".to_owned()
    } else {
        format!(
            "{} (max {}, min {}, step {}/{})",
            v.total(),
            v.above_max,
            v.below_min,
            v.step_out,
            v.step_in
        )
    }
}

/// Ticks above max / below min.
fn bounds(report: &RunReport) -> String {
    let v = report.violations;
    format!("{} / {}", v.above_max, v.below_min)
}

/// Ticks with more than one Step in a cooldown window, out / in.
fn steps(report: &RunReport) -> String {
    let v = report.violations;
    format!("{} / {}", v.step_out, v.step_in)
}

pub fn trace_table(reports: &[RunReport]) -> String {
    let mut table = Table::new(&[
        "trace",
        "mode",
        "SLO-violation s",
        "container-s",
        "scaling actions (out/in)",
        "instances added/removed",
        "peak",
        "above max / below min (ticks)",
        "> Step per window, out / in (ticks)",
        "messages/agent/round",
    ]);
    for r in reports {
        table.row(vec![
            r.scenario.trim_end_matches(" trace").to_owned(),
            r.mode.to_string(),
            r.slo_violation_secs.to_string(),
            r.container_secs.to_string(),
            actions(r),
            format!("{}/{}", r.instances_added, r.instances_removed),
            r.peak_instances.to_string(),
            bounds(r),
            steps(r),
            if r.mode.has_agents() {
                format!("{:.2}", r.messages_per_agent_round())
            } else {
                "-".to_owned()
            },
        ]);
    }
    table.render()
}

fn actions(r: &RunReport) -> String {
    format!(
        "{} ({}/{})",
        r.scaling_actions(),
        r.scale_out_actions,
        r.scale_in_actions
    )
}

pub fn fault_table(reports: &[RunReport]) -> String {
    let mut table = Table::new(&[
        "faults",
        "mode",
        "SLO-violation s",
        "container-s",
        "actions (out/in)",
        "repaired (min / max)",
        "peak",
        "above max / below min (ticks)",
        "> Step per window, out / in (ticks)",
        "longest below min s",
        "claims won/lost/refused",
        "unreachable",
    ]);
    for r in reports {
        let faults = r
            .scenario
            .split_once(" with ")
            .map_or("no fault", |(_, f)| f)
            .to_owned();
        table.row(vec![
            faults,
            r.mode.to_string(),
            r.slo_violation_secs.to_string(),
            r.container_secs.to_string(),
            actions(r),
            repaired(r),
            r.peak_instances.to_string(),
            bounds(r),
            steps(r),
            r.longest_below_min_secs.to_string(),
            if r.mode == Mode::Gru {
                format!("{}/{}/{}", r.claims_won, r.claims_lost, r.claims_refused)
            } else {
                "-".to_owned()
            },
            r.store_unreachable.to_string(),
        ]);
    }
    table.render()
}

/// Instances started to restore min / stopped to get back under max.
fn repaired(r: &RunReport) -> String {
    format!(
        "{} / {}",
        r.instances_repaired, r.instances_repaired_above_max
    )
}

/// A partition while the cluster is at max: the ticks above max while the partition holds
/// (the minority's leases expired; nothing can prevent them) and after it healed (what the
/// ceiling repair ends), and how long after the heal the cluster was last above max.
pub fn partition_at_max_table(reports: &[RunReport]) -> String {
    let mut table = Table::new(&[
        "faults",
        "mode",
        "actions (out/in)",
        "repaired (min / max)",
        "peak",
        "above max during / after heal (ticks)",
        "last above max, s after heal",
        "below min (ticks)",
        "> Step per window, out / in (ticks)",
        "claims won/lost/refused",
        "unreachable",
    ]);
    for r in reports {
        let faults = r
            .scenario
            .split_once(" with ")
            .map_or("no fault", |(_, f)| f)
            .to_owned();
        table.row(vec![
            faults,
            r.mode.to_string(),
            actions(r),
            repaired(r),
            r.peak_instances.to_string(),
            format!(
                "{} / {}",
                r.above_max_during_partition, r.above_max_after_heal
            ),
            r.above_max_secs_after_heal.to_string(),
            r.violations.below_min.to_string(),
            steps(r),
            if r.mode == Mode::Gru {
                format!("{}/{}/{}", r.claims_won, r.claims_lost, r.claims_refused)
            } else {
                "-".to_owned()
            },
            r.store_unreachable.to_string(),
        ]);
    }
    table.render()
}

/// A ratio for the summary: three decimals (so that 1.005 does not read as 1.00), `inf` when infinite.
pub fn ratio(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.3}")
    } else {
        "inf".to_owned()
    }
}

/// One row per trace kind and setting: the means over the seeds.
pub fn pareto_table(cells: &[ParetoCell]) -> String {
    let mut table = Table::new(&[
        "trace",
        "setting",
        "SLO-violation s (mean)",
        "container-s (mean)",
        "seeds",
        "invariant violations",
    ]);
    for cell in cells {
        table.row(vec![
            cell.kind.to_string(),
            cell.setting.label(),
            format!("{:.1}", cell.point.slo),
            format!("{:.0}", cell.point.cost),
            cell.seeds.to_string(),
            cell.violations.to_string(),
        ]);
    }
    table.render()
}

/// One row per trace kind: gru against HPA at equal cost, and the dominance verdicts.
pub fn verdict_table(verdicts: &[KindVerdict]) -> String {
    let mut table = Table::new(&[
        "trace",
        "hpa-0.6: container-s / SLO-s",
        "gru SLO-s at that cost",
        "how",
        "ratio",
        "dominates dynamite",
        "dominates gru-original",
    ]);
    let yes = |b: bool| if b { "yes" } else { "no" }.to_owned();
    for v in verdicts {
        let (hpa, gru, how, r) = match v.equal_cost {
            Some(e) => (
                format!("{:.0} / {:.1}", e.hpa.cost, e.hpa.slo),
                e.gru_slo.map_or("-".to_owned(), |s| format!("{s:.1}")),
                match e.how {
                    EqualCostHow::InBand => "within ±5 %",
                    EqualCostHow::Interpolated => "interpolated",
                    EqualCostHow::GruCheaper => "gru's costliest (cheaper)",
                    EqualCostHow::GruCostlier => "gru never that cheap",
                }
                .to_owned(),
                ratio(e.ratio),
            ),
            None => (
                "not run".to_owned(),
                "-".to_owned(),
                "-".to_owned(),
                "inf".to_owned(),
            ),
        };
        table.row(vec![
            v.kind.to_string(),
            hpa,
            gru,
            how,
            r,
            yes(v.dominates_dynamite),
            yes(v.dominates_gru_original),
        ]);
    }
    table.render()
}

/// `key=value` pairs, space-separated, for the bench's last line.
#[derive(Debug, Default)]
pub struct Summary {
    pairs: Vec<(String, String)>,
}

impl Summary {
    pub fn add(&mut self, key: &str, value: impl ToString) {
        self.pairs.push((key.to_owned(), value.to_string()));
    }

    pub fn line(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(&["a", "long header"]);
        table.row(vec!["wide cell".to_owned(), "1".to_owned()]);
        assert_eq!(
            table.render(),
            "| a         | long header |\n|-----------|-------------|\n| wide cell | 1           |\n"
        );
        let mut summary = Summary::default();
        summary.add("x", 1);
        summary.add("y", "two");
        assert_eq!(summary.line(), "x=1 y=two");
    }
}
