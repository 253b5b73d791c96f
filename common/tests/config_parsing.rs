//! How single documents are read: Gru's compatibility rules (case, comments, user maps),
//! defaults, canonical output, value syntaxes and the problems reported.

use std::collections::BTreeMap;
use std::time::Duration;

use common::config::{
    AgentConfig, Analytic, ByteSize, CheckKind, ConstraintValue, ContainerConfig, CpuSet,
    DEFAULT_AUTONOMIC_LOOP_SECS, DEFAULT_COMMUNICATION_LOOP_SECS, DEFAULT_DISCOVERY_TTL_SECS,
    DEFAULT_DOCKER_DAEMON_URL, DEFAULT_MAX_FRIENDS, DEFAULT_MAX_INSTANCES,
    DEFAULT_SCALEIN_THRESHOLD, DEFAULT_SCALEOUT_THRESHOLD, DEFAULT_STEP_INSTANCES,
    DEFAULT_STOP_TIMEOUT_SECS, DEFAULT_SWAP_THRESHOLD, HealthCheck, HealthChecks, MetricService,
    NodeConfig, NodeConstraints, NodeResources, PlannerStrategy, PolicyConfig, PolicyRule,
    PortRange, Problem, PullConfig, PullPolicy, RegistryAuth, RuleMode, Secret, ServiceDescriptor,
    ServicePolicy, Smoothing, Volumes, parse_agent_config, parse_analytic, parse_node_config,
    parse_node_constraints, parse_node_resources, parse_policy, parse_service,
    service::{FailureAction, UpdateConfig, UpdateOrder},
};

