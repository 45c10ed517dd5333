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
    fn reads_own_cpu() {
        assert!(self_cpu().is_some());
        assert!(tree_cpu(std::process::id()).is_some());
    }
}
