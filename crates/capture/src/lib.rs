//! Capture files to conversations: the principal function is [`inspect`], which reads a
//! pcap or pcapng file's bytes, rebuilds every TCP connection's two streams, and decodes each
//! into a timeline of [`Event`]s — TCP handshake with its round trip, TLS hellos, HTTP start
//! lines, the WebSocket upgrade and every frame — plus a per-layer byte count.
//!
//! TLS is decrypted when the secrets are known: from the file's Decryption Secrets Blocks
//! (what `editcap --inject-secrets` and `protolab inspect --inject-secrets` write) and from an
//! NSS key log passed in [`InspectOptions::keylog`] (what `protolab up --keylog` and
//! `SSLKEYLOGFILE` write). TLS 1.3 and TLS 1.2 AEAD suites are supported; the plaintext is
//! decoded exactly like an unencrypted connection, so a wss connection shows its upgrade and
//! every WebSocket frame. HTTP/2 (h2c and h2) shows every frame with its HPACK-decoded
//! headers and gRPC calls their messages and status; SSE responses each event. A connection
//! without secrets keeps its records opaque, with a
//! [`Note::Tls`] saying why.
//!
//! Live capture is in [`live`]: traffic on a Linux interface into a pcapng file with the TLS
//! key log embedded, ready for [`inspect`], Wireshark or tshark.
//!
//! What it does not do: decrypt CBC suites, 0-RTT data or QUIC. It never panics on a corrupt
//! or truncated file: problems become notes on the connection or an error for the file, and
//! everything before them is kept.

mod dissect;
mod event;
mod flow;
mod h2;
mod limits;
pub mod live;
mod secrets;
mod sse;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;

use protolab_wire::net::{decode_tcp, TcpFlags};
use protolab_wire::pcapng::{self, Block, PcapError, Reader};
use serde::Serialize;

pub use dissect::{close_meaning, LayerBytes};
pub use event::Event;
pub use flow::{Dir, Note, MAX_PENDING_BYTES};
pub use h2::{
    decode_http2, error_name as http2_error_name, MAX_DYNAMIC_TABLE, MAX_GRPC_STREAMS,
    MAX_HEADER_BLOCK, MAX_HEADER_LIST,
};
pub use limits::{MAX_MESSAGE_BUFFER, PREVIEW_BYTES};
pub use protolab_wire::tls::keylog::{KeyLog, KeyLogError};
pub use secrets::{inject_secrets, strip_secrets, SecretsError};
pub use sse::{decode_event_stream, MAX_LINE as MAX_SSE_LINE};
pub use tls::Decrypted;

use dissect::Dissector;
use flow::{Flow, Segment};

/// Which connections to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep only connections with one of these ports on either side (empty: all).
    pub ports: Vec<u16>,
}

/// Everything [`inspect_with`] takes besides the file.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// Which connections to keep.
    pub filter: Filter,
    /// TLS secrets to decrypt with, on top of the file's own Decryption Secrets Blocks (a
    /// secret in the file wins over the same one here). Empty by default: only embedded
    /// secrets are used.
    pub keylog: KeyLog,
}

/// An event with its capture time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timed {
    /// Nanoseconds since the connection's first packet.
    pub at_ns: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// One TCP connection, decoded.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    /// The side that opened it.
    pub client: SocketAddr,
    /// The side that accepted it.
    pub server: SocketAddr,
    /// Capture time of its first packet, nanoseconds since the Unix epoch.
    pub start_ns: u64,
    /// Its timeline.
    pub events: Vec<Timed>,
    /// Reassembly notes (missing bytes, capture started mid-stream) and TLS notes (no secrets,
    /// a record that failed authentication).
    pub notes: Vec<Note>,
    /// Set when its TLS records were decrypted: version, suite and record counts.
    pub decrypted: Option<Decrypted>,
    /// Packets [to server, to client].
    pub packets: [u64; 2],
    /// Captured frame bytes (all layers) [to server, to client].
    pub wire_bytes: [u64; 2],
    /// TCP payload bytes [to server, to client].
    pub payload_bytes: [u64; 2],
    /// Of those, bytes sent again (TCP retransmissions, tail-loss probes) [to server, to
    /// client]: counted once in `layers`.
    pub retransmitted_bytes: [u64; 2],
    /// Bytes per layer above TCP.
    pub layers: LayerBytes,
}

/// Everything found in a file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Connections, in order of their first packet.
    pub connections: Vec<Connection>,
    /// Packets read.
    pub packets: u64,
    /// Packets that were not TCP over IP (ARP, UDP ...), skipped.
    pub skipped: u64,
    /// Whether the file carried TLS key-log secrets (a Decryption Secrets Block).
    pub has_secrets: bool,
    /// Lines of embedded key logs that could not be used (with their line numbers).
    pub secrets_errors: Vec<String>,
    /// Set when the file ended in a corrupt or truncated block; everything before is kept.
    pub file_error: Option<String>,
    /// The connections grouped by the protocol they spoke, with their bytes by layer: the
    /// wire-level answer to "what does each protocol cost".
    pub by_protocol: Vec<ProtocolCost>,
}

