//! Real TLS handshakes between openssl s_client and s_server, captured by tshark: the
//! ClientHello and ServerHello fields our decoder reads (SNI, ALPN, versions, the chosen
//! cipher suite) equal what tshark dissects from the same packets.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::peer_support::{tool, Capture, KillOnDrop};
use protolab_wire::net::decode_tcp;
use protolab_wire::pcapng::{Block, Reader};
use protolab_wire::tls::{content_type, decode_record, parse_client_hello, parse_server_hello};

/// tshark prints numbers as decimal or 0x-hex depending on the field.
fn number(s: &str) -> u16 {
    s.strip_prefix("0x").map_or_else(
        || s.parse().unwrap(),
        |h| u16::from_str_radix(h, 16).unwrap(),
    )
}

#[test]
fn hello_fields_match_tshark_on_real_openssl_handshakes() {
    let dir = std::env::temp_dir().join(format!("protolab-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, file) = (dir.join("c.pem"), dir.join("k.pem"), dir.join("tls.pcapng"));
    let openssl = tool("openssl", "openssl");
    let status = Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=example.test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let capture = Capture::start(&format!("tcp port {port}"), &file);
    let server = KillOnDrop(
        Command::new(&openssl)
            .args([
                "s_server",
                "-accept",
                &port.to_string(),
                "-alpn",
                "http/1.1",
                "-www",
                "-quiet",
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let connect = format!("127.0.0.1:{port}");
    for (version, alpn) in [("-tls1_3", "h2,http/1.1"), ("-tls1_2", "http/1.1")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new(&openssl)
                .args([
                    "s_client",
                    "-connect",
                    &connect,
                    "-servername",
                    "example.test",
                    "-alpn",
                    alpn,
                    version,
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if String::from_utf8_lossy(&out.stdout).contains("Cipher is") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "s_client never got a handshake through"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    capture.stop();
    drop(server);

    // Ours: payloads per direction in capture order (loopback drops nothing), then records.
    let bytes = std::fs::read(&file).unwrap();
    let (mut reader, mut at) = (Reader::new(), 0);
    let mut streams: BTreeMap<(u16, u16), Vec<u8>> = BTreeMap::new();
    while let Some((block, used)) = reader.next(&bytes[at..]).unwrap() {
        if let Block::Packet(p) = block {
            let s = decode_tcp(p.link_type, p.data).unwrap();
            streams
                .entry((s.src_port, s.dst_port))
                .or_default()
                .extend_from_slice(s.payload);
        }
        at += used;
    }
    let first_handshake = |stream: &[u8]| {
        let (record, _) = decode_record(stream).unwrap().unwrap();
        assert_eq!(record.content_type, content_type::HANDSHAKE);
        record.fragment.to_vec()
    };
    let mut ours = Vec::new();
    for (&(src, dst), stream) in &streams {
        if dst != port || stream.is_empty() {
            continue;
        }
        let client = parse_client_hello(&first_handshake(stream)).unwrap();
        let reply = streams.get(&(dst, src)).unwrap();
        let server = parse_server_hello(&first_handshake(reply)).unwrap();
        ours.push((
            src,
            client.server_name.unwrap(),
            client.alpn.join(","),
            server.cipher_suite,
            server.version,
        ));
    }

    // tshark's view of the same hellos.
    let fields = |filter: &str, extra: &[&str]| -> Vec<Vec<String>> {
        let out = Command::new(tool("tshark", "tshark"))
            .arg("-r")
            .arg(&file)
            .args(["-Y", filter, "-T", "fields", "-E", "separator=;"])
            .args(extra.iter().flat_map(|f| ["-e", f]))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(';').map(str::to_string).collect())
            .collect()
    };
    let hellos = fields(
        "tls.handshake.type == 1",
        &[
            "tcp.srcport",
            "tls.handshake.extensions_server_name",
            "tls.handshake.extensions_alpn_str",
        ],
    );
    let servers = fields(
        "tls.handshake.type == 2",
        &[
            "tcp.dstport",
            "tls.handshake.ciphersuite",
            "tls.handshake.extensions.supported_version",
            "tls.handshake.version",
        ],
    );
    let mut theirs = Vec::new();
    for h in &hellos {
        let client_port: u16 = h[0].parse().unwrap();
        let s = servers.iter().find(|s| s[0] == h[0]).unwrap();
        let version = if s[2].is_empty() {
            number(&s[3])
        } else {
            number(&s[2])
        };
        theirs.push((
            client_port,
            h[1].clone(),
            h[2].clone(),
            number(&s[1]),
            version,
        ));
    }
    theirs.sort();
    assert_eq!(ours.len(), 2, "two handshakes: {ours:?}");
    assert_eq!(ours, theirs);
    assert_eq!(ours.iter().map(|o| o.4).collect::<Vec<_>>().len(), 2);
    assert!(
        ours.iter().any(|o| o.4 == 0x0304) && ours.iter().any(|o| o.4 == 0x0303),
        "{ours:?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
