//! The shape of each document, and the walk that puts a parsed JSON value into that shape.
//!
//! Go's encoding/json matched keys case-insensitively, so Gru's users wrote `"threshold"` as
//! often as `"Threshold"`. serde matches exactly, so before deserializing, the walk renames
//! every schema key to its canonical spelling. It also reports what serde would silently
//! ignore or report badly: unknown keys (with the nearest known key as a hint), keys given
//! twice in different cases, objects where a value was expected, and leaves whose own syntax
//! is wrong (port ranges, memory sizes...). Whatever it reports it drops, so deserialization
//! falls back to the default and the rest of the document is still checked.
//!
//! User maps (`Env`, `Ports`, `Constraints`) hold data, not schema: their keys are kept
//! exactly as written.

use serde_json::{Map, Value};

use super::leaf::{ValueError, describe};
use super::problem::{Findings, JsonPath, Segment};
use super::suggest::did_you_mean;

/// Checks a leaf value; an error is reported and the value dropped.
pub(crate) type LeafCheck = fn(&Value) -> Result<(), ValueError>;
/// Checks a key of a user map; an error is reported and the entry dropped.
pub(crate) type KeyCheck = fn(&str) -> Result<(), ValueError>;

/// What a value of a document must look like, as far as the walk is concerned; serde checks
/// the types of the values the walk lets through.
#[derive(Debug)]
pub(crate) enum Shape {
    /// Any value: its type is left to serde.
    Any,
    /// A value with a syntax of its own.
    Leaf(LeafCheck),
    /// A schema object: its keys are matched case-insensitively to these fields.
    Object(&'static [Field]),
    /// A user map: keys kept as written, each value of the given shape.
    Map {
        key: Option<KeyCheck>,
        value: &'static Shape,
    },
}

/// One field of a schema object, under its canonical (serialized) name.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) shape: Shape,
}

pub(crate) const fn field(name: &'static str, shape: Shape) -> Field {
    Field { name, shape }
}

/// Renames schema keys to their canonical spelling and drops, with a problem each, whatever
/// does not fit `shape`. `None` means the value itself was dropped.
pub(crate) fn canonicalize(
    value: Value,
    shape: &Shape,
    path: &JsonPath,
    findings: &mut Findings,
) -> Option<Value> {
    match shape {
        Shape::Any => Some(value),
        Shape::Leaf(check) => match check(&value) {
            Ok(()) => Some(value),
            Err(error) => {
                findings.add_with_hint(path, error.message, error.hint);
                None
            }
        },
        Shape::Object(fields) => {
            let object = expect_object(value, path, findings)?;
            Some(Value::Object(canonical_object(
                object, fields, path, findings,
            )))
        }
        Shape::Map { key, value: inner } => {
            let object = expect_object(value, path, findings)?;
            let mut kept = Map::new();
            for (name, value) in object {
                let entry_path = path.key(&name);
                if let Some(Err(error)) = key.map(|check| check(&name)) {
                    findings.add_with_hint(&entry_path, error.message, error.hint);
                    continue;
                }
                if let Some(value) = canonicalize(value, inner, &entry_path, findings) {
                    kept.insert(name, value);
                }
            }
            Some(Value::Object(kept))
        }
    }
}

fn expect_object(
    value: Value,
    path: &JsonPath,
    findings: &mut Findings,
) -> Option<Map<String, Value>> {
    match value {
        Value::Object(object) => Some(object),
        other => {
            findings.add(
                path,
                format!("expected an object, found {}", describe(&other)),
            );
            None
        }
    }
}

fn canonical_object(
    object: Map<String, Value>,
    fields: &[Field],
    path: &JsonPath,
    findings: &mut Findings,
) -> Map<String, Value> {
    let mut canonical = Map::new();
    // The spelling each canonical key was found under, to report a key given twice.
    let mut spelled: Vec<(&str, String)> = Vec::new();
    for (key, value) in object {
        let Some(field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(&key)) else {
            let hint = did_you_mean(&key, fields.iter().map(|f| f.name)).or_else(|| {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                Some(format!("known keys here: {}", names.join(", ")))
            });
            findings.add_with_hint(&path.field(&key), format!("unknown key \"{key}\""), hint);
            continue;
        };
        let field_path = path.field(field.name);
        if let Some((_, first)) = spelled.iter().find(|(name, _)| *name == field.name) {
            findings.add(
                &field_path,
                format!(
                    "given twice, as \"{first}\" and as \"{key}\" (keys are matched ignoring case)"
                ),
            );
            continue;
        }
        spelled.push((field.name, key.clone()));
        // Go left a field untouched when given null, so null means "use the default".
        if value.is_null() {
            continue;
        }
        if let Some(value) = canonicalize(value, &field.shape, &field_path, findings) {
            canonical.insert(field.name.to_owned(), value);
        }
    }
    canonical
}

/// Turns serde's record of where an error happened into a [`JsonPath`], telling schema fields
/// from user-map keys by following `shape`.
pub(crate) fn path_from_serde(path: &serde_path_to_error::Path, shape: &Shape) -> JsonPath {
    let mut result = JsonPath::root();
    let mut shape = shape;
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => match shape {
                Shape::Object(fields) => {
                    result = result.field(key);
                    shape = fields
                        .iter()
                        .find(|f| f.name == key)
                        .map_or(&Shape::Any, |f| &f.shape);
                }
                Shape::Map { value, .. } => {
                    result = result.key(key);
                    shape = value;
                }
                Shape::Any | Shape::Leaf(_) => {
                    result = result.field(key);
                    shape = &Shape::Any;
                }
            },
            serde_path_to_error::Segment::Seq { index } => {
                result = result.index(*index);
                shape = &Shape::Any;
            }
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {
                break;
            }
        }
    }
    result
}

/// Removes the value at `path` so the default takes its place; false if there is none.
pub(crate) fn remove_at(value: &mut Value, path: &JsonPath) -> bool {
    let Some((last, parents)) = path.segments().split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let next = match segment {
            Segment::Field(key) | Segment::Key(key) => current.get_mut(key.as_str()),
            Segment::Index(index) => current.get_mut(*index),
        };
        match next {
            Some(next) => current = next,
            None => return false,
        }
    }
    match (last, current) {
        (Segment::Field(key) | Segment::Key(key), Value::Object(object)) => {
            object.remove(key).is_some()
        }
        (Segment::Index(index), Value::Array(array)) if *index < array.len() => {
            array.remove(*index);
            true
        }
        _ => false,
    }
}
