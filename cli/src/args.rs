//! What the operator typed: clap definitions only. Turning these into validated settings
//! happens in the commands.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   runtime failure (etcd refused, cluster exists or is missing, name taken, ...)
  64  bad usage or invalid configuration (every problem is printed with file and path)
  69  a required service (etcd, the Docker engine) is unreachable

Environment:
  ETCD_ADDR      etcd endpoints, comma-separated (same as --etcd)
  ETCD_USER, ETCD_PASSWORD, ETCD_CA, ETCD_CERT, ETCD_KEY   same as the flags
  RUST_LOG       log filter, e.g. RUST_LOG=gru_agent=debug
  DOCKER_HOST    Docker engine to use (wins over Docker.DaemonUrl)";

/// gru: a decentralized autonomic manager for Docker containers.
///
/// Every node runs an agent (`gru join`) that registers in etcd, watches its own
/// containers and scales the services it is given. Operators create a cluster, push
/// its JSON configuration, join nodes and manage them, all with this one binary.
#[derive(Debug, Parser)]
#[command(name = "gru", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub etcd: EtcdArgs,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Least severe log level shown: debug, info, warn or error (Gru's fatal and panic
    /// mean error). Default: info for `join`, warn for the other commands. RUST_LOG, when
    /// set, wins (it can also filter by module).
    #[arg(short = 'l', long, global = true, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    #[command(subcommand)]
    pub command: Command,
}

/// Gru's `--log-level` values; `trace` is gru's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    /// Gru's level above error: gru logs nothing more severe, so it means error.
    Fatal,
    /// As `fatal`.
    Panic,
}

