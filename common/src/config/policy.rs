//! The policy, `policy.json`: when to scale in, scale out and swap, and how cautiously.
//!
//! Gru's fields (`Enable`, `Threshold`, `Metrics`, `Analytics`) keep their meaning. gru adds,
//! with defaults that reproduce Gru's eager behaviour: `Period` (how long a breach must last
//! before acting), `Step` (instances per action), and one cooldown per direction.
//!
//! A scaling rule may also track a target (`"Mode": "target"`): instead of `Step` instances
//! it asks for the count the cluster view calls for, `ceil(n · value / Target)`, as
//! Kubernetes' HPA does, bounded by `MaxGrowthPercent` per decision and, going down, by the
//! highest count asked for during the last `Stabilization` seconds. `Window`/`Smoothing`
//! smooth the rule's inputs (Riemann's sliding windows, or an EWMA), and `Missing` says
//! what an input without samples counts as. Every new field is optional; a document that
//! uses none of them behaves as in Gru.

use serde::{Deserialize, Serialize};

use super::document::parse_document;
use super::name::check_no_empty_names;
use super::problem::{Findings, JsonPath, Problem};
use super::schema::{Field, Shape, field};

/// The thresholds of Gru's README.
pub const DEFAULT_SCALEIN_THRESHOLD: f64 = 0.35;
pub const DEFAULT_SCALEOUT_THRESHOLD: f64 = 0.75;
pub const DEFAULT_SWAP_THRESHOLD: f64 = 0.6;
/// Act on the first breach, as Gru did.
pub const DEFAULT_PERIOD_SECS: u64 = 0;
pub const DEFAULT_STEP_INSTANCES: u32 = 1;
/// No cooldown, as Gru had none.
pub const DEFAULT_COOLDOWN_OUT_SECS: u64 = 0;
pub const DEFAULT_COOLDOWN_IN_SECS: u64 = 0;
/// A target-tracking scale-out grows a service by at most this much of its count per
/// decision (HPA's default scale-up policy allows 100 % per period).
pub const DEFAULT_MAX_GROWTH_PERCENT: u32 = 100;
/// A target-tracking scale-in goes down only to the highest count asked for during this
/// many seconds, so that a dip does not undo a scale-out (HPA keeps 300 s; gru's loop and
/// cooldowns are shorter).
pub const DEFAULT_SCALEIN_STABILIZATION_SECS: u64 = 60;
/// A scale-out is not stabilized by default: it acts on the newest recommendation.
pub const DEFAULT_SCALEOUT_STABILIZATION_SECS: u64 = 0;
/// The longest `Window` and `Stabilization`: an hour.
pub const MAX_RULE_SPAN_SECS: u64 = 3_600;

/// How a rule sizes its action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMode {
    /// Gru's: `Step` instances per action.
    #[default]
    Step,
    /// The count the cluster view calls for: `ceil(n · value / Target)`.
    Target,
}

/// How a rule smooths its inputs over its `Window`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Smoothing {
    /// The mean of the values seen during the last `Window` seconds.
    #[default]
    Sliding,
    /// An exponentially weighted mean whose weights halve every `Window` seconds.
    Ewma,
}

/// `policy.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawPolicyConfig")]
pub struct PolicyConfig {
    #[serde(rename = "Scalein")]
    pub scalein: PolicyRule,
    #[serde(rename = "Scaleout")]
    pub scaleout: PolicyRule,
    #[serde(rename = "Swap")]
    pub swap: PolicyRule,
    /// Seconds after a scale-out during which the cluster takes no other scale-out.
    #[serde(rename = "CooldownOut")]
    pub cooldown_out_secs: u64,
    /// Seconds after any scale action of a service (out or in) during which it is not
    /// scaled in, so a service is not shrunk right after it grew.
    #[serde(rename = "CooldownIn")]
    pub cooldown_in_secs: u64,
}

