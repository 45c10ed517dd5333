//! The SSE app and its polling paths through real clients: curl reading `/events`, Python
//! `requests` posting echoes and polling, headless Chromium's `EventSource` reconnecting
//! across a lab restart.

use std::time::Duration;

use protolab_server::{Lab, LabConfig, Protocol};
use protolab_test_support::{run, run_json, settles, Peer, TestLab};
use serde_json::Value;

use crate::PEER_LIMIT;

/// One event as a client assembles it: its type, the last id, its data lines joined.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) kind: String,
    pub(crate) id: Option<String>,
    pub(crate) data: String,
}

/// What a stream said: events, comments and `retry:` values, in order of arrival.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    pub(crate) events: Vec<Event>,
    pub(crate) comments: Vec<String>,
    pub(crate) retry: Vec<u64>,
}

impl Stream {
    /// Parses an event-stream body as the format defines it (LF line ends, as the lab sends).
    pub(crate) fn parse(body: &str) -> Self {
        let mut stream = Self::default();
        let (mut kind, mut id, mut data) = (String::from("message"), None, Vec::new());
        for line in body.split('\n') {
            if line.is_empty() {
                if !data.is_empty() {
                    stream.events.push(Event {
                        kind: std::mem::replace(&mut kind, "message".into()),
                        id: id.clone(),
                        data: data.join("\n"),
                    });
                    data.clear();
                }
                kind = "message".into();
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                stream.comments.push(comment.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => kind = value.to_string(),
                "data" => data.push(value.to_string()),
                "id" => id = Some(value.to_string()),
                "retry" => stream.retry.push(value.parse().expect("retry is a number")),
                other => panic!("unknown field {other:?} in {line:?}"),
            }
        }
        stream
    }

    pub(crate) fn of_kind(&self, kind: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.kind == kind).collect()
    }

    /// The numbers of the push events, in order.
    pub(crate) fn push_seqs(&self) -> Vec<u64> {
        self.of_kind("message")
            .iter()
            .map(|e| seq(e.id.as_deref().expect("a push event has an id")))
            .collect()
    }
}

/// `EPOCH-SEQ` → (epoch, seq).
pub(crate) fn split_id(id: &str) -> (u64, u64) {
    let (epoch, seq) = id.split_once('-').expect("an id is EPOCH-SEQ");
    (epoch.parse().expect("epoch"), seq.parse().expect("seq"))
}

fn seq(id: &str) -> u64 {
    split_id(id).1
}

pub(crate) fn assert_consecutive(seqs: &[u64], what: &str) {
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{what}: events lost or out of order: {seqs:?}"
    );
}

/// The base URL (`http://127.0.0.1:PORT` or `https://localhost:PORT`) of an app.
pub(crate) fn base(lab: &TestLab, protocol: Protocol) -> String {
    match protocol {
        Protocol::Https => format!("https://localhost:{}", lab.port(protocol)),
        _ => format!("http://127.0.0.1:{}", lab.port(protocol)),
    }
}

