//! The compact forms of the lists a gossip message carries (`super::wire`), and their
//! lengths, which the simulator counts without building messages.
//!
//! * **Names** (the nodes wanted) are written in name order, each as the number of bytes
//!   it shares with the previous one and the rest (front coding): `n004217` after
//!   `n004209` is `5, "17"`, 4 bytes instead of 8.
//! * **Versions** (`wire::VersionList`): the same, each name followed by its version's
//!   distance below the list's highest.
//! * **Reports**: a table of the service, metric and analytic names the reports use, the
//!   highest version, then per report (in node name order) its front-coded node name, its
//!   distance below that version and its services, whose names are indices into the
//!   table. A report of two services with one analytic each takes about 25 bytes instead
//!   of 45.
//!
//! Decoding refuses a prefix longer than the previous name, one that cuts a character, an
//! index outside the table and a distance below version 0, and a name a report lists twice.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::view::{NodeReport, ServiceReport};
use super::wire::{string_len, varint_len};

/// Bytes `name` shares with `previous` from the start, cut back to a character boundary.
fn shared_prefix(previous: &str, name: &str) -> usize {
    let mut shared = previous
        .bytes()
        .zip(name.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    while !name.is_char_boundary(shared) {
        shared -= 1;
    }
    shared
}

/// `previous[..shared] + rest`, if `shared` is a prefix of `previous`.
fn unfold(previous: &str, shared: u32, rest: &str) -> Option<String> {
    let shared = usize::try_from(shared).ok()?;
    let head = previous.get(..shared)?;
    Some(format!("{head}{rest}"))
}

/// Bytes of one front-coded name after `previous`.
fn coded_len(previous: &str, name: &str) -> usize {
    let shared = shared_prefix(previous, name);
    varint_len(shared as u64) + string_len(&name[shared..])
}

/// Bytes of `names` front-coded in name order (as [`names::serialize`] writes them).
pub fn names_len<'a>(names: impl IntoIterator<Item = &'a str>) -> usize {
    let mut sorted: Vec<&str> = names.into_iter().collect();
    sorted.sort_unstable();
    let mut previous = "";
    let mut bytes = varint_len(sorted.len() as u64);
    for name in sorted {
        bytes += coded_len(previous, name);
        previous = name;
    }
    bytes
}

/// Bytes of (node, version) pairs as a `wire::VersionList` writes them: the highest
/// version, then in name order each front-coded name and its distance below it.
pub fn versions_len<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> usize {
    let mut sorted: Vec<(&str, u64)> = entries.into_iter().collect();
    sorted.sort_unstable();
    let base = sorted.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let mut previous = "";
    let mut bytes = varint_len(base) + varint_len(sorted.len() as u64);
    for (name, version) in sorted {
        bytes += coded_len(previous, name) + varint_len(base - version);
        previous = name;
    }
    bytes
}

/// A list of node names, front-coded in name order (`#[serde(with = "codec::names")]`).
/// A decoded list is in name order.
pub mod names {
    use super::*;

    pub fn serialize<S: Serializer>(names: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        let mut sorted: Vec<&str> = names.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        let mut previous = "";
        let coded: Vec<(u32, &str)> = sorted
            .into_iter()
            .map(|name| {
                let shared = shared_prefix(previous, name);
                previous = name;
                (shared as u32, &name[shared..])
            })
            .collect();
        coded.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        let coded = Vec::<(u32, String)>::deserialize(deserializer)?;
        let mut names: Vec<String> = Vec::with_capacity(coded.len());
        for (shared, rest) in coded {
            let previous = names.last().map_or("", String::as_str);
            let name = unfold(previous, shared, &rest)
                .ok_or_else(|| D::Error::custom("a name's prefix is not the previous name's"))?;
            names.push(name);
        }
        Ok(names)
    }
}

/// (node, version distance) entries front-coded in the order given (a `VersionList` keeps
/// its entries in name order).
pub mod distances {
    use super::*;

