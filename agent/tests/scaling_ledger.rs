//! The scaling ledger against a real etcd: one claim wins, the others see it.

use common::keys::ClusterKeys;
use gru_agent::coordination::{self, Direction, Ledger, Request};
use gru_agent::store::{EtcdSettings, LedgerTtls, Store};
use testkit::{Component, EtcdCluster, require};

const TTLS: LedgerTtls = LedgerTtls {
    settle_secs: 3,
    cooldown_out_secs: 4,
    cooldown_in_secs: 0,
};

async fn store(etcd: &EtcdCluster) -> Store {
    let settings = EtcdSettings {
        endpoints: EtcdSettings::parse_endpoints(&etcd.endpoints()),
        ..Default::default()
    };
    Store::connect(&settings).await.expect("connect")
}

#[tokio::test]
async fn racing_claims_grant_one_step_and_the_ledger_reads_back() {
    if !require(
        "racing_claims_grant_one_step_and_the_ledger_reads_back",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let keys = ClusterKeys::new("c").expect("name");
    let stores = [store(&etcd).await, store(&etcd).await, store(&etcd).await];

    // Three agents read the free ledger, then all try to claim the same step.
    let mut claims = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        let ledger = store.read_ledger(&keys, "web").await.expect("read");
        assert_eq!(ledger, Ledger::default());
        let node = format!("n{i}");
        let request = Request {
            node: &node,
            direction: Direction::Out,
            step: 1,
            observed: 1,
            min: 1,
            max: Some(3),
        };
        claims.push((
            ledger.revision,
            coordination::evaluate(&request, &ledger, true, false).expect("free"),
        ));
    }
    let mut won = 0;
    for (store, (revision, claim)) in stores.iter().zip(&claims) {
        if store
            .claim_step(&keys, "web", *revision, claim, TTLS)
            .await
            .expect("txn")
        {
            won += 1;
        }
    }
    assert_eq!(won, 1, "racing claims on one revision: exactly one wins");

    let ledger = stores[2].read_ledger(&keys, "web").await.expect("read");
    assert!(ledger.out_cooling, "{ledger:?}");
    assert!(!ledger.in_cooling, "{ledger:?}");
    let intent = ledger.intent.clone().expect("intent readable");
    assert_eq!((intent.direction, intent.count_after), (Direction::Out, 2));
    assert!(ledger.revision > 0);
    // Discovery may still show 1, but the claim leads to 2: a floor of 2 holds already.
    assert_eq!(
        coordination::floor_claim("n9", 1, 2, &ledger),
        None,
        "a settling intent counts"
    );
    assert_eq!(
        coordination::floor_claim("n9", 1, 3, &ledger).map(|c| c.intent.count_after),
        Some(3)
    );

    // The cooldown and the intent expire with their leases.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let ledger = stores[0].read_ledger(&keys, "web").await.expect("read");
    assert_eq!(ledger, Ledger::default(), "records outlived their leases");
}
