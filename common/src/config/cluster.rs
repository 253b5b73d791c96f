//! A cluster's whole configuration: the documents of a configuration directory (or of etcd),
//! each parsed, then checked against each other.
//!
//! The layout decides what a file is: `config.json`, `policy.json`, `services/<file>.json`,
//! `analytics/<file>.json`. A name used across documents (an analytic named by a service or
//! by the policy, a service named in `Attached`, a constraint an analytic reads) must resolve,
//! so that nothing is pushed that an agent would only find broken at run time.
//!
//! A document that fails to parse is already reported; so that one mistake is not reported
//! again by every document that refers to it, its file name stands in for its name when
//! references are resolved.

use std::collections::{BTreeMap, BTreeSet};

use super::agent::{AgentConfig, parse_agent_config};
use super::analytic::{Analytic, parse_analytic};
use super::policy::{PolicyConfig, parse_policy, validate_at as validate_policy_at};
use super::problem::{Findings, JsonPath, Problem, sort_problems};
use super::service::{ServiceDescriptor, parse_service};
use super::suggest::did_you_mean;

pub const CONFIG_FILE: &str = "config.json";
pub const POLICY_FILE: &str = "policy.json";
pub const SERVICES_DIR: &str = "services";
pub const ANALYTICS_DIR: &str = "analytics";

const LAYOUT_HINT: &str = "a configuration directory holds config.json, policy.json, \
                           services/<name>.json and analytics/<name>.json";

/// One file of a configuration, named by its path relative to the configuration's root,
/// with `/` separators, e.g. `services/web.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceDocument {
    pub file: String,
    pub text: String,
}

/// Every document of a cluster, each valid, all consistent with one another.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    pub agent: AgentConfig,
    pub policy: PolicyConfig,
    /// By service name.
    pub services: BTreeMap<String, ServiceDescriptor>,
    /// By analytic name.
    pub analytics: BTreeMap<String, Analytic>,
}

/// Which document of a cluster a canonical text is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocumentKey {
    Config,
    Policy,
    Service(String),
    Analytic(String),
}

impl DocumentKey {
    /// The document's path in the configuration layout, e.g. `services/web.json`.
    pub fn file(&self) -> String {
        match self {
            DocumentKey::Config => CONFIG_FILE.to_owned(),
            DocumentKey::Policy => POLICY_FILE.to_owned(),
            DocumentKey::Service(name) => format!("{SERVICES_DIR}/{name}.json"),
            DocumentKey::Analytic(name) => format!("{ANALYTICS_DIR}/{name}.json"),
        }
    }
}

enum Kind {
    Config,
    Policy,
    Service,
    Analytic,
}

/// What a file is by its place in the layout; `None` for files that are not JSON (a README
/// beside the documents is welcome), an error for JSON files out of place.
fn kind_of(file: &str) -> Result<Option<Kind>, Problem> {
    if !file.ends_with(".json") {
        return Ok(None);
    }
    let in_dir = |dir: &str| {
        file.strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| name.len() > ".json".len() && !name.contains('/'))
    };
    match file {
        CONFIG_FILE => Ok(Some(Kind::Config)),
        POLICY_FILE => Ok(Some(Kind::Policy)),
        _ if in_dir(SERVICES_DIR) => Ok(Some(Kind::Service)),
        _ if in_dir(ANALYTICS_DIR) => Ok(Some(Kind::Analytic)),
        _ => Err(
            Problem::new(file, "", "is not part of the configuration layout")
                .with_hint(Some(LAYOUT_HINT.to_owned())),
        ),
    }
}

/// `services/web.json` → `web`.
fn file_stem(file: &str) -> &str {
    let name = file.rsplit('/').next().unwrap_or(file);
    name.strip_suffix(".json").unwrap_or(name)
}

/// The documents as parsed one by one, before they are checked against each other.
#[derive(Default)]
struct Parsed {
    agent: Option<AgentConfig>,
    policy: Option<PolicyConfig>,
    /// (file, service), in file order.
    services: Vec<(String, ServiceDescriptor)>,
    analytics: Vec<(String, Analytic)>,
    /// File stems of documents that failed to parse, standing in for their names.
    broken_services: BTreeSet<String>,
    broken_analytics: BTreeSet<String>,
    problems: Vec<Problem>,
}

