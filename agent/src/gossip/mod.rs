//! Gossip with friends: each round an agent compares what it knows of the cluster (the
//! latest report of every node it heard of) with at most `MaxFriends` random active peers,
//! and each side gets the reports it lacks.
//!
//! * `view`: `ClusterView`, the merge and the weighted per-service values (pure).
//! * `digest`: the exchange, versions first (bucket fingerprints, then the versions of the
//!   buckets that differ, then only the reports a side lacks), and when a node publishes a
//!   new version (dead band, heartbeat) (pure).
//! * `wire`: the message format, its size cap and its authentication (HMAC with the
//!   cluster secret, a timestamp and a nonce against replay).
//! * `codec`: the compact forms of its lists (front-coded names, reports whose names are
//!   indices into a table) and their lengths.

pub mod codec;
pub mod digest;
pub mod view;
pub mod wire;

pub use view::{ClusterView, NodeReport, ServiceReport, ServiceView};
