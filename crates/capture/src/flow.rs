//! TCP connection tracking and stream reassembly over captured segments.
//!
//! Each connection's two byte streams are rebuilt in sequence order: retransmitted bytes are
//! dropped, out-of-order segments wait (up to [`MAX_PENDING_BYTES`] per direction), and a
//! hole that never fills is skipped with a [`Note`] saying how many bytes are missing, so the
//! rest of the connection still decodes.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use protolab_wire::net::{TcpFlags, TcpSegment};

/// Out-of-order bytes held per direction before the oldest hole is declared lost.
pub const MAX_PENDING_BYTES: usize = 4 << 20;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dir {
    /// From the side that opened the connection (sent SYN, or spoke first).
    ToServer,
    /// From the side that accepted it.
    ToClient,
}

impl Dir {
    pub(crate) fn index(self) -> usize {
        match self {
            Self::ToServer => 0,
            Self::ToClient => 1,
        }
    }
}

/// Something the reassembler noticed that the reader should know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Note {
    /// Bytes that were never captured: the stream continues after the hole.
    Missing {
        /// Direction of the hole.
        dir: Dir,
        /// How many bytes.
        bytes: u64,
    },
    /// The capture started after the handshake.
    MidStream,
    /// TLS records that stay encrypted, and why (no secret for this connection, a record
    /// that failed authentication, an unsupported cipher suite).
    Tls {
        /// The direction concerned, if only one.
        dir: Option<Dir>,
        /// What happened and what is shown instead.
        reason: String,
    },
    /// permessage-deflate frames that could not be inflated (bad data, a message over the
    /// inflate limit, or a 101 whose extension answer does not parse); from there on that
    /// direction's compressed frames are shown as sent.
    Deflate {
        /// The direction concerned.
        dir: Dir,
        /// What went wrong.
        reason: String,
    },
}

/// What one segment did to its connection, for the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Syn,
    SynAck,
    /// The handshake's final ACK: the round trip is now known.
    Established,
    Fin(Dir),
    Rst(Dir),
    Other,
}

#[derive(Debug, Default)]
struct Stream {
    next_seq: Option<u32>,
    pending: BTreeMap<u32, Vec<u8>>,
    pending_bytes: usize,
    fin: bool,
}

/// One TCP connection being rebuilt.
#[derive(Debug)]
pub(crate) struct Flow {
    pub(crate) client: SocketAddr,
    pub(crate) server: SocketAddr,
    streams: [Stream; 2],
    pub(crate) syn_ns: Option<u64>,
    pub(crate) syn_ack_ns: Option<u64>,
    pub(crate) established: bool,
    pub(crate) notes: Vec<Note>,
    /// Header and payload byte counts per direction, for the cost summary.
    pub(crate) wire_bytes: [u64; 2],
    pub(crate) payload_bytes: [u64; 2],
    /// Payload bytes seen before in the same direction, included in `payload_bytes`.
    pub(crate) retransmitted_bytes: [u64; 2],
    pub(crate) packets: [u64; 2],
}

impl Flow {
    pub(crate) fn new(first: &TcpSegment<'_>) -> Self {
        let a = SocketAddr::new(first.src, first.src_port);
        let b = SocketAddr::new(first.dst, first.dst_port);
        // The SYN's sender is the client; without a SYN, a SYN-ACK's receiver is; otherwise
        // guess the side with the higher (ephemeral) port.
        let syn = first.flags.has(TcpFlags::SYN);
        let ack = first.flags.has(TcpFlags::ACK);
        let (client, server) = match (syn, ack) {
            (true, false) => (a, b),
            (true, true) => (b, a),
            _ if first.src_port > first.dst_port => (a, b),
            _ => (b, a),
        };
        let mut flow = Self {
            client,
            server,
            streams: Default::default(),
            syn_ns: None,
            syn_ack_ns: None,
            established: false,
            notes: Vec::new(),
            wire_bytes: [0; 2],
            payload_bytes: [0; 2],
            retransmitted_bytes: [0; 2],
            packets: [0; 2],
        };
        if !syn {
            flow.notes.push(Note::MidStream);
        }
        flow
    }

    pub(crate) fn dir_of(&self, seg: &TcpSegment<'_>) -> Dir {
        if SocketAddr::new(seg.src, seg.src_port) == self.client {
            Dir::ToServer
        } else {
            Dir::ToClient
        }
    }

    /// Feeds one segment; in-order bytes are appended to `deliver`.
    pub(crate) fn push(
        &mut self,
        seg: &TcpSegment<'_>,
        frame_len: usize,
        ts_ns: u64,
        deliver: &mut Vec<u8>,
    ) -> (Dir, Segment) {
        let dir = self.dir_of(seg);
        let i = dir.index();
        self.packets[i] += 1;
        self.wire_bytes[i] += frame_len as u64;
        let flags = seg.flags;
        let mut what = Segment::Other;
        let stream = &mut self.streams[i];
        if flags.has(TcpFlags::SYN) {
            // The SYN consumes one sequence number (RFC 9293 §3.4).
            stream.next_seq = Some(seg.seq.wrapping_add(1));
            if flags.has(TcpFlags::ACK) {
                self.syn_ack_ns.get_or_insert(ts_ns);
                what = Segment::SynAck;
            } else {
                self.syn_ns.get_or_insert(ts_ns);
                what = Segment::Syn;
            }
        } else if !self.established
            && dir == Dir::ToServer
            && self.syn_ack_ns.is_some()
            && flags.has(TcpFlags::ACK)
        {
            self.established = true;
            what = Segment::Established;
        }
        if !seg.payload.is_empty() {
            self.payload_bytes[i] += seg.payload.len() as u64;
            let stream = &mut self.streams[i];
            let next = *stream.next_seq.get_or_insert(seg.seq);
            let repeated = accept(stream, next, seg.seq, seg.payload, deliver);
            self.retransmitted_bytes[i] += repeated as u64;
            if stream.pending_bytes > MAX_PENDING_BYTES {
                let missing = skip_hole(stream, deliver);
                self.notes.push(Note::Missing {
                    dir,
                    bytes: missing,
                });
            }
        }
        let stream = &mut self.streams[i];
        if flags.has(TcpFlags::FIN) && !stream.fin {
            stream.fin = true;
            what = Segment::Fin(dir);
        }
        if flags.has(TcpFlags::RST) {
            what = Segment::Rst(dir);
        }
        (dir, what)
    }