impl Parsed {
    fn read(docs: &[SourceDocument]) -> Parsed {
        let mut parsed = Parsed::default();
        let mut docs: Vec<&SourceDocument> = docs.iter().collect();
        docs.sort_by(|a, b| a.file.cmp(&b.file));
        let mut seen = BTreeSet::new();
        let (mut config_seen, mut policy_seen) = (false, false);
        for doc in docs {
            if !seen.insert(doc.file.as_str()) {
                parsed
                    .problems
                    .push(Problem::new(&doc.file, "", "is given twice"));
                continue;
            }
            let (file, text) = (doc.file.as_str(), doc.text.as_str());
            match kind_of(file) {
                Ok(None) => {}
                Ok(Some(Kind::Config)) => {
                    config_seen = true;
                    parsed.agent = parsed.keep(parse_agent_config(file, text));
                }
                Ok(Some(Kind::Policy)) => {
                    policy_seen = true;
                    parsed.policy = parsed.keep(parse_policy(file, text));
                }
                Ok(Some(Kind::Service)) => match parsed.keep(parse_service(file, text)) {
                    Some(service) => parsed.services.push((file.to_owned(), service)),
                    None => {
                        parsed.broken_services.insert(file_stem(file).to_owned());
                    }
                },
                Ok(Some(Kind::Analytic)) => match parsed.keep(parse_analytic(file, text)) {
                    Some(analytic) => parsed.analytics.push((file.to_owned(), analytic)),
                    None => {
                        parsed.broken_analytics.insert(file_stem(file).to_owned());
                    }
                },
                Err(problem) => parsed.problems.push(problem),
            }
        }
        for (file, seen) in [(CONFIG_FILE, config_seen), (POLICY_FILE, policy_seen)] {
            if !seen {
                parsed.problems.push(
                    Problem::new(file, "", "is missing").with_hint(Some(LAYOUT_HINT.to_owned())),
                );
            }
        }
        parsed
    }

    fn keep<T>(&mut self, result: Result<T, Vec<Problem>>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(problems) => {
                self.problems.extend(problems);
                None
            }
        }
    }
}

impl ClusterConfig {
    /// Parses every document, checks them against each other, and returns the cluster's
    /// configuration, or every problem of every file, sorted by file then path.
    pub fn from_documents(docs: &[SourceDocument]) -> Result<ClusterConfig, Vec<Problem>> {
        let mut parsed = Parsed::read(docs);
        let services = by_name(&parsed.services, "service", &mut parsed.problems);
        let analytics = by_name(&parsed.analytics, "analytic", &mut parsed.problems);

        let known_analytics: BTreeSet<&str> = analytics
            .keys()
            .map(String::as_str)
            .chain(parsed.broken_analytics.iter().map(String::as_str))
            .collect();
        let known_services: BTreeSet<&str> = services
            .keys()
            .map(String::as_str)
            .chain(parsed.broken_services.iter().map(String::as_str))
            .collect();
        let mut problems = Vec::new();
        for (file, service) in &parsed.services {
            check_service_references(
                file,
                service,
                &analytics,
                &known_analytics,
                &known_services,
                &mut problems,
            );
        }
        if let Some(policy) = &parsed.policy {
            check_policy_references(
                POLICY_FILE,
                &JsonPath::root(),
                policy,
                &known_analytics,
                &mut problems,
            );
            // A service's own policy is checked as the policy it makes with the cluster's.
            for (file, service) in &parsed.services {
                let Some(own) = &service.policy else { continue };
                let root = JsonPath::root().field("Policy");
                let merged = own.apply(policy);
                let mut findings = Findings::new(file);
                validate_policy_at(&merged, &root, &mut findings);
                problems.extend(findings.into_problems());
                check_policy_references(file, &root, &merged, &known_analytics, &mut problems);
            }
        }
        parsed.problems.extend(problems);

        match (parsed.agent, parsed.policy) {
            (Some(agent), Some(policy)) if parsed.problems.is_empty() => Ok(ClusterConfig {
                agent,
                policy,
                services: services.into_iter().map(|(k, v)| (k, v.clone())).collect(),
                analytics: analytics.into_iter().map(|(k, v)| (k, v.clone())).collect(),
            }),
            _ => {
                sort_problems(&mut parsed.problems);
                Err(parsed.problems)
            }
        }
    }

