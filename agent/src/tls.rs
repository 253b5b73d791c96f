//! TLS between agents, and between `gru manage` and agents (issue 15, part 1).
//!
//! One cluster CA (`gru tls ca create`, or the operator's own) is the only trust anchor:
//! no bundled or system roots are ever loaded. A **node certificate** carries the node's
//! name as a DNS subject alternative name (plus the addresses it is reached at) and both
//! the server and client extended key usages; an **operator certificate** carries no DNS
//! name (so it can never pass for a node) and only the client usage.
//!
//! * Server side ([`server_config`], [`serve_tls`]): the agent serves HTTPS and asks every
//!   client for a certificate. A certificate that is offered must chain to the CA and be
//!   in its validity period, or the handshake fails (counted by reason in
//!   [`TlsRefusals`] and logged). Whether a client may come *without* one depends on
//!   [`ClientAuth`]: with `peers` (the default) browsers and scripts may read, and each
//!   route decides (peer routes refuse a request without a node certificate valid for the
//!   node it speaks for: [`cert_is_for_node`]); with `all` the handshake itself requires
//!   one. The verified certificate reaches handlers as the request extension
//!   [`PeerCertificate`].
//! * Client side ([`client_config`], [`PeerClient`]): a peer is dialed at the address its
//!   etcd record gives, with the scheme it publishes there (`NodeConfig::scheme`), and its
//!   certificate must chain to the CA **and be valid for the node name whose record was
//!   dialed**. hyper-rustls asks [`PeerNames`] (authority → node, filled by whoever builds
//!   the URI from a node record: [`PeerClient::uri`]) for the name to verify; an
//!   authority that no node record gave is refused rather than checked against its IP.
//!   An agent with TLS never speaks plain HTTP to a peer (no downgrade): a peer that
//!   publishes `http` is refused before any connection.
//!
//! Invariant: with TLS on, every connection from this agent to another agent verifies the
//! other's node name; a request to a peer route is served only for a client whose
//! certificate names the node it claims to be.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use common::config::Scheme;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Time a client has to finish its TLS handshake; a slower one is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long in-flight requests may finish after shutdown is asked.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Which clients must present a certificate (`gru join --tls-client-auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Peer routes require a node certificate; operators' routes accept a client
    /// certificate or a token signature; reads, `/metrics` and the console need none.
    #[default]
    Peers,
    /// Every connection must present a certificate from the CA (the console then needs
    /// one in the browser).
    All,
}

/// The files `gru join --tls-cert/--tls-key/--tls-ca` name.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Why TLS could not be set up; each message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate { path: PathBuf },
    #[error(
        "{path}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1, as `gru tls` and openssl write)"
    )]
    NoKey { path: PathBuf },
    #[error("{path}: not a usable CA certificate: {why}")]
    BadCa { path: PathBuf, why: String },
    #[error("{path}: certificate and key do not go together, or cannot be used: {why}")]
    BadIdentity { path: PathBuf, why: String },
    #[error(
        "{path} is not a valid certificate of node {node} from the CA {ca}: {why} (make one with `gru tls cert create --node {node}`)"
    )]
    NotForNode {
        path: PathBuf,
        node: String,
        ca: PathBuf,
        why: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in the PEM file at `path`, in order.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The private key in the PEM file at `path`.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

/// The CA file as the one trust anchor.
pub fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// A client configuration trusting only the CA at `ca`, presenting `identity` (cert, key
/// files) when a server asks for one.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = read_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCa {
            path: ca.to_owned(),
            why: e.to_string(),
        })?
        .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => builder
            .with_client_auth_cert(read_certificates(cert)?, read_key(key)?)
            .map_err(|e| TlsError::BadIdentity {
                path: cert.to_owned(),
                why: e.to_string(),
            }),
    }
}

/// A client configuration that trusts nothing: what an agent without TLS uses, so that a
/// peer publishing `https` fails with a clear error instead of being trusted blindly.
pub fn untrusting_client_config() -> ClientConfig {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions();
    match builder {
        Ok(builder) => builder
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
        // The ring provider supports the default versions; this cannot happen.
        Err(_) => ClientConfig::builder()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    }
}

