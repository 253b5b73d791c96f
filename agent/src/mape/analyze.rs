//! Analyze: the cluster's analytics, compiled once per configuration version and evaluated
//! with a service's metrics and constraints bound by name.
//!
//! An analytic that cannot be computed is [`AnalyticValue::Unavailable`] with a reason naming
//! what was missing; it is never a silent 0, because a 0 would read as "idle" and invite a
//! scale-in exactly when the agent knows least. Every number is bound as a float, so
//! `execution_time / MAX_RESP_TIME` divides as an operator expects even when both are written
//! as integers. Results are clamped to [0, 1], the scale the policy's thresholds use.

use std::collections::{BTreeMap, BTreeSet};

use common::config::{Analytic, ClusterConfig, ServiceDescriptor};
use evalexpr::{ContextWithMutableVariables, HashMapContext, Node, Value};
use serde::{Deserialize, Serialize};

/// An analytic's value for one service, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnalyticValue {
    /// In [0, 1].
    Available(f64),
    Unavailable {
        reason: String,
    },
}

impl AnalyticValue {
    pub fn unavailable(reason: impl Into<String>) -> AnalyticValue {
        AnalyticValue::Unavailable {
            reason: reason.into(),
        }
    }

    /// The value, if there is one (and it is a finite number).
    pub fn value(&self) -> Option<f64> {
        match self {
            AnalyticValue::Available(value) if value.is_finite() => Some(*value),
            _ => None,
        }
    }
}

/// One analytic, ready to evaluate.
#[derive(Debug, Clone)]
struct CompiledAnalytic {
    metrics: Vec<String>,
    constraints: Vec<String>,
    expr: String,
    /// The analytic's `Missing`: its value when a metric it reads has no sample.
    missing: Option<f64>,
    /// The operator tree, or why the expression does not compile. Pushed configurations are
    /// validated, so the error is for documents written around the CLI.
    tree: Result<Node, String>,
}

/// Every analytic of a configuration version, each compiled once.
#[derive(Debug, Clone)]
pub struct CompiledAnalytics {
    analytics: BTreeMap<String, CompiledAnalytic>,
    /// Analytics the policy's rules name, evaluated for every service.
    policy_analytics: Vec<String>,
}

impl CompiledAnalytics {
    /// Compiles every analytic of `config`. An expression that does not compile makes that
    /// analytic unavailable (with the parser's message), not the others.
    pub fn compile(config: &ClusterConfig) -> CompiledAnalytics {
        let analytics = config
            .analytics
            .iter()
            .map(|(name, analytic)| (name.clone(), compile_one(analytic)))
            .collect();
        let mut policy_analytics: Vec<String> = config
            .policy
            .rules()
            .iter()
            .flat_map(|(_, rule)| rule.analytics.iter().cloned())
            .collect();
        policy_analytics.sort();
        policy_analytics.dedup();
        CompiledAnalytics {
            analytics,
            policy_analytics,
        }
    }

    /// The names of the compiled analytics.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.analytics.keys().map(String::as_str)
    }

    /// The analytics that concern `service` (its own `Analytics` and those the policy's
    /// rules name), each evaluated with `metrics` (the service's metric means, by name) and
    /// the service's `Constraints`.
    pub fn evaluate(
        &self,
        service: &ServiceDescriptor,
        metrics: &BTreeMap<String, f64>,
    ) -> BTreeMap<String, AnalyticValue> {
        let names: BTreeSet<&String> = service
            .analytics
            .iter()
            .chain(&self.policy_analytics)
            .collect();
        names
            .into_iter()
            .map(|name| (name.clone(), self.evaluate_one(name, service, metrics)))
            .collect()
    }

    /// One analytic for `service`.
    pub fn evaluate_one(
        &self,
        analytic: &str,
        service: &ServiceDescriptor,
        metrics: &BTreeMap<String, f64>,
    ) -> AnalyticValue {
        match self.analytics.get(analytic) {
            Some(compiled) => compiled.evaluate(service, metrics),
            None => AnalyticValue::unavailable(format!(
                "no analytic \"{analytic}\" in the configuration"
            )),
        }
    }
}

fn compile_one(analytic: &Analytic) -> CompiledAnalytic {
    CompiledAnalytic {
        metrics: analytic.metrics.clone(),
        constraints: analytic.constraints.clone(),
        expr: analytic.expr.clone(),
        missing: analytic.missing,
        tree: evalexpr::build_operator_tree(&analytic.expr)
            .map_err(|error| format!("\"{}\" does not compile: {error}", analytic.expr)),
    }
}

