//! A watch-fed copy of one key prefix ([`Mirror`]): loaded with one linearizable read,
//! then kept current by a watch that starts right after that read's revision, so that a
//! reader (the agent's tick) finds the keys in memory and sends etcd nothing while nothing
//! changes.
//!
//! ```text
//!   Loading ──(read prefix at revision R: keys replaced)──► Following (watch from R + 1)
//!      ▲                                                        │   puts and deletes applied
//!      │                                                        │   every resync period: read
//!      │                                                        │   the prefix again at R',
//!      │                                                        │   keys replaced, events up
//!      │                                                        │   to R' skipped
//!      └──(watch cancelled or compacted, stream broken, a read failed)──┘
//! ```
//!
//! Invariants: the keys are served only while [`Mirror::read`] says they are ready: loaded
//! by a read, followed by a watch that has not failed since, and etcd not known to be
//! unreachable ([`Store::is_reachable`]); otherwise `read` answers `None` and the caller
//! reads etcd itself (never a guess). A watch that is cancelled (its start revision was
//! compacted, the member lost its leader), that closes or breaks, makes the mirror unready
//! at once and rebuilds it with a fresh read (with backoff while etcd does not answer). A
//! watch that stays open and silently delivers nothing (a stuck member, a lost event) is
//! corrected by the periodic resync: the keys are never older than one resync period plus
//! one read's deadline. The task stops when the `Mirror` is dropped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{EventType, WatchOptions, WatchResponse};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Store;

/// How often a mirror reads its whole prefix again, whatever its watch says: the bound on
/// how long a watch that silently stopped delivering (and was not found broken) can serve
/// stale keys. One read per period: 1/30 message per second.
pub const MIRROR_RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// First pause before a failed rebuild is tried again; it doubles up to
/// [`MIRROR_MAX_BACKOFF`].
const MIRROR_INITIAL_BACKOFF: Duration = Duration::from_millis(200);
const MIRROR_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A watch that ran this long before it was lost worked: its rebuild starts without the
/// backoff of the failures before it.
const WATCH_HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// How long opening a watch may take before it counts as failed.
const WATCH_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How a mirror follows its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorSettings {
    /// See [`MIRROR_RESYNC_PERIOD`].
    pub resync_every: Duration,
}

impl Default for MirrorSettings {
    fn default() -> Self {
        MirrorSettings {
            resync_every: MIRROR_RESYNC_PERIOD,
        }
    }
}

/// What a mirror has done so far, for its tests and its log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorStatus {
    /// The keys are served (see [`Mirror::read`], which also asks whether etcd answers).
    pub following: bool,
    /// The revision the keys reflect: the last read's, or the last event applied since.
    pub revision: i64,
    /// Reads of the whole prefix that replaced the keys: the first load, rebuilds, resyncs.
    pub loads: u64,
    /// Times the watch was found cancelled, compacted or broken (each leads to a rebuild).
    pub lost: u64,
    /// Why the watch was last lost.
    pub last_lost: Option<String>,
    /// Periodic resyncs that found the keys different from what the watch had made them.
    pub corrected: u64,
}

/// One change a watch reported: the key, its new value (`None`: deleted), and the revision
/// of the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEvent {
    pub key: String,
    pub value: Option<String>,
    pub revision: i64,
}

/// The keys and where they come from; stepped by the task through the methods below
/// (synchronous, no I/O: unit-tested alone).
#[derive(Debug, Default)]
struct MirrorState {
    keys: BTreeMap<String, String>,
    /// The revision of the last read: events up to it are already in `keys`.
    read_revision: i64,
    status: MirrorStatus,
}

impl MirrorState {
    /// Replaces the keys with a read of the whole prefix at `revision`; returns whether that
    /// changed any key (for a resync: the watch had missed something, or was about to
    /// deliver it).
    fn load(&mut self, keys: BTreeMap<String, String>, revision: i64) -> bool {
        let changed = self.keys != keys;
        self.keys = keys;
        self.read_revision = revision;
        self.status.revision = revision;
        self.status.loads += 1;
        self.status.following = true;
        changed
    }

    /// Applies one watch response's events in order. Events at or below the last read's
    /// revision are in the keys already (a resync's read overtook the watch): skipped.
    fn apply(&mut self, events: impl IntoIterator<Item = MirrorEvent>) {
        for event in events {
            if event.revision <= self.read_revision {
                continue;
            }
            match event.value {
                Some(value) => self.keys.insert(event.key, value),
                None => self.keys.remove(&event.key),
            };
            self.status.revision = self.status.revision.max(event.revision);
        }
    }

    /// The watch is gone: the keys are not served until the next read.
    fn lose(&mut self, why: String) {
        if self.status.following {
            self.status.lost += 1;
        }
        self.status.following = false;
        self.status.last_lost = Some(why);
    }
}

