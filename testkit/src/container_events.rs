//! The Docker engine's container events for one test cluster, recorded from before its
//! agents start, and replayed into the exact number of running containers at every moment.
//!
//! A test that promises "never above MaxInstances" cannot keep that promise by polling
//! `docker ps`: an instance that runs for a fraction of a second between two polls is never
//! seen. The engine's event stream misses nothing: every `start`, `die` and `destroy` of a
//! container that carries the cluster's label is recorded with the engine's timestamp, and
//! [`replay`] turns them into the running count after each event (the soak,
//! `scripts/soak-check.py`, counts the same way).
//!
//! * [`ContainerEvents::start`] runs `docker events` and returns once the stream is live;
//!   [`ContainerEvents::events`] returns everything up to the call: it waits for a marker
//!   event it causes itself (an image tag), so that no event before the call is still in
//!   flight. A `docker events` that fails or ends fails the test with its stderr.
//! * [`replay`] (pure) and [`Timeline`]: the count after each event, its peak over a span,
//!   and when it first reached a value; [`ContainerEvents::assert_at_most`] fails a test
//!   with the excursion and the whole timeline.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the marker of [`ContainerEvents::events`] may take to come back.
const MARKER_TIMEOUT: Duration = Duration::from_secs(20);
/// A marker not back within this is followed by another one.
const MARKER_RETRY: Duration = Duration::from_secs(1);

/// The image tagged as a marker (its tag is removed at once): one every test that runs
/// containers already has.
const MARKER_SOURCE: &str = crate::WORKLOAD_IMAGE;
const MARKER_REPOSITORY: &str = "gru-test-events-marker";

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    /// It runs from now on.
    Start,
    /// Its process ended (stopped, killed, crashed, or removed with `rm -f`).
    Die,
    /// It was removed.
    Destroy,
}

impl ContainerAction {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "start" => Some(Self::Start),
            "die" => Some(Self::Die),
            "destroy" => Some(Self::Destroy),
            _ => None,
        }
    }
}

/// One container event of the cluster, with the container's `org.gru.*` labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    /// Nanoseconds since the epoch, by the engine's clock (this machine's).
    pub at_ns: u64,
    pub action: ContainerAction,
    /// The container's full id.
    pub id: String,
    pub service: String,
    pub node: String,
    pub instance: String,
}

impl ContainerEvent {
    /// A start of `service`'s `id` on `node` at `at_ns` (for tables of events).
    pub fn new(at_ns: u64, action: ContainerAction, id: &str, service: &str, node: &str) -> Self {
        Self {
            at_ns,
            action,
            id: id.to_owned(),
            service: service.to_owned(),
            node: node.to_owned(),
            instance: String::new(),
        }
    }
}

/// The running count after one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountChange {
    pub at_ns: u64,
    /// Running containers (among those counted) right after `event`.
    pub running: usize,
    pub event: ContainerEvent,
}

/// The running count over time, from an initial count of zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub changes: Vec<CountChange>,
}

/// Replays `events` (in the engine's order) into the number of running containers among
/// those `counted` keeps, after each of their events. A container runs from its `start`
/// to its `die` or `destroy`; a repeated event changes nothing (a `destroy` after a `die`,
/// a `die` of a container never seen to start).
pub fn replay(events: &[ContainerEvent], counted: impl Fn(&ContainerEvent) -> bool) -> Timeline {
    let mut running = BTreeSet::new();
    let changes = events
        .iter()
        .filter(|e| counted(e))
        .map(|event| {
            match event.action {
                ContainerAction::Start => running.insert(event.id.as_str()),
                ContainerAction::Die | ContainerAction::Destroy => {
                    running.remove(event.id.as_str())
                }
            };
            CountChange {
                at_ns: event.at_ns,
                running: running.len(),
                event: event.clone(),
            }
        })
        .collect();
    Timeline { changes }
}

impl Timeline {
    /// The count at `at_ns` (after every event at or before it).
    pub fn running_at(&self, at_ns: u64) -> usize {
        self.changes
            .iter()
            .take_while(|c| c.at_ns <= at_ns)
            .last()
            .map_or(0, |c| c.running)
    }

