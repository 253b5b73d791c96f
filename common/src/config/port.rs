//! Ports as Gru wrote them: strings such as `"50000"` for one port and `"50000-50004"` for the
//! range of host ports the instances of a service may take on a node.
//!
//! Numbers are accepted where Gru wrote strings, since both mean the same to an operator; what
//! is written back is always Gru's string form.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::leaf::{JsonLeaf, ValueError, describe, is_unset, serde_as_text};

/// A non-empty, inclusive range of ports, each in 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    low: u16,
    high: u16,
}

const RANGE_HINT: &str = "write \"low-high\", e.g. \"8080-8089\"";

impl PortRange {
    /// A range from `low` to `high`, both included.
    pub fn new(low: u16, high: u16) -> Result<PortRange, ValueError> {
        if low == 0 {
            return Err(ValueError::new(
                "port 0 is not a port: ports are 1 to 65535",
            ));
        }
        if low > high {
            return Err(ValueError::new(format!("\"{low}-{high}\" is reversed"))
                .with_hint(format!("write the lower port first: \"{high}-{low}\"")));
        }
        Ok(PortRange { low, high })
    }

    pub fn low(&self) -> u16 {
        self.low
    }

    pub fn high(&self) -> u16 {
        self.high
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    /// The ports of the range, lowest first.
    pub fn ports(&self) -> std::ops::RangeInclusive<u16> {
        self.low..=self.high
    }
}

impl FromStr for PortRange {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<PortRange, ValueError> {
        let (low, high) = text.split_once('-').unwrap_or((text, text));
        let not_a_range = || ValueError::new(format!("\"{text}\" is not a port range"));
        let low = port_number(low).map_err(|_| not_a_range().with_hint(RANGE_HINT))?;
        let high = port_number(high).map_err(|_| not_a_range().with_hint(RANGE_HINT))?;
        match (low, high) {
            (Some(low), Some(high)) => PortRange::new(low, high),
            _ => Err(ValueError::new(format!(
                "\"{text}\" is out of range: ports are 1 to 65535"
            ))),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl JsonLeaf for PortRange {
    fn from_json(value: &Value) -> Result<PortRange, ValueError> {
        match value {
            Value::String(text) => text.parse(),
            Value::Number(number) => number.to_string().parse(),
            other => Err(ValueError::new(format!(
                "expected a port range such as \"8080-8089\", found {}",
                describe(other)
            ))),
        }
    }
}

serde_as_text!(PortRange);

/// Reads a port written as digits only (no sign, no spaces): `Err` if it is not a number at
/// all, `Ok(None)` if it is a number but not a port, so that "70000" is reported as out of
/// range rather than as gibberish.
fn port_number(text: &str) -> Result<Option<u16>, ()> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(text.parse::<u16>().ok().filter(|port| *port != 0))
}

/// One port, given as a string or a number.
pub(crate) fn port_from_json(value: &Value) -> Result<u16, ValueError> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        other => {
            return Err(ValueError::new(format!(
                "expected a port, found {}",
                describe(other)
            )));
        }
    };
    match port_number(&text) {
        Ok(Some(port)) => Ok(port),
        _ => {
            Err(ValueError::new(format!("\"{text}\" is not a port"))
                .with_hint("ports are 1 to 65535"))
        }
    }
}

/// The walk's check for an optional single port (`""` means not set).
pub(crate) fn check_optional_port(value: &Value) -> Result<(), ValueError> {
    if is_unset(value) {
        return Ok(());
    }
    port_from_json(value).map(|_| ())
}

/// The walk's check for a key of `Ports`: the container's port, optionally with its protocol.
pub(crate) fn check_container_port(key: &str) -> Result<(), ValueError> {
    let port = key
        .strip_suffix("/tcp")
        .or_else(|| key.strip_suffix("/udp"))
        .unwrap_or(key);
    match port_number(port) {
        Ok(Some(_)) => Ok(()),
        _ => Err(
            ValueError::new(format!("\"{key}\" is not a container port")).with_hint(
                "write the port the container listens on, e.g. \"8080\" or \"8080/udp\"",
            ),
        ),
    }
}

/// `#[serde(with = "port::optional_port")]`: Gru's string form, `""` or absent meaning none.
pub(crate) mod optional_port {
    use serde::Deserialize;
    use serde::de::Error as _;
    use serde_json::Value;

    pub(crate) fn serialize<S: serde::Serializer>(
        port: &Option<u16>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match port {
            Some(port) => serializer.collect_str(port),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<u16>, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if super::is_unset(&value) {
            return Ok(None);
        }
        super::port_from_json(&value)
            .map(Some)
            .map_err(D::Error::custom)
    }
}
