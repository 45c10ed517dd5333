//! CPU time of a process (and its descendants) from `/proc`, so a figure can be read per
//! CPU-second and stays honest when the load client, not the server, is the bottleneck.

use std::time::Duration;

/// Linux reports `utime`/`stime` in clock ticks of `USER_HZ`, which is 100 on every
/// architecture Linux exports to user space through `/proc` (the kernel converts to it).
const TICKS_PER_SEC: f64 = 100.0;

/// User plus system CPU time of one process, all its threads included (`/proc/<pid>/stat`
/// fields 14 and 15). `None` if the process is gone.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU time of this process.
pub fn self_cpu() -> Option<Duration> {
    stat_cpu("/proc/self/stat")
}

/// CPU time of `pid` and every live descendant (nginx's worker is its master's child).
/// A descendant that exited between two readings makes the figure dip; the bench's servers
/// keep their processes for the whole run.
pub fn tree_cpu(pid: u32) -> Option<Duration> {
    let mut total = process_cpu(pid)?;
    let mut stack = children(pid);
    while let Some(child) = stack.pop() {
        if let Some(cpu) = process_cpu(child) {
            total += cpu;
        }
        stack.extend(children(child));
    }
    Some(total)
}

/// Direct children of `pid`, from `/proc/<pid>/task/*/children`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

fn stat_cpu(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat)
}

/// Parses utime + stime out of a `stat` line. The command name (field 2) is in parentheses
/// and may contain spaces, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state(3) ppid(4) ... utime is field 14, i.e. the 12th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / TICKS_PER_SEC,
    ))
}

/// User and system CPU time of one process, in clock ticks, as `/proc/<pid>/stat` has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSplit {
    /// `utime` (field 14).
    pub user_ticks: u64,
    /// `stime` (field 15).
    pub system_ticks: u64,
}

/// [`CpuSplit`] of `pid`, all its threads included; `None` if the process is gone.
pub fn process_cpu_split(pid: u32) -> Option<CpuSplit> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_split(&stat)
}

fn parse_stat_split(stat: &str) -> Option<CpuSplit> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let user_ticks = fields.nth(11)?.parse().ok()?;
    let system_ticks = fields.next()?.parse().ok()?;
    Some(CpuSplit {
        user_ticks,
        system_ticks,
    })
}

/// User and system CPU microseconds per message between two snapshots of the same process:
/// `None` when no message was echoed or the counters went backwards (a different process).
pub fn micros_per_message(before: CpuSplit, after: CpuSplit, messages: u64) -> Option<(f64, f64)> {
    if messages == 0 {
        return None;
    }
    let user = after.user_ticks.checked_sub(before.user_ticks)?;
    let system = after.system_ticks.checked_sub(before.system_ticks)?;
    let per = |ticks: u64| ticks as f64 / TICKS_PER_SEC * 1e6 / messages as f64;
    Some((per(user), per(system)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let line =
            "1234 (web (x) 1) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1";
        assert_eq!(parse_stat(line), Some(Duration::from_secs(3)));
    }

    #[test]
    fn splits_user_and_system_per_message() {
        let before =
            parse_stat_split("9 (node) S 1 9 9 0 -1 0 0 0 0 0 1000 200 0 0 20 0 1 0 1 1 1")
                .unwrap();
        let after = parse_stat_split("9 (node) S 1 9 9 0 -1 0 0 0 0 0 1150 290 0 0 20 0 1 0 1 1 1")
            .unwrap();
        assert_eq!((after.user_ticks, after.system_ticks), (1150, 290));
        // 150 ticks = 1.5 s user and 0.9 s system over 100,000 messages.
        let (user, system) = micros_per_message(before, after, 100_000).unwrap();
        assert!((user - 15.0).abs() < 1e-9, "{user}");
        assert!((system - 9.0).abs() < 1e-9, "{system}");
        assert_eq!(micros_per_message(before, after, 0), None);
        assert_eq!(micros_per_message(after, before, 10), None);
    }

    #[test]
    fn reads_own_cpu() {
        assert!(self_cpu().is_some());
        assert!(tree_cpu(std::process::id()).is_some());
    }
}
