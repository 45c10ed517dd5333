//! Keeps the lab's runtime threads and the load generator's on separate CPUs when there are
//! at least two: left to the scheduler, both runtimes' threads migrate between the same
//! cores, and which side happens to share a core with the other (or with its own second
//! thread) changed from run to run, and with it every ratio between protocols.
//!
//! Affinity is set through nix's safe `sched_setaffinity` wrapper on each runtime thread as
//! it starts (tokio's `on_thread_start`), which covers workers and blocking-pool threads
//! alike. The split is over the CPUs this process may use (its own affinity mask, so
//! `taskset` around `protolab` is honoured), the lab first.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Which CPUs each side's threads may run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CoreSplit {
    /// The lab's runtime threads.
    pub(crate) lab: Vec<usize>,
    /// The load generator's runtime threads.
    pub(crate) load: Vec<usize>,
}

impl CoreSplit {
    /// The split for this process's CPUs, or `None` when fewer than two are allowed (or the
    /// mask cannot be read): one CPU cannot be shared out, so nothing is pinned.
    pub(crate) fn for_this_process(lab_threads: usize, load_threads: usize) -> Option<Self> {
        let allowed = allowed_cpus()
            .inspect_err(|e| tracing::debug!("reading this process's CPU affinity: {e}"))
            .ok()?;
        let split = split(&allowed, lab_threads, load_threads)?;
        tracing::debug!(
            lab = %cpu_list(&split.lab),
            load = %cpu_list(&split.load),
            "runtime threads pinned"
        );
        Some(split)
    }
}

/// The CPUs the calling thread may run on, in ascending order.
fn allowed_cpus() -> nix::Result<Vec<usize>> {
    let set = sched_getaffinity(Pid::from_raw(0))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

/// Shares `allowed` between the two sides in proportion to their threads, at least one CPU
/// each.
fn split(allowed: &[usize], lab_threads: usize, load_threads: usize) -> Option<CoreSplit> {
    if allowed.len() < 2 {
        return None;
    }
    let threads = (lab_threads + load_threads).max(1);
    let lab = (allowed.len() * lab_threads / threads).clamp(1, allowed.len() - 1);
    Some(CoreSplit {
        lab: allowed[..lab].to_vec(),
        load: allowed[lab..].to_vec(),
    })
}

/// Restricts the calling thread to `cpus`. A failure (a CPU taken away meanwhile, a
/// container that forbids it) leaves the thread where it was: the run still measures, as
/// an unpinned run does.
pub(crate) fn pin_current_thread(cpus: &[usize]) {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        if set.set(cpu).is_err() {
            return;
        }
    }
    if let Err(e) = sched_setaffinity(Pid::from_raw(0), &set) {
        tracing::debug!(?cpus, "pinning a runtime thread: {e}");
    }
}

/// Restricts this process's threads whose name starts with `prefix` to `cpus` (threads the
/// lab started itself, outside its runtime), as [`pin_current_thread`] does.
pub(crate) fn pin_threads_named(prefix: &str, cpus: &[usize]) {
    let mut set = CpuSet::new();
    for &cpu in cpus {
        if set.set(cpu).is_err() {
            return;
        }
    }
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.filter_map(Result::ok) {
        let named = std::fs::read_to_string(task.path().join("comm"))
            .is_ok_and(|name| name.starts_with(prefix));
        let tid = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok());
        if let (true, Some(tid)) = (named, tid) {
            if let Err(e) = sched_setaffinity(Pid::from_raw(tid), &set) {
                tracing::debug!(?cpus, tid, "pinning an event loop thread: {e}");
            }
        }
    }
}

/// `0-1,3` style, as the kernel writes `Cpus_allowed_list`.
fn cpu_list(cpus: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::{cpu_list, split, CoreSplit};

    #[test]
    fn cpus_are_shared_by_threads_with_one_at_least_each() {
        assert_eq!(split(&[0], 1, 1), None);
        assert_eq!(
            split(&[0, 1], 1, 1),
            Some(CoreSplit {
                lab: vec![0],
                load: vec![1]
            })
        );
        assert_eq!(
            split(&[2, 3, 5, 7], 1, 3),
            Some(CoreSplit {
                lab: vec![2],
                load: vec![3, 5, 7]
            })
        );
        // More lab threads than CPUs still leaves the load generator one.
        assert_eq!(
            split(&[0, 1, 2], 8, 1),
            Some(CoreSplit {
                lab: vec![0, 1],
                load: vec![2]
            })
        );
    }

    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    }
}
