//! Container lifecycle events, as the monitor reads them: which instance started, died (and
//! how), was destroyed or ran out of memory. The conversion from the engine's messages is
//! pure; the subscription lives in `monitor.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{EventMessage, EventMessageTypeEnum};

use super::labels::{LABEL_NODE, LABEL_SERVICE};

/// The engine actions the adapter subscribes to.
pub(super) const WATCHED_ACTIONS: [&str; 4] = ["start", "die", "destroy", "oom"];

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Start,
    /// The main process ended; `exit_code` is `None` if the engine did not say.
    Die {
        exit_code: Option<i64>,
    },
    Destroy,
    Oom,
}

/// A lifecycle event of a container of the watched cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub id: String,
    pub service: String,
    pub node: String,
    pub kind: EventKind,
    /// When the engine recorded it.
    pub at: SystemTime,
    /// The engine's timestamp in nanoseconds since the epoch (resumption after a reconnect).
    pub time_nano: i64,
}

/// The event a message reports, if it is one of the watched container actions.
pub(super) fn event_from_message(message: &EventMessage) -> Option<ContainerEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let actor = message.actor.as_ref()?;
    let attributes = actor.attributes.as_ref();
    let attribute = |key: &str| attributes.and_then(|a| a.get(key)).cloned();
    let kind = match message.action.as_deref()? {
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attribute("exitCode").and_then(|code| code.parse().ok()),
        },
        "destroy" => EventKind::Destroy,
        "oom" => EventKind::Oom,
        _ => return None,
    };
    let time_nano = message
        .time_nano
        .or_else(|| message.time.map(|secs| secs.saturating_mul(1_000_000_000)))
        .unwrap_or(0);
    Some(ContainerEvent {
        id: actor.id.clone()?,
        service: attribute(LABEL_SERVICE).unwrap_or_default(),
        node: attribute(LABEL_NODE).unwrap_or_default(),
        kind,
        at: UNIX_EPOCH + Duration::from_nanos(u64::try_from(time_nano).unwrap_or(0)),
        time_nano,
    })
}

/// The engine's `since` for a time in nanoseconds: `seconds.nanoseconds`.
pub(super) fn since_parameter(time_nano: i64) -> String {
    let nanos = time_nano.max(0);
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

/// Remembers the last event passed on, so that the replay after a reconnect (which asks
/// the engine for everything since that event's time) does not repeat it.
#[derive(Debug, Default)]
pub(super) struct Resume {
    last: Option<(i64, String, EventKind)>,
}

impl Resume {
    /// `true` if `event` is new; records it.
    pub(super) fn admit(&mut self, event: &ContainerEvent) -> bool {
        if let Some((time, id, kind)) = &self.last
            && (event.time_nano < *time
                || (event.time_nano == *time && event.id == *id && event.kind == *kind))
        {
            return false;
        }
        self.last = Some((event.time_nano, event.id.clone(), event.kind));
        true
    }

    /// Where to resume from: the last event's time, or `fallback` (nanoseconds) if none.
    pub(super) fn since(&self, fallback: i64) -> i64 {
        self.last.as_ref().map_or(fallback, |(time, _, _)| *time)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::EventActor;

    use super::*;

    fn message(action: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some("abc123".to_owned()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<HashMap<_, _>>(),
                ),
            }),
            time: Some(1_700_000_000),
            time_nano: Some(1_700_000_000_123_456_789),
            ..EventMessage::default()
        }
    }

    #[test]
    fn watched_actions_become_events() {
        let labels = [
            ("org.gru.service", "web"),
            ("org.gru.node", "n1"),
            ("exitCode", "137"),
        ];
        let cases = [
            ("start", Some(EventKind::Start)),
            (
                "die",
                Some(EventKind::Die {
                    exit_code: Some(137),
                }),
            ),
            ("destroy", Some(EventKind::Destroy)),
            ("oom", Some(EventKind::Oom)),
            ("kill", None),
            ("exec_start: sh", None),
        ];
        for (action, expected) in cases {
            let event = event_from_message(&message(action, &labels));
            assert_eq!(event.as_ref().map(|e| e.kind), expected, "{action}");
            if let Some(event) = event {
                assert_eq!(
                    (
                        event.id.as_str(),
                        event.service.as_str(),
                        event.node.as_str()
                    ),
                    ("abc123", "web", "n1")
                );
                assert_eq!(event.time_nano, 1_700_000_000_123_456_789);
            }
        }
    }

    #[test]
    fn die_without_exit_code_is_still_a_death() {
        let event = event_from_message(&message("die", &[])).expect("an event");
        assert_eq!(event.kind, EventKind::Die { exit_code: None });
        assert_eq!(event.service, "");
    }

    #[test]
    fn events_of_other_objects_are_ignored() {
        let network = EventMessage {
            typ: Some(EventMessageTypeEnum::NETWORK),
            ..message("destroy", &[])
        };
        assert_eq!(event_from_message(&network), None);
    }

    #[test]
    fn since_is_seconds_dot_nanoseconds() {
        assert_eq!(
            since_parameter(1_700_000_000_000_000_042),
            "1700000000.000000042"
        );
        assert_eq!(since_parameter(-5), "0.000000000");
    }

    #[test]
    fn replayed_events_are_not_passed_on_twice() {
        let first = event_from_message(&message("start", &[])).expect("an event");
        let later = ContainerEvent {
            time_nano: first.time_nano + 1,
            kind: EventKind::Die { exit_code: Some(0) },
            ..first.clone()
        };
        let same_time_other_container = ContainerEvent {
            id: "def".to_owned(),
            ..first.clone()
        };
        let mut resume = Resume::default();
        assert_eq!(resume.since(7), 7);
        assert!(resume.admit(&first));
        assert!(!resume.admit(&first), "the replayed event itself");
        assert!(resume.admit(&same_time_other_container));
        assert!(resume.admit(&later));
        assert!(!resume.admit(&first), "older than the last one passed on");
        assert_eq!(resume.since(7), later.time_nano);
    }
}
