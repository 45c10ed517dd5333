//! Counters of the proxy, and `/metrics` in the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protolab_wire::http1::{self, HeadLimits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::Shared;

/// What the proxy has done since it started. Every counter is monotonic except the gauges
/// noted; all are relaxed atomics (a scrape may see one counter a request ahead of another).
#[derive(Debug)]
pub struct Metrics {
    requests: AtomicU64,
    /// Responses by class: 1xx (other than 101), 2xx, 3xx, 4xx, 5xx.
    responses: [AtomicU64; 5],
    tunnels: AtomicU64,
    tunnels_open: AtomicU64,
    bytes_from_clients: AtomicU64,
    bytes_to_clients: AtomicU64,
    tls_failures: AtomicU64,
    per_backend: Vec<BackendCounters>,
}

#[derive(Debug)]
struct BackendCounters {
    requests: AtomicU64,
    connect_failures: AtomicU64,
    transitions: AtomicU64,
    checks_passed: AtomicU64,
    checks_failed: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(backends: &[SocketAddr]) -> Self {
        Self {
            requests: AtomicU64::new(0),
            responses: Default::default(),
            tunnels: AtomicU64::new(0),
            tunnels_open: AtomicU64::new(0),
            bytes_from_clients: AtomicU64::new(0),
            bytes_to_clients: AtomicU64::new(0),
            tls_failures: AtomicU64::new(0),
            per_backend: backends
                .iter()
                .map(|_| BackendCounters {
                    requests: AtomicU64::new(0),
                    connect_failures: AtomicU64::new(0),
                    transitions: AtomicU64::new(0),
                    checks_passed: AtomicU64::new(0),
                    checks_failed: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Requests received (each upgrade request counts once, as a request).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Tunnels opened (101 passed through).
    pub fn tunnels(&self) -> u64 {
        self.tunnels.load(Ordering::Relaxed)
    }

    /// Responses sent with a status in `class` (1..=5), the proxy's own errors included.
    pub fn responses(&self, class: usize) -> u64 {
        class
            .checked_sub(1)
            .and_then(|i| self.responses.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    pub(crate) fn request(&self, backend: Option<usize>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(b) = backend.and_then(|i| self.per_backend.get(i)) {
            b.requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn response(&self, status: u16) {
        if let Some(c) = (usize::from(status / 100))
            .checked_sub(1)
            .and_then(|i| self.responses.get(i))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn connect_failed(&self, backend: usize) {
        if let Some(b) = self.per_backend.get(backend) {
            b.connect_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn backend_up(&self, backend: usize, _up: bool) {
        if let Some(b) = self.per_backend.get(backend) {
            b.transitions.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn health_checked(&self, backend: usize, passed: bool) {
        if let Some(b) = self.per_backend.get(backend) {
            let counter = if passed {
                &b.checks_passed
            } else {
                &b.checks_failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn tunnel_opened(&self) {
        self.tunnels.fetch_add(1, Ordering::Relaxed);
        self.tunnels_open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn tunnel_closed(&self) {
        self.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn bytes(&self, from_client: u64, to_client: u64) {
        self.bytes_from_clients
            .fetch_add(from_client, Ordering::Relaxed);
        self.bytes_to_clients
            .fetch_add(to_client, Ordering::Relaxed);
    }

    pub(crate) fn tls_failed(&self) {
        self.tls_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every counter, with backend states from `shared`.
    pub(crate) fn render(&self, shared: &Shared) -> String {
        let mut o = String::with_capacity(2048);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                let _ = writeln!(o, "{name}{labels} {v}");
            }
        };
        metric(
            "protolab_proxy_requests_total",
            "counter",
            "HTTP requests received, upgrade requests included.",
            &[(String::new(), load(&self.requests))],
        );
        let classes: Vec<(String, u64)> = self
            .responses
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("{{class=\"{}xx\"}}", i + 1), load(c)))
            .collect();
        metric(
            "protolab_proxy_responses_total",
            "counter",
            "Responses sent to clients by status class (101 counts as a tunnel).",
            &classes,
        );
        metric(
            "protolab_proxy_tunnels_total",
            "counter",
            "Upgraded connections (WebSocket tunnels) opened.",
            &[(String::new(), load(&self.tunnels))],
        );
        metric(
            "protolab_proxy_tunnels_open",
            "gauge",
            "Upgraded connections open now.",
            &[(String::new(), load(&self.tunnels_open))],
        );
        metric(
            "protolab_proxy_bytes_total",
            "counter",
            "Bytes relayed, by direction (HTTP bodies, heads and tunnel payload as forwarded).",
            &[
                (
                    "{direction=\"client_to_backend\"}".into(),
                    load(&self.bytes_from_clients),
                ),
                (
                    "{direction=\"backend_to_client\"}".into(),
                    load(&self.bytes_to_clients),
                ),
            ],
        );
        metric(
            "protolab_proxy_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            &[(String::new(), load(&self.tls_failures))],
        );
        let states = shared.pool.states();
        let per = |f: &dyn Fn(usize) -> u64| -> Vec<(String, u64)> {
            states
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("{{backend=\"{}\"}}", s.addr), f(i)))
                .collect()
        };
        metric(
            "protolab_proxy_backend_up",
            "gauge",
            "1 if health checks consider the backend up.",
            &per(&|i| u64::from(states[i].up)),
        );
        metric(
            "protolab_proxy_backend_active",
            "gauge",
            "Requests and tunnels the backend is serving now.",
            &per(&|i| states[i].active as u64),
        );
        metric(
            "protolab_proxy_backend_requests_total",
            "counter",
            "Requests and tunnels sent to the backend.",
            &per(&|i| self.per_backend.get(i).map_or(0, |b| load(&b.requests))),
        );
        metric(
            "protolab_proxy_backend_connect_failures_total",
            "counter",
            "TCP connects to the backend that failed or timed out.",
            &per(&|i| {
                self.per_backend
                    .get(i)
                    .map_or(0, |b| load(&b.connect_failures))
            }),
        );
        metric(
            "protolab_proxy_backend_transitions_total",
            "counter",
            "Times health checks moved the backend between up and down.",
            &per(&|i| self.per_backend.get(i).map_or(0, |b| load(&b.transitions))),
        );
        let checks: Vec<(String, u64)> = states
            .iter()
            .zip(&self.per_backend)
            .flat_map(|(s, b)| {
                [("passed", &b.checks_passed), ("failed", &b.checks_failed)].map(|(result, c)| {
                    (
                        format!("{{backend=\"{}\",result=\"{result}\"}}", s.addr),
                        load(c),
                    )
                })
            })
            .collect();
        metric(
            "protolab_proxy_health_checks_total",
            "counter",
            "Health checks run against the backend, by result.",
            &checks,
        );
        o
    }
}

/// Answers `GET /metrics` on `listener`, one request per connection, until shutdown.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (mut tcp, _) = tokio::select! {
            () = shared.graceful.cancelled() => return,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let answer = async {
                let mut buf = Vec::with_capacity(1024);
                let limits = HeadLimits::default();
                let head = loop {
                    match http1::parse_request(&buf, &limits) {
                        Ok(Some((head, _))) => break Some(head),
                        Ok(None) => {}
                        Err(_) => break None,
                    }
                    let mut chunk = [0u8; 1024];
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let (status, body) = match head {
                    Some(h) if h.method == "GET" && h.path() == "/metrics" => {
                        (200, shared.metrics.render(&shared))
                    }
                    Some(_) => (404, "only GET /metrics is served here\n".to_string()),
                    None => (400, "malformed request\n".to_string()),
                };
                let mut out = Vec::with_capacity(body.len() + 128);
                let len = body.len().to_string();
                http1::write_response_head(
                    &mut out,
                    status,
                    &[
                        ("content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                        ("content-length", len.as_bytes()),
                        ("connection", b"close"),
                    ],
                );
                out.extend_from_slice(body.as_bytes());
                let _ = tcp.write_all(&out).await;
                let _ = tcp.shutdown().await;
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
        });
    }
}
