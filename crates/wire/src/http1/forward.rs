//! What an HTTP/1.1 intermediary sends on: request and response heads rewritten for the next
//! hop (RFC 9110 §7.6), from heads this crate parsed.
//!
//! The framing the next hop reads is *generated* from the [`BodyFraming`] this hop parsed:
//! `Content-Length` and `Transfer-Encoding` as received are never copied, so no field trick
//! (duplicates, lists, odd spellings, a `Connection` option naming them) can make two hops
//! disagree about where a message ends (RFC 9112 §11.2). [`BodyRelay`](super::BodyRelay)
//! re-frames the body to match.
//!
//! `Connection` options name hop-by-hop fields the sender wants removed (RFC 9110 §7.6.1),
//! but "a sender MUST NOT send a connection option corresponding to a field that is intended
//! for all recipients": a request whose `Connection` names `Content-Length`,
//! `Transfer-Encoding` or `Host` is refused with 400 ([`Refusal::NominatesEndToEnd`]) rather
//! than repaired. Such a request only exists to make hops disagree; refusing it is what the
//! strictest proxies do, costs no legitimate client anything, and is visible (a 400 in the
//! metrics) where silently ignoring the option would hide the attempt. A *response* naming
//! them is relayed with the option ignored: its framing is restated anyway, so the client
//! cannot be desynchronized, and a backend's quirk should not become a 502.

use std::borrow::Cow;
use std::net::IpAddr;

use thiserror::Error;

use super::encode::write_field;
use super::{
    framing, reason_phrase, write_decimal, BodyFraming, HeadError, Header, Headers as _,
    RequestHead, ResponseHead,
};

/// Fields that are hop-by-hop whatever `Connection` says (RFC 9110 §7.6.1, plus the
/// non-standard ones proxies still see): never forwarded as received.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields a `Connection` option may not remove: every hop needs them to find the message's
/// end and its target.
const END_TO_END: &[&str] = &["content-length", "transfer-encoding", "host"];

/// How the `X-Forwarded-For` and `Forwarded` fields a client sent are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedFor {
    /// Keep the client's entries, in order, and add this hop's last (RFC 7239 §4; nginx's
    /// `$proxy_add_x_forwarded_for`). Right behind another proxy that is trusted to have
    /// written them. The default.
    #[default]
    Append,
    /// Drop what the client sent and send only the address this hop saw. Right when this hop
    /// is the edge: a client cannot make the backend believe in hops that never were.
    Replace,
}

impl ForwardedFor {
    /// The name used on the command line: `append` or `replace`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Append => "append",
            Self::Replace => "replace",
        }
    }
}

/// The connection a request arrived on, as the forwarding fields describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The client's address as this hop saw it.
    pub client: IpAddr,
    /// Whether the client connection was TLS (`proto=https`).
    pub tls: bool,
    /// What happens to forwarding fields the client sent.
    pub forwarded_for: ForwardedFor,
}

/// Why a request is not forwarded. Each variant maps to one status via [`Refusal::status`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The head's own rules: Host (RFC 9112 §3.2) or framing (RFC 9112 §6.3).
    #[error(transparent)]
    Head(#[from] HeadError),
    /// `Connection` names a field every hop must see.
    #[error("Connection names {field}, a field every hop must see (RFC 9110 §7.6.1)")]
    NominatesEndToEnd {
        /// The field named, lowercase.
        field: &'static str,
    },
    /// A field whose name reads as `Content-Length`, `Transfer-Encoding` or `Host` once its
    /// `_` are read as `-`, as CGI-style stacks behind proxies do (nginx drops every such
    /// field by default): relayed, it would be framing only the backend sees.
    #[error("field {name:?} reads as an end-to-end field when `_` is read as `-`")]
    Lookalike {
        /// The field's name as sent.
        name: String,
    },
    /// A transfer coding other than `chunked`: this hop would have to pass on a coding it
    /// does not implement (RFC 9112 §6.1: 501).
    #[error("transfer codings other than chunked are not relayed")]
    TransferCoding,
    /// A request target in none of the forms a reverse proxy serves.
    #[error("request target {reason}")]
    Target {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `CONNECT`: a tunnel request meant for a forward proxy.
    #[error("CONNECT is not served here (this is a reverse proxy)")]
    Connect,
}

impl Refusal {
    /// The status a proxy answers before closing the connection.
    pub fn status(&self) -> u16 {
        match self {
            Self::Head(e) => e.status(),
            Self::NominatesEndToEnd { .. } | Self::Lookalike { .. } | Self::Target { .. } => 400,
            Self::TransferCoding => 501,
            Self::Connect => 405,
        }
    }
}

/// A request head that may be forwarded, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// How its body is framed; the next hop gets the same framing, restated.
    pub framing: BodyFraming,
    /// Whether it asks for an upgrade (`Connection: upgrade` and an `Upgrade` field), which
    /// is forwarded with it.
    pub upgrade: bool,
}

