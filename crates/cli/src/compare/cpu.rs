//! CPU time of this process's threads, grouped by thread name, so `compare` can charge the
//! lab's server threads and the load generator's threads separately although both run in
//! one process.
//!
//! Linux keeps per-thread run time in `/proc/self/task/<tid>/schedstat` (nanoseconds, the
//! scheduler's own accounting); where that file is missing, `stat`'s utime + stime (10 ms
//! ticks) is used instead.

use std::time::Duration;

/// `USER_HZ`: the unit of `stat`'s utime and stime on every Linux architecture.
const TICKS_PER_SEC: u64 = 100;

/// CPU time used so far by the threads whose name starts with each prefix, in order.
/// Threads that already exited are not counted, so keep the measured pools alive.
pub(super) fn by_thread_prefix(prefixes: &[&str]) -> Vec<Duration> {
    let mut totals = vec![Duration::ZERO; prefixes.len()];
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
            });
        if let Some(used) = used {
            totals[slot] += used;
        }
    }
    totals
}

/// The first field of `schedstat`: nanoseconds spent running.
fn parse_schedstat(s: &str) -> Option<Duration> {
    s.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
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
            parse_schedstat("123456789 5 7\n"),
            Some(Duration::from_nanos(123_456_789))
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
