//! Body framing rules of RFC 9112 §6.3.
//!
//! Every ambiguity a peer could exploit for request smuggling (RFC 9112 §11.2) is an error
//! here, never a guess: two hops that guess differently disagree about where the next request
//! starts.

use super::{BodyFraming, Field, HeadError};

pub(super) fn request_framing<F: Field>(
    headers: &[F],
    version: u8,
) -> Result<BodyFraming, HeadError> {
    let fields = Fields::scan(headers);
    if let Some(te) = fields.te.finish()? {
        check_te_context(fields.cl.seen, version)?;
        // RFC 9112 §6.3 (4): a request whose final coding is not chunked has no reliable
        // length; the server MUST answer 400 and close.
        if !te.final_chunked {
            return Err(framing("final transfer coding is not chunked"));
        }
        return Ok(BodyFraming::Chunked);
    }
    // RFC 9112 §6.3 (7): no Transfer-Encoding and no Content-Length means no body.
    Ok(fields
        .cl
        .finish()?
        .map_or(BodyFraming::Empty, BodyFraming::ContentLength))
}

/// Framing of a response with `status` and minor `version`, answering `request_method`.
pub(super) fn response_framing<F: Field>(
    status: u16,
    version: u8,
    headers: &[F],
    request_method: &str,
) -> Result<BodyFraming, HeadError> {
    // RFC 9112 §6.3 (1): responses to HEAD, and 1xx, 204 and 304 responses, end at the head
    // whatever their fields say.
    if request_method == "HEAD" || (100..200).contains(&status) || matches!(status, 204 | 304) {
        return Ok(BodyFraming::Empty);
    }
    // RFC 9112 §6.3 (2): a 2xx answer to CONNECT turns the connection into a tunnel right
    // after the head; there is no body to frame.
    if request_method == "CONNECT" && (200..300).contains(&status) {
        return Ok(BodyFraming::Empty);
    }
    let fields = Fields::scan(headers);
    if let Some(te) = fields.te.finish()? {
        check_te_context(fields.cl.seen, version)?;
        // RFC 9112 §6.3 (4): for a response whose final coding is not chunked, the body runs
        // until the server closes the connection.
        return Ok(if te.final_chunked {
            BodyFraming::Chunked
        } else {
            BodyFraming::UntilClose
        });
    }
    // RFC 9112 §6.3 (8): otherwise the body is delimited by the connection closing.
    Ok(fields
        .cl
        .finish()?
        .map_or(BodyFraming::UntilClose, BodyFraming::ContentLength))
}

/// The Content-Length `headers` declare, by the same rules as framing (RFC 9110 §8.6): for a
/// response without a body (to HEAD, a 304) whose length still describes the representation.
pub(super) fn declared_length<F: Field>(headers: &[F]) -> Result<Option<u64>, HeadError> {
    Fields::scan(headers).cl.finish()
}

/// Whether the message's only transfer coding is a bare `chunked`, applied once: what an
/// intermediary that decodes and re-chunks bodies can relay without changing their meaning.
pub(super) fn only_chunked<F: Field>(headers: &[F]) -> bool {
    let mut chunked = 0;
    let codings = headers
        .iter()
        .filter(|h| h.name().eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|h| h.value().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    for coding in codings {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return false;
        }
        chunked += 1;
    }
    chunked == 1
}

fn framing(reason: &'static str) -> HeadError {
    HeadError::Framing { reason }
}

/// Rules that make any Transfer-Encoding unusable.
fn check_te_context(has_cl: bool, version: u8) -> Result<(), HeadError> {
    // RFC 9112 §6.3 (3): Transfer-Encoding overrides Content-Length, but the combination
    // "ought to be handled as an error" because it is the classic CL.TE / TE.CL smuggling
    // shape. We never forward it, so we reject it.
    if has_cl {
        return Err(framing("both Content-Length and Transfer-Encoding"));
    }
    // RFC 9112 §6.1: HTTP/1.0 has no Transfer-Encoding; a 1.0 message carrying one MUST be
    // treated as having faulty framing.
    if version == 0 {
        return Err(framing("Transfer-Encoding in an HTTP/1.0 message"));
    }
    Ok(())
}

