//! Members that accept connections but do not answer (a stopped process, a stalled disk, a
//! member cut off from its quorum) or that are gone are left out of the store's balanced
//! client until they answer again.
//!
//! The balanced client (tonic's power of two choices over every endpoint, all of equal
//! load) keeps sending requests to such a member, and each one waits for its attempt's
//! timeout (or fails) before it is retried elsewhere: an agent's loop, which makes a few
//! requests per tick, loses seconds per tick for as long as the member hangs. So a failed
//! attempt starts a probe of every member (a linearizable read, [`PROBE_TIMEOUT`]); the
//! members that do not answer are removed from the balanced client, and only they are
//! probed again, every [`PROBE_INTERVAL_MIN`] doubling to [`PROBE_INTERVAL_MAX`], and put
//! back as soon as they answer.
//!
//! ```text
//!   attempt failed ──► probe every member ──(some answer)──► remove the silent ones ──┐
//!        ▲                │                                                          │
//!        │                └─(none answers: etcd is down or electing)──► leave nobody │
//!        │                     out (each member must be found again); probe again    │
//!        │                                                                           │
//!        └── another failure while members are left out: probe all again  ◄── probe the
//!                                  ones left out; put back those that answer; end when none is left
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use super::error::is_transient;

/// How long a member may take to answer a probe before it is left out.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// First pause before members left out are probed again; it doubles while they stay silent.
pub const PROBE_INTERVAL_MIN: Duration = Duration::from_secs(1);
/// Longest pause between two probes of the members left out (a member gone for good costs
/// one connection attempt per agent this often).
pub const PROBE_INTERVAL_MAX: Duration = Duration::from_secs(8);

/// Which members the balanced client leaves out, and the probe that decides it.
pub(super) struct MemberHealth {
    /// Every endpoint, spelled as the balanced client keys it (scheme included).
    members: Vec<String>,
    options: ConnectOptions,
    state: Mutex<ProbeState>,
}

#[derive(Debug, Default)]
struct ProbeState {
    /// A probe task is running (there is never more than one).
    probing: bool,
    /// Members removed from the balanced client.
    left_out: BTreeSet<String>,
    /// A request failed while a probe was running: its next round probes every member.
    recheck: bool,
    /// When the last probe ended: while etcd is down every request fails, and one probe
    /// per [`PROBE_INTERVAL_MIN`] is enough.
    ended: Option<tokio::time::Instant>,
}

/// What one probe round decided.
#[derive(Debug, PartialEq, Eq)]
struct Round {
    /// Members to put back in the client (`true`) or to leave out (`false`).
    changes: Vec<(String, bool)>,
    /// Every member answers (or those left out answer again): the probe ends.
    done: bool,
    /// The next round probes every member, not only those left out.
    probe_all_next: bool,
    /// The next round comes after the shortest interval.
    reset_interval: bool,
}

impl ProbeState {
    /// Takes in a round that probed `probed` (every member when `all`) and heard from
    /// `answering`, and says what changes.
    fn after_round(&mut self, probed: &[String], answering: &BTreeSet<String>, all: bool) -> Round {
        // No member answers: etcd is down or without a leader, not one member in trouble;
        // leave nobody out, so that whichever returns first is found.
        let nobody_answered = all && answering.is_empty();
        let mut changes = Vec::new();
        for member in probed {
            let keep = nobody_answered || answering.contains(member);
            let changed = if keep {
                self.left_out.remove(member)
            } else {
                self.left_out.insert(member.clone())
            };
            if changed {
                changes.push((member.clone(), keep));
            }
        }
        let recheck = std::mem::take(&mut self.recheck);
        let done = self.left_out.is_empty() && !nobody_answered && !recheck;
        if done {
            self.probing = false;
            self.ended = Some(tokio::time::Instant::now());
        }
        Round {
            changes,
            done,
            probe_all_next: recheck || nobody_answered,
            reset_interval: recheck,
        }
    }
}