/// Checks that `files.cert` chains to `files.ca`, is in its validity period now and is
/// valid for `node`: an agent refuses to start with a certificate its peers would refuse.
pub fn check_own_certificate(files: &TlsFiles, node: &str) -> Result<(), TlsError> {
    let roots = read_roots(&files.ca)?;
    let chain = read_certificates(&files.cert)?;
    let not_for_node = |why: String| TlsError::NotForNode {
        path: files.cert.clone(),
        node: node.to_owned(),
        ca: files.ca.clone(),
        why,
    };
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| not_for_node(e.to_string()))?;
    let name = ServerName::try_from(node.to_owned())
        .map_err(|_| not_for_node(format!("{node:?} is not usable as a DNS name")))?;
    let (end_entity, intermediates) =
        chain.split_first().ok_or_else(|| TlsError::NoCertificate {
            path: files.cert.clone(),
        })?;
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        end_entity,
        intermediates,
        &name,
        &[],
        UnixTime::now(),
    )
    .map(drop)
    .map_err(|e| not_for_node(describe(&e)))
}

/// The server configuration of an agent: its node certificate, the CA as the only anchor
/// for client certificates, and whether a client may come without one.
pub fn server_config(files: &TlsFiles, client_auth: ClientAuth) -> Result<ServerConfig, TlsError> {
    let roots = read_roots(&files.ca)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
    let verifier = match client_auth {
        ClientAuth::Peers => verifier.allow_unauthenticated(),
        ClientAuth::All => verifier,
    }
    .build()
    .map_err(|e| TlsError::BadCa {
        path: files.ca.clone(),
        why: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::BadCa {
            path: files.ca.clone(),
            why: e.to_string(),
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certificates(&files.cert)?, read_key(&files.key)?)
        .map_err(|e| TlsError::BadIdentity {
            path: files.cert.clone(),
            why: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// An agent's TLS: what it serves with and what it dials peers with.
#[derive(Debug)]
pub struct AgentTls {
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
    pub client_auth: ClientAuth,
}

impl AgentTls {
    /// Reads and checks the files for node `node` (see [`check_own_certificate`]).
    pub fn load(
        files: &TlsFiles,
        node: &str,
        client_auth: ClientAuth,
    ) -> Result<AgentTls, TlsError> {
        check_own_certificate(files, node)?;
        Ok(AgentTls {
            server: Arc::new(server_config(files, client_auth)?),
            client: Arc::new(client_config(&files.ca, Some((&files.cert, &files.key)))?),
            client_auth,
        })
    }
}

/// Whether `cert` (already verified against the CA in the handshake) is valid for the node
/// name `node`: it carries `node` as a DNS name.
pub fn cert_is_for_node(cert: &CertificateDer<'_>, node: &str) -> bool {
    let Ok(name) = ServerName::try_from(node.to_owned()) else {
        return false;
    };
    rustls::server::ParsedCertificate::try_from(cert)
        .and_then(|parsed| rustls::client::verify_server_name(&parsed, &name))
        .is_ok()
}

/// The client certificate of the connection a request came on (the request extension the
/// TLS server adds): `None` without TLS or when the client presented none.
#[derive(Debug, Clone, Default)]
pub struct PeerCertificate(pub Option<Arc<CertificateDer<'static>>>);

/// A short reason for a TLS failure, the same words on both sides, for counters and logs.
pub fn refusal_reason(err: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } => "certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "certificate_not_valid_yet",
            C::UnknownIssuer | C::BadSignature => "unknown_ca",
            C::NotValidForName | C::NotValidForNameContext { .. } => "certificate_not_for_node",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "certificate_wrong_purpose",
            C::Revoked => "certificate_revoked",
            _ => "certificate_invalid",
        },
        rustls::Error::AlertReceived(_) => "alert_from_peer",
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => "not_tls",
        _ => "handshake_failed",
    }
}

/// A TLS error in words an operator can act on.
pub fn describe(err: &rustls::Error) -> String {
    let hint = match refusal_reason(err) {
        "certificate_expired" => "; make a new one with `gru tls cert create`",
        "unknown_ca" => "; it was not signed by this cluster's CA (--tls-ca)",
        "certificate_not_for_node" => {
            "; it does not name the node (its DNS names must include the node's name)"
        }
        "no_client_certificate" => "; give --tls-cert and --tls-key",
        _ => "",
    };
    format!("{err}{hint}")
}

/// The rustls error inside an I/O or client error chain, if any.
pub fn find_tls_error<'e>(
    mut err: &'e (dyn std::error::Error + 'static),
) -> Option<&'e rustls::Error> {
    loop {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An I/O error's `source` skips the error it wraps (and hyper-rustls wraps
        // tokio-rustls' I/O error in another): look inside each layer.
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            err = inner;
            continue;
        }
        err = err.source()?;
    }
}

