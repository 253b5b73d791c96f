//! CPU pinning for services with `cpunumber`: which cores an instance gets, chosen without I/O.
//!
//! A pinned instance gets cores no other pinned container on the engine holds (the cpusets
//! recorded in gru's labels, any node, any cluster). Containers that are not pinned may run
//! on every core and reserve none, as with Gru.

use std::collections::BTreeSet;

use common::config::CpuSet;

/// Why an instance cannot be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{wanted} free cpus needed but only {} of the engine's {total} are free{}",
    free.len(),
    list_suffix(free)
)]
pub struct NoFreeCores {
    pub wanted: u32,
    pub free: Vec<u32>,
    pub total: u32,
}

fn list_suffix(free: &[u32]) -> String {
    if free.is_empty() {
        String::new()
    } else {
        format!(" ({})", format_cpus(free))
    }
}

/// Picks `cpu_number` cores among the engine's that no pinned container holds.
#[derive(Debug, Clone)]
pub struct CoreAllocator {
    total: u32,
    used: BTreeSet<u32>,
}

impl CoreAllocator {
    /// `total` cores numbered `0..total` (the engine's CPU count); `in_use`: the cpusets of
    /// pinned containers. Cores outside `0..total` in a cpuset are ignored.
    pub fn new<'a>(total: u32, in_use: impl IntoIterator<Item = &'a CpuSet>) -> CoreAllocator {
        let used = in_use
            .into_iter()
            .flat_map(|set| set.cpus().iter().copied())
            .filter(|cpu| *cpu < total)
            .collect();
        CoreAllocator { total, used }
    }

    pub fn free(&self) -> Vec<u32> {
        (0..self.total)
            .filter(|cpu| !self.used.contains(cpu))
            .collect()
    }

    /// The `wanted` lowest free cores, in `--cpuset-cpus` syntax (`"0-1,3"`); `None` when
    /// `wanted` is 0 (`cpunumber` 0: not pinned).
    pub fn allocate(&self, wanted: u32) -> Result<Option<String>, NoFreeCores> {
        if wanted == 0 {
            return Ok(None);
        }
        let free = self.free();
        let count = usize::try_from(wanted).unwrap_or(usize::MAX);
        if free.len() < count {
            return Err(NoFreeCores {
                wanted,
                free,
                total: self.total,
            });
        }
        Ok(Some(format_cpus(&free[..count])))
    }
}

/// Ascending cpus in `--cpuset-cpus` syntax, runs written as ranges: `[0,1,2,5]` → `"0-2,5"`.
pub fn format_cpus(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(u32, u32)> = None;
    for &cpu in cpus {
        run = match run {
            Some((first, last)) if cpu == last + 1 => Some((first, cpu)),
            Some(done) => {
                parts.push(format_run(done));
                Some((cpu, cpu))
            }
            None => Some((cpu, cpu)),
        };
    }
    if let Some(done) = run {
        parts.push(format_run(done));
    }
    parts.join(",")
}

fn format_run((first, last): (u32, u32)) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}-{last}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(texts: &[&str]) -> Vec<CpuSet> {
        texts
            .iter()
            .map(|t| t.parse().expect("valid cpuset"))
            .collect()
    }

    #[test]
    fn lowest_free_cores_are_chosen() {
        let in_use = sets(&["0", "2"]);
        let allocator = CoreAllocator::new(6, &in_use);
        assert_eq!(allocator.allocate(1), Ok(Some("1".to_owned())));
        assert_eq!(allocator.allocate(3), Ok(Some("1,3-4".to_owned())));
        assert_eq!(allocator.allocate(4), Ok(Some("1,3-5".to_owned())));
    }

    #[test]
    fn too_few_free_cores_is_an_error_listing_the_free_ones() {
        let in_use = sets(&["0-2"]);
        let error = CoreAllocator::new(4, &in_use)
            .allocate(2)
            .expect_err("one is free");
        assert_eq!(error.free, vec![3]);
        assert_eq!(
            error.to_string(),
            "2 free cpus needed but only 1 of the engine's 4 are free (3)"
        );
        let none = CoreAllocator::new(2, &sets(&["0-1"]))
            .allocate(1)
            .expect_err("none free");
        assert_eq!(
            none.to_string(),
            "1 free cpus needed but only 0 of the engine's 2 are free"
        );
    }

    #[test]
    fn cores_beyond_the_engine_are_ignored() {
        let allocator = CoreAllocator::new(2, &sets(&["1,7"]));
        assert_eq!(allocator.free(), vec![0]);
    }

    #[test]
    fn zero_cores_means_not_pinned() {
        assert_eq!(CoreAllocator::new(0, &[]).allocate(0), Ok(None));
    }

    #[test]
    fn cpus_are_formatted_as_runs() {
        let cases: [(&[u32], &str); 5] = [
            (&[], ""),
            (&[3], "3"),
            (&[0, 1], "0-1"),
            (&[0, 1, 2, 5, 7, 8], "0-2,5,7-8"),
            (&[1, 3], "1,3"),
        ];
        for (cpus, expected) in cases {
            assert_eq!(format_cpus(cpus), expected, "{cpus:?}");
        }
    }
}