impl CompiledAnalytic {
    fn evaluate(
        &self,
        service: &ServiceDescriptor,
        metrics: &BTreeMap<String, f64>,
    ) -> AnalyticValue {
        let tree = match &self.tree {
            Ok(tree) => tree,
            Err(reason) => return AnalyticValue::unavailable(reason.clone()),
        };
        let inputs = match self.bind(service, metrics) {
            Ok(inputs) => inputs,
            // A metric without samples has the value the analytic declares for it (a
            // response time while no request completes); a missing constraint never does.
            Err((reasons, only_metrics)) => {
                return match self.missing.filter(|_| only_metrics) {
                    Some(value) => AnalyticValue::Available(value),
                    None => AnalyticValue::unavailable(reasons.join("; ")),
                };
            }
        };
        let mut context = HashMapContext::new();
        for (name, value) in &inputs {
            if let Err(error) = context.set_value(name.clone(), Value::Float(*value)) {
                return AnalyticValue::unavailable(format!("cannot bind \"{name}\": {error}"));
            }
        }
        let result = match tree.eval_with_context(&context) {
            Ok(Value::Float(value)) => value,
            // An integer can only come from literals (every input is a float); it is a level.
            Ok(Value::Int(value)) => value as f64,
            Ok(other) => {
                return AnalyticValue::unavailable(format!(
                    "\"{}\" yields {}, not a number",
                    self.expr,
                    kind_of(&other)
                ));
            }
            Err(error) => {
                return AnalyticValue::unavailable(format!(
                    "\"{}\" cannot be evaluated: {error}",
                    self.expr
                ));
            }
        };
        if result.is_finite() {
            return AnalyticValue::Available(result.clamp(0.0, 1.0));
        }
        let zeros: Vec<String> = inputs
            .iter()
            .filter(|(_, value)| **value == 0.0)
            .map(|(name, _)| format!("{name} = 0"))
            .collect();
        let what = if result.is_nan() {
            "NaN"
        } else {
            "an infinite value"
        };
        let cause = if zeros.is_empty() {
            String::new()
        } else {
            format!(" (division by zero? {})", zeros.join(", "))
        };
        AnalyticValue::unavailable(format!("\"{}\" yields {what}{cause}", self.expr))
    }

    /// The expression's inputs by name, or every reason an input is missing.
    fn bind(
        &self,
        service: &ServiceDescriptor,
        metrics: &BTreeMap<String, f64>,
    ) -> Result<BTreeMap<String, f64>, (Vec<String>, bool)> {
        let mut inputs = BTreeMap::new();
        let mut missing = Vec::new();
        for metric in &self.metrics {
            // Gru's spelling of a base metric reads gru's samples of it.
            let source = common::config::base_metric(metric).unwrap_or(metric);
            match metrics.get(source) {
                Some(value) if value.is_finite() => {
                    inputs.insert(metric.clone(), *value);
                }
                Some(value) => missing.push(format!("metric \"{metric}\" is {value}")),
                None => missing.push(format!("metric \"{metric}\" has no value")),
            }
        }
        let metrics_missing = missing.len();
        for constraint in &self.constraints {
            match service.constraints.get(constraint) {
                None => missing.push(format!(
                    "service \"{}\" has no constraint \"{constraint}\"",
                    service.name
                )),
                Some(value) => match value.as_f64().filter(|v| v.is_finite()) {
                    Some(number) => {
                        inputs.insert(constraint.clone(), number);
                    }
                    None => missing.push(format!(
                        "constraint \"{constraint}\" of service \"{}\" is {}, not a number",
                        service.name,
                        serde_json::to_string(value).unwrap_or_else(|_| "?".to_owned())
                    )),
                },
            }
        }
        if missing.is_empty() {
            Ok(inputs)
        } else {
            let only_metrics = missing.len() == metrics_missing;
            Err((missing, only_metrics))
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Boolean(_) => "a boolean",
        Value::String(_) => "a string",
        Value::Tuple(_) => "a tuple",
        Value::Empty => "nothing",
        Value::Float(_) | Value::Int(_) => "a number",
    }
}

#[cfg(test)]
mod tests {
    use common::config::{ConstraintValue, PolicyConfig};

    use super::*;

    fn analytic(name: &str, expr: &str, metrics: &[&str], constraints: &[&str]) -> Analytic {
        Analytic {
            name: name.to_owned(),
            expr: expr.to_owned(),
            metrics: metrics.iter().map(|m| (*m).to_owned()).collect(),
            constraints: constraints.iter().map(|c| (*c).to_owned()).collect(),
            missing: None,
        }
    }

    fn config(analytics: Vec<Analytic>) -> ClusterConfig {
        ClusterConfig {
            agent: Default::default(),
            policy: PolicyConfig::default(),
            services: BTreeMap::new(),
            analytics: analytics.into_iter().map(|a| (a.name.clone(), a)).collect(),
        }
    }