    pub fn serialize<S: Serializer>(
        entries: &[(String, u64)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut previous = "";
        let coded: Vec<(u32, &str, u64)> = entries
            .iter()
            .map(|(name, below)| {
                let shared = shared_prefix(previous, name);
                previous = name;
                (shared as u32, &name[shared..], *below)
            })
            .collect();
        coded.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, u64)>, D::Error> {
        let coded = Vec::<(u32, String, u64)>::deserialize(deserializer)?;
        let mut entries: Vec<(String, u64)> = Vec::with_capacity(coded.len());
        for (shared, rest, below) in coded {
            let previous = entries.last().map_or("", |(name, _)| name.as_str());
            let name = unfold(previous, shared, &rest)
                .ok_or_else(|| D::Error::custom("a name's prefix is not the previous name's"))?;
            entries.push((name, below));
        }
        Ok(entries)
    }
}

/// One service of a report on the wire: names as indices into the message's table.
#[derive(Serialize, Deserialize)]
struct CodedService {
    name: u32,
    instances: u32,
    metrics: Vec<(u32, f64)>,
    analytics: Vec<(u32, f64)>,
}

/// One report on the wire.
#[derive(Serialize, Deserialize)]
struct CodedReport<'a> {
    shared: u32,
    rest: std::borrow::Cow<'a, str>,
    below: u64,
    services: Vec<CodedService>,
}

/// A list of reports on the wire.
#[derive(Serialize, Deserialize)]
struct CodedReports<'a> {
    #[serde(borrow)]
    table: Vec<std::borrow::Cow<'a, str>>,
    base: u64,
    #[serde(borrow)]
    reports: Vec<CodedReport<'a>>,
}

/// The service, metric and analytic names `reports` use, in order.
fn table_of<'a>(reports: impl IntoIterator<Item = &'a NodeReport>) -> Vec<&'a str> {
    let mut table = BTreeSet::new();
    for report in reports {
        for (service, values) in &report.services {
            table.insert(service.as_str());
            table.extend(values.metrics.keys().map(String::as_str));
            table.extend(values.analytics.keys().map(String::as_str));
        }
    }
    table.into_iter().collect()
}

/// Bytes of a report's services on the wire, its names indices into `table` (which holds
/// them: [`table_of`] the message's reports).
pub fn services_len(report: &NodeReport, table: &[&str]) -> usize {
    let index = |name: &str| varint_len(table.binary_search(&name).unwrap_or(0) as u64);
    let values = |map: &BTreeMap<String, f64>| {
        varint_len(map.len() as u64) + map.keys().map(|name| index(name) + 8).sum::<usize>()
    };
    varint_len(report.services.len() as u64)
        + report
            .services
            .iter()
            .map(|(name, service)| {
                index(name)
                    + varint_len(u64::from(service.instances))
                    + values(&service.metrics)
                    + values(&service.analytics)
            })
            .sum::<usize>()
}

/// Bytes of a list of reports on the wire, given its table (the distinct names its reports
/// use) and per report its node, version and [`services_len`].
pub fn reports_len<'a>(
    table: impl IntoIterator<Item = &'a str>,
    reports: impl IntoIterator<Item = (&'a str, u64, usize)>,
) -> usize {
    let table: Vec<&str> = table.into_iter().collect();
    let mut sorted: Vec<(&str, u64, usize)> = reports.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let base = sorted.iter().map(|r| r.1).max().unwrap_or(0);
    let mut previous = "";
    let mut bytes = varint_len(table.len() as u64)
        + table.iter().map(|name| string_len(name)).sum::<usize>()
        + varint_len(base)
        + varint_len(sorted.len() as u64);
    for (node, version, services) in sorted {
        bytes += coded_len(previous, node) + varint_len(base - version) + services;
        previous = node;
    }
    bytes
}

/// Bytes of `reports` on the wire.
pub fn reports_len_of(reports: &[NodeReport]) -> usize {
    let table = table_of(reports);
    reports_len(
        table.iter().copied(),
        reports
            .iter()
            .map(|r| (r.node.as_str(), r.version, services_len(r, &table))),
    )
}

/// A list of reports in the compact form (`#[serde(with = "codec::reports")]`). A decoded
/// list is in node name order.
pub mod reports {
    use super::*;

