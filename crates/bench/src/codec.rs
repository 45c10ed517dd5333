//! The few WebSocket bytes the load client needs: the client handshake, masked frame encoding,
//! and server frame headers (RFC 6455 §4.1, §5.2, §5.3).
//!
//! Interim: `protolab_wire::ws` owns this once its bodies land; the client then switches to it.

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

/// RFC 6455 §1.3: appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcode of a continuation frame.
pub(crate) const CONTINUATION: u8 = 0x0;
/// Opcode of a binary frame.
pub(crate) const BINARY: u8 = 0x2;
/// Opcode of a text frame.
pub(crate) const TEXT: u8 = 0x1;
/// Opcode of a close frame.
pub(crate) const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub(crate) const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub(crate) const PONG: u8 = 0xA;

/// Base64 of the 16-byte nonce, for `Sec-WebSocket-Key`.
pub(crate) fn encode_key(nonce: [u8; 16]) -> String {
    base64::engine::general_purpose::STANDARD.encode(nonce)
}

/// `Sec-WebSocket-Accept` the server must answer for `key`.
pub(crate) fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Appends the upgrade request.
pub(crate) fn write_request(out: &mut Vec<u8>, host: &str, target: &str, key: &str) {
    out.extend_from_slice(
        format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// Checks a complete response head (without the final blank line's bytes mattering):
/// status 101 and a matching `Sec-WebSocket-Accept`.
pub(crate) fn check_response(head: &[u8], key: &str) -> Result<(), String> {
    let text = std::str::from_utf8(head).map_err(|_| "response head is not UTF-8".to_owned())?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "101" {
        return Err(format!("server answered `{status}` instead of 101"));
    }
    let want = accept_key(key);
    let ok = lines
        .filter_map(|l| l.split_once(':'))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == want
        });
    if ok {
        Ok(())
    } else {
        Err("Sec-WebSocket-Accept missing or wrong".to_owned())
    }
}

/// Appends one final, masked frame carrying `payload`.
pub(crate) fn encode_masked(out: &mut Vec<u8>, opcode: u8, mask: [u8; 4], payload: &[u8]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    let word = u32::from_ne_bytes(mask);
    let body = &mut out[start..];
    let mut chunks = body.chunks_exact_mut(4);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i];
    }
}

/// A server frame at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerFrame {
    /// FIN bit.
    pub(crate) fin: bool,
    /// The 4-bit opcode.
    pub(crate) opcode: u8,
    /// Header length; the payload starts here.
    pub(crate) header_len: usize,
    /// Payload length.
    pub(crate) payload_len: usize,
}

/// Decodes the header of the unmasked server frame at the start of `buf`; `Ok(None)` means
/// more bytes are needed for the header.
pub(crate) fn decode_header(buf: &[u8]) -> Result<Option<ServerFrame>, String> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b1 & 0x80 != 0 {
        return Err("server frame is masked".to_owned());
    }
    let (header_len, payload_len) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, usize::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => {
                let mut n = [0; 8];
                n.copy_from_slice(b);
                let len = usize::try_from(u64::from_be_bytes(n))
                    .map_err(|_| "frame length does not fit in memory".to_owned())?;
                (10, len)
            }
            None => return Ok(None),
        },
        n => (2, usize::from(n)),
    };
    Ok(Some(ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        header_len,
        payload_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_frame_round_trips() {
        let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mask = [1, 2, 3, 4];
        let mut out = Vec::new();
        encode_masked(&mut out, BINARY, mask, &payload);
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(&out[2..4], &300u16.to_be_bytes());
        assert_eq!(&out[4..8], &mask);
        let unmasked: Vec<u8> = out[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, payload);
    }

    #[test]
    fn decodes_server_headers() {
        assert!(decode_header(&[0x82]).unwrap().is_none());
        let f = decode_header(&[0x81, 5, b'h']).unwrap().unwrap();
        assert_eq!(
            (f.fin, f.opcode, f.header_len, f.payload_len),
            (true, TEXT, 2, 5)
        );
        let f = decode_header(&[0x02, 126, 0x40, 0x00]).unwrap().unwrap();
        assert_eq!(
            (f.fin, f.opcode, f.header_len, f.payload_len),
            (false, BINARY, 4, 16384)
        );
        assert!(decode_header(&[0x82, 0x85]).is_err());
    }
}