/// The connections of one protocol, added up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProtocolCost {
    /// `http`, `https`, `ws`, `wss`, `h2c` (HTTP/2 over plain TCP), `h2` (HTTP/2 over TLS),
    /// `tls` (application data never decrypted), or `tcp`
    /// (nothing recognised above TCP).
    pub protocol: &'static str,
    /// Connections.
    pub connections: u64,
    /// Packets, both directions.
    pub packets: u64,
    /// Frame bytes as captured, all layers.
    pub frame_bytes: u64,
    /// Link, IP and TCP headers: frame bytes minus TCP payload.
    pub link_ip_tcp: u64,
    /// Bytes per layer above TCP.
    pub layers: LayerBytes,
}

impl Connection {
    /// The protocol this connection spoke, judged by the bytes of each layer it carried.
    pub fn protocol(&self) -> &'static str {
        let l = &self.layers;
        let tls = l.tls > 0 || l.tls_encrypted > 0;
        let ws = l.ws_framing > 0 || l.ws_payload > 0;
        let http = l.http_headers > 0;
        if l.http2_framing > 0 {
            return if tls { "h2" } else { "h2c" };
        }
        match (tls, ws, http) {
            (true, true, _) => "wss",
            (false, true, _) => "ws",
            (true, false, true) => "https",
            (false, false, true) => "http",
            (true, false, false) => "tls",
            (false, false, false) => "tcp",
        }
    }
}

/// Adds up `connections` by protocol, in a fixed order.
fn by_protocol(connections: &[Connection]) -> Vec<ProtocolCost> {
    let order = ["http", "https", "ws", "wss", "h2c", "h2", "tls", "tcp"];
    let mut out: Vec<ProtocolCost> = Vec::new();
    for name in order {
        let mut sum = ProtocolCost {
            protocol: name,
            ..ProtocolCost::default()
        };
        for c in connections.iter().filter(|c| c.protocol() == name) {
            let frame: u64 = c.wire_bytes.iter().sum();
            sum.connections += 1;
            sum.packets += c.packets.iter().sum::<u64>();
            sum.frame_bytes += frame;
            sum.link_ip_tcp += frame.saturating_sub(c.payload_bytes.iter().sum());
            let (a, b) = (&mut sum.layers, &c.layers);
            a.tls += b.tls;
            a.tls_encrypted += b.tls_encrypted;
            a.http_headers += b.http_headers;
            a.http_body += b.http_body;
            a.ws_framing += b.ws_framing;
            a.ws_payload += b.ws_payload;
            a.http2_framing += b.http2_framing;
            a.http2_headers += b.http2_headers;
            a.http2_data += b.http2_data;
        }
        if sum.connections > 0 {
            out.push(sum);
        }
    }
    out
}

struct Tracked {
    flow: Flow,
    dissector: Dissector,
    conn: Connection,
}

/// Decodes a whole capture file held in memory, decrypting TLS with the secrets the file
/// embeds. Same as [`inspect_with`] with only a filter.
pub fn inspect(file: &[u8], filter: &Filter) -> Report {
    inspect_with(
        file,
        &InspectOptions {
            filter: filter.clone(),
            keylog: KeyLog::new(),
        },
    )
}

