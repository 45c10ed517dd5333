//! The open-file limit of the servers (`up`, `proxy`, `hub`). Each connection holds a file
//! descriptor (a proxied one two), and Debian's default soft limit of 1,024 would cap a lab or
//! a hub far below what the machine serves. The servers raise the soft limit to the hard one
//! at start, as nginx's `worker_rlimit_nofile` and Redis's `maxclients` do, and say so; their
//! `--max-connections` defaults to what the raised limit holds.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors kept out of the connection budget: listeners, the runtime, stdio, key logs,
/// Redis and health-check connections.
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// The soft open-file limit before and after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// At start.
    pub before: u64,
    /// After raising it.
    pub now: u64,
}

/// Raises the soft open-file limit to the hard one (to the kernel's `fs.nr_open` when the hard
/// limit is unlimited). `None` when the limit cannot be read; an unchanged limit when it
/// cannot be raised.
pub fn raise_to_hard() -> Option<OpenFileLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let target = if hard == RLIM_INFINITY {
        std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(soft)
    } else {
        hard
    };
    if target <= soft || setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_err() {
        return Some(OpenFileLimit {
            before: soft,
            now: soft,
        });
    }
    Some(OpenFileLimit {
        before: soft,
        now: target,
    })
}

/// [`raise_to_hard`], saying on stderr when it raised the limit.
pub fn raise_and_say() -> Option<OpenFileLimit> {
    let limit = raise_to_hard();
    if let Some(OpenFileLimit { before, now }) = limit {
        if now > before {
            eprintln!("open files: soft limit raised from {before} to {now} (the hard limit)");
        }
    }
    limit
}

/// Connections `limit` open files hold when each takes `per_connection` descriptors and
/// `sharers` servers of the process share them; at least 1.
pub fn connections_allowed(limit: u64, per_connection: u64, sharers: usize) -> usize {
    let sharers = u64::try_from(sharers.max(1)).unwrap_or(u64::MAX);
    let each = limit.saturating_sub(RESERVED_DESCRIPTORS) / per_connection.max(1) / sharers;
    usize::try_from(each).unwrap_or(usize::MAX).max(1)
}

/// Raises the limit and picks `--max-connections`: `given`, or what the limit holds. Says on
/// stderr what it raised and, when derived, what it chose.
pub fn max_connections(given: Option<usize>, per_connection: u64, sharers: usize) -> usize {
    let limit = raise_and_say();
    match (given, limit) {
        (Some(given), _) => given,
        (None, Some(limit)) if limit.now != RLIM_INFINITY => {
            let derived = connections_allowed(limit.now, per_connection, sharers);
            eprintln!(
                "max connections: {derived}{} (from the open-file limit {}; --max-connections to change)",
                if sharers > 1 { " per app" } else { "" },
                limit.now
            );
            derived
        }
        (None, _) => DEFAULT_WITHOUT_LIMIT,
    }
}

/// `--max-connections` when the open-file limit is unreadable or unlimited.
pub const DEFAULT_WITHOUT_LIMIT: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_what_the_limit_holds_after_the_reserve() {
        assert_eq!(connections_allowed(20_000, 1, 1), 19_936);
        assert_eq!(connections_allowed(20_000, 1, 4), 4_984);
        assert_eq!(connections_allowed(20_000, 2, 1), 9_968);
        assert_eq!(connections_allowed(10, 1, 1), 1);
    }
}
