//! [`Config`]: what one load run does, its defaults, and the checks that refuse a bad one
//! before anything connects.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use protolab_wire::ws::deflate::Offer;

use crate::payload::Payload;
use crate::target::Target;
use crate::tls::Trust;
use crate::workload::Workload;
use crate::Error;

/// Largest message: the WebSocket decoder's default frame limit.
pub const MAX_MESSAGE: usize = 16 << 20;

/// One load run. Build with [`Config::new`] and change fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to send load.
    pub target: Target,
    /// What each connection does. Default [`Workload::Echo`].
    pub workload: Workload,
    /// Concurrent workers (connections for `echo`). Default 1.
    pub connections: usize,
    /// Payload bytes per message, at most [`MAX_MESSAGE`]. Default 32. HTTP sends it as a
    /// `POST` body (to `/echo` when the URL has no path), WebSocket as one binary frame.
    pub size: usize,
    /// The run stops after this long. Default 10 s.
    pub duration: Duration,
    /// ... or after this many exchanges were started, whichever comes first. Default
    /// `u64::MAX`.
    pub max_messages: u64,
    /// Open loop (echo workload only): send this many messages per second in total, spread
    /// evenly over the connections, each on a fixed schedule. Each connection still has one
    /// message in flight, so a message due while the previous one is outstanding goes out
    /// late; its latency is then measured from when it was *due*, not when it went out, so a
    /// stalled server shows up in the percentiles instead of silently lowering the send rate
    /// (coordinated omission, corrected as wrk2 does). A message sent on time is measured from
    /// its send, so the client's own timer (millisecond resolution) is not charged to the
    /// server. Default `None`: closed loop, as fast as echoes return.
    pub rate: Option<f64>,
    /// What TLS trusts (https and wss only). Default: nothing, which fails for TLS targets.
    pub trust: Trust,
    /// Let connections resume earlier TLS sessions (session tickets / PSK, RFC 8446 §2.2), as
    /// browsers do. Default `false`: every connection does a full handshake (certificate and
    /// key exchange), so `connect` measures the full cost.
    pub tls_resumption: bool,
    /// Extra request headers (`Name`, `value`), after the client's own.
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer (`Sec-WebSocket-Protocol`).
    pub subprotocols: Vec<String>,
    /// Bound on one exchange (request to whole echo). Default 5 s. A longer wait counts a
    /// [`ErrorKind::Timeout`](crate::report::ErrorKind::Timeout) and ends the connection.
    pub request_timeout: Duration,
    /// Bound on opening a connection (TCP, TLS, upgrade). Default 5 s.
    pub connect_timeout: Duration,
    /// Push workload: the interval each connection asks the server to push at. Default 10 ms.
    pub push_interval: Duration,
    /// WebSocket only: offer permessage-deflate (RFC 7692) with this offer, compress what is
    /// sent and inflate what comes back once the server accepts. Default `None`. Byte
    /// counts stay what crosses the wire; [`Report::compression`](crate::report::Report::compression) says what was agreed.
    pub deflate: Option<Offer>,
    /// What the messages carry. Default [`Payload::Alphabet`]; use [`Payload::Json`] with
    /// `deflate` (a repeated alphabet compresses to almost nothing).
    pub payload: Payload,
    /// Connect here instead of to the address the URL's host resolves to, keeping the URL's
    /// host in `Host` and the TLS server name (as curl's `--connect-to`). Default `None`.
    pub connect_to: Option<SocketAddr>,
    /// Set it to end the run early (e.g. on Ctrl-C): each worker finishes the exchange in
    /// flight and starts no other, and [`run`](super::run) reports what was measured until then.
    /// Default `None`: the run goes to `duration` or `max_messages`.
    pub stop: Option<Arc<AtomicBool>>,
    /// Echo and connect: the run's first stretch, not measured. Exchanges done within it
    /// are not in the echo latency or the throughput (which is over the time after it);
    /// bytes, phases and connect latency count every exchange. Default zero.
    pub warmup: Duration,
}

impl Config {
    /// Defaults for `target` (see each field).
    pub fn new(target: Target) -> Self {
        Self {
            target,
            workload: Workload::Echo,
            connections: 1,
            size: 32,
            duration: Duration::from_secs(10),
            max_messages: u64::MAX,
            rate: None,
            trust: Trust::Roots(protolab_tls::Roots::new()),
            tls_resumption: false,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            push_interval: Duration::from_millis(10),
            deflate: None,
            payload: Payload::Alphabet,
            connect_to: None,
            stop: None,
            warmup: Duration::ZERO,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.connections == 0 {
            return invalid("connections must be at least 1".into());
        }
        if self.warmup >= self.duration {
            return invalid("the warm-up must be shorter than the run's duration".into());
        }
        if self.size > MAX_MESSAGE {
            return invalid(format!(
                "message size {} is larger than the {MAX_MESSAGE}-byte maximum",
                self.size
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return invalid(format!("the rate must be a positive number, not {rate}"));
            }
            if self.workload != Workload::Echo {
                return invalid("a rate applies to the echo workload only".into());
            }
        }
        if self.workload == Workload::Push {
            if !self.target.scheme.is_ws()
                && !self.target.scheme.is_sse()
                && !self.target.scheme.is_grpc()
                && !self.target.scheme.is_poll()
            {
                return invalid(format!(
                    "the push workload needs a ws://, wss://, sse://, sses://, grpc://, grpcs://, poll://, polls://, long-poll:// or long-polls:// URL, not {}://",
                    self.target.scheme
                ));
            }
            if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&self.push_interval)
            {
                return invalid("the push interval must be from 1 ms to 1 hour".into());
            }
        }
        if self.workload == Workload::Fanin
            && (self.target.scheme.is_ws() || self.target.scheme.is_sse())
        {
            return invalid(format!(
                "the fanin workload needs an http(s)://, h2(c):// or grpc(s):// URL, not {}://",
                self.target.scheme
            ));
        }
        if self.target.scheme.is_poll() && self.workload != Workload::Push {
            return invalid(format!(
                "{}:// URLs run the push workload only (--workload push)",
                self.target.scheme
            ));
        }
        if self.deflate.is_some() && !self.target.scheme.is_ws() {
            return invalid(format!(
                "permessage-deflate is a WebSocket extension; the URL is {}://",
                self.target.scheme
            ));
        }
        if self.duration.is_zero() {
            return invalid("the duration must be longer than zero".into());
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        for p in &self.subprotocols {
            if p.is_empty() || !p.bytes().all(is_tchar) {
                return invalid(format!("subprotocol `{p}` is not an HTTP token"));
            }
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a request header: the name is a token, the value has no CR, LF or NUL (which would
/// let it smuggle another header or request).
pub fn check_header(name: &str, value: &str) -> Result<(), Error> {
    let bad = |reason: &'static str| Error::BadHeader {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(bad("the name must be a token (letters, digits, -, _ ...)"));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad("the value contains CR, LF or NUL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        assert!(check_header("X-Test", "a b c").is_ok());
        assert!(check_header("X-Test", "a\r\nEvil: 1").is_err());
        assert!(check_header("X Test", "a").is_err());
        assert!(check_header("", "a").is_err());
    }

    #[test]
    fn config_is_validated() {
        let target = Target::parse("http://localhost:3000/").unwrap();
        let mut c = Config::new(target);
        assert!(c.validate().is_ok());
        c.connections = 0;
        assert!(c.validate().is_err());
        c.connections = 1;
        c.size = MAX_MESSAGE + 1;
        assert!(c.validate().is_err());
    }
}
