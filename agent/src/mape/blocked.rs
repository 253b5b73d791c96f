//! Why the guards removed a candidate, kept as the values they judged and written out as
//! sentences only when someone reads them, as an [`Explanation`](super::Explanation) is.
//!
//! Why not text at once: every tick weighs every candidate, and many are held (a breach
//! that has not yet lasted its `Period`, a cooldown, no instance here), each with numbers
//! in its words; writing them out was a large part of a tick's time, for text that is
//! read only when someone asks why (`gru manage why`, the HTTP API). [`BlockedBy`] reads
//! as the list of those sentences (`Deref<Target = [String]>`), and compares, prints and
//! serializes as that list.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The guards that removed a candidate, in the order they judged it; empty when it was
/// eligible. Reads as their sentences (`Deref<Target = [String]>`); equal when those are.
#[derive(Clone, Default)]
pub struct BlockedBy {
    holds: Vec<Hold>,
    text: OnceLock<Vec<String>>,
}

/// One guard's hold on a candidate, with what its sentence says.
#[derive(Debug, Clone)]
pub(super) enum Hold {
    /// A sentence as it was written (read back from JSON, say).
    Text(String),
    NoFreeResources,
    /// This node's last start of the service failed; it tries again in `ends_in_secs`.
    StartHeld {
        error: String,
        ends_in_secs: u64,
    },
    MaxInstancesReached {
        max: u32,
        counted: u32,
    },
    NoInstanceHere,
    MinInstancesReached {
        min: u32,
        counted: u32,
    },
    BaseServiceKeepsLast,
    /// The breach has lasted `sustained_secs` of the rule's `period_secs`.
    Period {
        sustained_secs: u64,
        period_secs: u64,
    },
    /// A cooldown of `direction`, of the candidate's service or (a swap's) of `of`.
    Cooldown {
        direction: Cooldown,
        of: Option<String>,
        ends_in_secs: u64,
    },
    /// A swap's start fits here without the stop.
    FitsWithoutStopping {
        start: String,
        stop: String,
    },
    CpuNumberDiffers {
        stop: String,
        stop_cpus: u32,
        start: String,
        start_cpus: u32,
    },
    /// A swap's stop is a base service of this node with one instance here.
    LastBaseInstance {
        stop: String,
    },
    BelowMinInstances {
        stop: String,
        min: u32,
    },
    AtMaxInstances {
        start: String,
        max: u32,
    },
}

/// Which cooldown holds a candidate.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cooldown {
    Out,
    In,
}

impl Hold {
    fn write(&self) -> String {
        match self {
            Hold::Text(text) => text.clone(),
            Hold::NoFreeResources => {
                "no free resources on this node for another instance".to_owned()
            }
            Hold::StartHeld {
                error,
                ends_in_secs,
            } => format!(
                "this node's last start failed ({error}); it backs off for {ends_in_secs} s and \
                 leaves the start to nodes that can"
            ),
            Hold::MaxInstancesReached { max, counted } => {
                format!("MaxInstances {max} reached ({counted} running or starting)")
            }
            Hold::NoInstanceHere => "no instance running on this node".to_owned(),
            Hold::MinInstancesReached { min, counted } => {
                format!("MinInstances {min} reached ({counted} running)")
            }
            Hold::BaseServiceKeepsLast => {
                "base service of this node: its last instance here stays".to_owned()
            }
            Hold::Period {
                sustained_secs,
                period_secs,
            } => format!("breach sustained {sustained_secs} s of the {period_secs} s Period"),
            Hold::Cooldown {
                direction,
                of,
                ends_in_secs,
            } => {
                let direction = match direction {
                    Cooldown::Out => "out",
                    Cooldown::In => "in",
                };
                match of {
                    None => format!("cooldown-{direction} ends in {ends_in_secs} s"),
                    Some(service) => {
                        format!("cooldown-{direction} of {service} ends in {ends_in_secs} s")
                    }
                }
            }
            Hold::FitsWithoutStopping { start, stop } => {
                format!("{start} fits on this node without stopping {stop}")
            }
            Hold::CpuNumberDiffers {
                stop,
                stop_cpus,
                start,
                start_cpus,
            } => format!("cpunumber differs ({stop} {stop_cpus}, {start} {start_cpus})"),
            Hold::LastBaseInstance { stop } => {
                format!("{stop} is a base service of this node with one instance here")
            }
            Hold::BelowMinInstances { stop, min } => {
                format!("{stop} would fall below MinInstances {min}")
            }
            Hold::AtMaxInstances { start, max } => format!("{start} is at MaxInstances {max}"),
        }
    }
}