fn rendered(problems: &[Problem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

fn policy(text: &str) -> PolicyConfig {
    parse_policy("policy.json", text)
        .unwrap_or_else(|problems| panic!("{text}: {:?}", rendered(&problems)))
}

fn service(text: &str) -> ServiceDescriptor {
    parse_service("services/web.json", text)
        .unwrap_or_else(|problems| panic!("{text}: {:?}", rendered(&problems)))
}

fn service_problems(text: &str) -> Vec<String> {
    match parse_service("services/web.json", text) {
        Ok(service) => panic!("accepted {text}: {service:?}"),
        Err(problems) => rendered(&problems),
    }
}

#[test]
fn keys_match_ignoring_case_as_gru_did() {
    for text in [
        r#"{"Scaleout": {"Threshold": 0.5}}"#,
        r#"{"scaleout": {"threshold": 0.5}}"#,
        r#"{"SCALEOUT": {"THRESHOLD": 0.5}}"#,
        r#"{"ScaleOut": {"tHrEsHoLd": 0.5}}"#,
    ] {
        assert_eq!(policy(text).scaleout.threshold, 0.5, "{text}");
    }
    let web = service(
        r#"{"name": "web", "IMAGE": "nginx", "configuration": {"CPUNUMBER": 2, "stoptimeout": 3}}"#,
    );
    assert_eq!(web.name, "web");
    assert_eq!(web.image, "nginx");
    assert_eq!(web.configuration.cpu_number, 2);
    assert_eq!(web.configuration.stop_timeout_secs, 3);
    let agent = parse_agent_config("config.json", r#"{"discovery": {"ttl": 9}}"#).expect("valid");
    assert_eq!(agent.discovery.ttl_secs, 9);
}

#[test]
fn keyword_values_match_ignoring_case() {
    for (written, strategy) in [
        ("probdelta", PlannerStrategy::ProbDelta),
        ("ProbDelta", PlannerStrategy::ProbDelta),
        ("PROBCUMULATIVE", PlannerStrategy::ProbCumulative),
        ("Greedy", PlannerStrategy::Greedy),
    ] {
        let text = format!(r#"{{"Autonomic": {{"PlannerStrategy": "{written}"}}}}"#);
        let agent = parse_agent_config("config.json", &text).expect("valid");
        assert_eq!(agent.autonomic.planner_strategy, strategy, "{written}");
    }
}

#[test]
fn user_map_keys_keep_their_spelling() {
    let web = service(
        r#"{
            "Name": "web", "Image": "nginx",
            "Constraints": {"max_resp_time": 5, "Max_Resp_Time": "fast"},
            "Configuration": {
                "Env": {"myVar": "1", "MYVAR": "2", "Path": ""},
                "Ports": {"8080/udp": "9000"}
            }
        }"#,
    );
    let env: Vec<&str> = web.configuration.env.keys().map(String::as_str).collect();
    assert_eq!(env, ["MYVAR", "Path", "myVar"]);
    assert_eq!(web.configuration.env["myVar"], "1");
    assert_eq!(
        web.constraints["max_resp_time"],
        ConstraintValue::Number(5.into())
    );
    assert_eq!(
        web.constraints["Max_Resp_Time"],
        ConstraintValue::Text("fast".into())
    );
    assert!(web.configuration.ports.contains_key("8080/udp"));
}

#[test]
fn comments_are_accepted_anywhere_outside_strings() {
    let text = r#"
        // a line comment before the document
        {
            /* a block comment
               over two lines */
            "Name": "web", // after a value
            "Image": "nginx/*not a comment*/",
            "Configuration": { "Env": { "URL": "http://x//y" } }
        }"#;
    let web = service(text);
    assert_eq!(web.image, "nginx/*not a comment*/");
    assert_eq!(web.configuration.env["URL"], "http://x//y");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let text = "{\n  /* one\n  two */\n  \"Name\": \"web\"\n  \"Image\": \"x\"\n}";
    let problems = service_problems(text);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("services/web.json: not valid JSON at 5:3: "),
        "{problems:?}"
    );
}

#[test]
fn absent_sections_and_fields_take_the_named_defaults() {
    let agent = parse_agent_config("config.json", "{}").expect("valid");
    assert_eq!(agent, AgentConfig::default());
    assert_eq!(agent.docker.daemon_url, DEFAULT_DOCKER_DAEMON_URL);
    assert_eq!(
        agent.autonomic.loop_time_interval_secs,
        DEFAULT_AUTONOMIC_LOOP_SECS
    );
    assert_eq!(
        agent.autonomic.planner_strategy,
        PlannerStrategy::ProbCumulative
    );
    assert!(!agent.autonomic.dry_run);
    assert_eq!(
        agent.communication.loop_time_interval_secs,
        DEFAULT_COMMUNICATION_LOOP_SECS
    );
    assert_eq!(agent.communication.max_friends, DEFAULT_MAX_FRIENDS);
    assert_eq!(agent.metric.metric_service, MetricService::None);
    assert_eq!(agent.discovery.app_root, "");
    assert_eq!(agent.discovery.ttl_secs, DEFAULT_DISCOVERY_TTL_SECS);

    let partial =
        parse_agent_config("config.json", r#"{"Autonomic": {"DryRun": true}}"#).expect("valid");
    assert!(partial.autonomic.dry_run);
    assert_eq!(
        partial.autonomic.loop_time_interval_secs,
        DEFAULT_AUTONOMIC_LOOP_SECS
    );

    let empty = policy("{}");
    assert_eq!(empty, PolicyConfig::default());
    // Each rule has its own default threshold, also when the rule is written without one.
    let enabled =
        policy(r#"{"Scalein": {"Enable": true}, "Scaleout": {"Enable": true}, "Swap": {}}"#);
    assert_eq!(enabled.scalein.threshold, DEFAULT_SCALEIN_THRESHOLD);
    assert_eq!(enabled.scaleout.threshold, DEFAULT_SCALEOUT_THRESHOLD);
    assert_eq!(enabled.swap.threshold, DEFAULT_SWAP_THRESHOLD);
    assert_eq!(enabled.scaleout.step, DEFAULT_STEP_INSTANCES);
    assert_eq!(
        (enabled.scaleout.period_secs, enabled.cooldown_out_secs),
        (0, 0)
    );

    let web = service(r#"{"Name": "web", "Image": "nginx"}"#);
    assert_eq!(web.service_type(), "web");
    assert_eq!(web.configuration, ContainerConfig::default());
    assert_eq!(
        web.configuration.stop_timeout_secs,
        DEFAULT_STOP_TIMEOUT_SECS
    );
    assert_eq!(
        (web.min_instances, web.max_instances),
        (0, DEFAULT_MAX_INSTANCES)
    );
    assert_eq!(web.discovery_port, None);
}

#[test]
fn null_and_empty_strings_mean_unset_as_in_gru() {
    let web = service(
        r#"{"Name": "web", "Image": "nginx", "Remote": null, "DiscoveryPort": "",
            "Configuration": {"Memory": "", "CpusetCpus": "", "StopTimeout": null}}"#,
    );
    assert_eq!(web.remote, None);
    assert_eq!(web.discovery_port, None);
    assert_eq!(web.configuration.memory, None);
    assert_eq!(web.configuration.cpuset_cpus, None);
    assert_eq!(
        web.configuration.stop_timeout_secs,
        DEFAULT_STOP_TIMEOUT_SECS
    );
}

#[test]
fn discovery_port_is_read_from_a_string_or_a_number() {
    for text in [r#""50000""#, "50000"] {
        let web = service(&format!(
            r#"{{"Name": "web", "Image": "x", "DiscoveryPort": {text}}}"#
        ));
        assert_eq!(web.discovery_port, Some(50000), "{text}");
    }
    for text in [r#""0""#, r#""65536""#, "-1", r#""5000o""#, "true"] {
        let problems = service_problems(&format!(
            r#"{{"Name": "web", "Image": "x", "DiscoveryPort": {text}}}"#
        ));
        assert_eq!(problems.len(), 1, "{text}: {problems:?}");
        assert!(
            problems[0].starts_with("services/web.json: DiscoveryPort: "),
            "{problems:?}"
        );
    }
}

fn full_agent() -> AgentConfig {
    let mut agent = AgentConfig::default();
    agent.docker.daemon_url = "tcp://10.0.0.1:2375".into();
    agent.docker.registry_auth_file = Some("/root/.docker/config.json".into());
    agent.autonomic.planner_strategy = PlannerStrategy::Greedy;
    agent.autonomic.dry_run = true;
    agent.metric.metric_service = MetricService::InfluxDb;
    let configuration = &mut agent.metric.configuration;
    configuration.url = Some("http://influx:8086".into());
    configuration.org = Some("org".into());
    configuration.bucket = Some("bucket".into());
    configuration.token = Some("token".into());
    configuration.db_name = Some("db".into());
    configuration.username = Some("user".into());
    configuration.password = Some("secret".into());
    agent.discovery.app_root = "/apps/demo".into();
    agent.discovery.ttl_secs = 7;
    agent
}

fn full_policy() -> PolicyConfig {
    let rule = |threshold: f64| PolicyRule {
        enable: true,
        threshold,
        metrics: vec!["cpu_avg".into()],
        analytics: vec!["resp_time_ratio".into()],
        period_secs: 30,
        step: 2,
        ..PolicyRule::disabled(threshold)
    };
    PolicyConfig {
        scalein: PolicyRule {
            mode: RuleMode::Target,
            stabilization_secs: 45,
            missing: Some(0.0),
            ..rule(0.2)
        },
        scaleout: PolicyRule {
            mode: RuleMode::Target,
            target: Some(0.6),
            max_growth_percent: 50,
            window_secs: 10,
            smoothing: Smoothing::Ewma,
            ..rule(0.9)
        },
        swap: rule(0.5),
        cooldown_out_secs: 60,
        cooldown_in_secs: 120,
    }
}

fn full_service() -> ServiceDescriptor {
    ServiceDescriptor {
        name: "web".into(),
        type_name: Some("frontends".into()),
        image: "nginx:1".into(),
        remote: Some("/gru/c/services/web".into()),
        discovery_port: Some(8080),
        analytics: vec!["resp_time_ratio".into()],
        constraints: BTreeMap::from([
            ("MAX_RESP_TIME".into(), ConstraintValue::Number(250.into())),
            (
                "ratio".into(),
                ConstraintValue::Number(serde_json::Number::from_f64(0.5).expect("finite")),
            ),
            ("mode".into(), ConstraintValue::Text("fast".into())),
        ]),
        configuration: ContainerConfig {
            cpu_number: 2,
            memory: Some(ByteSize::from_bytes(1536 << 20)),
            cpuset_cpus: Some("0-1".parse().expect("cpu set")),
            cpu_shares: Some(512),
            stop_timeout_secs: 3,
            env: BTreeMap::from([
                ("myVar".into(), "1".into()),
                ("EMPTY".into(), String::new()),
            ]),
            ports: BTreeMap::from([("8080".into(), "18080-18089".parse().expect("range"))]),
            cmd: vec!["serve".into()],
            entrypoint: vec!["/bin/app".into()],
            volumes: Volumes::Binds(vec!["/data:/data".into()]),
            links: vec!["db".into()],
        },
        min_instances: 1,
        max_instances: Some(4),
        attached: vec!["logger".into()],
        policy: Some(ServicePolicy {
            scaleout: Some(PolicyRule {
                mode: RuleMode::Target,
                target: Some(0.5),
                ..full_policy().scaleout
            }),
            cooldown_in_secs: Some(5),
            ..ServicePolicy::default()
        }),
        update: UpdateConfig {
            parallelism: 2,
            ready_timeout_secs: 30,
            monitor_secs: 1,
            delay_secs: 4,
            failure_action: FailureAction::Pause,
            order: UpdateOrder::StopFirst,
        },
        pull: PullConfig {
            policy: PullPolicy::Always,
            timeout_secs: 30,
            auth: Some(RegistryAuth {
                username: "ci".into(),
                password: Secret::new("pull-secret"),
                server_address: Some("docker.io".into()),
            }),
        },
        health: HealthChecks {
            readiness: Some(HealthCheck {
                http: Some("/ready".into()),
                interval_secs: 0.5,
                timeout_secs: Some(0.25),
                initial_delay_secs: 1.5,
                success_threshold: 2,
                ..HealthCheck::default()
            }),
            liveness: Some(HealthCheck {
                exec: Some(vec!["/bin/app".into(), "check".into()]),
                failure_threshold: 5,
                ..HealthCheck::default()
            }),
        },
    }
}

#[test]
fn update_settings_read_case_insensitively_and_default_to_one_at_a_time() {
    let web = service(r#"{"Name": "web", "Image": "nginx"}"#);
    assert_eq!(web.update, UpdateConfig::default());
    assert_eq!(web.update.parallelism, 1);
    assert_eq!(web.update.failure_action, FailureAction::Rollback);
    let web = service(
        r#"{"Name": "web", "Image": "nginx",
            "update": {"PARALLELISM": 3, "readytimeout": 9, "failureaction": "pause"}}"#,
    );
    assert_eq!(web.update.parallelism, 3);
    assert_eq!(web.update.ready_timeout_secs, 9);
    assert_eq!(web.update.failure_action, FailureAction::Pause);
}

#[test]
fn bad_update_settings_are_refused_with_their_path() {
    let problems = service_problems(
        r#"{"Name": "web", "Image": "nginx",
            "Update": {"Parallelism": 0, "ReadyTimeout": 0, "FailureAction": "retry", "Order": "random"}}"#,
    );
    let all = problems.join("\n");
    for path in [
        "Update.Parallelism",
        "Update.ReadyTimeout",
        "Update.FailureAction",
        "Update.Order",
    ] {
        assert!(all.contains(path), "{path} not reported in {all}");
    }
    assert!(all.contains("\"rollback\" or \"pause\""), "{all}");
}

#[test]
fn the_version_follows_what_a_container_is_made_of_and_nothing_else() {
    let base = service(r#"{"Name": "web", "Image": "w:1", "Configuration": {"Env": {"A": "1"}}}"#);
    let version = base.version();
    assert_eq!(version.len(), 12);
    assert!(version.bytes().all(|b| b.is_ascii_hexdigit()), "{version}");
    assert_eq!(
        service(&serde_json::to_string(&base).expect("json")).version(),
        version
    );
    let same = service(
        r#"{"Name": "web", "Image": "w:1", "Configuration": {"Env": {"A": "1"}},
            "MinInstances": 3, "Update": {"Parallelism": 2}, "Analytics": ["x"]}"#,
    );
    assert_eq!(
        same.version(),
        version,
        "bounds and update settings make no new container"
    );
    for changed in [
        r#"{"Name": "web", "Image": "w:2", "Configuration": {"Env": {"A": "1"}}}"#,
        r#"{"Name": "web", "Image": "w:1", "Configuration": {"Env": {"A": "2"}}}"#,
        r#"{"Name": "web", "Image": "w:1", "Configuration": {"Env": {"A": "1"}, "Cmd": ["x"]}}"#,
    ] {
        assert_ne!(service(changed).version(), version, "{changed}");
    }
}

#[test]
fn canonical_output_parses_back_to_the_same_value_for_every_document_kind() {
    let agent = full_agent();
    let text = serde_json::to_string(&agent).expect("serializes");
    assert_eq!(parse_agent_config("config.json", &text), Ok(agent));

    let policy = full_policy();
    let text = serde_json::to_string(&policy).expect("serializes");
    assert_eq!(parse_policy("policy.json", &text), Ok(policy));

    let service = full_service();
    let text = serde_json::to_string(&service).expect("serializes");
    assert_eq!(parse_service("services/web.json", &text), Ok(service));

    let analytic = Analytic {
        name: "resp_time_ratio".into(),
        expr: "execution_time / MAX_RESP_TIME".into(),
        metrics: vec!["execution_time".into()],
        constraints: vec!["MAX_RESP_TIME".into()],
        missing: Some(0.0),
    };
    let text = serde_json::to_string(&analytic).expect("serializes");
    assert_eq!(
        parse_analytic("analytics/resp_time_ratio.json", &text),
        Ok(analytic)
    );

    let node = NodeConfig {
        name: "node-1".into(),
        address: "10.0.0.2".into(),
        port: 8090,
        scheme: common::config::Scheme::Https,
    };
    let text = serde_json::to_string(&node).expect("serializes");
    assert_eq!(parse_node_config("nodes/node-1/config", &text), Ok(node));
    // A record written before TLS existed has no Scheme: http, and http is written so.
    let old = r#"{"Name": "node-1", "Address": "10.0.0.2", "Port": 8090}"#;
    let plain = parse_node_config("nodes/node-1/config", old).expect("an old record parses");
    assert_eq!(plain.scheme, common::config::Scheme::Http);
    let written = serde_json::to_string(&plain).expect("serializes");
    assert!(!written.contains("Scheme"), "{written}");

    let constraints = NodeConstraints {
        base_services: vec!["web".into(), "db".into()],
        cpu_min: Some(0.2),
        cpu_max: Some(0.8),
    };
    let text = serde_json::to_string(&constraints).expect("serializes");
    assert_eq!(
        parse_node_constraints("nodes/node-1/constraints", &text),
        Ok(constraints)
    );

    let resources = NodeResources {
        total_cpus: 8,
        total_memory_bytes: 16 << 30,
    };
    let text = serde_json::to_string(&resources).expect("serializes");
    assert_eq!(
        parse_node_resources("nodes/node-1/resources", &text),
        Ok(resources)
    );
}

#[test]
fn canonical_output_uses_gru_spelling() {
    let text = serde_json::to_string(&full_agent()).expect("serializes");
    for key in [
        r#""Docker":{"DaemonUrl""#,
        r#""DaemonTimeout":10"#,
        r#""LoopTimeInterval":60"#,
        r#""PlannerStrategy":"greedy""#,
        r#""MetricService":"influxdb""#,
        r#""DbName":"db""#,
        r#""TTL":7"#,
    ] {
        assert!(text.contains(key), "{key} not in {text}");
    }
    let text = serde_json::to_string(&full_service()).expect("serializes");
    for key in [
        r#""Type":"frontends""#,
        r#""DiscoveryPort":"8080""#,
        r#""cpunumber":2"#,
        r#""Memory":"1536m""#,
        r#""CpusetCpus":"0-1""#,
        r#""StopTimeout":3"#,
        r#""myVar":"1""#,
        r#""Ports":{"8080":"18080-18089"}"#,
        r#""MAX_RESP_TIME":250"#,
    ] {
        assert!(text.contains(key), "{key} not in {text}");
    }
    let text = serde_json::to_string(&full_policy()).expect("serializes");
    for key in [
        r#""Scalein":{"Enable":true,"Threshold":0.2"#,
        r#""CooldownOut":60"#,
        r#""Period":30"#,
    ] {
        assert!(text.contains(key), "{key} not in {text}");
    }
    let text = serde_json::to_string(&NodeResources {
        total_cpus: 2,
        total_memory_bytes: 1024,
    })
    .expect("serializes");
    assert_eq!(text, r#"{"TotalCpus":2,"TotalMemory":1024}"#);
}

#[test]
fn port_ranges_parse_or_say_what_is_wrong() {
    let valid = [
        ("8080", (8080, 8080)),
        ("8080-8089", (8080, 8089)),
        ("1-65535", (1, 65535)),
        ("50000-50000", (50000, 50000)),
    ];
    for (text, (low, high)) in valid {
        let range: PortRange = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!((range.low(), range.high()), (low, high), "{text}");
    }
    let invalid = [
        ("", "is not a port range"),
        ("80-", "is not a port range"),
        ("-80", "is not a port range"),
        ("80-7x", "is not a port range"),
        (" 80", "is not a port range"),
        ("80 - 90", "is not a port range"),
        ("+80", "is not a port range"),
        ("80-90-100", "is not a port range"),
        ("0", "is out of range"),
        ("70000", "is out of range"),
        ("1-99999999999", "is out of range"),
        ("8089-8080", "is reversed"),
    ];
    for (text, message) in invalid {
        let error = text.parse::<PortRange>().expect_err(text);
        let expected = format!("\"{text}\" {message}");
        assert!(
            error.message.starts_with(&expected),
            "{text}: {}",
            error.message
        );
    }
}

#[test]
fn problem_display_names_file_path_value_and_hint() {
    let problems = service_problems(
        r#"{"Name": "web", "Image": "nginx", "Configuration": {"Ports": {"80": "80-7x"}}}"#,
    );
    assert_eq!(
        problems,
        [
            r#"services/web.json: Configuration.Ports."80": "80-7x" is not a port range (hint: write "low-high", e.g. "8080-8089")"#
        ]
    );
}

#[test]
fn memory_sizes_parse_in_binary_units() {
    let valid = [
        ("512m", 512 << 20),
        ("1g", 1 << 30),
        ("256M", 256 << 20),
        ("256MiB", 256 << 20),
        ("256mb", 256 << 20),
        ("2 KB", 2048),
        ("1.5g", 3 << 29),
        ("1024", 1024),
        ("100b", 100),
        ("1t", 1 << 40),
    ];
    for (text, bytes) in valid {
        let size: ByteSize = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(size.bytes(), bytes, "{text}");
    }
    for text in [
        "",
        "m",
        "12q",
        "1.5.5g",
        ".5g",
        "5.g",
        "-1m",
        "1e3",
        "12 m b",
        "1x1",
        "99999999p",
    ] {
        assert!(text.parse::<ByteSize>().is_err(), "{text} was accepted");
    }
    let web = service(r#"{"Name": "web", "Image": "x", "Configuration": {"Memory": 536870912}}"#);
    assert_eq!(
        web.configuration.memory,
        Some(ByteSize::from_bytes(512 << 20))
    );
    assert_eq!(ByteSize::from_bytes(512 << 20).to_string(), "512m");
    assert_eq!(ByteSize::from_bytes(1000).to_string(), "1000");
}

#[test]
fn cpu_sets_parse_in_docker_syntax() {
    for (text, cpus) in [
        ("0", vec![0]),
        ("0-1,3", vec![0, 1, 3]),
        ("3,1-2,2", vec![1, 2, 3]),
    ] {
        let set: CpuSet = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(set.cpus(), cpus, "{text}");
        assert_eq!(set.as_str(), text);
    }
    for text in ["", "0-", "1,", "a", "0 - 1", "3-1", "99999"] {
        assert!(text.parse::<CpuSet>().is_err(), "{text} was accepted");
    }
}

#[test]
fn unknown_keys_are_reported_with_the_nearest_known_key() {
    let problems = match parse_agent_config(
        "config.json",
        r#"{"Autonomic": {"LoopTimeIntervall": 5}, "Comunication": {}, "Zzz": 1}"#,
    ) {
        Ok(agent) => panic!("accepted {agent:?}"),
        Err(problems) => problems,
    };
    let found: Vec<(&str, &str, Option<&str>)> = problems
        .iter()
        .map(|p| (p.path.as_str(), p.message.as_str(), p.hint.as_deref()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "Autonomic.LoopTimeIntervall",
                r#"unknown key "LoopTimeIntervall""#,
                Some(r#"did you mean "LoopTimeInterval"?"#)
            ),
            (
                "Comunication",
                r#"unknown key "Comunication""#,
                Some(r#"did you mean "Communication"?"#)
            ),
            (
                "Zzz",
                r#"unknown key "Zzz""#,
                Some(
                    "known keys here: Docker, Autonomic, Communication, Storage, Metric, Discovery, Nodes"
                )
            ),
        ]
    );
}

#[test]
fn every_wrong_type_in_a_document_is_reported_in_one_run() {
    let problems = match parse_policy(
        "policy.json",
        r#"{"Scalein": {"Threshold": "low"}, "Scaleout": {"Threshold": "high", "Step": -1},
            "Swap": {"Enable": "yes", "Analytics": ["a", 2]}, "CooldownIn": 1.5}"#,
    ) {
        Ok(policy) => panic!("accepted {policy:?}"),
        Err(problems) => problems,
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "CooldownIn",
            "Scalein.Threshold",
            "Scaleout.Step",
            "Scaleout.Threshold",
            "Swap.Analytics[1]",
            "Swap.Enable",
        ],
        "{:?}",
        rendered(&problems)
    );
}

#[test]
fn a_required_field_of_the_wrong_type_is_blamed_once() {
    let problems = service_problems(r#"{"Name": 5, "Image": "x"}"#);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("services/web.json: Name: invalid type: integer `5`"),
        "{problems:?}"
    );
}

#[test]
fn analytic_expressions_may_read_only_listed_names() {
    let analytic = |expr: &str, metrics: &[&str], constraints: &[&str]| {
        let text = serde_json::json!({
            "Name": "a", "Expr": expr, "Metrics": metrics, "Constraints": constraints,
        })
        .to_string();
        parse_analytic("analytics/a.json", &text).map_err(|problems| rendered(&problems))
    };
    assert!(
        analytic(
            "execution_time / MAX_RESP_TIME",
            &["execution_time"],
            &["MAX_RESP_TIME"]
        )
        .is_ok()
    );
    assert!(
        analytic(
            "min(1, max(cpu_avg, mem_avg))",
            &["cpu_avg", "mem_avg"],
            &[]
        )
        .is_ok()
    );
    assert!(analytic("math::sqrt(cpu_avg)", &["cpu_avg"], &[]).is_ok());

    let table: [(&str, &[&str], &[&str], &str); 6] = [
        (
            "exec_time / LIMIT",
            &["execution_time"],
            &["LIMIT"],
            r#"analytics/a.json: Expr: uses "exec_time", which is neither in Metrics nor in Constraints (allowed: execution_time, LIMIT) (hint: did you mean "execution_time"?)"#,
        ),
        (
            "cpu_avg",
            &[],
            &[],
            r#"analytics/a.json: Expr: uses "cpu_avg", which is neither in Metrics nor in Constraints (allowed: none) (hint: add "cpu_avg" to Metrics: it is measured by every agent)"#,
        ),
        (
            "cpu_avg +",
            &["cpu_avg"],
            &[],
            r#"analytics/a.json: Expr: "cpu_avg +" does not parse: "#,
        ),
        (
            "x = cpu_avg",
            &["cpu_avg"],
            &[],
            r#"analytics/a.json: Expr: assigns to "x""#,
        ),
        (
            "avg(cpu_avg)",
            &["cpu_avg"],
            &[],
            r#"analytics/a.json: Expr: calls "avg""#,
        ),
        (
            "cpu_avg",
            &["cpu_avg"],
            &["cpu_avg"],
            r#"analytics/a.json: Constraints[0]: "cpu_avg" is also listed in Metrics"#,
        ),
    ];
    for (expr, metrics, constraints, expected) in table {
        let problems = analytic(expr, metrics, constraints).expect_err(expr);
        assert_eq!(problems.len(), 1, "{expr}: {problems:?}");
        assert!(problems[0].starts_with(expected), "{expr}: {problems:?}");
    }
}

#[test]
fn node_records_are_validated() {
    let node = parse_node_config(
        "nodes/n1/config",
        r#"{"name": "n1", "ADDRESS": "10.0.0.1", "port": 8090}"#,
    )
    .expect("valid");
    assert_eq!(node.port, 8090);
    let problems = parse_node_config("nodes/n1/config", r#"{"Name": "n/1"}"#).expect_err("invalid");
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["Name", "Address", "Port"],
        "{:?}",
        rendered(&problems)
    );
    let problems = parse_node_resources("nodes/n1/resources", r#"{"TotalMemory": 1024}"#)
        .expect_err("no cpus");
    assert_eq!(
        rendered(&problems),
        ["nodes/n1/resources: TotalCpus: must be at least 1, found 0"]
    );
    let problems =
        parse_node_constraints("nodes/n1/constraints", r#"{"cpumin": -0.1, "CpuMax": 1.5}"#)
            .expect_err("cpu bounds outside [0, 1]");
    assert_eq!(
        rendered(&problems),
        [
            "nodes/n1/constraints: CpuMin: -0.1 is outside [0, 1]",
            "nodes/n1/constraints: CpuMax: 1.5 is outside [0, 1]"
        ]
    );
}

#[test]
fn metric_secrets_never_appear_in_debug_output() {
    let agent = full_agent();
    let debug = format!("{agent:?}");
    assert!(
        !debug.contains("secret") && !debug.contains("\"token\""),
        "{debug}"
    );
    assert!(debug.contains("http://influx:8086"), "{debug}");
}

#[test]
fn target_tracking_fields_are_optional_and_default_to_gru_behaviour() {
    // A rule that names none of the new fields keeps Gru's fixed step.
    let gru = policy(r#"{"Scaleout": {"Enable": true, "Threshold": 0.8, "Step": 2}}"#);
    assert_eq!(gru.scaleout.mode, RuleMode::Step);
    assert_eq!(gru.scaleout.window_secs, 0);
    assert_eq!(gru.scaleout.missing, None);
    assert_eq!(gru.scalein.stabilization_secs, 60);
    assert_eq!(gru.scaleout.stabilization_secs, 0);
    // Target mode, with the target defaulting to the thresholds' midpoint.
    let target = policy(
        r#"{"Scaleout": {"Enable": true, "Threshold": 0.8, "mode": "target", "window": 5,
             "smoothing": "ewma"},
            "Scalein": {"Enable": true, "Threshold": 0.2, "Mode": "target", "Missing": 0},
            "CooldownOut": 10}"#,
    );
    assert!(target.scaleout.tracks_target() && target.scalein.tracks_target());
    assert!((target.target(&target.scaleout) - 0.5).abs() < 1e-9);
    assert_eq!(target.scaleout.smoothing, Smoothing::Ewma);
    assert_eq!(target.scaleout.window_secs, 5);
    assert_eq!(target.scalein.missing, Some(0.0));
    assert_eq!(target.scaleout.max_growth_percent, 100);
}

#[test]
fn a_service_policy_replaces_only_what_it_gives() {
    let cluster = policy(
        r#"{"Scaleout": {"Enable": true, "Threshold": 0.8, "Period": 10},
            "Scalein": {"Enable": true, "Threshold": 0.3}, "CooldownOut": 15, "CooldownIn": 30}"#,
    );
    let web = service(
        r#"{"Name": "web", "Image": "w:1",
            "Policy": {"Scaleout": {"Enable": true, "Threshold": 0.6, "Mode": "target"},
                       "CooldownIn": 5}}"#,
    );
    let merged = web.policy.as_ref().expect("a policy").apply(&cluster);
    assert_eq!(merged.scaleout.threshold, 0.6);
    assert_eq!(
        merged.scaleout.period_secs, 0,
        "a given rule replaces the cluster's whole"
    );
    assert_eq!(merged.scalein, cluster.scalein);
    assert_eq!(merged.cooldown_out_secs, 15);
    assert_eq!(merged.cooldown_in_secs, 5);
    let problems = service_problems(
        r#"{"Name": "web", "Image": "w:1", "Policy": {"Scaleout": {"Thresold": 0.6}}}"#,
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Policy.Scaleout.Thresold")),
        "{problems:?}"
    );
}

#[test]
fn pull_defaults_to_if_not_present_anonymously_and_reads_any_case() {
    let plain = service(r#"{"Name": "web", "Image": "nginx:1"}"#);
    assert_eq!(plain.pull, PullConfig::default());
    assert_eq!(plain.pull.policy, PullPolicy::IfNotPresent);
    assert_eq!(
        plain.pull.timeout_secs,
        common::config::DEFAULT_PULL_TIMEOUT_SECS
    );
    // A descriptor without Pull writes none back: what was stored before pulls is unchanged.
    assert!(
        !serde_json::to_string(&plain)
            .expect("json")
            .contains("Pull")
    );

    let given = service(
        r#"{"Name": "web", "Image": "r:5000/web:2",
            "pull": {"policy": "always", "timeout": 30,
                     "auth": {"username": "ci", "password": "pw", "serveraddress": "r:5000"}}}"#,
    );
    assert_eq!(given.pull.policy, PullPolicy::Always);
    assert_eq!(given.pull.timeout_secs, 30);
    let auth = given.pull.auth.as_ref().expect("auth");
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("ci", "pw")
    );
    assert_eq!(auth.server_address.as_deref(), Some("r:5000"));
}

#[test]
fn bad_pull_settings_are_refused_with_their_path_and_a_hint() {
    let cases: [(&str, &[&str]); 7] = [
        (
            r#"{"Policy": "IfNotPresnt"}"#,
            &[
                "services/web.json: Pull.Policy: unknown pull policy \"IfNotPresnt\"; known: \"IfNotPresent\", \"Always\", \"Never\" (hint: did you mean \"IfNotPresent\"?)",
            ],
        ),
        (
            r#"{"Auth": {"Username": "ci"}}"#,
            &[
                "services/web.json: Pull.Auth.Password: is required when Pull.Auth is given (hint: registries refuse a user without a password; leave Auth out to use the agent's RegistryAuthFile)",
            ],
        ),
        (
            r#"{"Auth": {"Password": "pw"}}"#,
            &[
                "services/web.json: Pull.Auth.Username: is required when Pull.Auth is given (hint: give Username and Password, or leave Auth out to pull anonymously or with the agent's RegistryAuthFile)",
            ],
        ),
        (
            r#"{"Auth": {"Username": "ci", "Password": "pw", "ServerAddress": "other:5000"}}"#,
            &[
                "services/web.json: Pull.Auth.ServerAddress: \"other:5000\" is not the registry of Image \"nginx:1\" (docker.io) (hint: the credentials go to the image's registry: name it in Image, or leave ServerAddress out)",
            ],
        ),
        (
            r#"{"Auth": {"Username": "ci", "Password": "pw", "ServerAddress": "https://index.docker.io/v1/"}}"#,
            &[],
        ),
        (
            r#"{"Timeout": 0}"#,
            &["services/web.json: Pull.Timeout: must be at least 1, found 0"],
        ),
        (
            r#"{"Policy": "Never", "Auth": {"Username": "ci", "Password": "pw"}}"#,
            &[
                "services/web.json: Pull.Auth: is never used: Pull.Policy is \"Never\" (hint: set Policy to \"IfNotPresent\" or \"Always\", or leave Auth out)",
            ],
        ),
    ];
    for (pull, expected) in cases {
        let text = format!(r#"{{"Name": "web", "Image": "nginx:1", "Pull": {pull}}}"#);
        let problems = match parse_service("services/web.json", &text) {
            Ok(_) => Vec::new(),
            Err(problems) => rendered(&problems),
        };
        assert_eq!(problems, *expected, "{pull}");
    }
}

#[test]
fn a_password_is_never_quoted_in_a_problem_nor_in_debug_output() {
    let problems = service_problems(
        r#"{"Name": "web", "Image": "nginx:1", "Pull": {"Auth": {"Username": "ci", "Password": 987654}}}"#,
    );
    assert!(
        problems.iter().all(|p| !p.contains("987654")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Pull.Auth.Password: expected a string")),
        "{problems:?}"
    );
    let debug = format!("{:?}", full_service());
    assert!(
        !debug.contains("pull-secret") && debug.contains("***"),
        "{debug}"
    );
}

#[test]
fn a_registry_auth_file_must_be_an_absolute_path() {
    let problems = match parse_agent_config(
        "config.json",
        r#"{"Docker": {"RegistryAuthFile": "docker/config.json"}}"#,
    ) {
        Ok(agent) => panic!("accepted {agent:?}"),
        Err(problems) => rendered(&problems),
    };
    assert_eq!(
        problems,
        [
            "config.json: Docker.RegistryAuthFile: \"docker/config.json\" is not an absolute path (hint: agents run from any directory: write the whole path, e.g. \"/root/.docker/config.json\")"
        ]
    );
}

#[test]
fn health_checks_take_their_defaults_and_their_kind() {
    let web = service(
        r#"{"Name": "web", "Image": "w", "DiscoveryPort": "8080",
            "Configuration": {"Ports": {"8080": "50000-50009"}},
            "health": {"readiness": {"http": "/ready", "interval": 0.5},
                       "Liveness": {"Tcp": true, "Port": 8080}}}"#,
    );
    let readiness = web.health.readiness.expect("readiness");
    assert_eq!(readiness.kind(), Some(CheckKind::Http("/ready".into())));
    assert_eq!(readiness.interval(), Duration::from_millis(500));
    // Timeout: 1 s by default, or the interval when it is shorter.
    assert_eq!(readiness.timeout(), Duration::from_millis(500));
    assert_eq!(readiness.success_threshold, 1);
    assert_eq!(readiness.failure_threshold, 3);
    assert_eq!(readiness.initial_delay(), Duration::ZERO);
    let liveness = web.health.liveness.expect("liveness");
    assert_eq!(liveness.kind(), Some(CheckKind::Tcp));
    assert_eq!(liveness.port_or(None), Some(8080));
    // No Health: none, and the canonical output says nothing of it.
    let plain = service(r#"{"Name": "web", "Image": "w"}"#);
    assert!(plain.health.is_empty());
    let text = serde_json::to_string(&plain).expect("serializes");
    assert!(!text.contains("Health"), "{text}");
}

#[test]
fn health_check_problems_are_reported_with_their_path() {
    let base = |health: &str| {
        format!(
            r#"{{"Name": "web", "Image": "w", "DiscoveryPort": "8080",
                "Configuration": {{"Ports": {{"8080": "50000-50009"}}}}, "Health": {health}}}"#
        )
    };
    let table = [
        (
            r#"{"Readiness": {}}"#,
            "services/web.json: Health.Readiness: names no check: give one of Http, Tcp and Exec",
        ),
        (
            r#"{"Readiness": {"Http": "/r", "Tcp": true}}"#,
            "services/web.json: Health.Readiness: gives Http and Tcp: a check is one of them",
        ),
        (
            r#"{"Liveness": {"Http": "ready"}}"#,
            r#"services/web.json: Health.Liveness.Http: "ready" is not a path"#,
        ),
        (
            r#"{"Liveness": {"Exec": []}}"#,
            "services/web.json: Health.Liveness.Exec: names no command",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "Port": 9090}}"#,
            "services/web.json: Health.Readiness.Port: container port 9090 is not published",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "Interval": 0}}"#,
            "services/web.json: Health.Readiness.Interval: 0 s is out of range: must be at least 0.1 and at most 86400",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "Interval": 1, "Timeout": 2}}"#,
            "services/web.json: Health.Readiness.Timeout: 2 s is longer than the Interval of 1 s",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "Timeout": 0}}"#,
            "services/web.json: Health.Readiness.Timeout: 0 s is out of range: must be above 0 and at most 86400",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "InitialDelay": -1}}"#,
            "services/web.json: Health.Readiness.InitialDelay: -1 s is out of range: must be at least 0 and at most 86400",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "FailureThreshold": 0}}"#,
            "services/web.json: Health.Readiness.FailureThreshold: must be at least 1, found 0",
        ),
        (
            r#"{"Readiness": {"Tcp": true, "Intervall": 1}}"#,
            "services/web.json: Health.Readiness.Intervall: unknown key",
        ),
    ];
    for (health, expected) in table {
        let problems = service_problems(&base(health));
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{health}: {problems:?}"
        );
    }
    // An HTTP check needs a port: without DiscoveryPort nor Port there is none.
    let problems = service_problems(
        r#"{"Name": "web", "Image": "w", "Health": {"Readiness": {"Http": "/r"}}}"#,
    );
    assert!(
        problems[0].starts_with("services/web.json: Health.Readiness: has no port to probe"),
        "{problems:?}"
    );
    // An exec check needs none.
    let exec = service(
        r#"{"Name": "web", "Image": "w", "Health": {"Liveness": {"Exec": ["/app", "ok"]}}}"#,
    );
    assert_eq!(
        exec.health.liveness.and_then(|c| c.kind()),
        Some(CheckKind::Exec(vec!["/app".into(), "ok".into()]))
    );
}

