//! Loopback ports for peers that must be told their port before they start (pebble's
//! validation ports, a balancer's backends, a process that cannot bind port 0 and report it).
//!
//! Binding port 0 and closing the listener hands out a port from the kernel's ephemeral range,
//! the same range every outgoing connection and every other `bind(0)` draws from: on a busy test
//! run (thousands of load connections a second) that port can be taken again before the peer
//! binds it. These ports come from below that range instead, where the kernel never picks on
//! its own, walked by one cursor per process so no port is handed out twice.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The kernel's default first ephemeral port, used when /proc cannot be read.
const DEFAULT_EPHEMERAL_LOW: u32 = 32768;
/// The lowest port handed out: clear of well-known and registered services most machines run.
const LOWEST: u32 = 10_000;

/// A loopback TCP port free on 127.0.0.1 and ::1 (when the machine has IPv6) right now,
/// below the ephemeral range. Panics when the whole range is in use: a test cannot go on.
pub fn free_port() -> u16 {
    let (low, span) = range();
    let cursor = cursor(span);
    for _ in 0..span {
        let port = low + cursor.fetch_add(1, Ordering::Relaxed) % span;
        let port = u16::try_from(port).expect("the range lies below 65536");
        if is_free(port) {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{}", low + span);
}

/// `n` distinct ports from [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// `[LOWEST, first ephemeral port)`, as (start, length).
fn range() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(DEFAULT_EPHEMERAL_LOW);
    let end = ephemeral_low.clamp(LOWEST + 1_000, 65_536);
    (LOWEST, end - LOWEST)
}

/// One cursor per process, starting at a point that differs between processes so two test
/// binaries run at once rarely walk the same ports.
fn cursor(span: u32) -> &'static AtomicU32 {
    static CURSOR: OnceLock<AtomicU32> = OnceLock::new();
    CURSOR.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        AtomicU32::new(nanos.wrapping_add(std::process::id().wrapping_mul(7919)) % span)
    })
}

/// Nothing listens on `port` on either loopback address. An IPv6 address the machine lacks
/// does not count against the port.
fn is_free(port: u16) -> bool {
    if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
        return false;
    }
    match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::AddrNotAvailable,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a failed step is a failed test")]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_below_the_ephemeral_range_and_bindable() {
        let (low, span) = range();
        let ports = free_ports(50);
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        for port in ports {
            assert!((low..low + span).contains(&u32::from(port)), "{port}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        }
    }

    #[test]
    fn a_port_in_use_on_either_loopback_address_is_not_free() {
        let port = free_port();
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        assert!(!is_free(port));
        drop(v4);
        assert!(is_free(port));
        if let Ok(v6) = TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            assert!(!is_free(port));
            drop(v6);
        }
    }
}
