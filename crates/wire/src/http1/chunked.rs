//! Incremental decoder for `Transfer-Encoding: chunked` (RFC 9112 §7.1).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! Lines (size lines, trailer fields) are only consumed once complete, so their length is
//! bounded here and the caller's buffer never has to hold more than one bounded line. Chunk
//! data is consumed eagerly and never buffered by the decoder itself.

use thiserror::Error;

/// Most hex digits in a chunk size: 16 digits fill a u64, so overflow is impossible.
const MAX_SIZE_DIGITS: usize = 16;
/// Longest chunk size line, extensions included (RFC 9112 §7.1.1 lets a server bound them).
const MAX_SIZE_LINE: usize = MAX_SIZE_DIGITS + 4096 + 2;
/// Largest trailer section, in bytes (RFC 9112 §7.1.2 fields are bounded like head fields).
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Body limit of [`ChunkedDecoder::default`].
const DEFAULT_LIMIT: u64 = 16 << 20;

/// Decodes a chunked body fed in pieces of any size.
///
/// Feed it the unread part of your buffer; drop [`ChunkedEvent::consumed`] bytes afterwards
/// and call again with more once it has consumed all it can. [`Default`] accepts bodies up to
/// 16 MiB.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Largest decoded body accepted.
    limit: u64,
    /// Body bytes produced so far.
    decoded: u64,
    /// Trailer bytes consumed so far.
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk size line.
    Size,
    /// Inside chunk data with this many bytes left.
    Data(u64),
    /// Expecting the CRLF that ends chunk data.
    DataCrlf,
    /// After the last chunk: reading trailer field lines up to the empty line.
    Trailer,
    /// The whole body and its trailers have been read.
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::with_limit(DEFAULT_LIMIT)
    }
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
        Self {
            state: State::Size,
            limit,
            decoded: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded body bytes produced so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Decodes as much of `input` as possible, appending body bytes to `body`.
    /// Consumes partial chunk data eagerly; a partial size line is left unconsumed.
    pub fn decode(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<ChunkedEvent, ChunkedError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Size => {
                    let Some(len) = find_line(rest, MAX_SIZE_LINE).map_err(|e| match e {
                        LineError::TooLong => ChunkedError::BadSize,
                        LineError::BareLf => ChunkedError::Malformed("bare LF in chunk size line"),
                    })?
                    else {
                        break;
                    };
                    let size = parse_size_line(&rest[..len - 2])?;
                    pos += len;
                    if size == 0 {
                        self.state = State::Trailer;
                        continue;
                    }
                    // Refuse from the size line alone, before any of the data arrives.
                    match self.decoded.checked_add(size) {
                        Some(total) if total <= self.limit => self.state = State::Data(size),
                        _ => return Err(ChunkedError::TooLarge { limit: self.limit }),
                    }
                }
                State::Data(remaining) => {
                    if rest.is_empty() {
                        break;
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    body.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.decoded += take as u64;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataCrlf
                    } else {
                        State::Data(left)
                    };
                }
                State::DataCrlf => match rest {
                    [b'\r', b'\n', ..] => {
                        pos += 2;
                        self.state = State::Size;
                    }
                    [] | [b'\r'] => break,
                    _ => return Err(ChunkedError::Malformed("missing CRLF after chunk data")),
                },
                State::Trailer => {
                    let budget = MAX_TRAILER_BYTES - self.trailer_bytes;
                    let Some(len) = find_line(rest, budget).map_err(|e| match e {
                        LineError::TooLong => ChunkedError::Malformed("trailer section too large"),
                        LineError::BareLf => ChunkedError::Malformed("bare LF in trailer section"),
                    })?
                    else {
                        break;
                    };
                    pos += len;
                    if len == 2 {
                        self.state = State::Done;
                        break;
                    }
                    check_trailer_field(&rest[..len - 2])?;
                    self.trailer_bytes += len;
                }
                State::Done => break,
            }
        }
        Ok(ChunkedEvent {
            consumed: pos,
            done: self.state == State::Done,
        })
    }
}

enum LineError {
    TooLong,
    BareLf,
}

