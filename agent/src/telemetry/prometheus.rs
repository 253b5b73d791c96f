//! Prometheus text exposition format 0.0.4, written by hand: `# HELP` and `# TYPE` once per
//! family, then its samples. Pure string building, so the format is tested without a
//! server.

use std::fmt::Write;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A page of metric families being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    pub fn finish(self) -> String {
        self.text
    }

    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{key}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(value);
        self.text.push('\n');
    }

    /// A counter family; `samples` may be empty (the family is still declared).
    pub fn counter<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
    ) {
        self.header(name, "counter", help);
        for (labels, value) in samples {
            self.sample(name, &labels, &value.to_string());
        }
    }

    /// A gauge with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.header(name, "gauge", help);
        self.sample(name, &[], &format_float(value));
    }

    /// A gauge with labelled samples.
    pub fn gauges<'a>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, f64)>,
    ) {
        self.header(name, "gauge", help);
        for (labels, value) in samples {
            self.sample(name, &labels, &format_float(value));
        }
    }

    /// A histogram from its per-bucket (not cumulative) counts; `bounds` are the upper
    /// bounds, ascending, and `counts` has one more entry for `+Inf`.
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64) {
        self.header(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| format_float(*b));
            self.sample(&bucket, &[("le", &le)], &cumulative.to_string());
        }
        self.sample(&format!("{name}_sum"), &[], &format_float(sum));
        self.sample(&format!("{name}_count"), &[], &cumulative.to_string());
    }
}

/// Label values escape `\`, `"` and newlines.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Floats as Prometheus reads them: `+Inf`, `-Inf`, `NaN` spelt its way.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_declared_once_with_their_samples() {
        let mut page = Exposition::new();
        page.counter(
            "gru_actions_total",
            "Actions.",
            [
                (vec![("action", "scale-out"), ("result", "ok")], 2),
                (vec![("action", "swap"), ("result", "failed")], 1),
            ],
        );
        page.counter("gru_etcd_errors_total", "Errors.", [(vec![], 0)]);
        page.gauge("gru_sink_buffer_points", "Buffered.", 12.0);
        assert_eq!(
            page.finish(),
            "# HELP gru_actions_total Actions.\n\
             # TYPE gru_actions_total counter\n\
             gru_actions_total{action=\"scale-out\",result=\"ok\"} 2\n\
             gru_actions_total{action=\"swap\",result=\"failed\"} 1\n\
             # HELP gru_etcd_errors_total Errors.\n\
             # TYPE gru_etcd_errors_total counter\n\
             gru_etcd_errors_total 0\n\
             # HELP gru_sink_buffer_points Buffered.\n\
             # TYPE gru_sink_buffer_points gauge\n\
             gru_sink_buffer_points 12\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut page = Exposition::new();
        page.histogram("h_seconds", "H.", &[0.1, 1.0], &[2, 0, 1], 1.75);
        let text = page.finish();
        for line in [
            "h_seconds_bucket{le=\"0.1\"} 2",
            "h_seconds_bucket{le=\"1\"} 2",
            "h_seconds_bucket{le=\"+Inf\"} 3",
            "h_seconds_sum 1.75",
            "h_seconds_count 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn label_values_and_special_floats_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let cases = [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.5, "0.5"),
            (3.0, "3"),
        ];
        for (value, text) in cases {
            assert_eq!(format_float(value), text);
        }
    }
}
