//! The decoder against RFC 6455's examples and rules, the streaming of large and text
//! frames, and the limits.
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
    let close = |payload: &[u8]| server().decode(&frame(true, OpCode::Close, Some(KEY), payload));
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
