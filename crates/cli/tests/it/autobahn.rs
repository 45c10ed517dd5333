//! Autobahn|Testsuite's fuzzing server against protolab's WebSocket client
//! (`protolab_load::websocket`): cases 1–10 (framing, pings, reserved bits and opcodes,
//! fragmentation, UTF-8, close handling, limits) and 12–13 (permessage-deflate, with our
//! client offering it as browsers do). The client echoes every message back unchanged.

use std::time::{Duration, Instant};

use protolab_load::websocket::{Options, Received, WebSocket, WsError};
use protolab_test_support::autobahn::{self, FuzzingServer};
use protolab_wire::ws::deflate::Offer;

const AGENT: &str = "protolab";

/// NON-STRICT verdicts accepted, each with its reason. None: 6.4.3 and 6.4.4 (text that
/// turns invalid in the middle of a frame arriving in pieces) became OK once the decoder
/// checked UTF-8 per read instead of per frame.
const ALLOWED_NON_STRICT: &[&str] = &[];

async fn one_text(url: &str) -> String {
    let mut ws = WebSocket::connect(url, Options::default())
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    match ws.recv().await {
        Ok(Received::Text(text)) => {
            let _ = ws.recv().await;
            text
        }
        other => panic!("{url}: expected a text message, got {other:?}"),
    }
}

/// Runs one case: echo until the suite closes or the connection fails (failing it is the
/// right answer to many cases; the suite judges).
async fn run_case(url: &str, deflate: bool) -> Result<(), String> {
    let options = Options {
        deflate: deflate.then(Offer::browser),
        timeout: Duration::from_secs(60),
        ..Options::default()
    };
    let mut ws = WebSocket::connect(url, options)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    if deflate && ws.deflate().is_none() {
        return Err("the suite declined permessage-deflate".into());
    }
    loop {
        let sent = match ws.recv().await {
            Ok(Received::Text(text)) => ws.send_text(&text).await,
            Ok(Received::Binary(data)) => ws.send_binary(&data).await,
            Ok(Received::Close(_)) | Err(WsError::Failed { .. }) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        if sent.is_err() {
            return Ok(());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_fuzzingserver_passes_our_client() {
    let cases = autobahn::cases();
    let patterns: Vec<&str> = cases.iter().map(String::as_str).collect();
    let server = FuzzingServer::start(&patterns).await;
    let count: u32 = one_text(&server.case_count_url())
        .await
        .trim()
        .parse()
        .expect("a case count");
    assert!(count > 0, "no cases selected by {cases:?}");
    let started = Instant::now();
    let mut deflate_cases = 0;
    for case in 1..=count {
        let info: serde_json::Value =
            serde_json::from_str(&one_text(&server.case_info_url(case)).await)
                .expect("case info is JSON");
        let id = info["id"].as_str().expect("case id").to_owned();
        let deflate = id.starts_with("12.") || id.starts_with("13.");
        deflate_cases += usize::from(deflate);
        if let Err(e) = run_case(&server.case_url(case, AGENT), deflate).await {
            panic!("case {id}: {e}\nwstest log:\n{}", server.log());
        }
    }
    let mut ws = WebSocket::connect(&server.report_url(AGENT), Options::default())
        .await
        .expect("asking for the report");
    assert!(
        matches!(ws.recv().await, Ok(Received::Close(_))),
        "the report request ends with a close"
    );
    let verdicts = server.verdicts(AGENT);
    println!(
        "Autobahn fuzzingserver, {count} cases ({deflate_cases} with permessage-deflate) in {:.0?}:\n{}",
        started.elapsed(),
        verdicts.summary()
    );
    assert_eq!(verdicts.0.len(), count as usize, "a case has no verdict");
    if let Err(bad) = verdicts.check(ALLOWED_NON_STRICT) {
        panic!(
            "Autobahn verdicts:\n{}\nnot acceptable:\n{bad}",
            verdicts.summary()
        );
    }
}
