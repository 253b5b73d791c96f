//! Gossip with friends: each round an agent sends what it knows of the cluster (the latest
//! report of every node it heard of) to at most `MaxFriends` random active peers, which
//! merge it and answer with theirs.
//!
//! * `view`: `ClusterView`, the merge and the weighted per-service values (pure).
//! * `wire`: the message format, its size cap and its authentication (HMAC with the
//!   cluster secret, a timestamp and a nonce against replay).

pub mod view;
pub mod wire;

pub use view::{ClusterView, NodeReport, ServiceReport, ServiceView};
