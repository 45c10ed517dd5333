//! Message decoder: frames → messages, with RFC 6455's rules and size limits.

use super::deflate::{InflateError, Inflater};
use super::{
    close_code, decode_header, frame::extend_masked, utf8::Utf8Stream, CloseFrame, DecoderConfig,
    FrameHeader, Message, OpCode, ProtocolError, Role,
};

/// RSV1: "Per-Message Compressed" on a message's first frame (RFC 7692 §6).
const RSV1: u8 = 0b100;

/// Turns bytes from the peer into whole [`Message`]s.
///
/// Feed it the unread part of your receive buffer and drop the bytes it says it consumed.
/// Control frames, and data frames up to [`DecoderConfig::stream_frames_over`] bytes, are
/// consumed only once whole, so a caller may act on a small frame where it lies. Larger data
/// frames, and text frames that arrive in pieces, are taken into the decoder's message buffer
/// as their bytes arrive: memory grows with what the peer has actually sent, never with what
/// a header announces, and text is checked for UTF-8 piece by piece, so invalid text fails at
/// the read that brings it. Data frames of a fragmented message are absorbed into the same
/// buffer (bounded by [`DecoderConfig::max_message_bytes`] and
/// [`DecoderConfig::max_fragments`]); control frames in between are returned at once.
/// Once it returns an error, the connection must be closed with that error's close code.
///
/// Every payload byte is copied exactly once, from `buf` into the returned message (or the
/// message buffer), and unmasked a word at a time during that copy. With permessage-deflate
/// ([`with_inflater`](Self::with_inflater)) a compressed message is inflated as its bytes
/// arrive instead, and the limits apply to what it inflates to.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    config: DecoderConfig,
    /// Opcode (Text or Binary) of the message in progress, if any: a fragmented message, or
    /// an unfragmented one whose frame is being streamed.
    partial: Option<OpCode>,
    /// The data frame whose payload is still arriving, if any; the receive buffer then starts
    /// with payload bytes, not a frame header.
    open: Option<OpenFrame>,
    /// Unmasked payload of the message in progress so far.
    fragments: Vec<u8>,
    /// Frames the message in progress has spanned so far.
    frames: u32,
    /// UTF-8 state of a text message in progress.
    utf8: Utf8Stream,
    /// permessage-deflate, when negotiated: inflates messages whose first frame has RSV1.
    /// Boxed so a decoder without it stays small.
    inflater: Option<Box<Inflater>>,
    /// The message in progress is compressed.
    compressed: bool,
}

/// A data frame whose header has been consumed and whose payload is partly read.
#[derive(Debug, Clone, Copy)]
struct OpenFrame {
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes already consumed, which is also where the mask key stands.
    done: u64,
    /// Payload bytes still to come.
    left: u64,
}

impl Decoder {
    /// A decoder for `role` (the side we are on) with `config`'s limits.
    pub fn new(role: Role, config: DecoderConfig) -> Self {
        Self {
            role,
            config,
            partial: None,
            open: None,
            fragments: Vec::new(),
            frames: 0,
            utf8: Utf8Stream::default(),
            inflater: None,
            compressed: false,
        }
    }

    /// Accepts compressed messages (permessage-deflate, RFC 7692) with `inflater`, built
    /// from the agreed parameters by [`Params::inflater`](super::deflate::Params::inflater).
    /// RSV1 is then allowed on a data message's first frame and the message is inflated as
    /// its bytes arrive; [`DecoderConfig::max_message_bytes`] bounds the inflated size.
    pub fn with_inflater(mut self, inflater: Inflater) -> Self {
        self.inflater = Some(Box::new(inflater));
        self
    }

    /// The side this decoder runs on.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The limits this decoder enforces.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Whether a message has started and not yet finished (a fragmented message, or a frame
    /// being streamed). While it has, the receive buffer may start in the middle of a frame.
    pub fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Whether a frame's payload is being streamed: the receive buffer then starts in the
    /// middle of that frame, not at a header.
    pub fn mid_frame(&self) -> bool {
        self.open.is_some()
    }

