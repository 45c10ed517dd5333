//! `--protocols`: the lab's apps, the WebSocket apps with permessage-deflate offered, the
//! HTTP/2 and gRPC apps in cleartext (prior knowledge) or over TLS, and `sse`, the SSE app's
//! event stream (`sse://…/events`); `poll` and `long-poll` are the same app's polling paths
//! (`poll://…/poll`, `long-poll://…/poll/long`), push workload only.

use clap::ValueEnum;
use protolab_load::{Scheme, Target, Workload};
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
    /// HTTP/2 over TCP with prior knowledge (h2c), on the h2 app.
    H2,
    /// HTTP/2 over TLS (ALPN h2), on the h2 app.
    H2Tls,
    /// gRPC unary Echo over h2c, on the gRPC app.
    Grpc,
    /// gRPC unary Echo over TLS, on the gRPC app.
    GrpcTls,
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
            Self::H2 | Self::H2Tls => Protocol::H2,
            Self::Grpc | Self::GrpcTls => Protocol::Grpc,
        }
    }

    /// The scheme the load generator uses, when it is not the app URL's own and not an
    /// HTTP/2 one ([`Self::h2_scheme`]).
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
            (Workload::Push, Protocol::Ws | Protocol::Wss | Protocol::Sse | Protocol::Grpc) => None,
            (Workload::Push, Protocol::H2) => {
                Some("the h2 app has no push stream (its server push is not used)")
            }
            (Workload::Push, _) => Some("plain HTTP has no server push"),
            (Workload::Fanin, Protocol::Ws | Protocol::Wss) => {
                Some("a WebSocket has no requests to multiplex")
            }
            (Workload::Fanin, Protocol::Sse) => {
                Some("an event stream has no requests to multiplex")
            }
            _ => None,
        }
    }

    /// The load generator's scheme when it is not the one in the app's URL: the HTTP/2 and
    /// gRPC apps serve cleartext and TLS on one port, and their URLs name neither h2 nor gRPC.
    pub(super) fn h2_scheme(self) -> Option<Scheme> {
        Some(match self {
            Self::H2 => Scheme::H2c,
            Self::H2Tls => Scheme::H2,
            Self::Grpc => Scheme::Grpc,
            Self::GrpcTls => Scheme::Grpcs,
            _ => return None,
        })
    }

    /// What the load generator connects to for this protocol on the app at `app_url`: the
    /// URL with this protocol's scheme and path where they are not the URL's own.
    pub(super) fn target(self, app_url: &str) -> Result<Target, protolab_load::Error> {
        let mut target = match self.h2_scheme() {
            Some(scheme) => Target::parse(&h2_url(scheme, app_url))?,
            None => Target::parse(app_url)?,
        };
        if let Some(scheme) = self.scheme() {
            target.scheme = scheme;
        }
        if let Some(path) = self.path() {
            target.path = path.to_owned();
        }
        Ok(target)
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
        } else if matches!(self, Self::H2Tls | Self::GrpcTls) {
            format!("{app}{TLS_SUFFIX}")
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

/// Appended to the h2 and gRPC apps' names when their runs use TLS.
const TLS_SUFFIX: &str = "-tls";

/// The lab app behind a protocol name of results.json (`ws-deflate` is the `ws` app,
/// `h2-tls` the `h2` app).
pub(super) fn lab_protocol(name: &str) -> Option<Protocol> {
    if name == POLL || name == LONG_POLL {
        return Some(Protocol::Sse);
    }
    let app = name.strip_suffix(DEFLATE_SUFFIX).unwrap_or(name);
    Protocol::from_name(app.strip_suffix(TLS_SUFFIX).unwrap_or(app))
}

/// `scheme://authority/` from an app's URL (`https://localhost:3005/`, or `localhost:3006`
/// for gRPC, which has no URL scheme).
pub(super) fn h2_url(scheme: Scheme, app_url: &str) -> String {
    let rest = app_url.split_once("://").map_or(app_url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_and_grpc_runs_name_their_app_and_scheme() {
        assert_eq!(ProtocolArg::H2Tls.name(), "h2-tls");
        assert_eq!(ProtocolArg::Grpc.name(), "grpc");
        assert_eq!(lab_protocol("grpc-tls"), Some(Protocol::Grpc));
        assert_eq!(lab_protocol("h2"), Some(Protocol::H2));
        assert_eq!(
            h2_url(Scheme::H2c, "https://localhost:3005/"),
            "h2c://localhost:3005/"
        );
        assert_eq!(
            h2_url(Scheme::Grpcs, "localhost:3006"),
            "grpcs://localhost:3006/"
        );
        assert_eq!(ProtocolArg::Https.h2_scheme(), None);
    }
}
