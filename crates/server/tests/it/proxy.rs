//! The proxy in front of real lab backends, reached by real clients: Python `websockets`,
//! Node `ws`, headless Chromium and curl over ws/wss/http/https; raw TCP for the shapes no
//! well-behaved client sends; a hand-written backend where the test must see exactly what the
//! proxy forwarded or must make a backend misbehave.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up is a failed test"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use protolab_server::proxy::{Balance, Config, HealthCheck, Listen, Proxy, Timeouts};
use protolab_server::Protocol;
use protolab_test_support::{run, run_json, Background, Peer, RawWs, TestLab};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::PEER_LIMIT;

/// A proxy with a plain and a TLS listener on port 0, its own CA, in front of `backends`.
pub(crate) struct TestProxy {
    pub(crate) proxy: Proxy,
    pub(crate) ca: PathBuf,
    _home: tempfile::TempDir,
}

impl TestProxy {
    pub(crate) async fn start(backends: Vec<SocketAddr>, tweak: impl FnOnce(&mut Config)) -> Self {
        let home = tempfile::tempdir().unwrap();
        let store = protolab_tls::Store::open(home.path());
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let leaf = store.leaf_for(&names).unwrap();
        let mut config = Config {
            listen: vec![
                Listen {
                    addr: "127.0.0.1:0".parse().unwrap(),
                    tls: false,
                },
                Listen {
                    addr: "127.0.0.1:0".parse().unwrap(),
                    tls: true,
                },
            ],
            backends,
            tls: Some(protolab_tls::server_config(&leaf, &[b"http/1.1"]).unwrap()),
            health: None,
            ..Config::default()
        };
        tweak(&mut config);
        let proxy = Proxy::start(config).await.expect("proxy starts");
        Self {
            proxy,
            ca: store.ca_cert_path(),
            _home: home,
        }
    }

    pub(crate) fn port(&self, tls: bool) -> u16 {
        self.proxy
            .endpoints()
            .iter()
            .find(|l| l.tls == tls)
            .expect("listener")
            .addr
            .port()
    }

    fn ca(&self) -> String {
        self.ca.to_string_lossy().into_owned()
    }
}

async fn ws_backends(n: usize, push: Duration) -> Vec<TestLab> {
    let mut labs = Vec::new();
    for _ in 0..n {
        labs.push(TestLab::start(&[Protocol::Ws], |c| c.push_interval = push).await);
    }
    labs
}

fn addrs(labs: &[TestLab], protocol: Protocol) -> Vec<SocketAddr> {
    labs.iter()
        .map(|l| SocketAddr::from(([127, 0, 0, 1], l.port(protocol))))
        .collect()
}

