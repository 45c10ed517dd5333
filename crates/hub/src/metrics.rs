//! The hub's counters and their Prometheus text exposition (`GET /metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hub::Hub;

/// How a subscriber is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/connection/ws`.
    WebSocket,
    /// `/connection/sse`.
    Sse,
    /// socket.io (`/socket.io/`).
    SocketIo,
}

impl Transport {
    /// Every transport, in the order metrics list them.
    pub const ALL: [Self; 3] = [Self::WebSocket, Self::Sse, Self::SocketIo];

    /// The transport's label value in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::SocketIo => "socketio",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::WebSocket => 0,
            Self::Sse => 1,
            Self::SocketIo => 2,
        }
    }
}

/// Counters every endpoint updates; read by `/metrics`. Relaxed atomics: each is a statistic on
/// its own, never used to order anything.
#[derive(Debug, Default)]
pub struct Metrics {
    delivered: [AtomicU64; 3],
    connections: [AtomicU64; 3],
    slow_disconnects: [AtomicU64; 3],
    refused: AtomicU64,
}

impl Metrics {
    /// Counts `n` notifications written to subscribers of `transport`.
    pub fn delivered(&self, transport: Transport, n: u64) {
        self.delivered[transport.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a subscriber disconnected because it fell too far behind.
    pub fn slow_disconnect(&self, transport: Transport) {
        self.slow_disconnects[transport.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a publish or subscribe refused for authentication or authorization.
    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a subscriber connection of `transport` opened; pair with [`Self::closed`].
    pub fn opened(&self, transport: Transport) {
        self.connections[transport.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a subscriber connection of `transport` closed.
    pub fn closed(&self, transport: Transport) {
        self.connections[transport.index()].fetch_sub(1, Ordering::Relaxed);
    }

    /// Notifications written to subscribers of `transport` since the hub started.
    pub fn delivered_total(&self, transport: Transport) -> u64 {
        self.delivered[transport.index()].load(Ordering::Relaxed)
    }

    /// Publishes and subscribes refused so far.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Subscriber connections open now, all transports together.
    pub fn total_connections(&self) -> u64 {
        Transport::ALL.iter().map(|&t| self.connections(t)).sum()
    }

    /// Open connections of `transport` now.
    pub fn connections(&self, transport: Transport) -> u64 {
        self.connections[transport.index()].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of these counters and `hub`'s.
    pub fn render(&self, hub: &Hub) -> String {
        let (published, duplicates) = hub.counts();
        let channels = hub.channel_count();
        let mut out = String::with_capacity(2048);
        let mut scalar = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        scalar(
            "protolab_hub_published_total",
            "counter",
            "Notifications published (duplicates not counted).",
            published,
        );
        scalar(
            "protolab_hub_duplicates_total",
            "counter",
            "Publications refused as repeats of an idempotency key still in history.",
            duplicates,
        );
        scalar(
            "protolab_hub_channels",
            "gauge",
            "Channels the hub holds.",
            u64::try_from(channels).unwrap_or(u64::MAX),
        );
        scalar(
            "protolab_hub_auth_refused_total",
            "counter",
            "Publishes and subscribes refused by API key, JWT or Origin checks.",
            self.refused.load(Ordering::Relaxed),
        );
        let families: [(&str, &str, &str, &[AtomicU64; 3]); 3] = [
            (
                "protolab_hub_delivered_total",
                "counter",
                "Notifications written to subscribers, by transport.",
                &self.delivered,
            ),
            (
                "protolab_hub_connections",
                "gauge",
                "Subscriber connections open now, by transport.",
                &self.connections,
            ),
            (
                "protolab_hub_slow_subscriber_disconnects_total",
                "counter",
                "Subscribers disconnected for falling more than the subscriber queue behind.",
                &self.slow_disconnects,
            ),
        ];
        for (name, kind, help, values) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for transport in Transport::ALL {
                let value = values[transport.index()].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{transport=\"{}\"}} {value}",
                    transport.as_str()
                );
            }
        }
        out
    }
}
