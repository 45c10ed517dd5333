//! `--protocols`: the lab's apps, and the WebSocket apps with permessage-deflate offered.
//! `sse` is the SSE app's event stream (`sse://…/events`).

use clap::ValueEnum;
use protolab_load::{Scheme, Workload};
use protolab_server::Protocol;

/// `--protocols` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    /// HTTP/1.1 over TCP.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// WebSocket over TCP.
    Ws,
    /// WebSocket over TLS.
    Wss,
    /// WebSocket over TCP, offering permessage-deflate (RFC 7692).
    WsDeflate,
    /// WebSocket over TLS, offering permessage-deflate.
    WssDeflate,
    /// Server-Sent Events: the SSE app's `/events` stream (echo: a POST beside it).
    Sse,
}

impl ProtocolArg {
    /// The lab app that serves it.
    pub(super) fn protocol(self) -> Protocol {
        match self {
            Self::Http => Protocol::Http,
            Self::Https => Protocol::Https,
            Self::Ws | Self::WsDeflate => Protocol::Ws,
            Self::Wss | Self::WssDeflate => Protocol::Wss,
            Self::Sse => Protocol::Sse,
        }
    }

    /// The scheme the load generator uses, when it is not the app URL's own.
    pub(super) fn scheme(self) -> Option<Scheme> {
        match self {
            Self::Sse => Some(Scheme::Sse),
            _ => None,
        }
    }

    /// Why this protocol cannot run `workload`, if it cannot.
    pub(super) fn cannot(self, workload: Workload) -> Option<&'static str> {
        match (workload, self.protocol()) {
            (Workload::Push, Protocol::Ws | Protocol::Wss | Protocol::Sse) => None,
            (Workload::Push, _) => Some("plain HTTP has no server push"),
            _ => None,
        }
    }

    pub(super) fn deflate(self) -> bool {
        matches!(self, Self::WsDeflate | Self::WssDeflate)
    }

    /// The name in tables and results.json: the app's, with `-deflate` for compression.
    pub(super) fn name(self) -> String {
        let app = self.protocol().name();
        if self.deflate() {
            format!("{app}{DEFLATE_SUFFIX}")
        } else {
            app.to_owned()
        }
    }
}

/// Appended to a WebSocket protocol's name when its runs offer permessage-deflate.
const DEFLATE_SUFFIX: &str = "-deflate";

/// The lab app behind a protocol name of results.json (`ws-deflate` is the `ws` app).
pub(super) fn lab_protocol(name: &str) -> Option<Protocol> {
    Protocol::from_name(name.strip_suffix(DEFLATE_SUFFIX).unwrap_or(name))
}
