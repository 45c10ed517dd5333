//! The hub's own pages in Debian's headless Chromium, driven over DevTools
//! (tests/peers/chromium_page.py --drive): toasts by level, the connection indicator, reconnect
//! and recovery across a hub restart, and the admin page's channels and publish form.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use protolab_hub::app::{AppConfig, AppState};
use protolab_hub::{router, serve, Hub, HubConfig, Level, Publication, ServeOptions};
use protolab_test_support::Peer;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::{post, TestHub};

/// Time a page gets to show what a test waits for.
const WAIT_SECONDS: u64 = 30;

/// A Chromium scripted one command at a time.
struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    async fn open(url: &str) -> Self {
        let mut child = Peer::Chromium
            .command([url, "--drive"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium_page.py runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            _child: child,
            stdin,
            stdout,
        }
    }

    async fn command(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write command");
        let limit = Duration::from_secs(WAIT_SECONDS + 30);
        let answer = tokio::time::timeout(limit, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command}"))
            .expect("read answer")
            .unwrap_or_else(|| panic!("chromium_page.py exited before answering {command}"));
        serde_json::from_str(&answer).expect("a JSON answer")
    }

    /// Opens another tab; its page number.
    async fn new_page(&mut self, url: &str) -> u64 {
        let answer = self.command(json!({"cmd": "open", "url": url})).await;
        answer["page"].as_u64().expect("a page number")
    }

    async fn eval(&mut self, page: u64, js: &str) -> Value {
        let answer = self
            .command(json!({"cmd": "eval", "page": page, "js": js}))
            .await;
        assert_eq!(answer["ok"], true, "{js}: {answer}");
        answer["value"].clone()
    }

    /// Waits until `js` is truthy on `page`, failing with `what` and the page's text.
    async fn wait(&mut self, page: u64, js: &str, what: &str) -> Value {
        let answer = self
            .command(json!({"cmd": "wait", "page": page, "js": js, "timeout": WAIT_SECONDS}))
            .await;
        assert_eq!(
            answer["ok"], true,
            "{what}: `{js}` never held; the page shows:\n{}\n{answer}",
            answer["text"]
        );
        answer["value"].clone()
    }
}

/// The text of the first toast of `level` containing `text`, as a JS expression.
fn toast(level: &str, text: &str) -> String {
    format!(
        "[...document.querySelectorAll('#toasts .toast.toast-{level}')].map(t => t.textContent).find(t => t.includes({text:?}))"
    )
}

const LIVE: &str = "document.getElementById('state').dataset.state === 'live' && document.getElementById('state').textContent";

