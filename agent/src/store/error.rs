//! Errors of the etcd adapter, each naming the operation and the cluster or key involved.

/// What went wrong talking to etcd, or what etcd's state refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No member answered before the deadline: the caller maps this to exit code 69.
    #[error("etcd is unreachable at {endpoints} ({what}, gave up after {attempts} attempts)")]
    Unavailable {
        endpoints: String,
        what: String,
        attempts: u32,
        #[source]
        source: etcd_client::Error,
    },
    /// etcd answered with an error that retrying will not fix.
    #[error("etcd refused {what}")]
    Failed {
        what: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("invalid etcd settings: {0}")]
    Settings(String),
    #[error("cluster {cluster:?} already exists (id {id}); use --force to wipe it and start over")]
    ClusterExists { cluster: String, id: String },
    #[error("cluster {cluster:?} does not exist; create it first with `gru create {cluster}`")]
    ClusterMissing { cluster: String },
    #[error(
        "node name {node:?} is held by a live node of cluster {cluster:?}; pick another --name or stop that agent"
    )]
    NodeNameTaken { cluster: String, node: String },
}

impl StoreError {
    /// True when etcd could not be reached at all (as opposed to a refusal).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Whether an etcd-client error is worth retrying: the member was unreachable, is not the
/// leader right now, or the connection broke. Everything else is an answer.
pub fn is_transient(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::GRpcStatus(status) => {
            matches!(
                status.code(),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Aborted
            ) && !status.message().contains("permission denied")
                && !status.message().contains("authentication failed")
        }
        E::TransportError(_) | E::IoError(_) => true,
        _ => false,
    }
}

/// Whether etcd answered that a lease does not exist (it expired, or was revoked): a
/// keep-alive opened for a lease that ran out while etcd was unreachable fails this way
/// (etcd-client turns the server's TTL of 0 into an error), and only a new lease helps.
pub fn is_lease_not_found(err: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match err {
        E::LeaseKeepAliveError(message) => message.contains("lease not found"),
        E::GRpcStatus(status) => {
            status.code() == tonic::Code::NotFound && status.message().contains("lease not found")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_that_ran_out_is_not_found_and_a_broken_connection_is_not() {
        let cases = [
            (
                etcd_client::Error::LeaseKeepAliveError("lease not found".into()),
                true,
            ),
            (
                etcd_client::Error::GRpcStatus(tonic::Status::not_found(
                    "etcdserver: requested lease not found",
                )),
                true,
            ),
            (
                etcd_client::Error::LeaseKeepAliveError("channel closed".into()),
                false,
            ),
            (
                etcd_client::Error::GRpcStatus(tonic::Status::unavailable("no leader")),
                false,
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(is_lease_not_found(&err), expected, "{err}");
        }
    }
}
