//! The permessage-deflate codec (RFC 7692 §7.2): raw DEFLATE per message, flushed with an
//! empty stored block whose `00 00 ff ff` tail is left off the wire.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::ws::{apply_mask, write_header, FrameHeader, OpCode};

/// The end of an empty stored block, which every message's compressed data ends with before
/// the sender strips it (RFC 7692 §7.2.1) and the receiver appends it again (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest window flate2 (and zlib) accept; see the module docs on 8 bits.
const ZLIB_MIN_WINDOW_BITS: u8 = 9;

/// First output allocation for a message; doubled as the message grows, capped by the limit.
const FIRST_CHUNK: usize = 4096;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The message inflates to more than the limit (close 1009). Nothing past the limit was
    /// produced or allocated.
    #[error("the message inflates to more than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The compressed data is not valid DEFLATE.
    #[error("invalid compressed data: {0}")]
    Corrupt(String),
}

/// Inflates one direction's compressed messages (RFC 7692 §7.2.2).
///
/// Feed each compressed fragment, unmasked, to [`inflate`](Self::inflate) as it arrives,
/// then call [`finish`](Self::finish) at the end of the message. With context takeover the
/// LZ77 window carries over to the next message; without it the inflater starts afresh.
pub struct Inflater {
    inner: Decompress,
    window_bits: u8,
    no_context_takeover: bool,
    /// The message's DEFLATE stream ended with a BFINAL block: the rest of the message is
    /// ignored, as zlib ignores data after a stream's end, and the next message starts anew.
    ended: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// An inflater for a sender that uses at most `window_bits` (8–15; out-of-range values
    /// are clamped) and resets per message if `no_context_takeover`. An 8-bit window is
    /// inflated with 9 bits, zlib's smallest, which accepts everything 8 bits would.
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Self {
            inner: Decompress::new_with_window_bits(false, window_bits.max(ZLIB_MIN_WINDOW_BITS)),
            window_bits,
            no_context_takeover,
            ended: false,
        }
    }

    /// The sender's window as negotiated.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the window is dropped after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Inflates `compressed`, one piece of a message's payload, appending to `out` but never
    /// letting `out` grow past `limit` bytes: output that would exceed it is
    /// [`InflateError::TooLarge`], and `out`'s allocation never goes beyond `limit` on our
    /// account. After an error the inflater is unusable (close the connection).
    pub fn inflate(
        &mut self,
        mut compressed: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        loop {
            if self.ended {
                return Ok(());
            }
            let room = limit.saturating_sub(out.len());
            if room == 0 {
                // Full: one more byte of output, now or pending in the window, is too much.
                let mut probe = [0u8; 1];
                let (consumed, produced, status) = self.step(compressed, &mut probe)?;
                if produced > 0 {
                    return Err(InflateError::TooLarge { limit });
                }
                compressed = &compressed[consumed..];
                self.ended = status == Status::StreamEnd;
                if consumed == 0 {
                    return Ok(());
                }
                continue;
            }
            let len = out.len();
            let grow = room.min(len.max(FIRST_CHUNK));
            // Exactly what is asked, so the allocation stays within the limit.
            out.reserve_exact(grow);
            out.resize(len + grow, 0);
            let result = self.step(compressed, &mut out[len..]);
            let (consumed, produced, status) = match result {
                Ok(step) => step,
                Err(e) => {
                    out.truncate(len);
                    return Err(e);
                }
            };
            out.truncate(len + produced);
            compressed = &compressed[consumed..];
            if status == Status::StreamEnd {
                // A sender may end a message with BFINAL set (RFC 7692 §7.2.3.4).
                self.ended = true;
                return Ok(());
            }
            let full = produced == grow;
            if !full && (compressed.is_empty() || (consumed == 0 && produced == 0)) {
                if !compressed.is_empty() {
                    return Err(InflateError::Corrupt(
                        "the inflater made no progress".into(),
                    ));
                }
                return Ok(());
            }
        }
    }

    /// Ends a message: inflates the `00 00 ff ff` the sender left off (RFC 7692 §7.2.2), with
    /// the same `limit` as its fragments, and drops the window if there is no context
    /// takeover.
    pub fn finish(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<(), InflateError> {
        self.inflate(&TAIL, out, limit)?;
        // After a BFINAL block the sender's next message is a new DEFLATE stream.
        if self.no_context_takeover || self.ended {
            self.inner.reset(false);
            self.ended = false;
        }
        Ok(())
    }

    /// [`inflate`](Self::inflate) for a masked frame's payload (a server's input): `payload`
    /// starts `offset` bytes into the frame's payload, so a frame can be fed in pieces. The
    /// bytes are unmasked a stack buffer's worth at a time, never copied whole.
    pub fn inflate_masked(
        &mut self,
        payload: &[u8],
        mask: [u8; 4],
        offset: usize,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        let mut chunk = [0u8; 4096];
        let mut at = offset;
        for piece in payload.chunks(chunk.len()) {
            let plain = &mut chunk[..piece.len()];
            plain.copy_from_slice(piece);
            apply_mask(plain, mask, at);
            self.inflate(plain, out, limit)?;
            at += piece.len();
        }
        Ok(())
    }

    /// One call into the decompressor: bytes consumed, bytes produced, status.
    fn step(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(usize, usize, Status), InflateError> {
        let (in0, out0) = (self.inner.total_in(), self.inner.total_out());
        let status = self
            .inner
            .decompress(input, output, FlushDecompress::None)
            .map_err(|e| InflateError::Corrupt(e.to_string()))?;
        // Both deltas are bounded by the slices' lengths.
        let consumed = usize::try_from(self.inner.total_in() - in0).unwrap_or(input.len());
        let produced = usize::try_from(self.inner.total_out() - out0).unwrap_or(output.len());
        Ok((consumed, produced, status))
    }
}

/// Compressing failed inside the DEFLATE library (not expected with valid settings).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("compression failed: {0}")]
pub struct DeflateError(String);

/// Compresses one direction's messages (RFC 7692 §7.2.1).
pub struct Deflater {
    inner: Compress,
    window_bits: u8,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor using at most `window_bits` (8–15, clamped) at `level` (0–9, clamped),
    /// resetting after every message if `no_context_takeover`. With 8 bits it writes stored
    /// blocks only, whatever the level: see the module docs.
    pub fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Self {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let level = if window_bits < ZLIB_MIN_WINDOW_BITS {
            Compression::none()
        } else {
            Compression::new(level.min(9))
        };
        Self {
            inner: Compress::new_with_window_bits(
                level,
                false,
                window_bits.max(ZLIB_MIN_WINDOW_BITS),
            ),
            window_bits,
            no_context_takeover,
        }
    }

    /// The window as negotiated.
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Whether the compressor resets after every message.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// Compresses `message` and appends the frame payload to `out`: DEFLATE blocks ending in
    /// a sync flush, with the flush's `00 00 ff ff` removed (RFC 7692 §7.2.1). An empty
    /// message becomes the single byte `00` (§7.2.3.6).
    pub fn compress(&mut self, message: &[u8], out: &mut Vec<u8>) -> Result<(), DeflateError> {
        let start = out.len();
        let mut input = message;
        loop {
            // Deflate's worst case is a few bytes per 16 KiB stored block beyond the input.
            out.reserve(input.len() / 2 + 64);
            let in0 = self.inner.total_in();
            self.inner
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(|e| DeflateError(e.to_string()))?;
            let consumed = usize::try_from(self.inner.total_in() - in0).unwrap_or(input.len());
            input = &input[consumed..];
            // Done once the input is in and the flush fit: zlib leaves room unused only then.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
        Ok(())
    }
}

/// Appends `message` as one compressed frame: `deflater`'s output with RSV1 set (RFC 7692
/// §6), masked with `mask` on a client. `opcode` is Text or Binary. The payload is compressed
/// straight into `out` behind room for the longest header, then moved up to the header's
/// real length: one `memmove`, no second buffer.
pub fn encode_compressed(
    out: &mut Vec<u8>,
    deflater: &mut Deflater,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    message: &[u8],
) -> Result<(), DeflateError> {
    const ROOM: usize = 14;
    let start = out.len();
    out.resize(start + ROOM, 0);
    if let Err(e) = deflater.compress(message, out) {
        out.truncate(start);
        return Err(e);
    }
    let payload_len = out.len() - start - ROOM;
    let header = FrameHeader {
        fin: true,
        rsv: 0b100,
        opcode,
        mask,
        payload_len: payload_len as u64,
    };
    let mut head = Vec::with_capacity(ROOM);
    write_header(&mut head, &header);
    let body = start + head.len();
    out.copy_within(start + ROOM.., body);
    out.truncate(body + payload_len);
    out[start..body].copy_from_slice(&head);
    if let Some(key) = mask {
        apply_mask(&mut out[body..], key, 0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        let words = [
            "{\"id\":",
            "\"user\":",
            "\"alice\",",
            "\"price\":",
            "12.5,",
            "\"tags\":[",
            "\"a\"]}",
        ];
        let mut out = Vec::new();
        let mut i = 0usize;
        while out.len() < n {
            out.extend_from_slice(words[i % words.len()].as_bytes());
            out.extend_from_slice(i.to_string().as_bytes());
            i = i.wrapping_mul(7).wrapping_add(3) % 1000;
        }
        out.truncate(n);
        out
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn roundtrip(d: &mut Deflater, i: &mut Inflater, msg: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        d.compress(msg, &mut wire).unwrap();
        assert!(!wire.ends_with(&TAIL) || msg.is_empty());
        let mut out = Vec::new();
        i.inflate(&wire, &mut out, usize::MAX).unwrap();
        i.finish(&mut out, usize::MAX).unwrap();
        assert_eq!(out, msg);
        wire
    }

    #[test]
    fn rfc7692_7_2_3_examples() {
        // §7.2.3.1: "Hello" in one compressed frame.
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        i.inflate(&hello, &mut out, 100).unwrap();
        i.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the same again with context takeover: a back-reference into the window.
        let again = [0xf2, 0x00, 0x11, 0x00, 0x00];
        let mut out = Vec::new();
        i.inflate(&again, &mut out, 100).unwrap();
        i.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.1 fragmented: split at any byte.
        for cut in 0..=hello.len() {
            let mut i = Inflater::new(15, false);
            let mut out = Vec::new();
            i.inflate(&hello[..cut], &mut out, 100).unwrap();
            i.inflate(&hello[cut..], &mut out, 100).unwrap();
            i.finish(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello", "cut {cut}");
        }
        // §7.2.3.3: "Hello" in a stored block.
        let stored = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        let mut out = Vec::new();
        let mut i = Inflater::new(15, false);
        i.inflate(&stored, &mut out, 100).unwrap();
        i.finish(&mut out, 100).unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.4: a block with BFINAL set ends the stream (the RFC's bytes, with a trailing
        // 0x00 that is ignored like the appended tail); the next message starts a new one.
        let final_block = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut i = Inflater::new(15, false);
        for _ in 0..2 {
            let mut out = Vec::new();
            i.inflate(&final_block, &mut out, 100).unwrap();
            i.finish(&mut out, 100).unwrap();
            assert_eq!(out, b"Hello");
        }
        // §7.2.3.6: an empty message is one 0x00 byte.
        let mut d = Deflater::new(15, false, DEFAULT_LEVEL);
        let mut wire = Vec::new();
        d.compress(b"", &mut wire).unwrap();
        assert_eq!(wire, [0x00]);
    }

    use super::super::DEFAULT_LEVEL;

    #[test]
    fn context_takeover_shrinks_repeats_and_reset_forgets() {
        let msg = text(2000);
        let mut d = Deflater::new(15, false, DEFAULT_LEVEL);
        let mut i = Inflater::new(15, false);
        let first = roundtrip(&mut d, &mut i, &msg);
        let second = roundtrip(&mut d, &mut i, &msg);
        assert!(
            first.len() < msg.len() / 2,
            "{} of {}",
            first.len(),
            msg.len()
        );
        assert!(second.len() < 40, "{}", second.len());
        // Without takeover every message costs the same.
        let mut d = Deflater::new(15, true, DEFAULT_LEVEL);
        let mut i = Inflater::new(15, true);
        let a = roundtrip(&mut d, &mut i, &msg);
        let b = roundtrip(&mut d, &mut i, &msg);
        assert_eq!(a, b);
        // An inflater that resets cannot follow a sender that did not.
        let mut d = Deflater::new(15, false, DEFAULT_LEVEL);
        let mut i = Inflater::new(15, true);
        roundtrip(&mut d, &mut i, &msg);
        let mut wire = Vec::new();
        d.compress(&msg, &mut wire).unwrap();
        let mut out = Vec::new();
        let r = i
            .inflate(&wire, &mut out, usize::MAX)
            .and_then(|()| i.finish(&mut out, usize::MAX));
        assert!(r.is_err() || out != msg);
    }

    #[test]
    fn every_window_and_level_roundtrips() {
        let messages = [text(100), noise(3000, 7), text(70_000), Vec::new()];
        for bits in 8..=15 {
            for level in [0, 1, 6, 9] {
                for takeover in [false, true] {
                    let mut d = Deflater::new(bits, !takeover, level);
                    let mut i = Inflater::new(bits, !takeover);
                    for m in &messages {
                        roundtrip(&mut d, &mut i, m);
                    }
                }
            }
        }
    }

    /// Walks raw DEFLATE data that must consist of stored blocks only, returning the
    /// payload bytes; panics on any other block type.
    fn stored_blocks(mut data: &[u8]) -> usize {
        let mut total = 0;
        while let [header, rest @ ..] = data {
            assert_eq!(header & 0b110, 0, "block type {}", (header >> 1) & 3);
            let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            let nlen = u16::from_le_bytes([rest[2], rest[3]]);
            assert_eq!(nlen, !(len as u16));
            total += len;
            data = &rest[4 + len..];
        }
        total
    }

    #[test]
    fn eight_bit_window_writes_stored_blocks() {
        let mut d = Deflater::new(8, false, 9);
        for msg in [text(300), text(100_000), text(300)] {
            let mut wire = Vec::new();
            d.compress(&msg, &mut wire).unwrap();
            // Put the tail back so the last (empty) block is whole.
            wire.extend_from_slice(&TAIL);
            assert_eq!(stored_blocks(&wire), msg.len());
        }
    }

    #[test]
    fn limit_stops_a_bomb_without_allocating_past_it() {
        // 4 MiB of zeros compresses to a few KiB.
        let bomb = vec![0u8; 4 << 20];
        let mut d = Deflater::new(15, false, 9);
        let mut wire = Vec::new();
        d.compress(&bomb, &mut wire).unwrap();
        assert!(wire.len() < 8 << 10, "{}", wire.len());
        for limit in [0, 1, 1000, 65_536, (4 << 20) - 1] {
            let mut i = Inflater::new(15, false);
            let mut out = Vec::new();
            // Fed in pieces, as fragments arrive.
            let r = wire
                .chunks(100)
                .try_for_each(|piece| i.inflate(piece, &mut out, limit))
                .and_then(|()| i.finish(&mut out, limit));
            assert_eq!(r, Err(InflateError::TooLarge { limit }), "limit {limit}");
            assert!(out.len() <= limit);
            assert!(out.capacity() <= limit, "{} > {limit}", out.capacity());
        }
        // Exactly at the limit is fine.
        let mut i = Inflater::new(15, false);
        let mut out = Vec::new();
        i.inflate(&wire, &mut out, bomb.len()).unwrap();
        i.finish(&mut out, bomb.len()).unwrap();
        assert_eq!(out.len(), bomb.len());
        assert!(out.capacity() <= bomb.len());
    }

    #[test]
    fn corrupt_data_is_an_error() {
        for bad in [
            &[0xff, 0xff, 0xff][..],
            &[0x07],
            &[0x00, 0x05, 0x00, 0x00, 0x00],
        ] {
            let mut i = Inflater::new(15, false);
            let mut out = Vec::new();
            let r = i
                .inflate(bad, &mut out, 1000)
                .and_then(|()| i.finish(&mut out, 1000));
            assert!(matches!(r, Err(InflateError::Corrupt(_))), "{bad:?}: {r:?}");
        }
    }

    #[test]
    fn encode_compressed_sets_rsv1() {
        let mut d = Deflater::new(15, false, DEFAULT_LEVEL);
        let mut out = b"before".to_vec();
        encode_compressed(&mut out, &mut d, OpCode::Text, Some([1, 2, 3, 4]), b"Hello").unwrap();
        let out = out.split_off(6);
        let (h, n) = crate::ws::decode_header(&out).unwrap().unwrap();
        assert_eq!((h.fin, h.rsv, h.opcode), (true, 0b100, OpCode::Text));
        let mut i = Inflater::new(15, false);
        let mut msg = Vec::new();
        // In two pieces, the second starting mid-key.
        i.inflate_masked(&out[n..n + 3], [1, 2, 3, 4], 0, &mut msg, 100)
            .unwrap();
        i.inflate_masked(&out[n + 3..], [1, 2, 3, 4], 3, &mut msg, 100)
            .unwrap();
        i.finish(&mut msg, 100).unwrap();
        assert_eq!(msg, b"Hello");
        // The RFC's own bytes for "Hello" (§7.2.3.1), unmasked on a server.
        let mut out = Vec::new();
        let mut d = Deflater::new(15, false, DEFAULT_LEVEL);
        encode_compressed(&mut out, &mut d, OpCode::Text, None, b"Hello").unwrap();
        assert_eq!(out, [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        // Long enough for the 16-bit and 64-bit length forms.
        let (mut d, mut i) = (Deflater::new(15, false, 1), Inflater::new(15, false));
        for n in [200, 200_000] {
            let msg = noise(n, 3);
            let mut out = Vec::new();
            encode_compressed(&mut out, &mut d, OpCode::Binary, None, &msg).unwrap();
            let (h, hl) = crate::ws::decode_header(&out).unwrap().unwrap();
            assert_eq!(h.payload_len as usize, out.len() - hl);
            let mut back = Vec::new();
            i.inflate(&out[hl..], &mut back, n).unwrap();
            i.finish(&mut back, n).unwrap();
            assert_eq!(back, msg);
        }
    }
}
