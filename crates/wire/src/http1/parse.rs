//! Request and response head parsing.
//!
//! `httparse` does the tokenizing; this module adds the strictness RFC 9112 asks of a
//! recipient that must not be confused about where a message ends:
//!
//! - bare LF line endings are rejected (RFC 9112 §2.2 only *allows* a recipient to accept
//!   them; an intermediary that does while another hop does not is a smuggling vector),
//!   although `httparse` accepts them;
//! - obs-fold (a field line starting with SP or HTAB) is rejected (RFC 9112 §5.2);
//! - whitespace between a field name and the colon is rejected (RFC 9112 §5.1);
//! - only HTTP/1.0 and HTTP/1.1 are accepted (RFC 9112 §2.3);
//! - the head is bounded by [`HeadLimits`] before it is complete, so a peer cannot make us
//!   buffer without limit.

use std::mem::MaybeUninit;

use super::{BodyFraming, Field, HeadError, HeadLimits, Header, RequestHead, ResponseHead};

/// Headers parsed into a stack array when the limit allows (the default limit of 100 does);
/// larger limits use the heap. The array is left uninitialized: `httparse` writes only the
/// slots it fills.
const STACK_HEADERS: usize = 128;

/// Parses a request head at the start of `buf`.
///
/// Returns `Ok(None)` when the head is not complete yet (read more, then call again with the
/// whole buffer), `Ok(Some((head, consumed)))` once the blank line is seen, where `consumed`
/// counts the head's bytes including the final CRLF. Fails with [`HeadError::TooLarge`] as soon
/// as `buf` holds more than `limits.max_head_bytes` bytes without a complete head, so a caller
/// never buffers more than that. Leading empty lines (RFC 9112 §2.2) are skipped and counted in
/// `consumed`. obs-fold, whitespace before the colon, and bare LF are rejected.
pub fn parse_request(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut head = RequestHead::default();
    Ok(parse_request_into(buf, limits, &mut head)?.map(|consumed| (head, consumed)))
}

/// [`parse_request`] into an existing head, reusing its allocations: a keep-alive server that
/// parses every request of a connection into the same head allocates nothing once it has seen
/// a request as large. Returns `Ok(Some(consumed))` once `head` holds the new request;
/// after `Ok(None)` or an error, `head` holds no request (its contents are unspecified).
pub fn parse_request_into(
    buf: &[u8],
    limits: &HeadLimits,
    head: &mut RequestHead,
) -> Result<Option<usize>, HeadError> {
    let Some(start) = skip_empty_lines(buf)? else {
        return check_partial(buf, limits);
    };
    let window = bounded(buf, limits);
    with_header_storage(limits.max_headers, |storage| {
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(window, storage) {
            Ok(httparse::Status::Partial) => check_partial(buf, limits),
            Ok(httparse::Status::Complete(len)) => {
                check_line_endings(&window[start..len])?;
                head.version = checked_version(req.version)?;
                check_names(req.headers)?;
                replace(&mut head.method, req.method.unwrap_or_default());
                replace(&mut head.target, req.path.unwrap_or_default());
                let fields = req.headers;
                head.headers.truncate(fields.len());
                for (kept, field) in head.headers.iter_mut().zip(fields.iter()) {
                    replace(&mut kept.name, field.name);
                    kept.value.clear();
                    kept.value.extend_from_slice(trim_ows(field.value));
                }
                let kept = head.headers.len();
                head.headers.extend(fields[kept..].iter().map(|h| Header {
                    name: h.name.to_owned(),
                    value: trim_ows(h.value).to_vec(),
                }));
                Ok(Some(len))
            }
            Err(e) => Err(map_error(e, window, limits)),
        }
    })
}

/// Overwrites `kept` with `new`, in its own allocation when that is large enough.
fn replace(kept: &mut String, new: &str) {
    kept.clear();
    kept.push_str(new);
}

/// Parses a response head at the start of `buf`; same contract as [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    parse_response_with(buf, limits, |view| view.to_head())
}

