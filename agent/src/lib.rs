//! The gru agent: one per node. It registers the node in etcd under a lease, keeps it
//! alive, serves the agent's HTTP API, and (with the MAPE-K loop) manages the node's
//! containers.
//!
//! * [`store`]: the etcd adapter (retries, transactions, leases). The only module that
//!   imports etcd-client.
//! * [`docker`]: the Docker Engine adapter (bollard). The only module that imports bollard.
//! * [`discovery`]: `<AppRoot>/<service>/<instance>` records under the node's lease.
//! * [`coordination`]: the scaling ledger's rules: one step per service per cooldown window,
//!   instances within [min, max], without a leader (pure).
//! * [`gossip`]: the cluster view built from friends' reports (pure merge + wire format).
//! * [`health`]: an instance's readiness and liveness checks as a state machine (pure);
//!   `runtime::health` runs the probes.
//! * [`membership`]: the node's records under one lease, kept alive, re-registered if lost.
//! * [`mape`]: the pure MAPE-K core (windows, analytics, weights, strategies, planner).
//! * [`tick`]: the exclusive part of a tick (repairs, fills, steps, targets) as a pure
//!   function; the daemon and the simulator both drive it.
//! * [`runtime`]: the agent's shared knowledge and commands, and the tasks that run it.
//! * [`http`]: the agent's HTTP API: `/healthz` and Gru's `/gru/v1/...` routes (state
//!   changes need a signed request: an operator token, or the cluster key).
//! * [`tls`]: the cluster CA as the only trust anchor: the agent's HTTPS server (client
//!   certificates), the client that checks a peer's certificate against its node name.
//! * [`signing`]: how a state-changing request is signed and checked (pure).
//! * [`telemetry`]: counters for `GET /metrics` and the InfluxDB sink (bounded, batched).
//! * [`daemon`]: composes the above into the foreground process `gru join` runs.

pub mod coordination;
pub mod daemon;
pub mod discovery;
pub mod docker;
pub mod gossip;
pub mod health;
pub mod http;
pub mod kept_lease;
pub mod mape;
pub mod membership;
pub mod metrics_line;
pub mod runtime;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod tick;
pub mod tls;
