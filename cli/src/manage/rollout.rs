//! `rollout status|pause|resume|undo <service>`: a service's rolling update.
//!
//! The rollout record (`common::rollout`) is read and written in etcd directly, each change
//! in one transaction that compares the record's revision, so a push or an agent's
//! rollback made meanwhile wins and the command says so. Status also asks every agent
//! which version its instances run, and reads the ledger for a step under way.

use std::collections::BTreeMap;

use common::rollout::{RolloutRecord, RolloutState};
use serde_json::json;

use super::agent_views::ServicesView;
use super::grammar::RolloutAction;
use super::inspect::{split, with_unanswered};
use super::output::{Outcome, age, now_millis};
use super::session::Ctx;

pub async fn rollout(ctx: &Ctx<'_>, action: RolloutAction, service: &str) -> Outcome {
    let descriptor = match ctx.state.service(service) {
        Ok(descriptor) => descriptor.clone(),
        Err(why) => return Outcome::failed(why),
    };
    let version = descriptor.version();
    let read = match ctx.store.read_rollout(ctx.keys, service).await {
        Ok(read) => read,
        Err(err) => return Outcome::failed(format!("cannot read the rollout of {service}: {err}")),
    };
    let current = read.record.clone().filter(|r| r.version == version);
    match action {
        RolloutAction::Status => status(ctx, service, &version, read.record).await,
        RolloutAction::Pause | RolloutAction::Resume => {
            let Some(mut record) = current else {
                return Outcome::failed(format!(
                    "no rollout of {service} to {}: its version {version} was not rolled out by `gru config push`",
                    action.as_str()
                ));
            };
            let (from, to) = if action == RolloutAction::Pause {
                (&[RolloutState::Rolling][..], RolloutState::Paused)
            } else {
                (
                    &[RolloutState::Paused, RolloutState::Halted][..],
                    RolloutState::Rolling,
                )
            };
            if !from.contains(&record.state) {
                return Outcome::failed(format!(
                    "the rollout of {service} is {}: nothing to {}",
                    record.state.as_str(),
                    action.as_str()
                ));
            }
            record.state = to;
            record.reason =
                (to == RolloutState::Paused).then(|| "paused by an operator".to_owned());
            let written = ctx
                .store
                .update_rollout(ctx.keys, service, read.revision, &record)
                .await;
            written_outcome(
                written,
                service,
                format!("rollout of {service} {}", to.as_str()),
            )
        }
        RolloutAction::Undo => {
            let back = read
                .record
                .as_ref()
                .filter(|r| r.version == version)
                .and_then(|r| Some((r.from.clone()?, r.from_version.clone()?)));
            let Some((previous, previous_version)) = back else {
                return Outcome::failed(format!(
                    "no previous descriptor of {service} is recorded (a rollback, a new service, or a write around `gru config push`); push the one you want with `gru config push`"
                ));
            };
            let stored = ctx
                .state
                .raw_services
                .get(service)
                .map(|raw| raw.to_string())
                .unwrap_or_default();
            let record = RolloutRecord::new(
                previous_version.clone(),
                Some((version.clone(), stored)),
                "undo",
                now_millis(),
            );
            let written = ctx
                .store
                .restore_descriptor(ctx.keys, service, read.revision, &previous, &record)
                .await;
            written_outcome(
                written,
                service,
                format!("{service}: {version} undone, rolling back to {previous_version}"),
            )
        }
    }
}

fn written_outcome(
    written: Result<bool, gru_agent::store::StoreError>,
    service: &str,
    done: String,
) -> Outcome {
    match written {
        Ok(true) => Outcome::ok(done.clone(), json!({ "service": service, "done": done })),
        Ok(false) => Outcome::failed(format!(
            "the rollout of {service} changed meanwhile (a push, an agent's rollback or another operator): look at `rollout status {service}` and try again"
        )),
        Err(err) => Outcome::failed(format!("cannot write the rollout of {service}: {err}")),
    }
}

async fn status(
    ctx: &Ctx<'_>,
    service: &str,
    version: &str,
    record: Option<RolloutRecord>,
) -> Outcome {
    let nodes = ctx.all_nodes();
    let (views, unanswered) = split(ctx.get_each::<ServicesView>(&nodes, "services").await);
    // version -> node -> instances
    let mut on: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (node, view) in &views {
        for instance in view
            .services
            .get(service)
            .map(|s| s.instances.as_slice())
            .unwrap_or_default()
        {
            let v = instance
                .version
                .clone()
                .unwrap_or_else(|| "unlabelled".to_owned());
            *on.entry(v).or_default().entry(node.clone()).or_default() += 1;
        }
    }
    let total: usize = on.values().flat_map(|n| n.values()).sum();
    let updated: usize = on.get(version).map_or(0, |n| n.values().sum());
    let step = ctx
        .store
        .read_ledger(ctx.keys, service)
        .await
        .ok()
        .and_then(|l| l.rollout_step);
    let now = now_millis();
    let mut lines = Vec::new();
    let about_this = record.as_ref().filter(|r| r.version == version);
    match about_this {
        Some(record) => {
            let from = record.from_version.as_deref().unwrap_or("?");
            lines.push(format!(
                "{service}: {} to {version} from {from} (started {} ago by {})",
                record.state.as_str(),
                age(now, record.started_at),
                record.by
            ));
            if let Some(back) = &record.rolled_back {
                lines.push(format!(
                    "  rolled back from {} {} ago: {} (on {})",
                    back.version,
                    age(now, back.at),
                    back.reason,
                    back.node
                ));
            }
            if let Some(reason) = &record.reason {
                lines.push(format!("  {}: {reason}", record.state.as_str()));
            }
        }
        None => lines.push(format!(
            "{service}: version {version} (no rollout recorded for it)"
        )),
    }
    if let Some(step) = &step {
        lines.push(format!(
            "  step under way: {} replacing {} instance(s) with {}",
            step.node, step.count, step.version
        ));
    }
    let per_version: Vec<String> = on
        .iter()
        .map(|(v, nodes)| {
            let where_: Vec<String> = nodes.iter().map(|(n, c)| format!("{n}: {c}")).collect();
            let mark = if v == version { " (current)" } else { "" };
            format!(
                "  {v}{mark}: {} ({})",
                nodes.values().sum::<usize>(),
                where_.join(", ")
            )
        })
        .collect();
    lines.push(format!("  instances: {updated} of {total} on {version}"));
    lines.extend(per_version);
    let complete = updated == total && unanswered.is_empty();
    lines.push(format!(
        "  {}",
        if complete {
            "complete: every instance runs the current version"
        } else {
            "in progress"
        }
    ));
    // The descriptor it replaces may hold registry credentials: shown by version only.
    let shown = record.map(|r| RolloutRecord { from: None, ..r });
    let outcome = Outcome::ok(
        lines.join("\n"),
        json!({
            "service": service,
            "version": version,
            "record": shown,
            "step": step,
            "instances": on,
            "updated": updated,
            "total": total,
            "complete": complete,
        }),
    );
    with_unanswered(outcome, "rollout status", &unanswered)
}