/// Parses a response head at the start of `buf` like [`parse_response`], with the same checks
/// and the same contract, but hands `f` a [`ResponseView`] borrowed from `buf` instead of
/// copying the head out, and returns what `f` returns. Nothing is allocated (unless
/// `limits.max_headers` is above 128), so a client reading a response per exchange can use
/// this on every one.
pub fn parse_response_with<R>(
    buf: &[u8],
    limits: &HeadLimits,
    f: impl FnOnce(&ResponseView<'_, '_>) -> R,
) -> Result<Option<(R, usize)>, HeadError> {
    let Some(start) = skip_empty_lines(buf)? else {
        return check_partial(buf, limits);
    };
    let window = bounded(buf, limits);
    with_header_storage(limits.max_headers, |storage| {
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, window, storage);
        match parsed {
            Ok(httparse::Status::Partial) => check_partial(buf, limits),
            Ok(httparse::Status::Complete(len)) => {
                check_line_endings(&window[start..len])?;
                check_names(res.headers)?;
                let view = ResponseView {
                    version: checked_version(res.version)?,
                    status: res.code.unwrap_or_default(),
                    reason: res.reason.unwrap_or_default(),
                    headers: res.headers,
                };
                Ok(Some((f(&view), len)))
            }
            Err(e) => Err(map_error(e, window, limits)),
        }
    })
}

/// A response head as [`parse_response_with`] found it, borrowed from the parsed buffer
/// (`'b`) and the parser's field slots (`'h`).
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'h, 'b> {
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Status code, e.g. 200.
    pub status: u16,
    /// Reason phrase as sent (may be empty).
    pub reason: &'b str,
    headers: &'h [httparse::Header<'b>],
}

impl<'b> ResponseView<'_, 'b> {
    /// Header fields in order: name as sent, value with surrounding whitespace trimmed.
    pub fn fields(&self) -> impl Iterator<Item = (&'b str, &'b [u8])> + '_ {
        self.headers.iter().map(|h| (h.name, trim_ows(h.value)))
    }

    /// The first value of `name` (compared case-insensitively), if present.
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.fields()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether any `name` field lists `token`; see [`super::Headers::has_token`].
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        super::has_token(self.headers, name, token)
    }

    /// Body framing of this response; see [`ResponseHead::body_framing`].
    pub fn body_framing(&self, request_method: &str) -> Result<BodyFraming, HeadError> {
        super::framing::response_framing(self.status, self.version, self.headers, request_method)
    }

    /// The head copied out of the buffer.
    pub fn to_head(&self) -> ResponseHead {
        ResponseHead {
            version: self.version,
            status: self.status,
            reason: self.reason.to_owned(),
            headers: self
                .fields()
                .map(|(name, value)| Header {
                    name: name.to_owned(),
                    value: value.to_vec(),
                })
                .collect(),
        }
    }
}

/// The parser's own fields, read in place by the framing rules.
impl Field for httparse::Header<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn value(&self) -> &[u8] {
        trim_ows(self.value)
    }
}

/// Only the first `max_head_bytes` are ever handed to `httparse`: a head that has not ended
/// by then is too large whatever follows, and the parser's work stays bounded.
fn bounded<'b>(buf: &'b [u8], limits: &HeadLimits) -> &'b [u8] {
    &buf[..buf.len().min(limits.max_head_bytes)]
}

/// An incomplete head is fine until it outgrows the limit.
fn check_partial<T>(buf: &[u8], limits: &HeadLimits) -> Result<Option<T>, HeadError> {
    if buf.len() > limits.max_head_bytes {
        Err(HeadError::TooLarge {
            limit: limits.max_head_bytes,
        })
    } else {
        // Fail early on a bare LF already buffered rather than waiting for the head to end.
        check_line_endings(buf)?;
        Ok(None)
    }
}

/// Skips the empty lines a recipient SHOULD ignore before a request line (RFC 9112 §2.2), and
/// returns where the start line begins, or `None` if `buf` holds nothing but empty lines so
/// far. `httparse` skips them as well (and counts them in its length); this pass only exists
/// to reject a bare LF among them.
fn skip_empty_lines(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut i = 0;
    loop {
        match buf.get(i..) {
            Some([b'\r', b'\n', ..]) => i += 2,
            Some([b'\r']) | Some([]) | None => return Ok(None),
            Some([b'\n', ..]) => return Err(bare_lf()),
            Some(_) => return Ok(Some(i)),
        }
    }
}

/// Every LF must follow a CR (RFC 9112 §2.2). `httparse` already rejects a CR that is not
/// followed by LF, so this only looks for the reverse.
fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    // Every head a client reads passes here, so the pair scan has no early exit: a
    // branch-free fold the compiler vectorizes, about 8x fewer instructions than `any`.
    let rest = head.get(1..).unwrap_or_default();
    let bare = head
        .iter()
        .zip(rest)
        .fold(false, |bare, (&a, &b)| bare | ((b == b'\n') & (a != b'\r')));
    if bare || head.first() == Some(&b'\n') {
        return Err(bare_lf());
    }
    Ok(())
}

