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
mod tests {
    use super::*;
    use crate::ws::encode_frame;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn server() -> Decoder {
        Decoder::new(Role::Server, DecoderConfig::default())
    }

    fn client() -> Decoder {
        Decoder::new(Role::Client, DecoderConfig::default())
    }

    fn frame(fin: bool, op: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, op, mask, payload);
        out
    }

    /// Decodes every message in `buf`, checking that nothing is left over.
    fn decode_all(dec: &mut Decoder, mut buf: &[u8]) -> Result<Vec<Message>, ProtocolError> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let (n, msg) = dec.decode(buf)?;
            assert!(n > 0, "stuck with {} bytes left", buf.len());
            buf = &buf[n..];
            out.extend(msg);
        }
        Ok(out)
    }

    #[test]
    fn rfc6455_5_7_examples() {
        // Unmasked "Hello", as a client receives it.
        let unmasked = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            client().decode(&unmasked),
            Ok((7, Some(Message::Text("Hello".into()))))
        );
        // Masked "Hello", as a server receives it.
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            server().decode(&masked),
            Ok((11, Some(Message::Text("Hello".into()))))
        );
        // Fragmented unmasked "Hel" + "lo".
        let mut dec = client();
        let frag = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(dec.decode(&frag), Ok((5, None)));
        assert!(dec.in_message());
        assert_eq!(
            dec.decode(&frag[5..]),
            Ok((4, Some(Message::Text("Hello".into()))))
        );
        assert!(!dec.in_message());
        // Unmasked ping, masked pong.
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            client().decode(&ping),
            Ok((7, Some(Message::Ping(b"Hello".to_vec()))))
        );
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            server().decode(&pong),
            Ok((11, Some(Message::Pong(b"Hello".to_vec()))))
        );
        // 256 bytes and 64 KiB binary, unmasked.
        for len in [256usize, 65536] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let f = frame(true, OpCode::Binary, None, &data);
            assert_eq!(
                client().decode(&f),
                Ok((f.len(), Some(Message::Binary(data))))
            );
        }
    }

    #[test]
    fn incomplete_frames_consume_nothing() {
        let f = frame(true, OpCode::Binary, Some(KEY), &[7u8; 300]);
        let mut dec = server();
        for i in 0..f.len() {
            assert_eq!(dec.decode(&f[..i]), Ok((0, None)), "prefix {i}");
        }
        assert_eq!(dec.decode(&f).unwrap().0, f.len());
    }

    #[test]
    fn only_one_frame_consumed_per_call() {
        let mut buf = frame(true, OpCode::Text, Some(KEY), b"a");
        buf.extend(frame(true, OpCode::Text, Some(KEY), b"b"));
        let mut dec = server();
        assert_eq!(dec.decode(&buf), Ok((7, Some(Message::Text("a".into())))));
        assert_eq!(
            dec.decode(&buf[7..]),
            Ok((7, Some(Message::Text("b".into()))))
        );
    }

    #[test]
    fn role_rules() {
        let unmasked = frame(true, OpCode::Text, None, b"hi");
        let masked = frame(true, OpCode::Text, Some(KEY), b"hi");
        assert_eq!(
            server().decode(&unmasked),
            Err(ProtocolError::UnmaskedClientFrame)
        );
        assert_eq!(
            client().decode(&masked),
            Err(ProtocolError::MaskedServerFrame)
        );
        // Even from the header alone.
        assert_eq!(
            server().decode(&unmasked[..2]),
            Err(ProtocolError::UnmaskedClientFrame)
        );
        assert_eq!(
            ProtocolError::UnmaskedClientFrame.close_code(),
            close_code::PROTOCOL
        );
    }

    #[test]
    fn reserved_bits_and_opcodes() {
        for rsv in 1..8u8 {
            let mut f = frame(true, OpCode::Text, Some(KEY), b"x");
            f[0] |= rsv << 4;
            assert_eq!(server().decode(&f), Err(ProtocolError::ReservedBits));
        }
        for op in [3u8, 7, 0xB, 0xF] {
            let f = [0x80 | op, 0x80, 1, 2, 3, 4];
            assert_eq!(server().decode(&f), Err(ProtocolError::ReservedOpcode(op)));
        }
    }

    #[test]
    fn bad_length() {
        let f = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4];
        assert_eq!(server().decode(&f), Err(ProtocolError::BadLength));
    }

    #[test]
    fn control_frame_rules() {
        let big = frame(true, OpCode::Ping, Some(KEY), &[0u8; 126]);
        assert!(matches!(
            server().decode(&big[..8]),
            Err(ProtocolError::BadControlFrame(_))
        ));
        let ok = frame(true, OpCode::Ping, Some(KEY), &[0u8; 125]);
        assert!(matches!(
            server().decode(&ok),
            Ok((_, Some(Message::Ping(_))))
        ));
        for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            let f = frame(false, op, Some(KEY), b"");
            assert!(matches!(
                server().decode(&f),
                Err(ProtocolError::BadControlFrame(_))
            ));
        }
    }

    #[test]
    fn fragmentation_rules() {
        // Continuation with nothing to continue.
        let cont = frame(true, OpCode::Continuation, Some(KEY), b"x");
        assert!(matches!(
            server().decode(&cont),
            Err(ProtocolError::BadFragmentation(_))
        ));
        // New data frame while a message is open.
        let mut dec = server();
        let first = frame(false, OpCode::Binary, Some(KEY), b"ab");
        assert_eq!(dec.decode(&first), Ok((first.len(), None)));
        for op in [OpCode::Text, OpCode::Binary] {
            let f = frame(true, op, Some(KEY), b"x");
            assert!(matches!(
                dec.decode(&f),
                Err(ProtocolError::BadFragmentation(_))
            ));
        }
    }

    #[test]
    fn control_frames_interleave_with_fragments() {
        let mut buf = frame(false, OpCode::Text, Some(KEY), "héllo ".as_bytes());
        buf.extend(frame(true, OpCode::Ping, Some([9, 8, 7, 6]), b"p"));
        buf.extend(frame(false, OpCode::Continuation, Some([1, 2, 3, 4]), b""));
        buf.extend(frame(
            true,
            OpCode::Continuation,
            Some([5, 6, 7, 8]),
            "wörld".as_bytes(),
        ));
        let msgs = decode_all(&mut server(), &buf).unwrap();
        assert_eq!(
            msgs,
            vec![
                Message::Ping(b"p".to_vec()),
                Message::Text("héllo wörld".into())
            ]
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_fine() {
        let euro = "€".as_bytes();
        let mut buf = frame(false, OpCode::Text, None, &euro[..1]);
        buf.extend(frame(false, OpCode::Continuation, None, &euro[1..2]));
        buf.extend(frame(true, OpCode::Continuation, None, &euro[2..]));
        assert_eq!(
            decode_all(&mut client(), &buf).unwrap(),
            vec![Message::Text("€".into())]
        );
    }

    #[test]
    fn invalid_utf8() {
        let f = frame(true, OpCode::Text, Some(KEY), b"a\xffb");
        assert_eq!(server().decode(&f), Err(ProtocolError::InvalidUtf8));
        assert_eq!(
            ProtocolError::InvalidUtf8.close_code(),
            close_code::INVALID_PAYLOAD
        );
        // A fragmented message fails at the fragment that is invalid, not at its end.
        let mut dec = client();
        let f = frame(false, OpCode::Text, None, b"ok");
        assert_eq!(dec.decode(&f), Ok((f.len(), None)));
        let f = frame(false, OpCode::Continuation, None, b"\xc0\xaf");
        assert_eq!(dec.decode(&f), Err(ProtocolError::InvalidUtf8));
        // Truncated sequence at the end of the message.
        let mut buf = frame(false, OpCode::Text, None, b"\xe2\x82");
        buf.extend(frame(true, OpCode::Continuation, None, b""));
        assert_eq!(
            decode_all(&mut client(), &buf),
            Err(ProtocolError::InvalidUtf8)
        );
        // Binary is never checked.
        let f = frame(true, OpCode::Binary, None, b"\xff");
        assert_eq!(
            client().decode(&f),
            Ok((3, Some(Message::Binary(vec![0xff]))))
        );
    }

    #[test]
    fn frame_too_large_from_header_alone() {
        // A header announcing 1 GiB, and nothing else.
        let header = [0x82, 0xFF, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4];
        let mut dec = server();
        let err = dec.decode(&header).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::FrameTooLarge {
                len: 1 << 30,
                limit: 16 << 20
            }
        );
        assert_eq!(err.close_code(), close_code::TOO_BIG);
        let config = DecoderConfig {
            max_frame_bytes: 10,
            max_message_bytes: 100,
            ..DecoderConfig::default()
        };
        let f = frame(true, OpCode::Binary, None, &[0; 11]);
        assert!(matches!(
            Decoder::new(Role::Client, config).decode(&f[..2]),
            Err(ProtocolError::FrameTooLarge { len: 11, limit: 10 })
        ));
        let f = frame(true, OpCode::Binary, None, &[0; 10]);
        assert!(Decoder::new(Role::Client, config)
            .decode(&f)
            .unwrap()
            .1
            .is_some());
    }

    #[test]
    fn message_too_large() {
        let config = DecoderConfig {
            max_frame_bytes: 10,
            max_message_bytes: 25,
            ..DecoderConfig::default()
        };
        let mut dec = Decoder::new(Role::Client, config);
        let f = frame(false, OpCode::Binary, None, &[1; 10]);
        assert_eq!(dec.decode(&f), Ok((12, None)));
        let f = frame(false, OpCode::Continuation, None, &[2; 10]);
        assert_eq!(dec.decode(&f), Ok((12, None)));
        // Header of the third fragment alone makes it certain.
        let f = frame(true, OpCode::Continuation, None, &[3; 6]);
        assert_eq!(
            dec.decode(&f[..2]),
            Err(ProtocolError::MessageTooLarge { len: 26, limit: 25 })
        );
        // A single frame bigger than the message limit is refused too.
        let config = DecoderConfig {
            max_frame_bytes: 100,
            max_message_bytes: 5,
            ..DecoderConfig::default()
        };
        let f = frame(true, OpCode::Text, None, b"123456");
        assert!(matches!(
            Decoder::new(Role::Client, config).decode(&f),
            Err(ProtocolError::MessageTooLarge { len: 6, limit: 5 })
        ));
        // Exactly at the limit is fine.
        let mut dec = Decoder::new(
            Role::Client,
            DecoderConfig {
                max_frame_bytes: 10,
                max_message_bytes: 20,
                ..DecoderConfig::default()
            },
        );
        let mut buf = frame(false, OpCode::Binary, None, &[1; 10]);
        buf.extend(frame(true, OpCode::Continuation, None, &[2; 10]));
        assert_eq!(decode_all(&mut dec, &buf).unwrap().len(), 1);
    }

    #[test]
    fn large_frames_are_taken_as_they_arrive_not_as_announced() {
        let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7) as u8).collect();
        let f = frame(true, OpCode::Binary, Some(KEY), &data);
        let header_len = f.len() - data.len();
        let mut dec = server();
        // The header and 100 payload bytes: taken, and only what arrived is held.
        let (n, msg) = dec.decode(&f[..header_len + 100]).unwrap();
        assert_eq!((n, msg), (header_len + 100, None));
        assert!(dec.in_message());
        assert!(dec.buffered() < 4096, "held {} bytes", dec.buffered());
        assert_eq!(
            dec.wanted(&[]),
            64 << 10,
            "reads are capped, not the whole frame"
        );
        // The rest in uneven pieces (mask phase at every offset mod 4).
        let mut at = header_len + 100;
        let mut got = None;
        for piece in [1usize, 2, 3, 4093, 65_536, 1 << 20].iter().cycle() {
            let end = (at + piece).min(f.len());
            let (n, msg) = dec.decode(&f[at..end]).unwrap();
            assert_eq!(n, end - at);
            at = end;
            if let Some(m) = msg {
                got = Some(m);
                break;
            }
        }
        assert_eq!(at, f.len());
        assert_eq!(got, Some(Message::Binary(data)));
        assert!(!dec.in_message());
        assert_eq!(
            dec.buffered(),
            0,
            "the message buffer is handed over, not kept"
        );
    }

    #[test]
    fn small_binary_frames_wait_whole_and_say_what_is_missing() {
        let f = frame(true, OpCode::Binary, Some(KEY), &[5u8; 1000]);
        let mut dec = server();
        assert_eq!(dec.decode(&f[..500]), Ok((0, None)));
        assert!(!dec.in_message());
        assert_eq!(dec.wanted(&f[..500]), f.len() - 500);
        assert_eq!(dec.wanted(&f[..1]), 0, "no header yet");
        assert_eq!(
            dec.decode(&f),
            Ok((f.len(), Some(Message::Binary(vec![5u8; 1000]))))
        );
    }

    #[test]
    fn invalid_text_fails_at_the_read_that_brings_it() {
        // Autobahn 6.4.3: one frame, sent in chops; the second chop breaks the UTF-8.
        let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64";
        let f = frame(true, OpCode::Text, Some(KEY), payload);
        let header_len = f.len() - payload.len();
        let mut dec = server();
        let first = header_len + 11;
        assert_eq!(dec.decode(&f[..first]), Ok((first, None)));
        assert_eq!(
            dec.decode(&f[first..first + 2]),
            Err(ProtocolError::InvalidUtf8)
        );
        // Valid text in chops still arrives whole.
        let text = "κόσμε and more κόσμε";
        let f = frame(true, OpCode::Text, Some(KEY), text.as_bytes());
        let mut dec = server();
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for chop in f.chunks(3) {
            buf.extend_from_slice(chop);
            loop {
                let (n, msg) = dec.decode(&buf).unwrap();
                buf.drain(..n);
                got.extend(msg);
                if n == 0 || buf.is_empty() {
                    break;
                }
            }
        }
        assert_eq!(got, vec![Message::Text(text.into())]);
    }

    #[test]
    fn endless_messages_are_bounded_by_their_frame_count() {
        let mut dec = Decoder::new(
            Role::Server,
            DecoderConfig {
                max_fragments: 4,
                ..DecoderConfig::default()
            },
        );
        let mut buf = frame(false, OpCode::Binary, Some(KEY), b"");
        for _ in 0..3 {
            buf.extend(frame(false, OpCode::Continuation, Some(KEY), b""));
        }
        assert_eq!(decode_all(&mut dec, &buf), Ok(vec![]));
        let more = frame(false, OpCode::Continuation, Some(KEY), b"");
        let err = dec.decode(&more).unwrap_err();
        assert_eq!(err, ProtocolError::TooManyFragments { limit: 4 });
        assert_eq!(err.close_code(), close_code::TOO_BIG);
        // The count starts again with every message.
        let mut dec = Decoder::new(
            Role::Server,
            DecoderConfig {
                max_fragments: 2,
                ..DecoderConfig::default()
            },
        );
        let mut buf = Vec::new();
        for _ in 0..10 {
            buf.extend(frame(false, OpCode::Text, Some(KEY), b"a"));
            buf.extend(frame(true, OpCode::Continuation, Some(KEY), b"b"));
        }
        assert_eq!(decode_all(&mut dec, &buf).unwrap().len(), 10);
    }

    #[test]
    fn close_frames() {
        let close =
            |payload: &[u8]| server().decode(&frame(true, OpCode::Close, Some(KEY), payload));
        assert_eq!(close(b"").unwrap().1, Some(Message::Close(None)));
        assert!(matches!(close(b"\x03"), Err(ProtocolError::BadClose(_))));
        let ok = close(b"\x03\xe8bye").unwrap().1;
        assert_eq!(
            ok,
            Some(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "bye".into()
            })))
        );
        let ok = close(b"\x0f\xa0").unwrap().1;
        assert_eq!(
            ok,
            Some(Message::Close(Some(CloseFrame {
                code: 4000,
                reason: String::new()
            })))
        );
        for code in [0u16, 999, 1004, 1005, 1006, 1012, 1015, 2999, 5000, 65535] {
            let r = close(&code.to_be_bytes());
            assert!(matches!(r, Err(ProtocolError::BadClose(_))), "{code}");
        }
        assert_eq!(close(b"\x03\xe8\xff"), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn encode_close_decodes() {
        let mut buf = Vec::new();
        crate::ws::encode_close(&mut buf, None, close_code::GOING_AWAY, "restart");
        assert_eq!(
            client().decode(&buf).unwrap().1,
            Some(Message::Close(Some(CloseFrame {
                code: 1001,
                reason: "restart".into()
            })))
        );
    }
}
