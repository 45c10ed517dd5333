//! The demo pages in headless Chromium: what the lab tells each page of its connection
//! (against Chromium's own view of it), the links between the apps, the WS page's echo round
//! trips, timestamps, readable pushes and controls after a close, the README's console
//! snippet, the favicon, and no console errors.

use std::time::Duration;

use protolab_server::Protocol;
use protolab_test_support::TestLab;
use serde_json::{json, Value};

use crate::browser::Browser;

/// The README's snippet for the WSS page's console, with the lab's port in it.
fn readme_snippet(wss_url: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let after = readme
        .split("From that page's console:")
        .nth(1)
        .expect("the README's console snippet");
    let block = after
        .split("```js\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a js block after it");
    assert!(block.contains("wss://localhost:3003/ws"), "{block}");
    block.replace("wss://localhost:3003/ws", wss_url)
}

fn errors(console: &Value) -> Vec<Value> {
    console["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["level"] == "error")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_pages_show_their_connection_round_trips_and_pushes_and_leave_the_console_free() {
    let protocols = [
        Protocol::Http,
        Protocol::Https,
        Protocol::Ws,
        Protocol::Wss,
        Protocol::Sse,
    ];
    let lab = TestLab::start(&protocols, |c| {
        c.push_interval = Duration::from_millis(300);
    })
    .await;
    let page_of = |p: Protocol| lab.lab.endpoint(p).expect("endpoint").page_url();
    let mut browser = Browser::open_trusting(&page_of(Protocol::Wss), &lab.ca).await;
    let open = "document.getElementById('status').textContent === 'open'";

    // What the page says of its TLS is what Chromium itself negotiated.
    let seen = browser.command(json!({"cmd": "security", "page": 0})).await;
    assert_eq!(seen["ok"], true, "{seen}");
    browser
        .wait(0, open, "the WSS page opens its WebSocket")
        .await;
    let conn = browser
        .eval(0, "document.getElementById('lab-conn').textContent")
        .await;
    let conn = conn.as_str().unwrap();
    for part in [
        seen["protocol"].as_str().unwrap(),
        seen["cipher"].as_str().unwrap(),
        &format!("ALPN {}", seen["alpn"].as_str().unwrap()),
        "HTTP/1.1",
    ] {
        assert!(conn.contains(part), "`{conn}` does not say {part}: {seen}");
    }

    // Links to every other app, under the page's own host name.
    let links = browser
        .eval(0, "JSON.stringify({links: [...document.querySelectorAll('#lab-apps a')].map(a => a.href), here: document.querySelector('#lab-apps strong').textContent})")
        .await;
    let links: Value = serde_json::from_str(links.as_str().unwrap()).unwrap();
    assert_eq!(links["here"], "wss", "{links}");
    for (p, scheme) in [
        (Protocol::Http, "http"),
        (Protocol::Https, "https"),
        (Protocol::Ws, "http"),
        (Protocol::Sse, "http"),
    ] {
        let want = format!("{scheme}://localhost:{}/", lab.port(p));
        assert!(
            links["links"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == want.as_str()),
            "no link {want}: {links}"
        );
    }

    // The greeting's echo with its round trip, each line with its time, pushes readable.
    let stamped = r"/^\d\d:\d\d:\d\d\.\d{3}/";
    browser
        .wait(
            0,
            &format!("[...document.querySelectorAll('#log li.in')].some(li => {stamped}.test(li.textContent) && /← hello from the browser \\(echo in \\d+\\.\\d\\d ms\\)$/.test(li.textContent))"),
            "the greeting's echo with its round trip",
        )
        .await;
    browser
        .wait(
            0,
            "/^last \\d+\\.\\d\\d ms · median \\d+\\.\\d\\d ms of \\d+$/.test(document.getElementById('rtt').textContent)",
            "the round trip summary",
        )
        .await;
    browser
        .wait(
            0,
            &format!("[...document.querySelectorAll('#log li.push')].some(li => {stamped}.test(li.textContent) && /⇐ push #\\d+, sent \\d\\d:\\d\\d:\\d\\d\\.\\d{{3}}, here -?\\d+ ms later$/.test(li.textContent))"),
            "a readable push",
        )
        .await;

    // The README's console snippet runs as written in this page's console (global scope).
    let snippet = readme_snippet(&lab.url(Protocol::Wss));
    browser.eval(0, &snippet).await;
    browser
        .wait(
            0,
            "ws.readyState === WebSocket.OPEN",
            "the snippet's WebSocket opens",
        )
        .await;

    // Closing disables what would send, and offers a reconnect that works.
    browser
        .eval(0, "document.getElementById('close').click()")
        .await;
    browser
        .wait(
            0,
            "document.getElementById('status').textContent.startsWith('closed (1000')",
            "the page's close completes",
        )
        .await;
    let controls = browser
        .eval(0, "['text', 'send-text', 'binary', 'close'].every(id => document.getElementById(id).disabled) && !document.getElementById('reconnect').hidden")
        .await;
    assert_eq!(controls, true, "controls after the close");
    browser
        .eval(0, "document.getElementById('reconnect').click()")
        .await;
    browser.wait(0, open, "the page reconnects").await;

    let favicon = browser
        .eval(
            0,
            "fetch('/favicon.ico').then(r => r.status + ' ' + r.headers.get('content-type'))",
        )
        .await;
    assert_eq!(favicon, "200 image/svg+xml");
    let console = browser.command(json!({"cmd": "console", "page": 0})).await;
    assert!(errors(&console).is_empty(), "WSS page: {console}");

    // The plain pages say so; none logs an error (a missing favicon would).
    for (p, says) in [
        (Protocol::Ws, "HTTP/1.1 · no TLS (plain TCP)"),
        (Protocol::Http, "HTTP/1.1 · no TLS (plain TCP)"),
        (Protocol::Https, "HTTP/1.1 · TLS 1."),
        (Protocol::Sse, "HTTP/1.1 · no TLS (plain TCP)"),
    ] {
        let opened = browser
            .command(json!({"cmd": "open", "url": page_of(p)}))
            .await;
        let n = opened["page"].as_u64().expect("page number");
        let conn = browser
            .wait(
                n,
                "document.getElementById('lab-conn') && document.getElementById('lab-conn').textContent",
                "the connection line",
            )
            .await;
        assert!(conn.as_str().unwrap().contains(says), "{p}: {conn}");
        if p == Protocol::Sse {
            // The SSE page: pushes readable, and an echo (POST, then an event on the stream)
            // with its round trip.
            browser
                .wait(
                    n,
                    "[...document.querySelectorAll('#log li.push')].some(li => /^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}⇐ push #\\d+ \\(id [^)]+\\), sent \\d\\d:\\d\\d:\\d\\d\\.\\d{3}, here -?\\d+ ms later$/.test(li.textContent))",
                    "a readable push on the SSE page",
                )
                .await;
            browser
                .wait(
                    n,
                    "document.querySelectorAll('#log li.sys').length > 0",
                    "the stream's hello",
                )
                .await;
            browser
                .eval(n, "document.querySelector('#send button').click()")
                .await;
            browser
                .wait(
                    n,
                    "[...document.querySelectorAll('#log li.in')].some(li => /← hello \\(POST to echo event in \\d+\\.\\d\\d ms\\)$/.test(li.textContent))",
                    "the SSE page's echo with its round trip",
                )
                .await;
        }
        // Let the page's own connections and favicon load before reading the console.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let console = browser.command(json!({"cmd": "console", "page": n})).await;
        assert!(errors(&console).is_empty(), "{p} page: {console}");
    }
}
