//! HTTP/2 inside a connection's two byte streams (RFC 9113): every frame with its type, stream,
//! flags and length; header blocks (HEADERS or PUSH_PROMISE plus CONTINUATION) decoded with
//! HPACK, one dynamic table per direction; SETTINGS values, WINDOW_UPDATE increments and error
//! codes by name; and on gRPC streams (content-type application/grpc*) the method path, each
//! length-prefixed message and the trailers' status.
//!
//! HPACK is `loona-hpack`'s decoder (Huffman, static and dynamic tables): a maintained one
//! made for the job, where the `h2` crate keeps its own private.
//!
//! Limits are explicit: a header block over [`MAX_HEADER_BLOCK`] is not decoded (and, as the
//! dynamic table is then unknown, no later block of that direction is), a dynamic table over
//! [`MAX_DYNAMIC_TABLE`] is refused, at most [`MAX_HEADER_LIST`] bytes of headers are kept per
//! block, and at most [`MAX_GRPC_STREAMS`] gRPC streams are followed per connection.

use std::collections::HashMap;

use protolab_wire::http2::{frame_type, FrameHeader, FRAME_HEADER_LEN};

use crate::event::Event;
use crate::flow::Dir;

/// Most bytes of one header block (a HEADERS or PUSH_PROMISE and its CONTINUATIONs).
pub const MAX_HEADER_BLOCK: usize = 256 << 10;
/// Largest HPACK dynamic table a size update may ask for.
pub const MAX_DYNAMIC_TABLE: usize = 64 << 10;
/// Most bytes (names and values, RFC 9113 §6.5.2's 32-byte overhead each) of headers kept per
/// block; the rest is decoded (to keep the dynamic table right) but not shown.
pub const MAX_HEADER_LIST: usize = 64 << 10;
/// Most gRPC streams followed per connection.
pub const MAX_GRPC_STREAMS: usize = 65_536;
/// Longest header value shown whole; longer ones end in `…`.
const MAX_VALUE_SHOWN: usize = 1024;

/// Flags by frame type.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Bytes of HTTP/2 for the cost summary.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct H2Bytes {
    /// Connection preface, frame headers, padding and control frames' payloads.
    pub(crate) framing: u64,
    /// HPACK header block fragments.
    pub(crate) headers: u64,
    /// DATA payloads (without padding).
    pub(crate) data: u64,
}

/// A gRPC message prefix being read across DATA frames.
#[derive(Debug, Default)]
struct GrpcReader {
    prefix: [u8; 5],
    filled: usize,
    /// Bytes of the current message still to pass.
    left: u64,
}

