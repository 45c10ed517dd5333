//! The story's page, written the way its GUI is (npm `socket.io-client` + `toastr`, served from
//! an origin of its own), in Debian's headless Chromium: a `/notifs?msg=E…` shows an error toast.

mod common;

use std::net::SocketAddr;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use common::{curl, TestHub};
use protolab_hub::auth::OriginPolicy;
use protolab_hub::socketio::SocketIoConfig;
use protolab_hub::story::NotifsAllow;
use protolab_test_support::{repo_root, require, run};
use tokio::process::Command;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>story page</title>
<link rel="stylesheet" href="/toastr.min.css">
<script src="/jquery.min.js"></script>
<script src="/toastr.min.js"></script>
<script src="/socket.io.min.js"></script>
</head><body><div id="status">connecting</div><div id="log"></div>
<script>
const apiRoot = "API_ROOT";
toastr.options = { progressBar: true, timeOut: 0, extendedTimeOut: 0 };
const socket = io(apiRoot);
socket.on('connect', () => { document.getElementById('status').textContent = 'connected'; });
socket.on('newmessage', (data) => {
  const message = data.message;
  const text = message.substring(1);
  switch (message.charAt(0)) {
    case 'S': toastr.success(text); break;
    case 'W': toastr.warning(text); break;
    case 'E': toastr.error(text); break;
    default: toastr.info(text);
  }
});
</script></body></html>"#;

/// Serves the page and the npm packages it loads from tests/peers/node_modules.
async fn serve_page(listener: tokio::net::TcpListener, api_root: String) -> SocketAddr {
    let modules = repo_root().join("tests/peers/node_modules");
    let files = [
        (
            "/jquery.min.js",
            "jquery/dist/jquery.min.js",
            "text/javascript",
        ),
        (
            "/toastr.min.js",
            "toastr/build/toastr.min.js",
            "text/javascript",
        ),
        ("/toastr.min.css", "toastr/build/toastr.min.css", "text/css"),
        (
            "/socket.io.min.js",
            "socket.io-client/dist/socket.io.min.js",
            "text/javascript",
        ),
    ];
    let page = PAGE.replace("API_ROOT", &api_root);
    let mut router = Router::new().route(
        "/",
        get(move || async move { ([(header::CONTENT_TYPE, "text/html")], page).into_response() }),
    );
    for (route, file, content_type) in files {
        let body = std::fs::read(modules.join(file)).unwrap_or_else(|e| {
            panic!("peer missing: {file} ({e}); run scripts/install-test-peers")
        });
        router =
            router.route(
                route,
                get(move || async move {
                    ([(header::CONTENT_TYPE, content_type)], body).into_response()
                }),
            );
    }
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve page") });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_page_shows_an_error_toast_after_notifs() {
    require("chromium", "apt-get install -y chromium");
    // The page lives on an origin of its own, as the story's GUI did: the hub lists it.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let page_origin = format!("http://{}", page_listener.local_addr().expect("addr"));
    let config = SocketIoConfig {
        origins: OriginPolicy::new(std::slice::from_ref(&page_origin)),
        ..SocketIoConfig::default()
    };
    let hub = TestHub::start("127.0.0.1", config, NotifsAllow::default()).await;
    let page = serve_page(page_listener, hub.url()).await;

    let mut browser = Command::new(require("python3", "apt-get install -y python3"));
    browser
        .arg(repo_root().join("tests/peers/chromium_page.py"))
        .arg(format!("http://{page}/"))
        .args([
            "--selector",
            ".toast-error .toast-message",
            "--expect",
            "disk full",
            "--timeout",
            "30",
        ])
        .kill_on_drop(true);
    let browser = tokio::spawn(run(browser, std::time::Duration::from_secs(60)));
    hub.wait_for_room("notifs", 1).await;
    let (status, body) = curl(&[&format!("{}/notifs?msg=Edisk%20full", hub.url())]).await;
    assert_eq!(status, 202, "{body}");
    let out = browser.await.expect("browser task");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "no error toast:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("\"found\": true"), "{report}");
}
