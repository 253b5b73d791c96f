//! The watch-fed mirror of a key prefix (`store::Mirror`, what the agent's tick counts
//! discovery records from) against a real etcd: it follows puts and deletes, is rebuilt
//! when its watch falls behind a compaction or etcd restarts (and serves nothing
//! meanwhile), and a watch that delivers nothing is corrected by the periodic resync.

use std::collections::BTreeMap;
use std::time::Duration;

use gru_agent::store::{EtcdSettings, Mirror, MirrorSettings, Store};
use testkit::{Component, EtcdCluster, require};

const PREFIX: &str = "/gru/c/discovery/";
/// Long enough that no periodic resync happens during a test that does not want one.
const NO_RESYNC: MirrorSettings = MirrorSettings {
    resync_every: Duration::from_secs(3600),
};
/// How long a change may take to reach the mirror (a watch event: milliseconds; a rebuild
/// after a restart: etcd's start plus one backoff).
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(15);

async fn store(etcd: &EtcdCluster) -> Store {
    let settings = EtcdSettings {
        endpoints: EtcdSettings::parse_endpoints(&etcd.endpoints()),
        ..Default::default()
    };
    Store::connect(&settings).await.expect("connect")
}

fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), (*v).to_owned()))
        .collect()
}

/// The mirror's keys as soon as they equal `want`; panics with what it held after `timeout`.
async fn until_mirrored(mirror: &Mirror, want: &BTreeMap<String, String>, timeout: Duration) {
    let started = tokio::time::Instant::now();
    loop {
        let held = mirror.read(Clone::clone);
        if held.as_ref() == Some(want) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "the mirror holds {held:?} after {timeout:?}, not {want:?}; status {:?}",
            mirror.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_mirror_follows_puts_and_deletes_under_its_prefix_and_reads_once() {
    if !require(
        "the_mirror_follows_puts_and_deletes_under_its_prefix_and_reads_once",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let store = store(&etcd).await;
    store
        .put(&format!("{PREFIX}web/i1"), "10.0.0.1:1", None)
        .await
        .expect("put");
    // Beside the prefix: never mirrored.
    store
        .put("/gru/c/discoveryx/web/i9", "x", None)
        .await
        .expect("put");
    store.put("/gru/c/config", "{}", None).await.expect("put");

    let mirror = Mirror::start(&store, PREFIX, NO_RESYNC);
    until_mirrored(&mirror, &keys(&[("web/i1", "10.0.0.1:1")]), FOLLOW_TIMEOUT).await;

    store
        .put(&format!("{PREFIX}web/i2"), "10.0.0.1:2", None)
        .await
        .expect("put");
    store
        .put(&format!("{PREFIX}db/i3"), "10.0.0.2:1", None)
        .await
        .expect("put");
    store
        .put(&format!("{PREFIX}web/i1"), "10.0.0.1:9", None)
        .await
        .expect("put");
    store
        .delete(&format!("{PREFIX}web/i2"))
        .await
        .expect("delete");
    store
        .put("/gru/c/discoveryx/web/i10", "x", None)
        .await
        .expect("put");
    let want = keys(&[("db/i3", "10.0.0.2:1"), ("web/i1", "10.0.0.1:9")]);
    until_mirrored(&mirror, &want, FOLLOW_TIMEOUT).await;

    // A lease that ends deletes its keys: the watch says so too.
    let lease = store.lease_grant(30).await.expect("lease");
    store
        .put(&format!("{PREFIX}web/i4"), "10.0.0.3:1", Some(lease))
        .await
        .expect("put");
    let mut with_i4 = want.clone();
    with_i4.insert(format!("{PREFIX}web/i4"), "10.0.0.3:1".into());
    until_mirrored(&mirror, &with_i4, FOLLOW_TIMEOUT).await;
    store.lease_revoke(lease).await.expect("revoke");
    until_mirrored(&mirror, &want, FOLLOW_TIMEOUT).await;

    // Steady state: the watch fed everything; the prefix was read once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = mirror.status();
    assert_eq!(status.loads, 1, "the prefix was read again: {status:?}");
    assert_eq!(status.lost, 0, "{status:?}");
}

#[tokio::test]
async fn a_watch_behind_a_compaction_is_rebuilt_from_a_fresh_read() {
    if !require(
        "a_watch_behind_a_compaction_is_rebuilt_from_a_fresh_read",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let store = store(&etcd).await;
    let mirror = Mirror::start(&store, PREFIX, NO_RESYNC);
    until_mirrored(&mirror, &BTreeMap::new(), FOLLOW_TIMEOUT).await;
    for i in 0..5 {
        store
            .put(&format!("{PREFIX}web/i{i}"), "a", None)
            .await
            .expect("put");
    }
    store
        .delete(&format!("{PREFIX}web/i0"))
        .await
        .expect("delete");
    let want = keys(&[
        ("web/i1", "a"),
        ("web/i2", "a"),
        ("web/i3", "a"),
        ("web/i4", "a"),
    ]);
    until_mirrored(&mirror, &want, FOLLOW_TIMEOUT).await;
    let revision = mirror.status().revision;
    etcd.etcdctl(&["compact", &revision.to_string()]);

    // The watch falls behind the compaction: etcd cancels it, and the mirror must read the
    // prefix again and watch from there, or it never sees the change below.
    mirror.inject_fall_behind(2).await;
    store
        .put(&format!("{PREFIX}web/i5"), "b", None)
        .await
        .expect("put");
    let mut with_i5 = want.clone();
    with_i5.insert(format!("{PREFIX}web/i5"), "b".into());
    until_mirrored(&mirror, &with_i5, FOLLOW_TIMEOUT).await;
    let status = mirror.status();
    assert_eq!(status.lost, 1, "{status:?}");
    assert!(
        status
            .last_lost
            .as_deref()
            .is_some_and(|why| why.contains("compaction")),
        "{status:?}"
    );
    assert_eq!(status.loads, 2, "rebuilt with one read: {status:?}");
}

#[tokio::test]
async fn an_etcd_restart_stops_the_mirror_serving_until_it_is_rebuilt() {
    if !require(
        "an_etcd_restart_stops_the_mirror_serving_until_it_is_rebuilt",
        Component::Etcd,
    ) {
        return;
    }
    let mut etcd = EtcdCluster::start();
    let store = store(&etcd).await;
    store
        .put(&format!("{PREFIX}web/i1"), "a", None)
        .await
        .expect("put");
    let mirror = Mirror::start(&store, PREFIX, NO_RESYNC);
    let before = keys(&[("web/i1", "a")]);
    until_mirrored(&mirror, &before, FOLLOW_TIMEOUT).await;

    etcd.members[0].kill();
    // The broken watch is noticed at once: the keys are no longer served (the agent then
    // reads etcd itself, which fails, and falls back as it did before the mirror).
    let started = tokio::time::Instant::now();
    while mirror.read(|_| ()).is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the mirror still serves its keys 5 s after etcd died: {:?}",
            mirror.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        mirror.read(|_| ()).is_none(),
        "served while etcd is down: {:?}",
        mirror.status()
    );
    etcd.members[0].restart();

    store
        .put(&format!("{PREFIX}web/i2"), "b", None)
        .await
        .expect("put after the restart");
    let after = keys(&[("web/i1", "a"), ("web/i2", "b")]);
    until_mirrored(&mirror, &after, FOLLOW_TIMEOUT).await;
    let status = mirror.status();
    assert!(status.lost >= 1, "{status:?}");
    assert!(status.loads >= 2, "rebuilt with a read: {status:?}");
}

#[tokio::test]
async fn a_watch_that_delivers_nothing_is_corrected_by_the_resync() {
    if !require(
        "a_watch_that_delivers_nothing_is_corrected_by_the_resync",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let store = store(&etcd).await;
    store
        .put(&format!("{PREFIX}web/i1"), "a", None)
        .await
        .expect("put");
    let resync = Duration::from_secs(2);
    let mirror = Mirror::start(
        &store,
        PREFIX,
        MirrorSettings {
            resync_every: resync,
        },
    );
    until_mirrored(&mirror, &keys(&[("web/i1", "a")]), FOLLOW_TIMEOUT).await;

    // From now on the watch stays open and the mirror ignores what it says: only the
    // periodic read of the prefix can bring these changes in.
    mirror.inject_deaf_watch().await;
    store
        .delete(&format!("{PREFIX}web/i1"))
        .await
        .expect("delete");
    store
        .put(&format!("{PREFIX}web/i2"), "b", None)
        .await
        .expect("put");
    let want = keys(&[("web/i2", "b")]);
    until_mirrored(&mirror, &want, resync * 3).await;
    let status = mirror.status();
    assert!(
        status.corrected >= 1,
        "the keys changed without a correcting resync: the watch was not deaf: {status:?}"
    );
    assert_eq!(status.lost, 0, "{status:?}");
    // The resync goes on: a later change comes in too.
    store
        .put(&format!("{PREFIX}web/i3"), "c", None)
        .await
        .expect("put");
    let mut with_i3 = want.clone();
    with_i3.insert(format!("{PREFIX}web/i3"), "c".into());
    until_mirrored(&mirror, &with_i3, resync * 3).await;
}
