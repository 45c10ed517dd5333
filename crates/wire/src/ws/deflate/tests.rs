//! The codec and the negotiated parameters through `ws::Decoder`, as a connection uses them.

use super::*;
use crate::ws::{close_code, encode_frame, Decoder, DecoderConfig, Message, OpCode, ProtocolError};

fn client_decoder(limit: usize) -> Decoder {
    let config = DecoderConfig {
        max_frame_bytes: 1 << 20,
        max_message_bytes: limit,
        ..DecoderConfig::default()
    };
    Decoder::new(Role::Client, config).with_inflater(Params::default().inflater(Role::Client))
}

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
fn decoder_rfc7692_7_2_3_1_examples() {
    let hello = Message::Text("Hello".into());
    // One compressed frame, then the same message again using the window (§7.2.3.2).
    let mut dec = client_decoder(100);
    let one = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(dec.decode(&one), Ok((9, Some(hello.clone()))));
    let again = [0xc1, 0x05, 0xf2, 0x00, 0x11, 0x00, 0x00];
    assert_eq!(dec.decode(&again), Ok((7, Some(hello.clone()))));
    // Fragmented: RSV1 on the first frame only.
    let frags = [
        0x41, 0x03, 0xf2, 0x48, 0xcd, 0x80, 0x04, 0xc9, 0xc9, 0x07, 0x00,
    ];
    assert_eq!(
        decode_all(&mut client_decoder(100), &frags),
        Ok(vec![hello.clone()])
    );
    // Uncompressed messages still pass.
    let plain = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
    assert_eq!(client_decoder(100).decode(&plain), Ok((7, Some(hello))));
}