fn bare_lf() -> HeadError {
    HeadError::Malformed {
        reason: "bare LF line ending",
    }
}

fn checked_version(version: Option<u8>) -> Result<u8, HeadError> {
    match version {
        Some(v @ (0 | 1)) => Ok(v),
        _ => Err(HeadError::Malformed {
            reason: "unsupported HTTP version",
        }),
    }
}

fn check_names(raw: &[httparse::Header<'_>]) -> Result<(), HeadError> {
    if raw.iter().any(|h| h.name.is_empty()) {
        return Err(HeadError::Malformed {
            reason: "empty field name",
        });
    }
    Ok(())
}

/// Field values exclude leading and trailing OWS, i.e. SP and HTAB (RFC 9110 §5.5).
fn trim_ows(v: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = v.iter().position(|b| !is_ows(b)).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !is_ows(b)).map_or(start, |e| e + 1);
    &v[start..end]
}

fn map_error(e: httparse::Error, window: &[u8], limits: &HeadLimits) -> HeadError {
    use httparse::Error as E;
    let reason = match e {
        E::TooManyHeaders => {
            return HeadError::TooManyHeaders {
                limit: limits.max_headers,
            }
        }
        E::HeaderName => {
            // Tell the two classic smuggling shapes apart from plain garbage: a field line
            // starting with whitespace is obs-fold (RFC 9112 §5.2), whitespace before the
            // colon is forbidden outright (RFC 9112 §5.1).
            if window
                .windows(3)
                .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
            {
                "obs-fold (field line starting with whitespace)"
            } else {
                "invalid field name (whitespace before colon?)"
            }
        }
        E::HeaderValue => "invalid field value",
        E::NewLine => "invalid line ending",
        E::Status => "invalid status line",
        E::Token => "invalid token in start line",
        E::Version => "unsupported HTTP version",
    };
    HeadError::Malformed { reason }
}

