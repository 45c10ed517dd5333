//! The proxy's forwarding, differentially. Arbitrary client bytes are read as the proxy reads
//! them (strict head parser, `forward::check_request`) and forwarded as it forwards them
//! (`forward::write_request_head`, then `BodyRelay` fed in pieces whose size the first byte
//! picks). The forwarded bytes must re-parse into exactly the requests the proxy parsed —
//! method, target, Host, body, one X-Forwarded-For ending in the client's address — both with
//! the same strict parser and with lenient readings a careless backend might use (plain
//! `httparse` with its leniencies on, Content-Length first-wins or last-wins or winning over
//! Transfer-Encoding, "chunked" found anywhere in Transfer-Encoding, `httparse`'s chunk-size
//! parser). A request whose body the proxy could not finish must not re-parse as complete.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use protolab_wire::http1::forward::{self, ForwardedFor, Hop};
use protolab_wire::http1::{
    parse_request, BodyFraming, BodyRelay, ChunkedDecoder, HeadLimits, Headers as _,
};

/// A request as one side read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    method: String,
    target: String,
    host: Vec<u8>,
    body: Vec<u8>,
}

const DEFAULT_HOST: &[u8] = b"backend.test:80";

/// What the proxy parsed (complete requests only) and the bytes it sent the backend.
fn proxy(input: &[u8], step: usize, hop: &Hop) -> (Vec<Request>, Vec<u8>) {
    let limits = HeadLimits::default();
    let mut sent = Vec::new();
    let mut parsed = Vec::new();
    let mut at = 0;
    // Bytes of the input that have "arrived" so far.
    let mut arrived = step.min(input.len());
    while let Ok(Some((head, len))) = parse_request(&input[at..], &limits) {
        at += len;
        let Ok(accepted) = forward::check_request(&head) else {
            break; // Answered 400/405/501 and closed: nothing more is forwarded.
        };
        forward::write_request_head(&mut sent, &head, &accepted, hop, DEFAULT_HOST);
        let body = reference_body(&input[at..], accepted.framing);
        let mut relay = BodyRelay::new(accepted.framing, false);
        let start = at;
        let complete = loop {
            arrived = arrived.max(at);
            let mut out = Vec::new();
            let Ok(s) = relay.relay(&input[at..arrived], &mut out) else {
                break false; // Bad chunked encoding: 400, the backend connection is dropped.
            };
            if s.verbatim {
                sent.extend_from_slice(&input[at..at + s.consumed]);
            } else {
                sent.extend_from_slice(&out);
            }
            at += s.consumed;
            if s.done {
                break true;
            }
            if arrived == input.len() {
                break false; // The client closed inside the body.
            }
            arrived = (arrived + step).min(input.len());
        };
        if !complete {
            assert!(body.is_none(), "the relay stopped inside a body the reference reads");
            break;
        }
        let (body, used) = body.expect("the relay finished a body the reference reads");
        assert_eq!(at - start, used, "the relay and the decoder ended the body apart");
        parsed.push(Request {
            method: head.method.clone(),
            target: forward::forwarded_target(&head).into_owned(),
            host: forward::forwarded_host(&head)
                .unwrap_or(DEFAULT_HOST)
                .to_vec(),
            body,
        });
    }
    (parsed, sent)
}

/// The body as the proxy's own decoder reads it from the whole input: (body, bytes used), or
/// `None` if it is incomplete or malformed.
fn reference_body(input: &[u8], framing: BodyFraming) -> Option<(Vec<u8>, usize)> {
    match framing {
        BodyFraming::Empty => Some((Vec::new(), 0)),
        BodyFraming::ContentLength(n) => {
            let n = usize::try_from(n).ok()?;
            input.get(..n).map(|b| (b.to_vec(), n))
        }
        BodyFraming::Chunked => {
            let mut body = Vec::new();
            let ev = ChunkedDecoder::with_limit(u64::MAX)
                .decode(input, &mut body)
                .ok()?;
            ev.done.then_some((body, ev.consumed))
        }
        BodyFraming::UntilClose => unreachable!("requests are never framed by the close"),
    }
}

/// The forwarded bytes read back by the same strict parser. Every head the proxy wrote must
/// parse and be accepted again, carry one Host, one X-Forwarded-For ending in the client's
/// address, and at most one framing field.
fn strict(mut bytes: &[u8], hop: &Hop) -> Vec<Request> {
    let limits = HeadLimits {
        max_head_bytes: usize::MAX,
        max_headers: 1000,
    };
    let mut requests = Vec::new();
    loop {
        let (head, len) = match parse_request(bytes, &limits) {
            Ok(Some(h)) => h,
            Ok(None) => return requests,
            Err(e) => panic!("the proxy sent a head its own parser refuses: {e}"),
        };
        let accepted = forward::check_request(&head)
            .unwrap_or_else(|e| panic!("the proxy sent a head it would refuse: {e}"));
        let count = |name: &str| {
            head.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .count()
        };
        assert_eq!(count("host"), 1);
        assert!(count("content-length") + count("transfer-encoding") <= 1);
        if let Some(te) = head.header("transfer-encoding") {
            assert_eq!(te, b"chunked");
        }
        assert_eq!(count("x-forwarded-for"), 1);
        let xff = head.header("x-forwarded-for").unwrap_or_default();
        let ip = hop.client.to_string();
        match hop.forwarded_for {
            ForwardedFor::Append => assert!(xff.ends_with(ip.as_bytes())),
            ForwardedFor::Replace => assert_eq!(xff, ip.as_bytes()),
        }
        bytes = &bytes[len..];
        let Some((body, used)) = reference_body(bytes, accepted.framing) else {
            return requests;
        };
        bytes = &bytes[used..];
        requests.push(Request {
            method: head.method.clone(),
            target: head.target.clone(),
            host: head.header("host").unwrap_or_default().to_vec(),
            body,
        });
    }
}

