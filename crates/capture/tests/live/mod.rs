//! Live capture against tshark on real traffic: curl (http, https, and IPv6), Python
//! `websockets` (ws, wss) and headless Chromium (the ws demo page) talk to the lab while
//! `LiveCapture` and, as a reference, tshark capture loopback. Our file must hold what
//! tshark's own capture holds (packets, TCP streams), open in capinfos, decrypt in tshark
//! with no key log option, leave out ports outside the filter, and decode in `inspect` to the
//! WebSocket frames tshark shows.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use protolab_capture::live::{CaptureConfig, CaptureError, LiveCapture, StopReason};
use protolab_capture::{inspect, Event, Filter};
use protolab_server::Protocol;
use protolab_test_support::{require, run, run_json, Peer, TestLab};
use protolab_tls::keylog::KeyLogBuffer;

const PEER_LIMIT: Duration = Duration::from_secs(60);

/// Kills the child when dropped: a leftover tshark on lo skews everybody's benchmarks.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tshark reading `file` with a fresh HOME, so no user preference (such as a
/// `tls.keylog_file`) can help it decrypt: only the file's own secrets may.
fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .env("HOME", home.path())
        .env_remove("SSLKEYLOGFILE")
        .arg("-r")
        .arg(file)
        .args([
            "-Y",
            filter,
            "-T",
            "fields",
            "-E",
            "separator=;",
            "-E",
            "aggregator=|",
        ])
        .args(fields.iter().flat_map(|f| ["-e", f]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tshark -r failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(';').map(str::to_string).collect())
        .collect()
}

fn streams(file: &Path) -> BTreeSet<String> {
    tshark(file, "tcp", &["tcp.stream"])
        .into_iter()
        .map(|r| r[0].clone())
        .collect()
}

/// Starts tshark on lo with a capture filter and waits until it captures.
fn reference_capture(ports: &[u16], file: &Path) -> KillOnDrop {
    let filter = ports
        .iter()
        .map(|p| format!("tcp port {p}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let mut child = KillOnDrop(
        Command::new(require("tshark", "apt-get install -y tshark"))
            .args(["-i", "lo", "-f", &filter, "-w"])
            .arg(file)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Capture started") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "tshark exited before capturing (needs root or CAP_NET_RAW)"
        );
    }
    child
}

fn opcode_number(name: &str) -> String {
    match name {
        "continuation" => "0",
        "text" => "1",
        "binary" => "2",
        "close" => "8",
        "ping" => "9",
        "pong" => "10",
        other => panic!("unknown opcode {other}"),
    }
    .to_string()
}

