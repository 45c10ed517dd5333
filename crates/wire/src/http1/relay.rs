//! A message body re-framed for the next hop, from the framing this hop parsed.
//!
//! Together with [`forward`](super::forward), whose heads restate the same framing, this
//! makes the next hop read exactly the body this hop read: a Content-Length body passes byte
//! for byte up to its length and not one byte further; a chunked body is decoded and
//! re-chunked, so chunk extensions, trailers and odd size lines (leading zeros, whitespace)
//! never reach a parser that might read them differently (RFC 9112 §7.1, §11.2).

use super::{BodyFraming, ChunkedDecoder, ChunkedError};

/// Relays one body in pieces as they arrive, with no I/O of its own.
///
/// Feed it what the source has sent so far ([`relay`](Self::relay)); send what it says to
/// send; drop the consumed bytes; repeat with more until [`is_done`](Self::is_done). When the
/// source closes, [`end_of_input`](Self::end_of_input) says whether that ended the body.
#[derive(Debug, Clone)]
pub struct BodyRelay {
    framing: BodyFraming,
    /// Bytes left of a Content-Length body.
    left: u64,
    chunked: ChunkedDecoder,
    /// Send a chunked body as its bare bytes, for an HTTP/1.0 client, which reads it until
    /// the connection closes.
    dechunk: bool,
    /// Decoded chunk data before it is framed again; kept to reuse its allocation.
    scratch: Vec<u8>,
    done: bool,
}

/// What one call to [`BodyRelay::relay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayStep {
    /// Bytes of the input used; the caller drops them.
    pub consumed: usize,
    /// The bytes to send are `input[..consumed]` as they are (`true`, nothing was appended
    /// to `out`), or what was appended to `out` (`false`).
    pub verbatim: bool,
    /// The body has ended; what follows in the input belongs to the next message.
    pub done: bool,
}

impl BodyRelay {
    /// A relay for a body framed as `framing`. A chunked body is re-chunked, or sent as its
    /// bare bytes when `dechunk` (the receiver then needs another way to find its end: the
    /// connection's close).
    pub fn new(framing: BodyFraming, dechunk: bool) -> Self {
        Self {
            framing,
            left: match framing {
                BodyFraming::ContentLength(n) => n,
                _ => 0,
            },
            // The proxy streams bodies and never holds one whole, so it needs no size limit;
            // a backend enforces its own.
            chunked: ChunkedDecoder::with_limit(u64::MAX),
            dechunk,
            scratch: Vec::new(),
            done: matches!(framing, BodyFraming::Empty | BodyFraming::ContentLength(0)),
        }
    }

