//! A point of the InfluxDB data model, as the agent builds it: a measurement, tags, fields
//! and a time. Kept apart from the influxdb2 crate's `DataPoint` so that the builders
//! (`measurements.rs`) and the buffer are plain data, and the crate is met only where a
//! batch is written.

use crate::mape::Millis;

/// A field's value. Only numbers: VictoriaMetrics (the local stand-in for InfluxDB) keeps
/// numeric fields only, and every value gru reports is a number or a 0/1 flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Integer(i64),
}

/// One point. Tag keys are the fixed names of the schema; field names may be a user
/// metric's name, so they are owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: &'static str,
    pub tags: Vec<(&'static str, String)>,
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch (the write precision).
    pub timestamp_ns: i64,
}

impl Point {
    pub fn new(measurement: &'static str, at: Millis) -> Point {
        Point {
            measurement,
            tags: Vec::new(),
            fields: Vec::new(),
            timestamp_ns: i64::try_from(at.0)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
        }
    }

    /// Adds a tag. An empty value is left out: line protocol has no empty tag values.
    pub fn tag(mut self, key: &'static str, value: impl Into<String>) -> Point {
        let value = value.into();
        if !value.is_empty() {
            self.tags.push((key, value));
        }
        self
    }

    /// Adds a float field; a value that is not finite is left out (line protocol cannot
    /// carry NaN or infinities).
    pub fn float(mut self, name: impl Into<String>, value: f64) -> Point {
        if value.is_finite() {
            self.fields.push((name.into(), FieldValue::Float(value)));
        }
        self
    }

    pub fn integer(mut self, name: impl Into<String>, value: i64) -> Point {
        self.fields.push((name.into(), FieldValue::Integer(value)));
        self
    }

    /// A 0/1 flag, written as an integer field.
    pub fn flag(self, name: impl Into<String>, value: bool) -> Point {
        self.integer(name, i64::from(value))
    }

    pub fn tag_value(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn field(&self, name: &str) -> Option<FieldValue> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| *value)
    }

    /// The crate's data point, or `None` when this point has no field (line protocol
    /// requires one).
    pub fn to_data_point(&self) -> Option<influxdb2::models::DataPoint> {
        let mut builder = influxdb2::models::DataPoint::builder(self.measurement);
        for (key, value) in &self.tags {
            builder = builder.tag(*key, value.as_str());
        }
        for (name, value) in &self.fields {
            builder = match value {
                FieldValue::Float(v) => builder.field(name.as_str(), *v),
                FieldValue::Integer(v) => builder.field(name.as_str(), *v),
            };
        }
        builder.timestamp(self.timestamp_ns).build().ok()
    }
}

#[cfg(test)]
mod tests {
    use influxdb2::models::WriteDataPoint;

    use super::*;

    fn line(point: &Point) -> String {
        let mut out = Vec::new();
        point
            .to_data_point()
            .expect("a point with a field")
            .write_data_point_to(&mut out)
            .expect("writes to a vector");
        String::from_utf8(out).expect("line protocol is UTF-8")
    }

    #[test]
    fn points_become_escaped_line_protocol_with_nanosecond_time() {
        let point = Point::new("gru_service", Millis(1_700_000_000_123))
            .tag("node", "node 1,a=b")
            .tag("service", "web")
            .tag("empty", "")
            .float("cpu_avg", 0.25)
            .integer("instances", 3)
            .float("nan", f64::NAN)
            .flag("active", true);
        assert_eq!(
            line(&point),
            "gru_service,node=node\\ 1\\,a\\=b,service=web active=1i,cpu_avg=0.25,instances=3i 1700000000123000000\n"
        );
        assert_eq!(point.tag_value("empty"), None);
        assert_eq!(point.field("nan"), None);
    }

    #[test]
    fn a_point_without_fields_is_not_written() {
        assert!(Point::new("gru_node", Millis(1)).to_data_point().is_none());
    }
}