async fn curl(args: &[&str]) -> String {
    let out = run(Peer::Curl.command(args), PEER_LIMIT).await;
    assert!(out.status.success(), "curl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_capture_agrees_with_tshark_and_embeds_the_secrets_it_needs() {
    let keys = Arc::new(KeyLogBuffer::new());
    let lab_keys = keys.clone();
    let lab = TestLab::start(
        &[Protocol::Http, Protocol::Https, Protocol::Ws, Protocol::Wss],
        move |c| {
            c.push_interval = Duration::from_secs(3600);
            let mut tls = (**c.tls.as_ref().unwrap()).clone();
            tls.key_log = lab_keys;
            c.tls = Some(Arc::new(tls));
        },
    )
    .await;
    let v6 = TestLab::start(&[Protocol::Http], |c| c.bind = "::1".parse().unwrap()).await;
    let decoy = TestLab::start(&[Protocol::Http], |_| {}).await;
    let (http, https, ws, wss) = (
        lab.port(Protocol::Http),
        lab.port(Protocol::Https),
        lab.port(Protocol::Ws),
        lab.port(Protocol::Wss),
    );
    let ports = vec![http, https, ws, wss, v6.port(Protocol::Http)];
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.pcapng");
    let theirs = dir.path().join("tshark.pcapng");

    let mut reference = reference_capture(&ports, &theirs);
    let capture = LiveCapture::start(CaptureConfig {
        ports: ports.clone(),
        ..CaptureConfig::default()
    })
    .unwrap();
    assert_eq!(capture.link_type(), 1, "lo is written as Ethernet");

    let ca = lab.ca.to_string_lossy().into_owned();
    let echo = format!("http://127.0.0.1:{http}/echo?msg=plain");
    assert_eq!(curl(&["-s", &echo]).await, "plain");
    let secure = format!("https://localhost:{https}/echo?msg=secure");
    assert_eq!(curl(&["-s", "--cacert", &ca, &secure]).await, "secure");
    let over_v6 = format!("http://[::1]:{}/echo?msg=six", v6.port(Protocol::Http));
    assert_eq!(curl(&["-s", "-g", &over_v6]).await, "six");
    let elsewhere = format!(
        "http://127.0.0.1:{}/echo?msg=decoy",
        decoy.port(Protocol::Http)
    );
    assert_eq!(curl(&["-s", &elsewhere]).await, "decoy");
    for (url, extra) in [
        (format!("ws://127.0.0.1:{ws}/ws"), vec![]),
        (
            format!("wss://localhost:{wss}/ws"),
            vec!["--cafile".to_string(), ca.clone()],
        ),
    ] {
        let mut args = vec!["echo".to_string(), url];
        args.extend(extra);
        let result = run_json(Peer::PythonWs.command(&args), PEER_LIMIT).await;
        assert_eq!(result["text_echo"], "hello from python", "{result}");
        assert_eq!(result["close_code"], 1000, "{result}");
    }
    let page = format!("http://127.0.0.1:{ws}/");
    let state = run_json(
        Peer::Chromium.command([page.as_str(), "--expect", "← hello from the browser"]),
        PEER_LIMIT,
    )
    .await;
    assert_eq!(state["found"], true, "page never showed the echo: {state}");
    // Let the last FINs and ACKs arrive.
    tokio::time::sleep(Duration::from_millis(700)).await;

    let key_log = keys.contents();
    let out = ours.clone();
    let stats = tokio::task::spawn_blocking(move || capture.finish(Some(key_log.as_bytes()), &out))
        .await
        .unwrap()
        .unwrap();
    Command::new("kill")
        .args(["-INT", &reference.0.id().to_string()])
        .status()
        .unwrap();
    assert!(reference.0.wait().unwrap().success());

    assert_eq!(stats.stop, Some(StopReason::Stopped));
    assert_eq!(stats.dropped_by_kernel, 0, "{stats:?}");
    assert_eq!(stats.secrets_sessions, 2, "https and wss: {stats:?}");
    assert_eq!(stats.client_hellos, 2, "{stats:?}");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
        0o600,
        "a file with secrets is private"
    );

    // capinfos accepts the file and counts what we say we kept.
    let info = Command::new(require("capinfos", "apt-get install -y tshark"))
        .args(["-M", "-c"])
        .arg(&ours)
        .output()
        .unwrap();
    let info_text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "capinfos: {info:?}");
    let counted: u64 = info_text
        .lines()
        .find_map(|l| l.strip_prefix("Number of packets:"))
        .unwrap_or_else(|| panic!("{info_text}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(counted, stats.kept);

    // Same packets and streams as tshark's own capture of the same ports.
    let ours_frames = tshark(&ours, "frame", &["frame.len"]);
    let theirs_frames = tshark(&theirs, "frame", &["frame.len"]);
    assert_eq!(ours_frames.len() as u64, stats.kept);
    assert_eq!(ours_frames, theirs_frames, "frame lengths, in order");
    let ours_streams = streams(&ours);
    assert_eq!(ours_streams, streams(&theirs));
    assert!(ours_streams.len() >= 7, "{ours_streams:?}");
    assert_eq!(
        tshark(&ours, "ipv6", &["frame.number"]).len(),
        tshark(&theirs, "ipv6", &["frame.number"]).len()
    );
    assert!(!tshark(&ours, "ipv6 && http.request", &["frame.number"]).is_empty());
    let decoy_filter = format!("tcp.port == {}", decoy.port(Protocol::Http));
    assert!(tshark(&ours, &decoy_filter, &["frame.number"]).is_empty());

    // tshark decrypts HTTPS and WSS from the embedded secrets alone.
    let https_requests = tshark(
        &ours,
        &format!("http.request && tcp.port == {https}"),
        &["http.request.uri"],
    );
    assert_eq!(https_requests, [["/echo?msg=secure"]]);
    let wss_upgrade = tshark(
        &ours,
        &format!("http.response.code == 101 && tcp.port == {wss}"),
        &["http.response.code"],
    );
    assert_eq!(wss_upgrade.len(), 1);
    let wss_frames = tshark(
        &ours,
        &format!("websocket && tcp.port == {wss}"),
        &["websocket.opcode", "websocket.payload.text"],
    );
    let wss_texts: Vec<&str> = wss_frames
        .iter()
        .flat_map(|r| r[1].split('|'))
        .filter(|t| !t.is_empty())
        .collect();
    assert_eq!(
        wss_texts,
        ["hello from python", "hello from python"],
        "{wss_frames:?}"
    );

    // inspect reads the ws connections (Python and Chromium) as tshark does.
    let report = inspect(&std::fs::read(&ours).unwrap(), &Filter { ports: vec![ws] });
    assert!(report.has_secrets && report.file_error.is_none());
    let events: Vec<&Event> = report
        .connections
        .iter()
        .flat_map(|c| c.events.iter().map(|t| &t.event))
        .collect();
    let upgrades = events
        .iter()
        .filter(|e| matches!(e, Event::HttpResponse { status: 101, .. }))
        .count();
    let theirs_upgrades = tshark(
        &ours,
        &format!("http.response.code == 101 && tcp.port == {ws}"),
        &["frame.number"],
    );
    assert_eq!(upgrades, theirs_upgrades.len());
    assert_eq!(upgrades, 2, "Python and Chromium");
    let ours_ws: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| match e {
            Event::WsFrame {
                opcode, preview, ..
            } => Some((
                opcode_number(opcode),
                if *opcode == "text" {
                    preview.clone()
                } else {
                    String::new()
                },
            )),
            _ => None,
        })
        .collect();
    let theirs_ws: Vec<(String, String)> = tshark(
        &ours,
        &format!("websocket && tcp.port == {ws}"),
        &["websocket.opcode", "websocket.payload.text"],
    )
    .iter()
    .flat_map(|r| {
        let texts: Vec<String> = r[1].split('|').map(str::to_string).collect();
        r[0].split('|')
            .enumerate()
            .map(|(i, op)| {
                let text = if op == "1" {
                    texts.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                };
                (op.to_string(), text)
            })
            .collect::<Vec<_>>()
    })
    .collect();
    assert_eq!(ours_ws, theirs_ws);
    assert!(ours_ws.contains(&("1".into(), "hello from python".into())));
    assert!(
        ours_ws
            .iter()
            .any(|(_, t)| t.contains("hello from the browser")),
        "{ours_ws:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_limit_stops_by_itself_and_a_file_without_secrets_is_not_private() {
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let port = lab.port(Protocol::Http);
    let mut capture = LiveCapture::start(CaptureConfig {
        ports: vec![port],
        count: Some(3),
        ..CaptureConfig::default()
    })
    .unwrap();
    let url = format!("http://127.0.0.1:{port}/echo?msg=x");
    assert_eq!(curl(&["-s", &url]).await, "x");
    for _ in 0..100 {
        if capture.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(capture.is_finished());
    let stats = capture.stop().unwrap();
    assert_eq!((stats.kept, stats.stop), (3, Some(StopReason::Count)));
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("three.pcapng");
    let stats = capture
        .finish(Some(b"CLIENT_RANDOM 00 11\n"), &file)
        .unwrap();
    assert_eq!(stats.secrets_sessions, 0);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let report = inspect(&std::fs::read(&file).unwrap(), &Filter::default());
    assert_eq!((report.packets, report.has_secrets), (3, false));
    // The three packets are the TCP handshake, the SYN first.
    assert!(matches!(
        report.connections[0].events[0].event,
        Event::TcpSyn
    ));
}

#[test]
fn an_unknown_interface_is_named_with_the_ones_that_exist() {
    let err = LiveCapture::start(CaptureConfig {
        interface: "nosuch0".into(),
        ..CaptureConfig::default()
    })
    .unwrap_err();
    assert!(matches!(err, CaptureError::UnknownInterface { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with("no network interface named `nosuch0`; available: ")
            && text.contains("lo"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snap_length_cuts_long_packets_and_keeps_their_length() {
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let port = lab.port(Protocol::Http);
    let capture = LiveCapture::start(CaptureConfig {
        ports: vec![port],
        snaplen: 128,
        ..CaptureConfig::default()
    })
    .unwrap();
    let body = "x".repeat(5000);
    let url = format!("http://127.0.0.1:{port}/echo");
    assert_eq!(curl(&["-s", "--data-binary", &body, &url]).await, body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cut.pcapng");
    let stats = capture.finish(None, &file).unwrap();
    let frames = tshark(&file, "frame", &["frame.cap_len", "frame.len"]);
    assert_eq!(frames.len() as u64, stats.kept);
    let lengths: Vec<(u64, u64)> = frames
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert!(lengths.iter().all(|&(cap, _)| cap <= 128), "{lengths:?}");
    let cut = lengths.iter().filter(|&&(cap, len)| len > cap).count() as u64;
    assert!(cut >= 2, "request and response bodies: {lengths:?}");
    assert_eq!(stats.truncated, cut);
    assert!(
        lengths.iter().map(|&(_, len)| len).sum::<u64>() > 10_000,
        "original lengths kept"
    );
}

#[test]
fn a_stop_handle_stops_an_idle_capture_at_once() {
    let capture = LiveCapture::start(CaptureConfig {
        ports: vec![9],
        duration: Some(Duration::from_secs(3600)),
        ..CaptureConfig::default()
    })
    .unwrap();
    let handle = capture.stop_handle();
    std::thread::spawn(move || handle.stop());
    let asked = std::time::Instant::now();
    while !capture.is_finished() {
        assert!(asked.elapsed() < Duration::from_secs(5), "still running");
        std::thread::sleep(Duration::from_millis(5));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idle.pcapng");
    let stats = capture.finish(None, &file).unwrap();
    assert_eq!((stats.kept, stats.stop), (0, Some(StopReason::Stopped)));
    let report = inspect(&std::fs::read(&file).unwrap(), &Filter::default());
    assert_eq!((report.packets, report.file_error), (0, None));
}