impl GrpcReader {
    /// Reads `data`, appending (compressed, length) of each message whose prefix completes.
    fn feed(&mut self, mut data: &[u8], out: &mut Vec<(bool, u32)>) {
        while !data.is_empty() {
            if self.left > 0 {
                let n = self.left.min(data.len() as u64);
                data = &data[n as usize..];
                self.left -= n;
                continue;
            }
            let n = (5 - self.filled).min(data.len());
            self.prefix[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == 5 {
                let p = self.prefix;
                let len = u32::from_be_bytes([p[1], p[2], p[3], p[4]]);
                out.push((p[0] & 1 != 0, len));
                self.left = u64::from(len);
                self.filled = 0;
            }
        }
    }
}

/// A header block being gathered.
#[derive(Debug)]
struct Block {
    stream_id: u32,
    /// The frame type that opened it (HEADERS or PUSH_PROMISE).
    kind: u8,
    bytes: Vec<u8>,
    /// Over [`MAX_HEADER_BLOCK`]: the rest is skipped.
    too_big: bool,
}

/// One direction's decoding state.
struct Side {
    hpack: loona_hpack::Decoder<'static>,
    /// The dynamic table is no longer known (a block failed or was skipped).
    hpack_lost: bool,
    block: Option<Block>,
}

impl Default for Side {
    fn default() -> Self {
        let mut hpack = loona_hpack::Decoder::new();
        hpack.set_max_allowed_table_size(MAX_DYNAMIC_TABLE);
        Self {
            hpack,
            hpack_lost: false,
            block: None,
        }
    }
}

impl std::fmt::Debug for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Side")
            .field("hpack_lost", &self.hpack_lost)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

/// A gRPC stream's message readers, [to server, to client].
#[derive(Debug, Default)]
struct GrpcStream {
    readers: [GrpcReader; 2],
}

/// HTTP/2 decoding for one connection.
#[derive(Debug, Default)]
pub(crate) struct H2 {
    sides: [Side; 2],
    /// Whether the client's preface has been consumed.
    preface_seen: bool,
    grpc: HashMap<u32, GrpcStream>,
    /// The gRPC stream limit was reached (reported once).
    grpc_full: bool,
    pub(crate) bytes: H2Bytes,
}

/// What decoding the front of a buffer did.
pub(crate) enum Step {
    /// Consumed this many bytes.
    Used(usize),
    /// Needs more bytes.
    More,
    /// The stream is not HTTP/2 from here; why.
    Bad(String),
}

impl H2 {
    /// Decodes one frame (or the client preface) at the start of `buf`, sent in `dir`.
    pub(crate) fn step(&mut self, dir: Dir, buf: &[u8], events: &mut Vec<Event>) -> Step {
        let preface = protolab_wire::http2::PREFACE;
        if dir == Dir::ToServer && !self.preface_seen {
            if buf.len() < preface.len() {
                return if preface.starts_with(buf) {
                    Step::More
                } else {
                    Step::Bad("not the HTTP/2 connection preface".into())
                };
            }
            if !buf.starts_with(preface) {
                return Step::Bad("not the HTTP/2 connection preface".into());
            }
            self.preface_seen = true;
            self.bytes.framing += preface.len() as u64;
            events.push(Event::Http2Preface);
            return Step::Used(preface.len());
        }
        let Some(header) = FrameHeader::decode(buf) else {
            return Step::More;
        };
        let len = header.length as usize;
        if len > crate::limits::MAX_MESSAGE_BUFFER - FRAME_HEADER_LEN {
            return Step::Bad(format!("HTTP/2 frame of {len} B is over the inspect limit"));
        }
        let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Step::More;
        };
        self.bytes.framing += FRAME_HEADER_LEN as u64;
        let at = events.len();
        let (headers, detail) = self.payload(dir, &header, payload, events);
        let frame = Event::Http2Frame {
            dir,
            frame_type: type_name(header.kind),
            stream_id: header.stream_id,
            flags: header.flags,
            flag_names: flag_names(header.kind, header.flags),
            len: header.length,
            headers,
            detail,
        };
        // The frame first, then what its payload meant (gRPC messages, status).
        events.push(frame);
        events[at..].rotate_right(1);
        Step::Used(FRAME_HEADER_LEN + len)
    }

