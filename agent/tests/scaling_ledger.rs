//! The scaling ledger against a real etcd: one claim wins, the others see it.

use common::keys::ClusterKeys;
use gru_agent::coordination::{self, Direction, Ledger, Request};
use gru_agent::store::{EtcdSettings, LedgerTtls, Store};
use gru_agent::tick::{self, Effect, ServiceObservation, Want};
use testkit::{Component, EtcdCluster, require};

const TTLS: LedgerTtls = LedgerTtls {
    settle_secs: 3,
    cooldown_out_secs: 4,
    cooldown_in_secs: 0,
    target_secs: 3,
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

    // The cooldown and the intent expire with their leases; the last claim stays.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let later = stores[0].read_ledger(&keys, "web").await.expect("read");
    assert_eq!(
        Ledger {
            revision: 0,
            ..later.clone()
        },
        Ledger::default(),
        "records outlived their leases"
    );
    assert_eq!(later.revision, ledger.revision, "the last claim changed");
}

#[tokio::test]
async fn a_claim_read_before_another_whose_intent_expired_still_loses() {
    let test = "a_claim_read_before_another_whose_intent_expired_still_loses";
    if !require(test, Component::Etcd) {
        return;
    }
    let etcd = EtcdCluster::start();
    let keys = ClusterKeys::new("c").expect("name");
    let (slow, fast) = (store(&etcd).await, store(&etcd).await);
    let request = |node| Request {
        node,
        direction: Direction::Out,
        step: 1,
        observed: 1,
        min: 1,
        max: Some(2),
    };
    let ttls = LedgerTtls {
        settle_secs: 2,
        cooldown_out_secs: 0,
        cooldown_in_secs: 0,
        target_secs: 2,
    };
    // The slow agent reads the free ledger (and a count of 1) ...
    let seen = slow.read_ledger(&keys, "web").await.expect("read");
    let slow_claim = coordination::evaluate(&request("slow"), &seen, false, false).expect("free");
    // ... the fast one claims the step to 2, and its intent expires ...
    let fast_seen = fast.read_ledger(&keys, "web").await.expect("read");
    let fast_claim =
        coordination::evaluate(&request("fast"), &fast_seen, false, false).expect("free");
    assert!(
        fast.claim_step(&keys, "web", fast_seen.revision, &fast_claim, ttls)
            .await
            .expect("txn")
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let now = slow.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(now.intent, None, "the intent outlived its lease");
    // ... so the slow agent's claim, from what it read before, must not pass: it would be
    // a third instance where max is 2.
    assert!(
        !slow
            .claim_step(&keys, "web", seen.revision, &slow_claim, ttls)
            .await
            .expect("txn"),
        "a claim read before another agent's claim won once that claim's intent expired"
    );
}

/// A target-tracking decision is written with its first share; two agents filling the rest
/// from the same read race like any claim (one wins), and the target goes with its lease.
#[tokio::test]
async fn a_target_is_filled_by_racing_agents_without_passing_it() {
    if !require(
        "a_target_is_filled_by_racing_agents_without_passing_it",
        Component::Etcd,
    ) {
        return;
    }
    let etcd = EtcdCluster::start();
    let keys = ClusterKeys::new("c").expect("name");
    let (n1, n2, n3) = (store(&etcd).await, store(&etcd).await, store(&etcd).await);
    let policy = common::config::PolicyConfig {
        cooldown_out_secs: 4,
        ..Default::default()
    };
    let observation = |observed, room_here| ServiceObservation {
        min: 1,
        max: Some(10),
        observed,
        running_here: 0,
        removable_here: 0,
        room_here,
    };
    // n1 decides: 2 running, the load calls for 8; n1 has room for 2.
    let decision = Want::Target {
        direction: Direction::Out,
        desired: 8,
    };
    let seen = n1.read_ledger(&keys, "web").await.expect("read");
    let claim = tick::decide("n1", decision, &observation(2, 2), &seen, &policy).expect("free");
    assert_eq!(tick::effect(&claim), Effect::Start(2));
    let ttls = tick::ttls(decision, Direction::Out, &policy, 1, 0);
    assert!(
        n1.claim_step(&keys, "web", seen.revision, &claim, ttls)
            .await
            .expect("txn")
    );

    // n2 and n3 read the ledger at once: the target and n1's settling intent (4 after it).
    let fill = tick::ttls(Want::Fill, Direction::Out, &policy, 1, 0);
    let seen2 = n2.read_ledger(&keys, "web").await.expect("read");
    let seen3 = n3.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(seen2.target.as_ref().map(|t| t.desired), Some(8));
    assert!(
        seen2.out_cooling,
        "the decision started the scale-out cooldown"
    );
    let share2 =
        tick::decide("n2", Want::Fill, &observation(2, 3), &seen2, &policy).expect("share");
    let share3 =
        tick::decide("n3", Want::Fill, &observation(2, 9), &seen3, &policy).expect("share");
    assert_eq!((share2.count, share3.count), (3, 4));
    let won2 = n2
        .claim_step(&keys, "web", seen2.revision, &share2, fill)
        .await
        .expect("txn");
    let won3 = n3
        .claim_step(&keys, "web", seen3.revision, &share3, fill)
        .await
        .expect("txn");
    assert!(
        won2 && !won3,
        "the second fill from the same revision must lose"
    );
    // n3 reads again: only the last instance is missing.
    let again = n3.read_ledger(&keys, "web").await.expect("read");
    let last = tick::decide("n3", Want::Fill, &observation(2, 9), &again, &policy).expect("share");
    assert_eq!(last.count, 1);
    assert_eq!(last.intent.count_after, 8);
    assert!(
        n3.claim_step(&keys, "web", again.revision, &last, fill)
            .await
            .expect("txn")
    );
    let done = n3.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(
        tick::decide("n3", Want::Fill, &observation(2, 9), &done, &policy),
        Err(tick::NOTHING_TO_DO)
    );
    // The target lives as long as its lease (the cooldown, at least 5 s).
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let later = n3.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(later.target, None, "the target outlived its lease");
}
