//! Discovery records against a real etcd: written under the node's lease, removed on
//! deregistration, gone with the lease; an instance that is not ready is recorded under
//! `starting/` instead, and moves in one transaction.

use common::keys::ClusterKeys;
use gru_agent::discovery::DiscoveryRegistry;
use gru_agent::store::{EtcdSettings, Store};
use testkit::{Component, EtcdCluster, require};
use tokio::sync::watch;

#[tokio::test]
async fn instances_are_published_under_the_lease_and_vanish_with_it() {
    if !require(
        "instances_are_published_under_the_lease_and_vanish_with_it",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let settings = EtcdSettings {
        endpoints: EtcdSettings::parse_endpoints(&etcd.endpoints()),
        ..Default::default()
    };
    let store = Store::connect(&settings).await.expect("connect");
    let keys = ClusterKeys::new("c").expect("name");
    let lease = store.lease_grant(30).await.expect("lease");
    let (_lease_tx, lease_rx) = watch::channel(lease);
    let registry = DiscoveryRegistry::new(store.clone(), keys, "app/shop/services", lease_rx);

    registry
        .register("web", "i1", "10.0.0.5:18080", true)
        .await
        .expect("register i1");
    registry
        .register("web", "i2", "10.0.0.5:18081", true)
        .await
        .expect("register i2");
    registry
        .register("db", "i3", "10.0.0.6:15432", true)
        .await
        .expect("register i3");

    assert_eq!(
        etcd.dump("/app/shop/services/web/"),
        vec![
            (
                "/app/shop/services/web/i1".to_owned(),
                "10.0.0.5:18080".to_owned()
            ),
            (
                "/app/shop/services/web/i2".to_owned(),
                "10.0.0.5:18081".to_owned()
            ),
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&etcd.etcdctl(&["get", "/app/shop/services/web/i1", "-w", "json"]))
            .expect("json");
    assert_eq!(
        json["kvs"][0]["lease"].as_i64(),
        Some(lease),
        "record not under the node's lease"
    );

    registry.deregister("web", "i1").await.expect("deregister");
    registry
        .deregister("web", "gone")
        .await
        .expect("deregistering a missing record is fine");
    assert_eq!(
        registry.instances("web").await.expect("list"),
        vec![("i2".to_owned(), "10.0.0.5:18081".to_owned())]
    );

    // An instance that is not ready is recorded beside discovery, not in it, and moves
    // between the two as its readiness changes: always exactly one record.
    registry
        .register("web", "i4", "10.0.0.5:18082", false)
        .await
        .expect("register i4 starting");
    assert_eq!(
        etcd.dump("/gru/c/starting/"),
        vec![(
            "/gru/c/starting/web/i4".to_owned(),
            "10.0.0.5:18082".to_owned()
        )]
    );
    assert!(
        !etcd
            .keys("/app/shop/services/web/")
            .iter()
            .any(|k| k.ends_with("/i4"))
    );
    registry
        .register("web", "i4", "10.0.0.5:18082", true)
        .await
        .expect("i4 ready");
    assert!(etcd.keys("/gru/c/starting/").is_empty(), "still starting");
    assert!(
        etcd.keys("/app/shop/services/web/")
            .iter()
            .any(|k| k.ends_with("/i4"))
    );
    registry
        .register("web", "i4", "10.0.0.5:18082", false)
        .await
        .expect("i4 not ready again");
    assert!(
        !etcd
            .keys("/app/shop/services/web/")
            .iter()
            .any(|k| k.ends_with("/i4"))
    );
    assert_eq!(
        etcd.keys("/gru/c/starting/"),
        vec!["/gru/c/starting/web/i4".to_owned()]
    );
    let json: serde_json::Value =
        serde_json::from_str(&etcd.etcdctl(&["get", "/gru/c/starting/web/i4", "-w", "json"]))
            .expect("json");
    assert_eq!(
        json["kvs"][0]["lease"].as_i64(),
        Some(lease),
        "starting record not under the lease"
    );

    store.lease_revoke(lease).await.expect("revoke");
    assert!(
        etcd.keys("/app/shop/services/").is_empty() && etcd.keys("/gru/c/starting/").is_empty(),
        "records outlived the lease"
    );
}
