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