impl MemberHealth {
    /// `endpoints` as the operator gave them; `tls` says how a bare `host:port` is reached.
    pub(super) fn new(endpoints: &[String], options: ConnectOptions, tls: bool) -> MemberHealth {
        let members = endpoints
            .iter()
            .map(|e| {
                if e.starts_with("http://") || e.starts_with("https://") {
                    e.clone()
                } else if tls {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect();
        MemberHealth {
            members,
            options,
            state: Mutex::new(ProbeState::default()),
        }
    }

    /// A request to some member failed: unless a probe runs already (or there is only one
    /// member), probe every member in the background and keep `client` away from those
    /// that do not answer.
    pub(super) fn suspect(self: &Arc<Self>, client: &Client) {
        if self.members.len() < 2 {
            return;
        }
        {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.probing {
                state.recheck = true;
                return;
            }
            if state
                .ended
                .is_some_and(|at| at.elapsed() < PROBE_INTERVAL_MIN)
            {
                return;
            }
            state.probing = true;
        }
        let health = self.clone();
        let client = client.clone();
        tokio::spawn(async move { health.probe(client).await });
    }

    async fn probe(self: Arc<Self>, client: Client) {
        let mut all = true;
        let mut interval = PROBE_INTERVAL_MIN;
        loop {
            let probed: Vec<String> = if all {
                self.members.clone()
            } else {
                let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.left_out.iter().cloned().collect()
            };
            let answering = answering(&probed, &self.options).await;
            let round = self
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .after_round(&probed, &answering, all);
            if round.reset_interval {
                interval = PROBE_INTERVAL_MIN;
            }
            all = round.probe_all_next;
            let (changes, done) = (round.changes, round.done);
            for (member, keep) in changes {
                let applied = if keep {
                    client.add_endpoint(&member).await
                } else {
                    client.remove_endpoint(&member).await
                };
                match (keep, applied) {
                    (true, Ok(())) => {
                        tracing::info!(%member, "etcd member answers again; requests go to it again")
                    }
                    (false, Ok(())) => tracing::warn!(
                        %member,
                        timeout = ?PROBE_TIMEOUT,
                        "etcd member does not answer; requests avoid it until it does"
                    ),
                    (_, Err(err)) => {
                        tracing::warn!(%member, error = %err, "cannot update the etcd client's members")
                    }
                }
            }
            if done {
                return;
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(PROBE_INTERVAL_MAX);
        }
    }
}

/// Those of `members` that answer a probe, probed at the same time.
async fn answering(members: &[String], options: &ConnectOptions) -> BTreeSet<String> {
    let mut probes = tokio::task::JoinSet::new();
    for member in members {
        let (member, options) = (member.clone(), options.clone());
        probes.spawn(async move {
            let answers = answers(&member, options).await;
            (member, answers)
        });
    }
    let mut answering = BTreeSet::new();
    while let Some(probe) = probes.join_next().await {
        if let Ok((member, true)) = probe {
            answering.insert(member);
        }
    }
    answering
}

/// Whether `member` answers a linearizable read (so it is up and has a quorum) within
/// [`PROBE_TIMEOUT`]. A refusal is an answer too (e.g. a user not allowed to read the key).
async fn answers(member: &str, options: ConnectOptions) -> bool {
    let probe = async {
        let mut client = Client::connect([member], Some(options)).await?;
        client.get("health", None).await.map(drop)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => !is_transient(&err),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[&str]) -> BTreeSet<String> {
        members.iter().map(|m| (*m).to_owned()).collect()
    }

    fn names(members: &[&str]) -> Vec<String> {
        members.iter().map(|m| (*m).to_owned()).collect()
    }

    #[tokio::test]
    async fn a_silent_member_is_left_out_and_put_back_when_it_answers() {
        let mut state = ProbeState {
            probing: true,
            ..ProbeState::default()
        };
        let round = state.after_round(&names(&["a", "b", "c"]), &set(&["a", "c"]), true);
        assert_eq!(round.changes, vec![("b".to_owned(), false)]);
        assert!(!round.done && !round.probe_all_next);
        // Only "b" is probed next; still silent: nothing changes.
        let round = state.after_round(&names(&["b"]), &set(&[]), false);
        assert_eq!(round.changes, vec![]);
        assert!(!round.done && !round.probe_all_next, "{round:?}");
        let round = state.after_round(&names(&["b"]), &set(&["b"]), false);
        assert_eq!(round.changes, vec![("b".to_owned(), true)]);
        assert!(round.done);
        assert!(!state.probing && state.left_out.is_empty());
    }

    #[tokio::test]
    async fn when_nobody_answers_nobody_is_left_out() {
        let mut state = ProbeState {
            probing: true,
            left_out: set(&["b"]),
            ..ProbeState::default()
        };
        let round = state.after_round(&names(&["a", "b", "c"]), &set(&[]), true);
        assert_eq!(round.changes, vec![("b".to_owned(), true)]);
        assert!(!round.done && round.probe_all_next);
        assert!(state.probing && state.left_out.is_empty());
    }

    #[tokio::test]
    async fn a_failure_during_a_probe_makes_the_next_round_probe_everyone_soon() {
        let mut state = ProbeState {
            probing: true,
            left_out: set(&["b"]),
            recheck: true,
            ..ProbeState::default()
        };
        let round = state.after_round(&names(&["b"]), &set(&["b"]), false);
        assert_eq!(round.changes, vec![("b".to_owned(), true)]);
        assert!(!round.done && round.probe_all_next && round.reset_interval);
        let round = state.after_round(&names(&["a", "b", "c"]), &set(&["a", "b", "c"]), true);
        assert!(round.done && round.changes.is_empty());
    }
}
