//! The scaling ledger against a real etcd: of claims racing on one revision, one wins and
//! the others lose; the others see the winner's records.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use common::keys::ClusterKeys;
use gru_agent::coordination::{self, Claim, Direction, Ledger, Request};
use gru_agent::store::{EtcdSettings, LedgerTtls, Store};
use gru_agent::tick::{self, Effect, ServiceObservation, Want};
use testkit::{Component, EtcdCluster, require};
use tokio::sync::Barrier;

const TTLS: LedgerTtls = LedgerTtls {
    settle_secs: 3,
    cooldown_out_secs: 4,
    cooldown_in_secs: 0,
    target_secs: 3,
};

/// How long racing agents wait for one another at the start.
const RACE_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

async fn store(etcd: &EtcdCluster) -> Store {
    let settings = EtcdSettings {
        endpoints: EtcdSettings::parse_endpoints(&etcd.endpoints()),
        ..Default::default()
    };
    Store::connect(&settings).await.expect("connect")
}

/// What one agent did in a [`race`]: the ledger revision it read, what it decided from
/// that, and, if it claimed, the answer and when its claim was in flight.
#[derive(Debug)]
struct Attempt {
    node: String,
    seen: Ledger,
    claim: Option<Claim>,
    answer: Option<Result<bool, String>>,
    in_flight: (Instant, Instant),
}

/// One round of agents racing for the ledger of `web`: each agent (a node name and its
/// own etcd client) reads the ledger and decides with `decide(index, node, ledger)`
/// (`None`: nothing to claim); then they wait for one another, so that nobody writes
/// before everybody has read, and all claim at once from what they read.
async fn race<F>(agents: &[(String, Store)], keys: &ClusterKeys, decide: F) -> Vec<Attempt>
where
    F: Fn(usize, &str, &Ledger) -> Option<(Claim, LedgerTtls)> + Send + Sync + 'static,
{
    let decide = Arc::new(decide);
    let barrier = Arc::new(Barrier::new(agents.len()));
    let tasks: Vec<_> = agents
        .iter()
        .enumerate()
        .map(|(i, (node, store))| {
            let (node, store, keys) = (node.clone(), store.clone(), keys.clone());
            let (decide, barrier) = (decide.clone(), barrier.clone());
            tokio::spawn(async move {
                let seen = store.read_ledger(&keys, "web").await.expect("read");
                let decided = decide(i, &node, &seen);
                // A bound on the wait, so that an agent that failed before it cannot
                // leave the others waiting forever.
                tokio::time::timeout(RACE_START_TIMEOUT, barrier.wait())
                    .await
                    .expect("the other agents came to the start");
                let began = Instant::now();
                let answer = match &decided {
                    Some((claim, ttls)) => Some(
                        store
                            .claim_step(&keys, "web", seen.revision, claim, *ttls)
                            .await
                            .map_err(|e| e.to_string()),
                    ),
                    None => None,
                };
                Attempt {
                    node,
                    seen,
                    claim: decided.map(|(claim, _)| claim),
                    answer,
                    in_flight: (began, Instant::now()),
                }
            })
        })
        .collect();
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.push(task.await.expect("agent task"));
    }
    attempts
}

