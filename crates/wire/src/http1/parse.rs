//! Request and response head parsing.

use super::{HeadError, HeadLimits, RequestHead, ResponseHead};

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
    todo!("{} {limits:?}", buf.len())
}

/// Parses a response head at the start of `buf`; same contract as [`parse_request`].
pub fn parse_response(
    buf: &[u8],
    limits: &HeadLimits,
) -> Result<Option<(ResponseHead, usize)>, HeadError> {
    todo!("{} {limits:?}", buf.len())
}