    /// Decodes a frame's payload: the header list it completes and a detail line, pushing
    /// gRPC events to `events`.
    fn payload(
        &mut self,
        dir: Dir,
        header: &FrameHeader,
        payload: &[u8],
        events: &mut Vec<Event>,
    ) -> (Vec<(String, String)>, Option<String>) {
        let flags = header.flags;
        match header.kind {
            frame_type::DATA => {
                let Some((data, pad)) = unpad(flags, payload) else {
                    self.bytes.framing += payload.len() as u64;
                    return (Vec::new(), Some("bad padding".into()));
                };
                self.bytes.framing += pad as u64;
                self.bytes.data += data.len() as u64;
                if let Some(stream) = self.grpc.get_mut(&header.stream_id) {
                    let mut messages = Vec::new();
                    stream.readers[dir.index()].feed(data, &mut messages);
                    events.extend(messages.into_iter().map(|(compressed, len)| {
                        Event::GrpcMessage {
                            dir,
                            stream_id: header.stream_id,
                            compressed,
                            len,
                        }
                    }));
                }
                (Vec::new(), None)
            }
            frame_type::HEADERS | frame_type::PUSH_PROMISE => {
                let Some((mut fragment, pad)) = unpad(flags, payload) else {
                    self.bytes.framing += payload.len() as u64;
                    return (Vec::new(), Some("bad padding".into()));
                };
                let mut skip = 0;
                let mut detail = None;
                if header.kind == frame_type::HEADERS && flags & PRIORITY != 0 {
                    skip = 5;
                } else if header.kind == frame_type::PUSH_PROMISE {
                    skip = 4;
                    if let Some(p) = fragment.get(..4) {
                        let promised = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                        detail = Some(format!("promised stream {promised}"));
                    }
                }
                let Some(rest) = fragment.get(skip..) else {
                    self.bytes.framing += payload.len() as u64;
                    return (Vec::new(), Some("payload shorter than its fields".into()));
                };
                self.bytes.framing += (pad + skip) as u64;
                fragment = rest;
                self.sides[dir.index()].block = Some(Block {
                    stream_id: header.stream_id,
                    kind: header.kind,
                    bytes: Vec::new(),
                    too_big: false,
                });
                let (headers, problem) = self.fragment(dir, flags, fragment, events);
                (headers, problem.or(detail))
            }
            frame_type::CONTINUATION => {
                if self.sides[dir.index()]
                    .block
                    .as_ref()
                    .is_none_or(|b| b.stream_id != header.stream_id)
                {
                    self.bytes.framing += payload.len() as u64;
                    return (
                        Vec::new(),
                        Some("CONTINUATION without a header block open on its stream".into()),
                    );
                }
                self.fragment(dir, flags, payload, events)
            }
            kind => {
                self.bytes.framing += payload.len() as u64;
                (Vec::new(), control_detail(kind, flags, payload))
            }
        }
    }

    /// Adds a header block fragment; on END_HEADERS decodes the block.
    fn fragment(
        &mut self,
        dir: Dir,
        flags: u8,
        fragment: &[u8],
        events: &mut Vec<Event>,
    ) -> (Vec<(String, String)>, Option<String>) {
        self.bytes.headers += fragment.len() as u64;
        let side = &mut self.sides[dir.index()];
        let Some(block) = side.block.as_mut() else {
            return (Vec::new(), None);
        };
        if block.bytes.len() + fragment.len() > MAX_HEADER_BLOCK {
            block.too_big = true;
            block.bytes = Vec::new();
        }
        if !block.too_big {
            block.bytes.extend_from_slice(fragment);
        }
        if flags & END_HEADERS == 0 {
            return (Vec::new(), None);
        }
        let Some(block) = side.block.take() else {
            return (Vec::new(), None);
        };
        if block.too_big {
            side.hpack_lost = true;
            return (
                Vec::new(),
                Some(format!(
                    "header block over {} KiB: not decoded, nor any later one this way",
                    MAX_HEADER_BLOCK >> 10
                )),
            );
        }
        if side.hpack_lost {
            return (
                Vec::new(),
                Some("HPACK state lost earlier: headers not decoded".into()),
            );
        }
        let mut headers = Vec::new();
        let mut kept = 0usize;
        let mut cut = false;
        let decoded = side.hpack.decode_with_cb(&block.bytes, |name, value| {
            let size = name.len() + value.len() + 32;
            if kept + size > MAX_HEADER_LIST {
                cut = true;
                return;
            }
            kept += size;
            headers.push((shown(&name), shown(&value)));
        });
        if let Err(e) = decoded {
            side.hpack_lost = true;
            return (
                headers,
                Some(format!(
                    "HPACK error: {e}; later header blocks this way not decoded"
                )),
            );
        }
        self.grpc_headers(dir, block.stream_id, block.kind, &headers, events);
        let detail = cut.then(|| format!("header list over {} KiB: cut", MAX_HEADER_LIST >> 10));
        (headers, detail)
    }

