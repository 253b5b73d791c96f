//! Gru's `/commands` body, `{"Name": ..., "Target": ..., "Object": ...}` (keys in any case,
//! as Go's encoding/json read them), turned into the [`AgentCommand`] it asks for. Gru's
//! `gru manage` sent these, and so may an operator's scripts written for Gru.
//!
//! ```text
//!   Name    Target               Object                  command
//!   start   agent                (ignored)               start
//!   stop    agent                (ignored)               stop
//!   start   service              "<service>"             start-service
//!   stop    service              "<service>"             stop-service
//!   update  all|agent|services|  "<cluster>"             update (the whole configuration
//!           policy                                       is read again, whatever the part)
//!   update  service-constraints  "<service>"             update
//!   update  node-base-services   ["<service>", ...]      set-base-services
//!   update  node-cpumin          0.0 to 1.0              set-node-cpu
//!   update  node-cpumax          0.0 to 1.0              set-node-cpu
//! ```
//!
//! Gru logged and ignored a command it did not know; here every such body is refused with
//! what it should have said.

use serde_json::{Map, Value};

use crate::runtime::AgentCommand;

/// Whether `body` is in Gru's form: an object with a `Target` key (in any case). gru's own
/// form (`{"name": "start"}`) has none.
pub fn is_gru_form(body: &Value) -> bool {
    body.as_object()
        .is_some_and(|object| field(object, "target").is_some())
}

/// The command a Gru-form body asks of the agent of `cluster`, or why it asks none.
pub fn translate(body: &Value, cluster: &str) -> Result<AgentCommand, String> {
    let object = body.as_object().ok_or("a Gru command is a JSON object")?;
    let name = text(object, "name")?;
    let target = text(object, "target")?;
    let object_value = field(object, "object").unwrap_or(&Value::Null);
    let command = match (
        name.to_ascii_lowercase().as_str(),
        target.to_ascii_lowercase().as_str(),
    ) {
        ("start", "agent") => AgentCommand::Start,
        ("stop", "agent") => AgentCommand::Stop,
        ("start", "service") => AgentCommand::StartService {
            service: service_name(object_value)?,
        },
        ("stop", "service") => AgentCommand::StopService {
            service: service_name(object_value)?,
        },
        ("update", "all" | "agent" | "services" | "policy") => match object_value.as_str() {
            Some(named) if named != cluster => {
                return Err(format!(
                    "this agent is in cluster \"{cluster}\", not \"{named}\""
                ));
            }
            _ => AgentCommand::Update,
        },
        ("update", "service-constraints") => {
            service_name(object_value)?;
            AgentCommand::Update
        }
        ("update", "node-base-services") => AgentCommand::SetBaseServices {
            services: service_names(object_value)?,
        },
        ("update", "node-cpumin") => AgentCommand::SetNodeCpu {
            cpumin: Some(cpu_fraction(object_value)?),
            cpumax: None,
        },
        ("update", "node-cpumax") => AgentCommand::SetNodeCpu {
            cpumin: None,
            cpumax: Some(cpu_fraction(object_value)?),
        },
        ("start" | "stop", other) => {
            return Err(format!(
                "{name} has no target \"{other}\"; Gru's targets are agent and service"
            ));
        }
        ("update", other) => {
            return Err(format!(
                "update has no target \"{other}\"; Gru's targets are all, agent, services, \
                 policy, service-constraints, node-base-services, node-cpumin and node-cpumax"
            ));
        }
        _ => {
            return Err(format!(
                "no command \"{name}\"; Gru's commands are start, stop and update"
            ));
        }
    };
    Ok(command)
}

/// A key of `object`, matched ignoring case.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(key))
        .map(|(_, value)| value)
}

fn text(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    match field(object, key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(format!("\"{key}\" must be a string, not {other}")),
        None => Err(format!("a Gru command needs \"{key}\"")),
    }
}

fn service_name(object: &Value) -> Result<String, String> {
    object
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("\"Object\" must be the service's name, not {object}"))
}

fn service_names(object: &Value) -> Result<Vec<String>, String> {
    let names = || format!("\"Object\" must be a list of service names, not {object}");
    object
        .as_array()
        .ok_or_else(names)?
        .iter()
        .map(|name| name.as_str().map(str::to_owned).ok_or_else(names))
        .collect()
}