/// Decides whether `head` may be forwarded: one Host, unambiguous framing (RFC 9112 §3.2,
/// §6.3), no `Connection` option naming an end-to-end field, only the `chunked` transfer
/// coding, an origin-form, absolute-form (with a plain authority) or `OPTIONS *` target, and
/// not `CONNECT`.
pub fn check_request(head: &RequestHead) -> Result<Accepted, Refusal> {
    head.check_host()?;
    let framing = head.body_framing()?;
    if head.method.eq_ignore_ascii_case("CONNECT") {
        return Err(Refusal::Connect);
    }
    if let Some(field) = nominated_end_to_end(&head.headers) {
        return Err(Refusal::NominatesEndToEnd { field });
    }
    if let Some(h) = head.headers.iter().find(|h| is_lookalike(&h.name)) {
        return Err(Refusal::Lookalike {
            name: h.name.clone(),
        });
    }
    if framing == BodyFraming::Chunked && !framing::only_chunked(&head.headers) {
        return Err(Refusal::TransferCoding);
    }
    check_target(head)?;
    Ok(Accepted {
        framing,
        upgrade: head.has_token("connection", "upgrade") && head.header("upgrade").is_some(),
    })
}

/// The first field of [`END_TO_END`] a `Connection` option names.
fn nominated_end_to_end(headers: &[Header]) -> Option<&'static str> {
    connection_options(headers).find_map(|option| {
        END_TO_END
            .iter()
            .find(|f| f.as_bytes().eq_ignore_ascii_case(option))
            .copied()
    })
}

/// Every option of every `Connection` field, trimmed, empty list elements skipped.
fn connection_options(headers: &[Header]) -> impl Iterator<Item = &[u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|o| !o.is_empty())
}

/// `Content_Length`, `transfer_encoding` ...: an end-to-end field's name with `_` for `-`.
fn is_lookalike(name: &str) -> bool {
    name.contains('_')
        && END_TO_END.iter().any(|f| {
            f.len() == name.len()
                && f.bytes()
                    .zip(name.bytes())
                    .all(|(f, n)| f == n.to_ascii_lowercase() || (f == b'-' && n == b'_'))
        })
}

fn check_target(head: &RequestHead) -> Result<(), Refusal> {
    let target = head.target.as_str();
    if target.starts_with('/') {
        return Ok(());
    }
    if target == "*" {
        // RFC 9112 §3.2.4: asterisk-form is only for a server-wide OPTIONS.
        return if head.method == "OPTIONS" {
            Ok(())
        } else {
            Err(Refusal::Target {
                reason: "* is only allowed with OPTIONS",
            })
        };
    }
    match head.target_authority() {
        Some(authority) if is_plain_authority(authority) => Ok(()),
        Some(_) => Err(Refusal::Target {
            reason: "has an empty or unusable authority",
        }),
        None => Err(Refusal::Target {
            reason: "is not in origin or absolute form",
        }),
    }
}

/// `uri-host [ ":" port ]` without userinfo (RFC 9110 §4.2.4 deprecates it, and an `@` is
/// where parsers disagree about the host).
fn is_plain_authority(authority: &str) -> bool {
    !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(&b))
}

/// The Host the next hop gets: from an absolute-form target if there is one (RFC 9112
/// §3.2.2: a proxy MUST replace Host with the target's authority), else the request's own.
pub fn forwarded_host(head: &RequestHead) -> Option<&[u8]> {
    match head.target_authority() {
        Some(authority) => Some(authority.as_bytes()),
        None => head.header("host"),
    }
}

/// The target the next hop gets: origin form (RFC 9112 §3.2.1), with the `/` an empty path
/// needs (`http://h?q` becomes `/?q`).
pub fn forwarded_target(head: &RequestHead) -> Cow<'_, str> {
    match head.origin_form() {
        t if t.starts_with('?') => Cow::Owned(format!("/{t}")),
        t => Cow::Borrowed(t),
    }
}

