//! UTF-8 validation of a text message that arrives in pieces.

/// Validates a byte stream as UTF-8 piece by piece, failing at the first piece that makes it
/// invalid (RFC 6455 §8.1 lets an endpoint fail as soon as the data is known to be invalid),
/// not at the end of the message.
///
/// Only the last incomplete sequence (at most 3 bytes) is kept between pieces, so the cost is
/// one pass over the data whatever the piece sizes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Utf8Stream {
    /// The start of a sequence cut at the end of the previous piece.
    carry: [u8; 4],
    carry_len: u8,
}

/// The bytes seen so far can never be the start of valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid;

impl Utf8Stream {
    /// Checks the next piece of the stream.
    pub(crate) fn feed(&mut self, mut piece: &[u8]) -> Result<(), Invalid> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let want = sequence_len(self.carry[0]);
            let take = (want - have).min(piece.len());
            self.carry[have..have + take].copy_from_slice(&piece[..take]);
            let have = have + take;
            piece = &piece[take..];
            match std::str::from_utf8(&self.carry[..have]) {
                Ok(_) => self.carry_len = 0,
                // Still a valid prefix: wait for the rest of the sequence.
                Err(e) if e.error_len().is_none() => {
                    self.carry_len = have as u8;
                    return Ok(());
                }
                Err(_) => return Err(Invalid),
            }
        }
        match std::str::from_utf8(piece) {
            Ok(_) => Ok(()),
            // `error_len() == None` means the input ended inside a sequence that is, so far, a
            // valid prefix (the standard library checks the second byte's narrower ranges after
            // E0, ED, F0 and F4 before saying so).
            Err(e) if e.error_len().is_none() => {
                let rest = &piece[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carry_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(Invalid),
        }
    }

    /// Whether the stream ends on a character boundary: a message whose last sequence is
    /// incomplete is invalid.
    pub(crate) fn at_boundary(&self) -> bool {
        self.carry_len == 0
    }
}

/// Length of the sequence a leading byte starts (only called on bytes that began a valid
/// prefix, so 2–4).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `bytes` split at every pair of points and compares with a one-shot check.
    #[test]
    fn agrees_with_the_standard_library_at_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "€ 𝄞 a".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xf0\x8f\xbf\xbf",
            b"\xe0\x80\xaf",
            b"\xc0\xaf",
            b"a\xffb",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"\xed\x9f\xbf\xee\x80\x80",
        ];
        for bytes in samples {
            let whole = std::str::from_utf8(bytes).is_ok();
            for i in 0..=bytes.len() {
                for j in i..=bytes.len() {
                    let mut s = Utf8Stream::default();
                    let ok = s.feed(&bytes[..i]).is_ok()
                        && s.feed(&bytes[i..j]).is_ok()
                        && s.feed(&bytes[j..]).is_ok()
                        && s.at_boundary();
                    assert_eq!(ok, whole, "{bytes:x?} split at {i}, {j}");
                }
            }
        }
    }

    #[test]
    fn fails_at_the_first_piece_that_breaks_it() {
        // Autobahn 6.4.1: a valid piece, then one with a code point above U+10FFFF.
        let mut s = Utf8Stream::default();
        assert_eq!(s.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(s.feed(b"\xf4"), Ok(()));
        assert_eq!(s.feed(b"\x90"), Err(Invalid));
        // A surrogate (ED A0..) fails at its second byte.
        let mut s = Utf8Stream::default();
        assert_eq!(s.feed(b"\xed"), Ok(()));
        assert_eq!(s.feed(b"\xa0"), Err(Invalid));
    }
}
