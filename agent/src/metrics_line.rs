//! Gru's user-metric log lines: a managed service reports a figure of its own by printing
//! `gru:<service>:<metric>:<value>:<unit>` (e.g. `gru:frontend:execution_time:23.5:ms`) to
//! its stdout or stderr, and the agent reads it from the container's log.
//!
//! Pure: [`parse`] turns one line into a [`UserMetric`] or says, with a [`LineError`], why
//! not; [`LineStats`] counts the outcomes for whoever reads the lines.
//!
//! The marker may follow other text (a timestamp, a logger's prefix): it counts where it
//! starts the line or follows a character that cannot be part of a name, so `logru:` is
//! not one. When a line holds several markers, the first that gives a valid metric wins;
//! when none does, the first marker's error is the answer. Trailing whitespace (and the
//! `\r` of a CRLF line) is ignored; everything else is strict: exactly four fields, names of
//! `[A-Za-z0-9_.-]{1,64}`, a finite number, a unit of at most 16 bytes without whitespace.

use std::fmt;

/// What starts a metric line.
pub const MARKER: &str = "gru:";
/// Longest line considered, in bytes (the log follower cuts longer lines to this).
pub const MAX_LINE_BYTES: usize = 4096;
/// Longest service or metric name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest unit, in bytes.
pub const MAX_UNIT_BYTES: usize = 16;

/// One figure a service reported about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct UserMetric {
    pub service: String,
    pub metric: String,
    /// Always finite.
    pub value: f64,
    pub unit: String,
}

/// A field of the line, for errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Service,
    Metric,
    Value,
    Unit,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Service => "service",
            Field::Metric => "metric",
            Field::Value => "value",
            Field::Unit => "unit",
        })
    }
}

/// Why a line is not a metric. [`LineError::NoMarker`] is ordinary log output; every other
/// variant is a line that meant to be a metric and is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("no `gru:` marker")]
    NoMarker,
    #[error("line of {len} bytes is longer than {MAX_LINE_BYTES}")]
    TooLong { len: usize },
    /// The line ends before this field's `:` separator.
    #[error("missing {0}")]
    Missing(Field),
    /// The separator is there, the field is empty.
    #[error("empty {0}")]
    Empty(Field),
    #[error("{0} name is not 1 to {MAX_NAME_BYTES} of [A-Za-z0-9_.-]")]
    BadName(Field),
    #[error("value is not a finite number")]
    BadValue,
    #[error("unit is longer than {MAX_UNIT_BYTES} bytes")]
    UnitTooLong,
    #[error("unit holds whitespace or a control character")]
    BadUnit,
    #[error("a fifth field follows the unit")]
    ExtraField,
}

impl LineError {
    /// Whether the line was meant as a metric (it has the marker) and is malformed.
    pub fn is_rejection(self) -> bool {
        self != LineError::NoMarker
    }
}

/// Outcomes of [`parse`] over a stream of lines. Lines without the marker are ordinary
/// output and counted in neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    pub parsed: u64,
    pub rejected: u64,
}

impl LineStats {
    pub fn record(&mut self, outcome: &Result<UserMetric, LineError>) {
        match outcome {
            Ok(_) => self.parsed += 1,
            Err(error) if error.is_rejection() => self.rejected += 1,
            Err(_) => {}
        }
    }
}

/// Parses one log line (without its newline; trailing whitespace is ignored).
pub fn parse(line: &str) -> Result<UserMetric, LineError> {
    let line = line.trim_end();
    let mut first_error = None;
    for start in marker_starts(line) {
        if line.len() > MAX_LINE_BYTES {
            // Only a line that meant to be a metric is rejected for its length.
            return Err(LineError::TooLong { len: line.len() });
        }
        match parse_fields(&line[start + MARKER.len()..]) {
            Ok(metric) => return Ok(metric),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(LineError::NoMarker))
}

/// Byte offsets of the markers that start the line or follow a non-name character.
fn marker_starts(line: &str) -> impl Iterator<Item = usize> + '_ {
    line.match_indices(MARKER)
        .map(|(start, _)| start)
        .filter(|&start| start == 0 || !is_name_byte(line.as_bytes()[start - 1]))
}

/// `<service>:<metric>:<value>:<unit>`, the part after the marker.
fn parse_fields(rest: &str) -> Result<UserMetric, LineError> {
    let mut fields = rest.splitn(4, ':');
    // The service is there even when empty; each later field needs its separator.
    let service = fields.next().unwrap_or_default();
    let metric = fields.next().ok_or(LineError::Missing(Field::Metric))?;
    let value = fields.next().ok_or(LineError::Missing(Field::Value))?;
    let unit = fields.next().ok_or(LineError::Missing(Field::Unit))?;

    let service = name(service, Field::Service)?;
    let metric = name(metric, Field::Metric)?;
    if value.is_empty() {
        return Err(LineError::Empty(Field::Value));
    }
    let value = value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or(LineError::BadValue)?;
    if unit.is_empty() {
        return Err(LineError::Empty(Field::Unit));
    }
    if unit.contains(':') {
        return Err(LineError::ExtraField);
    }
    if unit.len() > MAX_UNIT_BYTES {
        return Err(LineError::UnitTooLong);
    }
    if unit.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(LineError::BadUnit);
    }
    Ok(UserMetric {
        service,
        metric,
        value,
        unit: unit.to_owned(),
    })
}

