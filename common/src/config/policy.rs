//! The policy, `policy.json`: when to scale in, scale out and swap, and how cautiously.
//!
//! Gru's fields (`Enable`, `Threshold`, `Metrics`, `Analytics`) keep their meaning. gru adds,
//! with defaults that reproduce Gru's eager behaviour: `Period` (how long a breach must last
//! before acting), `Step` (instances per action), and one cooldown per direction.

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
    /// Instances added or removed by one action.
    #[serde(default = "default_step")]
    pub step: u32,
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
        }
    }
}

fn default_step() -> u32 {
    DEFAULT_STEP_INSTANCES
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            scalein: PolicyRule::disabled(DEFAULT_SCALEIN_THRESHOLD),
            scaleout: PolicyRule::disabled(DEFAULT_SCALEOUT_THRESHOLD),
            swap: PolicyRule::disabled(DEFAULT_SWAP_THRESHOLD),
            cooldown_out_secs: DEFAULT_COOLDOWN_OUT_SECS,
            cooldown_in_secs: DEFAULT_COOLDOWN_IN_SECS,
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
        }
    }
}

impl RawPolicyRule {
    fn complete(self, default_threshold: f64) -> PolicyRule {
        PolicyRule {
            enable: self.enable,
            threshold: self.threshold.unwrap_or(default_threshold),
            metrics: self.metrics,
            analytics: self.analytics,
            period_secs: self.period_secs,
            step: self.step,
        }
    }
}

impl From<RawPolicyConfig> for PolicyConfig {
    fn from(raw: RawPolicyConfig) -> PolicyConfig {
        PolicyConfig {
            scalein: raw.scalein.complete(DEFAULT_SCALEIN_THRESHOLD),
            scaleout: raw.scaleout.complete(DEFAULT_SCALEOUT_THRESHOLD),
            swap: raw.swap.complete(DEFAULT_SWAP_THRESHOLD),
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
];
const POLICY_FIELDS: &[Field] = &[
    field("Scalein", Shape::Object(RULE_FIELDS)),
    field("Scaleout", Shape::Object(RULE_FIELDS)),
    field("Swap", Shape::Object(RULE_FIELDS)),
    field("CooldownOut", Shape::Any),
    field("CooldownIn", Shape::Any),
];

impl PolicyConfig {
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
    for (name, rule) in policy.rules() {
        let path = JsonPath::root().field(name);
        if !(0.0..=1.0).contains(&rule.threshold) {
            findings.add(
                &path.field("Threshold"),
                format!("{} is outside [0, 1]", rule.threshold),
            );
        }
        findings.at_least(&format!("{name}.Step"), rule.step.into(), 1);
        check_no_empty_names(findings, &path.field("Metrics"), &rule.metrics);
        check_no_empty_names(findings, &path.field("Analytics"), &rule.analytics);
    }
    // With the scale-in threshold at or above the scale-out one, a load between them weighs
    // for both directions and instances flap.
    let (scalein, scaleout) = (&policy.scalein, &policy.scaleout);
    let in_range = |t: f64| (0.0..=1.0).contains(&t);
    if scalein.enable
        && scaleout.enable
        && in_range(scalein.threshold)
        && in_range(scaleout.threshold)
        && scalein.threshold >= scaleout.threshold
    {
        findings.add_with_hint(
            &JsonPath::fields("Scalein.Threshold"),
            format!(
                "{} is not below Scaleout.Threshold {}",
                scalein.threshold, scaleout.threshold
            ),
            Some("instances would flap between scaling in and out".to_owned()),
        );
    }
}