    /// At the end of the capture: deliver what waits behind holes, noting each hole.
    pub(crate) fn finish(&mut self, dir: Dir, deliver: &mut Vec<u8>) {
        let stream = &mut self.streams[dir.index()];
        while !stream.pending.is_empty() {
            let missing = skip_hole(stream, deliver);
            self.notes.push(Note::Missing {
                dir,
                bytes: missing,
            });
        }
    }
}

/// Places `payload` at `seq` relative to `next`: trims what was already delivered, delivers
/// what is next, parks what is ahead. Returns how many of its bytes were sent before
/// (retransmitted: already delivered, or already parked at the same place).
fn accept(
    stream: &mut Stream,
    next: u32,
    seq: u32,
    payload: &[u8],
    deliver: &mut Vec<u8>,
) -> usize {
    // Sequence space wraps at 2^32; a signed difference orders nearby numbers (RFC 9293 §3.4).
    let offset = seq.wrapping_sub(next) as i32;
    if offset <= 0 {
        let already = offset.unsigned_abs() as usize;
        if already >= payload.len() {
            return payload.len(); // a pure retransmission
        }
        deliver.extend_from_slice(&payload[already..]);
        let mut next = next.wrapping_add((payload.len() - already) as u32);
        // Earlier out-of-order segments may now be in order.
        loop {
            let ready = stream
                .pending
                .keys()
                .copied()
                .find(|&s| (s.wrapping_sub(next) as i32) <= 0);
            let Some(s) = ready else { break };
            let Some(data) = stream.pending.remove(&s) else {
                break;
            };
            stream.pending_bytes -= data.len();
            let already = (next.wrapping_sub(s)) as usize;
            if already < data.len() {
                deliver.extend_from_slice(&data[already..]);
                next = next.wrapping_add((data.len() - already) as u32);
            }
        }
        stream.next_seq = Some(next);
        already
    } else {
        let entry = stream.pending.entry(seq).or_default();
        let repeated = entry.len().min(payload.len());
        if payload.len() > entry.len() {
            stream.pending_bytes += payload.len() - entry.len();
            *entry = payload.to_vec();
        }
        repeated
    }
}

/// Jumps over the hole before the earliest parked segment; returns the hole's size.
fn skip_hole(stream: &mut Stream, deliver: &mut Vec<u8>) -> u64 {
    let Some(next) = stream.next_seq else {
        return 0;
    };
    // The parked segment closest ahead of `next` (smallest forward distance).
    let Some(&first) = stream.pending.keys().min_by_key(|&&s| s.wrapping_sub(next)) else {
        return 0;
    };
    let missing = u64::from(first.wrapping_sub(next));
    let Some(data) = stream.pending.remove(&first) else {
        return missing;
    };
    stream.pending_bytes -= data.len();
    stream.next_seq = Some(first);
    accept(stream, first, first, &data, deliver);
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream delivered, the stream's state, and the bytes counted as retransmitted.
    fn run(segments: &[(u32, &[u8])]) -> (Vec<u8>, Stream, usize) {
        let mut stream = Stream::default();
        let mut out = Vec::new();
        let mut repeated = 0;
        for &(seq, data) in segments {
            let next = *stream.next_seq.get_or_insert(seq);
            repeated += accept(&mut stream, next, seq, data, &mut out);
        }
        (out, stream, repeated)
    }

    #[test]
    fn in_order_retransmitted_overlapping_and_reordered_segments() {
        let (out, s, repeated) = run(&[
            (100, b"hel"),
            (103, b"lo "),
            (100, b"hello"),
            (106, b"world"),
            (104, b"o wor"),
        ]);
        assert_eq!(out, b"hello world");
        assert!(s.pending.is_empty());
        assert_eq!(repeated, 10, "\"hello\" and \"o wor\" were sent before");
        let (out, _, repeated) = run(&[(100, b"ab"), (104, b"ef"), (102, b"cd")]);
        assert_eq!(out, b"abcdef");
        assert_eq!(repeated, 0);
        // A segment repeated while it waits behind a hole.
        let (out, _, repeated) = run(&[(100, b"ab"), (104, b"ef"), (104, b"ef"), (102, b"cd")]);
        assert_eq!(out, b"abcdef");
        assert_eq!(repeated, 2);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let (out, _, _) = run(&[(u32::MAX - 1, b"ab"), (0, b"cd"), (2, b"ef")]);
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn a_hole_is_skipped_and_counted() {
        let (mut out, mut s, _) = run(&[(0, b"ab"), (5, b"fg")]);
        assert_eq!(out, b"ab");
        assert_eq!(skip_hole(&mut s, &mut out), 3);
        assert_eq!(out, b"abfg");
    }
}
