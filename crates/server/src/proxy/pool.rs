//! Backends: which are up, how many connections each holds, how one is picked, and the
//! health checks that move them between up and down.

use std::hash::{Hash as _, Hasher as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use protolab_wire::http1::{self, HeadLimits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::{HealthCheck, Metrics, Shared};

/// How a backend is picked for a new request or tunnel (HAProxy's `balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each backend in turn (`roundrobin`).
    RoundRobin,
    /// The backend with the fewest open connections, ties in turn (`leastconn`): the right
    /// choice for long-lived WebSockets, whose count, not their arrival, is the load.
    LeastConn,
    /// A hash of the client's IP address, so one client keeps landing on one backend while
    /// the set of live backends is unchanged (`source`).
    Source,
}

impl Balance {
    /// The name used on the command line and in HAProxy (`roundrobin`, `leastconn`, `source`).
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "roundrobin",
            Self::LeastConn => "leastconn",
            Self::Source => "source",
        }
    }

    /// Parses a name as [`Balance::name`] gives it (`round-robin` and `least-conn` too).
    pub fn from_name(name: &str) -> Option<Self> {
        match name
            .trim()
            .to_ascii_lowercase()
            .replace(['-', '_'], "")
            .as_str()
        {
            "roundrobin" | "rr" => Some(Self::RoundRobin),
            "leastconn" | "leastconnections" => Some(Self::LeastConn),
            "source" | "sourcehash" | "iphash" => Some(Self::Source),
            _ => None,
        }
    }
}

/// One backend as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendState {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether health checks consider it up (always true without health checks).
    pub up: bool,
    /// Requests and tunnels it is serving right now.
    pub active: usize,
}

#[derive(Debug)]
struct Backend {
    addr: SocketAddr,
    /// `addr` as text, the Host sent for an HTTP/1.0 request that had none.
    authority: String,
    up: AtomicBool,
    active: AtomicUsize,
}

/// The backends and the balancing state.
#[derive(Debug)]
pub(crate) struct Pool {
    backends: Vec<Backend>,
    balance: Balance,
    next: AtomicUsize,
    metrics: Arc<Metrics>,
}

/// A backend chosen for one request or tunnel; counts as one of its active connections
/// until dropped.
#[derive(Debug)]
pub(crate) struct Lease<'p> {
    pool: &'p Pool,
    pub(crate) index: usize,
}

