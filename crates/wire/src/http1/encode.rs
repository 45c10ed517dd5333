//! Head encoding.

/// Appends `HTTP/1.1 <status> <reason>\r\n`, each header as `name: value\r\n`, and the blank
/// line to `out`. Callers add `content-length` themselves. Header names and values must not
/// contain CR or LF (debug-asserted; values that come from users are validated at config time).
pub fn write_response_head(out: &mut Vec<u8>, status: u16, headers: &[(&str, &[u8])]) {
    let reason = reason_phrase(status);
    out.reserve(16 + reason.len() + headers_len(headers));
    out.extend_from_slice(b"HTTP/1.1 ");
    write_decimal(out, status);
    // status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4): the
    // second SP is there even when the reason is empty.
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(out, headers);
}

/// Appends `<method> <target> HTTP/1.1\r\n`, the headers and the blank line to `out`.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &str,
    target: &str,
    headers: &[(&str, &[u8])],
) {
    debug_assert!(!has_line_break(method.as_bytes()) && !has_line_break(target.as_bytes()));
    out.reserve(method.len() + target.len() + 13 + headers_len(headers));
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    write_fields(out, headers);
}

/// The RFC 9110 reason phrase for `status`, or `""` for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    // RFC 9110 §15 (and RFC 6585 for 429 and 431).
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

fn headers_len(headers: &[(&str, &[u8])]) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 4)
        .sum::<usize>()
        + 2
}

fn has_line_break(b: &[u8]) -> bool {
    b.iter().any(|&c| c == b'\r' || c == b'\n')
}

/// Field lines and the empty line that ends the head (RFC 9112 §2.1).
pub(crate) fn write_fields(out: &mut Vec<u8>, headers: &[(&str, &[u8])]) {
    for (name, value) in headers {
        // A CR or LF here would let the value start a new field or end the head: response
        // splitting (RFC 9112 §11.1).
        debug_assert!(
            !has_line_break(name.as_bytes()),
            "CR/LF in header name {name:?}"
        );
        debug_assert!(!has_line_break(value), "CR/LF in value of header {name:?}");
        write_field(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
}

/// One `name: value\r\n` line.
pub(crate) fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal (a status code, a Content-Length) without formatting machinery.
pub fn write_decimal(out: &mut Vec<u8>, n: impl Into<u64>) {
    let mut n: u64 = n.into();
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, parse_response, HeadLimits, Headers};

    #[test]
    fn response_head_roundtrips() {
        let mut out = b"prefix".to_vec();
        write_response_head(&mut out, 404, &[("content-length", b"0"), ("x-a", b"b c")]);
        assert_eq!(
            &out[6..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nx-a: b c\r\n\r\n"
        );
        let (h, n) = parse_response(&out[6..], &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, out.len() - 6);
        assert_eq!((h.status, h.reason.as_str()), (404, "Not Found"));
        assert_eq!(h.header("X-A"), Some(&b"b c"[..]));
    }

    #[test]
    fn unknown_status_has_empty_reason() {
        let mut out = Vec::new();
        write_response_head(&mut out, 299, &[]);
        assert_eq!(out, b"HTTP/1.1 299 \r\n\r\n");
        let mut out = Vec::new();
        write_response_head(&mut out, 7, &[]);
        assert_eq!(out, b"HTTP/1.1 7 \r\n\r\n");
    }

    #[test]
    fn request_head_roundtrips() {
        let mut out = Vec::new();
        write_request_head(
            &mut out,
            "POST",
            "/echo?x=1",
            &[("host", b"localhost:3000")],
        );
        assert_eq!(
            out,
            b"POST /echo?x=1 HTTP/1.1\r\nhost: localhost:3000\r\n\r\n"
        );
        let (h, _) = parse_request(&out, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.target.as_str()),
            ("POST", "/echo?x=1")
        );
    }

    #[test]
    fn reason_phrases() {
        for code in [
            100, 101, 200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405,
            408, 409, 411, 413, 414, 415, 426, 429, 431, 500, 501, 502, 503, 504, 505,
        ] {
            assert!(!reason_phrase(code).is_empty(), "{code}");
        }
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(599), "");
    }

    #[test]
    fn decimal() {
        for n in [0u64, 9, 10, 101, 999, 65535, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}
