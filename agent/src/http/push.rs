//! User metrics pushed over HTTP (`POST /gru/v1/stats/user/{service}/{metric}`): what a
//! valid push is, and how it lands in the knowledge. Plain functions over the knowledge, so
//! every refusal is tested without a server.
//!
//! A pushed metric belongs to the service as a whole (no instance, no warm-up) and lives in
//! a time window like any other, so it fades when the pusher stops. Memory is bounded
//! whatever is pushed: names are short, each service holds at most
//! [`MAX_PUSHED_METRICS_PER_SERVICE`] metrics, and without a configuration (when any service
//! name is accepted) at most [`MAX_PUSHED_SERVICES`] services.

use axum::http::StatusCode;
use serde_json::Value;

use super::error::{ApiError, shortened};
use crate::mape::{MetricWindow, Millis, SampleRejected};
use crate::runtime::Knowledge;

/// Longest metric name accepted in a push.
pub const MAX_METRIC_NAME_LEN: usize = 64;
/// Distinct pushed metrics one service may hold; a push of one more is refused with 429.
pub const MAX_PUSHED_METRICS_PER_SERVICE: usize = 64;
/// Characters of a refused name echoed in the error.
const SHOWN_NAME_CHARS: usize = 80;
/// Services that may hold pushed metrics; only reachable while no configuration is loaded,
/// since a loaded one names every service that may be pushed to.
pub const MAX_PUSHED_SERVICES: usize = 256;

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushRefused {
    /// A service or metric name that cannot be used; the sentence says why.
    #[error("{0}")]
    BadName(String),
    #[error("the body is not a number or {{\"value\": <number>}}: {0}")]
    BadValue(String),
    #[error("service {0:?} is not in the cluster's configuration")]
    UnknownService(String),
    #[error(
        "service {service:?} already holds {MAX_PUSHED_METRICS_PER_SERVICE} pushed metrics; {metric:?} is one too many"
    )]
    TooManyMetrics { service: String, metric: String },
    #[error("{MAX_PUSHED_SERVICES} services already hold pushed metrics; {0:?} is one too many")]
    TooManyServices(String),
    #[error("sample refused: {0}")]
    Sample(#[from] SampleRejected),
}

