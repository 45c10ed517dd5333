//! Head encoding.

/// Appends `HTTP/1.1 <status> <reason>\r\n`, each header as `name: value\r\n`, and the blank
/// line to `out`. Callers add `content-length` themselves. Header names and values must not
/// contain CR or LF (debug-asserted; values that come from users are validated at config time).
pub fn write_response_head(out: &mut Vec<u8>, status: u16, headers: &[(&str, &[u8])]) {
    todo!("{} {status} {}", out.len(), headers.len())
}

/// Appends `<method> <target> HTTP/1.1\r\n`, the headers and the blank line to `out`.
pub fn write_request_head(out: &mut Vec<u8>, method: &str, target: &str, headers: &[(&str, &[u8])]) {
    todo!("{} {method} {target} {}", out.len(), headers.len())
}

/// The RFC 9110 reason phrase for `status`, or `""` for codes without one.
pub fn reason_phrase(status: u16) -> &'static str {
    todo!("{status}")
}
