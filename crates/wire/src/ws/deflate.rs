//! permessage-deflate (RFC 7692): negotiating it in the opening handshake and compressing or
//! inflating whole messages, sans-IO.
//!
//! - **Negotiation** ([`negotiate`] on a server, [`Offer`] and [`Offer::accept_response`] on a
//!   client) turns `Sec-WebSocket-Extensions` values into the agreed [`Params`] (RFC 7692 §5,
//!   §7.1). An offer with a duplicate, unknown or out-of-range parameter is invalid: a server
//!   declines it and tries the next; a client fails the connection on such a response.
//! - **Codec**: an [`Inflater`] inflates one direction's messages as their compressed fragments
//!   arrive, with a hard limit on the inflated size (a decompression bomb stops at the limit
//!   with [`InflateError::TooLarge`], which maps to close 1009, and never allocates past it);
//!   a [`Deflater`] compresses one whole message into one frame's payload. [`Params::inflater`]
//!   and [`Params::deflater`] build both for one side of a connection. The frame-level
//!   pieces are [`Decoder::with_inflater`](super::Decoder::with_inflater) (accepts RSV1 on a
//!   message's first frame and inflates) and [`encode_compressed`].
//!
//! **Window of 8 bits.** zlib (and zlib-rs, which follows it) cannot *compress* raw DEFLATE
//! with a 256-byte window: it refuses `windowBits = -8`, and peers that ask for 8 and quietly
//! get 9 produce back-references up to 512 bytes a strict 256-byte inflater may reject. A
//! [`Deflater`] asked for 8 bits therefore writes stored blocks only (no back-references at
//! all, so valid under any window): the offer is honoured, and the message simply does not
//! shrink (it grows by 5 bytes per 64 KiB). Declining instead would have cost such a client
//! compression in the other direction too. Inflaters always use at least 9 bits: a larger
//! window inflates everything a smaller one does, including those 9-for-8 peers.

use thiserror::Error;

mod codec;
mod negotiate;

pub use codec::{encode_compressed, DeflateError, Deflater, InflateError, Inflater};
pub use negotiate::{
    negotiate, parse_extensions, read_response, Accepted, Extension, ExtensionParam,
};

use super::Role;

/// The extension's registered name (RFC 7692 §7).
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The smallest LZ77 window a peer may ask for, as a base-2 logarithm (RFC 7692 §7.1.2).
pub const MIN_WINDOW_BITS: u8 = 8;

/// The largest LZ77 window, and what applies when nothing was negotiated (RFC 7692 §7.1.2).
pub const MAX_WINDOW_BITS: u8 = 15;

/// zlib's default compression level, which browsers and Python `websockets` use too.
pub const DEFAULT_LEVEL: u32 = 6;

/// What was agreed for one connection (RFC 7692 §7.1): for each direction, whether the
/// compressor resets after every message and the largest window it uses.
///
/// "Server" parameters govern what the server sends (its compressor, the client's inflater);
/// "client" parameters what the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// The server resets its compressor after every message (RFC 7692 §7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message (RFC 7692 §7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The server's window, 8–15 (RFC 7692 §7.1.2.1).
    pub server_max_window_bits: u8,
    /// The client's window, 8–15 (RFC 7692 §7.1.2.2).
    pub client_max_window_bits: u8,
}

impl Default for Params {
    /// What a bare `permessage-deflate` agrees to: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl Params {
    /// The window and context-takeover setting of what `sender` compresses.
    fn sent_by(&self, sender: Role) -> (u8, bool) {
        match sender {
            Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        }
    }

    /// The inflater for what the peer of `role` sends (a server inflates the client's messages).
    pub fn inflater(&self, role: Role) -> Inflater {
        let (bits, no_context_takeover) = self.sent_by(peer(role));
        Inflater::new(bits, no_context_takeover)
    }

    /// The compressor for what `role` sends, at compression `level` (0–9; see
    /// [`DEFAULT_LEVEL`]).
    pub fn deflater(&self, role: Role, level: u32) -> Deflater {
        let (bits, no_context_takeover) = self.sent_by(role);
        Deflater::new(bits, no_context_takeover, level)
    }
}