    /// The highest count from `from_ns` to `to_ns` (both included; the count in effect at
    /// `from_ns` counts), and the event that first reached it, if one within the span did.
    pub fn peak_between(&self, from_ns: u64, to_ns: u64) -> (usize, Option<&CountChange>) {
        let mut peak = (self.running_at(from_ns), None);
        for change in self
            .changes
            .iter()
            .filter(|c| c.at_ns > from_ns && c.at_ns <= to_ns)
        {
            if change.running > peak.0 {
                peak = (change.running, Some(change));
            }
        }
        peak
    }

    /// The highest count over the whole recording, and the event that first reached it.
    pub fn peak(&self) -> (usize, Option<&CountChange>) {
        self.peak_between(0, u64::MAX)
    }

    /// The lowest count from `from_ns` to `to_ns` (both included).
    pub fn low_between(&self, from_ns: u64, to_ns: u64) -> usize {
        self.changes
            .iter()
            .filter(|c| c.at_ns > from_ns && c.at_ns <= to_ns)
            .map(|c| c.running)
            .fold(self.running_at(from_ns), usize::min)
    }

    /// The first change after `after_ns` that leaves `running` containers.
    pub fn first_reaching(&self, after_ns: u64, running: usize) -> Option<&CountChange> {
        self.changes
            .iter()
            .find(|c| c.at_ns > after_ns && c.running == running)
    }

