//! The WebSocket message decoder, both roles, small limits, differentially: the stream fed
//! whole and fed split at an input-chosen point must decode to the same messages and error.
//!
//! Input layout: `[flags, max_frame, max_message, split, stream...]`; flags bit 0 picks the
//! role (0 = server, expects masked frames), bits 1–3 the most fragments per message, and
//! bits 4–7 the size above which data frames are streamed (so both ways of taking a frame
//! are exercised). The max_message byte's top bit negotiates permessage-deflate (RSV1
//! messages are inflated, their inflated size held to the message limit), and the split
//! byte's top bit drops context takeover.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protolab_wire::ws::deflate::Params;
use protolab_wire::ws::{Decoder, DecoderConfig, Message, ProtocolError, Role};

fn run(
    dec: &mut Decoder,
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<Message>, Option<ProtocolError>, usize) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut from = 0;
    for &cut in cuts {
        buf.extend_from_slice(&stream[from..cut]);
        from = cut;
        loop {
            match dec.decode(&buf) {
                Ok((0, msg)) => {
                    assert!(msg.is_none());
                    break;
                }
                Ok((n, msg)) => {
                    assert!(n <= buf.len());
                    buf.drain(..n);
                    consumed += n;
                    out.extend(msg);
                }
                // How much of a streamed frame was taken before the error depends on where
                // the reads ended.
                Err(e) => return (out, Some(e), 0),
            }
        }
    }
    (out, None, consumed)
}

fuzz_target!(|data: &[u8]| {
    let [flags, max_frame, max_message, split, stream @ ..] = data else {
        return;
    };
    let role = if flags & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let config = DecoderConfig {
        max_frame_bytes: usize::from(*max_frame) * 2,
        max_message_bytes: usize::from(*max_message) * 4,
        max_fragments: u32::from((flags >> 1) & 7) + 1,
        stream_frames_over: usize::from(flags >> 4) * 16,
    };
    let at = stream.len() * usize::from(*split) / 255;
    let decoder = || {
        let decoder = Decoder::new(role, config);
        if max_message & 0x80 == 0 {
            return decoder;
        }
        let params = Params {
            server_no_context_takeover: split & 0x80 != 0,
            client_no_context_takeover: split & 0x80 != 0,
            ..Params::default()
        };
        decoder.with_inflater(params.inflater(role))
    };
    // A compressed message that breaks is met differently depending on the cut: zlib may
    // report the fault a call later than the bytes that caused it (in other words), after
    // inflating more, so what inflated first may already be invalid UTF-8 or over the limit.
    // Either way the message is refused, so under deflate those errors compare as one.
    let deflate = max_message & 0x80 != 0;
    let same_kind = |(messages, error, used): (Vec<Message>, Option<ProtocolError>, usize)| {
        let refused = ProtocolError::BadCompressedData(String::new());
        let error = error.map(|e| match e {
            ProtocolError::BadCompressedData(_) => refused,
            ProtocolError::InvalidUtf8 | ProtocolError::MessageTooLarge { .. } if deflate => {
                refused
            }
            other => other,
        });
        (messages, error, used)
    };
    let whole = same_kind(run(&mut decoder(), stream, &[stream.len()]));
    let split = same_kind(run(&mut decoder(), stream, &[at, stream.len()]));
    assert_eq!(whole, split);
    for msg in &whole.0 {
        match msg {
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
            Message::Text(t) => assert!(t.len() <= config.max_message_bytes),
            Message::Binary(b) => assert!(b.len() <= config.max_message_bytes),
            Message::Close(_) => {}
        }
    }
});