#[test]
fn node_hooks_parse_with_defaults_and_round_trip() {
    let agent = parse_agent_config(
        "config.json",
        r#"{"Nodes": {
            "AddNodeHook": {"Command": ["/usr/local/bin/add-node", "--zone", "a"]},
            "removenodehook": {"Url": "http://10.0.0.1:8080/hooks", "Timeout": 5, "Retries": 0}
        }}"#,
    )
    .expect("valid hooks");
    let add = agent
        .nodes
        .add_node_hook
        .as_ref()
        .expect("an add-node hook");
    assert_eq!(add.command, ["/usr/local/bin/add-node", "--zone", "a"]);
    assert_eq!(
        add.timeout_secs,
        common::config::hooks::DEFAULT_HOOK_TIMEOUT_SECS
    );
    assert_eq!(add.retries, common::config::hooks::DEFAULT_HOOK_RETRIES);
    let remove = agent
        .nodes
        .remove_node_hook
        .as_ref()
        .expect("a remove-node hook");
    assert_eq!(remove.url.as_deref(), Some("http://10.0.0.1:8080/hooks"));
    assert_eq!((remove.timeout_secs, remove.retries), (5, 0));
    let canonical = serde_json::to_string(&agent).expect("serializes");
    assert_eq!(
        parse_agent_config("config.json", &canonical).expect("canonical parses"),
        agent
    );
    // No hooks: the canonical document has no Nodes section (Gru's files unchanged).
    let plain = parse_agent_config("config.json", "{}").expect("empty config");
    assert!(
        !serde_json::to_string(&plain)
            .expect("serializes")
            .contains("Nodes")
    );
}