    pub fn serialize<S: Serializer>(
        reports: &[NodeReport],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let table = table_of(reports);
        let index = |name: &str| table.binary_search(&name).unwrap_or(0) as u32;
        let mut sorted: Vec<&NodeReport> = reports.iter().collect();
        sorted.sort_unstable_by(|a, b| a.node.cmp(&b.node));
        let base = sorted.iter().map(|r| r.version).max().unwrap_or(0);
        let mut previous = "";
        let coded = CodedReports {
            table: table.iter().map(|name| (*name).into()).collect(),
            base,
            reports: sorted
                .into_iter()
                .map(|report| {
                    let shared = shared_prefix(previous, &report.node);
                    previous = &report.node;
                    CodedReport {
                        shared: shared as u32,
                        rest: report.node[shared..].into(),
                        below: base - report.version,
                        services: report
                            .services
                            .iter()
                            .map(|(name, service)| CodedService {
                                name: index(name),
                                instances: service.instances,
                                metrics: service
                                    .metrics
                                    .iter()
                                    .map(|(n, v)| (index(n), *v))
                                    .collect(),
                                analytics: service
                                    .analytics
                                    .iter()
                                    .map(|(n, v)| (index(n), *v))
                                    .collect(),
                            })
                            .collect(),
                    }
                })
                .collect(),
        };
        coded.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<NodeReport>, D::Error> {
        let coded = CodedReports::deserialize(deserializer)?;
        let name = |index: u32| {
            coded
                .table
                .get(index as usize)
                .map(|name| name.to_string())
                .ok_or_else(|| D::Error::custom("a name index outside the table"))
        };
        let values = |list: &[(u32, f64)]| -> Result<BTreeMap<String, f64>, D::Error> {
            let mut map = BTreeMap::new();
            for (index, value) in list {
                if map.insert(name(*index)?, *value).is_some() {
                    return Err(D::Error::custom("a value named twice"));
                }
            }
            Ok(map)
        };
        let mut reports: Vec<NodeReport> = Vec::with_capacity(coded.reports.len());
        for report in &coded.reports {
            let previous = reports.last().map_or("", |r| r.node.as_str());
            let node = unfold(previous, report.shared, &report.rest)
                .ok_or_else(|| D::Error::custom("a name's prefix is not the previous name's"))?;
            let version = coded
                .base
                .checked_sub(report.below)
                .ok_or_else(|| D::Error::custom("a version below 0"))?;
            let mut services = BTreeMap::new();
            for service in &report.services {
                let values = ServiceReport {
                    instances: service.instances,
                    metrics: values(&service.metrics)?,
                    analytics: values(&service.analytics)?,
                };
                if services.insert(name(service.name)?, values).is_some() {
                    return Err(D::Error::custom("a service named twice"));
                }
            }
            reports.push(NodeReport {
                node,
                version,
                services,
            });
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Lists {
        #[serde(with = "names")]
        names: Vec<String>,
        #[serde(with = "reports")]
        reports: Vec<NodeReport>,
    }

    /// A service's name, instances and analytics.
    type Service<'a> = (&'a str, u32, &'a [(&'a str, f64)]);