    /// Bytes of memory the decoder holds for the message in progress (its buffer's capacity),
    /// for a caller that budgets memory across connections.
    pub fn buffered(&self) -> usize {
        self.fragments.capacity()
    }

    /// How many more bytes the decoder needs in `buf` before it can make progress, capped at
    /// [`DecoderConfig::stream_frames_over`]: what is missing of the whole frame it waits for,
    /// or of the payload it is streaming. A caller sizes its next read with it (a frame that
    /// arrives in one read is handled in one pass). 0 when a header is incomplete or `buf`
    /// already holds a whole frame.
    pub fn wanted(&self, buf: &[u8]) -> usize {
        let cap = self.config.stream_frames_over;
        if let Some(open) = self.open {
            return usize::try_from(open.left).map_or(cap, |left| left.min(cap));
        }
        let Ok(Some((header, header_len))) = decode_header(buf) else {
            return 0;
        };
        usize::try_from(header.payload_len)
            .ok()
            .and_then(|len| header_len.checked_add(len))
            .map_or(cap, |end| end.saturating_sub(buf.len()).min(cap))
    }

    /// Decodes from the start of `buf`. Returns how many bytes were consumed (drop them from
    /// the buffer) and the message, if one completed. `(0, None)` means nothing can be done
    /// until more bytes arrive: read more. `(n > 0, None)` means a fragment or part of a
    /// payload was absorbed: call again with what is left.
    /// An oversized frame is rejected from its header alone, before its payload arrives.
    pub fn decode(&mut self, buf: &[u8]) -> Result<(usize, Option<Message>), ProtocolError> {
        if let Some(open) = self.open {
            return self.continue_open(open, buf);
        }
        let Some((header, header_len)) = decode_header(buf)? else {
            return Ok((0, None));
        };
        self.check_header(&header)?;
        // check_header bounded the length by max_frame_bytes, a usize.
        let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        let end = header_len.saturating_add(len);
        let Some(payload) = buf.get(header_len..end) else {
            return self.start_open(&header, header_len, &buf[header_len..]);
        };
        let message = match header.opcode {
            OpCode::Ping => Some(Message::Ping(unmasked(payload, header.mask))),
            OpCode::Pong => Some(Message::Pong(unmasked(payload, header.mask))),
            OpCode::Close => Some(close_message(unmasked(payload, header.mask))?),
            OpCode::Text | OpCode::Binary if header.fin && header.rsv & RSV1 == 0 => {
                Some(data_message(header.opcode, unmasked(payload, header.mask))?)
            }
            OpCode::Text | OpCode::Binary => {
                self.begin(&header);
                self.absorb(payload, header.mask, 0)?;
                if header.fin {
                    Some(self.finish()?)
                } else {
                    None
                }
            }
            OpCode::Continuation => {
                self.frames += 1;
                self.absorb(payload, header.mask, 0)?;
                if header.fin {
                    Some(self.finish()?)
                } else {
                    None
                }
            }
        };
        Ok((end, message))
    }

    /// A frame whose payload is not all in `rest` yet: wait for it whole, or start streaming
    /// it (text, so bad UTF-8 fails now; or too large to wait for).
    fn start_open(
        &mut self,
        header: &FrameHeader,
        header_len: usize,
        rest: &[u8],
    ) -> Result<(usize, Option<Message>), ProtocolError> {
        let text = header.opcode == OpCode::Text
            || (header.opcode == OpCode::Continuation && self.partial == Some(OpCode::Text));
        let stream = !header.opcode.is_control()
            && (text || header.payload_len > self.config.stream_frames_over as u64);
        if !stream {
            return Ok((0, None));
        }
        if header.opcode == OpCode::Continuation {
            self.frames += 1;
        } else {
            self.begin(header);
        }
        self.absorb(rest, header.mask, 0)?;
        self.open = Some(OpenFrame {
            fin: header.fin,
            mask: header.mask,
            done: rest.len() as u64,
            left: header.payload_len - rest.len() as u64,
        });
        Ok((header_len + rest.len(), None))
    }