    /// Every document in compact canonical JSON (Gru's spelling of every key), as written to
    /// etcd; each parses back, with the same parser, to the same value.
    pub fn canonical_documents(&self) -> Vec<(DocumentKey, String)> {
        let mut documents = vec![
            (DocumentKey::Config, to_json(&self.agent)),
            (DocumentKey::Policy, to_json(&self.policy)),
        ];
        for (name, service) in &self.services {
            documents.push((DocumentKey::Service(name.clone()), to_json(service)));
        }
        for (name, analytic) in &self.analytics {
            documents.push((DocumentKey::Analytic(name.clone()), to_json(analytic)));
        }
        documents
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    // These types have string keys only and no custom serializer that can fail.
    serde_json::to_string(value).expect("configuration documents serialize to JSON")
}

/// Something with a name that must be unique across its files.
trait Named {
    fn name(&self) -> &str;
}

impl Named for ServiceDescriptor {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for Analytic {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Indexes documents by name; a name defined again in a later file is a problem there.
fn by_name<'a, T: Named>(
    documents: &'a [(String, T)],
    what: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, &'a T> {
    let mut first_file: BTreeMap<&str, &str> = BTreeMap::new();
    let mut by_name = BTreeMap::new();
    for (file, document) in documents {
        let name = document.name();
        if let Some(first) = first_file.get(name) {
            problems.push(Problem::new(
                file.as_str(),
                "Name",
                format!("{what} \"{name}\" is also defined in {first}"),
            ));
            continue;
        }
        first_file.insert(name, file);
        by_name.insert(name.to_owned(), document);
    }
    by_name
}

/// Every analytic a policy's rules name must exist.
fn check_policy_references(
    file: &str,
    root: &JsonPath,
    policy: &PolicyConfig,
    known_analytics: &BTreeSet<&str>,
    problems: &mut Vec<Problem>,
) {
    for (rule_name, rule) in policy.rules() {
        let list = root.field(rule_name).field("Analytics");
        check_references(
            file,
            &list,
            &rule.analytics,
            "analytic",
            known_analytics,
            problems,
        );
    }
}

fn check_service_references(
    file: &str,
    service: &ServiceDescriptor,
    analytics: &BTreeMap<String, &Analytic>,
    known_analytics: &BTreeSet<&str>,
    known_services: &BTreeSet<&str>,
    problems: &mut Vec<Problem>,
) {
    let root = JsonPath::root();
    check_references(
        file,
        &root.field("Analytics"),
        &service.analytics,
        "analytic",
        known_analytics,
        problems,
    );
    // A service attached to itself resolves here; the service's own checks report it.
    check_references(
        file,
        &root.field("Attached"),
        &service.attached,
        "service",
        known_services,
        problems,
    );
    for analytic_name in &service.analytics {
        let Some(analytic) = analytics.get(analytic_name) else {
            continue;
        };
        for constraint in &analytic.constraints {
            if !service.constraints.contains_key(constraint) {
                problems.push(
                    Problem::new(
                        file,
                        "Constraints",
                        format!(
                            "lacks \"{constraint}\", which analytic \"{analytic_name}\" reads"
                        ),
                    )
                    .with_hint(Some(format!(
                        "add \"{constraint}\" to Constraints, or leave out analytic \"{analytic_name}\""
                    ))),
                );
            }
        }
    }
}

/// Reports each entry of `names` (at `list[i]`) that is not in `known`; empty entries are
/// reported by the document's own checks.
fn check_references(
    file: &str,
    list: &JsonPath,
    names: &[String],
    what: &str,
    known: &BTreeSet<&str>,
    problems: &mut Vec<Problem>,
) {
    for (index, name) in names.iter().enumerate() {
        if name.is_empty() || known.contains(name.as_str()) {
            continue;
        }
        problems.push(
            Problem::new(
                file,
                list.index(index),
                format!("unknown {what} \"{name}\""),
            )
            .with_hint(did_you_mean(name, known.iter().copied())),
        );
    }
}