/// Refused TLS handshakes of this agent's server, by reason (`/gru/v1/gossip`'s
/// `stats.tls_refused`).
#[derive(Debug, Clone, Default)]
pub struct TlsRefusals(Arc<Mutex<BTreeMap<&'static str, u64>>>);

impl TlsRefusals {
    pub fn count(&self, reason: &'static str) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(reason).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Serves `router` over TLS on `listener` until `cancel` fires, then lets in-flight
/// requests finish for up to [`DRAIN_TIMEOUT`]. Each connection's handshake has
/// [`HANDSHAKE_TIMEOUT`]; a refused one is counted in `refusals` and logged with the
/// client's address and the reason.
pub async fn serve_tls(
    listener: TcpListener,
    router: Router,
    config: Arc<ServerConfig>,
    refusals: TlsRefusals,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, client) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        let refusals = refusals.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    refused(&refusals, client, &err);
                    return;
                }
                Err(_) => {
                    refusals.count("handshake_timeout");
                    tracing::warn!(%client, "TLS handshake refused: not finished in time");
                    return;
                }
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .map(|cert| Arc::new(cert.clone().into_owned()));
            let service = hyper::service::service_fn(
                move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request
                        .extensions_mut()
                        .insert(PeerCertificate(cert.clone()));
                    tower::ServiceExt::oneshot(router.clone(), request)
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = watcher.watch(connection).await {
                tracing::debug!(%client, error = %err, "connection ended with an error");
            }
        });
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight {} s after shutdown; dropped",
            DRAIN_TIMEOUT.as_secs()
        );
    }
    Ok(())
}

fn refused(refusals: &TlsRefusals, client: SocketAddr, err: &std::io::Error) {
    match find_tls_error(err) {
        Some(tls) => {
            let reason = refusal_reason(tls);
            refusals.count(reason);
            tracing::warn!(%client, reason, error = %describe(tls), "TLS handshake refused");
        }
        None => {
            refusals.count("handshake_failed");
            tracing::warn!(%client, error = %err, "TLS handshake refused");
        }
    }
}

/// Which node's record gave each `host:port` this process dials: the name a server's
/// certificate must be valid for. Filled by [`PeerClient::uri`] from node records.
#[derive(Debug, Clone, Default)]
pub struct PeerNames(Arc<RwLock<HashMap<String, String>>>);

impl PeerNames {
    /// Remembers that `authority` is where node `node`'s record says it listens.
    pub fn note(&self, authority: &str, node: &str) {
        let known = self
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(authority)
            .is_some_and(|n| n == node);
        if !known {
            self.0
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(authority.to_owned(), node.to_owned());
        }
    }

    fn node_at(&self, authority: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(authority)
            .cloned()
    }
}

/// Why a peer was not dialed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error(
        "node {node} publishes plain http, and this agent speaks to peers only over TLS: join that node with --tls-cert, --tls-key and --tls-ca"
    )]
    PlainPeer { node: String },
}

/// The connector every client to an agent uses: plain TCP for `http` URIs, TLS for
/// `https` ones, with the server's name taken from [`PeerNames`].
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// An HTTP client for other agents (or, in `gru manage`, for agents): one pool, the names
/// its TLS checks, and whether plain http peers are refused.
#[derive(Debug, Clone)]
pub struct PeerClient {
    pub http: Client<Connector, Full<Bytes>>,
    names: PeerNames,
    /// With TLS on this side, a peer publishing `http` is refused (no downgrade).
    tls_only: bool,
    /// A CA to verify `https` nodes with was given.
    has_tls: bool,
}

impl PeerClient {
    /// A client presenting and trusting `tls` (or, with `None`, plain http only), with
    /// `connect_timeout` on each TCP connection.
    pub fn new(tls: Option<Arc<ClientConfig>>, connect_timeout: Duration) -> PeerClient {
        let refuse_plain = tls.is_some();
        PeerClient::with_pool(tls, connect_timeout, None, refuse_plain)
    }