struct Codings {
    final_chunked: bool,
}

/// The framing fields of a head, read in one pass (a client checks the framing of every
/// response, so the fields are not walked once per rule).
struct Fields {
    te: TransferCodings,
    cl: ContentLength,
}

impl Fields {
    fn scan<F: Field>(headers: &[F]) -> Self {
        let mut fields = Self {
            te: TransferCodings::default(),
            cl: ContentLength::default(),
        };
        for h in headers {
            let name = h.name();
            if name.eq_ignore_ascii_case("content-length") {
                fields.cl.add(h.value());
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                fields.te.add(h.value());
            }
        }
        fields
    }
}

/// Every Transfer-Encoding field read as one comma-separated list (RFC 9110 §5.3).
#[derive(Default)]
struct TransferCodings {
    seen: bool,
    any: bool,
    last_chunked: bool,
    chunked_count: usize,
}

impl TransferCodings {
    fn add(&mut self, value: &[u8]) {
        self.seen = true;
        for item in value.split(|&b| b == b',') {
            // A coding may carry parameters after ';' (RFC 9110 §10.1.4); only its name
            // matters for framing.
            let name = item
                .split(|&b| b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            if name.is_empty() {
                // Empty list elements are allowed and ignored (RFC 9110 §5.6.1).
                continue;
            }
            self.any = true;
            self.last_chunked = name.eq_ignore_ascii_case(b"chunked");
            self.chunked_count += usize::from(self.last_chunked);
        }
    }

    /// `None` when there is no such field.
    fn finish(self) -> Result<Option<Codings>, HeadError> {
        if !self.seen {
            return Ok(None);
        }
        if !self.any {
            return Err(framing("empty Transfer-Encoding"));
        }
        // RFC 9112 §6.1: a sender MUST NOT apply chunked more than once.
        if self.chunked_count > 1 {
            return Err(framing("chunked applied more than once"));
        }
        Ok(Some(Codings {
            final_chunked: self.last_chunked,
        }))
    }
}

/// The message's Content-Length, if it has one (RFC 9110 §8.6, RFC 9112 §6.3 (5)).
/// Several fields, or a list in one field, are accepted only when every element is the same
/// number; anything else has no reliable length. The first violation is kept.
#[derive(Default)]
struct ContentLength {
    seen: bool,
    length: Option<u64>,
    error: Option<HeadError>,
}

impl ContentLength {
    fn add(&mut self, value: &[u8]) {
        self.seen = true;
        if self.error.is_some() {
            return;
        }
        for item in value.split(|&b| b == b',') {
            let n = match parse_decimal(item.trim_ascii()) {
                Ok(n) => n,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            };
            match self.length {
                Some(prev) if prev != n => {
                    self.error = Some(framing("differing Content-Length values"));
                    return;
                }
                _ => self.length = Some(n),
            }
        }
    }

    fn finish(self) -> Result<Option<u64>, HeadError> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.length),
        }
    }
}