/// Runs `f` with `max` unwritten `httparse` header slots, on the stack when they fit.
fn with_header_storage<'b, R>(
    max: usize,
    f: impl FnOnce(&mut [MaybeUninit<httparse::Header<'b>>]) -> R,
) -> R {
    if max <= STACK_HEADERS {
        let mut storage = [MaybeUninit::uninit(); STACK_HEADERS];
        f(&mut storage[..max])
    } else {
        let mut storage = vec![MaybeUninit::uninit(); max];
        f(&mut storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Headers;

    fn req(s: &str) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(s.as_bytes(), &HeadLimits::default())
    }

    fn res(s: &str) -> Result<Option<(ResponseHead, usize)>, HeadError> {
        parse_response(s.as_bytes(), &HeadLimits::default())
    }

    fn malformed<T: std::fmt::Debug>(r: Result<T, HeadError>) {
        assert!(matches!(r, Err(HeadError::Malformed { .. })), "{r:?}");
    }

    #[test]
    fn a_reused_head_holds_only_the_new_request() {
        let limits = HeadLimits::default();
        let mut head =
            req("POST /a/longer/target?x=1 HTTP/1.0\r\nHost: a\r\nX-A: 1\r\nX-B: 22\r\n\r\n")
                .unwrap()
                .unwrap()
                .0;
        let next = b"GET /b HTTP/1.1\r\nhost:  b.test \r\n\r\nrest";
        assert_eq!(parse_request_into(next, &limits, &mut head), Ok(Some(35)));
        assert_eq!(
            Some((head.clone(), 35)),
            parse_request(next, &limits).unwrap()
        );
        assert_eq!(head.header_str("host"), Some("b.test"));
        assert_eq!(head.headers.len(), 1);
        // A later, larger request grows it again.
        let third = b"PUT /c HTTP/1.1\r\nHost: c\r\nA: 1\r\nB: 2\r\n\r\n";
        assert_eq!(
            parse_request_into(third, &limits, &mut head),
            Ok(Some(third.len()))
        );
        assert_eq!(
            Some((head, third.len())),
            parse_request(third, &limits).unwrap()
        );
        // Incomplete and bad input give what parse_request gives.
        let mut head = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().unwrap().0;
        assert_eq!(
            parse_request_into(b"GET / HT", &limits, &mut head),
            Ok(None)
        );
        malformed(parse_request_into(
            b"GET / HTTP/1.1\nHost: a\n\n",
            &limits,
            &mut head,
        ));
    }

    #[test]
    fn simple_request() {
        let s = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept:  */*  \r\n\r\nBODY";
        let (h, n) = req(s).unwrap().unwrap();
        assert_eq!(n, s.len() - 4);
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/a?b=1");
        assert_eq!(h.path(), "/a");
        assert_eq!(h.query(), Some("b=1"));
        assert_eq!(h.version, 1);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(h.header("host"), Some(&b"x"[..]));
        assert_eq!(h.header("ACCEPT"), Some(&b"*/*"[..]), "value trimmed");
        assert!(h.keep_alive());
    }

    #[test]
    fn http10_and_keep_alive() {
        let (h, _) = req("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.version, 0);
        assert!(!h.keep_alive());
        let (h, _) = req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive());
        let (h, _) = req("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive());
    }

    #[test]
    fn partial_heads_need_more() {
        let full = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for i in 0..full.len() {
            assert_eq!(req(&full[..i]), Ok(None), "prefix {i}");
        }
        assert!(req(full).unwrap().is_some());
    }

    #[test]
    fn leading_empty_lines_are_skipped_and_counted() {
        let s = "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let (h, n) = req(s).unwrap().unwrap();
        assert_eq!(h.method, "GET");
        assert_eq!(n, s.len());
        assert_eq!(req("\r\n\r\n"), Ok(None));
        assert_eq!(req("\r\n\r"), Ok(None));
        malformed(req("\nGET / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn bare_lf_is_rejected() {
        malformed(req("GET / HTTP/1.1\nHost: x\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nHost: x\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nHost: x\r\n\n"));
        malformed(req("GET / HTTP/1.1\n\n"));
        malformed(res("HTTP/1.1 200 OK\nContent-Length: 0\n\n"));
        // Rejected as soon as it is buffered, before the head completes.
        malformed(req("GET / HTTP/1.1\nHost"));
    }

    #[test]
    fn bare_cr_is_rejected() {
        malformed(req("GET / HTTP/1.1\rHost: x\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n"));
    }

    #[test]
    fn obs_fold_is_rejected() {
        malformed(req("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"));
        malformed(res("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"));
        // A first field line starting with whitespace is just as ambiguous.
        malformed(req("GET / HTTP/1.1\r\n Host: x\r\n\r\n"));
    }

    #[test]
    fn whitespace_before_colon_is_rejected() {
        malformed(req("GET / HTTP/1.1\r\nHost : x\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n"));
        malformed(res("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"));
    }

    #[test]
    fn bad_tokens_and_versions() {
        malformed(req("GET / HTTP/2.0\r\n\r\n"));
        malformed(req("GET / HTTP/1.2\r\n\r\n"));
        malformed(req("GET / FOO/1.1\r\n\r\n"));
        malformed(req("G(T / HTTP/1.1\r\n\r\n"));
        malformed(req("GET  / HTTP/1.1\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nBad\x01Name: x\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\n: empty\r\n\r\n"));
        malformed(req("GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n"));
        malformed(res("HTTP/1.1 2000 OK\r\n\r\n"));
        malformed(res("HTTP/3 200 OK\r\n\r\n"));
    }

    #[test]
    fn too_large_before_complete() {
        let limits = HeadLimits {
            max_head_bytes: 32,
            max_headers: 10,
        };
        let mut s = b"GET / HTTP/1.1\r\nX: ".to_vec();
        s.resize(32, b'a');
        assert_eq!(parse_request(&s, &limits), Ok(None));
        s.push(b'a');
        assert_eq!(
            parse_request(&s, &limits),
            Err(HeadError::TooLarge { limit: 32 })
        );
        assert_eq!(HeadError::TooLarge { limit: 32 }.status(), 431);
    }

    #[test]
    fn too_large_when_complete() {
        let limits = HeadLimits {
            max_head_bytes: 20,
            max_headers: 10,
        };
        let s = b"GET / HTTP/1.1\r\nX: abcdef\r\n\r\n";
        assert_eq!(
            parse_request(s, &limits),
            Err(HeadError::TooLarge { limit: 20 })
        );
        // A head exactly at the limit is fine, whatever follows it in the buffer.
        let s = b"GET / HTTP/1.1\r\n\r\nbody-bytes-beyond-the-limit";
        let limits = HeadLimits {
            max_head_bytes: 18,
            max_headers: 10,
        };
        assert_eq!(parse_request(s, &limits).unwrap().unwrap().1, 18);
    }

    #[test]
    fn too_many_headers() {
        let limits = HeadLimits {
            max_head_bytes: 4096,
            max_headers: 2,
        };
        let ok = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\n\r\n";
        assert!(parse_request(ok, &limits).unwrap().is_some());
        let bad = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(
            parse_request(bad, &limits),
            Err(HeadError::TooManyHeaders { limit: 2 })
        );
        assert_eq!(HeadError::TooManyHeaders { limit: 2 }.status(), 431);
    }

    #[test]
    fn many_headers_on_the_heap() {
        let limits = HeadLimits {
            max_head_bytes: 1 << 16,
            max_headers: 200,
        };
        let mut s = String::from("GET / HTTP/1.1\r\n");
        for i in 0..150 {
            s.push_str(&format!("h{i}: {i}\r\n"));
        }
        s.push_str("\r\n");
        let (h, _) = parse_request(s.as_bytes(), &limits).unwrap().unwrap();
        assert_eq!(h.headers.len(), 150);
        assert_eq!(h.header("h149"), Some(&b"149"[..]));
    }

    #[test]
    fn response_heads() {
        let s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let (h, n) = res(s).unwrap().unwrap();
        assert_eq!(n, s.len());
        assert_eq!(
            (h.version, h.status, h.reason.as_str()),
            (1, 101, "Switching Protocols")
        );
        assert!(h.has_token("upgrade", "WebSocket"));
        let (h, _) = res("HTTP/1.0 204 \r\n\r\n").unwrap().unwrap();
        assert_eq!((h.version, h.status, h.reason.as_str()), (0, 204, ""));
        assert_eq!(res("HTTP/1.1 200 OK\r\n"), Ok(None));
    }

    #[test]
    fn response_view_matches_the_owned_head() {
        let s = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length:  32 \r\nConnection: keep-alive, Upgrade\r\n\r\nbody";
        let (owned, n) = res(s).unwrap().unwrap();
        let (viewed, m) = parse_response_with(s.as_bytes(), &HeadLimits::default(), |v| {
            assert_eq!((v.version, v.status, v.reason), (1, 200, "OK"));
            assert_eq!(
                v.header("content-length"),
                Some(&b"32"[..]),
                "value trimmed"
            );
            assert!(v.has_token("Connection", "upgrade"));
            assert!(!v.has_token("Connection", "close"));
            assert_eq!(v.body_framing("POST"), Ok(BodyFraming::ContentLength(32)));
            assert_eq!(v.body_framing("POST"), owned.body_framing("POST"));
            v.to_head()
        })
        .unwrap()
        .unwrap();
        assert_eq!((viewed, m), (owned, n));
        // The same verdict on partial and bad heads.
        for head in [
            "HTTP/1.1 200 OK\r\n",
            "HTTP/1.1 200 OK\nX: 1\r\n\r\n",
            "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
            "HTTP/2 200 OK\r\n\r\n",
        ] {
            let viewed = parse_response_with(head.as_bytes(), &HeadLimits::default(), |_| ());
            let owned = res(head);
            assert_eq!(
                viewed.map(|o| o.map(|(_, n)| n)),
                owned.map(|o| o.map(|(_, n)| n)),
                "{head:?}"
            );
        }
    }

    #[test]
    fn a_bare_lf_is_found_wherever_it_is() {
        let head = b"HTTP/1.1 200 OK\r\nA: 1\r\nBb: 22\r\n\r\n";
        assert!(check_line_endings(head).is_ok());
        assert!(check_line_endings(b"").is_ok());
        assert!(check_line_endings(b"\n").is_err());
        for (i, _) in head.iter().enumerate().filter(|(_, &b)| b == b'\r') {
            let mut bad = head.to_vec();
            bad[i] = b'x';
            assert!(check_line_endings(&bad).is_err(), "LF at {}", i + 1);
        }
    }

    #[test]
    fn obs_text_in_values_is_kept() {
        let (h, _) = parse_request(
            b"GET / HTTP/1.1\r\nX: caf\xc3\xa9 \xff\r\n\r\n",
            &HeadLimits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.header("x"), Some(&b"caf\xc3\xa9 \xff"[..]));
    }
}