/// Asked of the task by the fault-injection hooks of tests.
#[derive(Debug)]
enum Fault {
    /// Drop the watch and open it again from this revision, as a watch that fell behind.
    FallBehind(i64),
    /// Ignore every event from now on, as a watch that is open and delivers nothing.
    Deafen,
}

/// A watch-fed copy of the keys under one prefix. Dropping it stops its task.
#[derive(Debug)]
pub struct Mirror {
    prefix: String,
    state: Arc<Mutex<MirrorState>>,
    store: Store,
    faults: mpsc::Sender<Fault>,
    _stop: DropGuard,
}

impl Mirror {
    /// Starts following every key under `prefix`: the keys are served once the first read
    /// is in (until then [`Mirror::read`] answers `None`).
    pub fn start(store: &Store, prefix: &str, settings: MirrorSettings) -> Mirror {
        let cancel = CancellationToken::new();
        let state = Arc::new(Mutex::new(MirrorState::default()));
        let (faults, faults_rx) = mpsc::channel(4);
        tokio::spawn(follow(
            store.clone(),
            prefix.to_owned(),
            state.clone(),
            settings,
            faults_rx,
            cancel.clone(),
        ));
        Mirror {
            prefix: prefix.to_owned(),
            state,
            store: store.clone(),
            faults,
            _stop: cancel.drop_guard(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `f` over the keys (full key → value) if they are served: loaded, followed by a watch
    /// that has not failed since, and etcd not known to be unreachable. `None` otherwise:
    /// the caller reads etcd itself.
    pub fn read<R>(&self, f: impl FnOnce(&BTreeMap<String, String>) -> R) -> Option<R> {
        if !self.store.is_reachable() {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.status.following.then(|| f(&state.keys))
    }

    pub fn status(&self) -> MirrorStatus {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .status
            .clone()
    }

    /// Fault injection, for tests only: the watch is dropped and opened again from
    /// `revision`, as a watch that fell behind (if that revision was compacted, etcd
    /// cancels it and the mirror must rebuild).
    #[doc(hidden)]
    pub async fn inject_fall_behind(&self, revision: i64) {
        let _ = self.faults.send(Fault::FallBehind(revision)).await;
    }

    /// Fault injection, for tests only: from now on the watch's events are ignored, as a
    /// watch that stays open and delivers nothing; only the periodic resync corrects the keys.
    #[doc(hidden)]
    pub async fn inject_deaf_watch(&self) {
        let _ = self.faults.send(Fault::Deafen).await;
    }
}

/// Why a followed watch ended.
enum Ended {
    Cancelled,
    Lost(String),
    FallBehind(i64),
}

/// The mirror's task: load, watch, resync; rebuild whenever the watch is lost.
async fn follow(
    store: Store,
    prefix: String,
    state: Arc<Mutex<MirrorState>>,
    settings: MirrorSettings,
    mut faults: mpsc::Receiver<Fault>,
    cancel: CancellationToken,
) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let mut backoff = MIRROR_INITIAL_BACKOFF;
    let mut deaf = false;
    // Where the next watch starts without a read first (only a fault's fall-behind).
    let mut resume_from = None;
    loop {
        let start = match resume_from.take() {
            Some(revision) => revision,
            None => {
                let read = tokio::select! {
                    () = cancel.cancelled() => return,
                    read = store.get_prefix_at(&prefix) => read,
                };
                match read {
                    Ok((keys, revision)) => {
                        lock().load(keys, revision);
                        revision + 1
                    }
                    Err(err) => {
                        lock().lose(format!("cannot read {prefix}: {err}"));
                        tracing::debug!(%prefix, error = %err, "cannot load the mirror; trying again");
                        if pause(&cancel, &mut backoff).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let mut client = store.client();
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let opened = tokio::select! {
            () = cancel.cancelled() => return,
            opened = tokio::time::timeout(WATCH_OPEN_TIMEOUT, client.watch(prefix.as_str(), Some(options))) => opened,
        };
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                lock().lose(format!("cannot watch {prefix}: {err}"));
                if pause(&cancel, &mut backoff).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                lock().lose(format!("opening the watch of {prefix} timed out"));
                if pause(&cancel, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        let opened_at = tokio::time::Instant::now();
        let mut resync = tokio::time::interval_at(
            tokio::time::Instant::now() + settings.resync_every,
            settings.resync_every,
        );
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = loop {
            tokio::select! {
                () = cancel.cancelled() => break Ended::Cancelled,
                fault = faults.recv() => match fault {
                    Some(Fault::FallBehind(revision)) => break Ended::FallBehind(revision),
                    Some(Fault::Deafen) => deaf = true,
                    None => {}
                },
                _ = resync.tick() => match store.get_prefix_at(&prefix).await {
                    Ok((keys, revision)) => {
                        let mut state = lock();
                        if state.load(keys, revision) {
                            state.status.corrected += 1;
                            tracing::debug!(%prefix, revision, "the resync changed the mirror's keys");
                        }
                    }
                    Err(err) => break Ended::Lost(format!("cannot read {prefix} again: {err}")),
                },
                message = stream.message() => match message {
                    Ok(Some(response)) => {
                        if let Some(why) = watch_ended(&response) {
                            break Ended::Lost(why);
                        }
                        if !deaf {
                            lock().apply(events(&response));
                        }
                    }
                    Ok(None) => break Ended::Lost(format!("the watch of {prefix} closed")),
                    Err(err) => break Ended::Lost(format!("the watch of {prefix} broke: {err}")),
                },
            }
        };
        match ended {
            Ended::Cancelled => return,
            Ended::FallBehind(revision) => resume_from = Some(revision),
            Ended::Lost(why) => {
                tracing::info!(%prefix, %why, "mirror lost its watch; reading the prefix again");
                lock().lose(why);
                // A watch that worked for a while is rebuilt at once; only one that keeps
                // failing as soon as it opens backs off further.
                if opened_at.elapsed() >= WATCH_HEALTHY_AFTER {
                    backoff = MIRROR_INITIAL_BACKOFF;
                }
                if pause(&cancel, &mut backoff).await {
                    return;
                }
            }
        }
    }
}

/// Why etcd ended a watch with this response, if it did: cancelled (its start revision was
/// compacted, or the server gave up on it).
fn watch_ended(response: &WatchResponse) -> Option<String> {
    if response.compact_revision() > 0 {
        return Some(format!(
            "the watch fell behind a compaction (compacted up to revision {})",
            response.compact_revision()
        ));
    }
    response.canceled().then(|| {
        format!(
            "etcd cancelled the watch ({})",
            match response.cancel_reason() {
                "" => "no reason given",
                reason => reason,
            }
        )
    })
}

fn events(response: &WatchResponse) -> Vec<MirrorEvent> {
    response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            Some(MirrorEvent {
                key: String::from_utf8_lossy(kv.key()).into_owned(),
                value: (event.event_type() == EventType::Put)
                    .then(|| String::from_utf8_lossy(kv.value()).into_owned()),
                revision: kv.mod_revision(),
            })
        })
        .collect()
}

/// Waits `backoff` (doubled for next time, up to the cap); true when cancelled meanwhile.
async fn pause(cancel: &CancellationToken, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MIRROR_MAX_BACKOFF);
    tokio::select! {
        () = cancel.cancelled() => true,
        () = tokio::time::sleep(wait) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn put(key: &str, value: &str, revision: i64) -> MirrorEvent {
        MirrorEvent {
            key: key.into(),
            value: Some(value.into()),
            revision,
        }
    }

    fn delete(key: &str, revision: i64) -> MirrorEvent {
        MirrorEvent {
            key: key.into(),
            value: None,
            revision,
        }
    }

    #[test]
    fn events_after_the_read_are_applied_in_order() {
        let mut state = MirrorState::default();
        state.load(keys(&[("a", "1")]), 10);
        state.apply([put("b", "2", 11), delete("a", 12), put("b", "3", 13)]);
        assert_eq!(state.keys, keys(&[("b", "3")]));
        assert_eq!(state.status.revision, 13);
    }

    #[test]
    fn events_a_resync_already_read_are_skipped() {
        // The watch is behind: the resync read at 20 already holds a's delete (15) and
        // b's put (18); the watch then delivers them, and c (21) after.
        let mut state = MirrorState::default();
        state.load(keys(&[("a", "1")]), 10);
        let changed = state.load(keys(&[("b", "2")]), 20);
        assert!(changed, "the resync changed the keys");
        state.apply([delete("a", 15), put("b", "1", 18), put("c", "3", 21)]);
        assert_eq!(state.keys, keys(&[("b", "2"), ("c", "3")]));
    }

    #[test]
    fn several_keys_of_one_revision_are_all_applied() {
        let mut state = MirrorState::default();
        state.load(BTreeMap::new(), 5);
        state.apply([put("a", "1", 6), put("b", "2", 6)]);
        assert_eq!(state.keys, keys(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn a_lost_watch_stops_serving_until_the_next_read() {
        let mut state = MirrorState::default();
        assert!(
            !state.status.following,
            "nothing is served before the first read"
        );
        state.load(keys(&[("a", "1")]), 3);
        state.lose("broke".into());
        assert!(!state.status.following);
        assert_eq!(state.status.lost, 1);
        // A failed rebuild does not count as another loss.
        state.lose("cannot read".into());
        assert_eq!(state.status.lost, 1);
        assert_eq!(state.status.last_lost.as_deref(), Some("cannot read"));
        assert!(
            !state.load(keys(&[("a", "1")]), 9),
            "same keys: nothing changed"
        );
        assert!(state.status.following);
        assert_eq!(state.status.loads, 2);
    }
}
