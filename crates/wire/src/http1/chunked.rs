//! Incremental decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1).

use thiserror::Error;

/// Decodes a chunked body fed in pieces of any size.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    _state: (),
}

/// What one call to [`ChunkedDecoder::decode`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedEvent {
    /// Bytes of the input consumed; the caller drops them from its buffer.
    pub consumed: usize,
    /// Whether the last chunk and the trailer section have been read.
    pub done: bool,
}

/// A chunked body that cannot be decoded; the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChunkedError {
    /// A chunk size line that is not hex, is too long, or overflows u64.
    #[error("invalid chunk size line")]
    BadSize,
    /// Missing CRLF after chunk data, or a malformed chunk extension or trailer.
    #[error("malformed chunked encoding: {0}")]
    Malformed(&'static str),
    /// The decoded body exceeded the limit given to [`ChunkedDecoder::with_limit`].
    #[error("chunked body larger than {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
}

impl ChunkedDecoder {
    /// A decoder that accepts bodies up to `limit` decoded bytes (and trailers up to 16 KiB).
    pub fn with_limit(limit: u64) -> Self {
        todo!("{limit}")
    }

    /// Decodes as much of `input` as possible, appending body bytes to `body`.
    /// Consumes partial chunk data eagerly; a partial size line is left unconsumed.
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<ChunkedEvent, ChunkedError> {
        todo!("{} {}", input.len(), body.len())
    }
}
