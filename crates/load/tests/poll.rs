//! The polling clients (`poll://`, `long-poll://`) against the real lab's SSE app: every
//! event the lab pushed during the run is delivered once (counted against the feed's own ids
//! read before and after), and bytes per event are checked by arithmetic from an answer the
//! test reads itself.

#![allow(
    clippy::unwrap_used,
    reason = "set-up steps of the tests: a failure should panic right there"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use protolab_load::{run, Config, Report, Target, Workload};
use protolab_server::Protocol;
use protolab_test_support::TestLab;

const PUSH_EVERY: Duration = Duration::from_millis(20);

fn authority(lab: &TestLab) -> String {
    let url = lab.url(Protocol::Sse);
    url.split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

/// One `GET` on a fresh connection (`Connection: close`): the whole response as read.
fn get(authority: &str, path: &str) -> Vec<u8> {
    let mut tcp = TcpStream::connect(authority).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    tcp.read_to_end(&mut response).unwrap();
    response
}

fn body(response: &[u8]) -> serde_json::Value {
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    serde_json::from_slice(&response[at..]).unwrap()
}

/// The feed's newest id as `(epoch, seq)`.
fn newest(authority: &str) -> (u64, u64) {
    let answer = body(&get(authority, "/poll"));
    let last = answer["last"].as_str().unwrap();
    let (epoch, seq) = last.split_once('-').unwrap();
    (epoch.parse().unwrap(), seq.parse().unwrap())
}

async fn poll_run(lab: &TestLab, scheme: &str, path: &str) -> (Report, u64) {
    let authority = authority(lab);
    let before = newest(&authority);
    let mut config = Config::new(Target::parse(&format!("{scheme}://{authority}{path}")).unwrap());
    config.workload = Workload::Push;
    config.connections = 1;
    config.push_interval = PUSH_EVERY;
    config.duration = Duration::from_millis(1500);
    let r = run(config).await.unwrap();
    let after = newest(&authority);
    assert_eq!(before.0, after.0, "the feed's epoch changed");
    (r, after.1 - before.1)
}

/// Bytes of one answer besides its events (head, `{"events":[`, `],"last":…}`), and bytes of
/// one event besides its data (`{"id":"…","data":` … `}` and a comma), from an answer with
/// at least two events read here.
fn answer_arithmetic(authority: &str) -> (f64, f64) {
    let (epoch, seq) = newest(authority);
    std::thread::sleep(PUSH_EVERY * 5);
    let response = get(authority, &format!("/poll?after={epoch}-{seq}"));
    let answer = body(&response);
    let events = answer["events"].as_array().unwrap();
    assert!(events.len() >= 2, "{answer}");
    let n = events.len();
    let entries: usize = events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap().len())
        .sum::<usize>()
        + (n - 1);
    let data: usize = events.iter().map(|e| e["data"].to_string().len()).sum();
    // Our own request said `Connection: close`; the client's keep-alive answers say nothing
    // of it, so that header (`connection: close\r\n`, 19 bytes) is not in theirs.
    let close_header = if String::from_utf8_lossy(&response)
        .to_ascii_lowercase()
        .contains("connection: close\r\n")
    {
        19
    } else {
        0
    };
    let per_answer = (response.len() - entries - close_header) as f64;
    let per_event = (entries - data) as f64 / n as f64;
    (per_answer, per_event)
}

fn check(r: &Report, pushed: u64, per_answer: f64, per_event: f64) {
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    let polls = r.polls.unwrap();
    assert_eq!(polls.missed_events, 0, "{polls:?}");
    // Each event the feed pushed while the client polled, once: none twice (more than
    // pushed), none skipped (the client checks ids follow each other; a few at the end may
    // still be in flight when the run stops).
    assert!(
        r.messages <= pushed && r.messages + 6 >= pushed,
        "{} delivered, {pushed} pushed: {r:?}",
        r.messages
    );
    assert!(r.messages >= 40, "{r:?}");
    // Received per event: its data and entry, plus its share of the answers' heads and JSON
    // frame (one answer per request). Ids and Content-Length grow a digit now and then.
    let requests_per_event = polls.per_event.unwrap();
    let payload = r.bytes.payload_received_per_message.unwrap();
    let expected = payload + per_event + per_answer * requests_per_event;
    let got = r.bytes.received_per_message.unwrap();
    assert!(
        (got - expected).abs() <= 2.0 * (1.0 + requests_per_event) + 0.01 * expected,
        "received {got} per event, expected {expected} (answer {per_answer}, event {per_event}, {requests_per_event} requests per event): {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_delivers_every_event_once_and_counts_its_bytes() {
    let lab = TestLab::start(&[Protocol::Sse], |c| c.push_interval = PUSH_EVERY).await;
    let (per_answer, per_event) = answer_arithmetic(&authority(&lab));

    let (r, pushed) = poll_run(&lab, "poll", "/poll").await;
    check(&r, pushed, per_answer, per_event);
    let polls = r.polls.unwrap();
    // One request every 20 ms, the feed pushing every 20 ms: about one per event (the
    // machine is shared: leave room), some empty.
    assert!((0.5..=2.0).contains(&polls.per_event.unwrap()), "{polls:?}");
    assert!(polls.requests > 40, "{polls:?}");

    let (r, pushed) = poll_run(&lab, "long-poll", "/poll/long").await;
    check(&r, pushed, per_answer, per_event);
    let polls = r.polls.unwrap();
    // Held until the next event: at most one request per event (answers may carry two),
    // and none held until the lab's timeout.
    assert!(polls.per_event.unwrap() <= 1.05, "{polls:?}");
    assert_eq!(polls.empty, 0, "{polls:?}");
    let latency = r.latency.unwrap();
    assert!(latency.p50_us < 50_000.0, "{latency:?}");
}

#[tokio::test]
async fn polling_urls_are_for_the_push_workload_only() {
    let mut config = Config::new(Target::parse("poll://127.0.0.1:9/poll").unwrap());
    config.workload = Workload::Echo;
    let err = run(config).await.unwrap_err().to_string();
    assert!(err.contains("--workload push"), "{err}");
}
