//! Frame header decoding and frame encoding (RFC 6455 §5.2).

use super::{FrameHeader, OpCode, ProtocolError};

/// Decodes the frame header at the start of `buf` without looking at the payload.
/// `Ok(None)` means more bytes are needed; `Ok(Some((header, header_len)))` otherwise.
/// Fails on reserved opcodes and on a 64-bit length with its top bit set. Role, RSV and
/// size rules are the [`Decoder`](super::Decoder)'s job, so dissectors can show rule-breaking
/// frames too.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    todo!("{}", buf.len())
}

/// Appends one frame to `out`. Pass `mask: Some(key)` for client-to-server frames (RFC 6455
/// §5.3); the payload is copied and masked in `out`, `payload` itself is untouched.
pub fn encode_frame(out: &mut Vec<u8>, fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) {
    todo!("{} {fin} {opcode:?} {mask:?} {}", out.len(), payload.len())
}

/// Appends a close frame with `code` and `reason` (truncated on a char boundary to 123 bytes).
pub fn encode_close(out: &mut Vec<u8>, mask: Option<[u8; 4]>, code: u16, reason: &str) {
    todo!("{} {mask:?} {code} {reason}", out.len())
}

/// XORs `buf` with `mask` in place, as if `buf` began `offset` bytes into the payload, so a
/// payload can be unmasked in pieces. Works a word at a time; this is the hot loop of every
/// server-side read.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    todo!("{} {mask:?} {offset}", buf.len())
}
