//! `inspect` against tshark on real traffic: Python `websockets` and curl talk to the lab
//! while tshark captures loopback; the HTTP start lines, WebSocket frames (opcodes, payloads,
//! close code) and TCP handshakes we decode must be what tshark dissects from the same file.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

mod live;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use protolab_capture::{inspect, Event, Filter};
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
    let dir = tempfile_dir();
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

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "protolab-capture-{}-{}",
        std::process::id(),
        line!()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
