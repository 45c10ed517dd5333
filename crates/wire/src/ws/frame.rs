//! Frame header decoding and frame encoding (RFC 6455 §5.2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-------+-+-------------+-------------------------------+
//! |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
//! |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
//! |N|V|V|V|       |S|             |   (if payload len==126/127)   |
//! | |1|2|3|       |K|             |                               |
//! +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
//! ```

use super::{FrameHeader, OpCode, ProtocolError};

/// Longest close reason: a control payload is at most 125 bytes, 2 of them the code
/// (RFC 6455 §5.5, §5.5.1).
const MAX_CLOSE_REASON: usize = 123;

/// Decodes the frame header at the start of `buf` without looking at the payload.
/// `Ok(None)` means more bytes are needed; `Ok(Some((header, header_len)))` otherwise.
/// Fails on reserved opcodes and on a 64-bit length with its top bit set. Role, RSV and
/// size rules are the [`Decoder`](super::Decoder)'s job, so dissectors can show rule-breaking
/// frames too.
///
/// Non-minimal length encodings (e.g. 5 sent in the 16-bit form) are accepted: RFC 6455 §5.2
/// puts the minimality requirement on the sender, and no major implementation enforces it.
pub fn decode_header(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
    let (payload_len, mut len) = match b1 & 0x7F {
        126 => {
            let Some(&[a, b]) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([a, b])), 4)
        }
        127 => {
            let Some(ext) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(ext);
            let n = u64::from_be_bytes(be);
            // "the most significant bit MUST be 0" (RFC 6455 §5.2).
            if n >> 63 != 0 {
                return Err(ProtocolError::BadLength);
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let Some(&[a, b, c, d]) = buf.get(len..len + 4) else {
            return Ok(None);
        };
        len += 4;
        Some([a, b, c, d])
    } else {
        None
    };
    let header = FrameHeader {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0b111,
        opcode,
        mask,
        payload_len,
    };
    Ok(Some((header, len)))
}

/// Appends one frame to `out`. Pass `mask: Some(key)` for client-to-server frames (RFC 6455
/// §5.3); the payload is copied and masked in `out`, `payload` itself is untouched.
pub fn encode_frame(
    out: &mut Vec<u8>,
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    out.reserve(header.encoded_len() + payload.len());
    write_header(out, &header);
    match mask {
        Some(key) => extend_masked(out, payload, key),
        None => out.extend_from_slice(payload),
    }
}

/// Appends the header `h` (any RSV bits included) in its shortest form (RFC 6455 §5.2:
/// "the minimal number of bytes MUST be used to encode the length").
pub fn write_header(out: &mut Vec<u8>, h: &FrameHeader) {
    let b0 = (u8::from(h.fin) << 7) | ((h.rsv & 0b111) << 4) | h.opcode.as_u8();
    let mask_bit = if h.mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    match h.payload_len {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    if let Some(key) = h.mask {
        out.extend_from_slice(&key);
    }
}

/// Appends a close frame with `code` and `reason` (truncated on a char boundary to 123 bytes).
pub fn encode_close(out: &mut Vec<u8>, mask: Option<[u8; 4]>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = [0u8; 2 + MAX_CLOSE_REASON];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + end].copy_from_slice(&reason.as_bytes()[..end]);
    encode_frame(out, true, OpCode::Close, mask, &payload[..2 + end]);
}

/// XORs `buf` with `mask` in place, as if `buf` began `offset` bytes into the payload, so a
/// payload can be unmasked in pieces. Works a word at a time; this is the hot loop of every
/// server-side read.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // Rotate the key so that index 0 of `buf` lines up with key byte `offset % 4`
    // (RFC 6455 §5.3: octet i is XORed with key octet i MOD 4).
    let rot = offset % 4;
    let key = [
        mask[rot],
        mask[(rot + 1) % 4],
        mask[(rot + 2) % 4],
        mask[(rot + 3) % 4],
    ];
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(w) ^ word).to_ne_bytes());
    }
    // Whole words cover a multiple of 4 bytes, so the tail starts at key byte 0 again.
    for (b, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *b ^= k;
    }
}