fn check_echo(peer: &str, url: &str, result: &serde_json::Value) {
    assert_eq!(result["binary_echo_ok"], true, "{peer} via {url}: {result}");
    assert_eq!(result["push"]["type"], "push", "{peer} via {url}: {result}");
    assert_eq!(result["close_code"], 1000, "{peer} via {url}: {result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_get_echo_and_push_through_the_proxy_over_ws_and_wss() {
    let labs = ws_backends(2, Duration::from_millis(300)).await;
    let proxy = TestProxy::start(addrs(&labs, Protocol::Ws), |_| {}).await;
    let ca = proxy.ca();
    for (scheme, tls) in [("ws", false), ("wss", true)] {
        let url = format!("{scheme}://localhost:{}/ws", proxy.port(tls));
        for _ in 0..2 {
            let py = Peer::PythonWs.command(["echo", &url, "--cafile", &ca, "--push-within", "3"]);
            let result = run_json(py, PEER_LIMIT).await;
            assert_eq!(result["text_echo"], "hello from python", "{result}");
            check_echo("python websockets", &url, &result);
            let node = Peer::NodeWs.command([url.as_str(), "--cafile", &ca, "--push-within", "3"]);
            let result = run_json(node, PEER_LIMIT).await;
            check_echo("node ws", &url, &result);
        }
    }
    let m = proxy.proxy.metrics();
    assert_eq!(m.tunnels(), 8, "every client got a tunnel");
    let spread: Vec<usize> = labs.iter().map(|l| l.lab.open_connections()).collect();
    assert_eq!(spread, [0, 0], "tunnels are closed on both backends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_gets_the_echo_through_the_tls_terminating_proxy() {
    let labs = ws_backends(1, Duration::from_secs(5)).await;
    let proxy = TestProxy::start(addrs(&labs, Protocol::Ws), |_| {}).await;
    let page = format!("https://localhost:{}/", proxy.port(true));
    let ca = proxy.ca();
    let cmd = Peer::Chromium.command([
        page.as_str(),
        "--ca",
        &ca,
        "--expect",
        "← hello from the browser",
    ]);
    let state = run_json(cmd, Duration::from_secs(60)).await;
    assert_eq!(state["found"], true, "page never showed the echo: {state}");
    assert_eq!(proxy.proxy.metrics().tunnels(), 1);
}

/// A backend that sends every request head it reads to the test and answers it with
/// `answer`, or never answers when `answer` is `None`.
async fn recording_backend(
    answer: Option<&'static str>,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(n) = tcp.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                        match answer {
                            Some(a) => {
                                if tcp.write_all(a.as_bytes()).await.is_err() {
                                    return;
                                }
                            }
                            None => std::future::pending::<()>().await,
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive, x-hop\r\nx-hop: secret\r\n\r\nok";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_both_listeners_backend_sees_forwarding_headers_not_hop_by_hop_ones() {
    let (backend, mut heads) = recording_backend(Some(OK)).await;
    let proxy = TestProxy::start(vec![backend], |_| {}).await;
    let ca = proxy.ca();
    for (scheme, tls) in [("http", false), ("https", true)] {
        let url = format!("{scheme}://localhost:{}/echo?msg=hi", proxy.port(tls));
        let out = run(
            Peer::Curl.command([
                "-sS",
                "-i",
                "--cacert",
                &ca,
                "-H",
                "Connection: keep-alive, X-Secret",
                "-H",
                "X-Secret: 1",
                "-H",
                "Keep-Alive: timeout=5",
                "-H",
                "X-Forwarded-For: 203.0.113.9",
                "-H",
                "X-Forwarded-Proto: gopher",
                &url,
            ]),
            PEER_LIMIT,
        )
        .await;
        let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        assert!(out.status.success(), "{text}");
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
        assert!(
            !text.contains("x-hop"),
            "hop-by-hop response field leaked: {text}"
        );
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /echo?msg=hi http/1.1\r\n"), "{head}");
        assert!(
            !head.contains("x-secret"),
            "field named in Connection forwarded: {head}"
        );
        assert!(!head.contains("keep-alive"), "{head}");
        assert!(
            head.contains("\r\nx-forwarded-for: 203.0.113.9, 127.0.0.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nx-forwarded-proto: {scheme}\r\n")),
            "spoofed proto must be replaced: {head}"
        );
        assert!(
            head.contains(&format!(
                "\r\nforwarded: for=127.0.0.1;proto={scheme};host=\"localhost:{}\"\r\n",
                proxy.port(tls)
            )),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nhost: localhost:{}\r\n", proxy.port(tls))),
            "{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_posts_chunked_and_sized_bodies_to_the_real_echo_app() {
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let proxy = TestProxy::start(addrs(std::slice::from_ref(&lab), Protocol::Http), |_| {}).await;
    let body: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let url = format!("https://localhost:{}/echo", proxy.port(true));
    for extra in [&[][..], &["-H", "Transfer-Encoding: chunked"][..]] {
        let mut args = vec!["-sS", "--cacert"];
        let ca = proxy.ca();
        args.push(&ca);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--data-binary", &body, &url, &url]);
        let out = run(Peer::Curl.command(&args), PEER_LIMIT).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{body}{body}"),
            "two echoes on one kept-alive connection ({extra:?})"
        );
    }
}

/// Sends `request` raw, returns everything read until the proxy closes (within 5 s).
async fn raw_exchange(port: u16, request: &[u8]) -> (String, Duration) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let start = Instant::now();
    tcp.write_all(request).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got))
        .await
        .expect("the proxy closed the connection")
        .ok();
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_get_400_and_close_without_reaching_a_backend() {
    let (backend, mut heads) = recording_backend(Some(OK)).await;
    let proxy = TestProxy::start(vec![backend], |_| {}).await;
    let port = proxy.port(false);
    let shapes: [(&str, &[u8]); 7] = [
        (
            "CL with TE",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "differing CLs",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        ),
        (
            "obs-fold",
            b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n",
        ),
        (
            "TE not ending in chunked",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ),
        (
            "two Hosts",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "space before colon",
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
        ),
        ("bare LF", b"GET / HTTP/1.1\nHost: a\n\n"),
    ];
    for (name, request) in shapes {
        let (answer, _) = raw_exchange(port, request).await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{name}: {answer}");
        assert!(answer.contains("connection: close"), "{name}: {answer}");
    }
    assert!(heads.try_recv().is_err(), "nothing reached the backend");

    // A bad chunk size is only seen once the head went out: the backend got a head, but the
    // client gets 400, the connection is closed, and no smuggled request follows.
    let (answer, _) = raw_exchange(
        port,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "bad chunk size: {answer}"
    );
    let mut seen = Vec::new();
    while let Ok(h) = heads.try_recv() {
        seen.push(h);
    }
    assert!(
        seen.iter().all(|h| !h.contains("/smuggled")),
        "smuggled request reached the backend: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_floods_and_slowloris_are_bounded() {
    let (backend, _heads) = recording_backend(Some(OK)).await;
    let proxy = TestProxy::start(vec![backend], |c| {
        c.timeouts.http_request = Duration::from_millis(700);
        c.max_header_bytes = 8 * 1024;
    })
    .await;
    let port = proxy.port(false);
    let mut flood = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..200 {
        flood.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    let (answer, _) = raw_exchange(port, &flood).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "too many fields: {answer}"
    );
    let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 9000));
    big.extend_from_slice(b"\r\n\r\n");
    let (answer, _) = raw_exchange(port, &big).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 "),
        "too large a head: {answer}"
    );

    // Slowloris: a byte every 100 ms never completes a head; cut at http-request time.
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let start = Instant::now();
    let drip = async {
        for b in
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if tcp.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    drip.await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut got)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 408 "), "slowloris: {got}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "closed after {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_gets_504_and_refusing_backends_get_502() {
    let (silent, _heads) = recording_backend(None).await;
    let proxy = TestProxy::start(vec![silent], |c| {
        c.timeouts.server = Duration::from_millis(500);
    })
    .await;
    let (answer, took) =
        raw_exchange(proxy.port(false), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 504 "), "{answer}");
    assert!(took >= Duration::from_millis(450), "504 after {took:?}");

    // Two ports nobody listens on: both tried, then 502.
    let dead: Vec<SocketAddr> = {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        vec![a.local_addr().unwrap(), b.local_addr().unwrap()]
    };
    let proxy = TestProxy::start(dead, |_| {}).await;
    let (answer, _) = raw_exchange(proxy.port(false), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 502 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_tunnel_outlives_the_client_timeout_but_not_the_tunnel_timeout() {
    let labs = ws_backends(1, Duration::from_secs(3600)).await;
    let proxy = TestProxy::start(addrs(&labs, Protocol::Ws), |c| {
        c.timeouts = Timeouts {
            client: Duration::from_millis(300),
            server: Duration::from_millis(300),
            tunnel: Duration::from_millis(2000),
            ..Timeouts::default()
        };
    })
    .await;
    let mut ws = RawWs::connect(proxy.port(false)).await;
    let start = Instant::now();
    let mut sink = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    let idle = start.elapsed();
    assert!(
        closed.is_ok(),
        "the tunnel timeout never closed the idle tunnel"
    );
    assert!(
        idle >= Duration::from_millis(1900),
        "closed after {idle:?}, before the tunnel timeout (client/server timeouts must not apply)"
    );
    assert!(idle < Duration::from_secs(4), "closed only after {idle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balancing_spreads_tunnels_round_robin_least_conn_and_pins_by_source() {
    for (balance, want) in [
        (Balance::RoundRobin, [2, 2]),
        (Balance::LeastConn, [2, 2]),
        (Balance::Source, [4, 0]),
    ] {
        let labs = ws_backends(2, Duration::from_secs(3600)).await;
        let proxy = TestProxy::start(addrs(&labs, Protocol::Ws), |c| c.balance = balance).await;
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(RawWs::connect(proxy.port(false)).await);
        }
        let mut got: Vec<usize> = labs.iter().map(|l| l.lab.open_connections()).collect();
        if balance == Balance::Source {
            got.sort_unstable_by(|a, b| b.cmp(a));
        }
        assert_eq!(got, want, "{balance:?}");
        let states = proxy.proxy.backends();
        assert_eq!(states.iter().map(|s| s.active).sum::<usize>(), 4);
        drop(held);
    }
}

/// A WS lab on its own runtime and thread, so a test can kill it the way a crashed process
/// dies: every task dropped at once, sockets closed by the kernel, no close frames.
struct KillableLab {
    addr: SocketAddr,
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl KillableLab {
    fn start() -> Self {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let lab = rt.block_on(TestLab::start(&[Protocol::Ws], |c| {
                c.push_interval = Duration::from_secs(3600);
            }));
            addr_tx
                .send(SocketAddr::from(([127, 0, 0, 1], lab.port(Protocol::Ws))))
                .unwrap();
            let _ = kill_rx.recv();
            drop(rt);
            drop(lab);
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            kill: Some(kill_tx),
            thread: Some(thread),
        }
    }

    fn kill(&mut self) {
        drop(self.kill.take());
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for KillableLab {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_new_connections_go_to_the_survivor_and_it_comes_back_after_rise() {
    let mut labs = [KillableLab::start(), KillableLab::start()];
    let backends: Vec<SocketAddr> = labs.iter().map(|l| l.addr).collect();
    let check = HealthCheck {
        interval: Duration::from_millis(200),
        rise: 3,
        fall: 2,
        ..HealthCheck::default()
    };
    let proxy = TestProxy::start(backends.clone(), |c| c.health = Some(check.clone())).await;
    let url = format!("wss://localhost:{}/ws", proxy.port(true));
    let ca = proxy.ca();
    // Two held WebSockets, one per backend (round-robin).
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut h = Background::spawn(Peer::PythonWs.command(["hold", &url, "--cafile", &ca]));
        assert_eq!(
            h.next_json(Duration::from_secs(15)).await["connected"],
            true
        );
        holders.push(h);
    }
    let active: Vec<usize> = proxy.proxy.backends().iter().map(|b| b.active).collect();
    assert_eq!(active, [1, 1]);

    // Kill backend 1 the hard way: its connections are dropped without a close frame.
    let killed_at = Instant::now();
    labs[1].kill();
    // Its tunnel ends promptly and cleanly for the client (a close frame from the proxy); the
    // other one stays open.
    let mut ended = Vec::new();
    let mut alive = Vec::new();
    for mut h in holders.drain(..) {
        match tokio::time::timeout(Duration::from_secs(2), h.next_json(Duration::from_secs(3)))
            .await
        {
            Ok(v) => ended.push(v),
            Err(_) => alive.push(h),
        }
    }
    assert_eq!(
        ended.len(),
        1,
        "exactly the dead backend's tunnel closed: {ended:?}"
    );
    assert_eq!(ended[0]["close_code"], 1014, "{ended:?}");
    assert!(killed_at.elapsed() < Duration::from_secs(5));

    // Meanwhile (and once health checks take it out) every new client is served.
    for _ in 0..4 {
        let py = Peer::PythonWs.command(["echo", &url, "--cafile", &ca]);
        let result = run_json(py, PEER_LIMIT).await;
        assert_eq!(result["text_echo"], "hello from python", "{result}");
    }
    tokio::time::sleep(check.interval * (check.fall + 1)).await;
    assert!(!proxy.proxy.backends()[1].up, "dead backend still up");

    // Bring a backend back on the same port; it is used again after `rise` good checks.
    let port = backends[1].port();
    let revived = TestLab::start(&[Protocol::Ws], |c| {
        c.apps = vec![(Protocol::Ws, port)];
        c.push_interval = Duration::from_secs(3600);
    })
    .await;
    let back_at = Instant::now();
    while !proxy.proxy.backends()[1].up {
        assert!(
            back_at.elapsed() < Duration::from_secs(5),
            "backend never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        back_at.elapsed() >= check.interval * (check.rise - 1),
        "up after {:?}, before {} checks",
        back_at.elapsed(),
        check.rise
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(RawWs::connect(proxy.port(false)).await);
    }
    assert_eq!(
        revived.lab.open_connections(),
        2,
        "revived backend takes its share"
    );
    drop(alive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_get_a_proxy_v2_header_with_the_client_address_first() {
    use protolab_wire::proxy_v2::{decode, Header};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let (header, used) = loop {
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "proxy closed before a header");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(done) = decode(&buf).expect("a PROXY v2 header") {
                break done;
            }
        };
        while !buf[used..].windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
        }
        tcp.write_all(OK.as_bytes()).await.unwrap();
        tx.send((header, String::from_utf8_lossy(&buf[used..]).into_owned()))
            .unwrap();
    });
    let proxy = TestProxy::start(vec![backend], |c| c.proxy_protocol = true).await;
    let url = format!("https://localhost:{}/", proxy.port(true));
    let out = run(
        Peer::Curl.command(["-sS", "--cacert", &proxy.ca(), "-w", "%{local_port}", &url]),
        PEER_LIMIT,
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let client_port: u16 = stdout
        .trim_start_matches("ok")
        .parse()
        .expect("curl's port");
    let (header, head) = rx.recv().await.unwrap();
    assert_eq!(
        header,
        Header::Proxy {
            src: SocketAddr::from(([127, 0, 0, 1], client_port)),
            dst: SocketAddr::from(([127, 0, 0, 1], proxy.port(true))),
        }
    );
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_are_relayed_and_bounded_and_http10_gets_a_closed_body() {
    // 103 Early Hints then a chunked 200: an HTTP/1.1 client sees both, re-chunked; an
    // HTTP/1.0 client gets the body raw, ended by the close.
    const HINTS: &str = "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n";
    let (backend, _heads) = recording_backend(Some(HINTS)).await;
    let proxy = TestProxy::start(vec![backend], |_| {}).await;
    let port = proxy.port(false);
    let (answer, _) = raw_exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 103 Early Hints\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\n\r\nHTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        "{answer}"
    );
    assert!(
        !answer.contains("ext=1") && !answer.contains("x-trailer"),
        "{answer}"
    );
    let (answer, _) = raw_exchange(port, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(!answer.contains("transfer-encoding"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");

    // Endless 1xx: cut after a few, 502.
    let flood: &'static str = "HTTP/1.1 102 Processing\r\n\r\n".repeat(20).leak();
    let (backend, _heads) = recording_backend(Some(flood)).await;
    let proxy = TestProxy::start(vec![backend], |_| {}).await;
    let (answer, _) = raw_exchange(proxy.port(false), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert!(answer.contains("HTTP/1.1 502 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_websocket_tunnels_with_1001_on_both_sides() {
    let labs = ws_backends(1, Duration::from_secs(3600)).await;
    let proxy = TestProxy::start(addrs(&labs, Protocol::Ws), |c| {
        c.drain_timeout = Duration::from_secs(20);
    })
    .await;
    let url = format!("wss://localhost:{}/ws", proxy.port(true));
    let mut holder =
        Background::spawn(Peer::PythonWs.command(["hold", &url, "--cafile", &proxy.ca()]));
    assert_eq!(
        holder.next_json(Duration::from_secs(15)).await["connected"],
        true
    );
    assert_eq!(labs[0].lab.open_connections(), 1);
    let started = Instant::now();
    proxy.proxy.shutdown().await;
    let took = started.elapsed();
    let result = holder.next_json(Duration::from_secs(5)).await;
    assert_eq!(result["close_code"], 1001, "{result}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown waited {took:?} (drain timeout is 20 s)"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while labs[0].lab.open_connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "the backend's WebSocket was never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_client_timeout() {
    let (backend, _heads) = recording_backend(Some(OK)).await;
    let proxy = TestProxy::start(vec![backend], |c| {
        c.timeouts.client = Duration::from_millis(400);
    })
    .await;
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy.port(false)))
        .await
        .unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.ends_with(b"\r\n\r\nok") {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&chunk[..n]);
    }
    // Kept alive (no `connection: close`), then closed once idle for `timeout client`, well
    // before the 10 s `timeout http-request` that bounded the first head.
    assert!(!String::from_utf8_lossy(&got).contains("connection: close"));
    let idle = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk))
        .await
        .expect("the idle connection was closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let waited = idle.elapsed();
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_secs(2),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnels_hold_no_copy_buffer_and_closing_returns_every_one() {
    let labs = ws_backends(1, Duration::from_secs(3600)).await;
    let proxy = TestProxy::start(addrs(&labs, Protocol::Ws), |_| {}).await;
    let url = format!("ws://localhost:{}/ws", proxy.port(false));
    let args = ["idle", url.as_str(), "--count", "10", "--seconds", "30"];
    let mut peer = protolab_test_support::Background::spawn(Peer::PythonWs.command(args));
    let ready = peer.next_json(PEER_LIMIT).await;
    assert_eq!(ready["idle"], 10, "{ready}");
    // Each tunnel relayed an echo both ways and now waits: none holds a buffer. A buffer is
    // given back just after the write the peer waits for, so the count may trail a moment.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while proxy.proxy.tunnel_buffers_lent() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy.proxy.tunnel_buffers_lent(),
        0,
        "idle tunnels hold buffers"
    );
    assert_eq!(
        labs[0].lab.read_buffers_lent(),
        0,
        "idle backends hold buffers"
    );
    drop(peer);
    let until = tokio::time::Instant::now() + PEER_LIMIT;
    while proxy.proxy.open_connections() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.proxy.open_connections(), 0, "every tunnel closed");
    assert_eq!(proxy.proxy.tunnel_buffers_lent(), 0);
}
