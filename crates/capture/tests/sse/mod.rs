//! `inspect` on the SSE app's event stream as `curl -N` received it: the events (ids, types,
//! retry) and heartbeat comments decoded from the capture must be the ones in the body curl
//! printed.

use std::time::Duration;

use protolab_capture::{inspect, Event, Filter};
use protolab_server::Protocol;
use protolab_test_support::{run, Peer, TestLab};

use super::{start_capture, stop_capture, tempfile_dir};

/// One item of an event stream, in the order it arrived: an event block's (id, event type), or
/// a comment line.
#[derive(Debug, PartialEq)]
enum Item {
    Event(Option<String>, Option<String>),
    Comment,
}

/// The items of `body`, read line by line as a client dispatches them: a comment when its line
/// ends, an event when the blank line after it does.
fn items(body: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let (mut id, mut kind, mut any) = (None, None, false);
    for line in body.lines() {
        if line.is_empty() {
            if any {
                items.push(Item::Event(id.take(), kind.take()));
            }
            any = false;
        } else if line.starts_with(':') {
            items.push(Item::Comment);
        } else {
            any = true;
            if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_string());
            }
        }
    }
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_and_heartbeats_are_the_ones_curl_received() {
    let dir = tempfile_dir("sse");
    let lab = TestLab::start(&[Protocol::Sse], |c| {
        c.push_interval = Duration::from_millis(150);
    })
    .await;
    let port = lab.port(Protocol::Sse);
    let file = dir.join("sse.pcapng");
    let capture = start_capture(&[port], &file);
    let url = format!("http://127.0.0.1:{port}/events?heartbeat_ms=100");
    // curl stops the stream itself after 1.5 s (exit 28): the body up to then is the record.
    let out = run(
        Peer::Curl.command(["-sN", "--max-time", "1.5", url.as_str()]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(out.status.code(), Some(28), "{out:?}");
    stop_capture(capture).await;
    let body = String::from_utf8(out.stdout).unwrap();
    let theirs = items(&body);
    let events_curl_printed = theirs
        .iter()
        .filter(|i| matches!(i, Item::Event(..)))
        .count();
    assert!(events_curl_printed >= 4, "{body}");
    assert!(theirs.len() - events_curl_printed >= 3, "{body}");

    let report = inspect(&std::fs::read(&file).unwrap(), &Filter::default());
    assert_eq!(report.connections.len(), 1, "{report:#?}");
    let events: Vec<&Event> = report.connections[0]
        .events
        .iter()
        .map(|t| &t.event)
        .collect();
    let ours: Vec<Item> = events
        .iter()
        .filter_map(|e| match e {
            Event::SseEvent { id, event_type, .. } => {
                Some(Item::Event(id.clone(), event_type.clone()))
            }
            Event::SseComment { .. } => Some(Item::Comment),
            _ => None,
        })
        .collect();
    // curl's --max-time can end it while the server's next write is already on the wire: the
    // capture then holds a heartbeat or event (two when a push and a heartbeat fell due
    // together) that curl never read. Everything curl printed must be there, in order.
    assert!(
        ours.starts_with(&theirs) && ours.len() - theirs.len() <= 2,
        "capture: {ours:?}\ncurl: {theirs:?}"
    );
    // The stream opens with its retry, which the first event carries.
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::SseEvent {
                retry_ms: Some(1000),
                ..
            }
        )),
        "{events:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