fn name(text: &str, field: Field) -> Result<String, LineError> {
    if text.is_empty() {
        return Err(LineError::Empty(field));
    }
    if text.len() > MAX_NAME_BYTES || !text.bytes().all(is_name_byte) {
        return Err(LineError::BadName(field));
    }
    Ok(text.to_owned())
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-')
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    use super::*;

    fn metric(service: &str, metric: &str, value: f64, unit: &str) -> UserMetric {
        UserMetric {
            service: service.to_owned(),
            metric: metric.to_owned(),
            value,
            unit: unit.to_owned(),
        }
    }

    #[test]
    fn well_formed_lines_parse_with_or_without_a_prefix() {
        let cases = [
            (
                "gru:frontend:execution_time:23.5:ms",
                metric("frontend", "execution_time", 23.5, "ms"),
            ),
            (
                "2024-05-01T10:00:00.123456789Z gru:web:execution_time:0.0:ms",
                metric("web", "execution_time", 0.0, "ms"),
            ),
            (
                "[INFO] gru:a-b.c_d:queue.len:-3:req\r",
                metric("a-b.c_d", "queue.len", -3.0, "req"),
            ),
            ("gru:w:m:1e3:us \t\r\n", metric("w", "m", 1000.0, "us")),
            ("gru:w:m:+.5:%", metric("w", "m", 0.5, "%")),
            ("gru:w:m:7:req/s", metric("w", "m", 7.0, "req/s")),
            ("gru:w:m:7:µs", metric("w", "m", 7.0, "µs")),
            // A prefix that itself holds a marker: the first marker that parses wins.
            (
                "[gru:agent] gru:web:cpu:12:pct",
                metric("web", "cpu", 12.0, "pct"),
            ),
            (
                &format!("gru:{}:m:1:u", "s".repeat(MAX_NAME_BYTES)),
                metric(&"s".repeat(MAX_NAME_BYTES), "m", 1.0, "u"),
            ),
            (
                &format!("gru:s:m:1:{}", "u".repeat(MAX_UNIT_BYTES)),
                metric("s", "m", 1.0, &"u".repeat(MAX_UNIT_BYTES)),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn malformed_lines_are_rejected_with_their_reason() {
        use Field::*;
        use LineError::*;
        let long_name = "n".repeat(MAX_NAME_BYTES + 1);
        let cases: Vec<(String, LineError)> = vec![
            ("".into(), NoMarker),
            ("hello world".into(), NoMarker),
            ("GRU:w:m:1:ms".into(), NoMarker),
            ("gru ".into(), NoMarker),
            ("logru:w:m:1:ms".into(), NoMarker),
            ("x.gru:w:m:1:ms".into(), NoMarker),
            ("gru:".into(), Missing(Metric)),
            ("gru:web".into(), Missing(Metric)),
            ("gru:web:".into(), Missing(Value)),
            ("gru:web:m".into(), Missing(Value)),
            ("gru:web:m:1".into(), Missing(Unit)),
            ("gru:web:m:1:".into(), Empty(Unit)),
            ("gru:web:m:1:   ".into(), Empty(Unit)),
            ("gru::m:1:ms".into(), Empty(Service)),
            ("gru:web::1:ms".into(), Empty(Metric)),
            ("gru:web:m::ms".into(), Empty(Value)),
            ("gru:we b:m:1:ms".into(), BadName(Service)),
            ("gru:web:m/s:1:ms".into(), BadName(Metric)),
            ("gru:wéb:m:1:ms".into(), BadName(Service)),
            ("gru: web:m:1:ms".into(), BadName(Service)),
            (format!("gru:{long_name}:m:1:ms"), BadName(Service)),
            (format!("gru:w:{long_name}:1:ms"), BadName(Metric)),
            ("gru:w:m:abc:ms".into(), BadValue),
            ("gru:w:m:NaN:ms".into(), BadValue),
            ("gru:w:m:nan:ms".into(), BadValue),
            ("gru:w:m:inf:ms".into(), BadValue),
            ("gru:w:m:-infinity:ms".into(), BadValue),
            ("gru:w:m:1e400:ms".into(), BadValue),
            ("gru:w:m:1,5:ms".into(), BadValue),
            ("gru:w:m: 1:ms".into(), BadValue),
            ("gru:w:m:1 :ms".into(), BadValue),
            ("gru:w:m:0x10:ms".into(), BadValue),
            ("gru:w:m:1:ms:extra".into(), ExtraField),
            ("gru:w:m:1::".into(), ExtraField),
            ("gru:w:m:1:m s".into(), BadUnit),
            ("gru:w:m:1:ms\u{0}".into(), BadUnit),
            ("gru:w:m:1:ms and more".into(), BadUnit),
            (
                format!("gru:w:m:1:{}", "u".repeat(MAX_UNIT_BYTES + 1)),
                UnitTooLong,
            ),
            (
                format!("{}gru:w:m:1:ms", "x ".repeat(MAX_LINE_BYTES / 2)),
                TooLong {
                    len: MAX_LINE_BYTES + "gru:w:m:1:ms".len(),
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(&line), Err(expected), "{line:?}");
        }
    }

    #[test]
    fn trailing_whitespace_does_not_count_toward_the_length() {
        let padded = format!("gru:w:m:1:ms{}\r", " ".repeat(MAX_LINE_BYTES));
        assert_eq!(parse(&padded), Ok(metric("w", "m", 1.0, "ms")));
    }

    #[test]
    fn a_long_line_without_the_marker_is_ordinary_output() {
        assert_eq!(
            parse(&"x".repeat(2 * MAX_LINE_BYTES)),
            Err(LineError::NoMarker)
        );
    }

    #[test]
    fn of_several_markers_the_first_error_is_reported_when_none_parses() {
        assert_eq!(parse("gru:web:m:x:ms gru:oops"), Err(LineError::BadValue));
    }

    #[test]
    fn errors_read_as_short_reasons() {
        let cases = [
            (LineError::Missing(Field::Unit), "missing unit"),
            (
                LineError::BadName(Field::Metric),
                "metric name is not 1 to 64 of [A-Za-z0-9_.-]",
            ),
            (
                LineError::TooLong { len: 5000 },
                "line of 5000 bytes is longer than 4096",
            ),
            (LineError::UnitTooLong, "unit is longer than 16 bytes"),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn stats_count_metrics_and_rejections_but_not_ordinary_output() {
        let mut stats = LineStats::default();
        for line in [
            "gru:w:m:1:ms",
            "listening on 0.0.0.0:8080",
            "gru:w:m:x:ms",
            "gru:w:m:2:ms",
            "",
        ] {
            stats.record(&parse(line));
        }
        assert_eq!(
            stats,
            LineStats {
                parsed: 2,
                rejected: 1
            }
        );
    }

    /// Fragments that reach every branch, mixed with arbitrary bytes.
    const FRAGMENTS: &[&[u8]] = &[
        b"gru:",
        b":",
        b"::",
        b"1",
        b"-2.5",
        b"e9",
        b"inf",
        b"NaN",
        b".",
        b"ms",
        b"web",
        b" ",
        b"\t",
        b"\r",
        b"\n",
        b"\0",
        b"\xff",
        b"\xc3\xa9",
        b"\xe2\x80",
        b"x",
    ];

    /// Half the lines are a random prefix and a well-formed line with a few bytes changed,
    /// so that the deep branches run; the others are fragments and arbitrary bytes, now and
    /// then past the length limit.
    fn random_line(rng: &mut StdRng) -> Vec<u8> {
        let mut bytes = Vec::new();
        let pieces = rng.random_range(0..40);
        for _ in 0..pieces {
            if rng.random_bool(0.3) {
                bytes.push(rng.random::<u8>());
            } else {
                bytes.extend_from_slice(FRAGMENTS[rng.random_range(0..FRAGMENTS.len())]);
            }
        }
        if rng.random_bool(0.5) {
            bytes.truncate(pieces / 4);
            bytes.extend_from_slice(b" gru:web-1:execution_time:23.5:ms\r");
            for _ in 0..rng.random_range(0..3) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = FRAGMENTS[rng.random_range(0..FRAGMENTS.len())][0];
            }
        }
        if rng.random_bool(0.01) {
            bytes.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES));
        }
        bytes
    }

    #[test]
    fn ten_thousand_random_byte_strings_never_panic_and_ok_means_valid() {
        let mut rng = StdRng::seed_from_u64(0x0067_7275);
        let mut stats = LineStats::default();
        for _ in 0..10_000 {
            let bytes = random_line(&mut rng);
            let line = String::from_utf8_lossy(&bytes);
            let outcome = parse(&line);
            if let Ok(m) = &outcome {
                for name in [&m.service, &m.metric] {
                    assert!(
                        (1..=MAX_NAME_BYTES).contains(&name.len())
                            && name.bytes().all(is_name_byte),
                        "{line:?} gave name {name:?}"
                    );
                }
                assert!(m.value.is_finite(), "{line:?}");
                assert!(
                    (1..=MAX_UNIT_BYTES).contains(&m.unit.len())
                        && !m.unit.contains(|c: char| c == ':' || c.is_whitespace()),
                    "{line:?} gave unit {:?}",
                    m.unit
                );
            }
            stats.record(&outcome);
        }
        // The generator reaches both outcomes, or the test proves little.
        assert!(stats.parsed > 100 && stats.rejected > 100, "{stats:?}");
    }
}
