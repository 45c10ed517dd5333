//! Real loopback traffic captured by tshark, decoded by `pcapng::Reader` + `net::decode_tcp`
//! and by tshark itself: every segment's ports, raw sequence and acknowledgment numbers, flags
//! and payload length must agree.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use protolab_wire::net::decode_tcp;
use protolab_wire::pcapng::{Block, Reader};

use crate::peer_support::{tool, Capture};

/// An echo server on `addr` port 0 that serves one connection.
fn echo_server(addr: &str) -> u16 {
    let listener = TcpListener::bind(addr).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 8192];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    port
}

fn talk(addr: &str, port: u16) {
    let mut s = TcpStream::connect((addr, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for message in [b"hello".to_vec(), vec![b'x'; 3000]] {
        s.write_all(&message).unwrap();
        let mut got = vec![0u8; message.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, message);
    }
}

type Row = (u16, u16, u32, u32, u8, usize);

#[test]
fn our_decoding_of_a_real_loopback_capture_matches_tshark() {
    let dir = std::env::temp_dir().join(format!("protolab-net-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lo.pcapng");
    let v4 = echo_server("127.0.0.1:0");
    let v6 = echo_server("[::1]:0");
    let filter = format!("tcp port {v4} or tcp port {v6}");
    let capture = Capture::start(&filter, &file);
    talk("127.0.0.1", v4);
    talk("::1", v6);
    capture.stop();

    let bytes = std::fs::read(&file).unwrap();
    let mut reader = Reader::new();
    let mut at = 0;
    let mut ours: Vec<Row> = Vec::new();
    while let Some((block, used)) = reader.next(&bytes[at..]).unwrap() {
        if let Block::Packet(p) = block {
            let s = decode_tcp(p.link_type, p.data).unwrap();
            ours.push((
                s.src_port,
                s.dst_port,
                s.seq,
                s.ack,
                s.flags.0,
                s.payload.len(),
            ));
        }
        at += used;
    }

    let fields = Command::new(tool("tshark", "tshark"))
        .arg("-r")
        .arg(&file)
        .args(["-T", "fields", "-E", "separator=,"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.seq_raw",
            "-e",
            "tcp.ack_raw",
            "-e",
            "tcp.flags",
            "-e",
            "tcp.len",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fields.stdout);
    let theirs: Vec<Row> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let flags = u16::from_str_radix(f[4].trim_start_matches("0x"), 16).unwrap();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                (flags & 0xFF) as u8,
                f[5].parse().unwrap(),
            )
        })
        .collect();
    // Two connections: handshake, two echoes, close — at least 8 segments each.
    assert!(ours.len() >= 16, "captured only {} segments", ours.len());
    assert!(
        ours.iter().any(|r| r.0 == v6 || r.1 == v6),
        "IPv6 traffic captured"
    );
    assert_eq!(ours, theirs);
    assert_eq!(
        ours.iter().map(|r| r.5).sum::<usize>(),
        2 * 2 * (5 + 3000),
        "every payload byte seen once"
    );
    std::fs::remove_dir_all(&dir).ok();
}