/// Reads `url` with `curl -N` for `seconds`; the response head and the body.
pub(crate) async fn curl_events(
    lab: &TestLab,
    url: &str,
    seconds: f64,
    extra: &[&str],
) -> (String, Stream) {
    let ca = lab.ca.to_string_lossy().into_owned();
    let max_time = format!("{seconds}");
    let mut args = vec![
        "-N",
        "-sS",
        "-D",
        "-",
        "--cacert",
        &ca,
        "--max-time",
        &max_time,
    ];
    args.extend_from_slice(extra);
    args.push(url);
    let out = run(Peer::Curl.command(args), PEER_LIMIT).await;
    // 28: the --max-time that ends a stream that never ends by itself.
    assert_eq!(
        out.status.code(),
        Some(28),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8 stream");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {text}"));
    (head.to_ascii_lowercase(), Stream::parse(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reads_numbered_events_retry_and_heartbeats_over_sse_and_https() {
    let lab = TestLab::start(&[Protocol::Sse, Protocol::Https], |c| {
        c.push_interval = Duration::from_millis(300);
    })
    .await;
    for protocol in [Protocol::Sse, Protocol::Https] {
        let url = format!("{}/events?heartbeat_ms=100", base(&lab, protocol));
        let (head, stream) = curl_events(&lab, &url, 1.6, &[]).await;
        assert!(head.starts_with("http/1.1 200"), "{protocol}: {head}");
        assert!(
            head.contains("content-type: text/event-stream"),
            "{protocol}: {head}"
        );
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert_eq!(
            head.contains("strict-transport-security"),
            protocol == Protocol::Https,
            "{head}"
        );
        assert_eq!(stream.retry, vec![1000], "{protocol}");
        let hello = stream.of_kind("hello");
        assert_eq!(hello.len(), 1, "{protocol}: {stream:?}");
        let hello: Value = serde_json::from_str(&hello[0].data).expect("hello is JSON");
        assert_eq!(hello["stream"].as_str().map(str::len), Some(32), "{hello}");
        let seqs = stream.push_seqs();
        assert!(seqs.len() >= 3, "{protocol}: too few pushes {seqs:?}");
        assert_consecutive(&seqs, protocol.name());
        for push in stream.of_kind("message") {
            let data: Value = serde_json::from_str(&push.data).expect("push data is JSON");
            assert_eq!(data["type"], "push");
            assert_eq!(Some(data["id"].as_str().unwrap_or("")), push.id.as_deref());
        }
        // Pushes come every 300 ms, so 100 ms of silence happens between each two.
        assert!(
            stream.comments.iter().filter(|c| *c == "heartbeat").count() >= 3,
            "{protocol}: heartbeats {:?}",
            stream.comments
        );
    }
    // A stream is unregistered when its task sees the close, a moment after curl exits.
    let left = settles(0, Duration::from_secs(5), || lab.lab.sse_streams()).await;
    assert_eq!(left, 0, "closed streams are unregistered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resuming_client_gets_what_it_missed_or_is_told_it_cannot() {
    let lab = TestLab::start(&[Protocol::Sse], |c| {
        c.push_interval = Duration::from_millis(20);
    })
    .await;
    let url = format!("{}/events", base(&lab, Protocol::Sse));
    let (_, first) = curl_events(&lab, &url, 0.5, &[]).await;
    let seen = first.of_kind("message");
    assert!(seen.len() >= 3, "{first:?}");
    let left_at = seen[1].id.clone().expect("an id");
    tokio::time::sleep(Duration::from_millis(400)).await;

    let header = format!("Last-Event-ID: {left_at}");
    let (_, resumed) = curl_events(&lab, &url, 0.4, &["-H", &header]).await;
    let seqs = resumed.push_seqs();
    assert_eq!(seqs.first(), Some(&(seq(&left_at) + 1)), "{resumed:?}");
    assert!(
        seqs.len() > 20,
        "missed events replayed, then live: {seqs:?}"
    );
    assert_consecutive(&seqs, "resumed");
    assert!(resumed.of_kind("gap").is_empty() && resumed.of_kind("reset").is_empty());

    // An id of another feed (a lab that ran before): told, then moved to now.
    let (_, other) = curl_events(&lab, &url, 0.3, &["-H", "Last-Event-ID: 1-5"]).await;
    let reset = other.of_kind("reset");
    assert_eq!(reset.len(), 1, "{other:?}");
    let told: Value = serde_json::from_str(&reset[0].data).expect("JSON");
    assert_eq!(told["last_event_id"], "1-5");
    let moved_to = reset[0]
        .id
        .clone()
        .expect("the reset moves the client's id");
    let after = other.push_seqs();
    assert_eq!(after.first(), Some(&(seq(&moved_to) + 1)), "{other:?}");
    assert_consecutive(&after, "after reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_fell_out_of_the_ring_is_told_what_it_lost() {
    // 1 ms pushes: the 1024-event ring has wrapped after about a second.
    let lab = TestLab::start(&[Protocol::Sse], |c| {
        c.push_interval = Duration::from_millis(1);
    })
    .await;
    let base = base(&lab, Protocol::Sse);
    let poll: Value = reqwest_like_get(&format!("{base}/poll")).await;
    let start = poll["last"].as_str().expect("last").to_string();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let url = format!("{base}/events?last_event_id={start}");
    let (_, stream) = curl_events(&lab, &url, 0.3, &[]).await;
    let gap = stream.of_kind("gap");
    assert_eq!(gap.len(), 1, "{:?}", stream.comments);
    let gap: Value = serde_json::from_str(&gap[0].data).expect("JSON");
    assert_eq!(
        split_id(gap["from"].as_str().expect("from")).1,
        seq(&start) + 1
    );
    let to = split_id(gap["to"].as_str().expect("to")).1;
    let seqs = stream.push_seqs();
    assert_eq!(seqs.first(), Some(&(to + 1)), "the ring follows the gap");
    assert_consecutive(&seqs, "after the gap");
    // The plain poll says the same.
    let polled: Value = reqwest_like_get(&format!("{base}/poll?after={start}")).await;
    assert!(
        polled["gap"]["missed"].as_u64().is_some_and(|n| n > 0),
        "{polled}"
    );
    assert_eq!(polled["events"].as_array().map(Vec::len), Some(1024));
}

/// GET through curl, answer parsed as JSON.
pub(crate) async fn reqwest_like_get(url: &str) -> Value {
    let out = run(Peer::Curl.command(["-sS", "--fail", url]), PEER_LIMIT).await;
    assert!(out.status.success(), "{url}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_posts_an_echo_onto_its_stream_over_sse_and_https() {
    let lab = TestLab::start(&[Protocol::Sse, Protocol::Https], |c| {
        c.push_interval = Duration::from_millis(100);
    })
    .await;
    let ca = lab.ca.to_string_lossy().into_owned();
    for protocol in [Protocol::Sse, Protocol::Https] {
        let cmd = Peer::PythonSse.command(["echo", &base(&lab, protocol), "--cafile", &ca]);
        let result = run_json(cmd, PEER_LIMIT).await;
        assert_eq!(result["post_status"], 202, "{protocol}: {result}");
        assert_eq!(result["echo"], "hello\nfrom python", "{protocol}: {result}");
        assert_eq!(result["retry"], 1000, "{result}");
        assert_eq!(result["late_post_status"], 404, "{protocol}: {result}");
    }
    // A POST without a stream is still the plain echo.
    let out = run(
        Peer::Curl.command([
            "-sS",
            "--data-binary",
            "plain",
            &format!("{}/echo", base(&lab, Protocol::Sse)),
        ]),
        PEER_LIMIT,
    )
    .await;
    assert_eq!(out.stdout, b"plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_polls_and_long_polls_every_event_in_order() {
    let push = Duration::from_millis(100);
    let lab = TestLab::start(&[Protocol::Sse, Protocol::Https], |c| {
        c.push_interval = push
    })
    .await;
    let ca = lab.ca.to_string_lossy().into_owned();
    for protocol in [Protocol::Sse, Protocol::Https] {
        let base = base(&lab, protocol);
        let plain = run_json(
            Peer::PythonSse.command([
                "poll",
                &base,
                "--count",
                "12",
                "--every-ms",
                "30",
                "--cafile",
                &ca,
            ]),
            PEER_LIMIT,
        )
        .await;
        // Slower than the pushes: answers carry several events each.
        let batched = run_json(
            Peer::PythonSse.command([
                "poll",
                &base,
                "--count",
                "8",
                "--every-ms",
                "250",
                "--cafile",
                &ca,
            ]),
            PEER_LIMIT,
        )
        .await;
        assert!(batched["max_batch"].as_u64() > Some(1), "{batched}");
        let long = run_json(
            Peer::PythonSse.command([
                "poll",
                &base,
                "--count",
                "12",
                "--long",
                "--timeout-ms",
                "5000",
                "--cafile",
                &ca,
            ]),
            PEER_LIMIT,
        )
        .await;
        for (what, result) in [
            ("poll", &plain),
            ("batched poll", &batched),
            ("long poll", &long),
        ] {
            let seqs: Vec<u64> = result["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|id| seq(id.as_str().expect("id")))
                .collect();
            assert!(seqs.len() >= 8, "{what} over {protocol}: {result}");
            assert_consecutive(&seqs, what);
            assert_eq!(result["gaps"], 0, "{result}");
            assert_eq!(result["resets"], 0, "{result}");
        }
        // Plain polling asks about three times per event and mostly hears nothing; a long
        // poll is answered once per event, as it is pushed.
        assert!(plain["empty"].as_u64() > Some(5), "{plain}");
        assert_eq!(long["empty"], 0, "{long}");
        assert_eq!(long["timeouts"], 0, "{long}");
        assert!(long["requests"].as_u64() <= Some(14), "{long}");
        eprintln!(
            "{protocol}: median delay poll {} ms, long poll {} ms",
            median(&plain["delays_ms"]),
            median(&long["delays_ms"])
        );
    }
    // A hold shorter than the interval ends in 204s, and nothing is lost across them.
    let slow = run_json(
        Peer::PythonSse.command([
            "poll",
            &base(&lab, Protocol::Sse),
            "--count",
            "3",
            "--long",
            "--timeout-ms",
            "30",
        ]),
        PEER_LIMIT,
    )
    .await;
    assert!(slow["timeouts"].as_u64() > Some(0), "{slow}");
    let ids = slow["ids"].as_array().expect("ids");
    let seqs: Vec<u64> = ids
        .iter()
        .map(|i| seq(i.as_str().unwrap_or("0-0")))
        .collect();
    assert_consecutive(&seqs, "long polls with timeouts");
    // Bad ids are refused with what to send.
    let out = run(
        Peer::Curl.command([
            "-sS",
            "-w",
            "%{http_code}",
            &format!("{}/poll/long?after=12", base(&lab, Protocol::Sse)),
        ]),
        PEER_LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("400") && text.contains("EPOCH-SEQ"),
        "{text}"
    );
}

fn median(delays: &Value) -> f64 {
    let mut v: Vec<f64> = delays
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_eventsource_reconnects_after_a_lab_restart_with_its_last_event_id() {
    let push = Duration::from_millis(200);
    let first = TestLab::start(&[Protocol::Sse], |c| c.push_interval = push).await;
    let port = first.port(Protocol::Sse);
    let mut browser = crate::browser::Browser::open(&format!("http://localhost:{port}/")).await;
    let last_before = browser
        .wait(
            0,
            "(() => { const m = window.received.filter(e => e.type === 'message'); return m.length >= 2 && m[m.length - 1].id; })()",
            "the page received pushes",
        )
        .await;
    let last_before = last_before.as_str().expect("an id").to_string();
    // The page's form POSTs to /echo?stream=… and the echo arrives on its EventSource.
    browser
        .eval(
            0,
            "document.getElementById('text').value = 'from chromium'; document.getElementById('send').requestSubmit(); true",
        )
        .await;
    browser
        .wait(
            0,
            "window.received.some(e => e.type === 'echo' && e.data === 'from chromium')",
            "the echo came back on the stream",
        )
        .await;

    let report = first.lab.shutdown().await;
    assert_eq!(
        report.dropped, 0,
        "streams end at shutdown without the drain timeout"
    );
    // The page's last id is at least the one read before, from the first lab.
    let seen: Value = browser
        .eval(0, "document.getElementById('last').textContent")
        .await;
    let seen = seen.as_str().expect("text").to_string();
    assert!(
        split_id(&seen).1 >= split_id(&last_before).1,
        "{seen} {last_before}"
    );
    let second = Lab::start(LabConfig {
        apps: vec![(Protocol::Sse, port)],
        push_interval: push,
        ..LabConfig::default()
    })
    .await
    .expect("the lab starts again on the same port");

    // EventSource came back by itself and sent its Last-Event-ID; the new lab said it cannot
    // replay across the restart, then pushed on.
    let reset = browser
        .wait(
            0,
            "(() => { const r = window.received.find(e => e.type === 'reset'); const after = r && window.received.slice(window.received.indexOf(r)).filter(e => e.type === 'message'); return r && after.length >= 2 && JSON.stringify({reset: JSON.parse(r.data), id: r.id, after: after.map(e => e.id)}); })()",
            "the page heard the reset and new pushes",
        )
        .await;
    let reset: Value = serde_json::from_str(reset.as_str().expect("JSON text")).expect("JSON");
    let sent = reset["reset"]["last_event_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        split_id(&sent).0 == split_id(&seen).0 && split_id(&sent).1 >= split_id(&seen).1,
        "the browser sent the last id of the first lab ({seen}), not {sent}"
    );
    let after: Vec<u64> = reset["after"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|i| seq(i.as_str().expect("id")))
        .collect();
    assert_eq!(
        after.first(),
        Some(&(seq(reset["id"].as_str().expect("reset id")) + 1))
    );
    assert_consecutive(&after, "after the restart");
    assert_ne!(
        split_id(reset["id"].as_str().unwrap_or("0-0")).0,
        split_id(&sent).0
    );
    assert_eq!(second.sse_streams(), 1);
    second.shutdown().await;
}
