//! `configs/grafana-dashboard.json` matches what the sink writes: valid JSON, every panel
//! queries exactly one measurement the sink writes, every field it names is one that
//! measurement has, and every measurement has a panel.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

use gru_agent::telemetry::{MEASUREMENTS, documented_fields};

/// Every `"..."` that follows `prefix` in `text`.
fn quoted_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &text[i + prefix.len()..];
            rest.split('"').next()
        })
        .collect()
}

#[test]
fn every_dashboard_query_names_a_measurement_and_fields_the_sink_writes() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut covered = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("an id")),
            "{title}: id repeated"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let query = target["query"].as_str().expect("a Flux query");
            let measurements = quoted_after(query, r#"r._measurement == ""#);
            assert_eq!(
                measurements.len(),
                1,
                "{title}: one measurement per query:\n{query}"
            );
            let measurement = measurements[0];
            assert!(
                MEASUREMENTS.contains(&measurement),
                "{title}: {measurement} is not written by the sink ({MEASUREMENTS:?})"
            );
            covered.insert(measurement);
            let mut fields = quoted_after(query, r#"r._field == ""#);
            fields.extend(quoted_after(query, r#"r._field != ""#));
            if let Some(documented) = documented_fields(measurement) {
                assert!(
                    !fields.is_empty(),
                    "{title}: name the fields of {measurement}"
                );
                for field in fields {
                    assert!(
                        documented.contains(&field),
                        "{title}: {measurement} has no field {field} ({documented:?})"
                    );
                }
            }
            for variable in quoted_after(query, "${") {
                let name = variable.split('}').next().unwrap_or_default();
                let declared = dashboard["templating"]["list"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|v| v["name"] == name);
                assert!(declared, "{title}: variable {name} is not declared");
            }
            assert_eq!(target["datasource"]["uid"], "gru-influxdb", "{title}");
        }
    }
    let missing: Vec<&&str> = MEASUREMENTS
        .iter()
        .filter(|m| !covered.contains(**m))
        .collect();
    assert!(missing.is_empty(), "no panel for {missing:?}");
}
