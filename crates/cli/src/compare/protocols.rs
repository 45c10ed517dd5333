//! `--protocols`: the lab's apps, and the WebSocket apps with permessage-deflate offered.
//! `sse` is the SSE app's event stream (`sse://…/events`); `poll` and `long-poll` are the
//! same app's polling paths (`poll://…/poll`, `long-poll://…/poll/long`), push workload only.

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
    /// Plain polling of the SSE app's `/poll` every push interval (push workload only).
    Poll,
    /// Long polling of the SSE app's `/poll/long` (push workload only).
    LongPoll,
}

impl ProtocolArg {
    /// The lab app that serves it.
    pub(super) fn protocol(self) -> Protocol {
        match self {
            Self::Http => Protocol::Http,
            Self::Https => Protocol::Https,
            Self::Ws | Self::WsDeflate => Protocol::Ws,
            Self::Wss | Self::WssDeflate => Protocol::Wss,
            Self::Sse | Self::Poll | Self::LongPoll => Protocol::Sse,
        }
    }

    /// The scheme the load generator uses, when it is not the app URL's own.
    pub(super) fn scheme(self) -> Option<Scheme> {
        match self {
            Self::Sse => Some(Scheme::Sse),
            Self::Poll => Some(Scheme::Poll),
            Self::LongPoll => Some(Scheme::LongPoll),
            _ => None,
        }
    }

    /// The path the load generator asks for, when it is not the app URL's own.
    pub(super) fn path(self) -> Option<&'static str> {
        match self {
            Self::Poll => Some("/poll"),
            Self::LongPoll => Some("/poll/long"),
            _ => None,
        }
    }

    /// Why this protocol cannot run `workload`, if it cannot.
    pub(super) fn cannot(self, workload: Workload) -> Option<&'static str> {
        if matches!(self, Self::Poll | Self::LongPoll) && workload != Workload::Push {
            return Some("polling carries server pushes only");
        }
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
        if let Some(polling) = self.polling_name() {
            polling.to_owned()
        } else if self.deflate() {
            format!("{app}{DEFLATE_SUFFIX}")
        } else {
            app.to_owned()
        }
    }
}

impl ProtocolArg {
    /// `poll` or `long-poll`: names of their own, though the SSE app serves them.
    fn polling_name(self) -> Option<&'static str> {
        match self {
            Self::Poll => Some(POLL),
            Self::LongPoll => Some(LONG_POLL),
            _ => None,
        }
    }
}

const POLL: &str = "poll";
const LONG_POLL: &str = "long-poll";

/// Appended to a WebSocket protocol's name when its runs offer permessage-deflate.
const DEFLATE_SUFFIX: &str = "-deflate";

/// The lab app behind a protocol name of results.json (`ws-deflate` is the `ws` app).
pub(super) fn lab_protocol(name: &str) -> Option<Protocol> {
    if name == POLL || name == LONG_POLL {
        return Some(Protocol::Sse);
    }
    Protocol::from_name(name.strip_suffix(DEFLATE_SUFFIX).unwrap_or(name))
}
