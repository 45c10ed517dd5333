//! WebSocket (RFC 6455): frame headers, a message [`Decoder`] that enforces the protocol's
//! rules and size limits, frame encoding with fast masking, and the opening handshake.
//!
//! Every way a peer can break the protocol maps to one close code through
//! [`ProtocolError::close_code`]: 1002 for protocol violations, 1007 for invalid UTF-8 in text
//! or close reasons, 1009 for frames and messages over the limit (inflated size included, when
//! permessage-deflate was negotiated: see [`deflate`]).

use thiserror::Error;

mod decoder;
pub mod deflate;
mod frame;
pub mod handshake;
mod utf8;
mod watch;

pub use decoder::Decoder;
pub use frame::{apply_mask, decode_header, encode_close, encode_frame, write_header};
pub use watch::FrameWatcher;

/// Frame opcode (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: UTF-8 text.
    Text,
    /// 0x2: binary data.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// The 4-bit value on the wire.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Parses the 4-bit value; reserved opcodes (3–7, 0xB–0xF) are `None`.
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// Close, Ping and Pong are control frames (RFC 6455 §5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A decoded frame header (RFC 6455 §5.2), before any payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// Frame opcode.
    pub opcode: OpCode,
    /// Masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Encoded size of this header: 2 bytes, plus 2 or 8 for extended length, plus 4 for a mask.
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }
}

/// Which side of the connection the decoder runs on. A server requires masked frames from
/// its client; a client requires unmasked frames from its server (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We accepted the connection.
    Server,
    /// We opened the connection.
    Client,
}

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest single frame payload accepted, in bytes. Default 16 MiB. A header announcing
    /// more fails at once with [`ProtocolError::FrameTooLarge`] (close 1009), before any
    /// payload is buffered.
    pub max_frame_bytes: usize,
    /// Largest message accepted, summed over its fragments. Default 16 MiB. Exceeding it fails
    /// with [`ProtocolError::MessageTooLarge`] (close 1009) as soon as a header makes it certain;
    /// a compressed message is held to it by its inflated size, checked as it inflates.
    pub max_message_bytes: usize,
    /// Most frames one data message may span. Default 131,072: Autobahn's largest
    /// fragmentation case sends 4 MiB in 64-byte fragments (65,536 frames). More fails with
    /// [`ProtocolError::TooManyFragments`] (close 1009); without a bound, a message of empty
    /// continuation frames would never end.
    pub max_fragments: u32,
    /// Data frames with a payload up to this many bytes are consumed only once whole (the
    /// caller may handle them where they lie in its buffer); larger ones are taken into the
    /// message buffer as their bytes arrive, so memory follows what was received, not what a
    /// header announced. Default 64 KiB. Text frames that arrive in pieces are always taken
    /// piece by piece, to fail invalid UTF-8 at once.
    pub stream_frames_over: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 << 20,
            max_message_bytes: 16 << 20,
            max_fragments: 1 << 17,
            stream_frames_over: 64 << 10,
        }
    }
}

/// A whole message, or a control frame, from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message, validated as UTF-8.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A ping with its application data (≤ 125 bytes).
    Ping(Vec<u8>),
    /// A pong with its application data (≤ 125 bytes).
    Pong(Vec<u8>),
    /// A close frame, with its code and reason if it carried any.
    Close(Option<CloseFrame>),
}

/// Status code and reason of a close frame (RFC 6455 §5.5.1, §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Status code, e.g. 1000 normal, 1001 going away.
    pub code: u16,
    /// UTF-8 reason, at most 123 bytes.
    pub reason: String,
}

/// Well-known close codes (RFC 6455 §7.4.1).
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// Endpoint going away: server shutdown, page navigation.
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL: u16 = 1002;
    /// Data type the endpoint cannot accept.
    pub const UNSUPPORTED: u16 = 1003;
    /// Payload inconsistent with the message type, e.g. invalid UTF-8 in text.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation, e.g. an idle connection that stopped answering pings.
    pub const POLICY: u16 = 1008;
    /// Message too big to process.
    pub const TOO_BIG: u16 = 1009;
    /// Unexpected condition on the server.
    pub const INTERNAL: u16 = 1011;
    /// The server is overloaded: try again later (IANA WebSocket close code registry).
    pub const TRY_AGAIN_LATER: u16 = 1013;

    /// Whether `code` may appear in a close frame on the wire (RFC 6455 §7.4.1–7.4.2):
    /// 1000–1003, 1007–1011, 3000–4999. 1004–1006 and 1015 are reserved for local use.
    pub fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

/// A violation of RFC 6455 or of the configured limits; the connection must be closed with
/// [`close_code`](Self::close_code).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Opcode 3–7 or 0xB–0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// RSV bits that no negotiated extension defines for this frame: any RSV bit without an
    /// extension, and with permessage-deflate RSV1 on a continuation or control frame (RFC
    /// 7692 §6).
    #[error("reserved bits set that no negotiated extension allows on this frame")]
    ReservedBits,
    /// A client frame without a mask (server role).
    #[error("client frame is not masked")]
    UnmaskedClientFrame,
    /// A server frame with a mask (client role).
    #[error("server frame is masked")]
    MaskedServerFrame,
    /// Control frame over 125 bytes or fragmented.
    #[error("invalid control frame: {0}")]
    BadControlFrame(&'static str),
    /// Continuation with no message started, or a new data frame inside a fragmented message.
    #[error("invalid fragmentation: {0}")]
    BadFragmentation(&'static str),
    /// 64-bit length with the most significant bit set.
    #[error("invalid payload length")]
    BadLength,
    /// A close frame with a 1-byte payload or a code that may not be sent.
    #[error("invalid close frame: {0}")]
    BadClose(&'static str),
    /// Text message or close reason that is not UTF-8.
    #[error("invalid UTF-8 in a text message or close reason")]
    InvalidUtf8,
    /// A frame announcing more than [`DecoderConfig::max_frame_bytes`].
    #[error("frame of {len} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// Announced payload length.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message spanning more frames than [`DecoderConfig::max_fragments`].
    #[error("message spans more than {limit} frames")]
    TooManyFragments {
        /// The configured limit.
        limit: u32,
    },
    /// A compressed message that is not valid DEFLATE (RFC 7692 §7.2.2).
    #[error("invalid compressed message: {0}")]
    BadCompressedData(String),
    /// A message growing past [`DecoderConfig::max_message_bytes`]; for a compressed message,
    /// its inflated size (a decompression bomb stops here).
    #[error("message of at least {len} bytes exceeds the {limit}-byte limit")]
    MessageTooLarge {
        /// Bytes known so far, including the frame that broke the limit.
        len: u64,
        /// The configured limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code to send before closing the connection.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            Self::FrameTooLarge { .. }
            | Self::MessageTooLarge { .. }
            | Self::TooManyFragments { .. } => close_code::TOO_BIG,
            _ => close_code::PROTOCOL,
        }
    }
}