impl BlockedBy {
    /// Whether no guard removed the candidate (it took part in the draw).
    pub fn is_empty(&self) -> bool {
        self.holds.is_empty()
    }

    /// Whether this node's room is the one guard that removed the candidate: a scale-out
    /// the planner wants and only a full node holds back (what saturation watches).
    pub fn held_only_by_room(&self) -> bool {
        !self.holds.is_empty()
            && self
                .holds
                .iter()
                .all(|h| matches!(h, Hold::NoFreeResources))
    }

    pub(super) fn push(&mut self, hold: Hold) {
        self.holds.push(hold);
        self.text = OnceLock::new();
    }

    pub(super) fn extend(&mut self, holds: impl IntoIterator<Item = Hold>) {
        for hold in holds {
            self.push(hold);
        }
    }

    /// The sentences, one per guard.
    pub fn as_slice(&self) -> &[String] {
        self.text
            .get_or_init(|| self.holds.iter().map(Hold::write).collect())
    }
}

impl From<Vec<String>> for BlockedBy {
    fn from(sentences: Vec<String>) -> BlockedBy {
        BlockedBy {
            holds: sentences.into_iter().map(Hold::Text).collect(),
            text: OnceLock::new(),
        }
    }
}

impl Deref for BlockedBy {
    type Target = [String];

    fn deref(&self) -> &[String] {
        self.as_slice()
    }
}

impl fmt::Debug for BlockedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl PartialEq for BlockedBy {
    fn eq(&self, other: &BlockedBy) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Serialize for BlockedBy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for BlockedBy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BlockedBy, D::Error> {
        Vec::<String>::deserialize(deserializer).map(BlockedBy::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_read_as_the_guards_sentences() {
        let cases = [
            (
                Hold::Period {
                    sustained_secs: 3,
                    period_secs: 10,
                },
                "breach sustained 3 s of the 10 s Period",
            ),
            (
                Hold::Cooldown {
                    direction: Cooldown::Out,
                    of: None,
                    ends_in_secs: 12,
                },
                "cooldown-out ends in 12 s",
            ),
            (
                Hold::Cooldown {
                    direction: Cooldown::In,
                    of: Some("db".to_owned()),
                    ends_in_secs: 1,
                },
                "cooldown-in of db ends in 1 s",
            ),
            (
                Hold::MaxInstancesReached { max: 4, counted: 5 },
                "MaxInstances 4 reached (5 running or starting)",
            ),
            (
                Hold::CpuNumberDiffers {
                    stop: "web".to_owned(),
                    stop_cpus: 1,
                    start: "batch".to_owned(),
                    start_cpus: 2,
                },
                "cpunumber differs (web 1, batch 2)",
            ),
        ];
        for (hold, sentence) in cases {
            let mut blocked = BlockedBy::default();
            assert!(blocked.is_empty());
            blocked.push(hold);
            assert!(!blocked.is_empty());
            assert_eq!(blocked.as_slice(), [sentence.to_owned()]);
        }
    }

    #[test]
    fn blocked_by_serializes_as_its_sentences_and_reads_back_equal() {
        let mut blocked = BlockedBy::default();
        blocked.push(Hold::NoInstanceHere);
        blocked.push(Hold::MinInstancesReached { min: 2, counted: 2 });
        let json = serde_json::to_string(&blocked).expect("serializes");
        assert_eq!(
            json,
            r#"["no instance running on this node","MinInstances 2 reached (2 running)"]"#
        );
        let back: BlockedBy = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, blocked);
        assert_eq!(back.join("; "), blocked.join("; "));
        assert_eq!(format!("{back:?}"), format!("{:?}", blocked.as_slice()));
    }
}