    fn service(analytics: &[&str], constraints: &[(&str, serde_json::Value)]) -> ServiceDescriptor {
        ServiceDescriptor {
            name: "web".to_owned(),
            analytics: analytics.iter().map(|a| (*a).to_owned()).collect(),
            constraints: constraints
                .iter()
                .map(|(k, v)| {
                    let value: ConstraintValue =
                        serde_json::from_value(v.clone()).expect("a constraint value");
                    ((*k).to_owned(), value)
                })
                .collect(),
            ..Default::default()
        }
    }

    fn metrics(values: &[(&str, f64)]) -> BTreeMap<String, f64> {
        values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn reason(value: &AnalyticValue) -> &str {
        match value {
            AnalyticValue::Unavailable { reason } => reason,
            AnalyticValue::Available(v) => panic!("expected unavailable, got {v}"),
        }
    }

    #[test]
    fn results_are_clamped_to_the_unit_interval() {
        let compiled = CompiledAnalytics::compile(&config(vec![analytic(
            "ratio",
            "load / cap",
            &["load"],
            &["cap"],
        )]));
        let web = service(&["ratio"], &[("cap", serde_json::json!(100))]);
        // (load, expected)
        let cases = [
            (50.0, 0.5),
            (250.0, 1.0),
            (-20.0, 0.0),
            (0.0, 0.0),
            (100.0, 1.0),
        ];
        for (load, expected) in cases {
            let value = compiled.evaluate_one("ratio", &web, &metrics(&[("load", load)]));
            assert_eq!(value, AnalyticValue::Available(expected), "load {load}");
        }
    }

    #[test]
    fn integer_inputs_divide_as_floats() {
        let compiled = CompiledAnalytics::compile(&config(vec![analytic(
            "resp_time_ratio",
            "execution_time / MAX_RESP_TIME",
            &["execution_time"],
            &["MAX_RESP_TIME"],
        )]));
        let web = service(&[], &[("MAX_RESP_TIME", serde_json::json!(4))]);
        let value = compiled.evaluate_one(
            "resp_time_ratio",
            &web,
            &metrics(&[("execution_time", 3.0)]),
        );
        assert_eq!(value, AnalyticValue::Available(0.75));
    }

    #[test]
    fn numeric_string_constraint_is_a_number() {
        let compiled = CompiledAnalytics::compile(&config(vec![analytic(
            "ratio",
            "x / LIMIT",
            &["x"],
            &["LIMIT"],
        )]));
        let web = service(&[], &[("LIMIT", serde_json::json!(" 8 "))]);
        let value = compiled.evaluate_one("ratio", &web, &metrics(&[("x", 2.0)]));
        assert_eq!(value, AnalyticValue::Available(0.25));
    }

    #[test]
    fn missing_or_bad_input_makes_the_analytic_unavailable_and_names_it() {
        let compiled = CompiledAnalytics::compile(&config(vec![analytic(
            "ratio",
            "x / LIMIT",
            &["x"],
            &["LIMIT"],
        )]));
        let with_limit = service(&[], &[("LIMIT", serde_json::json!(8))]);
        let text_limit = service(&[], &[("LIMIT", serde_json::json!("fast"))]);
        let no_limit = service(&[], &[]);
        let x = metrics(&[("x", 2.0)]);
        let none = metrics(&[]);
        // (service, metrics, every fragment the reason must hold)
        let cases: [(&ServiceDescriptor, &BTreeMap<String, f64>, &[&str]); 4] = [
            (&with_limit, &none, &["metric \"x\" has no value"]),
            (
                &no_limit,
                &x,
                &["service \"web\" has no constraint \"LIMIT\""],
            ),
            (
                &text_limit,
                &x,
                &["constraint \"LIMIT\"", "\"fast\", not a number"],
            ),
            (
                &no_limit,
                &none,
                &["metric \"x\" has no value", "no constraint \"LIMIT\""],
            ),
        ];
        for (service, metrics, fragments) in cases {
            let value = compiled.evaluate_one("ratio", service, metrics);
            for fragment in fragments {
                assert!(
                    reason(&value).contains(fragment),
                    "{value:?} lacks {fragment}"
                );
            }
        }
    }

    #[test]
    fn division_by_zero_is_unavailable_not_zero() {
        let compiled = CompiledAnalytics::compile(&config(vec![
            analytic("ratio", "x / LIMIT", &["x"], &["LIMIT"]),
            analytic("nan", "x / LIMIT", &["x"], &["LIMIT"]),
        ]));
        let zero_limit = service(&[], &[("LIMIT", serde_json::json!(0))]);
        let inf = compiled.evaluate_one("ratio", &zero_limit, &metrics(&[("x", 2.0)]));
        assert!(reason(&inf).contains("infinite"), "{inf:?}");
        assert!(reason(&inf).contains("LIMIT = 0"), "{inf:?}");
        let nan = compiled.evaluate_one("nan", &zero_limit, &metrics(&[("x", 0.0)]));
        assert!(reason(&nan).contains("NaN"), "{nan:?}");
    }

    #[test]
    fn non_numeric_result_and_evaluation_error_are_unavailable() {
        let compiled = CompiledAnalytics::compile(&config(vec![
            analytic("test", "x > 0.5", &["x"], &[]),
            analytic("literal_division", "x + 1 / 0", &["x"], &[]),
            analytic("broken", "x +", &["x"], &[]),
        ]));
        let web = service(&[], &[]);
        let x = metrics(&[("x", 0.7)]);
        let test = compiled.evaluate_one("test", &web, &x);
        assert!(reason(&test).contains("yields a boolean"), "{test:?}");
        let division = compiled.evaluate_one("literal_division", &web, &x);
        assert!(
            reason(&division).contains("cannot be evaluated"),
            "{division:?}"
        );
        let broken = compiled.evaluate_one("broken", &web, &x);
        assert!(matches!(broken, AnalyticValue::Unavailable { .. }));
        let unknown = compiled.evaluate_one("nope", &web, &x);
        assert!(reason(&unknown).contains("no analytic \"nope\""));
    }

    #[test]
    fn gru_s_memory_avg_reads_the_mem_avg_samples() {
        let compiled = CompiledAnalytics::compile(&config(vec![analytic(
            "memory",
            "max(cpu_avg, memory_avg)",
            &["cpu_avg", "memory_avg"],
            &[],
        )]));
        let web = service(&[], &[]);
        let value = compiled.evaluate_one(
            "memory",
            &web,
            &metrics(&[("cpu_avg", 0.2), ("mem_avg", 0.7)]),
        );
        assert_eq!(value, AnalyticValue::Available(0.7));
        let without = compiled.evaluate_one("memory", &web, &metrics(&[("cpu_avg", 0.2)]));
        assert!(reason(&without).contains("memory_avg"), "{without:?}");
    }

    #[test]
    fn evaluate_covers_the_service_and_policy_analytics() {
        let mut cfg = config(vec![
            analytic("own", "cpu_avg", &["cpu_avg"], &[]),
            analytic("policy_wide", "mem_avg", &["mem_avg"], &[]),
            analytic("unrelated", "cpu_avg", &["cpu_avg"], &[]),
        ]);
        cfg.policy.scaleout.analytics = vec!["policy_wide".to_owned()];
        let compiled = CompiledAnalytics::compile(&cfg);
        let web = service(&["own"], &[]);
        let values = compiled.evaluate(&web, &metrics(&[("cpu_avg", 0.4), ("mem_avg", 0.6)]));
        let expected: BTreeMap<String, AnalyticValue> = [
            ("own".to_owned(), AnalyticValue::Available(0.4)),
            ("policy_wide".to_owned(), AnalyticValue::Available(0.6)),
        ]
        .into();
        assert_eq!(values, expected);
    }

    #[test]
    fn a_declared_missing_value_stands_in_for_a_metric_without_samples() {
        let mut ratio = analytic(
            "resp_time_ratio",
            "execution_time / MAX_RESP_TIME",
            &["execution_time"],
            &["MAX_RESP_TIME"],
        );
        ratio.missing = Some(0.0);
        let compiled = CompiledAnalytics::compile(&config(vec![ratio]));
        let web = service(
            &["resp_time_ratio"],
            &[("MAX_RESP_TIME", serde_json::json!(200))],
        );
        // No request completed: no execution_time sample, so the declared 0.
        let idle = compiled.evaluate_one("resp_time_ratio", &web, &BTreeMap::new());
        assert_eq!(idle, AnalyticValue::Available(0.0));
        // A missing constraint is a configuration problem: still unavailable.
        let unconstrained = service(&["resp_time_ratio"], &[]);
        let broken = compiled.evaluate_one("resp_time_ratio", &unconstrained, &BTreeMap::new());
        assert!(matches!(broken, AnalyticValue::Unavailable { .. }));
        // With samples, the expression as usual.
        let busy = BTreeMap::from([("execution_time".to_owned(), 100.0)]);
        let value = compiled.evaluate_one("resp_time_ratio", &web, &busy);
        assert_eq!(value, AnalyticValue::Available(0.5));
    }
}