    /// The framing this relay reads.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the whole body has been relayed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Relays what `input` holds of the body. Errors only for malformed chunked encoding;
    /// the bytes sent before it stay a prefix that never completes a chunked body, so the
    /// next hop cannot mistake it for a whole message.
    pub fn relay(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<RelayStep, ChunkedError> {
        if self.done {
            return Ok(self.step(0, true));
        }
        match self.framing {
            BodyFraming::Empty => {
                self.done = true;
                Ok(self.step(0, true))
            }
            BodyFraming::ContentLength(_) => {
                let n = usize::try_from(self.left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                self.left -= n as u64;
                self.done = self.left == 0;
                Ok(self.step(n, true))
            }
            BodyFraming::UntilClose => Ok(self.step(input.len(), true)),
            BodyFraming::Chunked => {
                self.scratch.clear();
                let event = self.chunked.decode(input, &mut self.scratch)?;
                if !self.scratch.is_empty() {
                    if self.dechunk {
                        out.extend_from_slice(&self.scratch);
                    } else {
                        write_hex(out, self.scratch.len() as u64);
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&self.scratch);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                if event.done {
                    if !self.dechunk {
                        // The last chunk and an empty trailer section: trailers are dropped.
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    self.done = true;
                }
                Ok(self.step(event.consumed, false))
            }
        }
    }

    /// The source closed. Returns whether that ends the body (a body that runs until the
    /// close, or one already complete); otherwise the body is truncated.
    pub fn end_of_input(&mut self) -> bool {
        if self.framing == BodyFraming::UntilClose {
            self.done = true;
        }
        self.done
    }

    fn step(&self, consumed: usize, verbatim: bool) -> RelayStep {
        RelayStep {
            consumed,
            verbatim,
            done: self.done,
        }
    }
}

/// Appends `n` in lowercase hexadecimal, the chunk-size syntax (RFC 9112 §7.1).
fn write_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n & 0xF) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relays `input` in pieces of `step` bytes; returns what was sent, whether the body
    /// ended, and how much of the input it used.
    fn relay_in_steps(
        framing: BodyFraming,
        dechunk: bool,
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, bool, usize), ChunkedError> {
        let mut relay = BodyRelay::new(framing, dechunk);
        let mut buf = Vec::new();
        let mut sent = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            let mut out = Vec::new();
            let s = relay.relay(&buf, &mut out)?;
            if s.verbatim {
                assert!(out.is_empty());
                sent.extend_from_slice(&buf[..s.consumed]);
            } else {
                sent.extend_from_slice(&out);
            }
            buf.drain(..s.consumed);
            used += s.consumed;
            if s.done {
                return Ok((sent, true, used));
            }
        }
        Ok((sent, relay.is_done(), used))
    }

    #[test]
    fn content_length_stops_at_its_length() {
        for step in [1, 3, 100] {
            let (sent, done, used) = relay_in_steps(
                BodyFraming::ContentLength(5),
                false,
                b"helloGET /next HTTP/1.1\r\n\r\n",
                step,
            )
            .unwrap();
            assert_eq!((sent.as_slice(), done, used), (&b"hello"[..], true, 5));
        }
        assert!(BodyRelay::new(BodyFraming::ContentLength(0), false).is_done());
        assert!(BodyRelay::new(BodyFraming::Empty, false).is_done());
    }

    #[test]
    fn chunked_is_rechunked_without_extensions_or_trailers() {
        let input = b"0005;ext=\"a\"\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0;last\r\nX-T: 1\r\n\r\nNEXT";
        let whole = relay_in_steps(BodyFraming::Chunked, false, input, input.len()).unwrap();
        assert!(whole.1);
        assert_eq!(whole.2, input.len() - 4);
        assert_eq!(
            whole.0,
            b"1f\r\nhelloabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n".to_vec()
        );
        // Any split sends the same body, re-chunked differently.
        for step in [1, 2, 7] {
            let (sent, done, used) =
                relay_in_steps(BodyFraming::Chunked, false, input, step).unwrap();
            assert!(done && used == input.len() - 4);
            let mut dec = ChunkedDecoder::default();
            let mut body = Vec::new();
            let ev = dec.decode(&sent, &mut body).unwrap();
            assert!(ev.done && ev.consumed == sent.len());
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz");
        }
        let (sent, done, _) = relay_in_steps(BodyFraming::Chunked, true, input, 3).unwrap();
        assert!(done);
        assert_eq!(sent, b"helloabcdefghijklmnopqrstuvwxyz");
    }

    #[test]
    fn a_truncated_or_bad_chunked_body_never_looks_complete() {
        let (sent, done, _) =
            relay_in_steps(BodyFraming::Chunked, false, b"5\r\nhello\r\n", 4).unwrap();
        assert!(!done);
        let mut dec = ChunkedDecoder::default();
        assert!(!dec.decode(&sent, &mut Vec::new()).unwrap().done);
        assert!(relay_in_steps(BodyFraming::Chunked, false, b"zz\r\n", 4).is_err());
    }

    #[test]
    fn until_close_ends_at_the_close() {
        let mut relay = BodyRelay::new(BodyFraming::UntilClose, false);
        let s = relay.relay(b"abc", &mut Vec::new()).unwrap();
        assert_eq!((s.consumed, s.verbatim, s.done), (3, true, false));
        assert!(relay.end_of_input());
        let mut cl = BodyRelay::new(BodyFraming::ContentLength(4), false);
        cl.relay(b"abc", &mut Vec::new()).unwrap();
        assert!(!cl.end_of_input(), "a truncated Content-Length body");
    }

    #[test]
    fn hex() {
        for n in [0u64, 9, 10, 255, 4096, u64::MAX] {
            let mut out = Vec::new();
            write_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }
}
