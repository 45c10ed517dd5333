// `protolab inspect` on a small file written with protolab's pcapng writer (raw IPv4 link
// type), and its errors: a missing file, a file that is not a capture, a stream out of range.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::path::Path;
use std::process::Command;

use protolab_wire::pcapng;

fn protolab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_protolab"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn segment(to_server: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let (sport, dport) = if to_server {
        (40000u16, 3000u16)
    } else {
        (3000, 40000)
    };
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&u16::try_from(40 + payload.len()).unwrap().to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags, 0xFF, 0xFF, 0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

fn write_http_exchange(path: &Path) {
    write_exchange(
        path,
        b"GET /echo?msg=hi HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
    );
}

/// A capture of one connection: handshake, `request`, `response`, FIN.
fn write_exchange(path: &Path, request: &[u8], response: &[u8]) {
    let (syn, ack, psh_ack, fin_ack) = (0x02, 0x10, 0x18, 0x11);
    let packets = [
        segment(true, 100, 0, syn, b""),
        segment(false, 500, 101, syn | ack, b""),
        segment(true, 101, 501, ack, b""),
        segment(true, 101, 501, psh_ack, request),
        segment(false, 501, 101 + request.len() as u32, psh_ack, response),
        segment(
            true,
            101 + request.len() as u32,
            501 + response.len() as u32,
            fin_ack,
            b"",
        ),
    ];
    let mut file = Vec::new();
    pcapng::write_section_header(&mut file);
    pcapng::write_interface(&mut file, pcapng::LINKTYPE_RAW, 0);
    for (i, p) in packets.iter().enumerate() {
        pcapng::write_packet(
            &mut file,
            0,
            1_000_000_000 + i as u64 * 50_000,
            u32::try_from(p.len()).unwrap(),
            p,
        );
    }
    std::fs::write(path, file).unwrap();
}

