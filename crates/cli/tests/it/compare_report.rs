// The compare report read the way a person reads it, in headless Chromium at 1024 px: no
// console errors, findings whose every number is results.json's, charts that drew (the
// ratios between protocols one row per ratio at results.json's estimate), no sideways scroll.
// And pushes as a client sees them (tshark on loopback): delivered on schedule, each charged
// its own frame's bytes.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use protolab_test_support::{require, Peer, TsharkCapture};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::results::{compare_json, number, run_of};

/// Chromium driven one command at a time (tests/peers/chromium_page.py --drive).
struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    fn open(url: &str) -> Self {
        let mut child = Peer::Chromium
            .command([url, "--drive"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            _child: child,
            stdin,
            stdout,
        }
    }

    async fn command(&mut self, command: Value) -> Value {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        let line = tokio::time::timeout(Duration::from_secs(60), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command}"))
            .unwrap()
            .unwrap_or_else(|| panic!("chromium_page.py exited before answering {command}"));
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["ok"], true, "{command}: {answer}");
        answer
    }

    /// `js` evaluated in the page; it returns JSON text, parsed here.
    async fn eval(&mut self, js: &str) -> Value {
        let answer = self.command(json!({"cmd": "eval", "js": js})).await;
        serde_json::from_str(answer["value"].as_str().unwrap()).unwrap()
    }
}

