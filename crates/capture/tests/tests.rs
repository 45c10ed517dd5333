//! `inspect` against tshark on real traffic: Python `websockets` and curl talk to the lab
//! while tshark captures loopback; the HTTP start lines, WebSocket frames (opcodes, payloads,
//! close code) and TCP handshakes we decode must be what tshark dissects from the same file.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

mod deflate;
mod h2;
mod live;
mod sse;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use protolab_capture::{
    inject_secrets, inspect, inspect_with, strip_secrets, Event, Filter, InspectOptions, KeyLog,
    Note,
};
use protolab_server::Protocol;
use protolab_test_support::{require, run, run_json, Peer, TestLab};

/// Kills the child when dropped, so a failing test never leaves tshark capturing (a leftover
/// capture filters every later loopback packet and skews benchmarks).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tshark_fields(file: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-E", "separator=;"])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_agrees_with_tshark_on_http_and_websocket_traffic() {
    let lab = TestLab::start(&[Protocol::Http, Protocol::Ws, Protocol::Wss], |c| {
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    let (http, ws, wss) = (
        lab.port(Protocol::Http),
        lab.port(Protocol::Ws),
        lab.port(Protocol::Wss),
    );
    let dir = tempfile_dir("plain");
    let file = dir.join("lab.pcapng");
    let mut capture = KillOnDrop(
        Command::new(require("tshark", "apt-get install -y tshark"))
            .args([
                "-i",
                "lo",
                "-f",
                &format!("tcp port {http} or tcp port {ws} or tcp port {wss}"),
                "-w",
            ])
            .arg(&file)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(capture.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Capture started") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "tshark exited before capturing (needs root or CAP_NET_RAW)"
        );
    }

    let ws_url = lab.url(Protocol::Ws);
    let result = run_json(
        Peer::PythonWs.command(["echo", ws_url.as_str()]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(result["close_code"], 1000, "{result}");
    let wss_url = lab.url(Protocol::Wss);
    let ca = lab.ca.to_string_lossy().into_owned();
    let result = run_json(
        Peer::PythonWs.command(["echo", wss_url.as_str(), "--cafile", &ca]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(result["close_code"], 1000, "{result}");
    let echo_url = format!("{}echo?msg=captured", lab.url(Protocol::Http));
    let out = run(
        Peer::Curl.command(["-s", echo_url.as_str()]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "captured");
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill")
        .args(["-INT", &capture.0.id().to_string()])
        .status()
        .unwrap();
    assert!(capture.0.wait().unwrap().success());

    let report = inspect(
        &std::fs::read(&file).unwrap(),
        &Filter {
            ports: vec![http, ws],
        },
    );
    assert_eq!(report.file_error, None);
    assert_eq!(report.connections.len(), 2, "{report:#?}");
    let events: Vec<&Event> = report
        .connections
        .iter()
        .flat_map(|c| c.events.iter().map(|t| &t.event))
        .collect();

    // HTTP start lines.
    let mut ours_requests: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::HttpRequest { method, target, .. } => Some((method.clone(), target.clone())),
            _ => None,
        })
        .collect();
    let mut theirs_requests: Vec<(String, String)> = tshark_fields(
        &file,
        "http.request",
        &["http.request.method", "http.request.uri"],
    )
    .into_iter()
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect();
    ours_requests.sort();
    theirs_requests.sort();
    assert_eq!(ours_requests, theirs_requests);
    assert_eq!(ours_requests.len(), 2);
    let mut ours_status: Vec<u16> = events
        .iter()
        .filter_map(|e| match e {
            Event::HttpResponse { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    let mut theirs_status: Vec<u16> =
        tshark_fields(&file, "http.response", &["http.response.code"])
            .iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
    ours_status.sort_unstable();
    theirs_status.sort_unstable();
    assert_eq!(ours_status, theirs_status);
    assert_eq!(ours_status, [101, 200]);

    // WebSocket frames: opcodes in capture order, the close code, the text payload.
    let ours_frames: Vec<(u8, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::WsFrame { opcode, mask, .. } => Some((opcode_number(opcode), mask.is_some())),
            _ => None,
        })
        .collect();
    let theirs_frames: Vec<(u8, bool)> =
        tshark_fields(&file, "websocket", &["websocket.opcode", "websocket.mask"])
            .iter()
            .flat_map(|r| {
                let ops: Vec<u8> = r[0].split(',').map(|o| o.parse().unwrap()).collect();
                let masks: Vec<bool> = r[1].split(',').map(|m| m == "1" || m == "True").collect();
                ops.into_iter().zip(masks).collect::<Vec<_>>()
            })
            .collect();
    assert_eq!(ours_frames, theirs_frames);
    // text out, text back, binary out, binary back, close out, close back
    assert_eq!(
        ours_frames.iter().map(|f| f.0).collect::<Vec<_>>(),
        [1, 1, 2, 2, 8, 8]
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::WsFrame { preview, .. } if preview == "hello from python")));
    let theirs_close: Vec<String> = tshark_fields(
        &file,
        "websocket.payload.close.status_code",
        &["websocket.payload.close.status_code"],
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    let ours_close: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::WsFrame {
                close: Some((code, _)),
                ..
            } => Some(code.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(ours_close, theirs_close);
    assert_eq!(ours_close, ["1000", "1000"]);

    // Every connection's handshake was seen, with a round trip.
    for c in &report.connections {
        assert!(
            c.events
                .iter()
                .any(|t| matches!(t.event, Event::TcpEstablished { .. })),
            "{c:#?}"
        );
        assert!(c.notes.is_empty(), "{:?}", c.notes);
        assert_eq!(
            c.layers.http_headers as usize,
            c.events
                .iter()
                .map(|t| match &t.event {
                    Event::HttpRequest { head_bytes, .. }
                    | Event::HttpResponse { head_bytes, .. } => *head_bytes,
                    _ => 0,
                })
                .sum::<usize>()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn opcode_number(name: &str) -> u8 {
    match name {
        "continuation" => 0,
        "text" => 1,
        "binary" => 2,
        "close" => 8,
        "ping" => 9,
        "pong" => 10,
        other => panic!("unknown opcode {other}"),
    }
}

/// A fresh directory per test (`name`): the tests run in parallel and each removes its own.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("protolab-capture-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts tshark writing loopback traffic on `ports` to `file`; returns once it captures.
fn start_capture(ports: &[u16], file: &std::path::Path) -> KillOnDrop {
    let filter = ports
        .iter()
        .map(|p| format!("tcp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut capture = KillOnDrop(
        Command::new(require("tshark", "apt-get install -y tshark"))
            .args(["-i", "lo", "-f", &filter, "-w"])
            .arg(file)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(capture.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Capture started") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "tshark exited before capturing (needs root or CAP_NET_RAW)"
        );
    }
    capture
}

/// Lets the last packets reach tshark, then stops it cleanly so the file is complete.
async fn stop_capture(mut capture: KillOnDrop) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    Command::new("kill")
        .args(["-INT", &capture.0.id().to_string()])
        .status()
        .unwrap();
    assert!(capture.0.wait().unwrap().success());
}

/// `tshark -r file [prefs] -Y filter -T fields -e …`, one row per packet.
fn tshark_rows(
    file: &std::path::Path,
    prefs: &[&str],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(file)
        .args(prefs.iter().flat_map(|p| ["-o", p]))
        .args(["-Y", filter, "-T", "fields", "-E", "separator=;"])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect()
}

/// (opcode, text payload, close code) of every WebSocket frame tshark decodes, in order.
fn tshark_frames(file: &std::path::Path, prefs: &[&str]) -> Vec<(u8, String, String)> {
    tshark_rows(
        file,
        prefs,
        "websocket",
        &[
            "websocket.opcode",
            "websocket.payload.text",
            "websocket.payload.close.status_code",
        ],
    )
    .iter()
    .flat_map(|r| {
        // Several frames in one packet come comma-separated, field by field.
        let texts: Vec<&str> = r[1].split(',').collect();
        let codes: Vec<&str> = r[2].split(',').collect();
        r[0].split(',')
            .enumerate()
            .map(|(i, op)| {
                let op: u8 = op.parse().unwrap();
                let text = if op == 1 {
                    texts.get(i).copied().unwrap_or("")
                } else {
                    ""
                };
                let code = if op == 8 {
                    codes.first().copied().unwrap_or("")
                } else {
                    ""
                };
                (op, text.to_string(), code.to_string())
            })
            .collect::<Vec<_>>()
    })
    .collect()
}

fn our_frames(report: &protolab_capture::Report) -> Vec<(u8, String, String)> {
    report
        .connections
        .iter()
        .flat_map(|c| &c.events)
        .filter_map(|t| match &t.event {
            Event::WsFrame {
                opcode,
                preview,
                close,
                ..
            } => {
                let op = opcode_number(opcode);
                let text = if op == 1 {
                    preview.clone()
                } else {
                    String::new()
                };
                let code = close
                    .as_ref()
                    .map(|(c, _)| c.to_string())
                    .unwrap_or_default();
                Some((op, text, code))
            }
            _ => None,
        })
        .collect()
}

fn our_start_lines(report: &protolab_capture::Report) -> Vec<String> {
    report
        .connections
        .iter()
        .flat_map(|c| &c.events)
        .filter_map(|t| match &t.event {
            Event::HttpRequest { method, target, .. } => Some(format!("{method} {target}")),
            Event::HttpResponse { status, .. } => Some(status.to_string()),
            _ => None,
        })
        .collect()
}

fn tshark_start_lines(file: &std::path::Path, prefs: &[&str]) -> Vec<String> {
    tshark_rows(
        file,
        prefs,
        "http",
        &[
            "http.request.method",
            "http.request.uri",
            "http.response.code",
        ],
    )
    .iter()
    .map(|r| {
        if r[0].is_empty() {
            r[2].clone()
        } else {
            format!("{} {}", r[0], r[1])
        }
    })
    .collect()
}

/// The suites the decryption test forces: (TLS version, TLS 1.3 Ciphersuites or TLS 1.2
/// OpenSSL cipher, the IANA name inspect must report).
const SUITES: [(&str, &str, &str); 6] = [
    ("1.3", "TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
    ("1.3", "TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    (
        "1.3",
        "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_CHACHA20_POLY1305_SHA256",
    ),
    (
        "1.2",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "1.2",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "1.2",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decrypted_wss_agrees_with_tshark_for_every_suite_and_secrets_travel_in_the_file() {
    let dir = tempfile_dir("decrypt");
    let keys = dir.join("server.keys");
    let keys_for_lab = keys.clone();
    // The lab logs its secrets, as `protolab up --keylog` does.
    let lab = TestLab::start(&[Protocol::Wss], move |c| {
        let mut tls = (**c.tls.as_ref().unwrap()).clone();
        tls.key_log =
            std::sync::Arc::new(protolab_tls::keylog::KeyLogFile::create(&keys_for_lab).unwrap());
        c.tls = Some(std::sync::Arc::new(tls));
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    let wss = lab.port(Protocol::Wss);
    let file = dir.join("wss.pcapng");
    let capture = start_capture(&[wss], &file);
    let url = lab.url(Protocol::Wss);
    let ca = lab.ca.to_string_lossy().into_owned();
    for (version, suite, _) in SUITES {
        let mut cmd = Peer::PythonWs.command([
            "echo",
            url.as_str(),
            "--cafile",
            &ca,
            "--tls-version",
            version,
        ]);
        if version == "1.3" {
            // `ssl` cannot pick TLS 1.3 suites; OpenSSL's config can.
            let conf = dir.join(format!("{suite}.cnf"));
            std::fs::write(
                &conf,
                format!(
                    "openssl_conf = init\n[init]\nssl_conf = ssl\n[ssl]\nsystem_default = sys\n[sys]\nCiphersuites = {suite}\n"
                ),
            )
            .unwrap();
            cmd.env("OPENSSL_CONF", conf);
        } else {
            cmd.args(["--ciphers", suite]);
        }
        let result = run_json(cmd, Duration::from_secs(30)).await;
        assert_eq!(result["close_code"], 1000, "{suite}: {result}");
    }
    stop_capture(capture).await;

    let bytes = std::fs::read(&file).unwrap();
    let keylog_text = std::fs::read(&keys).unwrap();
    let (keylog, errors) = KeyLog::parse(&keylog_text);
    assert!(errors.is_empty(), "{errors:?}");
    let options = InspectOptions {
        keylog,
        ..InspectOptions::default()
    };
    let report = inspect_with(&bytes, &options);
    assert_eq!(report.connections.len(), SUITES.len(), "{report:#?}");
    for (c, (version, _, name)) in report.connections.iter().zip(SUITES) {
        let d = c
            .decrypted
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: {c:#?}"));
        assert_eq!(d.version, format!("TLS {version}"));
        assert_eq!(d.cipher_suite, name);
        assert!(c.notes.is_empty(), "{name}: {:?}", c.notes);
        // Every payload byte is TLS's or the application's, and the HTTP heads are whole; a
        // byte TCP sent again (a retransmission on a busy machine) counts once.
        let l = &c.layers;
        assert_eq!(l.tls_encrypted, 0, "{name}");
        assert_eq!(
            l.tls + l.http_headers + l.http_body + l.ws_framing + l.ws_payload,
            c.payload_bytes[0] + c.payload_bytes[1]
                - c.retransmitted_bytes[0]
                - c.retransmitted_bytes[1],
            "{name}: {l:?}, retransmitted {:?}",
            c.retransmitted_bytes
        );
        // The messages as sent, both ways: 17 bytes of text, 32 random bytes, a 2-byte close.
        // The lab and Python agree on permessage-deflate, so data frames count what they
        // inflate to.
        let message_bytes: u64 = c
            .events
            .iter()
            .filter_map(|t| match &t.event {
                Event::WsFrame {
                    len, inflated_len, ..
                } => Some(inflated_len.unwrap_or(*len)),
                _ => None,
            })
            .sum();
        assert_eq!(message_bytes, 2 * (17 + 32 + 2), "{name}: {l:?}");
    }

    // The same frames and start lines tshark decrypts with the key log.
    let keylog_pref = format!("tls.keylog_file:{}", keys.display());
    let theirs = tshark_frames(&file, &[&keylog_pref]);
    let ours = our_frames(&report);
    assert_eq!(ours, theirs);
    assert_eq!(ours.len(), 6 * SUITES.len());
    assert!(ours.contains(&(1, "hello from python".into(), String::new())));
    assert_eq!(
        ours.iter().filter(|f| f.2 == "1000").count(),
        2 * SUITES.len()
    );
    let lines = our_start_lines(&report);
    assert_eq!(lines, tshark_start_lines(&file, &[&keylog_pref]));
    assert_eq!(lines.len(), 2 * SUITES.len());

    // Secrets embedded in the file: tshark and inspect decrypt with no key log option.
    let injected = dir.join("injected.pcapng");
    std::fs::write(&injected, inject_secrets(&bytes, &keylog_text).unwrap()).unwrap();
    assert_eq!(tshark_frames(&injected, &[]), theirs);
    let embedded = inspect(&std::fs::read(&injected).unwrap(), &Filter::default());
    assert!(embedded.has_secrets);
    assert_eq!(our_frames(&embedded), ours);

    // Stripped again: nobody can decrypt, and inspect says why on each connection.
    let stripped = dir.join("stripped.pcapng");
    let (without, removed) = strip_secrets(&std::fs::read(&injected).unwrap()).unwrap();
    assert_eq!(removed, 1);
    std::fs::write(&stripped, &without).unwrap();
    assert!(tshark_frames(&stripped, &[]).is_empty());
    let opaque = inspect(&without, &Filter::default());
    assert!(!opaque.has_secrets && our_frames(&opaque).is_empty());
    for c in &opaque.connections {
        assert!(c.decrypted.is_none());
        assert!(c.layers.tls_encrypted > 0);
        assert!(
            matches!(&c.notes[..], [Note::Tls { reason, .. }] if reason.contains("no TLS secrets")),
            "{:?}",
            c.notes
        );
    }

    // A key log for other connections, and one with wrong secrets: notes, no panic.
    let other = KeyLog::parse(
        format!("CLIENT_RANDOM {} {}\n", "00".repeat(32), "11".repeat(48)).as_bytes(),
    )
    .0;
    let report = inspect_with(
        &bytes,
        &InspectOptions {
            keylog: other,
            ..InspectOptions::default()
        },
    );
    for c in &report.connections {
        assert!(
            matches!(&c.notes[..], [Note::Tls { reason, .. }] if reason.contains("no key-log secret for this ClientHello's random")),
            "{:?}",
            c.notes
        );
    }
    let wrong: String = String::from_utf8(keylog_text)
        .unwrap()
        .lines()
        .map(|l| {
            // Same labels and randoms; every secret's first byte changed.
            let (head, secret) = l.rsplit_once(' ').unwrap();
            let flipped = if secret.starts_with('0') { '1' } else { '0' };
            format!("{head} {flipped}{}\n", &secret[1..])
        })
        .collect();
    let report = inspect_with(
        &bytes,
        &InspectOptions {
            keylog: KeyLog::parse(wrong.as_bytes()).0,
            ..InspectOptions::default()
        },
    );
    assert!(our_frames(&report).is_empty());
    for c in &report.connections {
        assert!(
            c.notes.iter().any(|n| matches!(n, Note::Tls { reason, .. } if reason.contains("failed authentication"))),
            "{:?}",
            c.notes
        );
    }

    // One flipped byte in one record: that direction stops with a note, the rest decodes.
    let mut corrupted = bytes.clone();
    let at = nth_client_data_record(&bytes, wss, 3);
    corrupted[at + 10] ^= 0x40;
    let report = inspect_with(&corrupted, &options);
    let first = &report.connections[0];
    assert!(
        first.notes.iter().any(|n| matches!(n, Note::Tls { dir: Some(protolab_capture::Dir::ToServer), reason } if reason.contains("failed authentication"))),
        "{:?}",
        first.notes
    );
    for c in &report.connections[1..] {
        assert!(c.notes.is_empty() && c.decrypted.is_some(), "{:?}", c.notes);
    }
    assert!(our_frames(&report).len() < ours.len());
    std::fs::remove_dir_all(&dir).ok();
}

/// The file offset of the `n`th (1-based) client-to-server application data record of the
/// first connection to `port`, assuming each sits at the start of its segment.
fn nth_client_data_record(file: &[u8], port: u16, n: usize) -> usize {
    use protolab_wire::net::decode_tcp;
    use protolab_wire::pcapng::{Block, Reader};
    let mut reader = Reader::new();
    let mut at = 0;
    let mut seen = 0;
    let mut client_port = None;
    while let Some((block, used)) = reader.next(&file[at..]).unwrap() {
        if let Block::Packet(p) = block {
            if let Ok(seg) = decode_tcp(p.link_type, p.data) {
                let client = *client_port.get_or_insert(seg.src_port);
                if seg.dst_port == port
                    && seg.src_port == client
                    && seg.payload.starts_with(&[23, 3, 3])
                {
                    seen += 1;
                    if seen == n {
                        // The payload is a slice of `file`: its offset is the pointer distance.
                        return seg.payload.as_ptr() as usize - file.as_ptr() as usize;
                    }
                }
            }
        }
        at += used;
    }
    panic!("fewer than {n} client records to port {port}");
}
