//! CPU time of this process's threads, grouped by thread name, so `compare` can charge the
//! lab's server threads and the load generator's threads separately although both run in
//! one process; and the time they were ready to run but waited for a CPU, which says when
//! the machine rather than the protocol limited a figure.
//!
//! Linux keeps per-thread run time and run-queue wait in `/proc/self/task/<tid>/schedstat`
//! (nanoseconds, the scheduler's own accounting: the first two fields); where that file is
//! missing, `stat`'s utime + stime (10 ms ticks) is used instead and the wait is unknown (0).

use std::time::Duration;

/// `USER_HZ`: the unit of `stat`'s utime and stime on every Linux architecture.
const TICKS_PER_SEC: u64 = 100;

/// Time a group of threads ran, and waited on a run queue while ready to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Usage {
    /// On a CPU.
    pub run: Duration,
    /// Runnable but waiting for a CPU (schedstat's second field; pidstat's %wait).
    pub wait: Duration,
}

impl Usage {
    /// Both groups' time together.
    pub(super) fn plus(self, other: Self) -> Self {
        Self {
            run: self.run + other.run,
            wait: self.wait + other.wait,
        }
    }

    /// What was used between `before` (an earlier reading) and `self`.
    pub(super) fn since(self, before: Self) -> Self {
        Self {
            run: self.run.saturating_sub(before.run),
            wait: self.wait.saturating_sub(before.wait),
        }
    }
}

/// CPU time used so far by the threads whose name starts with each prefix, in order.
/// Threads that already exited are not counted, so keep the measured pools alive.
pub(super) fn by_thread_prefix(prefixes: &[&str]) -> Vec<Duration> {
    usage_by_thread_prefix(prefixes)
        .into_iter()
        .map(|u| u.run)
        .collect()
}

/// Run and run-queue wait time so far of the threads whose name starts with each prefix.
pub(super) fn usage_by_thread_prefix(prefixes: &[&str]) -> Vec<Usage> {
    let mut totals = vec![Usage::default(); prefixes.len()];
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return totals;
    };
    for task in tasks.filter_map(Result::ok) {
        let dir = task.path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let Some(slot) = prefixes.iter().position(|p| name.starts_with(p)) else {
            continue;
        };
        let used = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| parse_schedstat(&s))
            .or_else(|| {
                std::fs::read_to_string(dir.join("stat"))
                    .ok()
                    .and_then(|s| parse_stat(&s))
                    .map(|run| Usage {
                        run,
                        wait: Duration::ZERO,
                    })
            });
        if let Some(used) = used {
            totals[slot].run += used.run;
            totals[slot].wait += used.wait;
        }
    }
    totals
}

/// The first two fields of `schedstat`: nanoseconds spent running, and waiting to run.
fn parse_schedstat(s: &str) -> Option<Usage> {
    let mut fields = s.split_whitespace().map(str::parse::<u64>);
    let run = fields.next()?.ok()?;
    let wait = fields.next()?.ok()?;
    Some(Usage {
        run: Duration::from_nanos(run),
        wait: Duration::from_nanos(wait),
    })
}

/// The machine's CPU time so far, from `/proc/stat`'s `cpu` line, in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SystemTimes {
    /// Every state added up.
    pub total: u64,
    /// Time a hypervisor ran something else while this guest's CPUs wanted to run.
    pub steal: u64,
}

impl SystemTimes {
    /// The share of the machine's CPU time stolen between `before` and `self`; `None` when
    /// no time passed.
    pub(super) fn steal_share_since(self, before: Self) -> Option<f64> {
        let total = self.total.saturating_sub(before.total);
        (total > 0).then(|| self.steal.saturating_sub(before.steal) as f64 / total as f64)
    }
}

/// `/proc/stat` now; `None` where it cannot be read.
pub(super) fn system_times() -> Option<SystemTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The `cpu` line: user nice system idle iowait irq softirq steal guest guest_nice (guest
/// time is already inside user and nice, so it is not added again).
fn parse_proc_stat(s: &str) -> Option<SystemTimes> {
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(SystemTimes {
        total: fields.iter().take(8).sum(),
        steal: *fields.get(7).unwrap_or(&0),
    })
}

/// utime + stime from a `stat` line; the name (field 2) may hold spaces, so fields are
/// counted from the last `)`.
fn parse_stat(s: &str) -> Option<Duration> {
    let rest = &s[s.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis(
        (utime + stime) * 1000 / TICKS_PER_SEC,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_sources() {
        assert_eq!(
            parse_schedstat("123456789 5000 7\n"),
            Some(Usage {
                run: Duration::from_nanos(123_456_789),
                wait: Duration::from_nanos(5000)
            })
        );
        let stat = "cpu  4437255 262254 948220 5834186 22174 0 101687 7957 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            parse_proc_stat(stat),
            Some(SystemTimes {
                total: 4_437_255 + 262_254 + 948_220 + 5_834_186 + 22_174 + 101_687 + 7_957,
                steal: 7957
            })
        );
        let stat = "42 (pl load (x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_secs(3)));
        assert_eq!(parse_schedstat(""), None);
    }

    #[test]
    fn a_busy_named_thread_is_charged_to_its_group() {
        // A fixed amount of work, not a fixed wall time: on a busy machine the thread gets
        // less CPU per second, but this work always costs milliseconds of it.
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
        let spin = std::thread::Builder::new()
            .name("cpu-test-spin".into())
            .spawn(move || {
                let mut x = 1u64;
                for i in 0..20_000_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                done_tx.send(x).unwrap();
                // Stay alive until read: an exited thread's time is no longer listed.
                let _ = exit_rx.recv();
            })
            .unwrap();
        done_rx.recv().unwrap();
        let got = by_thread_prefix(&["cpu-test-spin", "no-such-thread"]);
        exit_tx.send(()).unwrap();
        spin.join().unwrap();
        assert!(got[0] >= Duration::from_millis(5), "{got:?}");
        assert_eq!(got[1], Duration::ZERO);
    }
}
