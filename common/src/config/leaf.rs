//! Values with a syntax of their own inside a JSON string: port ranges, memory sizes, cpu sets,
//! keywords such as the planner strategy.
//!
//! Each such type parses itself from a JSON value once, in [`JsonLeaf::from_json`]. The
//! schema walk calls it to report a bad value with a hint (and to drop it, so the document's
//! other problems are still found), and the type's `Deserialize` calls the same function, so
//! the typed model can never hold a value the validation would have refused.

use std::fmt;

use serde::Deserialize;
use serde::de::Error as _;
use serde_json::Value;

use super::suggest::did_you_mean;

/// Why a value is not acceptable, and how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    pub message: String,
    pub hint: Option<String>,
}

impl ValueError {
    pub(crate) fn new(message: impl Into<String>) -> ValueError {
        ValueError {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> ValueError {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ValueError {}

/// A value that reads itself from JSON and writes itself back as a string.
pub(crate) trait JsonLeaf: Sized + fmt::Display {
    fn from_json(value: &Value) -> Result<Self, ValueError>;
}

/// The walk's check for a required leaf.
pub(crate) fn check<T: JsonLeaf>(value: &Value) -> Result<(), ValueError> {
    T::from_json(value).map(|_| ())
}

/// Whether an optional leaf is unset: `null`, or `""` as Gru wrote it.
pub(crate) fn is_unset(value: &Value) -> bool {
    value.is_null() || value.as_str().is_some_and(str::is_empty)
}

/// The walk's check for an optional leaf.
pub(crate) fn check_optional<T: JsonLeaf>(value: &Value) -> Result<(), ValueError> {
    if is_unset(value) {
        return Ok(());
    }
    check::<T>(value)
}

pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: JsonLeaf,
{
    let value = Value::deserialize(deserializer)?;
    T::from_json(&value).map_err(D::Error::custom)
}

/// `#[serde(with = "leaf::optional")]`: `""` or absent is `None`, anything else must parse.
pub(crate) mod optional {
    use super::*;

    pub(crate) fn serialize<S, T>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
        T: fmt::Display,
    {
        match value {
            Some(value) => serializer.collect_str(value),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: serde::Deserializer<'de>,
        T: JsonLeaf,
    {
        let value = Value::deserialize(deserializer)?;
        if is_unset(&value) {
            return Ok(None);
        }
        T::from_json(&value).map(Some).map_err(D::Error::custom)
    }
}

/// Implements `Serialize` (as the `Display` string) and `Deserialize` (through
/// [`JsonLeaf::from_json`]) for a leaf type.
macro_rules! serde_as_text {
    ($type:ty) => {
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::config::leaf::deserialize(deserializer)
            }
        }
    };
}
pub(crate) use serde_as_text;

/// Reads one of a fixed set of keywords, ignoring case as Gru did; a near miss gets a hint.
pub(crate) fn keyword<T: Copy>(
    value: &Value,
    what: &str,
    table: &[(&'static str, T)],
) -> Result<T, ValueError> {
    let Value::String(text) = value else {
        return Err(ValueError::new(format!(
            "expected a {what} (a string), found {}",
            describe(value)
        )));
    };
    if let Some((_, found)) = table
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
    {
        return Ok(*found);
    }
    let names: Vec<String> = table
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    Err(ValueError {
        message: format!("unknown {what} \"{text}\"; known: {}", names.join(", ")),
        hint: did_you_mean(text, table.iter().map(|(name, _)| *name)),
    })
}

/// "a number", "an array"...: what a JSON value is, for messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::from(s.as_str())),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}
