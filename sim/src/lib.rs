//! gru-sim: a deterministic, in-process simulation of many gru agents.
//!
//! The agents run the real planner and the real scaling-ledger rules, both through the
//! agent's tick core (`gru_agent::tick`), and the real cluster view
//! (`gru_agent::gossip::ClusterView`, or its proven-equal compact form at N = 10,000);
//! everything the real agent gets from adapters is faked here, in virtual time, from one
//! seed. Same scenario and seed, same run, to the bit.
//!
//! * [`time`]: the virtual clock (ticks of a fixed length);
//! * [`trace`]: demand traces, generated from seeds and shipped in `sim/traces/`;
//! * [`runtime`]: the fake container runtime (slots, start delay, crashes);
//! * [`store`]: the fake etcd (revisions, compare-then-put transactions, leases, the
//!   ledger as `gru_agent::store` reads and claims it, membership and discovery);
//! * [`network`]: the fake network (message loss, partitions, the store on the majority side);
//! * [`view`]: every agent's cluster view, real or compact, and the book of reports;
//! * [`gossip`]: one push-pull communication round with at most `MaxFriends` friends;
//! * [`scenario`]: what a run simulates (modes, services, demand, timing, faults, presets);
//! * [`sim`]: the simulation loop and its [`RunReport`](sim::RunReport);
//! * [`invariants`]: the cluster-wide invariants, checked at every tick;
//! * [`baseline`]: HPA and Dynamite, re-implemented as single controllers;
//! * [`experiments`]: convergence, overshoot, the trace table and the fault table;
//! * [`report`]: the bench's tables and its `key=value` summary;
//! * [`bench`]: `gru-sim bench`, every experiment in order.
//!
//! The binary (`src/main.rs`) only parses arguments and calls these.

pub mod baseline;
pub mod bench;
pub mod experiments;
pub mod gossip;
pub mod invariants;
pub mod network;
pub mod report;
pub mod runtime;
pub mod scenario;
pub mod sim;
pub mod store;
pub mod time;
pub mod trace;
pub mod view;