    fn report(node: &str, version: u64, services: &[Service<'_>]) -> NodeReport {
        NodeReport {
            node: node.into(),
            version,
            services: services
                .iter()
                .map(|(name, instances, analytics)| {
                    let service = ServiceReport {
                        instances: *instances,
                        metrics: BTreeMap::from([("cpu_avg".to_owned(), 0.5)]),
                        analytics: analytics
                            .iter()
                            .map(|(n, v)| ((*n).to_owned(), *v))
                            .collect(),
                    };
                    ((*name).to_owned(), service)
                })
                .collect(),
        }
    }

    #[test]
    fn lists_come_back_in_name_order_and_their_lengths_are_the_encoded_ones() {
        let reports = vec![
            report(
                "node-b",
                1_800_000_000_500,
                &[("web", 2, &[("load", 0.25)])],
            ),
            report("node-a", 1_800_000_000_000, &[]),
            report(
                "nœud-é",
                1_800_000_001_000,
                &[
                    ("db", 1, &[("load", 0.75), ("queue", 3.0)]),
                    ("web", 0, &[]),
                ],
            ),
        ];
        let names: Vec<String> = ["n004217", "n004209", "", "n1"].map(String::from).into();
        let lists = Lists {
            names: names.clone(),
            reports: reports.clone(),
        };
        let bytes = postcard::to_allocvec(&lists).expect("encodes");
        assert_eq!(
            bytes.len(),
            names_len(names.iter().map(String::as_str)) + reports_len_of(&reports)
        );
        let back: Lists = postcard::from_bytes(&bytes).expect("decodes");
        let mut sorted_names = names;
        sorted_names.sort();
        let mut sorted_reports = reports.clone();
        sorted_reports.sort_by(|a, b| a.node.cmp(&b.node));
        assert_eq!(
            back,
            Lists {
                names: sorted_names,
                reports: sorted_reports
            }
        );
        // A report of the simulator's shape: about 25 bytes in a list, 45 alone.
        let many: Vec<NodeReport> = (0..1000)
            .map(|i| {
                report(
                    &format!("n{:06}", i * 10),
                    1_800_000_000_000 + i,
                    &[("db", 1, &[("load", 0.3)]), ("web", 2, &[("load", 0.6)])],
                )
            })
            .collect();
        let alone: usize = many.iter().map(super::super::wire::report_len).sum();
        let listed = reports_len_of(&many);
        assert!(
            listed * 10 < alone * 7,
            "{listed} bytes listed, {alone} alone"
        );
    }

    #[test]
    fn what_cannot_be_decoded_is_refused() {
        let encode = |table: &[&str], reports: Vec<CodedReport<'static>>| {
            postcard::to_allocvec(&(
                Vec::<(u32, &str)>::new(),
                CodedReports {
                    table: table.iter().map(|n| (*n).to_owned().into()).collect(),
                    base: 10,
                    reports,
                },
            ))
            .expect("encodes")
        };
        let coded = |shared: u32, rest: &'static str, below: u64, services: Vec<CodedService>| {
            CodedReport {
                shared,
                rest: rest.into(),
                below,
                services,
            }
        };
        let service = |name: u32, analytics: Vec<(u32, f64)>| CodedService {
            name,
            instances: 1,
            metrics: Vec::new(),
            analytics,
        };
        let fine = encode(
            &["load", "web"],
            vec![coded(0, "n1", 0, vec![service(1, vec![(0, 0.5)])])],
        );
        assert!(postcard::from_bytes::<Lists>(&fine).is_ok());
        let cases = [
            encode(&["web"], vec![coded(1, "n1", 0, Vec::new())]),
            encode(&["web"], vec![coded(0, "n1", 11, Vec::new())]),
            encode(
                &["web"],
                vec![coded(0, "n1", 0, vec![service(1, Vec::new())])],
            ),
            encode(
                &["web"],
                vec![coded(
                    0,
                    "n1",
                    0,
                    vec![service(0, Vec::new()), service(0, Vec::new())],
                )],
            ),
            encode(
                &["load", "web"],
                vec![coded(
                    0,
                    "n1",
                    0,
                    vec![service(1, vec![(0, 1.0), (0, 2.0)])],
                )],
            ),
            encode(
                &["web"],
                vec![coded(0, "é", 0, Vec::new()), coded(1, "x", 0, Vec::new())],
            ),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            assert!(postcard::from_bytes::<Lists>(bytes).is_err(), "case {i}");
        }
    }

    #[test]
    fn front_coding_shares_prefixes_on_character_boundaries() {
        assert_eq!(shared_prefix("n004209", "n004217"), 5);
        assert_eq!(shared_prefix("", "web"), 0);
        assert_eq!(
            shared_prefix("node-é1", "node-è2"),
            5,
            "é and è share a first byte"
        );
        assert_eq!(unfold("n004209", 5, "17").as_deref(), Some("n004217"));
        assert_eq!(unfold("n0", 5, "17"), None, "longer than the previous name");
        assert_eq!(unfold("é", 1, "x"), None, "cuts a character");
    }
}