#[test]
fn inspect_prints_the_conversation_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("http.pcapng");
    write_http_exchange(&file);
    let path = file.to_string_lossy().into_owned();

    let out = protolab(&["inspect", &path]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "6 packet(s), 1 connection(s)",
        "127.0.0.1:40000 → 127.0.0.1:3000",
        "TCP established, handshake RTT 100 µs",
        "→ HTTP GET /echo?msg=hi",
        "← HTTP 200 OK",
        "→ TCP FIN",
        "HTTP bodies 2 B",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    let out = protolab(&["--json", "inspect", &path, "--port", "3000"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = json["connections"][0]["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "http_request" && e["target"] == "/echo?msg=hi"),
        "{json}"
    );

    let out = protolab(&["--json", "inspect", &path, "--port", "9999"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["connections"].as_array().map(Vec::len),
        Some(0),
        "port filter"
    );
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn inspect_prints_http2_frames_grpc_messages_and_sse_events() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("h2c.pcapng");
    // HPACK: :method POST, :scheme http (static), :path and content-type as literals.
    let mut block = vec![0x83, 0x86, 0x04, 25];
    block.extend_from_slice(b"/protolab.lab.v1.Lab/Echo");
    block.extend_from_slice(&[0x0f, 0x10, 16]);
    block.extend_from_slice(b"application/grpc");
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend(h2_frame(4, 0, 0, &[0, 2, 0, 0, 0, 0]));
    request.extend(h2_frame(1, 0x4, 1, &block));
    request.extend(h2_frame(0, 0x1, 1, b"\0\0\0\0\x03abc"));
    let mut trailers = vec![0x00, 11];
    trailers.extend_from_slice(b"grpc-status");
    trailers.extend_from_slice(&[1, b'0']);
    let mut response = h2_frame(4, 0x1, 0, b"");
    response.extend(h2_frame(8, 0, 0, &1000u32.to_be_bytes()));
    response.extend(h2_frame(1, 0x4, 1, &[0x88]));
    response.extend(h2_frame(0, 0, 1, b"\0\0\0\0\x03abc"));
    response.extend(h2_frame(1, 0x5, 1, &trailers));
    response.extend(h2_frame(7, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0]));
    write_exchange(&file, &request, &response);
    let path = file.to_string_lossy().into_owned();
    let out = protolab(&["inspect", &path]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "→ HTTP/2 connection preface",
        "→ H2 SETTINGS stream 0 6 B  ENABLE_PUSH=0",
        "→ H2 HEADERS stream 1 [END_HEADERS] 48 B",
        ":path: /protolab.lab.v1.Lab/Echo",
        "content-type: application/grpc",
        "→ gRPC call /protolab.lab.v1.Lab/Echo on stream 1",
        "→ H2 DATA stream 1 [END_STREAM] 8 B",
        "→ gRPC message on stream 1, 3 B",
        "← H2 SETTINGS stream 0 [ACK] 0 B",
        "← H2 WINDOW_UPDATE stream 0 4 B  increment 1000",
        ":status: 200",
        "← gRPC status 0 on stream 1",
        "← H2 GOAWAY stream 0 8 B  last stream 1, error NO_ERROR (0x0)",
        "HTTP/2: framing",
        "h2c ",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let out = protolab(&["--json", "inspect", &path]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = json["connections"][0]["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["event"] == "grpc_message"
            && e["stream_id"] == 1
            && e["len"] == 3
            && e["dir"] == "to_client"),
        "{json}"
    );

    let file = dir.path().join("sse.pcapng");
    write_exchange(
        &file,
        b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
          31\r\n: hb\n\nretry: 1000\nid: 1\nevent: tick\ndata: hello\n\n\r\n0\r\n\r\n",
    );
    let out = protolab(&["inspect", &file.to_string_lossy()]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "← SSE comment \"hb\"",
        "← SSE event id \"1\" type \"tick\" retry 1000 ms 5 B data  \"hello\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn inspect_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pcapng");
    let out = protolab(&["inspect", &missing.to_string_lossy()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.pcapng"));

    let garbage = dir.path().join("notes.txt");
    std::fs::write(&garbage, "shopping list: eggs").unwrap();
    let out = protolab(&["inspect", &garbage.to_string_lossy()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));

    let file = dir.path().join("http.pcapng");
    write_http_exchange(&file);
    let out = protolab(&["inspect", &file.to_string_lossy(), "--stream", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has 1 connection(s)"));
}

#[test]
fn inject_and_strip_secrets_write_private_files_and_refuse_bad_input() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("http.pcapng");
    write_http_exchange(&file);
    let keys = dir.path().join("keys.log");
    std::fs::write(
        &keys,
        format!(
            "# from protolab up --keylog\nCLIENT_RANDOM {} {}\n",
            "07".repeat(32),
            "cd".repeat(48)
        ),
    )
    .unwrap();
    let (input, keylog) = (
        file.to_string_lossy().into_owned(),
        keys.to_string_lossy().into_owned(),
    );
    let with = dir
        .path()
        .join("with.pcapng")
        .to_string_lossy()
        .into_owned();
    // An existing, world-readable OUT is narrowed to 0600 before the secrets go in.
    std::fs::write(&with, "old").unwrap();
    std::fs::set_permissions(&with, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = protolab(&["inspect", "--inject-secrets", &keylog, &input, &with]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&with).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let json: serde_json::Value =
        serde_json::from_slice(&protolab(&["--json", "inspect", &with]).stdout).unwrap();
    assert_eq!(json["has_secrets"], true);
    assert_eq!(json["connections"].as_array().map(Vec::len), Some(1));

    let without = dir
        .path()
        .join("without.pcapng")
        .to_string_lossy()
        .into_owned();
    let out = protolab(&["inspect", "--strip-secrets", &with, &without]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 Decryption Secrets Block(s) removed"));
    assert_eq!(
        std::fs::read(&without).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // Errors: overwriting the input, a bad key log, a missing OUT, a non-capture.
    let out = protolab(&["inspect", "--strip-secrets", &with, &with]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite the input"));
    let bad = dir.path().join("bad.log");
    std::fs::write(&bad, "CLIENT_RANDOM nothex 00\n").unwrap();
    let out = protolab(&[
        "inspect",
        "--inject-secrets",
        &bad.to_string_lossy(),
        &input,
        &with,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("key log line 1"), "{err}");
    let out = protolab(&["inspect", "--inject-secrets", &keylog, &input]);
    assert!(!out.status.success());
    let out = protolab(&["inspect", "--strip-secrets", &keylog, &without]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));

    // --keylog reports its bad lines by number and still inspects.
    let out = protolab(&["inspect", &input, "--keylog", &bad.to_string_lossy()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key log line 1"));
}
