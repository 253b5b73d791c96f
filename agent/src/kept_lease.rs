//! The note an agent leaves in its state directory when it stops to come back (SIGTERM, or
//! `restart agent`): which lease its records and its instances' discovery records live
//! under. A restarted agent of the same node in the same cluster takes the note (reading
//! it removes it), and re-attaches to the lease if etcd still has it: the node's records and
//! the discovery records never vanish, so no other agent repairs anything while it is away,
//! and the agent adopts its running containers as after any start.
//!
//! The note is only a hint: before using it the agent checks in etcd that the lease is alive
//! and that this node's records are still under it (see `Membership::reattach`). A stale
//! note (the lease ran out, another etcd, another cluster of the same name) is ignored and
//! the agent registers as usual. `kill -9` leaves no note: the lease runs out and the other
//! agents repair, as before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Environment variable of the state directory (`gru join --state-dir`).
pub const STATE_DIR_VAR: &str = "GRU_STATE_DIR";

/// The lease a stopped agent left for its restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptLease {
    /// The cluster's id (`gru create` makes one), so that a note left for a cluster of the
    /// same name elsewhere is never used.
    pub cluster_id: String,
    pub cluster: String,
    pub node: String,
    pub lease: i64,
    /// When the agent stopped (ms since the epoch): logged with the restart's duration.
    pub stopped_at_ms: u64,
}

impl KeptLease {
    /// Whether the note was left by this node of this cluster.
    pub fn belongs_to(&self, cluster_id: &str, cluster: &str, node: &str) -> bool {
        self.cluster_id == cluster_id && self.cluster == cluster && self.node == node
    }
}

/// The state directory when `--state-dir` is not given: systemd's `$STATE_DIRECTORY` (a
/// unit with `StateDirectory=gru`), else `/var/lib/gru` for root, else
/// `$XDG_STATE_HOME/gru` or `~/.local/state/gru`, else a directory under the temp dir.
pub fn default_state_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("STATE_DIRECTORY") {
        // systemd may list several, separated by colons: the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        return PathBuf::from(first);
    }
    if is_root() {
        return PathBuf::from("/var/lib/gru");
    }
    if let Some(dir) = var("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("gru");
    }
    if let Some(home) = var("HOME") {
        return PathBuf::from(home).join(".local/state/gru");
    }
    std::env::temp_dir().join("gru-state")
}

/// Effective uid 0, read from `/proc/self/status` (no libc call for one number).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Where the note of `node` of `cluster` lives: one file per node, so that several agents
/// on one machine (tests, demos) share a state directory.
pub fn note_path(dir: &Path, cluster: &str, node: &str) -> PathBuf {
    dir.join(cluster).join(format!("{node}.lease.json"))
}

/// Writes the note (a temporary file renamed over it, so a reader never sees half of one).
pub fn save(dir: &Path, note: &KeptLease) -> std::io::Result<PathBuf> {
    let path = note_path(dir, &note.cluster, &note.node);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string(note).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Takes the note of `node` of `cluster` (whose id is `cluster_id`) if there is one: it is
/// removed, so that it is used at most once (a second start after a failed re-attach
/// registers as usual). A note of another cluster of the same name is left where it is (it
/// is not this agent's to take); an unreadable one is removed, with a warning.
pub fn take(dir: &Path, cluster_id: &str, cluster: &str, node: &str) -> Option<KeptLease> {
    let path = note_path(dir, cluster, node);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<KeptLease>(&text) {
        Ok(note) if note.belongs_to(cluster_id, cluster, node) => {
            let _ = std::fs::remove_file(&path);
            Some(note)
        }
        Ok(_) => None,
        Err(err) => {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(path = %path.display(), error = %err, "unreadable kept-lease note; registering as usual");
            None
        }
    }
}

/// Removes a note left behind (the agent leaves the cluster for good).
pub fn forget(dir: &Path, cluster: &str, node: &str) {
    let _ = std::fs::remove_file(note_path(dir, cluster, node));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> KeptLease {
        KeptLease {
            cluster_id: "id-1".into(),
            cluster: "c".into(),
            node: "n1".into(),
            lease: 0x1234,
            stopped_at_ms: 5,
        }
    }

    #[test]
    fn a_saved_note_is_taken_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &note()).expect("saved");
        assert_eq!(take(dir.path(), "id-1", "c", "n1"), Some(note()));
        assert_eq!(
            take(dir.path(), "id-1", "c", "n1"),
            None,
            "a note is used at most once"
        );
    }

    #[test]
    fn notes_are_per_node_and_cluster() {
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &note()).expect("saved");
        assert_eq!(take(dir.path(), "id-1", "c", "n2"), None);
        assert_eq!(take(dir.path(), "id-1", "d", "n1"), None);
        forget(dir.path(), "c", "n1");
        assert_eq!(take(dir.path(), "id-1", "c", "n1"), None);
    }

    #[test]
    fn an_unreadable_note_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = note_path(dir.path(), "c", "n1");
        std::fs::create_dir_all(dir.path().join("c")).expect("dir");
        std::fs::write(&path, "{not json").expect("written");
        assert_eq!(take(dir.path(), "id-1", "c", "n1"), None);
        assert!(!path.exists());
    }

    #[test]
    fn a_note_of_another_cluster_with_the_same_name_is_left_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        save(dir.path(), &note()).expect("saved");
        assert_eq!(take(dir.path(), "id-2", "c", "n1"), None);
        assert_eq!(
            take(dir.path(), "id-1", "c", "n1"),
            Some(note()),
            "the note of the other cluster is still there for its agent"
        );
    }
}