    /// Starts following a gRPC stream from its request headers, and reports its status from
    /// its trailers.
    fn grpc_headers(
        &mut self,
        dir: Dir,
        stream_id: u32,
        kind: u8,
        headers: &[(String, String)],
        events: &mut Vec<Event>,
    ) {
        if kind != frame_type::HEADERS {
            return;
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let grpc = get("content-type").is_some_and(|t| t.starts_with("application/grpc"));
        if dir == Dir::ToServer && grpc && !self.grpc.contains_key(&stream_id) {
            if self.grpc.len() >= MAX_GRPC_STREAMS {
                if !self.grpc_full {
                    self.grpc_full = true;
                    events.push(Event::Undecodable {
                        dir,
                        reason: format!(
                            "more than {MAX_GRPC_STREAMS} gRPC streams: later ones not followed"
                        ),
                    });
                }
                return;
            }
            self.grpc.insert(stream_id, GrpcStream::default());
            events.push(Event::GrpcCall {
                stream_id,
                path: get(":path").unwrap_or("").to_string(),
            });
        }
        if dir == Dir::ToClient && self.grpc.contains_key(&stream_id) {
            if let Some(status) = get("grpc-status") {
                events.push(Event::GrpcStatus {
                    stream_id,
                    status: status.to_string(),
                    message: get("grpc-message").map(str::to_string),
                });
            }
        }
    }
}

/// Decodes an HTTP/2 connection given as pieces of its two byte streams in arrival order
/// (the client's starting with its preface), as `inspect` does inside a TCP connection:
/// frames, headers, gRPC messages. A direction that stops making sense ends in an
/// [`Event::Undecodable`] and is skipped from there; a direction holding more than
/// [`crate::limits::MAX_MESSAGE_BUFFER`] bytes without a whole frame likewise.
pub fn decode_http2(pieces: &[(Dir, &[u8])]) -> Vec<Event> {
    let mut h2 = H2::default();
    let mut bufs: [Vec<u8>; 2] = Default::default();
    let mut lost = [false; 2];
    let mut events = Vec::new();
    for &(dir, bytes) in pieces {
        let i = dir.index();
        if lost[i] {
            continue;
        }
        bufs[i].extend_from_slice(bytes);
        let mut at = 0;
        loop {
            match h2.step(dir, &bufs[i][at..], &mut events) {
                Step::Used(n) => at += n,
                Step::More => break,
                Step::Bad(reason) => {
                    events.push(Event::Undecodable { dir, reason });
                    lost[i] = true;
                    break;
                }
            }
        }
        bufs[i].drain(..at);
        if lost[i] || bufs[i].len() > crate::limits::MAX_MESSAGE_BUFFER {
            if !lost[i] {
                events.push(Event::Undecodable {
                    dir,
                    reason: "too many bytes without a whole frame".into(),
                });
            }
            lost[i] = true;
            bufs[i] = Vec::new();
        }
    }
    events
}

/// The payload of a padded frame without its pad-length byte and padding, and how many bytes
/// those were; `None` if the padding does not fit.
fn unpad(flags: u8, payload: &[u8]) -> Option<(&[u8], usize)> {
    if flags & PADDED == 0 {
        return Some((payload, 0));
    }
    let (&pad, rest) = payload.split_first()?;
    let end = rest.len().checked_sub(usize::from(pad))?;
    Some((&rest[..end], 1 + usize::from(pad)))
}

/// A header name or value as text, cut at [`MAX_VALUE_SHOWN`].
fn shown(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(MAX_VALUE_SHOWN)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if cut.len() < bytes.len() {
        s.push('…');
    }
    s
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// What a control frame's payload says.
fn control_detail(kind: u8, flags: u8, payload: &[u8]) -> Option<String> {
    match kind {
        frame_type::SETTINGS => {
            if flags & ACK != 0 {
                return None;
            }
            if !payload.len().is_multiple_of(6) {
                return Some(format!(
                    "malformed: {} B is not a multiple of 6",
                    payload.len()
                ));
            }
            let values: Vec<String> = payload
                .chunks_exact(6)
                .map(|s| {
                    let id = u16::from_be_bytes([s[0], s[1]]);
                    let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    format!("{}={value}", setting_name(id))
                })
                .collect();
            Some(values.join(" "))
        }
        frame_type::WINDOW_UPDATE => Some(match u32_at(payload, 0) {
            Some(n) if payload.len() == 4 => format!("increment {}", n & 0x7fff_ffff),
            _ => "malformed: not 4 bytes".into(),
        }),
        frame_type::RST_STREAM => Some(match u32_at(payload, 0) {
            Some(code) if payload.len() == 4 => format!("error {}", error_name(code)),
            _ => "malformed: not 4 bytes".into(),
        }),
        frame_type::GOAWAY => Some(match (u32_at(payload, 0), u32_at(payload, 4)) {
            (Some(last), Some(code)) => {
                let mut s = format!(
                    "last stream {}, error {}",
                    last & 0x7fff_ffff,
                    error_name(code)
                );
                let debug = &payload[8..];
                if !debug.is_empty() {
                    let shown = &debug[..debug.len().min(crate::limits::PREVIEW_BYTES)];
                    s.push_str(&format!(" {:?}", String::from_utf8_lossy(shown)));
                }
                s
            }
            _ => "malformed: shorter than 8 bytes".into(),
        }),
        _ => None,
    }
}

/// A frame type's name (RFC 9113 §6, RFC 7838's ALTSVC, RFC 9218's PRIORITY_UPDATE).
fn type_name(kind: u8) -> String {
    match kind {
        frame_type::DATA => "DATA",
        frame_type::HEADERS => "HEADERS",
        frame_type::PRIORITY => "PRIORITY",
        frame_type::RST_STREAM => "RST_STREAM",
        frame_type::SETTINGS => "SETTINGS",
        frame_type::PUSH_PROMISE => "PUSH_PROMISE",
        frame_type::PING => "PING",
        frame_type::GOAWAY => "GOAWAY",
        frame_type::WINDOW_UPDATE => "WINDOW_UPDATE",
        frame_type::CONTINUATION => "CONTINUATION",
        0xa => "ALTSVC",
        0x10 => "PRIORITY_UPDATE",
        other => return format!("{other:#04x}"),
    }
    .to_string()
}

/// The names of the flags set that `kind` defines.
fn flag_names(kind: u8, flags: u8) -> Vec<String> {
    let defined: &[(u8, &str)] = match kind {
        frame_type::DATA => &[(END_STREAM, "END_STREAM"), (PADDED, "PADDED")],
        frame_type::HEADERS => &[
            (END_STREAM, "END_STREAM"),
            (END_HEADERS, "END_HEADERS"),
            (PADDED, "PADDED"),
            (PRIORITY, "PRIORITY"),
        ],
        frame_type::SETTINGS | frame_type::PING => &[(ACK, "ACK")],
        frame_type::PUSH_PROMISE => &[(END_HEADERS, "END_HEADERS"), (PADDED, "PADDED")],
        frame_type::CONTINUATION => &[(END_HEADERS, "END_HEADERS")],
        _ => &[],
    };
    defined
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect()
}

/// A SETTINGS identifier's name (RFC 9113 §6.5.2, RFC 8441, RFC 9218).
fn setting_name(id: u16) -> String {
    match id {
        1 => "HEADER_TABLE_SIZE",
        2 => "ENABLE_PUSH",
        3 => "MAX_CONCURRENT_STREAMS",
        4 => "INITIAL_WINDOW_SIZE",
        5 => "MAX_FRAME_SIZE",
        6 => "MAX_HEADER_LIST_SIZE",
        8 => "ENABLE_CONNECT_PROTOCOL",
        9 => "NO_RFC7540_PRIORITIES",
        other => return format!("{other:#06x}"),
    }
    .to_string()
}

/// An error code's name with its number (RFC 9113 §7).
pub fn error_name(code: u32) -> String {
    let name = match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "unknown",
    };
    format!("{name} ({code:#x})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            length: payload.len() as u32,
            kind,
            flags,
            stream_id,
        }
        .encode(&mut out);
        out.extend_from_slice(payload);
        out
    }