impl LogLevel {
    /// The tracing filter directive. debug and trace are gru's own (the libraries under
    /// it, etcd's and Docker's clients, stay at warn: their debug lines would drown it).
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Trace => "warn,gru=trace,gru_agent=trace,common=trace",
            LogLevel::Debug => "warn,gru=debug,gru_agent=debug,common=debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal | LogLevel::Panic => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How to reach etcd (global: valid before or after the subcommand).
#[derive(Debug, Args)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379
    /// (Gru's -e/--etcdserver is the same flag)
    #[arg(
        short = 'e',
        long = "etcd",
        visible_alias = "etcdserver",
        env = "ETCD_ADDR",
        global = true,
        default_value = gru_agent::store::DEFAULT_ETCD_ENDPOINT
    )]
    pub endpoints: String,

    /// etcd user name (with --etcd-password).
    #[arg(long = "etcd-user", env = "ETCD_USER", global = true)]
    pub user: Option<String>,

    /// etcd password (with --etcd-user). Prefer the ETCD_PASSWORD variable to keep it out
    /// of the process list.
    #[arg(
        long = "etcd-password",
        env = "ETCD_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// PEM file of the CA that signed the etcd members' certificates.
    #[arg(long = "etcd-ca", env = "ETCD_CA", global = true)]
    pub ca: Option<PathBuf>,

    /// PEM client certificate, for etcd members that require one (with --etcd-key).
    #[arg(long = "etcd-cert", env = "ETCD_CERT", global = true)]
    pub cert: Option<PathBuf>,

    /// PEM private key of --etcd-cert.
    #[arg(long = "etcd-key", env = "ETCD_KEY", global = true)]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a cluster: write its id and a random secret under /gru/<cluster>/.
    ///
    /// Refuses an existing cluster unless --force, which deletes the cluster's whole tree
    /// (configuration and node records) and starts over.
    Create {
        /// Cluster name: ASCII letters, digits, '-', '_' and '.'.
        cluster: String,
        /// Wipe an existing cluster of that name and create it anew.
        #[arg(long)]
        force: bool,
    },

    /// Validate, push and read the cluster's configuration documents.
    #[command(subcommand)]
    Config(ConfigCommand),

    /// Register this node in a cluster and run its agent in the foreground.
    ///
    /// The node's records (config, constraints, resources from the Docker engine, active)
    /// live under one etcd lease whose TTL is the configuration's Discovery.TTL (at least
    /// 2 s), kept alive while the agent runs. SIGINT or SIGTERM revokes the lease (the
    /// node's keys vanish at once) and exits 0; if the agent dies, they vanish within the
    /// TTL. The agent serves its HTTP API (GET /healthz, /gru/v1/...) on --port. With
    /// --start, or after a `start` command, it manages the node's containers: keeps base
    /// services and MinInstances running, and scales services with its policies.
    Join(JoinArgs),

    /// Operate a cluster from a shell: use, list, show, deploy, start/stop service and
    /// agent, set node base-services, update, status, why, events.
    ///
    /// Interactive (history in $GRU_HISTORY or ~/.gru_history, Tab completion, `help`)
    /// when standard input is a terminal; otherwise, or with -c, runs a script: commands
    /// separated by `;` or newlines, every one run even after one failed; exits 64 if a
    /// line was not understood, 1 if a command failed. Commands reach the agents over
    /// their HTTP API, signed with the operator token in GRU_TOKEN or --token-file (see
    /// `gru token create`); without one, with the cluster key read from etcd (a warning
    /// says so: whoever can read etcd can do that). Each reports per node.
    Manage(ManageArgs),

    /// Operator tokens: create (printed once), list, revoke.
    ///
    /// A token signs the requests `gru manage` sends to the agents (give it with GRU_TOKEN
    /// or `gru manage --token-file`). etcd keeps its public key, role and expiry under
    /// /gru/<cluster>/tokens/<name>, never the token. Role `read` may only call read
    /// routes (status, why, events, ...); `operate` may change things. Agents refuse a
    /// revoked token as soon as their etcd watch delivers the deletion, an expired one from
    /// its expiry on.
    #[command(subcommand)]
    Token(TokenCommand),

    /// The cluster key that agents sign gossip, liveness proofs and hook calls with: rotate it.
    #[command(subcommand)]
    Secret(SecretCommand),

    /// TLS between agents: make the cluster's CA and node or operator certificates.
    ///
    /// Needs no etcd. Then join each node with --tls-cert, --tls-key and --tls-ca, and run
    /// `gru manage --tls-ca` (see `gru tls cert create --help`).
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Take a drained node out of the cluster: its agent stops and revokes its lease.
    ///
    /// The same as `gru manage -c "use <cluster>; leave node <node>"`: refused (exit 1, with
    /// the reason) while the node is not drained or still moving its instances; drain it
    /// first with `gru manage -c "use <cluster>; drain node <node>"`. SIGTERM to a drained
    /// agent does the same. Waits up to 10 s until the agent no longer answers.
    Leave {
        /// The cluster's name.
        cluster: String,
        /// The node to take out.
        node: String,
        #[command(flatten)]
        tls: ManageTlsArgs,
    },

    /// Print the completion script of a shell on standard output.
    ///
    /// bash: `source <(gru completions bash)` (or save it in
    /// /etc/bash_completion.d/gru); zsh: `gru completions zsh > "${fpath[1]}/_gru"`;
    /// fish: `gru completions fish > ~/.config/fish/completions/gru.fish`. Needs no etcd.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// The shells `gru completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ManageArgs {
    /// Cluster to use from the start (as `use <cluster>`).
    #[arg(long)]
    pub cluster: Option<String>,

    /// Commands to run instead of the shell, e.g. "use shop; deploy; start agent all".
    #[arg(short = 'c', long = "command", value_name = "SCRIPT")]
    pub script: Option<String>,

    /// Output of every command: text (tables) or json (one document per command, per line).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// File holding the operator token to sign commands with (instead of GRU_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: ManageTlsArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it once on standard output (the rest goes to stderr).
    ///
    /// Example: `export GRU_TOKEN=$(gru token create shop --role operate --ttl 12h --name ci)`.
    Create {
        /// The cluster's name.
        cluster: String,
        /// read (read routes only) or operate (may change things).
        #[arg(long)]
        role: String,
        /// Lifetime: 90s, 15m, 12h, 30d (plain numbers are seconds) [default: no expiry]
        #[arg(long)]
        ttl: Option<String>,
        /// Its name, recorded with every command it signs [default: <role>-<6 hex digits>]
        #[arg(long)]
        name: Option<String>,
    },
    /// List the cluster's tokens: name, role, created, expires (never the token).
    List {
        /// The cluster's name.
        cluster: String,
    },
    /// Delete a token: agents refuse it as soon as their etcd watch tells them.
    Revoke {
        /// The cluster's name.
        cluster: String,
        /// The token's name (as `gru token list` shows it).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Replace the cluster key without downtime.
    ///
    /// Writes a new key; agents learn of it through their etcd watch (no restart), accept
    /// the old and the new key at once, sign with the new one 5 s later, and accept only
    /// the new one once the overlap is over. Refused while a previous rotation's overlap
    /// lasts. Clients still sending the old key as `Authorization: Bearer` (scripts, the
    /// web console), and webhook receivers checking X-Gru-Signature, must switch within
    /// the overlap.
    Rotate {
        /// The cluster's name.
        cluster: String,
        /// How long the old key stays accepted: 15s at least; 90s, 15m, 12h, ... [default: 10m]
        #[arg(long)]
        overlap: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration directory offline and report every problem.
    ///
    /// Layout: config.json, policy.json, services/*.json, analytics/*.json. Keys match
    /// case-insensitively; // and /* */ comments are allowed.
    Validate {
        /// The configuration directory.
        dir: PathBuf,
    },
    /// Validate a directory, then write all of it to the cluster in one etcd transaction.
    ///
    /// Nothing is written if any document is invalid or the cluster does not exist.
    /// Services and analytics in etcd that are not in the directory are removed.
    Push {
        cluster: String,
        /// The configuration directory.
        dir: PathBuf,
    },
    /// Print the cluster's documents as JSON.
    Get {
        cluster: String,
        /// Which part to print; everything when omitted.
        #[arg(value_enum)]
        what: Option<ConfigPart>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigPart {
    Config,
    Policy,
    Services,
    Analytics,
    Nodes,
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Cluster to join (must exist: `gru create`).
    pub cluster: String,

    /// Node name, unique among live nodes of the cluster [default: the host name]
    #[arg(short, long, env = "GRU_NODE")]
    pub name: Option<String>,

    /// Address at which other agents and operators reach this agent [default: the --bind
    /// address when it is not 0.0.0.0, else this host's address on the interface of its
    /// default route (127.0.0.1 without one); logged at start]
    #[arg(short, long, env = "HostIP")]
    pub address: Option<String>,

    /// Port of the agent's HTTP API (0 picks a free port and prints it).
    #[arg(short, long, env = "GRU_PORT", default_value_t = gru_agent::daemon::DEFAULT_AGENT_PORT)]
    pub port: u16,

    /// Interface the HTTP API listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: IpAddr,

    /// Host address the managed containers' published ports bind to.
    #[arg(long, env = "GRU_PUBLISH_IP", default_value = "0.0.0.0")]
    pub publish_ip: IpAddr,

    /// Start the autonomic loop at once (otherwise the agent only watches until it receives
    /// a `start` command, Gru's `start agent`).
    #[arg(long)]
    pub start: bool,

    /// Accept only signed state-changing requests (an operator token, or the cluster key):
    /// refuse the deprecated `Authorization: Bearer <cluster secret>`, which has no replay
    /// protection. Gru's clients, scripts and the web console's actions, which send the
    /// bearer secret, are then refused (401).
    #[arg(long, env = "GRU_SIGNED_ONLY")]
    pub signed_only: bool,

    /// A Docker config.json on this node (as `docker login` writes it): its `auths` entry for
    /// an image's registry gives the credentials of pulls of services without `Pull.Auth`.
    /// Wins over the configuration's `Docker.RegistryAuthFile`; read at each pull.
    #[arg(long, env = "GRU_REGISTRY_AUTH_FILE", value_name = "PATH")]
    pub registry_auth_file: Option<std::path::PathBuf>,

    /// Directory where the agent, stopped by SIGTERM or `restart agent`, notes the lease it
    /// keeps, so that the next agent of this node takes back its records and adopts its
    /// containers without anyone repairing [default: $STATE_DIRECTORY (systemd), else
    /// /var/lib/gru as root, else $XDG_STATE_HOME/gru or ~/.local/state/gru]
    #[arg(long, env = gru_agent::kept_lease::STATE_DIR_VAR, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub tls: JoinTlsArgs,
}

/// TLS of the agent's API and of its calls to other agents (all three files, or none).
#[derive(Debug, Args)]
pub struct JoinTlsArgs {
    /// This node's certificate (PEM; `gru tls cert create --node <name>`, or the
    /// operator's own: its DNS names must include the node's name). With it the agent
    /// serves HTTPS, publishes `https` in its node record, and speaks to peers only over
    /// mutual TLS. Needs --tls-key and --tls-ca.
    #[arg(long, env = "GRU_TLS_CERT", value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "GRU_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): the only authority trusted for peers' and
    /// operators' certificates.
    #[arg(long, env = "GRU_TLS_CA", value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Who must present a client certificate: `peers` (gossip and liveness proofs need a
    /// node certificate; a command signed with the cluster key needs any certificate of
    /// the CA; reads, /metrics and the web console need none) or `all` (every connection,
    /// the browser included).
    #[arg(long, env = "GRU_TLS_CLIENT_AUTH", value_enum, default_value_t = TlsClientAuth::Peers)]
    pub tls_client_auth: TlsClientAuth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsClientAuth {
    Peers,
    All,
}

/// TLS of `gru manage`'s calls to the agents.
#[derive(Debug, Args)]
pub struct ManageTlsArgs {
    /// The cluster's CA certificate (PEM): agents serving HTTPS are verified against it
    /// and against the node name of the record they were reached by.
    #[arg(long, env = "GRU_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate to present (`gru tls cert create --client <you>`): needed for
    /// commands signed with the cluster key when the agents serve TLS, and for agents
    /// joined with --tls-client-auth all. With --tls-key and --tls-ca.
    #[arg(long, env = "GRU_TLS_CERT", value_name = "FILE", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "GRU_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Make the cluster's certificate authority: ca.pem (share it) and ca-key.pem (mode
    /// 0600; keep it off the nodes).
    ///
    /// Example: `gru tls ca create --dir /etc/gru/ca`. Refuses to overwrite an existing CA
    /// unless --force (every certificate it signed would stop being trusted).
    #[command(subcommand)]
    Ca(TlsCaCommand),
    /// Make a certificate signed by the cluster's CA: for a node (`--node`) or for an
    /// operator (`--client`).
    #[command(subcommand)]
    Cert(TlsCertCommand),
}

#[derive(Debug, Subcommand)]
pub enum TlsCaCommand {
    /// Write ca.pem and ca-key.pem into --dir (created if missing).
    Create {
        /// Directory for ca.pem and ca-key.pem.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Overwrite an existing CA.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TlsCertCommand {
    /// Write <name>.pem and <name>-key.pem (mode 0600) into --out, signed by the CA in
    /// --ca-dir.
    ///
    /// A node certificate names the node (a DNS name: agents check it against the name
    /// the node is registered under in etcd) and the addresses given, and serves both as
    /// the agent's server certificate and as its client certificate toward peers:
    ///
    /// `gru tls cert create --node n1 --ip 10.0.0.1 --ca-dir /etc/gru/ca --out /etc/gru`
    ///
    /// `gru join shop --name n1 --tls-cert /etc/gru/n1.pem --tls-key /etc/gru/n1-key.pem
    /// --tls-ca /etc/gru/ca/ca.pem`
    ///
    /// An operator certificate (`--client alice`) has no DNS name, so it can never pass for
    /// a node; `gru manage --tls-cert alice.pem --tls-key alice-key.pem` presents it.
    Create {
        /// The node's name, as given to `gru join --name`.
        #[arg(long, required_unless_present = "client", conflicts_with = "client")]
        node: Option<String>,
        /// An operator's name, for a client-only certificate.
        #[arg(long, value_name = "NAME")]
        client: Option<String>,
        /// Directory holding ca.pem and ca-key.pem (`gru tls ca create`).
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// An IP address the node is reached at (repeatable).
        #[arg(long = "ip", value_name = "ADDRESS")]
        ips: Vec<std::net::IpAddr>,
        /// Another DNS name of the node (repeatable).
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Directory to write into [default: the current directory]
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}