/// The most claims of `attempts` that were in flight at one moment.
fn most_in_flight(attempts: &[Attempt]) -> usize {
    let spans: Vec<(Instant, Instant)> = attempts
        .iter()
        .filter(|a| a.answer.is_some())
        .map(|a| a.in_flight)
        .collect();
    spans
        .iter()
        .map(|(began, _)| {
            spans
                .iter()
                .filter(|(b, e)| b <= began && began < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Checks one round: every agent read the same revision; if anybody claimed, exactly one
/// claim won, every other one lost (`Ok(false)`, what the tick calls `Lost`, not an
/// error), and the ledger now holds the winner's intent at a newer revision. Returns the
/// winner's claim.
async fn one_winner(
    round: &str,
    attempts: &[Attempt],
    store: &Store,
    keys: &ClusterKeys,
) -> Option<Claim> {
    let revisions: BTreeSet<i64> = attempts.iter().map(|a| a.seen.revision).collect();
    assert_eq!(
        revisions.len(),
        1,
        "{round}: the agents read different revisions: {attempts:#?}"
    );
    let errors: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| matches!(a.answer, Some(Err(_))))
        .collect();
    assert!(
        errors.is_empty(),
        "{round}: a lost claim must not be an error: {errors:#?}"
    );
    let winners: Vec<&Attempt> = attempts
        .iter()
        .filter(|a| matches!(a.answer, Some(Ok(true))))
        .collect();
    let claimed = attempts.iter().filter(|a| a.answer.is_some()).count();
    if claimed == 0 {
        return None;
    }
    assert!(
        claimed >= 2 && most_in_flight(attempts) >= 2,
        "{round}: the claims did not race ({claimed} claimed, at most {} in flight at once)",
        most_in_flight(attempts)
    );
    let won: Vec<&str> = winners.iter().map(|a| a.node.as_str()).collect();
    assert_eq!(
        won.len(),
        1,
        "{round}: {claimed} claims raced on revision {revisions:?} and {} won ({won:?}); exactly one must",
        won.len()
    );
    let winner = winners[0].claim.clone().expect("the winner claimed");
    let after = store.read_ledger(keys, "web").await.expect("read");
    assert!(
        after.revision > attempts[0].seen.revision,
        "{round}: {after:?}"
    );
    assert_eq!(
        after.intent.as_ref(),
        Some(&winner.intent),
        "{round}: the ledger holds another intent"
    );
    Some(winner)
}

/// Six agents, each with its own etcd client, race for every step of a service from 1 to
/// MaxInstances 4 and back to MinInstances 1, asking for steps of 1 or 2: on each
/// revision exactly one claim wins and the others lose, and the count the claims lead to
/// never leaves [min, max].
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_one_revision_grant_exactly_one_and_hold_the_bounds() {
    let test = "concurrent_claims_on_one_revision_grant_exactly_one_and_hold_the_bounds";
    if !require(test, Component::Etcd) {
        return;
    }
    const AGENTS: usize = 6;
    const MIN: u32 = 1;
    const MAX: u32 = 4;
    // No cooldowns, so that every round has a step to claim until a bound stops it.
    const NO_COOLDOWN: LedgerTtls = LedgerTtls {
        settle_secs: 30,
        cooldown_out_secs: 0,
        cooldown_in_secs: 0,
        target_secs: 3,
    };
    let etcd = EtcdCluster::start();
    let keys = ClusterKeys::new("c").expect("name");
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push((format!("n{i}"), store(&etcd).await));
    }

    let mut rounds = 0;
    let mut most_racing = 0;
    for direction in [Direction::Out, Direction::In] {
        // The count every agent observes: what the claims won so far lead to.
        let mut count = if direction == Direction::Out {
            MIN
        } else {
            MAX
        };
        loop {
            let observed = count;
            let attempts = race(&agents, &keys, move |i, node, ledger| {
                let request = Request {
                    node,
                    direction,
                    step: 1 + (i as u32 % 2),
                    observed,
                    min: MIN,
                    max: Some(MAX),
                };
                coordination::evaluate(&request, ledger, false, false)
                    .ok()
                    .map(|claim| (claim, NO_COOLDOWN))
            })
            .await;
            rounds += 1;
            let round = format!("round {rounds} ({direction:?} from {count})");
            most_racing = most_racing.max(most_in_flight(&attempts));
            let Some(winner) = one_winner(&round, &attempts, &agents[0].1, &keys).await else {
                break;
            };
            assert!(
                attempts.iter().all(|a| a.claim.is_some()),
                "{round}: all read the same ledger and count, all may claim: {attempts:#?}"
            );
            count = winner.intent.count_after;
            assert!(
                (MIN..=MAX).contains(&count),
                "{round}: the winning claim leads to {count}, outside [{MIN}, {MAX}]"
            );
            assert!(
                rounds <= 2 * (MAX - MIN) as usize + 2,
                "{round}: too many steps won"
            );
        }
        let bound = if direction == Direction::Out {
            MAX
        } else {
            MIN
        };
        assert_eq!(
            count, bound,
            "{direction:?}: the race stopped short of the bound"
        );
        // The last round was refused by everyone, at the bound.
        let ledger = agents[0].1.read_ledger(&keys, "web").await.expect("read");
        for (node, _) in &agents {
            let request = Request {
                node,
                direction,
                step: 1,
                observed: count,
                min: MIN,
                max: Some(MAX),
            };
            assert_eq!(
                coordination::evaluate(&request, &ledger, false, false),
                Err(coordination::Refusal::AtBound { count, bound })
            );
        }
    }
    testkit::figure(test, "rounds", rounds);
    testkit::figure(test, "most claims in flight at once", most_racing);
}

/// A won claim reads back: its intent, its cooldown, the revision later claims compare;
/// the intent and the cooldown go with their leases, the last claim stays.
#[tokio::test]
async fn a_won_claim_reads_back_and_its_records_expire_with_their_leases() {
    let test = "a_won_claim_reads_back_and_its_records_expire_with_their_leases";
    if !require(test, Component::Etcd) {
        return;
    }
    let etcd = EtcdCluster::start();
    let keys = ClusterKeys::new("c").expect("name");
    let agent = store(&etcd).await;
    let free = agent.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(free, Ledger::default());
    let request = Request {
        node: "n0",
        direction: Direction::Out,
        step: 1,
        observed: 1,
        min: 1,
        max: Some(3),
    };
    let claim = coordination::evaluate(&request, &free, true, false).expect("free");
    assert!(
        agent
            .claim_step(&keys, "web", free.revision, &claim, TTLS)
            .await
            .expect("txn")
    );

    let ledger = agent.read_ledger(&keys, "web").await.expect("read");
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
    let later = agent.read_ledger(&keys, "web").await.expect("read");
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
/// from the same read race like any claim (one wins, at once), the loser fills what is
/// left, the target is reached and not passed, and it goes with its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

    // n2 and n3 read the ledger (the target, n1's settling intent: 4 after it) and fill
    // their shares at once: n2 has room for 3, n3 for 9.
    let fill = tick::ttls(Want::Fill, Direction::Out, &policy, 1, 0);
    let fillers = [("n2".to_owned(), n2), ("n3".to_owned(), n3)];
    let room = |i: usize| if i == 0 { 3 } else { 9 };
    let shared = Arc::new(policy.clone());
    let attempts = race(&fillers, &keys, move |i, node, seen| {
        let share = tick::decide(node, Want::Fill, &observation(2, room(i)), seen, &shared);
        share.ok().map(|share| (share, fill))
    })
    .await;
    for attempt in &attempts {
        assert_eq!(attempt.seen.target.as_ref().map(|t| t.desired), Some(8));
        assert!(
            attempt.seen.out_cooling,
            "the decision started the scale-out cooldown"
        );
    }
    let shares: Vec<u32> = attempts
        .iter()
        .map(|a| a.claim.as_ref().map_or(0, |c| c.count))
        .collect();
    assert_eq!(shares, [3, 4]);
    let won = one_winner("the fill", &attempts, &fillers[0].1, &keys)
        .await
        .expect("both claimed");
    // The loser reads again: what is left of the target, if anything.
    let loser = if won.intent.node == "n2" { 1 } else { 0 };
    let (node, agent) = &fillers[loser];
    let again = agent.read_ledger(&keys, "web").await.expect("read");
    match tick::decide(
        node,
        Want::Fill,
        &observation(2, room(loser)),
        &again,
        &policy,
    ) {
        Ok(last) => {
            assert_eq!(
                (node.as_str(), last.count),
                ("n3", 1),
                "after n2's 3, one is left"
            );
            assert_eq!(last.intent.count_after, 8);
            assert!(
                agent
                    .claim_step(&keys, "web", again.revision, &last, fill)
                    .await
                    .expect("txn")
            );
        }
        Err(refusal) => {
            assert_eq!(node, "n2", "after n3's 4 the target is reached");
            assert_eq!(refusal, tick::NOTHING_TO_DO);
        }
    }
    let done = agent.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(done.intent.as_ref().map(|i| i.count_after), Some(8));
    for (i, (node, _)) in fillers.iter().enumerate() {
        assert_eq!(
            tick::decide(node, Want::Fill, &observation(2, room(i)), &done, &policy),
            Err(tick::NOTHING_TO_DO)
        );
    }
    // The target lives as long as its lease (the cooldown, at least 5 s).
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    let later = agent.read_ledger(&keys, "web").await.expect("read");
    assert_eq!(later.target, None, "the target outlived its lease");
}