/// Decodes a whole capture file held in memory, decrypting TLS with `options.keylog` and the
/// file's embedded secrets.
pub fn inspect_with(file: &[u8], options: &InspectOptions) -> Report {
    let filter = &options.filter;
    let mut keylog = options.keylog.clone();
    let mut report = Report::default();
    let mut reader = Reader::new();
    let mut flows: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    let mut tracked: Vec<Tracked> = Vec::new();
    let mut delivered = Vec::new();
    // Reused per packet, drained into the connection's timeline.
    let mut events = Vec::new();
    let mut at = 0;
    loop {
        let (block, used) = match reader.next(&file[at..]) {
            Ok(Some(b)) => b,
            Ok(None) => {
                if at < file.len() {
                    report.file_error = Some(format!(
                        "file ends inside a block ({} bytes left over)",
                        file.len() - at
                    ));
                }
                break;
            }
            Err(e) => {
                report.file_error = Some(error_text(&e));
                break;
            }
        };
        at += used;
        let packet = match block {
            Block::Packet(p) => p,
            Block::Secrets { secrets_type, data } => {
                report.has_secrets = true;
                if secrets_type == pcapng::SECRETS_TLS_KEY_LOG {
                    let errors = keylog.add(data);
                    report
                        .secrets_errors
                        .extend(errors.iter().map(|e| format!("embedded {e}")));
                }
                continue;
            }
            _ => continue,
        };
        report.packets += 1;
        // ARP, UDP, IP fragments, unknown link types, truncated frames: counted, skipped.
        let Ok(seg) = decode_tcp(packet.link_type, packet.data) else {
            report.skipped += 1;
            continue;
        };
        if !filter.ports.is_empty()
            && !filter
                .ports
                .iter()
                .any(|&p| p == seg.src_port || p == seg.dst_port)
        {
            continue;
        }
        let a = SocketAddr::new(seg.src, seg.src_port);
        let b = SocketAddr::new(seg.dst, seg.dst_port);
        let key = if a <= b { (a, b) } else { (b, a) };
        // A new SYN on a finished 4-tuple starts a new connection (port reuse).
        let fresh_syn = seg.flags.has(TcpFlags::SYN) && !seg.flags.has(TcpFlags::ACK);
        let index = match flows.get(&key) {
            Some(&i) if !(fresh_syn && tracked[i].flow.established) => i,
            _ => {
                let flow = Flow::new(&seg);
                let conn = Connection {
                    client: flow.client,
                    server: flow.server,
                    start_ns: packet.timestamp_ns,
                    events: Vec::new(),
                    notes: Vec::new(),
                    decrypted: None,
                    packets: [0; 2],
                    wire_bytes: [0; 2],
                    payload_bytes: [0; 2],
                    retransmitted_bytes: [0; 2],
                    layers: LayerBytes::default(),
                };
                tracked.push(Tracked {
                    flow,
                    dissector: Dissector::default(),
                    conn,
                });
                flows.insert(key, tracked.len() - 1);
                tracked.len() - 1
            }
        };
        let t = &mut tracked[index];
        let at_ns = packet.timestamp_ns.saturating_sub(t.conn.start_ns);
        delivered.clear();
        let (dir, what) = t
            .flow
            .push(&seg, packet.data.len(), packet.timestamp_ns, &mut delivered);
        match what {
            Segment::Syn => events.push(Event::TcpSyn),
            Segment::Established => {
                let rtt_ns = t
                    .flow
                    .syn_ns
                    .map_or(0, |syn| packet.timestamp_ns.saturating_sub(syn));
                events.push(Event::TcpEstablished {
                    rtt_us: rtt_ns / 1000,
                });
            }
            _ => {}
        }
        if !delivered.is_empty() {
            t.dissector.feed(dir, &delivered, &keylog, &mut events);
        }
        match what {
            Segment::Fin(d) => events.push(Event::TcpFin { dir: d }),
            Segment::Rst(d) => events.push(Event::TcpReset { dir: d }),
            _ => {}
        }
        t.conn
            .events
            .extend(events.drain(..).map(|event| Timed { at_ns, event }));
    }
    for mut t in tracked {
        for dir in [Dir::ToServer, Dir::ToClient] {
            delivered.clear();
            t.flow.finish(dir, &mut delivered);
            if !delivered.is_empty() {
                let mut events = Vec::new();
                t.dissector.feed(dir, &delivered, &keylog, &mut events);
                let at_ns = t.conn.events.last().map_or(0, |e| e.at_ns);
                t.conn
                    .events
                    .extend(events.into_iter().map(|event| Timed { at_ns, event }));
            }
        }
        t.conn.notes = t.flow.notes;
        t.conn.notes.append(&mut t.dissector.notes);
        t.conn.decrypted = t.dissector.decrypted();
        t.conn.packets = t.flow.packets;
        t.conn.wire_bytes = t.flow.wire_bytes;
        t.conn.payload_bytes = t.flow.payload_bytes;
        t.conn.retransmitted_bytes = t.flow.retransmitted_bytes;
        t.conn.layers = t.dissector.layers;
        report.connections.push(t.conn);
    }
    report.by_protocol = by_protocol(&report.connections);
    report
}

fn error_text(e: &PcapError) -> String {
    format!("{e}; decoding stopped there")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncated_files_give_an_error_and_keep_what_came_before() {
        let report = inspect(b"this is not a capture", &Filter::default());
        assert!(report.file_error.is_some() && report.connections.is_empty());
        let mut file = Vec::new();
        pcapng::write_section_header(&mut file);
        pcapng::write_interface(&mut file, pcapng::LINKTYPE_ETHERNET, 0);
        pcapng::write_packet(&mut file, 0, 1, 3, &[1, 2, 3]);
        let whole = inspect(&file, &Filter::default());
        assert_eq!(
            (whole.packets, whole.skipped, whole.file_error.as_deref()),
            (1, 1, None)
        );
        let cut = inspect(&file[..file.len() - 3], &Filter::default());
        assert!(cut.file_error.unwrap().contains("ends inside a block"));
        assert_eq!(cut.packets, 0);
    }
}
