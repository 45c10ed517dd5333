// `protolab up` against WebSocket clients that try to make it hold memory: frame headers that
// announce large payloads, and many large messages left unfinished. The lab runs as its own
// process so its memory can be read from /proc while a real client keeps echoing.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protolab_test_support::{Background, Peer, RawWs};
use protolab_wire::ws::{write_header, FrameHeader, OpCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MIB: u64 = 1 << 20;
/// How long no byte may arrive before RSS counts as held.
const SETTLED: Duration = Duration::from_millis(500);

/// `protolab up --only ws` on a free port with `extra` flags; the child, its port, and its
/// stderr lines as they come.
fn start_ws_lab(
    home: &std::path::Path,
    extra: &[&str],
) -> (Child, u16, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home)
        .env_remove("RUST_LOG")
        .args(["up", "--only", "ws", "--ws-port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protolab starts");
    let stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, errors) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut port = None;
    for line in stdout.lines().map_while(Result::ok) {
        if line == "ready" {
            break;
        }
        if let Some(rest) = line.strip_prefix("ws ") {
            port = rest
                .split_whitespace()
                .next()
                .and_then(|url| url.rsplit(':').next())
                .and_then(|p| p.trim_end_matches("/ws").parse().ok());
        }
    }
    let port = port.expect("a ws line before ready");
    (child, port, errors)
}

/// (VmSize, VmRSS) of `pid` in bytes.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmSize:"), field("VmRSS:"))
}