impl std::fmt::Display for Params {
    /// Every parameter spelled out, flags only when set, e.g.
    /// `server_no_context_takeover; server_max_window_bits=15; client_max_window_bits=10`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.server_no_context_takeover {
            f.write_str("server_no_context_takeover; ")?;
        }
        if self.client_no_context_takeover {
            f.write_str("client_no_context_takeover; ")?;
        }
        write!(
            f,
            "server_max_window_bits={}; client_max_window_bits={}",
            self.server_max_window_bits, self.client_max_window_bits
        )
    }
}

fn peer(role: Role) -> Role {
    match role {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    }
}

/// How an offer asks about the client's window (RFC 7692 §7.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientWindow {
    /// No `client_max_window_bits`: the server may not limit the client's window.
    #[default]
    Absent,
    /// `client_max_window_bits` without a value: the client can use a smaller window if the
    /// server asks for one.
    Supported,
    /// `client_max_window_bits=N`: the client will use at most N bits; the server may ask for
    /// fewer.
    Max(u8),
}

/// One permessage-deflate offer, as a client writes it or a server reads it (RFC 7692 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offer {
    /// Ask the server to reset its compressor after every message.
    pub server_no_context_takeover: bool,
    /// Tell the server this client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// Ask the server to compress with at most this many window bits (8–15).
    pub server_max_window_bits: Option<u8>,
    /// Whether the server may limit the client's window.
    pub client_max_window_bits: ClientWindow,
}

/// What a server is willing to agree to; [`negotiate`] takes the first offer that fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// The largest window the server compresses with (8–15). Default 15. A client's
    /// `server_max_window_bits` lowers it further; a smaller window costs ratio and saves
    /// 2 × 2^bits bytes of compressor memory per connection.
    pub server_max_window_bits: u8,
    /// The largest window the server lets a client compress with (8–15). Default 15. Below
    /// 15 it is sent as `client_max_window_bits`, and an offer without that parameter is
    /// declined, since such a client may not be limited (RFC 7692 §7.1.2.2).
    pub client_max_window_bits: u8,
    /// Reset the server's compressor after every message (always answered when a client asks
    /// for it). Default `false`: context takeover compresses repeated messages far better.
    pub server_no_context_takeover: bool,
    /// Ask clients to reset their compressors after every message, so the server's inflater
    /// keeps no window between messages. Default `false`.
    pub client_no_context_takeover: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
        }
    }
}

/// Why a `Sec-WebSocket-Extensions` value or a permessage-deflate offer or response is not
/// acceptable. A server declines an offer for any of these; a client fails the connection
/// (RFC 7692 §5: "the client MUST _Fail the WebSocket Connection_").
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The field does not follow RFC 6455 §9.1's grammar.
    #[error("malformed Sec-WebSocket-Extensions at byte {at}: {what}")]
    Syntax {
        /// Offset in the field value.
        at: usize,
        /// What was expected there.
        what: &'static str,
    },
    /// A parameter RFC 7692 does not define for permessage-deflate.
    #[error("unknown permessage-deflate parameter `{0}`")]
    UnknownParameter(String),
    /// A parameter given twice in one offer or response (RFC 7692 §7: invalid).
    #[error("permessage-deflate parameter `{0}` appears twice")]
    DuplicateParameter(&'static str),
    /// A value that parameter may not have.
    #[error("permessage-deflate parameter `{name}` has an invalid value `{value}`")]
    BadValue {
        /// The parameter.
        name: &'static str,
        /// The value as sent (unquoted), empty when it needed one and had none.
        value: String,
    },
    /// The server answered with an extension the client did not offer (RFC 6455 §4.1).
    #[error("the server accepted extension `{0}`, which was not offered")]
    NotOffered(String),
    /// The server answered permessage-deflate more than once.
    #[error("the server accepted permessage-deflate more than once")]
    Repeated,
    /// The server did not confirm a parameter the client asked for (RFC 7692 §7.1.1.1,
    /// §7.1.2.1).
    #[error("the server's response lacks `{0}`, which the offer asked for")]
    Missing(&'static str),
    /// The server's window is larger than the client offered (RFC 7692 §7.1.2.1), or the
    /// client's window was limited although the offer did not allow it (§7.1.2.2).
    #[error("the server answered `{name}={value}`, which the offer does not allow")]
    NotAllowed {
        /// The parameter.
        name: &'static str,
        /// The value the server sent.
        value: u8,
    },
}

#[cfg(test)]
mod tests;
