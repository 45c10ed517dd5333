//! gRPC's Length-Prefixed-Message framing (gRPC over HTTP/2: a compression flag byte, a
//! 4-byte big-endian length, the message) as the load client reads it from response bodies.
//! Public for the fuzz target (fuzz/fuzz_targets/grpc_message.rs).

/// The prefix before every message.
pub const PREFIX: usize = 5;

/// Why bytes are not a message the load client takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The compression flag is set; the client asks for no compression.
    #[error("the gRPC message is compressed (flag {0}) though the call asked for none")]
    Compressed(u8),
    /// The prefix announces more than `limit` bytes.
    #[error("a {len}-byte gRPC message, over the {limit}-byte limit")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

/// The first message in `buf` and the bytes it takes (prefix included), `None` while it is
/// incomplete. A message over `limit` bytes is refused as soon as its prefix is in.
pub fn next_message(buf: &[u8], limit: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some((prefix, rest)) = buf.split_at_checked(PREFIX) else {
        return Ok(None);
    };
    if prefix[0] != 0 {
        return Err(FrameError::Compressed(prefix[0]));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > limit {
        return Err(FrameError::TooLong { len, limit });
    }
    Ok(rest.get(..len).map(|message| (message, PREFIX + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_taken_whole_and_checked() {
        assert_eq!(next_message(b"\x00\x00\x00", 10), Ok(None));
        assert_eq!(next_message(b"\x00\x00\x00\x00\x02a", 10), Ok(None));
        assert_eq!(
            next_message(b"\x00\x00\x00\x00\x02abc", 10),
            Ok(Some((&b"ab"[..], 7)))
        );
        assert_eq!(
            next_message(b"\x01\x00\x00\x00\x02ab", 10),
            Err(FrameError::Compressed(1))
        );
        assert!(next_message(b"\x00\x00\x00\x00\x0b", 10).is_err());
    }
}
