//! What each connection of a run does: shared by the run's [`Config`](crate::Config) and its
//! [`Report`](crate::Report).

use serde::{Deserialize, Serialize};

/// What each connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Closed loop: each connection stays open and keeps one message in flight, sending the
    /// next as soon as the echo of the last arrives.
    #[default]
    Echo,
    /// A new connection per exchange: connect, TLS handshake, upgrade, one echo, close.
    Connect,
    /// Server to client: each connection (ws/wss only) asks the server for a push every
    /// [`Config::push_interval`](crate::Config::push_interval) (`?push_ms=N` on the upgrade URL, as the lab's WS app
    /// understands) and measures each push's delivery delay from the `sent_at_us` timestamp
    /// it carries. Client and server must share a clock (the same machine).
    Push,
    /// Many requests in flight on one connection: [`Config::connections`](crate::Config::connections)
    /// concurrent request streams, each a closed loop, multiplexed on ONE HTTP/2 connection
    /// for h2, h2c, grpc and grpcs; for HTTP/1.1 (one request in flight per connection) the
    /// same concurrency takes as many connections, as in `echo`.
    Fanin,
}

impl Workload {
    /// `echo`, `connect`, `push` or `fanin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Echo => "echo",
            Self::Connect => "connect",
            Self::Push => "push",
            Self::Fanin => "fanin",
        }
    }
}