/// When one action is considered, and how large it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub enable: bool,
    /// In [0, 1]: the level of the analytics and metrics where the action starts to weigh.
    pub threshold: f64,
    #[serde(default)]
    pub metrics: Vec<String>,
    #[serde(default)]
    pub analytics: Vec<String>,
    /// Seconds a breach must be sustained before acting; 0 acts at once.
    #[serde(rename = "Period", default)]
    pub period_secs: u64,
    /// Instances added or removed by one action (in target mode: the least a scale-out
    /// may grow by, whatever `MaxGrowthPercent` says).
    #[serde(default = "default_step")]
    pub step: u32,
    #[serde(default)]
    pub mode: RuleMode,
    /// Target mode: the level to bring the inputs to; `None` for the midpoint of the
    /// scale-in and scale-out thresholds (see [`PolicyConfig::target`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Target mode, scale-out: one decision adds at most
    /// `max(Step, ceil(n · MaxGrowthPercent / 100))` instances.
    #[serde(default = "default_max_growth_percent")]
    pub max_growth_percent: u32,
    /// Target mode: a scale-in goes only down to the highest count recommended during the
    /// last `Stabilization` seconds (a scale-out, up to the lowest).
    #[serde(rename = "Stabilization", default)]
    pub stabilization_secs: u64,
    /// Seconds over which the rule's inputs are smoothed; 0 takes each value as it comes.
    #[serde(rename = "Window", default)]
    pub window_secs: u64,
    #[serde(default)]
    pub smoothing: Smoothing,
    /// What an input of this rule with no samples counts as; `None`: it is unavailable
    /// (and an action whose inputs are all unavailable weighs 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<f64>,
}

impl PolicyRule {
    /// A disabled rule with the given threshold and gru's defaults.
    pub fn disabled(threshold: f64) -> PolicyRule {
        PolicyRule {
            enable: false,
            threshold,
            metrics: Vec::new(),
            analytics: Vec::new(),
            period_secs: DEFAULT_PERIOD_SECS,
            step: DEFAULT_STEP_INSTANCES,
            mode: RuleMode::Step,
            target: None,
            max_growth_percent: DEFAULT_MAX_GROWTH_PERCENT,
            stabilization_secs: 0,
            window_secs: 0,
            smoothing: Smoothing::Sliding,
            missing: None,
        }
    }

    /// Whether the rule tracks a target.
    pub fn tracks_target(&self) -> bool {
        self.mode == RuleMode::Target
    }
}

fn default_max_growth_percent() -> u32 {
    DEFAULT_MAX_GROWTH_PERCENT
}

fn default_step() -> u32 {
    DEFAULT_STEP_INSTANCES
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            scalein: PolicyRule {
                stabilization_secs: DEFAULT_SCALEIN_STABILIZATION_SECS,
                ..PolicyRule::disabled(DEFAULT_SCALEIN_THRESHOLD)
            },
            scaleout: PolicyRule::disabled(DEFAULT_SCALEOUT_THRESHOLD),
            swap: PolicyRule::disabled(DEFAULT_SWAP_THRESHOLD),
            cooldown_out_secs: DEFAULT_COOLDOWN_OUT_SECS,
            cooldown_in_secs: DEFAULT_COOLDOWN_IN_SECS,
        }
    }
}

/// A service's own policy, `Policy` in its descriptor (Dynamite's per-service policies):
/// each rule or cooldown it gives replaces the cluster's, whole; what it leaves out is the
/// cluster's. Rules are completed with the same defaults as in `policy.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawServicePolicy")]
pub struct ServicePolicy {
    #[serde(rename = "Scalein", skip_serializing_if = "Option::is_none")]
    pub scalein: Option<PolicyRule>,
    #[serde(rename = "Scaleout", skip_serializing_if = "Option::is_none")]
    pub scaleout: Option<PolicyRule>,
    #[serde(rename = "Swap", skip_serializing_if = "Option::is_none")]
    pub swap: Option<PolicyRule>,
    #[serde(rename = "CooldownOut", skip_serializing_if = "Option::is_none")]
    pub cooldown_out_secs: Option<u64>,
    #[serde(rename = "CooldownIn", skip_serializing_if = "Option::is_none")]
    pub cooldown_in_secs: Option<u64>,
}

