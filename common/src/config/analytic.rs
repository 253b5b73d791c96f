//! Analytics, `analytics/<name>.json`: a named expression over metrics and constraints whose
//! value, between 0 and 1, the policy compares with its thresholds.
//!
//! The expression is checked before it is ever pushed: it must parse, read only the names it
//! lists (so a typo is not silently an always-unavailable analytic), call only evalexpr's
//! builtin functions, assign nothing, and yield a number.

use std::collections::BTreeSet;

use evalexpr::{
    ContextWithMutableVariables, EmptyContextWithBuiltinFunctions, EvalexprError, HashMapContext,
    Node, Operator, Value,
};
use serde::{Deserialize, Serialize};

use super::document::parse_document;
use super::name::{check_name, check_no_empty_names};
use super::problem::{Findings, JsonPath, Problem};
use super::schema::{Field, Shape, field};
use super::suggest::did_you_mean;

/// Metrics every agent measures itself for each container: CPU use as a fraction of the cores
/// the container may use, and memory use as a fraction of its limit.
pub const BASE_METRICS: &[&str] = &["cpu_avg", "mem_avg"];

/// Gru's spellings of base metrics that gru names otherwise: Gru's `memory_avg` is
/// `mem_avg`. Analytics and policies may use either; both read the same samples.
pub const BASE_METRIC_ALIASES: &[(&str, &str)] = &[("memory_avg", "mem_avg")];

/// The base metric `name` stands for, in gru's spelling, or `None` for a user metric.
pub fn base_metric(name: &str) -> Option<&'static str> {
    BASE_METRICS
        .iter()
        .find(|base| **base == name)
        .copied()
        .or_else(|| {
            BASE_METRIC_ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .map(|(_, base)| *base)
        })
}

/// `analytics/<name>.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Analytic {
    pub name: String,
    /// An evalexpr expression over the names in `metrics` and `constraints`.
    pub expr: String,
    /// Metrics the expression reads: [`BASE_METRICS`] or metrics the services report.
    pub metrics: Vec<String>,
    /// Names of the services' `Constraints` the expression reads.
    pub constraints: Vec<String>,
    /// gru's addition: the analytic's value when a metric it reads has no sample (a
    /// response time while no request completes: 0); `None` keeps it unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missing: Option<f64>,
}

/// The longest expression, in bytes. evalexpr parses, evaluates and drops a tree
/// recursively, so an expression far longer than any real one (`a + a + ...` ten thousand
/// times) would exhaust the stack of the thread that compiles it: the CLI's, or an agent's.
pub const MAX_EXPR_BYTES: usize = 1024;

const ANALYTIC_FIELDS: &[Field] = &[
    field("Name", Shape::Any),
    field("Expr", Shape::Any),
    field("Metrics", Shape::Any),
    field("Constraints", Shape::Any),
    field("Missing", Shape::Any),
];

/// Parses and validates an analytic (`analytics/<name>.json`).
pub fn parse_analytic(file: &str, text: &str) -> Result<Analytic, Vec<Problem>> {
    parse_document(file, text, ANALYTIC_FIELDS, validate)
}

fn validate(analytic: &Analytic, findings: &mut Findings) {
    check_name(findings, "Name", "analytic", &analytic.name);
    check_no_empty_names(findings, &JsonPath::fields("Metrics"), &analytic.metrics);
    check_no_empty_names(
        findings,
        &JsonPath::fields("Constraints"),
        &analytic.constraints,
    );
    for (index, constraint) in analytic.constraints.iter().enumerate() {
        if !constraint.is_empty() && analytic.metrics.contains(constraint) {
            findings.add(
                &JsonPath::fields("Constraints").index(index),
                format!("\"{constraint}\" is also listed in Metrics; a name is one or the other"),
            );
        }
    }
    if let Some(missing) = analytic.missing.filter(|m| !(0.0..=1.0).contains(m)) {
        findings.add(
            &JsonPath::fields("Missing"),
            format!("{missing} is outside [0, 1]"),
        );
    }
    if analytic.expr.is_empty() {
        findings.required("Expr", &analytic.expr);
        return;
    }
    let path = JsonPath::fields("Expr");
    if analytic.expr.len() > MAX_EXPR_BYTES {
        findings.add(
            &path,
            format!(
                "is {} bytes, longer than the {MAX_EXPR_BYTES} an expression may be",
                analytic.expr.len()
            ),
        );
        return;
    }
    match evalexpr::build_operator_tree(&analytic.expr) {
        Ok(tree) => match operator_missing_operand(&tree) {
            None => check_expression(analytic, &tree, findings),
            Some(operator) => findings.add(
                &path,
                format!(
                    "\"{}\" does not parse: operator \"{operator}\" lacks an operand",
                    analytic.expr
                ),
            ),
        },
        Err(error) => findings.add(
            &path,
            format!("\"{}\" does not parse: {error}", analytic.expr),
        ),
    }
}

