//! Message decoder: frames → messages, with RFC 6455's rules and size limits.

use super::{DecoderConfig, Message, ProtocolError, Role};

/// Turns bytes from the peer into whole [`Message`]s.
///
/// Feed it the unread part of your receive buffer; it consumes whole frames only. Data frames
/// of a fragmented message are absorbed into an internal buffer (bounded by
/// [`DecoderConfig::max_message_bytes`]); control frames in between are returned at once.
/// Once it returns an error, the connection must be closed with that error's close code.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    config: DecoderConfig,
}

impl Decoder {
    /// A decoder for `role` (the side we are on) with `config`'s limits.
    pub fn new(role: Role, config: DecoderConfig) -> Self {
        Self { role, config }
    }

    /// Decodes from the start of `buf`. Returns how many bytes were consumed (drop them from
    /// the buffer) and the message, if one completed. `(0, None)` means a whole frame is not
    /// there yet: read more. `(n > 0, None)` means a fragment was absorbed: call again.
    /// An oversized frame is rejected from its header alone, before its payload arrives.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Option<Message>), ProtocolError> {
        todo!("{:?} {:?} {}", self.role, self.config, buf.len())
    }
}
