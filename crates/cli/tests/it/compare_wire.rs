// `protolab compare`'s accounting against a capture of the same run: TLS 1.3 session tickets
// are charged alike to HTTPS and WSS (on their own line, in no handshake or message figure),
// the packets per message the kernel's counters give agree with tshark's count, and a light
// loopback run retransmits nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use protolab_test_support::{require, TsharkCapture};

use crate::results::{compare_json, number, run_of};

/// One TCP segment as tshark decoded it.
struct Segment {
    to_server: bool,
    len: u64,
    fin: bool,
}

/// Every segment on connections to `port`, by connection (tshark's stream index), in order;
/// retransmissions left out, as they carry no new payload: compare counts what the
/// application read, and a loaded CI run once retransmitted one 1,193-byte HTTP response on
/// loopback, which the capture counted twice. Connections the capture missed a segment of
/// are left out whole: with the machine busy the capture dropped two of one connection's
/// 1,032-byte requests, so the capture read two more answers than requests (↓ 1,038.8 B a
/// message against 1,028) while ↑ per message still matched.
fn segments(capture: &Path, port: u16) -> BTreeMap<u64, Vec<Segment>> {
    let mut streams = all_segments(capture, port);
    let gaps = tshark_streams(
        capture,
        &format!(
            "tcp.port == {port} && (tcp.analysis.lost_segment || tcp.analysis.ack_lost_segment)"
        ),
    );
    if !gaps.is_empty() {
        println!(
            "port {port}: {} of {} connections left out, the capture missed a segment of each",
            gaps.len(),
            streams.len()
        );
    }
    streams.retain(|stream, _| !gaps.contains(stream));
    streams
}

