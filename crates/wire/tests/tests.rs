//! Property and robustness tests for every decoder in `protolab-wire`.
//!
//! No extra dependencies: a seeded SplitMix64 generator drives random and mutated inputs, so
//! a failure prints its seed and replays exactly. Set `WIRE_PROP_CASES` to run more cases.

use protolab_wire::http1::{
    self, parse_request, parse_response, query, ChunkedDecoder, ChunkedError, HeadLimits,
};
use protolab_wire::ws::{
    self, apply_mask, decode_header, encode_close, encode_frame, handshake, CloseFrame, Decoder,
    DecoderConfig, FrameHeader, Message, OpCode, ProtocolError, Role,
};

/// SplitMix64: tiny, fast, good enough to drive tests.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn bytes_below(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max);
        self.bytes(len)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Random cut points splitting `len` bytes into pieces.
    fn splits(&mut self, len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..self.below(6)).map(|_| self.below(len + 1)).collect();
        cuts.push(len);
        cuts.sort_unstable();
        cuts
    }
}

fn cases(default: usize) -> usize {
    std::env::var("WIRE_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Runs `f` for `n` seeds, naming the seed on panic.
fn for_seeds(n: usize, salt: u64, mut f: impl FnMut(&mut Rng)) {
    for i in 0..n as u64 {
        let seed = salt.wrapping_mul(1_000_003).wrapping_add(i);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            f(&mut Rng::new(seed));
        }));
        if let Err(e) = result {
            eprintln!("failing seed: {seed}");
            std::panic::resume_unwind(e);
        }
    }
}

/// Applies a few random edits: byte flips, interesting bytes, inserts, deletes, duplicated
/// slices, truncation. Most inputs stay close to valid, which reaches deeper states than
/// pure noise.
fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    const INTERESTING: &[u8] = b"\r\n\t :;,0fF\x00\x7f\x80\xff=%+&-";
    let mut v = data.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = *rng.pick(INTERESTING);
            }
            2 => {
                let i = rng.below(v.len() + 1);
                v.insert(i, *rng.pick(INTERESTING));
            }
            3 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = rng.below(v.len() - i).min(8) + 1;
                v.drain(i..(i + n).min(v.len()));
            }
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                let n = (rng.below(16) + 1).min(v.len() - i);
                let slice = v[i..i + n].to_vec();
                let at = rng.below(v.len() + 1);
                v.splice(at..at, slice);
            }
            5 => v.truncate(rng.below(v.len() + 1)),
            _ => {
                let i = rng.below(v.len() + 1);
                let n = rng.below(4) + 1;
                let noise = rng.bytes(n);
                v.splice(i..i, noise);
            }
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// HTTP/1 heads

const REQUEST_SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: localhost:3000\r\n\r\n",
    b"\r\nPOST /echo?x=1&y=%20 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\nConnection: keep-alive\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
      Sec-WebSocket-Protocol: chat, superchat\r\nOrigin: http://x\r\n\r\n",
    b"GET / HTTP/1.0\r\nContent-Length: 1, 1\r\n\r\n",
];

const RESPONSE_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
    b"HTTP/1.0 204 \r\nTransfer-Encoding: chunked\r\n\r\n",
];

fn small_limits(rng: &mut Rng) -> HeadLimits {
    HeadLimits {
        max_head_bytes: rng.below(300) + 1,
        max_headers: rng.below(8),
    }
}

fn head_input(rng: &mut Rng, seeds: &[&[u8]]) -> Vec<u8> {
    if rng.chance(4) {
        let len = rng.below(200);
        rng.bytes(len)
    } else {
        let seed = *rng.pick(seeds);
        mutate(rng, seed)
    }
}

#[test]
fn request_parser_never_panics_and_is_consistent() {
    for_seeds(cases(4000), 1, |rng| {
        let input = head_input(rng, REQUEST_SEEDS);
        let limits = if rng.chance(2) {
            HeadLimits::default()
        } else {
            small_limits(rng)
        };
        match parse_request(&input, &limits) {
            Ok(Some((head, n))) => {
                assert!(n <= input.len() && n <= limits.max_head_bytes);
                assert!(head.headers.len() <= limits.max_headers);
                // The head alone parses the same; no strict prefix is a complete head.
                assert_eq!(
                    parse_request(&input[..n], &limits),
                    Ok(Some((head.clone(), n)))
                );
                let cut = rng.below(n);
                assert!(!matches!(
                    parse_request(&input[..cut], &limits),
                    Ok(Some(_))
                ));
                // Everything downstream of a parsed head must cope with it.
                let _ = head.body_framing();
                let _ = head.keep_alive();
                if let Some(q) = head.query() {
                    let _ = query::pairs(q);
                }
                if handshake::is_upgrade_request(&head) {
                    let _ = handshake::check_request(&head);
                }
            }
            Ok(None) => assert!(input.len() <= limits.max_head_bytes),
            Err(_) => {}
        }
    });
}

