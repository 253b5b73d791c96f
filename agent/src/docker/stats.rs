//! Resource use of a container, from the engine's stats stream, as the fractions the
//! analytics read: CPU as a fraction of the cores the container may use, memory as a
//! fraction of its limit.
//!
//! The formulas are pure functions over plain readings, tested on hand-made samples; the
//! conversion from the engine's JSON sits next to them so a change of the stats format is
//! one edit.

use bollard::models::{ContainerCpuStats, ContainerStatsResponse};

/// The cores a container may use, from its host configuration (read once per stream).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuAllowance {
    /// How many cpus its cpuset names, when pinned.
    pub cpuset_count: Option<u32>,
    /// `--cpus` in billionths of a cpu, when limited.
    pub nano_cpus: Option<u64>,
}

impl CpuAllowance {
    /// The number of cores: the cpuset's count, else `NanoCpus`, else every online cpu.
    pub fn cores(&self, online_cpus: u32) -> f64 {
        match (self.cpuset_count, self.nano_cpus) {
            (Some(count), _) if count > 0 => f64::from(count),
            (_, Some(nano)) if nano > 0 => nano as f64 / 1e9,
            _ => f64::from(online_cpus),
        }
    }
}

/// Cumulative CPU counters of one sample and of the one before it, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuReading {
    pub container_ns: u64,
    pub system_ns: u64,
    /// `None` in the first sample of a stream, which has no previous reading.
    pub previous: Option<(u64, u64)>,
    pub online_cpus: u32,
}

/// Memory counters of one sample, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemoryReading {
    pub usage: u64,
    /// Page cache the kernel can reclaim (`total_inactive_file` on cgroup v1,
    /// `inactive_file` on v2, else `cache`), when reported: not counted as used, as
    /// `docker stats` does.
    pub reclaimable: Option<u64>,
    /// The container's limit (the host's memory when it has none).
    pub limit: u64,
}

/// One sample of a container's stats stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSample {
    pub id: String,
    pub cpu: CpuReading,
    pub memory: MemoryReading,
    pub allowance: CpuAllowance,
}

impl StatsSample {
    /// See [`cpu_fraction`].
    pub fn cpu_fraction(&self) -> Option<f64> {
        cpu_fraction(&self.cpu, &self.allowance)
    }

    /// See [`mem_fraction`].
    pub fn mem_fraction(&self) -> Option<f64> {
        mem_fraction(&self.memory)
    }

    /// Cores used since the previous reading (the fraction times the cores it may use).
    pub fn cpu_cores(&self) -> Option<f64> {
        let online = self.cpu.online_cpus.max(1);
        self.cpu_fraction()
            .map(|fraction| fraction * self.allowance.cores(online))
    }

    /// See [`memory_used`].
    pub fn memory_used(&self) -> u64 {
        memory_used(&self.memory)
    }
}

/// CPU used since the previous reading as a fraction of the cores the container may use:
/// `Δcontainer / Δsystem × online cpus / allowed cores`, clamped to [0, 1]. `None` when
/// there is no previous reading or the system counter did not move (nothing to divide by).
pub fn cpu_fraction(cpu: &CpuReading, allowance: &CpuAllowance) -> Option<f64> {
    let (previous_container, previous_system) = cpu.previous?;
    let system_delta = cpu
        .system_ns
        .checked_sub(previous_system)
        .filter(|d| *d > 0)?;
    // A counter that went backwards (container restarted) counts as no use.
    let container_delta = cpu.container_ns.saturating_sub(previous_container);
    let online = cpu.online_cpus.max(1);
    let cores_used = container_delta as f64 / system_delta as f64 * f64::from(online);
    let allowed = allowance.cores(online);
    if allowed <= 0.0 {
        return None;
    }
    Some((cores_used / allowed).clamp(0.0, 1.0))
}

/// Memory in use (less reclaimable cache) as a fraction of the limit, clamped to [0, 1];
/// `None` when the engine reports no limit.
pub fn mem_fraction(memory: &MemoryReading) -> Option<f64> {
    if memory.limit == 0 {
        return None;
    }
    let used = memory_used(memory);
    Some((used as f64 / memory.limit as f64).clamp(0.0, 1.0))
}

/// Memory in use in bytes, reclaimable cache left out (as `docker stats` shows it).
pub fn memory_used(memory: &MemoryReading) -> u64 {
    match memory.reclaimable {
        Some(cache) if cache < memory.usage => memory.usage - cache,
        _ => memory.usage,
    }
}

