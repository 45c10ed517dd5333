//! protolab's load generator. [`run`] takes a [`Config`] (built with [`Config::new`] from a
//! [`Target`]) and returns a [`Report`]: messages, throughput, HDR latency percentiles, bytes
//! on the wire per message and per handshake, connection phase timings and errors by kind.
//!
//! One client per protocol, each over `protolab_wire`'s sans-IO codecs: HTTP/1.1 keep-alive
//! (`POST` echoes) and WebSocket (binary echoes; server pushes skipped, pings answered;
//! permessage-deflate when [`Config::deflate`] offers it), over TCP or TLS (rustls). Bytes
//! are counted by a [`CountingStream`] under TLS, so they are what the network carries.
//! [`Payload`] says what messages carry ([`Payload::Json`] for compression to mean something).
//!
//! [`websocket::WebSocket`] is the same connection code as a plain client (connect, send,
//! receive, close) for tools and conformance tests.
//!
//! Workloads: [`Workload::Echo`] is a closed loop (one message in flight per connection);
//! [`Workload::Connect`] opens a new connection per exchange to time the handshakes.
//!
//! Not here: printing (the `protolab` CLI renders reports), open-loop rate control (not yet),
//! and servers (`protolab-server`; the two crates never depend on each other).

mod client;
pub mod counting;
pub mod grpc_frame;
pub mod histogram;
mod merge;
pub mod payload;
pub mod poll_answer;
pub mod report;
pub(crate) mod run;
pub mod target;
pub mod tcp_info;
pub mod tls;
pub mod websocket;
mod workload;

pub use counting::{Counters, CountingStream, Snapshot};
pub use histogram::{Latency, Summary};
pub use merge::{check_histograms, MergeError};
pub use payload::Payload;
pub use report::{Bytes, Compression, ErrorKind, Errors, Histograms, Phases, Polls, Report, Tcp};
pub use run::{check_header, run, Config, MAX_MESSAGE};
pub use target::{Scheme, Target};
pub use tls::Trust;
pub use workload::Workload;

/// Why a run could not start. Failures during the run are counted in [`Report::errors`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL could not be read.
    #[error("cannot use `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL's scheme is not one the load generator speaks.
    #[error(
        "cannot load `{url}`: unsupported scheme `{scheme}`; use one of {}",
        Scheme::ACCEPTED
    )]
    UnsupportedScheme {
        /// The URL as given.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// A request header would corrupt the request.
    #[error("bad header `{name}`: {reason}")]
    BadHeader {
        /// The header's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A setting is out of range.
    #[error("invalid load settings: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// The host name did not resolve.
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// The TLS client configuration could not be built (e.g. no usable CA certificate).
    #[error(transparent)]
    Tls(#[from] protolab_tls::Error),
}