    /// More payload of the frame being streamed.
    fn continue_open(
        &mut self,
        mut open: OpenFrame,
        buf: &[u8],
    ) -> Result<(usize, Option<Message>), ProtocolError> {
        let n = usize::try_from(open.left).map_or(buf.len(), |left| left.min(buf.len()));
        if n == 0 {
            return Ok((0, None));
        }
        let offset = (open.done % 4) as usize;
        self.absorb(&buf[..n], open.mask, offset)?;
        open.done += n as u64;
        open.left -= n as u64;
        if open.left > 0 {
            self.open = Some(open);
            return Ok((n, None));
        }
        self.open = None;
        if open.fin {
            Ok((n, Some(self.finish()?)))
        } else {
            Ok((n, None))
        }
    }

    /// Every rule that can be checked from the header alone, so nothing is buffered for a
    /// frame that will be refused anyway.
    fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them. permessage-
        // deflate defines RSV1 on a data message's first frame only (RFC 7692 §6).
        let allowed = match h.opcode {
            OpCode::Text | OpCode::Binary if self.inflater.is_some() => RSV1,
            _ => 0,
        };
        if h.rsv & !allowed != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        // RFC 6455 §5.1: clients MUST mask, servers MUST NOT.
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if h.opcode.is_control() {
            // RFC 6455 §5.5: control frames are at most 125 bytes and MUST NOT be fragmented.
            if !h.fin {
                return Err(ProtocolError::BadControlFrame("fragmented control frame"));
            }
            if h.payload_len > 125 {
                return Err(ProtocolError::BadControlFrame(
                    "payload longer than 125 bytes",
                ));
            }
        }
        let limit = self.config.max_frame_bytes;
        if h.payload_len > limit as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: h.payload_len,
                limit,
            });
        }
        // RFC 6455 §5.4: a message is one unfragmented frame, or a non-continuation frame
        // with FIN clear followed by continuations, the last with FIN set. Control frames may
        // be interleaved.
        let so_far = match (h.opcode, self.partial) {
            (OpCode::Continuation, None) => {
                return Err(ProtocolError::BadFragmentation(
                    "continuation without a message",
                ));
            }
            (OpCode::Continuation, Some(_)) => {
                // Empty continuations cost nothing to send and would keep a message open
                // forever; the frame count bounds them.
                if self.frames >= self.config.max_fragments {
                    return Err(ProtocolError::TooManyFragments {
                        limit: self.config.max_fragments,
                    });
                }
                self.fragments.len() as u64
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::BadFragmentation(
                    "new message before the fragmented one finished",
                ));
            }
            (OpCode::Text | OpCode::Binary, None) => 0,
            _ => return Ok(()),
        };
        let limit = self.config.max_message_bytes;
        let len = so_far + h.payload_len;
        // A compressed message's limit applies to what it inflates to, as it inflates.
        let compressed = match h.opcode {
            OpCode::Continuation => self.compressed,
            _ => h.rsv & RSV1 != 0,
        };
        if len > limit as u64 && !compressed {
            return Err(ProtocolError::MessageTooLarge { len, limit });
        }
        Ok(())
    }

    /// Starts a message that spans more than one frame or read, or is compressed.
    fn begin(&mut self, first: &FrameHeader) {
        self.partial = Some(first.opcode);
        self.compressed = first.rsv & RSV1 != 0;
        self.fragments = Vec::new();
        self.frames = 1;
        self.utf8 = Utf8Stream::default();
    }

    /// Appends payload bytes of the message in progress; `offset` is where in its frame's
    /// payload `payload` starts (for the mask key). Text is checked as it arrives.
    fn absorb(
        &mut self,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        offset: usize,
    ) -> Result<(), ProtocolError> {
        let start = self.fragments.len();
        if self.compressed {
            let limit = self.config.max_message_bytes;
            let inflater = self.inflater.as_deref_mut();
            // check_header lets RSV1 through only when an inflater is there.
            let inflater = inflater.ok_or(ProtocolError::ReservedBits)?;
            match mask {
                Some(key) => {
                    inflater.inflate_masked(payload, key, offset, &mut self.fragments, limit)
                }
                None => inflater.inflate(payload, &mut self.fragments, limit),
            }
            .map_err(inflate_error)?;
        } else {
            match mask {
                // Each frame has its own key, applied from the frame's first payload byte.
                Some(key) => extend_masked(&mut self.fragments, payload, rotate(key, offset)),
                None => self.fragments.extend_from_slice(payload),
            }
        }
        if self.partial == Some(OpCode::Text) {
            self.utf8
                .feed(&self.fragments[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// The message in progress, now complete.
    fn finish(&mut self) -> Result<Message, ProtocolError> {
        if std::mem::take(&mut self.compressed) {
            // The `00 00 ff ff` the sender left off (RFC 7692 §7.2.2) may still produce output.
            let start = self.fragments.len();
            let limit = self.config.max_message_bytes;
            if let Some(inflater) = self.inflater.as_deref_mut() {
                inflater
                    .finish(&mut self.fragments, limit)
                    .map_err(inflate_error)?;
            }
            if self.partial == Some(OpCode::Text) {
                self.utf8
                    .feed(&self.fragments[start..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
        }
        let opcode = self.partial.take().unwrap_or(OpCode::Binary);
        let data = std::mem::take(&mut self.fragments);
        if opcode == OpCode::Text && !self.utf8.at_boundary() {
            return Err(ProtocolError::InvalidUtf8);
        }
        data_message(opcode, data)
    }
}

fn inflate_error(e: InflateError) -> ProtocolError {
    match e {
        InflateError::TooLarge { limit } => ProtocolError::MessageTooLarge {
            len: limit as u64 + 1,
            limit,
        },
        InflateError::Corrupt(why) => ProtocolError::BadCompressedData(why),
    }
}

/// `key` as seen from `offset` bytes into a payload (RFC 6455 §5.3: octet i is XORed with
/// key octet i MOD 4).
fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    let r = offset % 4;
    [key[r], key[(r + 1) % 4], key[(r + 2) % 4], key[(r + 3) % 4]]
}

/// The payload copied out of the input, unmasked in the same pass.
fn unmasked(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    match mask {
        Some(key) => {
            let mut data = Vec::with_capacity(payload.len());
            extend_masked(&mut data, payload, key);
            data
        }
        None => payload.to_vec(),
    }
}

fn data_message(opcode: OpCode, data: Vec<u8>) -> Result<Message, ProtocolError> {
    if opcode == OpCode::Text {
        // RFC 6455 §8.1: text MUST be UTF-8; §5.6 fails the connection otherwise.
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data))
    }
}

/// RFC 6455 §5.5.1: an empty body, or a 2-byte code followed by a UTF-8 reason.
fn close_message(mut data: Vec<u8>) -> Result<Message, ProtocolError> {
    let [hi, lo, ..] = *data.as_slice() else {
        return if data.is_empty() {
            Ok(Message::Close(None))
        } else {
            Err(ProtocolError::BadClose("1-byte payload"))
        };
    };
    let code = u16::from_be_bytes([hi, lo]);
    // RFC 6455 §7.4: 1005, 1006, 1015 and unassigned codes below 3000 never appear on the wire.
    if !close_code::is_sendable(code) {
        return Err(ProtocolError::BadClose("status code may not be sent"));
    }
    data.drain(..2);
    let reason = String::from_utf8(data).map_err(|_| ProtocolError::InvalidUtf8)?;
    Ok(Message::Close(Some(CloseFrame { code, reason })))
}

#[cfg(test)]
mod tests;