/// Reads the counters of one stats message; `None` if it has no CPU or memory figures
/// (a container that is not running reports zeros and no usage).
pub(super) fn sample_from_response(
    id: &str,
    response: &ContainerStatsResponse,
    allowance: CpuAllowance,
) -> Option<StatsSample> {
    let cpu_stats = response.cpu_stats.as_ref()?;
    let (container_ns, system_ns) = counters(cpu_stats)?;
    let online_cpus = cpu_stats
        .online_cpus
        .filter(|n| *n > 0)
        .or_else(|| {
            let percpu = cpu_stats.cpu_usage.as_ref()?.percpu_usage.as_ref()?;
            u32::try_from(percpu.len()).ok().filter(|n| *n > 0)
        })
        .unwrap_or(1);
    let previous = response
        .precpu_stats
        .as_ref()
        .and_then(counters)
        .filter(|(_, system)| *system > 0);
    let memory = response.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let reclaimable = memory.stats.as_ref().and_then(|stats| {
        ["total_inactive_file", "inactive_file", "cache"]
            .iter()
            .find_map(|key| stats.get(*key).copied())
    });
    Some(StatsSample {
        id: id.to_owned(),
        cpu: CpuReading {
            container_ns,
            system_ns,
            previous,
            online_cpus,
        },
        memory: MemoryReading {
            usage,
            reclaimable,
            limit: memory.limit.unwrap_or(0),
        },
        allowance,
    })
}