impl ServicePolicy {
    /// The policy that applies to the service: the cluster's, with this one's parts.
    pub fn apply(&self, cluster: &PolicyConfig) -> PolicyConfig {
        PolicyConfig {
            scalein: self
                .scalein
                .clone()
                .unwrap_or_else(|| cluster.scalein.clone()),
            scaleout: self
                .scaleout
                .clone()
                .unwrap_or_else(|| cluster.scaleout.clone()),
            swap: self.swap.clone().unwrap_or_else(|| cluster.swap.clone()),
            cooldown_out_secs: self.cooldown_out_secs.unwrap_or(cluster.cooldown_out_secs),
            cooldown_in_secs: self.cooldown_in_secs.unwrap_or(cluster.cooldown_in_secs),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawServicePolicy {
    #[serde(rename = "Scalein", default)]
    scalein: Option<RawPolicyRule>,
    #[serde(rename = "Scaleout", default)]
    scaleout: Option<RawPolicyRule>,
    #[serde(rename = "Swap", default)]
    swap: Option<RawPolicyRule>,
    #[serde(rename = "CooldownOut", default)]
    cooldown_out_secs: Option<u64>,
    #[serde(rename = "CooldownIn", default)]
    cooldown_in_secs: Option<u64>,
}

impl From<RawServicePolicy> for ServicePolicy {
    fn from(raw: RawServicePolicy) -> ServicePolicy {
        ServicePolicy {
            scalein: raw.scalein.map(|r| {
                r.complete(
                    DEFAULT_SCALEIN_THRESHOLD,
                    DEFAULT_SCALEIN_STABILIZATION_SECS,
                )
            }),
            scaleout: raw.scaleout.map(|r| {
                r.complete(
                    DEFAULT_SCALEOUT_THRESHOLD,
                    DEFAULT_SCALEOUT_STABILIZATION_SECS,
                )
            }),
            swap: raw.swap.map(|r| r.complete(DEFAULT_SWAP_THRESHOLD, 0)),
            cooldown_out_secs: raw.cooldown_out_secs,
            cooldown_in_secs: raw.cooldown_in_secs,
        }
    }
}

/// The policy as written: each rule's default threshold depends on the rule, so a rule is
/// read with an optional threshold and completed in [`From`].
#[derive(Deserialize)]
#[serde(default)]
struct RawPolicyConfig {
    #[serde(rename = "Scalein")]
    scalein: RawPolicyRule,
    #[serde(rename = "Scaleout")]
    scaleout: RawPolicyRule,
    #[serde(rename = "Swap")]
    swap: RawPolicyRule,
    #[serde(rename = "CooldownOut")]
    cooldown_out_secs: u64,
    #[serde(rename = "CooldownIn")]
    cooldown_in_secs: u64,
}

impl Default for RawPolicyConfig {
    fn default() -> Self {
        RawPolicyConfig {
            scalein: RawPolicyRule::default(),
            scaleout: RawPolicyRule::default(),
            swap: RawPolicyRule::default(),
            cooldown_out_secs: DEFAULT_COOLDOWN_OUT_SECS,
            cooldown_in_secs: DEFAULT_COOLDOWN_IN_SECS,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawPolicyRule {
    #[serde(default)]
    enable: bool,
    #[serde(default)]
    threshold: Option<f64>,
    #[serde(default)]
    metrics: Vec<String>,
    #[serde(default)]
    analytics: Vec<String>,
    #[serde(rename = "Period", default)]
    period_secs: u64,
    #[serde(default = "default_step")]
    step: u32,
    #[serde(default)]
    mode: RuleMode,
    #[serde(default)]
    target: Option<f64>,
    #[serde(default = "default_max_growth_percent")]
    max_growth_percent: u32,
    #[serde(rename = "Stabilization", default)]
    stabilization_secs: Option<u64>,
    #[serde(rename = "Window", default)]
    window_secs: u64,
    #[serde(default)]
    smoothing: Smoothing,
    #[serde(default)]
    missing: Option<f64>,
}

impl Default for RawPolicyRule {
    fn default() -> Self {
        RawPolicyRule {
            enable: false,
            threshold: None,
            metrics: Vec::new(),
            analytics: Vec::new(),
            period_secs: DEFAULT_PERIOD_SECS,
            step: DEFAULT_STEP_INSTANCES,
            mode: RuleMode::Step,
            target: None,
            max_growth_percent: DEFAULT_MAX_GROWTH_PERCENT,
            stabilization_secs: None,
            window_secs: 0,
            smoothing: Smoothing::Sliding,
            missing: None,
        }
    }
}

impl RawPolicyRule {
    fn complete(self, default_threshold: f64, default_stabilization_secs: u64) -> PolicyRule {
        PolicyRule {
            enable: self.enable,
            threshold: self.threshold.unwrap_or(default_threshold),
            metrics: self.metrics,
            analytics: self.analytics,
            period_secs: self.period_secs,
            step: self.step,
            mode: self.mode,
            target: self.target,
            max_growth_percent: self.max_growth_percent,
            stabilization_secs: self
                .stabilization_secs
                .unwrap_or(default_stabilization_secs),
            window_secs: self.window_secs,
            smoothing: self.smoothing,
            missing: self.missing,
        }
    }
}

/// The rules as completed from what was written: each rule's default threshold and
/// stabilization depend on the rule.
fn complete_rules(
    scalein: RawPolicyRule,
    scaleout: RawPolicyRule,
    swap: RawPolicyRule,
) -> (PolicyRule, PolicyRule, PolicyRule) {
    (
        scalein.complete(
            DEFAULT_SCALEIN_THRESHOLD,
            DEFAULT_SCALEIN_STABILIZATION_SECS,
        ),
        scaleout.complete(
            DEFAULT_SCALEOUT_THRESHOLD,
            DEFAULT_SCALEOUT_STABILIZATION_SECS,
        ),
        swap.complete(DEFAULT_SWAP_THRESHOLD, 0),
    )
}

impl From<RawPolicyConfig> for PolicyConfig {
    fn from(raw: RawPolicyConfig) -> PolicyConfig {
        let (scalein, scaleout, swap) = complete_rules(raw.scalein, raw.scaleout, raw.swap);
        PolicyConfig {
            scalein,
            scaleout,
            swap,
            cooldown_out_secs: raw.cooldown_out_secs,
            cooldown_in_secs: raw.cooldown_in_secs,
        }
    }
}

const RULE_FIELDS: &[Field] = &[
    field("Enable", Shape::Any),
    field("Threshold", Shape::Any),
    field("Metrics", Shape::Any),
    field("Analytics", Shape::Any),
    field("Period", Shape::Any),
    field("Step", Shape::Any),
    field("Mode", Shape::Any),
    field("Target", Shape::Any),
    field("MaxGrowthPercent", Shape::Any),
    field("Stabilization", Shape::Any),
    field("Window", Shape::Any),
    field("Smoothing", Shape::Any),
    field("Missing", Shape::Any),
];
pub(crate) const POLICY_FIELDS: &[Field] = &[
    field("Scalein", Shape::Object(RULE_FIELDS)),
    field("Scaleout", Shape::Object(RULE_FIELDS)),
    field("Swap", Shape::Object(RULE_FIELDS)),
    field("CooldownOut", Shape::Any),
    field("CooldownIn", Shape::Any),
];

impl PolicyConfig {
    /// The level a target-tracking rule aims for: its `Target`, else the midpoint of the
    /// scale-in and scale-out thresholds (between them, neither direction weighs).
    pub fn target(&self, rule: &PolicyRule) -> f64 {
        rule.target
            .unwrap_or((self.scalein.threshold + self.scaleout.threshold) / 2.0)
    }

    /// The rules with their JSON names, in Gru's order.
    pub fn rules(&self) -> [(&'static str, &PolicyRule); 3] {
        [
            ("Scalein", &self.scalein),
            ("Scaleout", &self.scaleout),
            ("Swap", &self.swap),
        ]
    }
}

/// Parses and validates a policy (`policy.json`).
pub fn parse_policy(file: &str, text: &str) -> Result<PolicyConfig, Vec<Problem>> {
    parse_document(file, text, POLICY_FIELDS, validate)
}

fn validate(policy: &PolicyConfig, findings: &mut Findings) {
    validate_at(policy, &JsonPath::root(), findings);
}

/// Checks a policy written at `root` (the document, or a service's `Policy`).
pub(crate) fn validate_at(policy: &PolicyConfig, root: &JsonPath, findings: &mut Findings) {
    for (name, rule) in policy.rules() {
        validate_rule(name, rule, &root.field(name), findings);
    }
    let (scalein, scaleout) = (&policy.scalein, &policy.scaleout);
    if scaleout.enable && scaleout.tracks_target() && scalein.enable && !scalein.tracks_target() {
        findings.add_with_hint(
            &root.field("Scalein").field("Mode"),
            "is \"step\" while Scaleout tracks a target",
            Some(
                "set \"Mode\": \"target\" on both rules (they share the target), or on neither"
                    .to_owned(),
            ),
        );
    }
    if scaleout.enable && scaleout.tracks_target() && policy.cooldown_out_secs == 0 {
        findings.add_with_hint(
            &root.field("CooldownOut"),
            "is 0 while Scaleout tracks a target",
            Some(
                "a target-tracking decision needs a window for its instances to start and take \
                 load before the next one (e.g. 10 s), or it decides again from the load they \
                 have not taken yet"
                    .to_owned(),
            ),
        );
    }
    let in_range = |t: f64| (0.0..=1.0).contains(&t);
    let target = policy.target(scaleout);
    if scaleout.tracks_target()
        && in_range(scaleout.threshold)
        && in_range(target)
        && target > scaleout.threshold
    {
        findings.add_with_hint(
            &root.field("Scaleout").field("Target"),
            format!(
                "{target} is above Scaleout.Threshold {}",
                scaleout.threshold
            ),
            Some("the scale-out would aim for a level that is itself a breach".to_owned()),
        );
    }
    check_thresholds_apart(policy, root, findings);
}

/// Checks one rule's own fields.
fn validate_rule(name: &str, rule: &PolicyRule, path: &JsonPath, findings: &mut Findings) {
    if !(0.0..=1.0).contains(&rule.threshold) {
        findings.add(
            &path.field("Threshold"),
            format!("{} is outside [0, 1]", rule.threshold),
        );
    }
    if rule.step == 0 {
        findings.add(&path.field("Step"), "must be at least 1, found 0");
    }
    check_no_empty_names(findings, &path.field("Metrics"), &rule.metrics);
    check_no_empty_names(findings, &path.field("Analytics"), &rule.analytics);
    if let Some(target) = rule.target.filter(|t| !(*t > 0.0 && *t <= 1.0)) {
        findings.add(&path.field("Target"), format!("{target} is outside (0, 1]"));
    }
    if let Some(missing) = rule.missing.filter(|m| !(0.0..=1.0).contains(m)) {
        findings.add(
            &path.field("Missing"),
            format!("{missing} is outside [0, 1]"),
        );
    }
    if rule.max_growth_percent == 0 {
        findings.add_with_hint(
            &path.field("MaxGrowthPercent"),
            "0 would never let a scale-out grow the service",
            Some("100 (the default) lets one decision double the count".to_owned()),
        );
    }
    for (field, secs) in [
        ("Stabilization", rule.stabilization_secs),
        ("Window", rule.window_secs),
    ] {
        if secs > MAX_RULE_SPAN_SECS {
            findings.add(
                &path.field(field),
                format!("{secs} s is longer than {MAX_RULE_SPAN_SECS} s"),
            );
        }
    }
    if name == "Swap" && rule.tracks_target() {
        findings.add_with_hint(
            &path.field("Mode"),
            "a swap has no target to track",
            Some("target mode is for Scaleout and Scalein".to_owned()),
        );
    }
}

/// With the scale-in threshold at or above the scale-out one, a load between them weighs
/// for both directions and instances flap.
fn check_thresholds_apart(policy: &PolicyConfig, root: &JsonPath, findings: &mut Findings) {
    let (scalein, scaleout) = (&policy.scalein, &policy.scaleout);
    let in_range = |t: f64| (0.0..=1.0).contains(&t);
    if scalein.enable
        && scaleout.enable
        && in_range(scalein.threshold)
        && in_range(scaleout.threshold)
        && scalein.threshold >= scaleout.threshold
    {
        findings.add_with_hint(
            &root.field("Scalein").field("Threshold"),
            format!(
                "{} is not below Scaleout.Threshold {}",
                scalein.threshold, scaleout.threshold
            ),
            Some("instances would flap between scaling in and out".to_owned()),
        );
    }
}
