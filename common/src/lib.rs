//! gru's shared vocabulary: everything the agent and the `gru` binary must agree on,
//! with no I/O and no async so it can be tested with plain table tests.
//!
//! * [`auth`]: operator tokens (roles, expiry) and the cluster key's rotation: which key
//!   signs and which ones are accepted at a given time.
//! * [`config`]: the four Gru documents (agent configuration, policy, service descriptors,
//!   analytics) and node records, parsed case-insensitively and validated with every
//!   problem reported by file and JSON path.
//! * [`keys`]: the etcd key layout (`/gru/<cluster>/...`), in one place, so no other module
//!   formats a key by hand.
//! * [`rollout`]: the record of a service's rollout (`/gru/<cluster>/rollouts/<service>`).

pub mod auth;
pub mod config;
pub mod keys;
pub mod rollout;
