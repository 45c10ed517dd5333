//! WS and WSS apps through Python `websockets`, Node `ws` and headless Chromium.

use std::time::Duration;

use protolab_server::Protocol;
use protolab_test_support::{run_json, Peer, TestLab};

use crate::PEER_LIMIT;

const PUSH: Duration = Duration::from_millis(300);

async fn lab() -> TestLab {
    TestLab::start(&[Protocol::Ws, Protocol::Wss], |c| c.push_interval = PUSH).await
}

fn check_echo_and_push(peer: &str, protocol: Protocol, result: &serde_json::Value, greeting: &str) {
    assert_eq!(
        result["text_echo"], greeting,
        "{peer} over {protocol}: {result}"
    );
    assert_eq!(
        result["binary_echo_ok"], true,
        "{peer} over {protocol}: {result}"
    );
    assert_eq!(
        result["push"]["type"], "push",
        "{peer} over {protocol}: {result}"
    );
    let waited = result["push_wait_s"].as_f64().expect("push wait");
    // The push comes on the server's timer, so at most one interval (plus scheduling slack).
    assert!(
        waited <= PUSH.as_secs_f64() + 0.5,
        "{peer} over {protocol} waited {waited}s for a push"
    );
    assert_eq!(
        result["close_code"], 1000,
        "{peer} over {protocol}: {result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_gets_echo_and_push_over_ws_and_wss() {
    let lab = lab().await;
    let ca = lab.ca.to_string_lossy().into_owned();
    for protocol in [Protocol::Ws, Protocol::Wss] {
        let url = lab.url(protocol);
        let cmd = Peer::PythonWs.command(["echo", &url, "--cafile", &ca, "--push-within", "3"]);
        let result = run_json(cmd, PEER_LIMIT).await;
        check_echo_and_push("python websockets", protocol, &result, "hello from python");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ws_gets_echo_and_push_over_ws_and_wss() {
    let lab = lab().await;
    let ca = lab.ca.to_string_lossy().into_owned();
    for protocol in [Protocol::Ws, Protocol::Wss] {
        let url = lab.url(protocol);
        let cmd = Peer::NodeWs.command([url.as_str(), "--cafile", &ca, "--push-within", "3"]);
        let result = run_json(cmd, PEER_LIMIT).await;
        check_echo_and_push("node ws", protocol, &result, "hello from node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_an_echo_on_the_wss_demo_page_with_the_ca_trusted() {
    let lab = lab().await;
    let page = lab.lab.endpoint(Protocol::Wss).expect("wss").page_url();
    let ca = lab.ca.to_string_lossy().into_owned();
    let cmd = Peer::Chromium.command([
        page.as_str(),
        "--ca",
        &ca,
        "--expect",
        "← hello from the browser",
    ]);
    let state = run_json(cmd, Duration::from_secs(60)).await;
    assert_eq!(state["found"], true, "page never showed the echo: {state}");
    assert_eq!(state["status"], "open", "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_upgrades_are_refused_and_same_origin_ones_accepted() {
    let lab = lab().await;
    let url = lab.url(Protocol::Ws);
    let cmd = Peer::PythonWs.command(["reject", &url, "--origin", "https://evil.example"]);
    let result = run_json(cmd, PEER_LIMIT).await;
    assert_eq!(result["status"], 403, "{result}");

    let same_origin = lab.lab.endpoint(Protocol::Ws).expect("ws").page_url();
    let same_origin = same_origin.trim_end_matches('/');
    let cmd = Peer::PythonWs.command(["echo", &url, "--origin", same_origin]);
    let result = run_json(cmd, PEER_LIMIT).await;
    assert_eq!(result["text_echo"], "hello from python", "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origins_can_be_extended() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.allowed_origins = vec!["https://app.example".into()]
    })
    .await;
    let url = lab.url(Protocol::Ws);
    let cmd = Peer::PythonWs.command(["echo", &url, "--origin", "https://app.example"]);
    let result = run_json(cmd, PEER_LIMIT).await;
    assert_eq!(result["text_echo"], "hello from python", "{result}");
}
