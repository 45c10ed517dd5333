//! HTTP/2 framing at the level a guard in front of an HTTP/2 implementation needs (RFC 9113
//! §4.1): where frames begin and end in a byte stream and what their 9-byte headers say, plus
//! the two frames a server writes before or instead of its implementation (SETTINGS, GOAWAY).
//!
//! Payloads are never decoded here — no HPACK, no settings values: the lab's HTTP/2 server
//! (hyper on the `h2` crate) does that. [`FrameTracker`] only follows frame boundaries, so a
//! guard can count frames per type and find a boundary to write its own frame at.

/// The client connection preface (RFC 9113 §3.4), which an h2c prior-knowledge client sends
/// first.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 9;

/// Frame types (RFC 9113 §6).
pub mod frame_type {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY.
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE.
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION.
    pub const CONTINUATION: u8 = 0x9;
}

/// Flags this module looks at.
pub mod flags {
    /// ACK on SETTINGS and PING.
    pub const ACK: u8 = 0x1;
    /// END_STREAM on DATA and HEADERS.
    pub const END_STREAM: u8 = 0x1;
}

/// Error codes (RFC 9113 §7) a GOAWAY carries.
pub mod error_code {
    /// Graceful shutdown.
    pub const NO_ERROR: u32 = 0x0;
    /// A protocol error (a bad preface, for one).
    pub const PROTOCOL_ERROR: u32 = 0x1;
    /// A frame larger than allowed.
    pub const FRAME_SIZE_ERROR: u32 = 0x6;
    /// The peer is generating excessive load.
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub length: u32,
    /// Frame type (see [`frame_type`]).
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits, the reserved bit cleared).
    pub stream_id: u32,
}

impl FrameHeader {
    /// Decodes the header at the start of `bytes`, or `None` if fewer than 9 bytes are there.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let h: &[u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
        Some(Self {
            length: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream_id: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        })
    }

    /// Appends the encoded header to `out`. `length` must fit in 24 bits.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.length < 1 << 24, "frame length {}", self.length);
        out.extend_from_slice(&self.length.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream_id & 0x7fff_ffff).to_be_bytes());
    }
}

/// Appends an empty SETTINGS frame: the server preface that must precede a GOAWAY sent in
/// answer to a bad client preface.
pub fn encode_empty_settings(out: &mut Vec<u8>) {
    FrameHeader {
        length: 0,
        kind: frame_type::SETTINGS,
        flags: 0,
        stream_id: 0,
    }
    .encode(out);
}

/// Appends a GOAWAY frame (RFC 9113 §6.8) naming the last stream processed, the error code
/// and a short debug text. Debug text beyond 256 bytes is cut: it is for people, not parsers.
pub fn encode_goaway(out: &mut Vec<u8>, last_stream_id: u32, code: u32, debug: &[u8]) {
    let debug = &debug[..debug.len().min(256)];
    FrameHeader {
        length: 8 + debug.len() as u32,
        kind: frame_type::GOAWAY,
        flags: 0,
        stream_id: 0,
    }
    .encode(out);
    out.extend_from_slice(&(last_stream_id & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(debug);
}

/// Follows frame boundaries through a byte stream fed in pieces of any size: reports each
/// frame header as it completes and whether the stream sits at a boundary. Holds at most one
/// partial header (8 bytes); payloads are skipped, never stored.
#[derive(Debug, Clone, Default)]
pub struct FrameTracker {
    header: [u8; FRAME_HEADER_LEN],
    header_filled: usize,
    /// Payload bytes of the current frame still to pass.
    payload_left: u64,
}

impl FrameTracker {
    /// A tracker at the start of a frame.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the bytes fed so far end exactly at a frame boundary.
    pub fn at_boundary(&self) -> bool {
        self.header_filled == 0 && self.payload_left == 0
    }

    /// Feeds the next bytes of the stream, calling `on_header` for every frame header that
    /// completes in them, in order.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_header: impl FnMut(FrameHeader)) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skip = usize::try_from(self.payload_left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.payload_left -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            let take = (FRAME_HEADER_LEN - self.header_filled).min(bytes.len());
            self.header[self.header_filled..self.header_filled + take]
                .copy_from_slice(&bytes[..take]);
            self.header_filled += take;
            bytes = &bytes[take..];
            if self.header_filled == FRAME_HEADER_LEN {
                self.header_filled = 0;
                if let Some(header) = FrameHeader::decode(&self.header) {
                    self.payload_left = u64::from(header.length);
                    on_header(header);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            length: payload.len() as u32,
            kind,
            flags,
            stream_id,
        }
        .encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn follows_frames_fed_a_byte_at_a_time_and_whole() {
        let mut stream = frame(frame_type::SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        stream.extend(frame(frame_type::HEADERS, 0x5, 1, &[0x82; 17]));
        stream.extend(frame(frame_type::PING, flags::ACK, 0, &[7; 8]));
        stream.extend(frame(frame_type::DATA, 0, 0x8000_0003, &[]));
        let expected = vec![
            (frame_type::SETTINGS, 0, 0, 6),
            (frame_type::HEADERS, 0x5, 1, 17),
            (frame_type::PING, flags::ACK, 0, 8),
            // The reserved bit is not part of the stream id.
            (frame_type::DATA, 0, 3, 0),
        ];
        for step in [1, 2, 5, 9, 10, stream.len()] {
            let mut tracker = FrameTracker::new();
            let mut seen = Vec::new();
            for piece in stream.chunks(step) {
                tracker.feed(piece, |h| {
                    seen.push((h.kind, h.flags, h.stream_id, h.length))
                });
            }
            assert_eq!(seen, expected, "fed in pieces of {step}");
            assert!(tracker.at_boundary());
        }
        let mut tracker = FrameTracker::new();
        tracker.feed(&stream[..12], |_| {});
        assert!(!tracker.at_boundary(), "inside the SETTINGS payload");
        tracker.feed(&stream[12..15], |_| {});
        assert!(tracker.at_boundary());
        tracker.feed(&stream[15..17], |_| {});
        assert!(!tracker.at_boundary(), "inside a header");
    }

    #[test]
    fn goaway_encodes_as_rfc_9113_lays_it_out() {
        let mut out = Vec::new();
        encode_empty_settings(&mut out);
        encode_goaway(&mut out, 7, error_code::ENHANCE_YOUR_CALM, b"calm");
        assert_eq!(&out[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(
            &out[9..],
            &[0, 0, 12, 7, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 11, b'c', b'a', b'l', b'm']
        );
        let header = FrameHeader::decode(&out[9..]).expect("a whole header");
        assert_eq!(
            (header.kind, header.length, header.stream_id),
            (frame_type::GOAWAY, 12, 0)
        );
    }
}