/// Each finding's numbers as results.json gives them, computed here from the file.
fn expected_findings(results: &Value) -> HashMap<String, Vec<f64>> {
    let settings = &results["settings"];
    let sizes: Vec<u64> = settings["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let (smallest, largest) = (sizes[0], *sizes.iter().max().unwrap());
    let runs = results["runs"].as_array().unwrap();
    let run = |protocol: &str, workload: &str, size: u64| {
        runs.iter()
            .find(|r| r["protocol"] == protocol && r["workload"] == workload && r["size"] == size)
            .unwrap()
    };
    let or0 = |v: &Value| v.as_f64().unwrap_or(0.0);
    let handshake = |r: &Value| {
        let b = &r["report"]["bytes"];
        or0(&b["handshake_sent_per_connection"])
            + or0(&b["handshake_received_per_connection"])
            + or0(&b["post_handshake_tls_received_per_connection"])
    };
    let mut out = HashMap::new();
    for (id, plain, tls) in [("tls-http", "http", "https"), ("tls-ws", "ws", "wss")] {
        let (p, t) = (
            run(plain, "connect", smallest),
            run(tls, "connect", smallest),
        );
        let rt = |r: &Value| number(&r["report"]["round_trips_to_first_echo"]);
        let cpu = |r: &Value| number(&r["cpu"]["client_us_per_1k"]);
        let rate = |r: &Value| number(&r["report"]["throughput_per_sec"]);
        out.insert(
            id.to_owned(),
            vec![
                rt(t) - rt(p),
                (handshake(t) - handshake(p)) / 1000.0,
                cpu(t) / cpu(p),
                rate(t),
                rate(p),
            ],
        );
    }
    let bytes = |p: &str, key: &str| number(&run(p, "echo", smallest)["report"]["bytes"][key]);
    out.insert(
        "framing".to_owned(),
        vec![
            bytes("ws", "sent_per_message"),
            bytes("ws", "received_per_message"),
            bytes("http", "sent_per_message"),
            bytes("http", "received_per_message"),
            bytes("wss", "sent_per_message") - bytes("ws", "sent_per_message"),
            bytes("wss", "received_per_message") - bytes("ws", "received_per_message"),
        ],
    );
    let mut mbs: Vec<f64> = ["http", "https", "ws", "wss"]
        .iter()
        .map(|p| {
            number(&run(p, "echo", largest)["report"]["throughput_per_sec"]) * largest as f64 / 1e6
        })
        .collect();
    mbs.sort_by(|a, b| b.total_cmp(a));
    let ratio = mbs[0] / mbs[mbs.len() - 1];
    mbs.push(ratio);
    out.insert("throughput".to_owned(), mbs);
    let p50s: Vec<f64> = ["http", "https", "ws", "wss"]
        .iter()
        .map(|p| number(&run(p, "echo", smallest)["report"]["latency"]["p50_us"]))
        .collect();
    out.insert(
        "latency".to_owned(),
        vec![
            p50s.iter().copied().fold(f64::INFINITY, f64::min),
            p50s.iter().copied().fold(0.0, f64::max),
        ],
    );
    let nominal = 1000.0 / number(&settings["push_interval_ms"]) * number(&settings["connections"]);
    let mut push = vec![nominal];
    for r in runs.iter().filter(|r| r["workload"] == "push") {
        let rep = &r["report"];
        push.push(number(&rep["throughput_per_sec"]));
        push.push(number(&rep["bytes"]["received_per_message"]));
        push.push(number(&rep["bytes"]["payload_received_per_message"]));
    }
    out.insert("push".to_owned(), push);
    out
}

/// `shown` (as the page prints it: `+1`, `1,234`, `−0.5`) read back as a number, and half a
/// unit of its last digit: how far from the exact value its rounding may be.
fn read_shown(shown: &str) -> (f64, f64) {
    let text: String = shown
        .replace('−', "-")
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    (
        text.parse()
            .unwrap_or_else(|_| panic!("`{shown}` is not a number")),
        0.5 * 10f64.powi(-i32::try_from(decimals).unwrap()) + 1e-9,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_opens_with_findings_from_its_own_results_and_fits_1024_px() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let results = compare_json(
        home.path(),
        &[
            "--quick",
            "--sizes",
            "32,64KiB",
            "--duration",
            "12s",
            "--rounds",
            "2",
            "-c",
            "2",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    );
    let html = out_dir.join("index.html");
    let url = format!("file://{}", html.display());
    let mut browser = Browser::open(&url);
    browser
        .command(json!({"cmd": "viewport", "width": 1024, "height": 800}))
        .await;
    browser
        .command(json!({"cmd": "wait", "js": "document.readyState === 'complete' && document.getElementById('findings') !== null", "timeout": 20}))
        .await;

    let console = browser.command(json!({"cmd": "console"})).await;
    let errors: Vec<&Value> = console["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["level"] == "error")
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // No sideways scroll at 1024 px: nothing is wider than the viewport.
    let width = browser
        .eval("JSON.stringify({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth, widest: [...document.querySelectorAll('table')].map(t => t.getBoundingClientRect().right).reduce((a, b) => Math.max(a, b), 0)})")
        .await;
    assert!(
        number(&width["client"]) >= 1000.0,
        "the viewport is not 1024 px: {width}"
    );
    assert!(
        number(&width["scroll"]) <= number(&width["client"]),
        "the page scrolls sideways at 1024 px: {width}"
    );

    // The findings come first, and each of their numbers is results.json's.
    let findings = browser
        .eval("JSON.stringify({first: document.querySelector('h2').textContent, items: [...document.querySelectorAll('#findings li')].map(li => ({id: li.dataset.finding, text: li.textContent, numbers: [...li.querySelectorAll('data')].map(d => [Number(d.value), d.textContent])}))})")
        .await;
    assert_eq!(findings["first"], "What this run found", "{findings}");
    let expected = expected_findings(&results);
    let items = findings["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    for id in expected.keys() {
        assert!(ids.contains(&id.as_str()), "no `{id}` finding: {findings}");
    }
    for item in items {
        let id = item["id"].as_str().unwrap();
        let want = &expected[id];
        let got = item["numbers"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{id}: {item}");
        for (pair, want) in got.iter().zip(want) {
            let value = number(&pair[0]);
            assert!(
                (value - want).abs() <= want.abs() * 1e-9 + 1e-9,
                "{id}: {value} in the page, {want} from results.json: {}",
                item["text"]
            );
            let (shown, slack) = read_shown(pair[1].as_str().unwrap());
            assert!(
                (shown - value).abs() <= slack,
                "{id}: shows {shown} for {value}: {}",
                item["text"]
            );
        }
    }

    // The warnings follow the findings, one item each.
    let caveats = browser
        .eval("JSON.stringify({follows: document.getElementById('findings').compareDocumentPosition(document.getElementById('caveats')) === Node.DOCUMENT_POSITION_FOLLOWING, items: document.querySelectorAll('#caveats li').length, all_after: document.querySelectorAll('#findings ~ * .warn, #findings ~ .warn').length === document.querySelectorAll('.warn').length})")
        .await;
    let warnings = results["warnings"].as_array().unwrap();
    assert!(
        !warnings.is_empty(),
        "push over plain HTTP warns: {results}"
    );
    assert_eq!(caveats["follows"], true, "{caveats}");
    assert_eq!(
        caveats["all_after"], true,
        "a warning above the findings: {caveats}"
    );
    assert_eq!(
        number(&caveats["items"]),
        warnings.len() as f64,
        "{caveats}"
    );

    // Charts drew: every SVG has a size and marks, the CDFs and the waterfall's time axis.
    let charts = browser
        .eval("JSON.stringify([...document.querySelectorAll('svg')].map(g => { const b = g.getBoundingClientRect(); return {label: g.getAttribute('aria-label'), w: b.width, h: b.height, marks: g.querySelectorAll('rect,polyline,line').length, lines: g.querySelectorAll('polyline').length, text: g.textContent}; }))")
        .await;
    let charts = charts.as_array().unwrap();
    assert!(charts.len() >= 8, "{} charts", charts.len());
    for c in charts {
        assert!(
            number(&c["w"]) > 100.0 && number(&c["h"]) > 50.0 && number(&c["marks"]) > 2.0,
            "a chart drew nothing: {c}"
        );
    }
    let cdfs: Vec<&Value> = charts
        .iter()
        .filter(|c| c["label"].as_str().unwrap_or("").contains("latency CDF"))
        .collect();
    // connect, echo at two sizes, push.
    assert_eq!(cdfs.len(), 4, "{charts:?}");
    for c in &cdfs {
        assert!(number(&c["lines"]) >= 2.0, "{c}");
        assert!(c["text"].as_str().unwrap().contains("n = "), "{c}");
    }
    let waterfall = charts
        .iter()
        .find(|c| c["label"] == "handshake waterfall")
        .unwrap();
    let text = waterfall["text"].as_str().unwrap();
    for part in ["TCP", "TLS", "upgrade", "first echo", "time since"] {
        assert!(text.contains(part), "waterfall without `{part}`: {text}");
    }

    // The ratios chart has a row per ratio results.json holds, at its estimate, with a dot
    // per round.
    let rows = browser
        .eval("JSON.stringify([...document.querySelectorAll('svg g.ratio')].map(g => ({label: g.dataset.label, estimate: Number(g.dataset.estimate), rounds: g.querySelectorAll('circle.round').length})))")
        .await;
    let rows = rows.as_array().unwrap();
    let ratios = results["ratios"].as_array().unwrap();
    assert!(!ratios.is_empty(), "no ratios in results.json");
    assert_eq!(rows.len(), ratios.len(), "{rows:?}");
    for (row, ratio) in rows.iter().zip(ratios) {
        let estimate = number(&ratio["estimate"]);
        assert!(
            (number(&row["estimate"]) - estimate).abs() <= estimate.abs() * 1e-9,
            "{row} against {ratio}"
        );
        let label = row["label"].as_str().unwrap();
        for part in ["protocol", "against"] {
            assert!(
                label.contains(ratio[part].as_str().unwrap()),
                "{label}: {ratio}"
            );
        }
        assert_eq!(
            row["rounds"].as_u64(),
            Some(ratio["spread"]["rounds"].as_array().unwrap().len() as u64),
            "{row}: {ratio}"
        );
    }

    // Figures read as numbers: thousands separated, on one line each.
    let cells = browser
        .eval("JSON.stringify([...document.querySelectorAll('table:not(.settings) td')].filter(td => !td.classList.contains('note')).map(td => [td.textContent, td.getBoundingClientRect().height]))")
        .await;
    let cells = cells.as_array().unwrap();
    assert!(cells.len() > 50, "{} table cells", cells.len());
    let line = cells
        .iter()
        .map(|c| number(&c[1]))
        .fold(f64::INFINITY, f64::min);
    for c in cells {
        let text = c[0].as_str().unwrap();
        let run_of_digits = text
            .split(|ch: char| !ch.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(
            run_of_digits < 4,
            "`{text}`: a number without thousands separators"
        );
        assert!(number(&c[1]) < line * 1.5, "`{text}` wraps");
    }

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "no scripts in the report");
}

/// Per server → client WebSocket text frame on `port`: its connection, arrival time and
/// payload length, from tshark (the lab's port is decoded as HTTP so the upgrade, and the
/// WebSocket frames after it, are dissected).
fn tshark_pushes(capture: &Path, port: u16) -> Vec<(u64, f64, u64)> {
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .arg("-r")
        .arg(capture)
        .args([
            "-d",
            &format!("tcp.port=={port},http"),
            "-Y",
            &format!("tcp.srcport == {port} && websocket.opcode == 1"),
            "-T",
            "fields",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=;",
            "-e",
            "tcp.stream",
            "-e",
            "frame.time_relative",
            "-e",
            "websocket.payload_length",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pushes = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (stream, at) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        for len in f[2].split(';') {
            pushes.push((stream, at, len.parse().unwrap()));
        }
    }
    pushes
}

#[test]
fn pushes_keep_their_schedule_and_carry_their_own_bytes() {
    let home = tempfile::tempdir().unwrap();
    let pcap = home.path().join("push.pcapng");
    let capture = TsharkCapture::start("tcp", &pcap);
    // 8 connections × 100 pushes/s, 2 s per protocol.
    let results = compare_json(
        home.path(),
        &[
            "--protocols",
            "ws,wss",
            "--workloads",
            "push",
            "-c",
            "8",
            "--push-interval",
            "10ms",
            "--duration",
            "4s",
            // one round: the capture is read as 8 connections per protocol
            "--rounds",
            "1",
            "--no-report",
        ],
    );
    capture.stop();
    let nominal_per_connection = 100.0;
    let ws_port: u16 = results["lab"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["protocol"] == "ws")
        .map(|e| {
            e["addr"]
                .as_str()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .port()
        })
        .unwrap();

    // The client's side of the wire: pushes per connection over the time it received them.
    let pushes = tshark_pushes(&pcap, ws_port);
    let mut streams: HashMap<u64, Vec<f64>> = HashMap::new();
    for (stream, at, _) in &pushes {
        streams.entry(*stream).or_default().push(*at);
    }
    assert_eq!(streams.len(), 8, "push connections seen by tshark");
    // Three percent below the schedule at most: a timer re-armed from when it fired, not
    // from the schedule, lost ~11% here.
    const TOLERANCE: f64 = 0.03;
    for (stream, times) in &streams {
        let span = times.last().unwrap() - times.first().unwrap();
        let rate = (times.len() - 1) as f64 / span;
        println!(
            "ws connection {stream}: {} pushes in {span:.3} s = {rate:.1}/s",
            times.len()
        );
        assert!(
            (rate - nominal_per_connection).abs() <= nominal_per_connection * TOLERANCE,
            "connection {stream}: {rate:.1} pushes/s against {nominal_per_connection}/s scheduled"
        );
    }
    let delivered = number(&run_of(&results, "ws", "push")["report"]["throughput_per_sec"]);
    println!("ws push: compare reports {delivered:.1}/s");
    assert!(
        (delivered - 8.0 * nominal_per_connection).abs()
            <= 8.0 * nominal_per_connection * TOLERANCE,
        "compare reports {delivered:.1} pushes/s"
    );

    // The payload the client counted is what tshark saw the server send, on average.
    let mean_payload =
        pushes.iter().map(|(_, _, len)| *len as f64).sum::<f64>() / pushes.len() as f64;
    for protocol in ["ws", "wss"] {
        let b = &run_of(&results, protocol, "push")["report"]["bytes"];
        let payload = number(&b["payload_received_per_message"]);
        assert!(
            (payload - mean_payload).abs() < 1.0,
            "{protocol}: payload {payload} B, tshark saw {mean_payload} B"
        );
    }
    assert_bytes_per_push_are_the_frames(&results);

    // Every millisecond the timer often finds two slots due, so pushes go out and are read
    // in twos and threes: bytes read ahead must still be charged to the pushes they carry.
    let bursts = compare_json(
        home.path(),
        &[
            "--protocols",
            "ws,wss",
            "--workloads",
            "push",
            "-c",
            "4",
            "--push-interval",
            "1ms",
            "--duration",
            "2s",
            "--no-report",
        ],
    );
    assert_bytes_per_push_are_the_frames(&bursts);
}

/// Bytes per push are the frame's own: a server frame of under 126 B payload has a 2-byte
/// header (RFC 6455 §5.2), and under TLS 1.3 each record adds a 5-byte header, the content
/// type and a 16-byte tag (RFC 8446 §5.2); pushes written together may share a record.
fn assert_bytes_per_push_are_the_frames(results: &Value) {
    for protocol in ["ws", "wss"] {
        let b = &run_of(results, protocol, "push")["report"]["bytes"];
        let payload = number(&b["payload_received_per_message"]);
        let above_tls = number(&b["above_tls_received_per_message"]);
        let wire = number(&b["received_per_message"]);
        println!(
            "{protocol} push every {} ms: payload {payload:.2} B, frame {above_tls:.2} B, wire {wire:.2} B",
            results["settings"]["push_interval_ms"]
        );
        assert!(
            (above_tls - (payload + 2.0)).abs() < 1e-6,
            "{protocol}: {above_tls} B a push above TLS for a {payload} B payload"
        );
        let tls = wire - above_tls;
        if protocol == "ws" {
            assert!(tls.abs() < 1e-6, "ws: {wire} B on the wire");
        } else {
            assert!(
                tls > 0.0 && tls <= 22.0 + 1e-6,
                "wss: {tls} B of TLS a push"
            );
        }
    }
}