    /// As [`PeerClient::new`], idle connections dropped after `pool_idle` when given, and
    /// plain-http nodes refused only when `refuse_plain` (an agent with TLS refuses them;
    /// `gru manage` follows what each node publishes).
    pub fn with_pool(
        tls: Option<Arc<ClientConfig>>,
        connect_timeout: Duration,
        pool_idle: Option<Duration>,
        refuse_plain: bool,
    ) -> PeerClient {
        let names = PeerNames::default();
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let has_tls = tls.is_some();
        let config = tls.map_or_else(untrusting_client_config, |c| ClientConfig::clone(&c));
        let resolver_names = names.clone();
        let resolver = move |uri: &hyper::Uri| -> Result<ServerName<'static>, String> {
            let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
            let node = resolver_names.node_at(authority).ok_or_else(|| {
                format!("no node record names {authority}: its certificate cannot be checked")
            })?;
            ServerName::try_from(node.clone())
                .map_err(|_| format!("node name {node:?} is not usable as a DNS name"))
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .with_server_name_resolver(resolver)
            .enable_http1()
            .wrap_connector(http);
        let mut builder = Client::builder(TokioExecutor::new());
        if let Some(idle) = pool_idle {
            builder.pool_idle_timeout(idle);
        }
        PeerClient {
            http: builder.build(connector),
            names,
            tls_only: refuse_plain,
            has_tls,
        }
    }

    /// The URI of `path` (with its query) on node `node`, reached at `authority` with
    /// `scheme` as its record says; notes the node's name for the certificate check.
    pub fn uri(
        &self,
        node: &str,
        scheme: Scheme,
        authority: &str,
        path: &str,
    ) -> Result<String, DialError> {
        if self.tls_only && scheme == Scheme::Http {
            return Err(DialError::PlainPeer {
                node: node.to_owned(),
            });
        }
        self.names.note(authority, node);
        Ok(format!("{scheme}://{authority}{path}"))
    }

    /// Whether this client has a CA (and speaks https to the nodes that publish it).
    pub fn tls(&self) -> bool {
        self.has_tls
    }