#[test]
fn response_parser_never_panics_and_is_consistent() {
    for_seeds(cases(4000), 2, |rng| {
        let input = head_input(rng, RESPONSE_SEEDS);
        let limits = if rng.chance(2) {
            HeadLimits::default()
        } else {
            small_limits(rng)
        };
        match parse_response(&input, &limits) {
            Ok(Some((head, n))) => {
                assert!(n <= input.len() && n <= limits.max_head_bytes);
                assert_eq!(
                    parse_response(&input[..n], &limits),
                    Ok(Some((head.clone(), n)))
                );
                for method in ["GET", "HEAD", "CONNECT"] {
                    let _ = head.body_framing(method);
                }
                let _ = handshake::check_response(&head, "dGhlIHNhbXBsZSBub25jZQ==");
            }
            Ok(None) => assert!(input.len() <= limits.max_head_bytes),
            Err(_) => {}
        }
    });
}

#[test]
fn encoded_heads_parse_back() {
    const TCHARS: &[u8] = b"abcXYZ019-_.!#$%&'*+^`|~";
    for_seeds(cases(1000), 3, |rng| {
        let headers: Vec<(String, Vec<u8>)> = (0..rng.below(6))
            .map(|_| {
                let name: String = (0..rng.below(8) + 1)
                    .map(|_| *rng.pick(TCHARS) as char)
                    .collect();
                // Visible ASCII, inner spaces, obs-text; no leading or trailing whitespace.
                let mut value: Vec<u8> = (0..rng.below(12))
                    .map(|_| match rng.below(10) {
                        0 => b' ',
                        1 => 0x80 + rng.below(0x80) as u8,
                        _ => 0x21 + rng.below(0x5e) as u8,
                    })
                    .collect();
                while value.last() == Some(&b' ') {
                    value.pop();
                }
                while value.first() == Some(&b' ') {
                    value.remove(0);
                }
                (name, value)
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let status = 100 + rng.below(500) as u16;
        let mut out = Vec::new();
        http1::write_response_head(&mut out, status, &refs);
        let (head, n) = parse_response(&out, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, out.len());
        assert_eq!(head.status, status);
        assert_eq!(head.reason, http1::reason_phrase(status));
        let got: Vec<(String, Vec<u8>)> = head
            .headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect();
        assert_eq!(got, headers);

        let mut out = Vec::new();
        http1::write_request_head(&mut out, "PATCH", "/a/b?c=d", &refs);
        let (head, n) = parse_request(&out, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            (n, head.method.as_str(), head.target.as_str()),
            (out.len(), "PATCH", "/a/b?c=d")
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Chunked bodies

/// Decodes `input` through a caller-style buffer, fed at `cuts`.
fn chunked_at(
    input: &[u8],
    cuts: &[usize],
    limit: u64,
) -> Result<(Vec<u8>, bool, usize), ChunkedError> {
    let mut dec = ChunkedDecoder::with_limit(limit);
    let mut buf = Vec::new();
    let mut body = Vec::new();
    let mut consumed = 0;
    let mut from = 0;
    for &cut in cuts {
        buf.extend_from_slice(&input[from..cut]);
        from = cut;
        let ev = dec.decode(&buf, &mut body)?;
        assert!(ev.consumed <= buf.len());
        buf.drain(..ev.consumed);
        consumed += ev.consumed;
        if ev.done {
            return Ok((body, true, consumed));
        }
    }
    Ok((body, false, consumed))
}

fn chunk_encode(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let n = (rng.below(40) + 1).min(rest.len());
        let size = if rng.chance(2) {
            format!("{n:x}")
        } else {
            format!("{n:X}")
        };
        out.extend_from_slice(size.as_bytes());
        if rng.chance(4) {
            out.extend_from_slice(b" ;name=\"v\";flag");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if rng.chance(3) {
        out.extend_from_slice(b"Expires: never\r\nX-Sum: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn chunked_roundtrips_at_any_split() {
    for_seeds(cases(2000), 4, |rng| {
        let len = rng.below(300);
        let body = rng.bytes(len);
        let mut encoded = chunk_encode(rng, &body);
        let end = encoded.len();
        encoded.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut cuts = rng.splits(encoded.len());
        if rng.chance(4) {
            cuts = (1..=encoded.len()).collect(); // byte by byte
        }
        let (got, done, consumed) = chunked_at(&encoded, &cuts, 1 << 20).unwrap();
        assert!(done);
        assert_eq!(consumed, end, "stops exactly at the end of the body");
        assert_eq!(got, body);
    });
}

#[test]
fn chunked_never_panics_and_split_does_not_matter() {
    for_seeds(cases(4000), 5, |rng| {
        let input = if rng.chance(4) {
            let len = rng.below(100);
            rng.bytes(len)
        } else {
            let len = rng.below(50);
            let body = rng.bytes(len);
            let encoded = chunk_encode(rng, &body);
            mutate(rng, &encoded)
        };
        let limit = if rng.chance(2) {
            1 << 20
        } else {
            rng.below(64) as u64
        };
        let whole = chunked_at(&input, &[input.len()], limit);
        let bytewise = chunked_at(&input, &(0..=input.len()).collect::<Vec<_>>(), limit);
        let random = chunked_at(&input, &rng.splits(input.len()), limit);
        // Splitting may only delay an error or a result, never change it: compare what
        // each run ended with when it did end.
        match (&whole, &bytewise, &random) {
            (Ok((b1, true, c1)), Ok((b2, true, c2)), Ok((b3, true, c3))) => {
                assert_eq!((b1, c1), (b2, c2));
                assert_eq!((b1, c1), (b3, c3));
            }
            (Err(e1), Err(e2), Err(e3)) => {
                assert_eq!(e1, e2);
                assert_eq!(e1, e3);
            }
            (Ok((_, false, _)), Ok((_, false, _)), Ok((_, false, _))) => {}
            other => panic!("split changed the outcome: {other:?}"),
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Query strings

#[test]
fn query_never_panics_and_roundtrips() {
    const ALPHABET: &[u8] = b"ab=&%+2F0fgZ\xc3\xa9 ";
    for_seeds(cases(4000), 6, |rng| {
        let raw: Vec<u8> = (0..rng.below(40)).map(|_| *rng.pick(ALPHABET)).collect();
        let s = String::from_utf8_lossy(&raw);
        let _ = query::pairs(&s);
        let _ = query::decode_component(&s);
        // Percent-encoding every byte of a random string decodes back to it.
        let text: String = (0..rng.below(20))
            .map(|_| char::from_u32(rng.below(0x800) as u32).unwrap_or('x'))
            .collect();
        let encoded: String = text.bytes().map(|b| format!("%{b:02X}")).collect();
        assert_eq!(query::decode_component(&encoded).unwrap(), text);
    });
}

// ---------------------------------------------------------------------------------------------
// WebSocket

#[test]
fn apply_mask_equals_naive_loop() {
    for_seeds(cases(200), 7, |rng| {
        let key = [
            rng.next() as u8,
            rng.next() as u8,
            rng.next() as u8,
            rng.next() as u8,
        ];
        let data = rng.bytes(64);
        for len in 0..64 {
            for offset in 0..12 {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, key, offset);
                let slow: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ key[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
        // Also on unaligned sub-slices, where the word loop starts mid-allocation.
        let mut big = rng.bytes(300);
        let start = rng.below(16);
        let orig = big.clone();
        apply_mask(&mut big[start..], key, start);
        for i in start..big.len() {
            assert_eq!(big[i], orig[i] ^ key[i % 4]);
        }
    });
}

#[test]
fn frame_headers_roundtrip() {
    const OPS: &[OpCode] = &[
        OpCode::Continuation,
        OpCode::Text,
        OpCode::Binary,
        OpCode::Close,
        OpCode::Ping,
        OpCode::Pong,
    ];
    for_seeds(cases(4000), 8, |rng| {
        let payload_len = match rng.below(4) {
            0 => rng.below(126) as u64,
            1 => 126 + rng.below(0xFFFF - 125) as u64,
            2 => rng.next() >> 1,
            _ => *rng.pick(&[125, 126, 0xFFFF, 0x1_0000, u64::MAX >> 1]),
        };
        let mask = rng.chance(2).then(|| (rng.next() as u32).to_be_bytes());
        let h = FrameHeader {
            fin: rng.chance(2),
            rsv: rng.below(8) as u8,
            opcode: *rng.pick(OPS),
            mask,
            payload_len,
        };
        let mut out = Vec::new();
        ws::write_header(&mut out, &h);
        assert_eq!(out.len(), h.encoded_len());
        assert_eq!(decode_header(&out), Ok(Some((h, out.len()))));
        for cut in 0..out.len() {
            assert_eq!(decode_header(&out[..cut]), Ok(None));
        }
    });
}

/// A stream of frames forming valid messages, and the messages a decoder must produce.
fn random_stream(rng: &mut Rng, masked: bool) -> (Vec<u8>, Vec<Message>) {
    let key = |rng: &mut Rng| masked.then(|| (rng.next() as u32).to_le_bytes());
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..rng.below(6) + 1 {
        match rng.below(5) {
            0 => {
                let data = rng.bytes_below(126);
                let k = key(rng);
                if rng.chance(2) {
                    encode_frame(&mut wire, true, OpCode::Ping, k, &data);
                    expected.push(Message::Ping(data));
                } else {
                    encode_frame(&mut wire, true, OpCode::Pong, k, &data);
                    expected.push(Message::Pong(data));
                }
            }
            1 => {
                let code = *rng.pick(&[1000u16, 1001, 1003, 1011, 3000, 4999]);
                let reason: String = (0..rng.below(70))
                    .map(|_| *rng.pick(&['a', 'é', '€', ' ']))
                    .collect();
                let k = key(rng);
                encode_close(&mut wire, k, code, &reason);
                let mut end = reason.len().min(123);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let reason = reason[..end].to_owned();
                expected.push(Message::Close(Some(CloseFrame { code, reason })));
            }
            kind => {
                let text = kind == 2;
                let len = *rng.pick(&[0, 1, 7, 125, 126, 200, 0xFFFF, 0x1_0000, 70_000]);
                let data: Vec<u8> = if text {
                    let s: String = (0..len).map(|_| *rng.pick(&['x', 'ü', '€', '𝄞'])).collect();
                    s.into_bytes()
                } else {
                    rng.bytes(len)
                };
                // Split into fragments at arbitrary byte offsets (even inside a UTF-8
                // sequence), with control frames in between.
                let cuts = rng.splits(data.len());
                let mut from = 0;
                for (i, &cut) in cuts.iter().enumerate() {
                    let op = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    let fin = i + 1 == cuts.len();
                    let k = key(rng);
                    encode_frame(&mut wire, fin, op, k, &data[from..cut]);
                    from = cut;
                    if !fin && rng.chance(3) {
                        let k = key(rng);
                        encode_frame(&mut wire, true, OpCode::Ping, k, b"mid");
                        expected.push(Message::Ping(b"mid".to_vec()));
                    }
                }
                expected.push(if text {
                    Message::Text(String::from_utf8(data).expect("built from chars"))
                } else {
                    Message::Binary(data)
                });
            }
        }
    }
    (wire, expected)
}

/// Feeds `wire` through a receive buffer the way a connection would, arriving at `cuts`.
fn decode_stream(
    dec: &mut Decoder,
    wire: &[u8],
    cuts: &[usize],
) -> (Vec<Message>, Option<ProtocolError>, usize) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut from = 0;
    let mut consumed = 0;
    for &cut in cuts {
        buf.extend_from_slice(&wire[from..cut]);
        from = cut;
        loop {
            match dec.decode(&buf) {
                Ok((0, msg)) => {
                    assert!(msg.is_none(), "a message without consuming bytes");
                    break;
                }
                Ok((n, msg)) => {
                    assert!(n <= buf.len());
                    buf.drain(..n);
                    consumed += n;
                    out.extend(msg);
                }
                // How much of a streamed frame was taken before the error depends on where
                // the reads ended, so only the messages and the error are compared then.
                Err(e) => return (out, Some(e), 0),
            }
        }
    }
    (out, None, consumed)
}

#[test]
fn ws_encode_decode_roundtrip_at_random_splits() {
    for_seeds(cases(400), 9, |rng| {
        let role = if rng.chance(2) {
            Role::Server
        } else {
            Role::Client
        };
        let (wire, expected) = random_stream(rng, role == Role::Server);
        let mut dec = Decoder::new(role, DecoderConfig::default());
        let cuts = rng.splits(wire.len());
        let (got, err, consumed) = decode_stream(&mut dec, &wire, &cuts);
        assert_eq!(err, None);
        assert_eq!(consumed, wire.len());
        assert_eq!(got, expected);
        assert!(!dec.in_message());
    });
}

#[test]
fn ws_small_frames_byte_by_byte() {
    for_seeds(cases(100), 10, |rng| {
        let mut wire = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..5 {
            let data = rng.bytes_below(300);
            encode_frame(&mut wire, true, OpCode::Binary, Some([1, 2, 3, 4]), &data);
            expected.push(Message::Binary(data));
        }
        let cuts: Vec<usize> = (0..=wire.len()).collect();
        let (got, err, _) = decode_stream(
            &mut Decoder::new(Role::Server, DecoderConfig::default()),
            &wire,
            &cuts,
        );
        assert_eq!((got, err), (expected, None));
    });
}

#[test]
fn ws_decoder_never_panics_and_split_does_not_matter() {
    for_seeds(cases(3000), 11, |rng| {
        let role = if rng.chance(2) {
            Role::Server
        } else {
            Role::Client
        };
        let config = DecoderConfig {
            max_frame_bytes: rng.below(300),
            max_message_bytes: rng.below(600),
            max_fragments: rng.below(8) as u32 + 1,
            stream_frames_over: rng.below(200),
        };
        let wire = if rng.chance(4) {
            let len = rng.below(200);
            rng.bytes(len)
        } else {
            // Small valid streams, then mutated.
            let mut wire = Vec::new();
            let masked = (role == Role::Server) != rng.chance(10);
            for _ in 0..rng.below(5) + 1 {
                let op = *rng.pick(&[
                    OpCode::Text,
                    OpCode::Binary,
                    OpCode::Continuation,
                    OpCode::Ping,
                    OpCode::Close,
                ]);
                let data = rng.bytes_below(140);
                let k = masked.then(|| (rng.next() as u32).to_le_bytes());
                encode_frame(&mut wire, rng.chance(2), op, k, &data);
            }
            mutate(rng, &wire)
        };
        let whole = decode_stream(&mut Decoder::new(role, config), &wire, &[wire.len()]);
        let split = decode_stream(
            &mut Decoder::new(role, config),
            &wire,
            &rng.splits(wire.len()),
        );
        assert_eq!(whole, split, "splitting the input changed what was decoded");
        // Every error maps to a close code a peer may receive.
        if let Some(e) = whole.1 {
            assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
        }
        // Nothing is held once no message is in progress.
        let mut dec = Decoder::new(role, config);
        let (_, err, _) = decode_stream(&mut dec, &wire, &[wire.len()]);
        if err.is_none() && !dec.in_message() {
            assert_eq!(dec.buffered(), 0);
        }
    });
}

#[test]
fn ws_header_never_panics() {
    for_seeds(cases(4000), 12, |rng| {
        let len = rng.below(16);
        let buf = rng.bytes(len);
        if let Ok(Some((h, n))) = decode_header(&buf) {
            assert!(n <= buf.len());
            assert!(
                n >= h.encoded_len(),
                "non-minimal lengths are longer, never shorter"
            );
            assert!(h.payload_len >> 63 == 0);
        }
    });
}

#[test]
fn handshake_accept_matches_for_random_keys() {
    for_seeds(cases(500), 13, |rng| {
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&rng.bytes(16));
        let key = handshake::encode_key(nonce);
        let mut req = Vec::new();
        handshake::write_request(&mut req, "h:1", "/ws", &key, None, &["p"], &[]);
        let (head, _) = parse_request(&req, &HeadLimits::default())
            .unwrap()
            .unwrap();
        let up = handshake::check_request(&head).unwrap();
        let mut res = Vec::new();
        handshake::write_response(
            &mut res,
            &up.key,
            up.protocols.first().map(String::as_str),
            &[],
        );
        let (head, _) = parse_response(&res, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(handshake::check_response(&head, &key), Ok(()));
    });
}

#[path = "peers/pcapng.rs"]
mod pcapng_peers;

#[path = "peers/net.rs"]
mod net_peers;

#[path = "peers/tls.rs"]
mod tls_peers;

#[path = "peers/support.rs"]
mod peer_support;