impl Lease<'_> {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.pool.backends[self.index].addr
    }

    /// The backend's address as `host:port` text.
    pub(crate) fn authority(&self) -> &str {
        &self.pool.backends[self.index].authority
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.backends[self.index]
            .active
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    pub(crate) fn new(addrs: &[SocketAddr], balance: Balance, metrics: Arc<Metrics>) -> Self {
        Self {
            backends: addrs
                .iter()
                .map(|&addr| Backend {
                    addr,
                    authority: addr.to_string(),
                    up: AtomicBool::new(true),
                    active: AtomicUsize::new(0),
                })
                .collect(),
            balance,
            next: AtomicUsize::new(0),
            metrics,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.backends.len()
    }

    /// Whether backend `index` is up (cheap: no allocation, one relaxed load).
    pub(crate) fn is_up(&self, index: usize) -> bool {
        self.backends
            .get(index)
            .is_some_and(|b| b.up.load(Ordering::Relaxed))
    }

    pub(crate) fn states(&self) -> Vec<BackendState> {
        self.backends
            .iter()
            .map(|b| BackendState {
                addr: b.addr,
                up: b.up.load(Ordering::Relaxed),
                active: b.active.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Picks an up backend not in `tried` for a client at `client`; `None` if none is left.
    pub(crate) fn pick(&self, client: IpAddr, tried: &[usize]) -> Option<Lease<'_>> {
        let candidates: Vec<usize> = (0..self.backends.len())
            .filter(|i| self.backends[*i].up.load(Ordering::Relaxed) && !tried.contains(i))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let turn = || self.next.fetch_add(1, Ordering::Relaxed);
        let index = match self.balance {
            Balance::RoundRobin => candidates[turn() % candidates.len()],
            Balance::LeastConn => {
                let start = turn();
                (0..candidates.len())
                    .map(|k| candidates[(start + k) % candidates.len()])
                    .min_by_key(|&i| self.backends[i].active.load(Ordering::Relaxed))
                    .unwrap_or(candidates[0])
            }
            Balance::Source => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                client.hash(&mut h);
                let slot = usize::try_from(h.finish() % candidates.len() as u64).unwrap_or(0);
                candidates[slot]
            }
        };
        self.backends[index].active.fetch_add(1, Ordering::Relaxed);
        Some(Lease { pool: self, index })
    }

    /// Moves backend `index` up or down; a change is logged at warn, both ways, with `reason`
    /// (an operator watching for DOWN wants to see the matching UP at the same level).
    fn set_up(&self, index: usize, up: bool, reason: &str) {
        let backend = &self.backends[index];
        if backend.up.swap(up, Ordering::Relaxed) != up {
            if up {
                tracing::warn!(backend = %backend.addr, reason, "backend is UP (health check)");
            } else {
                tracing::warn!(backend = %backend.addr, reason, "backend is DOWN (health check)");
            }
            self.metrics.backend_up(index, up);
        }
    }
}

/// Checks backend `index` every interval until shutdown, taking it out after `fall`
/// consecutive failures and back after `rise` consecutive successes.
pub(crate) async fn health_loop(shared: Arc<Shared>, index: usize, check: HealthCheck) {
    let addr = shared.config.backends[index];
    let (mut ok_run, mut fail_run) = (0u32, 0u32);
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.graceful.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // A check may take at most one interval (and the connect timeout for its connect).
        let limit = check.interval.max(std::time::Duration::from_millis(100));
        let outcome = match tokio::time::timeout(limit, probe(addr, &check.path, &shared)).await {
            Ok(Ok(status)) if (200..400).contains(&status) => Ok(status),
            Ok(Ok(status)) => Err(format!("answered {status}")),
            Ok(Err(reason)) => Err(reason),
            Err(_) => Err(format!("no answer within {limit:?}")),
        };
        shared.metrics.health_checked(index, outcome.is_ok());
        match outcome {
            Ok(status) => {
                ok_run += 1;
                fail_run = 0;
                if ok_run >= check.rise {
                    let reason =
                        format!("{ok_run} checks in a row passed, the last answered {status}");
                    shared.pool.set_up(index, true, &reason);
                }
            }
            Err(failure) => {
                tracing::debug!(backend = %addr, %failure, "health check failed");
                fail_run += 1;
                ok_run = 0;
                if fail_run >= check.fall {
                    let reason = format!("{fail_run} checks in a row failed, the last: {failure}");
                    shared.pool.set_up(index, false, &reason);
                }
            }
        }
    }
}

/// One `GET path` on a new connection; the response status.
async fn probe(addr: SocketAddr, path: &str, shared: &Shared) -> Result<u16, String> {
    let mut tcp = tokio::time::timeout(shared.config.timeouts.connect, TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| format!("connect failed: {e}"))?;
    let mut req = Vec::with_capacity(128);
    if shared.config.proxy_protocol {
        // LOCAL: "this connection is the proxy's own" (proxy-protocol.txt §2.2).
        req.extend_from_slice(&protolab_wire::proxy_v2::SIGNATURE);
        req.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    }
    http1::write_request_head(
        &mut req,
        "GET",
        path,
        &[
            ("host", addr.to_string().as_bytes()),
            ("user-agent", b"protolab-proxy-health"),
            ("connection", b"close"),
        ],
    );
    tcp.write_all(&req)
        .await
        .map_err(|e| format!("write failed: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let limits = HeadLimits::default();
    loop {
        if let Some((head, _)) =
            http1::parse_response(&buf, &limits).map_err(|e| format!("malformed response: {e}"))?
        {
            return Ok(head.status);
        }
        let mut chunk = [0u8; 1024];
        let n = tcp
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return Err("closed before answering".to_string());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance) -> Pool {
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        Pool::new(&addrs, balance, Arc::new(Metrics::new(&addrs)))
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn round_robin_takes_turns_and_skips_down_backends() {
        let p = pool(Balance::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(CLIENT, &[]).unwrap().index).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        p.set_up(1, false, "test");
        let picks: Vec<usize> = (0..4).map(|_| p.pick(CLIENT, &[]).unwrap().index).collect();
        assert!(!picks.contains(&1) && picks.contains(&0) && picks.contains(&2));
        assert!(p.pick(CLIENT, &[0, 2]).is_none());
    }

    #[test]
    fn least_conn_prefers_the_emptiest() {
        let p = pool(Balance::LeastConn);
        let a = p.pick(CLIENT, &[]).unwrap();
        let b = p.pick(CLIENT, &[]).unwrap();
        let c = p.pick(CLIENT, &[]).unwrap();
        let mut held = [a.index, b.index, c.index];
        held.sort_unstable();
        assert_eq!(held, [0, 1, 2], "one each");
        drop(b);
        let freed = held
            .iter()
            .find(|&&i| i != a.index && i != c.index)
            .copied();
        assert_eq!(Some(p.pick(CLIENT, &[]).unwrap().index), freed);
    }

    #[test]
    fn source_hash_is_sticky_per_client() {
        let p = pool(Balance::Source);
        let first = p.pick(CLIENT, &[]).unwrap().index;
        for _ in 0..5 {
            assert_eq!(p.pick(CLIENT, &[]).unwrap().index, first);
        }
        let spread: std::collections::HashSet<usize> = (0..50u8)
            .map(|i| p.pick(IpAddr::from([10, 0, 0, i]), &[]).unwrap().index)
            .collect();
        assert!(spread.len() > 1, "clients spread over backends");
    }

    #[test]
    fn balance_names() {
        for b in [Balance::RoundRobin, Balance::LeastConn, Balance::Source] {
            assert_eq!(Balance::from_name(b.name()), Some(b));
        }
        assert_eq!(Balance::from_name("least-conn"), Some(Balance::LeastConn));
        assert_eq!(Balance::from_name("random"), None);
    }
}
