//! `Configuration.Volumes` of a service descriptor, in either of its two shapes.
//!
//! gru's shape is an array of bind mounts, `host:container[:options]` (Docker's `Binds`).
//! Gru's was an object whose keys are paths inside the container, each mapped to an empty
//! object (`{"/data": {}}`): Docker's `Volumes`, which gives each path an anonymous volume
//! that lives as long as the container. Both are read, and each is written back to etcd in
//! the shape it was given, so a Gru document keeps its meaning.

use std::collections::BTreeSet;

use serde::de::Error as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::leaf::{ValueError, describe};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volumes {
    /// gru's array: bind mounts, `host:container[:options]`.
    Binds(Vec<String>),
    /// Gru's object: container paths that each get an anonymous volume.
    MountPoints(BTreeSet<String>),
}

impl Default for Volumes {
    fn default() -> Self {
        Volumes::Binds(Vec::new())
    }
}

impl Volumes {
    /// The bind mounts (empty for Gru's shape).
    pub fn binds(&self) -> &[String] {
        match self {
            Volumes::Binds(binds) => binds,
            Volumes::MountPoints(_) => &[],
        }
    }

    /// The container paths given anonymous volumes (empty for gru's shape).
    pub fn mount_points(&self) -> Vec<String> {
        match self {
            Volumes::Binds(_) => Vec::new(),
            Volumes::MountPoints(paths) => paths.iter().cloned().collect(),
        }
    }

    fn from_json(value: &Value) -> Result<Volumes, ValueError> {
        match value {
            Value::Null => Ok(Volumes::default()),
            Value::Array(items) => {
                let mut binds = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::String(bind) if !bind.trim().is_empty() => binds.push(bind.clone()),
                        other => {
                            return Err(ValueError::new(format!(
                                "item {index} is {}, not a bind mount",
                                describe(other)
                            ))
                            .with_hint("write \"host-path:container-path[:ro]\""));
                        }
                    }
                }
                Ok(Volumes::Binds(binds))
            }
            Value::Object(paths) => {
                let mut mount_points = BTreeSet::new();
                for (path, inner) in paths {
                    if !path.starts_with('/') {
                        return Err(ValueError::new(format!(
                            "\"{path}\" is not an absolute path inside the container"
                        ))
                        .with_hint(
                            "Gru's object form maps container paths to {}: {\"/data\": {}}",
                        ));
                    }
                    if !inner.as_object().is_some_and(Map::is_empty) {
                        return Err(ValueError::new(format!(
                            "\"{path}\" maps to {}, not to an empty object",
                            describe(inner)
                        ))
                        .with_hint(
                            "Gru's object form is {\"/data\": {}}; for a bind mount use the array form [\"/host:/data\"]",
                        ));
                    }
                    mount_points.insert(path.clone());
                }
                Ok(Volumes::MountPoints(mount_points))
            }
            other => Err(ValueError::new(format!(
                "expected an array of bind mounts or Gru's object of container paths, found {}",
                describe(other)
            ))
            .with_hint("write [\"/host:/data\"] or {\"/data\": {}}")),
        }
    }
}

/// The schema walk's check of `Volumes`.
pub(crate) fn check_volumes(value: &Value) -> Result<(), ValueError> {
    Volumes::from_json(value).map(|_| ())
}

impl Serialize for Volumes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Volumes::Binds(binds) => binds.serialize(serializer),
            Volumes::MountPoints(paths) => {
                let object: Map<String, Value> = paths
                    .iter()
                    .map(|path| (path.clone(), Value::Object(Map::new())))
                    .collect();
                object.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for Volumes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Volumes::from_json(&value).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_shapes_are_read_and_written_back_as_given() {
        let cases = [
            (
                json!(["/srv:/data:ro"]),
                Volumes::Binds(vec!["/srv:/data:ro".into()]),
            ),
            (
                json!({"/data": {}, "/cache": {}}),
                Volumes::MountPoints(["/cache".to_owned(), "/data".to_owned()].into()),
            ),
            (json!(null), Volumes::default()),
            (json!([]), Volumes::Binds(vec![])),
        ];
        for (input, expected) in cases {
            let read: Volumes = serde_json::from_value(input.clone()).expect("valid");
            assert_eq!(read, expected, "{input}");
            if !input.is_null() {
                assert_eq!(serde_json::to_value(&read).expect("serializes"), input);
            }
        }
    }

    #[test]
    fn malformed_volumes_are_refused_with_the_shape_to_write() {
        let cases = [
            (json!({"/data": {"rw": true}}), "not to an empty object"),
            (json!({"data": {}}), "not an absolute path"),
            (json!([3]), "not a bind mount"),
            (json!([""]), "not a bind mount"),
            (json!("/data"), "expected an array of bind mounts"),
        ];
        for (input, expected) in cases {
            let err = check_volumes(&input).expect_err("refused");
            assert!(err.message.contains(expected), "{input}: {}", err.message);
            assert!(err.hint.is_some(), "{input}: no hint");
        }
    }

    #[test]
    fn binds_and_mount_points_are_apart() {
        let gru = Volumes::MountPoints(["/data".to_owned()].into());
        assert!(gru.binds().is_empty());
        assert_eq!(gru.mount_points(), ["/data"]);
        let ours = Volumes::Binds(vec!["/a:/b".into()]);
        assert_eq!(ours.binds(), ["/a:/b"]);
        assert!(ours.mount_points().is_empty());
    }
}