/// Length of the CRLF-terminated line at the start of `buf`, CRLF included; `None` if the
/// line is not complete yet. A line may be at most `max` bytes long.
fn find_line(buf: &[u8], max: usize) -> Result<Option<usize>, LineError> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some(i + 1)),
        Some(_) => Err(LineError::BareLf),
        None if buf.len() >= max => Err(LineError::TooLong),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]` (RFC 9112 §7.1, §7.1.1), CRLF already removed.
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return Err(ChunkedError::BadSize);
    }
    let size = line[..digits]
        .iter()
        .fold(0u64, |acc, &b| (acc << 4) | u64::from(hex_value(b)));
    let ext = &line[digits..];
    if ext.is_empty() {
        return Ok(size);
    }
    // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ): whitespace
    // may only precede a ';'. Anything else after the digits ("5 x", "5\x00") is a size line
    // another parser may read differently.
    let ext_start = ext
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(ext.len());
    if ext.get(ext_start) != Some(&b';') {
        return Err(ChunkedError::BadSize);
    }
    // Extensions carry nothing we use; tolerate their content but not control characters,
    // which only ever serve to confuse line parsing.
    if ext.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7F) {
        return Err(ChunkedError::Malformed(
            "control character in chunk extension",
        ));
    }
    Ok(size)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// A trailer field line (RFC 9112 §7.1.2 uses field-line syntax from §5): a token name, a
/// colon with no whitespace before it, and a value without control characters. obs-fold is
/// rejected as in a head.
fn check_trailer_field(line: &[u8]) -> Result<(), ChunkedError> {
    let colon = line.iter().position(|&b| b == b':');
    let Some(colon) = colon.filter(|&c| c > 0) else {
        return Err(ChunkedError::Malformed("trailer field without a name"));
    };
    if !line[..colon].iter().all(|&b| is_tchar(b)) {
        return Err(ChunkedError::Malformed("invalid trailer field name"));
    }
    if line[colon + 1..]
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7F)
    {
        return Err(ChunkedError::Malformed(
            "control character in trailer field",
        ));
    }
    Ok(())
}

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes the way a caller would: keep the unconsumed
    /// tail in a buffer, append, decode, drain.
    fn decode_in_steps(
        input: &[u8],
        step: usize,
        limit: u64,
    ) -> Result<(Vec<u8>, bool, usize), ChunkedError> {
        let mut dec = ChunkedDecoder::with_limit(limit);
        let mut buf = Vec::new();
        let mut body = Vec::new();
        let mut total = 0;
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            let ev = dec.decode(&buf, &mut body)?;
            buf.drain(..ev.consumed);
            total += ev.consumed;
            if ev.done {
                assert!(dec.is_done());
                return Ok((body, true, total));
            }
        }
        Ok((body, false, total))
    }

    const SAMPLE: &[u8] = b"4\r\nWiki\r\n6;name=\"val;ue\"\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n";

    #[test]
    fn rfc_example_any_split() {
        for step in [1, 2, 3, 5, 7, 64, 1024] {
            let (body, done, consumed) = decode_in_steps(SAMPLE, step, 1024).unwrap();
            assert!(done, "step {step}");
            assert_eq!(consumed, SAMPLE.len());
            assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.");
        }
    }

    #[test]
    fn stops_after_the_body() {
        let mut input = b"3\r\nabc\r\n0\r\n\r\n".to_vec();
        let body_len = input.len();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        let mut dec = ChunkedDecoder::default();
        let mut body = Vec::new();
        let ev = dec.decode(&input, &mut body).unwrap();
        assert_eq!(
            ev,
            ChunkedEvent {
                consumed: body_len,
                done: true
            }
        );
        assert_eq!(body, b"abc");
        // Done is sticky and consumes nothing more.
        assert_eq!(
            dec.decode(&input[body_len..], &mut body).unwrap().consumed,
            0
        );
    }

    #[test]
    fn partial_size_line_is_not_consumed_data_is() {
        let mut dec = ChunkedDecoder::default();
        let mut body = Vec::new();
        assert_eq!(dec.decode(b"1", &mut body).unwrap().consumed, 0);
        assert_eq!(dec.decode(b"10\r", &mut body).unwrap().consumed, 0);
        let ev = dec.decode(b"10\r\nabc", &mut body).unwrap();
        assert_eq!(
            ev,
            ChunkedEvent {
                consumed: 7,
                done: false
            }
        );
        assert_eq!(body, b"abc");
        assert_eq!(dec.decoded_len(), 3);
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b"5 \r\n",
            b"5 x\r\n",
            b"11111111111111111\r\n",
            b";ext\r\n",
        ] {
            let r = decode_in_steps(bad, 1, u64::MAX);
            assert_eq!(
                r,
                Err(ChunkedError::BadSize),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // 16 hex digits still parse; the limit then applies.
        let r = decode_in_steps(b"ffffffffffffffff\r\n", 100, u64::MAX);
        assert!(!r.unwrap().1);
    }

    #[test]
    fn extensions_tolerated_but_bounded() {
        let (body, done, _) = decode_in_steps(b"1 ; a=b ;c\r\nx\r\n0;last\r\n\r\n", 1, 10).unwrap();
        assert!(done);
        assert_eq!(body, b"x");
        let mut long = b"1;".to_vec();
        long.resize(MAX_SIZE_LINE + 10, b'a');
        assert_eq!(decode_in_steps(&long, 100, 10), Err(ChunkedError::BadSize));
        assert!(matches!(
            decode_in_steps(b"1;a\x00b\r\nx\r\n0\r\n\r\n", 1, 10),
            Err(ChunkedError::Malformed(_))
        ));
    }

    #[test]
    fn crlf_required_after_data() {
        for bad in [
            &b"3\r\nabcX\r\n0\r\n\r\n"[..],
            b"3\r\nabc\rX",
            b"3\r\nabc\n0\r\n\r\n",
        ] {
            assert!(matches!(
                decode_in_steps(bad, 1, 100),
                Err(ChunkedError::Malformed(_))
            ));
        }
    }

    #[test]
    fn bare_lf_rejected() {
        assert!(matches!(
            decode_in_steps(b"3\nabc\r\n", 1, 100),
            Err(ChunkedError::Malformed(_))
        ));
        assert!(matches!(
            decode_in_steps(b"0\r\nX: y\n\r\n", 1, 100),
            Err(ChunkedError::Malformed(_))
        ));
        assert!(matches!(
            decode_in_steps(b"0\r\n\n", 1, 100),
            Err(ChunkedError::Malformed(_))
        ));
    }

    #[test]
    fn too_large_from_the_size_line() {
        // Rejected before any data arrives.
        assert_eq!(
            decode_in_steps(b"b\r\n", 1, 10),
            Err(ChunkedError::TooLarge { limit: 10 })
        );
        assert_eq!(
            decode_in_steps(b"5\r\nabcde\r\n6\r\n", 1, 10),
            Err(ChunkedError::TooLarge { limit: 10 })
        );
        assert!(
            decode_in_steps(b"5\r\nabcde\r\n5\r\nabcde\r\n0\r\n\r\n", 1, 10)
                .unwrap()
                .1
        );
        assert_eq!(
            decode_in_steps(b"ffffffffffffffff\r\n", 100, u64::MAX - 1),
            Err(ChunkedError::TooLarge {
                limit: u64::MAX - 1
            })
        );
    }

    #[test]
    fn trailers_validated_and_bounded() {
        let ok = b"0\r\nA: 1\r\nB-c: two words\r\n\r\n";
        assert!(decode_in_steps(ok, 1, 0).unwrap().1);
        for bad in [
            &b"0\r\n folded: x\r\n\r\n"[..],
            b"0\r\nA : 1\r\n\r\n",
            b"0\r\n: 1\r\n\r\n",
            b"0\r\nnocolon\r\n\r\n",
            b"0\r\nA: 1\x01\r\n\r\n",
        ] {
            assert!(matches!(
                decode_in_steps(bad, 1, 0),
                Err(ChunkedError::Malformed(_))
            ));
        }
        let mut big = b"0\r\n".to_vec();
        for i in 0..2000 {
            big.extend_from_slice(format!("x{i}: yyyy\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_in_steps(&big, 7, 0),
            Err(ChunkedError::Malformed("trailer section too large"))
        );
    }

    #[test]
    fn default_limit_is_16_mib() {
        let mut dec = ChunkedDecoder::default();
        let mut body = Vec::new();
        assert!(dec.decode(b"1000000\r\n", &mut body).is_ok());
        let mut dec = ChunkedDecoder::default();
        assert_eq!(
            dec.decode(b"1000001\r\n", &mut body),
            Err(ChunkedError::TooLarge { limit: 16 << 20 })
        );
    }
}
