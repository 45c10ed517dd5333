//! Autobahn|Testsuite's fuzzing client against the lab's WebSocket app: directly, over TLS,
//! and through `protolab proxy`. Cases 1–10 (framing, pings, reserved bits and opcodes,
//! fragmentation, UTF-8, close handling, limits) and 12–13 (permessage-deflate, which the
//! suite offers in every negotiation RFC 7692 allows); `test_support::autobahn::cases` says
//! which, and `PROTOLAB_AUTOBAHN_CASES=all` runs every one.
//!
//! Each run fails on any FAILED or UNIMPLEMENTED case, any close the suite did not call clean
//! or informational, and any NON-STRICT case (there are none: 6.4.3 and 6.4.4 were the last,
//! until the decoder checked UTF-8 per read).

use std::time::Duration;

use protolab_server::proxy::{Config, Listen, Proxy};
use protolab_server::Protocol;
use protolab_test_support::autobahn;
use protolab_test_support::TestLab;

const AGENT: &str = "protolab";

/// NON-STRICT verdicts accepted, each with its reason: none.
const ALLOWED_NON_STRICT: &[&str] = &[];

/// The suite's own pace bounds a run: about two minutes for the default cases here.
const LIMIT: Duration = Duration::from_secs(1200);

/// A lab whose pushes never interleave with the suite's expected frames.
async fn quiet_lab() -> TestLab {
    TestLab::start(&[Protocol::Ws, Protocol::Wss], |c| {
        c.push_interval = Duration::from_secs(3600);
    })
    .await
}

async fn check(url: &str, what: &str) {
    let verdicts = autobahn::fuzzing_client(url, &autobahn::cases(), AGENT, LIMIT).await;
    println!(
        "Autobahn fuzzingclient against {what} ({} cases):\n{}",
        verdicts.0.len(),
        verdicts.summary()
    );
    // The default selection is 418 cases; a chosen one may be any size.
    let chosen = std::env::var_os("PROTOLAB_AUTOBAHN_CASES").is_some();
    assert!(
        verdicts.0.len() >= if chosen { 1 } else { 418 },
        "only {} cases ran",
        verdicts.0.len()
    );
    if let Err(bad) = verdicts.check(ALLOWED_NON_STRICT) {
        panic!(
            "Autobahn verdicts for {what}:\n{}\nnot acceptable:\n{bad}",
            verdicts.summary()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_passes_the_ws_app() {
    let lab = quiet_lab().await;
    check(&lab.url(Protocol::Ws), "the WS app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_passes_the_wss_app() {
    let lab = quiet_lab().await;
    check(&lab.url(Protocol::Wss), "the WSS app").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autobahn_passes_the_ws_app_through_the_proxy() {
    let lab = quiet_lab().await;
    let backend = lab.lab.endpoint(Protocol::Ws).expect("ws app").addr;
    let proxy = Proxy::start(Config {
        listen: vec![Listen {
            addr: "127.0.0.1:0".parse().expect("address"),
            tls: false,
        }],
        backends: vec![backend],
        access_log: false,
        ..Config::default()
    })
    .await
    .expect("proxy starts");
    let port = proxy.endpoints()[0].addr.port();
    check(
        &format!("ws://127.0.0.1:{port}/ws"),
        "the WS app through protolab proxy",
    )
    .await;
    proxy.shutdown().await;
}
