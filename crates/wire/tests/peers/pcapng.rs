//! pcapng files written by `protolab_wire::pcapng` read by Wireshark's own tools, and files
//! those tools write read back by our reader: capinfos, tshark and editcap (Debian `tshark`).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::path::Path;
use std::process::Command;

use protolab_wire::pcapng::{self, Block, Reader};

use crate::peer_support::tool;

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(tool(name, "tshark"))
        .args(args)
        .output()
        .expect("tool runs");
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Ethernet + IPv4 + TCP around `payload`, with a correct IPv4 header checksum.
fn tcp_packet(src_port: u16, dst_port: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
    let total = u16::try_from(20 + 20 + payload.len()).unwrap();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xFFFF) + (sum >> 16);
    let checksum = !u16::try_from((folded & 0xFFFF) + (folded >> 16)).unwrap();
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    p.extend_from_slice(&ip);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

const KEYLOG: &str = "CLIENT_TRAFFIC_SECRET_0 0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

fn write_sample(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let packets: Vec<(u64, Vec<u8>)> = vec![
        (
            1_795_000_000_123_456_789,
            tcp_packet(40000, 3002, 1, b"GET /ws HTTP/1.1\r\n\r\n"),
        ),
        (
            1_795_000_000_223_456_789,
            tcp_packet(3002, 40000, 7, b"HTTP/1.1 101 Switching Protocols\r\n\r\n"),
        ),
        (
            1_795_000_001_000_000_001,
            tcp_packet(
                40000,
                3002,
                21,
                &[0x81, 0x85, 1, 2, 3, 4, 0x69, 0x67, 0x6f, 0x68, 0x6e],
            ),
        ),
    ];
    let mut out = Vec::new();
    pcapng::write_section_header(&mut out);
    pcapng::write_interface(&mut out, pcapng::LINKTYPE_ETHERNET, 262_144);
    pcapng::write_secrets(&mut out, pcapng::SECRETS_TLS_KEY_LOG, KEYLOG.as_bytes());
    for (ts, data) in &packets {
        pcapng::write_packet(&mut out, 0, *ts, u32::try_from(data.len()).unwrap(), data);
    }
    std::fs::write(path, out).unwrap();
    packets
}

fn read_file(path: &Path) -> (Vec<(u64, Vec<u8>)>, Vec<String>) {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = Reader::new();
    let (mut at, mut packets, mut secrets) = (0, Vec::new(), Vec::new());
    while let Some((block, used)) = reader
        .next(&bytes[at..])
        .expect("our reader decodes the tool's file")
    {
        match block {
            Block::Packet(p) => packets.push((p.timestamp_ns, p.data.to_vec())),
            Block::Secrets { data, .. } => secrets.push(String::from_utf8_lossy(data).into_owned()),
            _ => {}
        }
        at += used;
    }
    assert_eq!(at, bytes.len(), "whole file consumed");
    (packets, secrets)
}

#[test]
fn wireshark_tools_read_our_pcapng_and_we_read_theirs() {
    let dir = std::env::temp_dir().join(format!("protolab-pcapng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = dir.join("ours.pcapng");
    let packets = write_sample(&ours);
    let ours_arg = ours.to_string_lossy().into_owned();

    let info = run("capinfos", &["-c", "-M", &ours_arg]);
    assert!(info.contains("Number of packets:   3"), "{info}");

    let fields = run(
        "tshark",
        &[
            "-r",
            &ours_arg,
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.len",
        ],
    );
    let rows: Vec<&str> = fields.lines().collect();
    assert_eq!(rows.len(), 3, "{fields}");
    assert!(
        rows[0].starts_with("1795000000.123456789\t127.0.0.1\t40000\t3002\t20"),
        "{fields}"
    );
    assert!(
        rows[2].starts_with("1795000001.000000001\t127.0.0.1\t40000\t3002\t11"),
        "{fields}"
    );

    // editcap adds its own secrets block; our reader sees both and the packets unchanged.
    let keylog = dir.join("extra.keys");
    std::fs::write(
        &keylog,
        KEYLOG.replace("CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0"),
    )
    .unwrap();
    let injected = dir.join("injected.pcapng");
    let secrets_arg = format!("tls,{}", keylog.display());
    run(
        "editcap",
        &[
            "--inject-secrets",
            &secrets_arg,
            &ours_arg,
            &injected.to_string_lossy(),
        ],
    );
    let (read_packets, secrets) = read_file(&injected);
    assert_eq!(read_packets, packets);
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert!(
        secrets
            .iter()
            .any(|s| s.starts_with("SERVER_TRAFFIC_SECRET_0")),
        "{secrets:?}"
    );
    assert!(
        secrets
            .iter()
            .any(|s| s.starts_with("CLIENT_TRAFFIC_SECRET_0")),
        "{secrets:?}"
    );

    // Classic pcap (microseconds) from editcap: same bytes, timestamps cut to µs.
    let classic = dir.join("classic.pcap");
    run(
        "editcap",
        &["-F", "pcap", &ours_arg, &classic.to_string_lossy()],
    );
    let (read_packets, secrets) = read_file(&classic);
    assert!(secrets.is_empty());
    let expected: Vec<(u64, Vec<u8>)> = packets
        .iter()
        .map(|(ts, d)| (ts / 1000 * 1000, d.clone()))
        .collect();
    assert_eq!(read_packets, expected);

    std::fs::remove_dir_all(&dir).ok();
}