    /// `GET path` on node `node` (reached at `authority` with `scheme`): the status and
    /// the body, refused past `limit` bytes. Errors in words ([`client_error`]).
    pub async fn get(
        &self,
        node: &str,
        scheme: Scheme,
        authority: &str,
        path: &str,
        limit: usize,
    ) -> Result<(hyper::StatusCode, Bytes), String> {
        use http_body_util::BodyExt;
        let uri = self
            .uri(node, scheme, authority, path)
            .map_err(|e| e.to_string())?;
        let request = hyper::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| client_error(&e))?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// An error from the client in words: a TLS failure names its reason.
pub fn client_error(err: &(dyn std::error::Error + 'static)) -> String {
    match find_tls_error(err) {
        Some(tls) => format!("TLS: {}", describe(tls)),
        None => {
            let mut text = err.to_string();
            let mut source = err.source();
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::Extension;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair, SanType,
    };

    use super::*;

    /// A CA and node certificates (`<node>.pem`, `<node>-key.pem`, `ca.pem`) in a temp dir.
    fn pki(nodes: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let issuer =
            CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("ca");
        std::fs::write(dir.path().join("ca.pem"), issuer.pem()).expect("write");
        for node in nodes {
            let mut params = CertificateParams::new(vec![(*node).to_owned()]).expect("params");
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &issuer).expect("sign");
            std::fs::write(dir.path().join(format!("{node}.pem")), cert.pem()).expect("write");
            std::fs::write(
                dir.path().join(format!("{node}-key.pem")),
                key.serialize_pem(),
            )
            .expect("write");
        }
        dir
    }

    fn files(dir: &Path, node: &str) -> TlsFiles {
        TlsFiles {
            cert: dir.join(format!("{node}.pem")),
            key: dir.join(format!("{node}-key.pem")),
            ca: dir.join("ca.pem"),
        }
    }

    /// Serves, as `node`, a route answering which node the client's certificate names
    /// (among `n1`, `n2`), or `none`.
    async fn serve(
        dir: &Path,
        node: &str,
        client_auth: ClientAuth,
    ) -> (String, TlsRefusals, CancellationToken) {
        let tls = AgentTls::load(&files(dir, node), node, client_auth).expect("tls");
        let router = Router::new().route(
            "/who",
            get(|Extension(peer): Extension<PeerCertificate>| async move {
                let who = peer.0.map_or("none", |cert| {
                    ["n1", "n2"]
                        .into_iter()
                        .find(|n| cert_is_for_node(&cert, n))
                        .unwrap_or("other")
                });
                who.to_owned()
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let authority = listener.local_addr().expect("address").to_string();
        let refusals = TlsRefusals::default();
        let cancel = CancellationToken::new();
        tokio::spawn(serve_tls(
            listener,
            router,
            Arc::clone(&tls.server),
            refusals.clone(),
            cancel.clone(),
        ));
        (authority, refusals, cancel)
    }

    /// The refusals once `reason` was counted (the server counts after the client has
    /// seen the failure), or as they are after 5 s.
    async fn counted(refusals: &TlsRefusals, reason: &str) -> BTreeMap<&'static str, u64> {
        for _ in 0..500 {
            if refusals.snapshot().contains_key(reason) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        refusals.snapshot()
    }

    async fn ask(client: &PeerClient, node: &str, authority: &str) -> Result<String, String> {
        let uri = client
            .uri(node, Scheme::Https, authority, "/who")
            .map_err(|e| e.to_string())?;
        let request = hyper::Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let response = client.http.request(request).await.map_err(|e| {
            find_tls_error(&e).map_or_else(|| e.to_string(), |tls| refusal_reason(tls).to_owned())
        })?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
    }

    #[tokio::test]
    async fn a_peer_is_verified_for_the_node_name_of_the_record_dialed() {
        let dir = pki(&["n1", "n2"]);
        let (authority, refusals, cancel) = serve(dir.path(), "n2", ClientAuth::Peers).await;
        let as_n1 = || {
            let tls =
                AgentTls::load(&files(dir.path(), "n1"), "n1", ClientAuth::Peers).expect("tls");
            PeerClient::new(Some(Arc::clone(&tls.client)), Duration::from_secs(2))
        };
        // Dialed as n2: its certificate names n2; it sees ours, naming n1.
        assert_eq!(ask(&as_n1(), "n2", &authority).await, Ok("n1".to_owned()));
        // The same address recorded as n3: n2's certificate is not n3's.
        assert_eq!(
            ask(&as_n1(), "n3", &authority).await,
            Err("certificate_not_for_node".to_owned())
        );
        // An address no record named is not dialed over TLS at all.
        let unnamed = as_n1();
        let request = hyper::Request::get(format!("https://{authority}/who"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        assert!(unnamed.http.request(request).await.is_err());
        // A client with the CA and no certificate: served, and the route sees none.
        let anonymous = PeerClient::new(
            Some(Arc::new(
                client_config(&dir.path().join("ca.pem"), None).expect("config"),
            )),
            Duration::from_secs(2),
        );
        assert_eq!(
            ask(&anonymous, "n2", &authority).await,
            Ok("none".to_owned())
        );
        // An agent with TLS does not speak plain http to a peer.
        assert!(matches!(
            as_n1().uri("n2", Scheme::Http, &authority, "/who"),
            Err(DialError::PlainPeer { .. })
        ));
        // Without a CA, an https peer is refused, and the server counts the aborted handshake.
        let plain = PeerClient::new(None, Duration::from_secs(2));
        assert_eq!(
            ask(&plain, "n2", &authority).await,
            Err("unknown_ca".to_owned())
        );
        let counted = counted(&refusals, "alert_from_peer").await;
        assert_eq!(counted.get("alert_from_peer"), Some(&1), "{counted:?}");
        cancel.cancel();
    }

    #[tokio::test]
    async fn with_client_auth_all_a_client_without_a_certificate_is_refused_in_the_handshake() {
        let dir = pki(&["n1", "n2"]);
        let (authority, refusals, cancel) = serve(dir.path(), "n2", ClientAuth::All).await;
        let anonymous = PeerClient::new(
            Some(Arc::new(
                client_config(&dir.path().join("ca.pem"), None).expect("config"),
            )),
            Duration::from_secs(2),
        );
        assert!(ask(&anonymous, "n2", &authority).await.is_err());
        let tls = AgentTls::load(&files(dir.path(), "n1"), "n1", ClientAuth::All).expect("tls");
        let as_n1 = PeerClient::new(Some(Arc::clone(&tls.client)), Duration::from_secs(2));
        assert_eq!(ask(&as_n1, "n2", &authority).await, Ok("n1".to_owned()));
        let counted = counted(&refusals, "no_client_certificate").await;
        assert_eq!(
            counted.get("no_client_certificate"),
            Some(&1),
            "{counted:?}"
        );
        cancel.cancel();
    }

    #[test]
    fn an_agent_refuses_a_certificate_for_another_name() {
        let dir = pki(&["n1"]);
        let err = AgentTls::load(&files(dir.path(), "n1"), "n2", ClientAuth::Peers)
            .expect_err("n1's certificate is not n2's");
        let shown = err.to_string();
        assert!(
            shown.contains("node n2") && shown.contains("gru tls cert create --node n2"),
            "{shown}"
        );
    }
}