#[test]
fn decoder_rsv1_only_where_rfc7692_6_allows() {
    // No extension negotiated: RSV1 is refused as before.
    let one = [0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    assert_eq!(
        Decoder::new(Role::Client, DecoderConfig::default()).decode(&one),
        Err(ProtocolError::ReservedBits)
    );
    // RSV1 on a continuation, on a control frame; RSV2 and RSV3 on anything.
    let cont = [0x41, 0x01, 0xf2, 0xc0, 0x01, 0x00];
    assert_eq!(
        decode_all(&mut client_decoder(100), &cont),
        Err(ProtocolError::ReservedBits)
    );
    for first in [0xc9, 0xca, 0xc8, 0xa1, 0x91, 0xe2] {
        let f = [first, 0x00];
        assert_eq!(
            client_decoder(100).decode(&f),
            Err(ProtocolError::ReservedBits),
            "{first:#x}"
        );
    }
}

#[test]
fn decoder_bomb_is_1009_and_bad_data_1002() {
    let mut deflater = Deflater::new(15, false, 9);
    let mut wire = Vec::new();
    encode_compressed(
        &mut wire,
        &mut deflater,
        OpCode::Binary,
        None,
        &[0u8; 1 << 20],
    )
    .unwrap();
    assert!(wire.len() < 2000, "{}", wire.len());
    let err = client_decoder(64 << 10).decode(&wire).unwrap_err();
    assert_eq!(
        err,
        ProtocolError::MessageTooLarge {
            len: (64 << 10) + 1,
            limit: 64 << 10
        }
    );
    assert_eq!(err.close_code(), close_code::TOO_BIG);
    // The same bomb in fragments fails at the fragment that crosses the limit.
    let payload = &wire[4..];
    let mut frames = Vec::new();
    let mut dec = client_decoder(64 << 10);
    for (i, piece) in payload.chunks(100).enumerate() {
        frames.clear();
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        encode_frame(&mut frames, false, op, None, piece);
        if i == 0 {
            frames[0] |= 0x40;
        }
        match dec.decode(&frames) {
            Ok((n, None)) => assert_eq!(n, frames.len()),
            Err(e) => {
                assert_eq!(e.close_code(), close_code::TOO_BIG);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // Not DEFLATE at all.
    let bad = [0xc2, 0x02, 0xff, 0xff];
    let err = client_decoder(100).decode(&bad).unwrap_err();
    assert!(
        matches!(err, ProtocolError::BadCompressedData(_)),
        "{err:?}"
    );
    assert_eq!(err.close_code(), close_code::PROTOCOL);
    // Invalid UTF-8 after inflating is still 1007.
    let mut wire = Vec::new();
    encode_compressed(&mut wire, &mut deflater, OpCode::Text, None, b"ok\xff").unwrap();
    let mut dec = client_decoder(100);
    assert_eq!(dec.decode(&wire), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn decoder_follows_a_deflater_across_messages_fragments_and_masks() {
    for takeover in [false, true] {
        let params = Params {
            client_no_context_takeover: !takeover,
            client_max_window_bits: 10,
            ..Params::default()
        };
        let mut deflater = params.deflater(Role::Client, DEFAULT_LEVEL);
        let mut dec = Decoder::new(Role::Server, DecoderConfig::default())
            .with_inflater(params.inflater(Role::Server));
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for i in 0..30usize {
            let text = format!("{{\"seq\":{i},\"body\":\"{}\"}}", "é".repeat(i * 37 % 500));
            let key = (i as u32).wrapping_mul(0x9e37_79b9).to_le_bytes();
            if i.is_multiple_of(3) {
                // Compressed, then cut into fragments with their own masks.
                let mut payload = Vec::new();
                deflater.compress(text.as_bytes(), &mut payload).unwrap();
                let cuts: Vec<&[u8]> = payload.chunks(7).collect();
                for (j, piece) in cuts.iter().enumerate() {
                    let op = if j == 0 {
                        OpCode::Text
                    } else {
                        OpCode::Continuation
                    };
                    let start = wire.len();
                    encode_frame(&mut wire, j + 1 == cuts.len(), op, Some(key), piece);
                    if j == 0 {
                        wire[start] |= 0x40;
                    }
                }
            } else if i % 3 == 1 {
                encode_compressed(
                    &mut wire,
                    &mut deflater,
                    OpCode::Text,
                    Some(key),
                    text.as_bytes(),
                )
                .unwrap();
            } else {
                // Senders may leave any message uncompressed.
                encode_frame(&mut wire, true, OpCode::Text, Some(key), text.as_bytes());
            }
            want.push(Message::Text(text));
        }
        assert_eq!(decode_all(&mut dec, &wire), Ok(want), "takeover {takeover}");
    }
}

#[test]
fn params_pick_each_direction() {
    let p = Params {
        server_no_context_takeover: true,
        client_no_context_takeover: false,
        server_max_window_bits: 10,
        client_max_window_bits: 12,
    };
    assert_eq!(p.sent_by(Role::Server), (10, true));
    assert_eq!(p.sent_by(Role::Client), (12, false));
    assert_eq!(p.inflater(Role::Client).window_bits(), 10);
    assert!(p.inflater(Role::Client).no_context_takeover());
    assert_eq!(p.inflater(Role::Server).window_bits(), 12);
    assert_eq!(p.deflater(Role::Server, 1).window_bits(), 10);
    assert_eq!(p.deflater(Role::Client, 1).window_bits(), 12);
}

#[test]
fn decoder_inflates_compressed_frames_streamed_in_pieces() {
    let params = Params::default();
    let mut deflater = params.deflater(Role::Client, DEFAULT_LEVEL);
    let texts: Vec<String> = (0..20)
        .map(|i| format!("{{\"n\":{i},\"t\":\"{}\"}}", "abcé".repeat(i * 50)))
        .collect();
    let mut wire = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let key = (i as u32).wrapping_mul(0x9e37_79b9).to_le_bytes();
        encode_compressed(
            &mut wire,
            &mut deflater,
            OpCode::Text,
            Some(key),
            t.as_bytes(),
        )
        .unwrap();
    }
    let want: Vec<Message> = texts.into_iter().map(Message::Text).collect();
    for step in [1, 7, 100, wire.len()] {
        let config = DecoderConfig {
            stream_frames_over: 16,
            ..DecoderConfig::default()
        };
        let mut dec =
            Decoder::new(Role::Server, config).with_inflater(params.inflater(Role::Server));
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        for piece in wire.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                let (n, msg) = dec.decode(&buf).unwrap();
                buf.drain(..n);
                got.extend(msg);
                if n == 0 {
                    break;
                }
            }
        }
        assert!(buf.is_empty() && !dec.in_message(), "step {step}");
        assert_eq!(got, want, "step {step}");
    }
}