fn counters(stats: &ContainerCpuStats) -> Option<(u64, u64)> {
    let container = stats.cpu_usage.as_ref()?.total_usage?;
    Some((container, stats.system_cpu_usage?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ContainerCpuUsage, ContainerMemoryStats};

    use super::*;

    const SECOND_NS: u64 = 1_000_000_000;

    /// One second of wall time on a host with `online` cpus, during which the container
    /// used `used_ns` of CPU time.
    fn reading(online: u32, used_ns: u64) -> CpuReading {
        CpuReading {
            container_ns: 5 * SECOND_NS + used_ns,
            system_ns: 100 * SECOND_NS + u64::from(online) * SECOND_NS,
            previous: Some((5 * SECOND_NS, 100 * SECOND_NS)),
            online_cpus: online,
        }
    }

    fn close(actual: Option<f64>, expected: f64) -> bool {
        actual.is_some_and(|a| (a - expected).abs() < 1e-9)
    }

    #[test]
    fn cpu_fraction_is_relative_to_the_cores_allowed() {
        let unpinned = CpuAllowance::default();
        let pinned_one = CpuAllowance {
            cpuset_count: Some(1),
            nano_cpus: None,
        };
        let half_cpu = CpuAllowance {
            cpuset_count: None,
            nano_cpus: Some(SECOND_NS / 2),
        };
        let cases = [
            // (online cpus, cpu time used in one second, allowance, expected fraction)
            (4, SECOND_NS, unpinned, 0.25),
            (4, 4 * SECOND_NS, unpinned, 1.0),
            (4, SECOND_NS / 2, pinned_one, 0.5),
            (2, SECOND_NS / 4, half_cpu, 0.5),
            (4, 0, unpinned, 0.0),
            // More than allowed (a burst over a --cpus quota) is clamped.
            (4, 2 * SECOND_NS, pinned_one, 1.0),
        ];
        for (online, used, allowance, expected) in cases {
            let fraction = cpu_fraction(&reading(online, used), &allowance);
            assert!(
                close(fraction, expected),
                "{online} {used} {allowance:?}: {fraction:?}"
            );
        }
    }

    #[test]
    fn cores_used_are_the_fraction_times_the_cores_allowed_and_memory_leaves_cache_out() {
        let sample = |online, used, allowance| StatsSample {
            id: "c".to_owned(),
            cpu: reading(online, used),
            memory: MemoryReading {
                usage: 96,
                reclaimable: Some(32),
                limit: 128,
            },
            allowance,
        };
        let pinned_one = CpuAllowance {
            cpuset_count: Some(1),
            nano_cpus: None,
        };
        assert!(close(
            sample(4, 3 * SECOND_NS, CpuAllowance::default()).cpu_cores(),
            3.0
        ));
        assert!(close(sample(4, SECOND_NS / 2, pinned_one).cpu_cores(), 0.5));
        assert_eq!(sample(4, 0, pinned_one).memory_used(), 64);
    }

    #[test]
    fn cpuset_count_wins_over_nano_cpus() {
        let both = CpuAllowance {
            cpuset_count: Some(2),
            nano_cpus: Some(SECOND_NS / 2),
        };
        assert!(close(cpu_fraction(&reading(4, SECOND_NS), &both), 0.5));
    }

    #[test]
    fn cpu_fraction_needs_a_previous_reading_and_elapsed_system_time() {
        let first = CpuReading {
            previous: None,
            ..reading(2, SECOND_NS)
        };
        assert_eq!(cpu_fraction(&first, &CpuAllowance::default()), None);
        let still = CpuReading {
            system_ns: 100 * SECOND_NS,
            ..reading(2, SECOND_NS)
        };
        assert_eq!(cpu_fraction(&still, &CpuAllowance::default()), None);
    }

    #[test]
    fn cpu_counter_going_backwards_counts_as_idle() {
        let restarted = CpuReading {
            container_ns: 0,
            ..reading(2, SECOND_NS)
        };
        assert!(close(
            cpu_fraction(&restarted, &CpuAllowance::default()),
            0.0
        ));
    }

    #[test]
    fn mem_fraction_excludes_reclaimable_cache() {
        let cases = [
            (
                MemoryReading {
                    usage: 64,
                    reclaimable: None,
                    limit: 128,
                },
                Some(0.5),
            ),
            (
                MemoryReading {
                    usage: 96,
                    reclaimable: Some(32),
                    limit: 128,
                },
                Some(0.5),
            ),
            // Cache larger than usage (accounting lag) is ignored rather than going negative.
            (
                MemoryReading {
                    usage: 16,
                    reclaimable: Some(32),
                    limit: 128,
                },
                Some(0.125),
            ),
            (
                MemoryReading {
                    usage: 256,
                    reclaimable: None,
                    limit: 128,
                },
                Some(1.0),
            ),
            (
                MemoryReading {
                    usage: 64,
                    reclaimable: None,
                    limit: 0,
                },
                None,
            ),
        ];
        for (memory, expected) in cases {
            assert_eq!(mem_fraction(&memory), expected, "{memory:?}");
        }
    }

    fn cpu_stats(container: u64, system: u64, online: u32) -> ContainerCpuStats {
        ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(container),
                ..ContainerCpuUsage::default()
            }),
            system_cpu_usage: Some(system),
            online_cpus: Some(online),
            ..ContainerCpuStats::default()
        }
    }

    #[test]
    fn engine_sample_is_read_with_cgroup_v1_cache() {
        let response = ContainerStatsResponse {
            cpu_stats: Some(cpu_stats(3 * SECOND_NS, 12 * SECOND_NS, 2)),
            precpu_stats: Some(cpu_stats(2 * SECOND_NS, 10 * SECOND_NS, 2)),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(100),
                limit: Some(200),
                stats: Some(HashMap::from([
                    ("cache".to_owned(), 40),
                    ("total_inactive_file".to_owned(), 20),
                ])),
                ..ContainerMemoryStats::default()
            }),
            ..ContainerStatsResponse::default()
        };
        let sample =
            sample_from_response("abc", &response, CpuAllowance::default()).expect("a full sample");
        assert_eq!(sample.memory.reclaimable, Some(20));
        assert!(close(sample.cpu_fraction(), 0.5));
        assert!(close(sample.mem_fraction(), 0.4));
    }

    #[test]
    fn first_engine_sample_has_no_cpu_fraction_yet() {
        let response = ContainerStatsResponse {
            cpu_stats: Some(cpu_stats(SECOND_NS, 10 * SECOND_NS, 2)),
            precpu_stats: Some(ContainerCpuStats::default()),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(1),
                limit: Some(2),
                ..ContainerMemoryStats::default()
            }),
            ..ContainerStatsResponse::default()
        };
        let sample =
            sample_from_response("abc", &response, CpuAllowance::default()).expect("a sample");
        assert_eq!(sample.cpu.previous, None);
        assert_eq!(sample.cpu_fraction(), None);
    }

    #[test]
    fn stopped_container_sample_has_no_figures() {
        // What Docker 20.10 keeps sending for a stopped container: a zero CPU counter, no
        // system counter, empty memory stats.
        let response = ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(0),
                    ..ContainerCpuUsage::default()
                }),
                ..ContainerCpuStats::default()
            }),
            memory_stats: Some(ContainerMemoryStats::default()),
            ..ContainerStatsResponse::default()
        };
        assert_eq!(
            sample_from_response("abc", &response, CpuAllowance::default()),
            None
        );
    }
}
