//! The configuration directories the tests push: `config.json`, `policy.json`, analytics
//! and workload services, written into a temporary directory ([`TestConfig`]), and the
//! agent and policy documents several tests share.

use testkit::EtcdCluster;

use super::expect_code;

/// `config.json` of the single-agent tests: 1 s loops, TTL 3 s, log reading on.
pub const CONFIG_ONE_SECOND_LOOPS: &str = r#"{
    "Autonomic": {"LoopTimeInterval": 1, "PlannerStrategy": "greedy", "EnableLogReading": true},
    "Discovery": {"TTL": 3}
}"#;

/// `config.json` for several agents: 1 s loops, two friends per round, the given TTL.
pub fn config_for_agents(ttl: u32) -> String {
    format!(
        r#"{{"Autonomic": {{"LoopTimeInterval": 1, "PlannerStrategy": "greedy"}},
            "Communication": {{"LoopTimeInterval": 1, "MaxFriends": 2}},
            "Discovery": {{"TTL": {ttl}}}}}"#
    )
}

/// A policy that never scales by itself (operators and repairs only).
/// `config.json` for the node tests: 1 s loops, the greedy planner, TTL 3 s, and `nodes`
/// (the body of the `Nodes` section, JSON without its braces).
pub fn nodes_config(nodes: &str) -> String {
    format!(
        r#"{{"Autonomic": {{"LoopTimeInterval": 1, "PlannerStrategy": "greedy"}},
            "Communication": {{"LoopTimeInterval": 1, "MaxFriends": 2}},
            "Discovery": {{"TTL": 3}},
            "Nodes": {{{nodes}}}}}"#
    )
}

pub const QUIET_POLICY: &str = r#"{
    "Scaleout": {"Enable": false, "Threshold": 0.75},
    "Scalein":  {"Enable": false, "Threshold": 0.35},
    "Swap":     {"Enable": false, "Threshold": 0.6}
}"#;

/// Scale-out on `resp_time_ratio` only (which needs pushed stats: log reading is off in
/// [`config_for_agents`]), so nothing scales until a test reports an overload, and then one
/// step per `cooldown_out_secs`; scale-in and swap off.
pub fn scale_out_policy(cooldown_out_secs: u64) -> String {
    format!(
        r#"{{"Scaleout": {{"Enable": true, "Threshold": 0.6, "Analytics": ["resp_time_ratio"], "Step": 1}},
            "Scalein": {{"Enable": false, "Threshold": 0.3}},
            "Swap": {{"Enable": false, "Threshold": 0.6}},
            "CooldownOut": {cooldown_out_secs}}}"#
    )
}

/// The `cpu_load` analytic: the containers' average CPU.
pub const CPU_LOAD_ANALYTIC: &str =
    r#"{"Name": "cpu_load", "Expr": "cpu_avg", "Metrics": ["cpu_avg"]}"#;

/// The `resp_time_ratio` analytic: execution time over the service's `MAX_RESP_TIME`.
pub const RESP_TIME_RATIO_ANALYTIC: &str = r#"{"Name": "resp_time_ratio", "Expr": "execution_time / MAX_RESP_TIME",
                "Metrics": ["execution_time"], "Constraints": ["MAX_RESP_TIME"]}"#;

/// A configuration directory: config.json, policy.json, analytics and services.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
}

impl TestConfig {
    /// config.json, policy.json, the `resp_time_ratio` and `cpu_load` analytics; services
    /// come with [`TestConfig::service`] or [`TestConfig::file`].
    pub fn new(config: &str, policy: &str) -> Self {
        let test = Self::bare(config, policy);
        test.file("analytics/resp_time_ratio.json", RESP_TIME_RATIO_ANALYTIC);
        test.file("analytics/cpu_load.json", CPU_LOAD_ANALYTIC);
        test
    }

    /// Only config.json and policy.json, and empty `services/` and `analytics/`.
    pub fn bare(config: &str, policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("services")).unwrap();
        std::fs::create_dir_all(dir.path().join("analytics")).unwrap();
        let test = Self { dir };
        test.file("config.json", config);
        test.file("policy.json", policy);
        test
    }

    /// Writes `text` to `path`, relative to the directory (`services/web.json`).
    pub fn file(&self, path: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(path), text).unwrap();
        self
    }

    /// A workload service; `extra` holds more top-level fields, each followed by a comma
    /// (`"MinInstances": 1, "MaxInstances": 3,`); its port 8080 is published in `range`.
    pub fn service(&self, name: &str, extra: &str, range: (u16, u16)) -> &Self {
        let doc = format!(
            r#"{{
                "Name": "{name}", "Image": "{image}", "DiscoveryPort": "8080",
                "Analytics": ["resp_time_ratio", "cpu_load"],
                "Constraints": {{"MAX_RESP_TIME": 100}},
                {extra}
                "Configuration": {{
                    "Memory": "64m", "StopTimeout": 2,
                    "Env": {{"SERVICE_NAME": "{name}", "SERVICE_TIME_MS": "20"}},
                    "Ports": {{"8080": "{low}-{high}"}}
                }}
            }}"#,
            image = testkit::WORKLOAD_IMAGE,
            low = range.0,
            high = range.1
        );
        self.file(&format!("services/{name}.json"), &doc)
    }

    pub fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// `gru create <cluster>` and `gru config push` of this directory.
    pub fn create_and_push(&self, etcd: &EtcdCluster, cluster: &str) {
        let e = etcd.endpoints();
        expect_code(&e, &["create", cluster], 0);
        expect_code(&e, &["config", "push", cluster, self.path()], 0);
    }
}