    fn run(h2: &mut H2, dir: Dir, mut bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match h2.step(dir, bytes, &mut events) {
                Step::Used(n) => bytes = &bytes[n..],
                Step::More => return events,
                Step::Bad(reason) => {
                    events.push(Event::Undecodable { dir, reason });
                    return events;
                }
            }
        }
    }

    #[test]
    fn decodes_rfc7541_c3_requests_across_blocks_and_grpc_messages() {
        let mut h2 = H2::default();
        let mut wire = protolab_wire::http2::PREFACE.to_vec();
        // RFC 7541 C.3.1 then C.3.2: the second block uses the first one's dynamic entry.
        let first = [
            0x82, 0x86, 0x84, 0x41, 0x0f, b'w', b'w', b'w', b'.', b'e', b'x', b'a', b'm', b'p',
            b'l', b'e', b'.', b'c', b'o', b'm',
        ];
        wire.extend(frame(frame_type::HEADERS, 0, 1, &first[..5]));
        wire.extend(frame(frame_type::CONTINUATION, 0, 1, &first[5..10]));
        wire.extend(frame(
            frame_type::CONTINUATION,
            END_HEADERS,
            1,
            &first[10..],
        ));
        // content-type: application/grpc as a literal, then a 2-message DATA split oddly.
        let mut second = vec![0x82, 0x86, 0x84, 0xbe, 0x5f, 16];
        second.extend_from_slice(b"application/grpc");
        wire.extend(frame(frame_type::HEADERS, END_HEADERS, 3, &second));
        wire.extend(frame(frame_type::DATA, 0, 3, &[0, 0, 0, 0, 2, 7]));
        wire.extend(frame(
            frame_type::DATA,
            PADDED,
            3,
            &[2, 7, 1, 0, 0, 0, 0, 9, 9],
        ));
        let events = run(&mut h2, Dir::ToServer, &wire);
        let headers: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Http2Frame { headers, .. } if !headers.is_empty() => Some(headers.clone()),
                _ => None,
            })
            .collect();
        let authority = (":authority".to_string(), "www.example.com".to_string());
        assert_eq!(headers.len(), 2, "{events:#?}");
        assert_eq!(headers[0][3], authority);
        assert_eq!(headers[1][3], authority);
        assert_eq!(headers[1][4].1, "application/grpc");
        let messages: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::GrpcMessage {
                    compressed, len, ..
                } => Some((*compressed, *len)),
                _ => None,
            })
            .collect();
        assert_eq!(messages, [(false, 2), (true, 0)]);
        assert!(events.contains(&Event::GrpcCall {
            stream_id: 3,
            path: "/".into()
        }));
    }

    #[test]
    fn bad_input_becomes_notes() {
        let mut h2 = H2::default();
        let events = run(&mut h2, Dir::ToServer, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(matches!(events[..], [Event::Undecodable { .. }]));
        let mut h2 = H2 {
            preface_seen: true,
            ..H2::default()
        };
        let mut wire = frame(
            frame_type::HEADERS,
            END_HEADERS,
            1,
            &[0xff, 0xff, 0xff, 0xff],
        );
        wire.extend(frame(frame_type::DATA, PADDED, 1, &[9, 1]));
        wire.extend(frame(frame_type::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
        wire.extend(frame(frame_type::SETTINGS, 0, 0, &[0, 1, 0, 0, 16, 0, 0]));
        let details: Vec<_> = run(&mut h2, Dir::ToServer, &wire)
            .into_iter()
            .filter_map(|e| match e {
                Event::Http2Frame { detail, .. } => detail,
                _ => None,
            })
            .collect();
        assert_eq!(details.len(), 4, "{details:?}");
        assert!(details[0].starts_with("HPACK error"), "{details:?}");
        assert_eq!(details[1], "bad padding");
        assert_eq!(details[2], "error CANCEL (0x8)");
        assert!(details[3].starts_with("malformed"), "{details:?}");
    }
}