impl From<PushRefused> for ApiError {
    fn from(refused: PushRefused) -> ApiError {
        let status = match &refused {
            PushRefused::BadName(_) | PushRefused::BadValue(_) => StatusCode::BAD_REQUEST,
            PushRefused::Sample(SampleRejected::NotFinite { .. }) => StatusCode::BAD_REQUEST,
            PushRefused::UnknownService(_) => StatusCode::NOT_FOUND,
            PushRefused::TooManyMetrics { .. } | PushRefused::TooManyServices(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            // The clock went back further than the window: the sample cannot be placed.
            PushRefused::Sample(_) => StatusCode::CONFLICT,
        };
        ApiError::new(status, refused.to_string())
    }
}

/// Whether `name` is a metric name a push may use: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_valid_metric_name(name: &str) -> bool {
    (1..=MAX_METRIC_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a metric name taken from the path.
pub fn check_metric_name(name: &str) -> Result<(), PushRefused> {
    if is_valid_metric_name(name) {
        Ok(())
    } else {
        Err(PushRefused::BadName(format!(
            "metric name {:?} is not 1 to {MAX_METRIC_NAME_LEN} ASCII letters, digits, '_', '.' or '-'",
            shortened(name, SHOWN_NAME_CHARS)
        )))
    }
}

/// Checks a service name taken from the path or a command with the rule every configured
/// service name passed (the key layout's: the same characters, up to 128 bytes), so that
/// any service of the configuration can be named.
pub fn check_service_name(name: &str) -> Result<(), PushRefused> {
    common::keys::check_name("service", name).map_err(|invalid| {
        PushRefused::BadName(format!(
            "service name {:?} {}",
            shortened(&invalid.name, SHOWN_NAME_CHARS),
            invalid.reason
        ))
    })
}

/// The value of a push body: a JSON number, or an object with a numeric `value` (other
/// fields, such as a unit, are ignored).
pub fn parse_value(body: &[u8]) -> Result<f64, PushRefused> {
    let json: Value =
        serde_json::from_slice(body).map_err(|err| PushRefused::BadValue(err.to_string()))?;
    let number = match &json {
        Value::Number(number) => number,
        Value::Object(fields) => match fields.get("value") {
            Some(Value::Number(number)) => number,
            Some(other) => {
                return Err(PushRefused::BadValue(format!(
                    "\"value\" is {}, not a number",
                    kind(other)
                )));
            }
            None => {
                return Err(PushRefused::BadValue(
                    "the object has no \"value\"".to_owned(),
                ));
            }
        },
        other => return Err(PushRefused::BadValue(format!("got {}", kind(other)))),
    };
    let value = number
        .as_f64()
        .ok_or_else(|| PushRefused::BadValue(format!("{number} is not representable")))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(SampleRejected::NotFinite { value }.into())
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether pushes to `service` are accepted: any service while no configuration is loaded,
/// only configured ones after.
pub fn check_service_known(knowledge: &Knowledge, service: &str) -> Result<(), PushRefused> {
    match &knowledge.config {
        Some(config) if !config.services.contains_key(service) => {
            Err(PushRefused::UnknownService(service.to_owned()))
        }
        _ => Ok(()),
    }
}

/// Records `value` of `service`'s `metric` taken at `now`. The window is created on the
/// first push with the knowledge's window settings.
pub fn record(
    knowledge: &mut Knowledge,
    service: &str,
    metric: &str,
    value: f64,
    now: Millis,
) -> Result<(), PushRefused> {
    check_service_known(knowledge, service)?;
    let settings = knowledge.metrics.settings();
    let pushed = &mut knowledge.pushed;
    if !pushed.contains_key(service) && pushed.len() >= MAX_PUSHED_SERVICES {
        return Err(PushRefused::TooManyServices(service.to_owned()));
    }
    let metrics = pushed.entry(service.to_owned()).or_default();
    if !metrics.contains_key(metric) && metrics.len() >= MAX_PUSHED_METRICS_PER_SERVICE {
        return Err(PushRefused::TooManyMetrics {
            service: service.to_owned(),
            metric: metric.to_owned(),
        });
    }
    let window = metrics
        .entry(metric.to_owned())
        .or_insert_with(|| MetricWindow::new(settings.span, settings.max_samples));
    let outcome = window.push(now, value).map_err(PushRefused::from);
    if outcome.is_err() && window.is_empty() {
        // A window created for a refused sample would count against the cap for nothing.
        metrics.remove(metric);
        if metrics.is_empty() {
            pushed.remove(service);
        }
    }
    outcome
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::mape::WindowSettings;

    fn knowledge() -> Knowledge {
        Knowledge::new(WindowSettings::for_loop_interval(Duration::from_secs(10)))
    }

    fn configured(services: &[&str]) -> Knowledge {
        let mut config = common::config::ClusterConfig {
            agent: Default::default(),
            policy: Default::default(),
            services: Default::default(),
            analytics: Default::default(),
        };
        for name in services {
            config.services.insert(
                (*name).to_owned(),
                common::config::ServiceDescriptor {
                    name: (*name).to_owned(),
                    ..Default::default()
                },
            );
        }
        let mut knowledge = knowledge();
        knowledge.config = Some(Arc::new(config));
        knowledge
    }

    #[test]
    fn metric_names_follow_the_documented_pattern() {
        let long = "a".repeat(MAX_METRIC_NAME_LEN);
        let too_long = "a".repeat(MAX_METRIC_NAME_LEN + 1);
        let cases = [
            ("web", true),
            ("queue_len.p99-x", true),
            ("A9", true),
            (long.as_str(), true),
            ("", false),
            (too_long.as_str(), false),
            ("a b", false),
            ("a/b", false),
            ("é", false),
            ("a\0", false),
            ("..", true),
        ];
        for (name, valid) in cases {
            assert_eq!(is_valid_metric_name(name), valid, "{name:?}");
            assert_eq!(check_metric_name(name).is_ok(), valid, "{name:?}");
        }
    }

    #[test]
    fn service_names_follow_the_configuration_rule() {
        let long = "s".repeat(128);
        for (name, valid) in [
            ("web", true),
            (long.as_str(), true),
            ("..", false),
            ("a/b", false),
            ("", false),
        ] {
            assert_eq!(check_service_name(name).is_ok(), valid, "{name:?}");
        }
        let message = check_service_name(&"/".repeat(1000))
            .expect_err("refused")
            .to_string();
        assert!(
            message.len() < 400,
            "an echoed name is shortened: {message}"
        );
    }

    #[test]
    fn bodies_are_a_number_or_an_object_with_a_value() {
        let cases: &[(&str, Option<f64>)] = &[
            ("0.5", Some(0.5)),
            (" 42 ", Some(42.0)),
            ("-3", Some(-3.0)),
            (r#"{"value": 7.25}"#, Some(7.25)),
            (r#"{"value": 1, "unit": "ms"}"#, Some(1.0)),
            ("18446744073709551616", Some(18_446_744_073_709_551_616.0)),
            (r#"{"value": "1"}"#, None),
            (r#"{"valeu": 1}"#, None),
            (r#""1""#, None),
            ("[1]", None),
            ("null", None),
            ("1e999", None),
            ("NaN", None),
            ("", None),
            ("{", None),
        ];
        for (body, expected) in cases {
            assert_eq!(parse_value(body.as_bytes()).ok(), *expected, "{body:?}");
        }
    }

    #[test]
    fn pushes_land_in_a_window_sized_like_the_metrics() {
        let mut knowledge = configured(&["web"]);
        for (secs, value) in [(1, 1.0), (2, 3.0)] {
            record(
                &mut knowledge,
                "web",
                "queue",
                value,
                Millis::from_secs(secs),
            )
            .expect("ok");
        }
        let window = knowledge
            .pushed
            .get_mut("web")
            .and_then(|metrics| metrics.get_mut("queue"))
            .expect("a window");
        assert_eq!(window.mean(Millis::from_secs(2)), Some(2.0));
        assert_eq!(window.mean(Millis::from_secs(12)), Some(3.0), "10 s span");
        assert_eq!(window.mean(Millis::from_secs(13)), None);
    }

    #[test]
    fn unknown_services_are_refused_only_once_a_configuration_is_loaded() {
        let mut knowledge = configured(&["web"]);
        assert_eq!(
            record(&mut knowledge, "db", "q", 1.0, Millis(1)),
            Err(PushRefused::UnknownService("db".to_owned()))
        );
        assert!(knowledge.pushed.is_empty());
        let mut knowledge = self::knowledge();
        record(&mut knowledge, "db", "q", 1.0, Millis(1)).expect("no configuration yet");
    }

    #[test]
    fn a_service_holds_at_most_the_metric_cap() {
        let mut knowledge = configured(&["web"]);
        for i in 0..MAX_PUSHED_METRICS_PER_SERVICE {
            record(&mut knowledge, "web", &format!("m{i}"), 1.0, Millis(1)).expect("under the cap");
        }
        let refused = record(&mut knowledge, "web", "one-more", 1.0, Millis(1));
        assert!(
            matches!(refused, Err(PushRefused::TooManyMetrics { .. })),
            "{refused:?}"
        );
        assert_eq!(
            ApiError::from(refused.expect_err("refused")).status,
            StatusCode::TOO_MANY_REQUESTS
        );
        record(&mut knowledge, "web", "m0", 2.0, Millis(2)).expect("a known metric still records");
    }

    #[test]
    fn without_configuration_the_services_are_capped() {
        let mut knowledge = knowledge();
        for i in 0..MAX_PUSHED_SERVICES {
            record(&mut knowledge, &format!("s{i}"), "m", 1.0, Millis(1)).expect("under the cap");
        }
        assert!(matches!(
            record(&mut knowledge, "another", "m", 1.0, Millis(1)),
            Err(PushRefused::TooManyServices(_))
        ));
        assert_eq!(knowledge.pushed.len(), MAX_PUSHED_SERVICES);
    }

    #[test]
    fn a_refused_first_sample_leaves_no_empty_window() {
        let mut knowledge = configured(&["web"]);
        let refused = record(&mut knowledge, "web", "m", f64::NAN, Millis(1));
        assert!(
            matches!(refused, Err(PushRefused::Sample(_))),
            "{refused:?}"
        );
        assert!(knowledge.pushed.is_empty());
    }

    #[test]
    fn refusals_map_to_statuses() {
        let cases = [
            (PushRefused::BadName(String::new()), StatusCode::BAD_REQUEST),
            (
                PushRefused::BadValue(String::new()),
                StatusCode::BAD_REQUEST,
            ),
            (
                PushRefused::Sample(SampleRejected::NotFinite { value: f64::NAN }),
                StatusCode::BAD_REQUEST,
            ),
            (
                PushRefused::UnknownService(String::new()),
                StatusCode::NOT_FOUND,
            ),
            (
                PushRefused::TooManyServices(String::new()),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                PushRefused::Sample(SampleRejected::TooOld {
                    at: Millis(1),
                    newest: Millis(100_000),
                }),
                StatusCode::CONFLICT,
            ),
        ];
        for (refused, status) in cases {
            assert_eq!(
                ApiError::from(refused.clone()).status,
                status,
                "{refused:?}"
            );
        }
    }
}
