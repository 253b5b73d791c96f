//! What the agent does on its own node, as values: which of its containers a reconcile
//! keeps (adopts) or removes ([`verdict`]), how a sidecar's instance names its parent
//! ([`attached_instance`], [`parent_of`]), and which discovery records it writes and
//! deletes so that they are exactly its running instances, ready ones in discovery and the
//! others as starting records ([`publish`]). The daemon
//! (`runtime/autonomic/reconcile.rs`) lists the containers and does what these say.
//!
//! Invariants: Docker is the truth: a running container with its node's labels is adopted,
//! whoever started it (a restarted agent adopts its own without duplicates); a container
//! that is not running, or a sidecar whose parent does not run, is removed; a container in
//! a passing state (paused, restarting, being removed) is left alone. The records are the
//! running instances, each once, at the address it serves; after a lease was lost every
//! record is written again (etcd deleted them with the lease).

use std::collections::{BTreeMap, BTreeSet};

use crate::docker::ContainerState;

/// The instance id of a sidecar started for `parent`: `<parent>-<service>`, so the link
/// survives an agent restart (it is in the container's labels).
pub fn attached_instance(parent: &str, service: &str) -> String {
    format!("{parent}-{service}")
}

/// The parent instance of an attached instance id, if it is one.
pub fn parent_of<'a>(instance: &'a str, service: &str) -> Option<&'a str> {
    instance.strip_suffix(service)?.strip_suffix('-')
}

/// What a reconcile does with one of its node's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It runs: adopt it (an instance in the knowledge, followed, published).
    Keep,
    /// Remove it; a running one (an orphaned sidecar) is stopped first.
    Remove { stop_first: bool },
    /// A passing state (paused, restarting, being removed, unknown): neither.
    Leave,
}

/// What to do with a container of `service` whose instance id is `instance`, in `state`,
/// given the instances that run on this node (`running`): a sidecar whose parent is not
/// among them is an orphan.
pub fn verdict(
    instance: &str,
    service: &str,
    state: ContainerState,
    running: &BTreeSet<&str>,
) -> Verdict {
    let orphan = parent_of(instance, service).is_some_and(|parent| !running.contains(parent));
    match state {
        ContainerState::Running if !orphan => Verdict::Keep,
        ContainerState::Running => Verdict::Remove { stop_first: true },
        ContainerState::Exited | ContainerState::Dead | ContainerState::Created => {
            Verdict::Remove { stop_first: false }
        }
        ContainerState::Paused
        | ContainerState::Restarting
        | ContainerState::Removing
        | ContainerState::Unknown => Verdict::Leave,
    }
}

/// An instance's record: the service, the address it serves on, and whether it is ready
/// (in discovery) or not (a starting record: counted, not served).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub service: String,
    pub address: String,
    pub ready: bool,
}

/// The discovery writes that make the records this agent wrote (`published`) exactly
/// `wanted` (its running instances), by instance id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Publish {
    /// Records to delete (instance, service): gone. Deleted before the new ones are written.
    pub deregister: Vec<(String, String)>,
    /// Forget every record written: they went with a lost lease.
    pub forget_all: bool,
    /// Records to write (instance, record): new, moved to another address, or whose
    /// readiness changed. Each write replaces the instance's record in one step (the
    /// ready record or the starting one, the other deleted with it), so an instance whose
    /// record changes is never missing from the counts.
    pub register: Vec<(String, Record)>,
}