/// A masked binary frame header announcing `len` bytes.
fn header(len: u64, fin: bool) -> Vec<u8> {
    let mut out = Vec::new();
    write_header(
        &mut out,
        &FrameHeader {
            fin,
            rsv: 0,
            opcode: OpCode::Binary,
            mask: Some([1, 2, 3, 4]),
            payload_len: len,
        },
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_headers_alone_reserve_no_memory() {
    let home = tempfile::tempdir().expect("home");
    let (mut child, port, _) = start_ws_lab(home.path(), &[]);
    let (size_before, rss_before) = memory(child.id());
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut raw = RawWs::connect(port).await;
        let mut bytes = header(15 * MIB, true);
        bytes.extend_from_slice(&[0u8; 1000]);
        raw.send_raw(&bytes).await;
        clients.push(raw);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (size_after, rss_after) = memory(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let grew = size_after.saturating_sub(size_before);
    eprintln!(
        "100 headers announcing 15 MiB: address space +{} MiB, RSS +{} MiB",
        grew / MIB,
        rss_after.saturating_sub(rss_before) / MIB
    );
    // Reserving from the announced length took 100 × 15 MiB of address space.
    assert!(
        grew < 200 * MIB,
        "the lab reserved {} MiB of address space for 100 frame headers",
        grew / MIB
    );
}

/// What one hostile client saw.
#[derive(Debug, Default)]
struct Outcome {
    closed_with: Option<u16>,
}

/// Connects, announces a `15 MiB` frame and sends 14 MiB of it in pieces, then holds the
/// connection without finishing it until `stop`; returns the close code the lab sent, if any.
async fn hold_a_large_message(port: u16, sent: Arc<AtomicUsize>, stop: Arc<AtomicBool>) -> Outcome {
    let raw = RawWs::connect(port).await;
    let (mut reader, mut writer) = raw.stream.into_split();
    let feed = async move {
        if writer.write_all(&header(15 * MIB, true)).await.is_err() {
            return;
        }
        let piece = vec![0x5au8; 256 << 10];
        for _ in 0..56 {
            if writer.write_all(&piece).await.is_err() {
                return;
            }
            sent.fetch_add(piece.len(), Ordering::Relaxed);
        }
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let watch = async move {
        let mut got = Vec::new();
        let mut chunk = [0u8; 512];
        while let Ok(n @ 1..) = reader.read(&mut chunk).await {
            got.extend_from_slice(&chunk[..n]);
        }
        got
    };
    let (_, got) = tokio::join!(feed, watch);
    // Only a close frame can come back: the message is never finished.
    let closed_with =
        (got.len() >= 4 && got[0] == 0x88).then(|| u16::from_be_bytes([got[2], got[3]]));
    Outcome { closed_with }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_budget_bounds_memory_while_another_client_keeps_echoing() {
    let budget = 64 * MIB;
    let home = tempfile::tempdir().expect("home");
    let (mut child, port, stderr) = start_ws_lab(home.path(), &["--max-buffered", "64MiB"]);
    let pid = child.id();
    let (_, rss_before) = memory(pid);
    let url = format!("ws://127.0.0.1:{port}/ws");
    let mut canary = Background::spawn(Peer::PythonWs.command([
        "soak",
        &url,
        "--seconds",
        "8",
        "--interval",
        "0.05",
    ]));

    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(hold_a_large_message(
                port,
                Arc::clone(&sent),
                Arc::clone(&stop),
            ))
        })
        .collect();
    // Peak RSS while 40 × 14 MiB arrive, and what is held once nothing more arrives: a
    // held message grows by doubling, and jemalloc purges the block it grew out of 100 ms
    // later (`.cargo/config.toml`), so the peak while bytes arrive carries blocks about to
    // go back; what is held after that is the budget's doing.
    let (mut peak, mut held) = (rss_before, 0);
    let start = Instant::now();
    let (mut last_sent, mut last_change) = (0, Instant::now());
    while start.elapsed() < Duration::from_secs(6)
        || (last_change.elapsed() < SETTLED && start.elapsed() < Duration::from_secs(20))
    {
        let rss = memory(pid).1;
        peak = peak.max(rss);
        let now_sent = sent.load(Ordering::Relaxed);
        if now_sent != last_sent {
            (last_sent, last_change, held) = (now_sent, Instant::now(), 0);
        } else if last_change.elapsed() >= SETTLED {
            held = held.max(rss);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut codes = Vec::new();
    for a in attackers {
        codes.push(a.await.expect("attacker task").closed_with);
    }
    assert_eq!(
        canary.next_json(Duration::from_secs(20)).await["connected"],
        true
    );
    let canary = canary.next_json(Duration::from_secs(20)).await;
    let rss_after = memory(pid).1;
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = stderr.try_iter().collect();

    let refused = codes.iter().filter(|c| **c == Some(1013)).count();
    eprintln!(
        "40 clients × 14 MiB unfinished, budget 64 MiB: sent {} MiB, RSS {} → peak {} MiB, held {} MiB ({} after), {refused} refused with 1013, codes {codes:?}",
        sent.load(Ordering::Relaxed) as u64 / MIB,
        rss_before / MIB,
        peak / MIB,
        held / MIB,
        rss_after / MIB
    );
    assert!(held > 0, "the clients were still sending after 20 s");
    assert!(
        held - rss_before < budget + 48 * MIB,
        "RSS held {} MiB more once the clients stopped sending, with a 64 MiB budget",
        (held - rss_before) / MIB
    );
    // Blocks waiting for their purge come on top while bytes arrive (77–134 MiB measured),
    // never the 560 MiB the 40 clients sent.
    assert!(
        peak - rss_before < 3 * budget,
        "RSS grew by {} MiB with a 64 MiB budget",
        (peak - rss_before) / MIB
    );
    assert!(
        refused >= 20,
        "only {refused} of 40 were refused: {codes:?}"
    );
    assert!(
        codes.iter().all(|c| matches!(c, None | Some(1013))),
        "{codes:?}"
    );
    assert!(
        log.iter().any(|l| l.contains("budget exhausted")),
        "the refusal was not logged: {log:?}"
    );
    let echoed = canary["echoed"].as_u64().unwrap_or(0);
    assert!(echoed > 50, "the canary hardly ran: {canary}");
    assert_eq!(canary["sent"], canary["echoed"], "{canary}");
    assert_eq!(
        canary["errors"].as_array().map(Vec::len),
        Some(0),
        "{canary}"
    );
}

/// What a burst of connections used goes back to the kernel within a bounded time of their
/// close (issue 14: RSS back within a few MiB of where it started). Polled, so a slower purge
/// passes as long as it lands inside `WITHIN`; the figures are printed either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_goes_back_to_the_kernel_within_seconds_of_close() {
    const CONNECTIONS: u64 = 400;
    // What stays is the lab's own growth on first use (runtime and allocator metadata): 2.5-3.5
    // MiB after 400 connections with any purge setting, 146 MiB with jemalloc's defaults.
    const SLACK: u64 = 8 * MIB;
    const WITHIN: Duration = Duration::from_secs(3);
    let home = tempfile::tempdir().expect("home");
    let (mut child, port, _) = start_ws_lab(home.path(), &[]);
    let pid = child.id();
    let (_, rss_start) = memory(pid);
    let url = format!("ws://127.0.0.1:{port}/ws");
    // Each connection echoes one 64 KiB message, so the lab's buffers, not just its
    // per-connection state, have to be given back.
    let count = CONNECTIONS.to_string();
    let mut peer = Background::spawn(Peer::PythonWs.command([
        "idle",
        &url,
        "--count",
        &count,
        "--message-bytes",
        "65536",
        "--seconds",
        "0.5",
    ]));
    assert_eq!(
        peer.next_json(Duration::from_secs(60)).await["idle"],
        CONNECTIONS
    );
    let rss_open = memory(pid).1;
    assert_eq!(
        peer.next_json(Duration::from_secs(60)).await["closed"],
        CONNECTIONS
    );
    let closed = Instant::now();
    let mut rss_now = memory(pid).1;
    while rss_now > rss_start + SLACK && closed.elapsed() < WITHIN {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rss_now = memory(pid).1;
    }
    let waited = closed.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let figures = format!(
        "RSS {:.1} MiB at start, {:.1} MiB with {CONNECTIONS} open, {:.1} MiB {:.2} s after they closed",
        rss_start as f64 / MIB as f64,
        rss_open as f64 / MIB as f64,
        rss_now as f64 / MIB as f64,
        waited.as_secs_f64()
    );
    eprintln!("{figures}");
    // Without this the test could not tell a purge from connections that used nothing.
    assert!(
        rss_open > rss_start + 8 * SLACK,
        "the connections hardly used memory: {figures}"
    );
    assert!(
        rss_now <= rss_start + SLACK,
        "memory was not given back within {WITHIN:?}: {figures}"
    );
}
