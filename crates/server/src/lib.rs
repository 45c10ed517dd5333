//! The lab's servers: one listener per protocol, accept loops with connection limits, HTTP/1.1
//! and WebSocket connection handling, graceful shutdown, and the apps behind them.
//!
//! The principal type is [`Lab`]: [`Lab::start`] binds every requested [`Protocol`] from a
//! [`LabConfig`], and [`Lab::shutdown`] stops accepting, closes WebSockets with 1001 and drains
//! within a timeout. Each connection is one task; every wait on the peer has a timeout from
//! [`Limits`].
//!
//! What this crate does *not* do: parse bytes (that is `protolab-wire`), make certificates
//! (`protolab-tls`), read environment variables or files, print, or install signal handlers —
//! the CLI owns those and hands in a ready `rustls::ServerConfig`.

mod apps;
mod budget;
mod cancel;
mod conn;
mod ctx;
mod events;
mod footprint;
mod grpc;
mod h2;
mod io;
mod lab;
mod lend;
mod limits;
mod listen;
pub mod proxy;
mod ratelog;
mod sse;
mod ws;
mod ws_core;
mod wsloop;

pub use apps::birds;
pub use lab::{Endpoint, Lab, LabConfig, Protocol, ShutdownReport, WsRuntime};
pub use limits::{H2Limits, Limits};
pub use listen::{bind_listener, LISTEN_BACKLOG};
pub use wsloop::WS_LOOP_THREADS;

use thiserror::Error;

/// What can go wrong starting or running the lab.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The port is taken by another process (or another protolab).
    #[error("port {port} on {ip} is already in use ({protocol} app): stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) or pick another port")]
    PortInUse {
        /// The protocol whose listener failed.
        protocol: Protocol,
        /// Address we tried.
        ip: std::net::IpAddr,
        /// Port we tried.
        port: u16,
    },
    /// Binding failed for another reason (permission for ports < 1024, address not local ...).
    #[error("cannot listen on {addr} for the {protocol} app: {source}")]
    Bind {
        /// The protocol whose listener failed.
        protocol: Protocol,
        /// Address we tried.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The WS app's event loop could not start (no epoll set or thread).
    #[error("cannot start the WS app's event loop: {0}")]
    EventLoop(#[source] std::io::Error),
    /// A TLS protocol was requested without a TLS server config.
    #[error("the {0} app needs a certificate, but no TLS configuration was given")]
    MissingTls(Protocol),
    /// The gRPC app's reflection service refused lab.proto's descriptors (a build fault).
    #[error("the gRPC app cannot serve reflection for lab.proto: {0}")]
    GrpcReflection(#[source] tonic_reflection::server::Error),
    /// The proxy was started without a backend.
    #[error("the proxy needs at least one backend (--backend HOST:PORT)")]
    NoBackends,
    /// A proxy listener asks for TLS but no TLS server config was given.
    #[error("the proxy listener {0} terminates TLS, but no TLS configuration was given")]
    ProxyTls(std::net::SocketAddr),
    /// A proxy listener's port is taken.
    #[error("{0} is already in use (proxy listener): stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) or pick another port", port = .0.port())]
    ProxyPortInUse(std::net::SocketAddr),
    /// Binding a proxy listener failed for another reason.
    #[error("cannot listen on {addr} for the proxy: {source}")]
    ProxyBind {
        /// Address we tried.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;