/// What to delete and write so that the records are `wanted`, from what this agent
/// published; `lease_changed` says the records were written under a lease that is gone,
/// so all are written again.
pub fn publish(
    wanted: &BTreeMap<String, Record>,
    published: &BTreeMap<String, Record>,
    lease_changed: bool,
) -> Publish {
    let deregister = published
        .iter()
        .filter(|(instance, record)| {
            wanted
                .get(*instance)
                .is_none_or(|w| w.service != record.service)
        })
        .map(|(instance, record)| (instance.clone(), record.service.clone()))
        .collect();
    let register = wanted
        .iter()
        .filter(|(instance, record)| lease_changed || published.get(*instance) != Some(record))
        .map(|(instance, record)| (instance.clone(), record.clone()))
        .collect();
    Publish {
        deregister,
        forget_all: lease_changed,
        register,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sidecar_names_its_parent_and_an_instance_is_no_sidecar() {
        let sidecar = attached_instance("a1b2", "proxy");
        assert_eq!(sidecar, "a1b2-proxy");
        assert_eq!(parent_of(&sidecar, "proxy"), Some("a1b2"));
        assert_eq!(parent_of("a1b2", "proxy"), None);
        assert_eq!(parent_of("a1b2proxy", "proxy"), None);
        assert_eq!(parent_of(&sidecar, "web"), None);
    }

    #[test]
    fn reconcile_keeps_running_removes_stopped_and_orphans_leaves_passing_states() {
        let running: BTreeSet<&str> = ["p1", "p1-proxy", "p2-proxy"].into_iter().collect();
        let table = [
            ("p1", "web", ContainerState::Running, Verdict::Keep),
            ("p1-proxy", "proxy", ContainerState::Running, Verdict::Keep),
            // p2 does not run: its sidecar is an orphan, stopped then removed.
            (
                "p2-proxy",
                "proxy",
                ContainerState::Running,
                Verdict::Remove { stop_first: true },
            ),
            (
                "p3",
                "web",
                ContainerState::Exited,
                Verdict::Remove { stop_first: false },
            ),
            (
                "p4",
                "web",
                ContainerState::Dead,
                Verdict::Remove { stop_first: false },
            ),
            (
                "p5",
                "web",
                ContainerState::Created,
                Verdict::Remove { stop_first: false },
            ),
            ("p6", "web", ContainerState::Paused, Verdict::Leave),
            ("p7", "web", ContainerState::Restarting, Verdict::Leave),
            ("p8", "web", ContainerState::Removing, Verdict::Leave),
            ("p9", "web", ContainerState::Unknown, Verdict::Leave),
        ];
        for (instance, service, state, expected) in table {
            assert_eq!(
                verdict(instance, service, state, &running),
                expected,
                "{instance} {state:?}"
            );
        }
    }

    fn record(service: &str, address: &str, ready: bool) -> Record {
        Record {
            service: service.to_owned(),
            address: address.to_owned(),
            ready,
        }
    }

    fn records(entries: &[(&str, &str, &str)]) -> BTreeMap<String, Record> {
        entries
            .iter()
            .map(|(i, s, a)| ((*i).to_owned(), record(s, a, true)))
            .collect()
    }

    #[test]
    fn publishing_writes_what_is_missing_and_deletes_what_is_gone_or_moved() {
        let published = records(&[("a", "web", "n:1"), ("b", "web", "n:2"), ("c", "db", "n:3")]);
        let wanted = records(&[("a", "web", "n:1"), ("b", "web", "n:9"), ("d", "db", "n:4")]);
        let plan = publish(&wanted, &published, false);
        // b moved: its record is written over, not deleted first.
        assert_eq!(plan.deregister, vec![("c".into(), "db".into())]);
        assert!(!plan.forget_all);
        let written: Vec<&str> = plan.register.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(written, ["b", "d"]);
        // Nothing to do when the records are what runs.
        assert_eq!(publish(&wanted, &wanted, false), Publish::default());
    }

    #[test]
    fn a_change_of_readiness_rewrites_the_record_without_deleting_it() {
        let starting = BTreeMap::from([("a".to_owned(), record("web", "n:1", false))]);
        let ready = BTreeMap::from([("a".to_owned(), record("web", "n:1", true))]);
        for (from, to) in [(&starting, &ready), (&ready, &starting)] {
            let plan = publish(to, from, false);
            assert!(plan.deregister.is_empty(), "{plan:?}");
            assert_eq!(plan.register, vec![("a".to_owned(), to["a"].clone())]);
        }
        assert_eq!(publish(&starting, &starting, false), Publish::default());
    }

    #[test]
    fn after_a_lost_lease_every_record_is_written_again() {
        let both = records(&[("a", "web", "n:1"), ("b", "web", "n:2")]);
        let plan = publish(&both, &both, true);
        assert!(plan.deregister.is_empty());
        assert!(plan.forget_all);
        assert_eq!(plan.register.len(), 2);
    }

    /// Random published and wanted records: applying the plan (delete, forget if told,
    /// write) to what was published gives exactly what is wanted.
    #[test]
    fn random_publish_plans_end_at_exactly_the_wanted_records() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};

        for seed in 0..500u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let random = |rng: &mut StdRng| -> BTreeMap<String, Record> {
                (0..rng.random_range(0..6))
                    .map(|_| {
                        let instance = format!("i{}", rng.random_range(0..8));
                        let address = format!("n:{}", rng.random_range(0..3));
                        let service = ["web", "db"][rng.random_range(0..2)];
                        (instance, record(service, &address, rng.random_bool(0.5)))
                    })
                    .collect()
            };
            let (published, wanted) = (random(&mut rng), random(&mut rng));
            let lease_changed = rng.random_bool(0.3);
            let plan = publish(&wanted, &published, lease_changed);
            let mut records = published.clone();
            for (instance, _) in &plan.deregister {
                records.remove(instance);
            }
            if plan.forget_all {
                records.clear();
            }
            for (instance, record) in &plan.register {
                // A write replaces only a record of the same service (the same keys).
                if let Some(old) = records.insert(instance.clone(), record.clone()) {
                    assert_eq!(old.service, record.service, "seed {seed}: {instance}");
                }
            }
            assert_eq!(records, wanted, "seed {seed}");
        }
    }
}