/// `Content-Length = 1*DIGIT`: no sign, no inner whitespace, no overflow.
fn parse_decimal(digits: &[u8]) -> Result<u64, HeadError> {
    if digits.is_empty() {
        return Err(framing("empty Content-Length"));
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(framing("Content-Length is not a number"));
        }
        acc.checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(framing("Content-Length overflows"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, parse_response, HeadLimits, RequestHead};

    fn req(head: &str) -> Result<BodyFraming, HeadError> {
        let (h, _): (RequestHead, _) = parse_request(head.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        h.body_framing()
    }

    fn res(head: &str, method: &str) -> Result<BodyFraming, HeadError> {
        let (h, _) = parse_response(head.as_bytes(), &HeadLimits::default())
            .unwrap()
            .unwrap();
        h.body_framing(method)
    }

    fn is_framing_err(r: Result<BodyFraming, HeadError>) {
        assert!(matches!(r, Err(HeadError::Framing { .. })), "{r:?}");
        assert_eq!(r.unwrap_err().status(), 400);
    }

    #[test]
    fn request_without_body() {
        assert_eq!(req("GET / HTTP/1.1\r\n\r\n"), Ok(BodyFraming::Empty));
    }

    #[test]
    fn request_content_length() {
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Ok(BodyFraming::ContentLength(5))
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(BodyFraming::ContentLength(0))
        );
        // Identical duplicates, in one field or several, are one length (RFC 9110 §8.6).
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            Ok(BodyFraming::ContentLength(5))
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
            Ok(BodyFraming::ContentLength(5))
        );
    }

    #[test]
    fn request_bad_content_length() {
        for cl in [
            "5, 6",
            "+5",
            "-1",
            "0x10",
            "5 5",
            "",
            "5,",
            "1e3",
            "18446744073709551616",
            " ,5",
        ] {
            let head = format!("POST / HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            is_framing_err(req(&head));
        }
        is_framing_err(req(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        ));
    }

    #[test]
    fn request_chunked() {
        assert_eq!(
            req("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(BodyFraming::Chunked)
        );
    }

    #[test]
    fn one_pass_keeps_the_order_of_the_rules() {
        let reason = |r: Result<BodyFraming, HeadError>| match r {
            Err(HeadError::Framing { reason }) => reason,
            other => panic!("{other:?}"),
        };
        // Transfer-Encoding's own errors come first, then its clash with Content-Length, and a
        // bad Content-Length only matters without Transfer-Encoding.
        assert_eq!(
            reason(req(
                "POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
            )),
            "chunked applied more than once"
        );
        assert_eq!(
            reason(req(
                "POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            )),
            "both Content-Length and Transfer-Encoding"
        );
        // The first bad Content-Length is the one reported.
        assert_eq!(
            reason(req(
                "POST / HTTP/1.1\r\nContent-Length: 5, 6\r\nContent-Length: x\r\n\r\n"
            )),
            "differing Content-Length values"
        );
        assert_eq!(
            reason(res(
                "HTTP/1.1 200 OK\r\nContent-Length: x\r\nContent-Length: 5, 6\r\n\r\n",
                "GET"
            )),
            "Content-Length is not a number"
        );
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        // CL.TE / TE.CL
        is_framing_err(req(
            "POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
        ));
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n",
        ));
        // TE.TE obfuscations: final coding not chunked, chunked twice, unknown spellings.
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ));
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        ));
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        ));
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
        ));
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked-false\r\n\r\n",
        ));
        is_framing_err(req(
            "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        ));
        is_framing_err(req("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n"));
        // Transfer-Encoding does not exist in HTTP/1.0 (RFC 9112 §6.1).
        is_framing_err(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"));
        // Differing lengths.
        is_framing_err(req(
            "POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 44\r\n\r\n",
        ));
    }

    #[test]
    fn response_framing_rules() {
        use BodyFraming::*;
        let cl = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
        assert_eq!(res(cl, "GET"), Ok(ContentLength(7)));
        assert_eq!(res(cl, "HEAD"), Ok(Empty));
        assert_eq!(
            res(
                "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
                "GET"
            ),
            Ok(Empty)
        );
        assert_eq!(
            res(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n",
                "GET"
            ),
            Ok(Empty)
        );
        assert_eq!(
            res("HTTP/1.1 101 Switching Protocols\r\n\r\n", "GET"),
            Ok(Empty)
        );
        assert_eq!(res("HTTP/1.1 100 Continue\r\n\r\n", "POST"), Ok(Empty));
        assert_eq!(res("HTTP/1.1 200 OK\r\n\r\n", "CONNECT"), Ok(Empty));
        assert_eq!(
            res(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET"
            ),
            Ok(Chunked)
        );
        assert_eq!(
            res("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"),
            Ok(UntilClose)
        );
        assert_eq!(res("HTTP/1.1 200 OK\r\n\r\n", "GET"), Ok(UntilClose));
        assert_eq!(res("HTTP/1.0 200 OK\r\n\r\n", "GET"), Ok(UntilClose));
        is_framing_err(res(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET",
        ));
        is_framing_err(res(
            "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
            "GET",
        ));
        is_framing_err(res("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET"));
        is_framing_err(res(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            "GET",
        ));
    }
}