/// Appends the request head the next hop gets for `head`, accepted as `accepted`:
///
/// - the method, the target in origin form (an absolute-form target's authority becomes the
///   Host), and `HTTP/1.1`;
/// - Host first (`default_host` when an HTTP/1.0 request had none);
/// - every field except hop-by-hop ones, those named in `Connection`, `Expect` (the proxy
///   answers `100-continue` itself), and the framing and forwarding fields, which are
///   generated: `X-Forwarded-For`, `X-Forwarded-Proto` and `Forwarded` from `hop`, then
///   `Content-Length` or `Transfer-Encoding: chunked` from `accepted.framing`, then
///   `Connection: upgrade` and `Upgrade` for an upgrade.
pub fn write_request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    accepted: &Accepted,
    hop: &Hop,
    default_host: &[u8],
) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(forwarded_target(head).as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let host = forwarded_host(head).unwrap_or(default_host);
    write_field(out, "host", host);
    let mut xff: Option<Vec<u8>> = None;
    let mut forwarded: Option<Vec<u8>> = None;
    let keep_client_entries = hop.forwarded_for == ForwardedFor::Append;
    for h in &head.headers {
        let name = h.name.as_str();
        if is_hop_by_hop(name, &head.headers)
            || ["host", "content-length", "expect", "x-forwarded-proto"]
                .iter()
                .any(|n| n.eq_ignore_ascii_case(name))
        {
            continue;
        }
        // Earlier proxies' entries are kept in order and ours appended (RFC 7239 §4), or
        // dropped when this hop is the edge.
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            if keep_client_entries {
                join(&mut xff, &h.value);
            }
            continue;
        }
        if name.eq_ignore_ascii_case("forwarded") {
            if keep_client_entries {
                join(&mut forwarded, &h.value);
            }
            continue;
        }
        write_field(out, name, &h.value);
    }
    let ip = hop.client.to_string();
    join(&mut xff, ip.as_bytes());
    // RFC 7239 §6: an IPv6 address is bracketed and the value quoted; so is a host with a port.
    let mut element = match hop.client {
        IpAddr::V4(v4) => format!("for={v4}"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    };
    element.push_str(if hop.tls {
        ";proto=https"
    } else {
        ";proto=http"
    });
    if let Some(host) = std::str::from_utf8(host).ok().filter(|h| is_quotable(h)) {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    join(&mut forwarded, element.as_bytes());
    if let Some(v) = &xff {
        write_field(out, "x-forwarded-for", v);
    }
    write_field(
        out,
        "x-forwarded-proto",
        if hop.tls { b"https" } else { b"http" },
    );
    if let Some(v) = &forwarded {
        write_field(out, "forwarded", v);
    }
    write_framing(out, accepted.framing);
    if accepted.upgrade {
        write_field(out, "connection", b"upgrade");
        if let Some(u) = head.header("upgrade") {
            write_field(out, "upgrade", u);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Checks a response before it is relayed and returns its framing: unambiguous (RFC 9112
/// §6.3) and with no transfer coding but `chunked`.
pub fn check_response(resp: &ResponseHead, request_method: &str) -> Result<BodyFraming, Refusal> {
    let framing = resp.body_framing(request_method)?;
    if framing != BodyFraming::Empty
        && resp.header("transfer-encoding").is_some()
        && !framing::only_chunked(&resp.headers)
    {
        return Err(Refusal::TransferCoding);
    }
    Ok(framing)
}

/// Appends the response head the client gets for `resp`: its status and reason, its fields
/// without hop-by-hop ones and without its framing fields, then the framing the client will
/// read, `to_client` (restated: `Content-Length: n`, `Transfer-Encoding: chunked`, or
/// nothing when the body runs to the close), then `extra` (e.g. `Connection: close`).
///
/// A response without a body whose Content-Length still means something — to HEAD, or a
/// 304 (RFC 9110 §8.6) — keeps it, restated from the parsed value; a 1xx or 204 never has
/// one.
pub fn write_response_head(
    out: &mut Vec<u8>,
    resp: &ResponseHead,
    request_method: &str,
    to_client: BodyFraming,
    extra: &[(&str, &[u8])],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, resp.status);
    out.push(b' ');
    let reason = if resp.reason.is_empty() {
        reason_phrase(resp.status)
    } else {
        resp.reason.as_str()
    };
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in &resp.headers {
        if !is_hop_by_hop(&h.name, &resp.headers) && !h.name.eq_ignore_ascii_case("content-length")
        {
            write_field(out, &h.name, &h.value);
        }
    }
    let describes_a_body = request_method == "HEAD" || resp.status == 304;
    match to_client {
        BodyFraming::Empty if describes_a_body => {
            if let Ok(Some(n)) = framing::declared_length(&resp.headers) {
                write_framing(out, BodyFraming::ContentLength(n));
            }
        }
        framing => write_framing(out, framing),
    }
    for (name, value) in extra {
        write_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// `Content-Length` or `Transfer-Encoding` for `framing`; nothing for no body or a body that
/// runs to the close.
fn write_framing(out: &mut Vec<u8>, framing: BodyFraming) {
    match framing {
        BodyFraming::ContentLength(n) => {
            out.extend_from_slice(b"content-length: ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => write_field(out, "transfer-encoding", b"chunked"),
        BodyFraming::Empty | BodyFraming::UntilClose => {}
    }
}

/// Whether `name` is hop-by-hop in a message with `headers`: always, or named by one of its
/// `Connection` options — except the end-to-end fields, which are restated anyway and which
/// no option may remove.
fn is_hop_by_hop(name: &str, headers: &[Header]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
        || (!END_TO_END.iter().any(|f| f.eq_ignore_ascii_case(name))
            && connection_options(headers).any(|o| o.eq_ignore_ascii_case(name.as_bytes())))
}

fn join(acc: &mut Option<Vec<u8>>, value: &[u8]) {
    match acc {
        Some(v) => {
            v.extend_from_slice(b", ");
            v.extend_from_slice(value);
        }
        None => *acc = Some(value.to_vec()),
    }
}

/// A Host value safe inside a quoted-string (no quote, backslash or control characters).
fn is_quotable(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, parse_response, HeadLimits};

    const HOP: Hop = Hop {
        client: IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7)),
        tls: false,
        forwarded_for: ForwardedFor::Append,
    };

    fn req(s: &str) -> RequestHead {
        parse_request(s.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0
    }

    fn forward(s: &str, hop: &Hop) -> Result<String, Refusal> {
        let head = req(s);
        let accepted = check_request(&head)?;
        let mut out = Vec::new();
        write_request_head(&mut out, &head, &accepted, hop, b"backend:80");
        Ok(String::from_utf8(out).unwrap())
    }

    fn refused(s: &str) -> u16 {
        forward(s, &HOP).unwrap_err().status()
    }

    #[test]
    fn connection_may_not_name_framing_or_host() {
        for field in ["Content-Length", "transfer-encoding", "HOST"] {
            let s = format!(
                "POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, {field}\r\nContent-Length: 3\r\n\r\n"
            );
            assert_eq!(refused(&s), 400, "{field}");
        }
        // Options naming real hop-by-hop or ordinary fields are fine and honoured.
        let out = forward(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: te, x-secret\r\nTE: trailers\r\nX-Secret: 1\r\nX-Kept: 2\r\n\r\n",
            &HOP,
        )
        .unwrap();
        assert!(!out.to_ascii_lowercase().contains("secret"), "{out}");
        assert!(!out.contains("trailers"), "{out}");
        assert!(out.contains("\r\nX-Kept: 2\r\n"), "{out}");
    }

    #[test]
    fn framing_is_restated_never_copied() {
        let out = forward(
            "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n",
            &HOP,
        )
        .unwrap();
        assert_eq!(out.matches("content-length").count(), 1, "{out}");
        assert!(out.contains("\r\ncontent-length: 5\r\n"), "{out}");
        let out = forward(
            "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n",
            &HOP,
        )
        .unwrap();
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
        assert!(!out.contains("Chunked"), "{out}");
        let out = forward("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &HOP).unwrap();
        assert!(!out.contains("content-length") && !out.contains("transfer-encoding"));
        // The result parses back to the same framing.
        let head = req("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        let accepted = check_request(&head).unwrap();
        let mut out = Vec::new();
        write_request_head(&mut out, &head, &accepted, &HOP, b"b");
        let back = parse_request(&out, &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(back.body_framing(), Ok(BodyFraming::ContentLength(0)));
    }

    #[test]
    fn only_chunked_is_relayed() {
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            501
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"),
            501
        );
        // The head parser's rules come first.
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"),
            400
        );
        assert_eq!(
            refused("POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400
        );
    }

    #[test]
    fn targets() {
        assert_eq!(
            refused("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            405
        );
        assert_eq!(refused("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(refused("GET foo HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            refused("GET http://u@evil/x HTTP/1.1\r\nHost: a\r\n\r\n"),
            400
        );
        assert_eq!(refused("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert!(forward("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &HOP).is_ok());
        // Absolute form: origin-form target, Host from the authority (RFC 9112 §3.2.2).
        let out = forward(
            "GET http://real.test:81/x?y HTTP/1.1\r\nHost: spoofed\r\n\r\n",
            &HOP,
        )
        .unwrap();
        assert!(
            out.starts_with("GET /x?y HTTP/1.1\r\nhost: real.test:81\r\n"),
            "{out}"
        );
        assert!(!out.contains("spoofed"), "{out}");
        let out = forward("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n", &HOP).unwrap();
        assert!(out.starts_with("GET /?q HTTP/1.1\r\n"), "{out}");
    }

    #[test]
    fn framing_lookalikes_with_underscores_are_refused() {
        for name in ["Content_Length", "transfer_encoding", "Transfer-encoding_"] {
            let s = format!("POST / HTTP/1.1\r\nHost: a\r\n{name}: 5\r\n\r\n");
            let refused = forward(&s, &HOP);
            assert_eq!(
                refused.is_err(),
                name != "Transfer-encoding_",
                "{name}: {refused:?}"
            );
        }
    }

    #[test]
    fn forwarding_fields_append_or_replace() {
        let s = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\nX-Forwarded-Proto: gopher\r\n\r\n";
        let out = forward(s, &HOP).unwrap();
        assert!(
            out.contains("\r\nx-forwarded-for: 203.0.113.9, 192.0.2.7\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\nforwarded: for=203.0.113.9, for=192.0.2.7;proto=http;host=\"h\"\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nx-forwarded-proto: http\r\n") && !out.contains("gopher"));
        let replace = Hop {
            forwarded_for: ForwardedFor::Replace,
            tls: true,
            ..HOP
        };
        let out = forward(s, &replace).unwrap();
        assert!(out.contains("\r\nx-forwarded-for: 192.0.2.7\r\n"), "{out}");
        assert!(
            out.contains("\r\nforwarded: for=192.0.2.7;proto=https;host=\"h\"\r\n"),
            "{out}"
        );
        assert!(!out.contains("203.0.113.9"), "{out}");
        let v6 = Hop {
            client: "2001:db8::1".parse().unwrap(),
            ..HOP
        };
        let out = forward("GET / HTTP/1.0\r\n\r\n", &v6).unwrap();
        assert!(out.contains("\r\nhost: backend:80\r\n"), "{out}");
        assert!(out.contains("for=\"[2001:db8::1]\""), "{out}");
    }

    #[test]
    fn upgrades_keep_their_fields() {
        let out = forward(
            "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
            &HOP,
        )
        .unwrap();
        assert!(
            out.ends_with("\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"),
            "{out}"
        );
        assert!(out.contains("\r\nSec-WebSocket-Key: k\r\n"), "{out}");
    }

    fn respond(s: &str, method: &str) -> String {
        let resp = parse_response(s.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0;
        let framing = check_response(&resp, method).unwrap();
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            &resp,
            method,
            framing,
            &[("connection", b"close")],
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_backend_naming_its_framing_in_connection_keeps_it() {
        let out = respond(
            "HTTP/1.1 200 OK\r\nConnection: content-length, x-hop\r\nContent-Length: 2\r\nX-Hop: 1\r\n\r\n",
            "GET",
        );
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n"
        );
        let out = respond(
            "HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
        );
        assert!(out.contains("\r\ntransfer-encoding: chunked\r\n"), "{out}");
    }

    #[test]
    fn bodiless_responses_keep_a_meaningful_length_only() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        assert!(respond(head, "HEAD").contains("\r\ncontent-length: 1234\r\n"));
        let nm = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n";
        assert!(respond(nm, "GET").contains("\r\ncontent-length: 1234\r\n"));
        let nc = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
        assert!(!respond(nc, "GET").contains("content-length"));
        let bad = "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n";
        let resp = parse_response(bad.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(check_response(&resp, "GET").unwrap_err().status(), 400);
        assert_eq!(check_response(&resp, "HEAD"), Ok(BodyFraming::Empty));
        let mut out = Vec::new();
        write_response_head(&mut out, &resp, "HEAD", BodyFraming::Empty, &[]);
        assert!(!String::from_utf8(out).unwrap().contains("content-length"));
        let gz = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        let resp = parse_response(gz.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap()
            .0;
        assert_eq!(check_response(&resp, "GET"), Err(Refusal::TransferCoding));
    }
}