/// Appends `src` XORed with `mask` (from key byte 0) to `out`: the copy and the masking in
/// one pass over the data, instead of a `memcpy` followed by [`apply_mask`]. Besides halving
/// memory traffic, this sidesteps `rep movsb` slow paths some CPUs hit when source and
/// destination are misaligned relative to each other, which a payload behind a 2-, 4-, 6-,
/// 8- or 14-byte header always is.
pub(crate) fn extend_masked(out: &mut Vec<u8>, src: &[u8], mask: [u8; 4]) {
    let word = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let words = src.chunks_exact(8);
    let tail = words.remainder();
    out.reserve(src.len());
    out.extend(words.flat_map(|chunk| {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        (u64::from_ne_bytes(w) ^ word).to_ne_bytes()
    }));
    // Whole words cover a multiple of 4 bytes, so the tail starts at key byte 0 again.
    out.extend(tail.iter().zip(mask.iter().cycle()).map(|(b, k)| b ^ k));
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn naive_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_5_7_examples_encode() {
        // A single-frame unmasked text message.
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Text, None, b"Hello");
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // A single-frame masked text message.
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Text, Some(KEY), b"Hello");
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // A fragmented unmasked text message.
        let mut out = Vec::new();
        encode_frame(&mut out, false, OpCode::Text, None, b"Hel");
        encode_frame(&mut out, true, OpCode::Continuation, None, b"lo");
        assert_eq!(out, [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]);
        // Unmasked ping and masked pong.
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Ping, None, b"Hello");
        assert_eq!(out, [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Pong, Some(KEY), b"Hello");
        assert_eq!(
            out,
            [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // 256 bytes binary in a single unmasked frame: 16-bit length form.
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Binary, None, &[0u8; 256]);
        assert_eq!(&out[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(out.len(), 4 + 256);
        // 64 KiB binary in a single unmasked frame: 64-bit length form.
        let mut out = Vec::new();
        encode_frame(&mut out, true, OpCode::Binary, None, &[0u8; 65536]);
        assert_eq!(&out[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!(out.len(), 10 + 65536);
    }

    #[test]
    fn rfc6455_5_7_examples_decode_header() {
        let (h, n) = decode_header(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!(n, 2);
        assert_eq!(
            h,
            FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Text,
                mask: None,
                payload_len: 5
            }
        );
        let (h, n) = decode_header(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d])
            .unwrap()
            .unwrap();
        assert_eq!((n, h.mask, h.payload_len), (6, Some(KEY), 5));
        let (h, n) = decode_header(&[0x01, 0x03]).unwrap().unwrap();
        assert_eq!((n, h.fin, h.opcode), (2, false, OpCode::Text));
        let (h, n) = decode_header(&[0x82, 0x7E, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!((n, h.payload_len), (4, 256));
        let (h, n) = decode_header(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0])
            .unwrap()
            .unwrap();
        assert_eq!((n, h.payload_len), (10, 65536));
        assert_eq!(h.encoded_len(), n);
    }

    #[test]
    fn header_needs_more_bytes() {
        let full = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for i in 0..full.len() {
            assert_eq!(decode_header(&full[..i]), Ok(None), "prefix {i}");
        }
        let (h, n) = decode_header(&full).unwrap().unwrap();
        assert_eq!((n, h.mask, h.payload_len), (14, Some([1, 2, 3, 4]), 65536));
    }

    #[test]
    fn header_errors() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                decode_header(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
        let top_bit = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode_header(&top_bit), Err(ProtocolError::BadLength));
        // RSV bits are reported, not rejected: that is the decoder's job.
        let (h, _) = decode_header(&[0xF1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b111);
    }

    #[test]
    fn write_header_roundtrips() {
        for len in [0u64, 125, 126, 0xFFFF, 0x1_0000, (1 << 63) - 1] {
            for mask in [None, Some(KEY)] {
                let h = FrameHeader {
                    fin: len.is_multiple_of(2),
                    rsv: 0b101,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let mut out = Vec::new();
                write_header(&mut out, &h);
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(decode_header(&out), Ok(Some((h, out.len()))));
            }
        }
    }

    #[test]
    fn close_encoding() {
        let mut out = Vec::new();
        encode_close(&mut out, None, 1000, "bye");
        assert_eq!(out, [0x88, 0x05, 0x03, 0xE8, b'b', b'y', b'e']);
        // Truncated to 123 bytes on a char boundary: 61 two-byte chars = 122 bytes.
        let reason = "é".repeat(100);
        let mut out = Vec::new();
        encode_close(&mut out, Some(KEY), 1001, &reason);
        let (h, n) = decode_header(&out).unwrap().unwrap();
        assert_eq!(h.payload_len, 2 + 122);
        let mut payload = out[n..].to_vec();
        apply_mask(&mut payload, KEY, 0);
        assert_eq!(&payload[..2], &1001u16.to_be_bytes());
        assert_eq!(std::str::from_utf8(&payload[2..]).unwrap(), "é".repeat(61));
        let mut out = Vec::new();
        encode_close(&mut out, None, 1000, &"a".repeat(200));
        assert_eq!(out.len(), 2 + 125);
    }

    #[test]
    fn apply_mask_matches_naive_for_all_offsets_and_lengths() {
        let data: Vec<u8> = (0..64u8)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        for len in 0..64 {
            for offset in 0..8 {
                let mut fast = data[..len].to_vec();
                let mut slow = data[..len].to_vec();
                apply_mask(&mut fast, KEY, offset);
                naive_mask(&mut slow, KEY, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn extend_masked_matches_naive() {
        let data: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(91)).collect();
        for len in 0..data.len() {
            let mut out = vec![0xAA; 3];
            extend_masked(&mut out, &data[..len], KEY);
            let mut want = data[..len].to_vec();
            naive_mask(&mut want, KEY, 0);
            assert_eq!(&out[..3], [0xAA; 3]);
            assert_eq!(&out[3..], want, "len {len}");
        }
    }

    #[test]
    fn apply_mask_in_pieces_equals_whole() {
        let data: Vec<u8> = (0..200u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, KEY, 0);
        for split in [1, 3, 7, 8, 13, 100] {
            let mut pieces = data.clone();
            let mut at = 0;
            while at < pieces.len() {
                let end = (at + split).min(pieces.len());
                apply_mask(&mut pieces[at..end], KEY, at);
                at = end;
            }
            assert_eq!(pieces, whole, "split {split}");
        }
    }
}