async fn publish(hub: &TestHub, channel: &str, level: &str, body: &str) {
    let publication = json!({"channel": channel, "level": level, "title": "", "body": body});
    let (status, answer) = post(hub, "/api/publish", &publication.to_string(), None).await;
    assert_eq!(status, 202, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_toasts_by_level_lists_history_and_reads_live() {
    let hub = TestHub::start(|_, _| {}).await;
    publish(&hub, "ops", "info", "before the page").await;
    let (status, headers) = crate::curl(&["-sS", "-o", "/dev/null", "-D", "-", &hub.base]).await;
    assert_eq!(status, 200);
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{headers}"
    );

    let mut browser = Browser::open(&format!("{}/", hub.base)).await;
    assert_eq!(
        browser.wait(0, LIVE, "the indicator reads live").await,
        "live"
    );
    // Filled from /api/history on load, without a toast.
    browser
        .wait(
            0,
            "document.getElementById('history').textContent.includes('before the page')",
            "history listed",
        )
        .await;
    assert_eq!(
        browser
            .eval(0, "document.querySelectorAll('#toasts .toast').length")
            .await,
        0
    );

    publish(&hub, "ops", "warning", "disk almost full").await;
    publish(&hub, "notifs", "error", "disk full").await;
    let warning = browser
        .wait(0, &toast("warning", "disk almost full"), "a warning toast")
        .await;
    assert!(
        warning.as_str().is_some_and(|t| t.contains("ops")),
        "{warning}"
    );
    browser
        .wait(0, &toast("error", "disk full"), "an error toast")
        .await;
    assert_eq!(
        browser
            .eval(
                0,
                "!!document.querySelector('#toasts .toast-warning .toast-progress')"
            )
            .await,
        true,
        "the toast has a progress bar"
    );

    // The list filters by level and text.
    let visible = "[...document.querySelectorAll('#history li')].filter(li => !li.hidden).map(li => li.textContent).join('|')";
    browser
        .eval(
            0,
            "document.querySelector('.filter-level[value=warning]').click()",
        )
        .await;
    let shown = browser.eval(0, visible).await;
    let shown = shown.as_str().expect("text");
    assert!(
        !shown.contains("disk almost full")
            && shown.contains("disk full")
            && shown.contains("before the page"),
        "{shown}"
    );
    browser
        .eval(0, "(() => { const f = document.getElementById('filter-text'); f.value = 'BEFORE'; f.dispatchEvent(new Event('input')); })()")
        .await;
    let shown = browser.eval(0, visible).await;
    assert_eq!(
        shown
            .as_str()
            .map(|s| s.contains("before the page") && !s.contains("disk full")),
        Some(true),
        "{shown}"
    );
    // A reload resumes from the positions kept in sessionStorage: moved back to offset 1, ops
    // must deliver offset 2 again, as a toast (history alone only fills the list).
    browser
        .eval(
            0,
            "(() => { const k = 'protolab.hub.positions'; const p = JSON.parse(sessionStorage.getItem(k)); \
             p.ops = p.ops.replace(/:[0-9]+$/, ':1'); sessionStorage.setItem(k, JSON.stringify(p)); \
             setTimeout(() => location.reload(), 0); })()",
        )
        .await;
    browser
        .wait(
            0,
            "performance.getEntriesByType('navigation')[0].type === 'reload'",
            "the page reloaded",
        )
        .await;
    browser
        .wait(
            0,
            &toast("warning", "disk almost full"),
            "offset 2 recovered after the reload",
        )
        .await;
    assert_eq!(
        browser
            .eval(0, "document.querySelectorAll('#toasts .toast').length")
            .await,
        1,
        "only what followed the kept position is toasted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_after_a_hub_restart_and_shows_what_it_missed() {
    let mut hub = TestHub::start(|_, _| {}).await;
    publish(&hub, "ops", "info", "first hub").await;
    let mut browser = Browser::open(&format!("{}/", hub.base)).await;
    browser.wait(0, LIVE, "the indicator reads live").await;
    publish(&hub, "ops", "success", "live on the first hub").await;
    browser
        .wait(
            0,
            &toast("success", "live on the first hub"),
            "a live toast",
        )
        .await;
    let first_position = browser
        .eval(
            0,
            "JSON.parse(sessionStorage.getItem('protolab.hub.positions')).ops",
        )
        .await;
    assert!(
        first_position.as_str().is_some_and(|p| p.ends_with(":2")),
        "{first_position}"
    );

    let addr = hub.server.as_ref().expect("serving").local_addr();
    hub.server.take().expect("serving").shutdown().await;
    browser
        .wait(
            0,
            "document.getElementById('state').textContent.startsWith('reconnecting in ')",
            "the indicator counts down",
        )
        .await;

    // A new in-memory hub on the same port: a new epoch. What it gets while the page is away
    // must reach the page once it is back, with the notice that recovery was not exact.
    let state = AppState::new(
        Arc::new(Hub::new(HubConfig::default())),
        AppConfig::default(),
    );
    state
        .hub
        .publish(Publication {
            channel: "ops".parse().expect("channel"),
            level: Level::Error,
            title: "restarted".into(),
            body: "published while the page was away".into(),
            data: None,
            idempotency_key: None,
        })
        .expect("publish");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the same port");
    let _server = serve(
        listener,
        router(Arc::clone(&state)),
        Arc::clone(&state),
        ServeOptions::default(),
    )
    .expect("serve");

    browser
        .wait(
            0,
            &toast("error", "published while the page was away"),
            "the missed notification as a toast",
        )
        .await;
    browser
        .wait(0, LIVE, "the indicator reads live again")
        .await;
    let notice = browser
        .wait(0, "!document.getElementById('notice').hidden && document.getElementById('notice').textContent", "the recovered:false notice")
        .await;
    assert!(
        notice
            .as_str()
            .is_some_and(|n| n.contains("ops") && n.contains("could not recover")),
        "{notice}"
    );
    let position = browser
        .eval(
            0,
            "JSON.parse(sessionStorage.getItem('protolab.hub.positions')).ops",
        )
        .await;
    let epoch = state
        .hub
        .channels()
        .into_iter()
        .find(|c| c.channel.as_str() == "ops")
        .expect("channel ops")
        .epoch;
    assert_eq!(position, format!("{epoch}:1"));
    assert_eq!(
        browser
            .eval(0, "document.querySelectorAll('#history li').length")
            .await,
        3,
        "the list holds both hubs' notifications"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_lists_channels_and_its_form_publishes() {
    let hub = TestHub::start(|_, _| {}).await;
    publish(&hub, "ops", "info", "one").await;
    let mut browser = Browser::open(&format!("{}/admin", hub.base)).await;
    let watcher = browser
        .new_page(&format!("{}/?channels=ops", hub.base))
        .await;
    browser.wait(watcher, LIVE, "the second page is live").await;

    let row = browser
        .wait(0, "(r => r && r.textContent)(document.querySelector('#channel-rows tr[data-channel=ops]'))", "the channel row")
        .await;
    assert!(row.as_str().is_some_and(|r| r.starts_with("ops1")), "{row}");
    browser
        .wait(0, "document.querySelector('#transports tr[data-transport=websocket] td:nth-child(2)').textContent === '1'", "one WebSocket connection")
        .await;

    let submit = |level: &str, title: &str, body: &str| {
        format!(
            "(() => {{ const f = document.getElementById('publish'); f.elements.channel.value = 'ops'; \
             f.elements.level.value = {level:?}; f.elements.title.value = {title:?}; f.elements.body.value = {body:?}; \
             f.querySelector('button').click(); }})()"
        )
    };
    browser
        .eval(0, &submit("success", "deploy", "from the admin form"))
        .await;
    let answer = browser
        .wait(
            0,
            "(a => a.classList.contains('ok') && a.textContent)(document.getElementById('answer'))",
            "the publish answer",
        )
        .await;
    assert!(
        answer.as_str().is_some_and(|a| a.contains("offset 2")),
        "{answer}"
    );
    browser
        .wait(
            watcher,
            &toast("success", "from the admin form"),
            "the toast on the second page",
        )
        .await;
    browser
        .wait(
            0,
            "document.getElementById('published').textContent === '2'",
            "the published count",
        )
        .await;
    browser
        .wait(0, "Number(document.getElementById('rate-delivered').textContent) > 0 || document.querySelector('#transports tr[data-transport=websocket] td:nth-child(3)').textContent === '1'", "a delivery counted")
        .await;

    // A refused publication shows the error and the field to fix.
    browser.eval(0, &submit("error", "", "")).await;
    let error = browser
        .wait(0, "(a => a.classList.contains('error') && a.textContent)(document.getElementById('answer'))", "the error answer")
        .await;
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.starts_with("400: ") && e.contains("field:")),
        "{error}"
    );
}