/// Gru's CPU bound in a command's `Object`: a number from 0.0 to 1.0.
fn cpu_fraction(object: &Value) -> Result<f64, String> {
    match object.as_f64() {
        Some(value) => check_cpu_bound(value),
        None => Err(format!(
            "a CPU bound is a number from 0.0 to 1.0, not {object}"
        )),
    }
}

/// A CPU bound of either command form: a fraction of the node's CPU, 0.0 to 1.0.
pub fn check_cpu_bound(value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "a CPU bound is a number from 0.0 to 1.0, not {value}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn gru_s_commands_become_agent_commands() {
        let cases = [
            (
                json!({"Name": "start", "Target": "agent"}),
                AgentCommand::Start,
            ),
            (
                json!({"name": "stop", "target": "agent", "object": null}),
                AgentCommand::Stop,
            ),
            (
                json!({"Name": "start", "Target": "service", "Object": "web"}),
                AgentCommand::StartService {
                    service: "web".into(),
                },
            ),
            (
                json!({"NAME": "stop", "TARGET": "service", "OBJECT": "web"}),
                AgentCommand::StopService {
                    service: "web".into(),
                },
            ),
            (
                json!({"Name": "update", "Target": "agent", "Object": "shop"}),
                AgentCommand::Update,
            ),
            (
                json!({"Name": "update", "Target": "all", "Object": "shop"}),
                AgentCommand::Update,
            ),
            (
                json!({"Name": "update", "Target": "policy"}),
                AgentCommand::Update,
            ),
            (
                json!({"Name": "update", "Target": "service-constraints", "Object": "web"}),
                AgentCommand::Update,
            ),
            (
                json!({"Name": "update", "Target": "node-base-services", "Object": ["web", "db"]}),
                AgentCommand::SetBaseServices {
                    services: vec!["web".into(), "db".into()],
                },
            ),
            (
                json!({"Name": "update", "Target": "node-cpumin", "Object": 0.2}),
                AgentCommand::SetNodeCpu {
                    cpumin: Some(0.2),
                    cpumax: None,
                },
            ),
            (
                json!({"Name": "update", "Target": "node-cpumax", "Object": 1}),
                AgentCommand::SetNodeCpu {
                    cpumin: None,
                    cpumax: Some(1.0),
                },
            ),
        ];
        for (body, expected) in cases {
            assert!(is_gru_form(&body), "{body}");
            assert_eq!(translate(&body, "shop"), Ok(expected), "{body}");
        }
    }

    #[test]
    fn what_gru_ignored_is_refused_with_what_to_send() {
        let cases = [
            (
                json!({"Name": "start", "Target": "node"}),
                "Gru's targets are agent and service",
            ),
            (
                json!({"Name": "update", "Target": "nodes"}),
                "node-base-services",
            ),
            (
                json!({"Name": "restart", "Target": "agent"}),
                "start, stop and update",
            ),
            (
                json!({"Name": "start", "Target": "service"}),
                "the service's name",
            ),
            (
                json!({"Name": "start", "Target": "service", "Object": 3}),
                "the service's name",
            ),
            (
                json!({"Name": "update", "Target": "node-cpumin", "Object": 1.5}),
                "0.0 to 1.0",
            ),
            (
                json!({"Name": "update", "Target": "node-cpumax", "Object": "0.5"}),
                "0.0 to 1.0",
            ),
            (
                json!({"Name": "update", "Target": "node-base-services", "Object": [1]}),
                "a list of service names",
            ),
            (
                json!({"Name": "update", "Target": "agent", "Object": "other"}),
                "not \"other\"",
            ),
            (json!({"Target": "agent"}), "needs \"name\""),
            (json!({"Name": 1, "Target": "agent"}), "must be a string"),
        ];
        for (body, expected) in cases {
            let refused = translate(&body, "shop").expect_err("refused");
            assert!(refused.contains(expected), "{body}: {refused}");
        }
    }

    #[test]
    fn gru_s_own_command_form_is_told_apart() {
        assert!(!is_gru_form(&json!({"name": "start"})));
        assert!(!is_gru_form(
            &json!({"name": "start-service", "service": "web"})
        ));
        assert!(!is_gru_form(&json!("start")));
        assert!(is_gru_form(&json!({"target": "agent"})));
    }
}