/// tshark's `fields` of each packet `filter` selects, tab-separated, a line each.
fn tshark_fields(capture: &Path, filter: &str, fields: &[&str]) -> String {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(capture)
        .args(["-Y", filter, "-T", "fields"])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tshark stream indexes of the packets `filter` selects.
fn tshark_streams(capture: &Path, filter: &str) -> std::collections::BTreeSet<u64> {
    tshark_fields(capture, filter, &["tcp.stream"])
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

/// Every segment on connections to `port`, retransmissions left out.
fn all_segments(capture: &Path, port: u16) -> BTreeMap<u64, Vec<Segment>> {
    let rows = tshark_fields(
        capture,
        &format!("tcp.port == {port} && !tcp.analysis.retransmission && !tcp.analysis.fast_retransmission && !tcp.analysis.spurious_retransmission"),
        &["tcp.stream", "tcp.dstport", "tcp.len", "tcp.flags.fin"],
    );
    let mut streams: BTreeMap<u64, Vec<Segment>> = BTreeMap::new();
    for line in rows.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        streams
            .entry(f[0].parse().unwrap())
            .or_default()
            .push(Segment {
                to_server: f[1].parse::<u16>().unwrap() == port,
                len: f[2].parse().unwrap(),
                fin: matches!(f[3], "1" | "True"),
            });
    }
    streams
}

/// tshark's packets and client → server / server → client TCP payload per message over the
/// steady exchanges of long-lived echo connections (those carrying at least 20 requests):
/// from the request after the first echo to the last echo before the client starts
/// closing. `opening_requests` is how many client data segments come before the first
/// steady request (HTTP: the first request; WebSocket: the upgrade and the first message);
/// `close_frame`: the client's last data segment is a close frame, not a message.
fn steady_per_message(
    streams: &BTreeMap<u64, Vec<Segment>>,
    opening_requests: usize,
    close_frame: bool,
) -> (f64, f64, f64) {
    let (mut packets, mut up, mut down, mut messages) = (0u64, 0u64, 0u64, 0u64);
    for segs in streams.values() {
        let requests: Vec<usize> = (0..segs.len())
            .filter(|&i| segs[i].to_server && segs[i].len > 0)
            .collect();
        if requests.len() < 20 {
            continue;
        }
        let start = requests[opening_requests];
        let closing = if close_frame {
            *requests.last().unwrap()
        } else {
            (0..segs.len())
                .find(|&i| segs[i].to_server && segs[i].fin)
                .unwrap_or(segs.len())
        };
        let end = (start..closing)
            .rev()
            .find(|&i| !segs[i].to_server && segs[i].len > 0)
            .unwrap();
        for s in &segs[start..=end] {
            packets += 1;
            if s.to_server {
                up += s.len;
                messages += u64::from(s.len > 0);
            } else {
                down += s.len;
            }
        }
    }
    assert!(messages > 0, "no long-lived echo connection in the capture");
    let m = messages as f64;
    (packets as f64 / m, up as f64 / m, down as f64 / m)
}

#[test]
fn session_tickets_packets_and_retransmissions_agree_with_a_capture() {
    let home = tempfile::tempdir().unwrap();
    let pcap = home.path().join("compare.pcapng");
    let capture = TsharkCapture::headers("tcp", &pcap);
    // Open loop at a modest rate so tshark keeps every packet and nothing is retransmitted.
    // One round: every run's end cuts the connections still opening, which count as opened
    // with no ticket read, so more rounds of shorter runs cut more of them.
    let results = compare_json(
        home.path(),
        &[
            "--workloads",
            "connect,echo",
            "--sizes",
            "1KiB",
            "-c",
            "4",
            "--rate",
            "400",
            "--duration",
            "4s",
            "--rounds",
            "1",
            "--no-report",
        ],
    );
    capture.stop();
    let bytes = |protocol: &str, workload: &str| {
        run_of(&results, protocol, workload)["report"]["bytes"].clone()
    };

    // TLS 1.3 session tickets: on their own line for both TLS protocols, the same size (the
    // same server sends them), in neither handshake nor message figures.
    let tickets =
        |p: &str| number(&bytes(p, "connect")["post_handshake_tls_received_per_connection"]);
    let (https_tickets, wss_tickets) = (tickets("https"), tickets("wss"));
    println!("session tickets per connection: https {https_tickets}, wss {wss_tickets}");
    assert!(https_tickets > 0.0, "https shows no session tickets");
    // The run's end can cut a connection after its handshake and before it read the
    // tickets (it counts as opened, with none): allow a couple of such connections, or 3%.
    let opened = |p: &str| number(&run_of(&results, p, "connect")["report"]["connections_opened"]);
    let fewest = opened("https").min(opened("wss"));
    let cut_allowed = (fewest * 0.03).max(2.0);
    let larger = https_tickets.max(wss_tickets);
    let missing_connections = (https_tickets - wss_tickets).abs() * fewest / larger;
    assert!(
        missing_connections <= cut_allowed,
        "https {https_tickets} B and wss {wss_tickets} B of tickets per connection: \
         {missing_connections:.1} connections' tickets apart, {cut_allowed:.1} allowed"
    );
    for p in ["http", "ws"] {
        assert!(bytes(p, "connect")["post_handshake_tls_received_per_connection"].is_null());
    }
    // HTTPS's connect response is one TLS record (5-byte header, 1-byte inner type, 16-byte
    // tag) around the HTTP response, tickets not included.
    let https = bytes("https", "connect");
    assert_eq!(
        number(&https["received_per_message"]),
        number(&https["above_tls_received_per_message"]) + 22.0,
        "https connect ↓ per message is not its HTTP response plus one TLS record: {https}"
    );
    // WSS's handshake is HTTPS's plus the upgrade (as ws has it), each direction: the
    // tickets are in neither. Certificate signatures vary by a byte or two in length.
    let hs = |p: &str, dir: &str| {
        number(&bytes(p, "connect")[&format!("handshake_{dir}_per_connection")])
    };
    for dir in ["sent", "received"] {
        let (wss, https, ws) = (hs("wss", dir), hs("https", dir), hs("ws", dir));
        // The upgrade rides in TLS records: 22 bytes each way.
        let expected = https + ws + 22.0;
        println!("wss handshake {dir}: {wss}, https {https} + ws {ws} + one record = {expected}");
        assert!(
            (wss - expected).abs() <= 3.0,
            "wss handshake {dir} {wss} is not https's {https} + ws's {ws} + 22"
        );
    }

    // Packets per message: the kernel's counters against tshark's count of the steady
    // exchanges, and the per-message payload against the capture's.
    let ports: BTreeMap<String, u16> = results["lab"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let addr: std::net::SocketAddr = e["addr"].as_str().unwrap().parse().unwrap();
            (e["protocol"].as_str().unwrap().to_owned(), addr.port())
        })
        .collect();
    for (protocol, opening, close_frame) in [("http", 1, false), ("ws", 2, true)] {
        let streams = segments(&pcap, ports[protocol]);
        let (packets, up, down) = steady_per_message(&streams, opening, close_frame);
        let report = &run_of(&results, protocol, "echo")["report"];
        let ours = number(&report["tcp"]["packets_per_message"]);
        println!("{protocol} echo packets/msg: compare {ours:.3}, tshark {packets:.3}");
        assert!(
            (ours - packets).abs() <= packets * 0.03,
            "{protocol}: compare counts {ours} packets per message, tshark {packets}"
        );
        assert_eq!(
            up,
            number(&report["bytes"]["sent_per_message"]),
            "{protocol} ↑"
        );
        assert_eq!(
            down,
            number(&report["bytes"]["received_per_message"]),
            "{protocol} ↓"
        );
        // Frame bytes are the payload plus each packet's headers.
        let header = number(&report["tcp"]["header_bytes_per_packet"]);
        let frame = number(&report["tcp"]["frame_bytes_per_message"]);
        assert!(
            (frame - (up + down + ours * header)).abs() < 1.0,
            "{protocol}: {frame} frame bytes per message"
        );
    }

    // A light loopback run loses nothing, so nothing is sent twice.
    for protocol in ["http", "https", "ws", "wss"] {
        let tcp = &run_of(&results, protocol, "echo")["report"]["tcp"];
        assert!(
            number(&tcp["connections_sampled"]) > 0.0,
            "{protocol}: {tcp}"
        );
        assert_eq!(
            number(&tcp["retransmitted_bytes"]),
            0.0,
            "{protocol}: {tcp}"
        );
    }
}