    /// One line per change, times in seconds from `origin_ns`, for failure messages.
    pub fn render(&self, origin_ns: u64) -> String {
        self.changes
            .iter()
            .map(|c| {
                format!(
                    "  {:>+9.3} s  {:<7} {} of {} on {} -> {} running",
                    seconds_between(origin_ns, c.at_ns),
                    format!("{:?}", c.event.action).to_lowercase(),
                    short(&c.event.id),
                    c.event.service,
                    c.event.node,
                    c.running
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `to - from` in seconds (negative when `to` is earlier).
pub fn seconds_between(from_ns: u64, to_ns: u64) -> f64 {
    (to_ns as f64 - from_ns as f64) / 1e9
}

/// Nanoseconds since the epoch, now (this machine's clock, the engine's too).
pub fn epoch_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The `docker events` template: one tab-separated line per event.
const FORMAT: &str = "{{.TimeNano}}\t{{.Type}}\t{{.Action}}\t{{.Actor.ID}}\t\
    {{index .Actor.Attributes \"org.gru.cluster\"}}\t{{index .Actor.Attributes \"org.gru.service\"}}\t\
    {{index .Actor.Attributes \"org.gru.node\"}}\t{{index .Actor.Attributes \"org.gru.instance\"}}\t\
    {{index .Actor.Attributes \"name\"}}";

/// What one line of the stream is.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A container event of `cluster`.
    Container {
        cluster: String,
        event: ContainerEvent,
    },
    /// An image tagged `name` (a marker, or anyone's tag).
    Tagged { name: String },
}

fn parse_line(line: &str) -> Option<Line> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [at, kind, action, id, cluster, service, node, instance, name] = fields[..] else {
        return None;
    };
    match kind {
        "container" => Some(Line::Container {
            cluster: cluster.to_owned(),
            event: ContainerEvent {
                at_ns: at.parse().ok()?,
                action: ContainerAction::parse(action)?,
                id: id.to_owned(),
                service: service.to_owned(),
                node: node.to_owned(),
                instance: instance.to_owned(),
            },
        }),
        "image" if action == "tag" => Some(Line::Tagged {
            name: name.to_owned(),
        }),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Recorded {
    events: Vec<ContainerEvent>,
    markers: BTreeSet<String>,
    /// Set when the stream ended (the process exited or its output broke).
    ended: bool,
    stderr: String,
}

/// `docker events` of one cluster's containers, followed by a thread; the process is
/// killed when this drops.
#[derive(Debug)]
pub struct ContainerEvents {
    cluster: String,
    /// When the stream was known live (nanoseconds since the epoch): the timeline's origin.
    pub started_ns: u64,
    recorded: Arc<(Mutex<Recorded>, Condvar)>,
    child: Child,
    markers_sent: Mutex<u32>,
}

impl ContainerEvents {
    /// Follows the container events of `cluster` (label `org.gru.cluster`) from now on,
    /// returning once the stream is live. Start it before the cluster's first container:
    /// the count starts at zero. Needs [`crate::WORKLOAD_IMAGE`] (its marker is a tag of
    /// it: call [`crate::require_workload_image`] first). A `docker` that fails fails the
    /// test, naming the command and its stderr.
    pub fn start(cluster: &str) -> Self {
        // From the spawn on, also what happens before the stream is subscribed: the engine
        // replays its recent events since then.
        let since = epoch_ns();
        let mut child = Command::new("docker")
            .args(Self::args())
            .arg("--since")
            .arg(format!(
                "{}.{:09}",
                since / 1_000_000_000,
                since % 1_000_000_000
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `docker events` (is the docker CLI installed?): {e}")
            });
        let recorded = Arc::new((Mutex::new(Recorded::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let recorded = recorded.clone();
            let cluster = cluster.to_owned();
            std::thread::spawn(move || follow(stdout, &cluster, &recorded));
        }
        {
            let recorded = recorded.clone();
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = BufReader::new(stderr).read_to_string(&mut text);
                let (lock, changed) = &*recorded;
                lock.lock().unwrap_or_else(|p| p.into_inner()).stderr = text;
                changed.notify_all();
            });
        }
        let mut events = Self {
            cluster: cluster.to_owned(),
            started_ns: 0,
            recorded,
            child,
            markers_sent: Mutex::new(0),
        };
        events.sync();
        events.started_ns = epoch_ns();
        events
    }

    fn args() -> Vec<String> {
        let mut args = vec!["events".to_owned()];
        for filter in [
            "type=container",
            "type=image",
            "event=start",
            "event=die",
            "event=destroy",
            "event=tag",
        ] {
            args.push("--filter".to_owned());
            args.push(filter.to_owned());
        }
        args.push("--format".to_owned());
        args.push(FORMAT.to_owned());
        args
    }

    fn command_line() -> String {
        format!("docker {}", Self::args().join(" "))
    }

    /// Every event of the cluster's containers so far, in the engine's order. Waits until
    /// the stream has delivered everything that happened before the call.
    pub fn events(&self) -> Vec<ContainerEvent> {
        self.sync();
        let (lock, _) = &*self.recorded;
        lock.lock()
            .unwrap_or_else(|p| p.into_inner())
            .events
            .clone()
    }

    /// [`replay`] of [`ContainerEvents::events`], counting the containers `counted` keeps.
    pub fn timeline(&self, counted: impl Fn(&ContainerEvent) -> bool) -> Timeline {
        replay(&self.events(), counted)
    }

    /// [`ContainerEvents::timeline`] of `service`'s containers.
    pub fn service_timeline(&self, service: &str) -> Timeline {
        self.timeline(|e| e.service == service)
    }

    /// Fails the test if more than `max` of the containers `counted` keeps ever ran at once
    /// since the recording started, showing when and the whole timeline; `what` names them
    /// ("web", "web on side A"). Returns the timeline.
    #[track_caller]
    pub fn assert_at_most(
        &self,
        what: &str,
        max: usize,
        counted: impl Fn(&ContainerEvent) -> bool,
    ) -> Timeline {
        self.assert_within(what, 0..=max, 0, counted)
    }

    /// Fails the test if the number of running containers `counted` keeps left `bounds` at
    /// any moment from `from_ns` (nanoseconds since the epoch; 0: since the recording
    /// started) to now, showing the first excursion and the whole timeline. Returns the
    /// timeline.
    #[track_caller]
    pub fn assert_within(
        &self,
        what: &str,
        bounds: std::ops::RangeInclusive<usize>,
        from_ns: u64,
        counted: impl Fn(&ContainerEvent) -> bool,
    ) -> Timeline {
        match self.check_within(what, bounds, from_ns, counted) {
            Ok(timeline) => timeline,
            Err(why) => panic!("{why}"),
        }
    }

    /// [`ContainerEvents::assert_within`] as a value: the timeline, or what went out of
    /// bounds first, with the whole timeline (for a test that gathers its failures).
    pub fn check_within(
        &self,
        what: &str,
        bounds: std::ops::RangeInclusive<usize>,
        from_ns: u64,
        counted: impl Fn(&ContainerEvent) -> bool,
    ) -> Result<Timeline, String> {
        let timeline = self.timeline(counted);
        let at_start = timeline.running_at(from_ns);
        let excursion = if bounds.contains(&at_start) {
            timeline
                .changes
                .iter()
                .find(|c| c.at_ns > from_ns && !bounds.contains(&c.running))
                .map(|c| {
                    format!(
                        "{} running at {:+.3} s ({:?} of {} on {})",
                        c.running,
                        seconds_between(self.started_ns, c.at_ns),
                        c.event.action,
                        short(&c.event.id),
                        c.event.node
                    )
                })
        } else {
            Some(format!(
                "{at_start} running at {:+.3} s, when the span began",
                seconds_between(self.started_ns, from_ns)
            ))
        };
        match excursion {
            None => Ok(timeline),
            Some(excursion) => Err(format!(
                "{what}: {excursion}, outside [{}, {}] (from {:+.3} s on); cluster {}, every \
                 start and death, times from the start of the recording:\n{}",
                bounds.start(),
                bounds.end(),
                seconds_between(self.started_ns, from_ns.max(self.started_ns)),
                self.cluster,
                timeline.render(self.started_ns)
            )),
        }
    }

    /// Makes an event of its own (tags an image, then removes the tag) and waits until the
    /// stream delivers it: every event before it has been delivered too, since the engine
    /// sends them in order. Fails the test if the stream ended or the marker never came.
    fn sync(&self) {
        let deadline = Instant::now() + MARKER_TIMEOUT;
        let mut names: Vec<String> = Vec::new();
        let (seen, ended, stderr) = loop {
            let token = {
                let mut sent = self.markers_sent.lock().unwrap_or_else(|p| p.into_inner());
                *sent += 1;
                format!("p{}-{}-{}", std::process::id(), self.child.id(), *sent)
            };
            let name = format!("{MARKER_REPOSITORY}:{token}");
            docker_must(&["tag", MARKER_SOURCE, &name]);
            names.push(name);
            let (lock, changed) = &*self.recorded;
            let wait = MARKER_RETRY.min(deadline.saturating_duration_since(Instant::now()));
            let (recorded, _) = changed
                .wait_timeout_while(lock.lock().unwrap_or_else(|p| p.into_inner()), wait, |r| {
                    !r.ended && !names.iter().any(|n| r.markers.contains(n))
                })
                .unwrap_or_else(|p| p.into_inner());
            let seen = names.iter().any(|n| recorded.markers.contains(n));
            // Tagged again while the stream is live and nothing came: it is stuck, or it
            // was not subscribed yet when the first marker went by (see `--since`).
            if seen || recorded.ended || Instant::now() >= deadline {
                break (seen, recorded.ended, recorded.stderr.clone());
            }
        };
        for name in &names {
            docker_must(&["rmi", name]);
        }
        assert!(
            seen,
            "`{}` {}: none of its marker events (tags {names:?}) came{}; stderr: {}",
            Self::command_line(),
            if ended { "ended" } else { "stalled" },
            if ended {
                String::new()
            } else {
                format!(" within {MARKER_TIMEOUT:?}")
            },
            // The stderr reader may still be collecting it.
            if stderr.is_empty() {
                wait_for_stderr(&self.recorded)
            } else {
                stderr
            }
        );
    }
}

fn wait_for_stderr(recorded: &Arc<(Mutex<Recorded>, Condvar)>) -> String {
    let (lock, changed) = &**recorded;
    let (recorded, _) = changed
        .wait_timeout_while(
            lock.lock().unwrap_or_else(|p| p.into_inner()),
            Duration::from_secs(2),
            |r| r.stderr.is_empty(),
        )
        .unwrap_or_else(|p| p.into_inner());
    recorded.stderr.clone()
}

impl Drop for ContainerEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn follow(stdout: impl Read, cluster: &str, recorded: &(Mutex<Recorded>, Condvar)) {
    let (lock, changed) = recorded;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut recorded = lock.lock().unwrap_or_else(|p| p.into_inner());
        match parse_line(&line) {
            Some(Line::Container { cluster: c, event }) if c == cluster => {
                recorded.events.push(event);
            }
            Some(Line::Tagged { name }) if name.starts_with(MARKER_REPOSITORY) => {
                recorded.markers.insert(name);
                changed.notify_all();
            }
            _ => {}
        }
    }
    lock.lock().unwrap_or_else(|p| p.into_inner()).ended = true;
    changed.notify_all();
}

/// `docker args...`, which must succeed: otherwise the test fails naming the command and
/// its stderr. Its standard output.
#[track_caller]
pub fn docker_must(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ContainerAction::{Destroy, Die, Start};

    fn at(secs: f64, action: ContainerAction, id: &str, node: &str) -> ContainerEvent {
        ContainerEvent::new((secs * 1e9) as u64, action, id, "web", node)
    }

    #[test]
    fn a_start_and_die_between_two_polls_is_the_peak() {
        // Two run steadily; a third lives 200 ms between polls a second apart.
        let events = [
            at(1.0, Start, "a", "n1"),
            at(2.0, Start, "b", "n2"),
            at(3.1, Start, "c", "n3"),
            at(3.3, Die, "c", "n3"),
            at(3.4, Destroy, "c", "n3"),
            at(5.0, Die, "a", "n1"),
        ];
        let timeline = replay(&events, |_| true);
        let (peak, change) = timeline.peak();
        assert_eq!(peak, 3);
        assert_eq!(change.map(|c| c.event.id.as_str()), Some("c"));
        let counts: Vec<usize> = timeline.changes.iter().map(|c| c.running).collect();
        assert_eq!(counts, [1, 2, 3, 2, 2, 1]);
        for (secs, running) in [(0.5, 0), (3.0, 2), (3.2, 3), (4.0, 2), (9.0, 1)] {
            assert_eq!(
                timeline.running_at((secs * 1e9) as u64),
                running,
                "at {secs}"
            );
        }
    }

    #[test]
    fn the_peak_over_a_span_counts_what_ran_when_it_began() {
        let events = [
            at(1.0, Start, "a", "n1"),
            at(2.0, Start, "b", "n1"),
            at(4.0, Die, "b", "n1"),
            at(6.0, Start, "c", "n2"),
        ];
        let timeline = replay(&events, |_| true);
        let s = |secs: f64| (secs * 1e9) as u64;
        assert_eq!(timeline.peak_between(s(3.0), s(5.0)).0, 2);
        assert!(timeline.peak_between(s(3.0), s(5.0)).1.is_none());
        assert_eq!(timeline.peak_between(s(4.5), s(5.5)).0, 1);
        assert_eq!(timeline.low_between(s(3.0), s(7.0)), 1);
        assert_eq!(
            timeline
                .first_reaching(s(4.0), 2)
                .map(|c| c.event.id.as_str()),
            Some("c")
        );
        assert!(timeline.first_reaching(s(7.0), 2).is_none());
    }

    #[test]
    fn only_the_counted_containers_count_and_repeats_change_nothing() {
        let events = [
            at(1.0, Start, "a", "n1"),
            at(1.5, Die, "ghost", "n1"),
            at(2.0, Start, "b", "n2"),
            at(2.5, Start, "b", "n2"),
            at(3.0, Die, "a", "n1"),
            at(3.1, Destroy, "a", "n1"),
            at(4.0, Start, "c", "n1"),
        ];
        let n1 = replay(&events, |e| e.node == "n1");
        let counts: Vec<usize> = n1.changes.iter().map(|c| c.running).collect();
        assert_eq!(counts, [1, 1, 0, 0, 1]);
        let all = replay(&events, |_| true);
        assert_eq!(all.peak().0, 2);
        assert_eq!(all.running_at(u64::MAX), 2);
    }

    #[test]
    fn stream_lines_are_read_as_events_and_markers() {
        let line = "1796350953123456789\tcontainer\tdie\tabcdef0123456789\tt1-lost\tweb\tn2\ti-7\tt1-lost-web-i-7";
        assert_eq!(
            parse_line(line),
            Some(Line::Container {
                cluster: "t1-lost".to_owned(),
                event: ContainerEvent {
                    at_ns: 1_796_350_953_123_456_789,
                    action: Die,
                    id: "abcdef0123456789".to_owned(),
                    service: "web".to_owned(),
                    node: "n2".to_owned(),
                    instance: "i-7".to_owned(),
                }
            })
        );
        let tag =
            "1796350953123456789\timage\ttag\tsha256:00\t\t\t\t\tgru-test-events-marker:p1-2-3";
        assert_eq!(
            parse_line(tag),
            Some(Line::Tagged {
                name: "gru-test-events-marker:p1-2-3".to_owned()
            })
        );
        for other in [
            "1\tcontainer\tkill\tid\tc\tweb\tn1\ti\tname",
            "1\timage\tuntag\tsha256:00\t\t\t\t\tx",
            "not an event",
        ] {
            assert_eq!(parse_line(other), None, "{other}");
        }
    }
}
