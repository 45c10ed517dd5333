//! Watching a WebSocket byte stream go by without decoding its messages.
//!
//! A proxy tunnels frames it has no reason to unmask or reassemble, yet it wants to log how a
//! session ended (its close code) and to know whether a stream stopped at a frame boundary
//! (where a close frame could be injected). [`FrameWatcher`] follows frame headers, skips
//! payloads without buffering them, and reads only the two code bytes of a close frame.

use super::{decode_header, OpCode};

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask.
const MAX_HEADER: usize = 14;

/// Follows the frames of one direction of a WebSocket connection.
///
/// Feed it every byte in order with [`FrameWatcher::feed`]. Bytes that are not valid frame
/// headers (a reserved opcode, a 64-bit length with its top bit set) stop the watching for
/// good — [`FrameWatcher::is_lost`] — and never panic: the tunnel carries them all the same.
#[derive(Debug, Clone, Default)]
pub struct FrameWatcher {
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes left in the current frame; 0 between frames.
    remaining: u64,
    /// Set while inside a close frame's payload: its mask and how many code bytes we have.
    close: Option<CloseCapture>,
    close_code: Option<u16>,
    frames: u64,
    lost: bool,
}

#[derive(Debug, Clone, Copy)]
struct CloseCapture {
    mask: Option<[u8; 4]>,
    code: [u8; 2],
    have: usize,
}

impl FrameWatcher {
    /// A watcher at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows `bytes`, the next part of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost {
            if self.remaining == 0 && self.close.is_none() {
                let take = (MAX_HEADER - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                match decode_header(&self.header[..self.header_len + take]) {
                    Ok(Some((h, len))) => {
                        bytes = &bytes[len - self.header_len..];
                        self.header_len = 0;
                        self.frames += 1;
                        self.remaining = h.payload_len;
                        if h.opcode == OpCode::Close {
                            if h.payload_len < 2 {
                                // No status code: RFC 6455 §7.1.5 calls that 1005.
                                self.close_code.get_or_insert(1005);
                            } else {
                                self.close = Some(CloseCapture {
                                    mask: h.mask,
                                    code: [0; 2],
                                    have: 0,
                                });
                            }
                        }
                    }
                    Ok(None) => {
                        self.header_len += take;
                        bytes = &bytes[take..];
                    }
                    Err(_) => self.lost = true,
                }
                continue;
            }
            let n = usize::try_from(self.remaining)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            if let Some(capture) = &mut self.close {
                for &b in &bytes[..n] {
                    if capture.have == 2 {
                        break;
                    }
                    let key = capture.mask.map_or(0, |m| m[capture.have % 4]);
                    capture.code[capture.have] = b ^ key;
                    capture.have += 1;
                }
                if capture.have == 2 {
                    let code = u16::from_be_bytes(capture.code);
                    self.close_code.get_or_insert(code);
                    self.close = None;
                }
            }
            self.remaining -= n as u64;
            bytes = &bytes[n..];
        }
    }

    /// The code of the first close frame seen (1005 if it had none), if one went by.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// Whether the stream so far ends exactly at a frame boundary (nothing half-sent).
    pub fn at_boundary(&self) -> bool {
        !self.lost && self.header_len == 0 && self.remaining == 0 && self.close.is_none()
    }

    /// Frame headers seen so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Whether bytes that are not WebSocket frames went by; the watcher stopped there.
    pub fn is_lost(&self) -> bool {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{encode_close, encode_frame};

    #[test]
    fn finds_a_masked_close_code_split_at_every_byte() {
        let mut stream = Vec::new();
        encode_frame(
            &mut stream,
            true,
            OpCode::Text,
            Some([1, 2, 3, 4]),
            &[b'x'; 300],
        );
        encode_close(&mut stream, Some([9, 8, 7, 6]), 4001, "bye");
        for split in 0..stream.len() {
            let mut w = FrameWatcher::new();
            w.feed(&stream[..split]);
            w.feed(&stream[split..]);
            assert_eq!(w.close_code(), Some(4001), "split at {split}");
            assert_eq!(w.frames(), 2);
            assert!(w.at_boundary());
        }
        let mut w = FrameWatcher::new();
        w.feed(&stream[..10]);
        assert!(!w.at_boundary(), "inside the text frame");
    }

    #[test]
    fn unmasked_close_and_close_without_code() {
        let mut w = FrameWatcher::new();
        let mut s = Vec::new();
        encode_close(&mut s, None, 1001, "");
        w.feed(&s);
        assert_eq!(w.close_code(), Some(1001));
        let mut w = FrameWatcher::new();
        w.feed(&[0x88, 0x00]);
        assert_eq!(w.close_code(), Some(1005));
    }

    #[test]
    fn garbage_stops_the_watch_without_panicking() {
        let mut w = FrameWatcher::new();
        w.feed(&[0x83, 0x00, 0xff]);
        assert!(w.is_lost());
        assert!(!w.at_boundary());
        assert_eq!(w.close_code(), None);
    }
}