/// evalexpr builds a tree for `cpu_avg *` and only fails when evaluating it; to an operator
/// writing an analytic, an operator without its operands is a syntax error.
fn operator_missing_operand(tree: &Node) -> Option<String> {
    use Operator::{Add, And, Div, Eq, Exp, Geq, Gt, Leq, Lt, Mod, Mul, Neg, Neq, Not, Or, Sub};
    tree.iter().find_map(|node| {
        let operands = match node.operator() {
            Add | Sub | Mul | Div | Mod | Exp | Eq | Neq | Gt | Lt | Geq | Leq | And | Or => 2,
            Neg | Not => 1,
            _ => return None,
        };
        (node.children().len() != operands).then(|| node.operator().to_string())
    })
}

fn check_expression(analytic: &Analytic, tree: &Node, findings: &mut Findings) {
    let path = JsonPath::fields("Expr");
    let problems_before = findings.len();
    let assigned: BTreeSet<&str> = tree.iter_write_variable_identifiers().collect();
    for name in assigned {
        findings.add(
            &path,
            format!("assigns to \"{name}\"; an analytic only reads its inputs"),
        );
    }
    let allowed: Vec<&str> = analytic
        .metrics
        .iter()
        .chain(&analytic.constraints)
        .map(String::as_str)
        .collect();
    let read: BTreeSet<&str> = tree.iter_read_variable_identifiers().collect();
    for name in read.iter().filter(|name| !allowed.contains(name)) {
        let hint = if base_metric(name).is_some() {
            Some(format!(
                "add \"{name}\" to Metrics: it is measured by every agent"
            ))
        } else {
            did_you_mean(name, allowed.iter().copied())
                .or_else(|| Some("list it in Metrics or in Constraints".to_owned()))
        };
        findings.add_with_hint(
            &path,
            format!(
                "uses \"{name}\", which is neither in Metrics nor in Constraints (allowed: {})",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            ),
            hint,
        );
    }
    let called: BTreeSet<&str> = tree.iter_function_identifiers().collect();
    for name in called.into_iter().filter(|name| !is_builtin_function(name)) {
        findings.add_with_hint(
            &path,
            format!("calls \"{name}\", which is not an evalexpr builtin function"),
            Some("builtins include min, max, floor, ceil, round, if, math::sqrt".to_owned()),
        );
    }
    if findings.len() == problems_before {
        check_yields_number(&analytic.expr, tree, &read, findings);
    }
}

/// Evaluates the expression with every input at 1.0. Some expressions cannot be evaluated
/// that way (a constraint holding a string, say), so only a successful evaluation to
/// something other than a number is reported: `cpu_avg > 0.8` is a test, not a level.
fn check_yields_number(expr: &str, tree: &Node, inputs: &BTreeSet<&str>, findings: &mut Findings) {
    let mut context = HashMapContext::new();
    for name in inputs {
        if context
            .set_value((*name).to_owned(), Value::Float(1.0))
            .is_err()
        {
            return;
        }
    }
    let kind = match tree.eval_with_context(&context) {
        Ok(Value::Float(_) | Value::Int(_)) | Err(_) => return,
        Ok(Value::Boolean(_)) => "a boolean",
        Ok(Value::String(_)) => "a string",
        Ok(Value::Tuple(_)) => "a tuple",
        Ok(Value::Empty) => "nothing",
    };
    findings.add(
        &JsonPath::fields("Expr"),
        format!("\"{expr}\" yields {kind}, not a number"),
    );
}

/// Whether evalexpr knows `name` as a builtin; evalexpr does not list its builtins, so ask it
/// to call the function and see whether the failure, if any, is "no such function".
fn is_builtin_function(name: &str) -> bool {
    let Ok(call) = evalexpr::build_operator_tree(&format!("{name}()")) else {
        return false;
    };
    !matches!(
        call.eval_with_context(&EmptyContextWithBuiltinFunctions),
        Err(EvalexprError::FunctionIdentifierNotFound(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(expr: &str) -> String {
        serde_json::json!({"Name": "load", "Expr": expr, "Metrics": ["cpu_avg"]}).to_string()
    }

    #[test]
    fn an_expression_over_the_length_bound_is_refused_before_it_is_parsed() {
        // Far over the bound: parsing it would overflow this thread's 2 MiB stack.
        let long = vec!["cpu_avg"; 6000].join(" + ");
        let problems =
            parse_analytic("analytics/load.json", &document(&long)).expect_err("too long");
        assert!(
            problems
                .iter()
                .any(|p| p.path == "Expr" && p.message.contains("longer than the 1024")),
            "{problems:?}"
        );

        // At the bound, nested as deep as it can be: parsed and checked on this thread.
        let depth = (MAX_EXPR_BYTES - "cpu_avg".len()) / 2;
        let nested = format!("{}cpu_avg{}", "(".repeat(depth), ")".repeat(depth));
        assert!(nested.len() <= MAX_EXPR_BYTES);
        parse_analytic("analytics/load.json", &document(&nested)).expect("accepted");
    }
}