/// How a lenient backend might settle Content-Length and Transfer-Encoding.
#[derive(Debug, Clone, Copy)]
enum Leniency {
    /// Transfer-Encoding wins if it mentions chunked; else the first Content-Length.
    FirstLength,
    /// Transfer-Encoding wins if it mentions chunked; else the last Content-Length.
    LastLength,
    /// Content-Length wins over Transfer-Encoding.
    LengthWins,
}

/// The forwarded bytes read by plain `httparse` with its leniencies on and careless framing.
fn lenient(mut bytes: &[u8], how: Leniency) -> Vec<Request> {
    let mut requests = Vec::new();
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 1100];
        let mut req = httparse::Request::new(&mut fields);
        let parsed = httparse::ParserConfig::default()
            .allow_multiple_spaces_in_request_line_delimiters(true)
            .ignore_invalid_headers_in_requests(true)
            .parse_request(&mut req, bytes);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return requests,
            Err(e) => panic!("even a lenient parser refuses what the proxy sent: {e}"),
        };
        let chunked = values(req.headers, "transfer-encoding")
            .iter()
            .any(|v| v.windows(7).any(|w| w.eq_ignore_ascii_case(b"chunked")));
        let lengths: Vec<u64> = values(req.headers, "content-length")
            .into_iter()
            .map(leading_number)
            .collect();
        let length = match how {
            Leniency::FirstLength | Leniency::LengthWins => lengths.first().copied(),
            Leniency::LastLength => lengths.last().copied(),
        };
        let use_chunked = chunked && !(matches!(how, Leniency::LengthWins) && length.is_some());
        let method = req.method.unwrap_or_default().to_string();
        let target = req.path.unwrap_or_default().to_string();
        let host = values(req.headers, "host")
            .first()
            .copied()
            .unwrap_or_default()
            .to_vec();
        // Some stacks (CGI and its heirs) read `_` in a field name as `-`.
        let underscored = req
            .headers
            .iter()
            .filter(|h| h.name.contains('_'))
            .map(|h| h.name.replace('_', "-").to_ascii_lowercase())
            .collect::<Vec<_>>();
        assert!(
            !underscored
                .iter()
                .any(|n| ["content-length", "transfer-encoding", "host"].contains(&n.as_str())),
            "a field that reads as framing once `_` is `-`: {underscored:?}"
        );
        bytes = &bytes[len..];
        let body = if use_chunked {
            let Some((body, used)) = lenient_chunked(bytes) else {
                return requests;
            };
            bytes = &bytes[used..];
            body
        } else {
            let n = usize::try_from(length.unwrap_or(0)).unwrap_or(usize::MAX);
            let Some(body) = bytes.get(..n) else {
                return requests;
            };
            bytes = &bytes[n..];
            body.to_vec()
        };
        requests.push(Request {
            method,
            target,
            host,
            body,
        });
    }
}

/// The values of every field called `name`, in order.
fn values<'b>(headers: &[httparse::Header<'b>], name: &str) -> Vec<&'b [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// The digits a value starts with, as a careless `atoi` reads them.
fn leading_number(v: &[u8]) -> u64 {
    v.iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |acc, &b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        })
}

/// A chunked body read with `httparse::parse_chunk_size` and LF-tolerant line ends; trailer
/// lines are skipped up to an empty line.
fn lenient_chunked(input: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let mut body = Vec::new();
    loop {
        let (len, size) = match httparse::parse_chunk_size(&input[at..]) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => return None,
            Err(_) => panic!("a lenient chunk-size parser refuses what the proxy sent"),
        };
        at += len;
        if size == 0 {
            loop {
                let line_end = input[at..].iter().position(|&b| b == b'\n')?;
                let line = &input[at..at + line_end];
                at += line_end + 1;
                if line.is_empty() || line == b"\r" {
                    return Some((body, at));
                }
            }
        }
        let size = usize::try_from(size).ok()?;
        body.extend_from_slice(input.get(at..at.checked_add(size)?)?);
        at += size;
        match input.get(at..) {
            Some([b'\r', b'\n', ..]) => at += 2,
            Some([b'\n', ..]) => at += 1,
            Some([]) | Some([b'\r']) | None => return None,
            Some(_) => panic!("chunk data not followed by a line end"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let hop = Hop {
        client: if knob & 0x80 == 0 {
            IpAddr::from([192, 0, 2, 7])
        } else {
            IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
        },
        tls: knob & 0x40 != 0,
        forwarded_for: if knob & 0x20 == 0 {
            ForwardedFor::Append
        } else {
            ForwardedFor::Replace
        },
    };
    let step = usize::from(knob & 0x1F) + 1;
    let (parsed, sent) = proxy(input, step, &hop);
    let reread = strict(&sent, &hop);
    assert_eq!(reread, parsed, "the backend would read other requests than the proxy's");
    for how in [
        Leniency::FirstLength,
        Leniency::LastLength,
        Leniency::LengthWins,
    ] {
        assert_eq!(
            lenient(&sent, how),
            parsed,
            "a lenient backend ({how:?}) would read other requests than the proxy's"
        );
    }
});