#[test]
fn node_hooks_are_refused_with_their_path() {
    let problems = match parse_agent_config(
        "config.json",
        r#"{"Nodes": {
            "AddNodeHook": {"Command": ["add-node"], "Timeout": 0},
            "RemoveNodeHook": {"Command": ["/bin/true"], "Url": "http://h/"},
            "Bogus": 1
        }}"#,
    ) {
        Ok(agent) => panic!("accepted {agent:?}"),
        Err(problems) => rendered(&problems),
    };
    for needle in [
        "config.json: Nodes.AddNodeHook.Command: \"add-node\" is not an absolute path",
        "config.json: Nodes.AddNodeHook.Timeout: must be at least 1, found 0",
        "config.json: Nodes.RemoveNodeHook: names both a Command and a Url: choose one",
        "Nodes.Bogus",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle:?} not in {problems:?}"
        );
    }
    let problems = match parse_agent_config(
        "config.json",
        r#"{"Nodes": {"AddNodeHook": {}, "RemoveNodeHook": {"Url": "https://h/x"}}}"#,
    ) {
        Ok(agent) => panic!("accepted {agent:?}"),
        Err(problems) => rendered(&problems),
    };
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Nodes.AddNodeHook: names neither a Command nor a Url")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("Nodes.RemoveNodeHook.Url: \"https://h/x\" is not an http:// URL")),
        "{problems:?}"
    );
}
