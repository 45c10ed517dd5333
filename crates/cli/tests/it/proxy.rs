// `protolab proxy` as a user runs it (the real binary, its readiness lines, its access log and
// /metrics), and the configurations `--emit haproxy|nginx` prints, run by the real HAProxy and
// nginx in front of the same lab backend and passing the same WebSocket tests.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up is a failed test"
)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_server::Protocol;
use protolab_test_support::{free_port, require, run, run_json, LenientBackend, Peer, TestLab};

const PEER_LIMIT: Duration = Duration::from_secs(30);

fn protolab(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home").arg(home).env_remove("RUST_LOG");
    cmd
}

/// A child in its own process group, terminated as a group (nginx's master and worker) when
/// dropped: SIGTERM, then SIGKILL after a second.
struct Group(Child);

impl Group {
    fn spawn(mut cmd: Command) -> Self {
        cmd.process_group(0);
        Self(cmd.spawn().expect("peer starts"))
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal("-KILL");
        let _ = self.0.wait();
    }
}

/// `protolab ARGS --emit FLAVOR`, written to `HOME/FLAVOR.conf`; the file's path.
fn emitted_config(home: &std::path::Path, args: &[&str], flavor: &str) -> std::path::PathBuf {
    let out = protolab(home)
        .args(args)
        .args(["--emit", flavor])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = home.join(format!("{flavor}.conf"));
    std::fs::write(&config, &out.stdout).unwrap();
    config
}

async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ca_of(home: &Path) -> String {
    protolab_tls::Store::open(home)
        .ca_cert_path()
        .to_string_lossy()
        .into_owned()
}

/// `https://NAME:port/healthz` resolved to 127.0.0.1: curl verifies the certificate against
/// NAME, so this passes only if SNI picked the certificate issued for it.
async fn sni_check(port: u16, name: &str, ca: &str) -> std::process::Output {
    run(
        Peer::Curl.command([
            "-sS",
            "--cacert",
            ca,
            "--resolve",
            &format!("{name}:{port}:127.0.0.1"),
            &format!("https://{name}:{port}/healthz"),
        ]),
        PEER_LIMIT,
    )
    .await
}

async fn sni_picks_the_certificate(port: u16, ca: &str, via: &str) {
    let out = sni_check(port, "a.test", ca).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{via}: a.test by SNI: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sni_check(port, "b.test", ca).await;
    assert_eq!(
        out.status.code(),
        Some(60),
        "{via}: b.test got the default certificate, which does not name it"
    );
}

async fn wss_echo_through(port_ws: u16, port_wss: u16, ca: &str, via: &str) {
    for url in [
        format!("ws://localhost:{port_ws}/ws"),
        format!("wss://localhost:{port_wss}/ws"),
    ] {
        let py = Peer::PythonWs.command(["echo", &url, "--cafile", ca, "--push-within", "3"]);
        let result = run_json(py, PEER_LIMIT).await;
        assert_eq!(
            result["text_echo"], "hello from python",
            "{via} {url}: {result}"
        );
        assert_eq!(result["binary_echo_ok"], true, "{via} {url}: {result}");
        assert_eq!(result["push"]["type"], "push", "{via} {url}: {result}");
        assert_eq!(result["close_code"], 1000, "{via} {url}: {result}");
        let node = Peer::NodeWs.command([url.as_str(), "--cafile", ca, "--push-within", "3"]);
        let result = run_json(node, PEER_LIMIT).await;
        assert_eq!(result["binary_echo_ok"], true, "{via} {url}: {result}");
        assert_eq!(result["close_code"], 1000, "{via} {url}: {result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protolab_proxy_serves_wss_logs_each_tunnel_and_exposes_metrics() {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.push_interval = Duration::from_millis(300);
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let backend = format!("127.0.0.1:{}", lab.port(Protocol::Ws));
    let mut child = protolab(home.path())
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--listen-tls",
            "127.0.0.1:0",
            "--backend",
            &backend,
            "--metrics",
            "127.0.0.1:0",
            "--sni",
            "a.test",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    assert_eq!(ready["event"], "ready", "{ready}");
    let port_of = |tls: bool| {
        ready["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["tls"] == tls)
            .unwrap()["addr"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    let ca = ca_of(home.path());
    wss_echo_through(port_of(false), port_of(true), &ca, "protolab proxy").await;
    sni_picks_the_certificate(port_of(true), &ca, "protolab proxy").await;

    let metrics = ready["metrics"].as_str().unwrap();
    let out = run(
        Peer::Curl.command(["-sS", &format!("http://{metrics}/metrics")]),
        PEER_LIMIT,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("protolab_proxy_tunnels_total 4\n"), "{text}");
    assert!(text.contains("protolab_proxy_tunnels_open 0\n"), "{text}");
    assert!(
        text.contains(&format!(
            "protolab_proxy_backend_up{{backend=\"{backend}\"}} 1\n"
        )),
        "{text}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let tunnels: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tunnel closed"))
        .collect();
    assert_eq!(tunnels.len(), 4, "one access line per tunnel:\n{stderr}");
    assert!(
        tunnels
            .iter()
            .all(|l| l.contains("close_code=1000") && l.contains("bytes_up=")),
        "{tunnels:?}"
    );
}

/// `--emit` names every file it wrote into the home, and each is there: the CA and the proxy's
/// certificate on first use, the combined PEM HAProxy wants (0600), and `proxy-run/` for nginx
/// only (the HAProxy configuration does not use it).
#[test]
fn emit_says_which_files_it_wrote_into_the_home() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().unwrap();
    let emit = |flavor: &str| {
        let out = protolab(home.path())
            .args(["proxy", "--backend", "127.0.0.1:3002", "--emit", flavor])
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(out.status.success(), "{stderr}");
        let mut lines = stderr.lines();
        let header = format!(
            "wrote into {} (the protolab home) for this configuration:",
            home.path().display()
        );
        assert_eq!(lines.next(), Some(header.as_str()), "{stderr}");
        // `  PATH[, PATH]  WHAT`: every path named is in the home.
        let mut named = Vec::new();
        for line in lines {
            let (paths, _what) = line.trim_start().split_once("  ").unwrap();
            for path in paths.split(", ") {
                assert!(home.path().join(path).exists(), "{path} named but absent");
                named.push(path.to_owned());
            }
        }
        named
    };
    let first = emit("haproxy");
    let combined = first
        .iter()
        .find(|p| p.ends_with("-haproxy.pem"))
        .unwrap()
        .clone();
    assert!(first.contains(&"ca.pem".to_owned()), "{first:?}");
    assert!(first.contains(&"ca-key.pem".to_owned()), "{first:?}");
    assert!(
        first
            .iter()
            .any(|p| p.ends_with("-key.pem") && p.starts_with("certs/")),
        "{first:?}"
    );
    assert!(!home.path().join("proxy-run").exists());
    let mode = std::fs::metadata(home.path().join(&combined))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // The CA and the certificate exist now: only what this run wrote is named.
    let second = emit("nginx");
    assert_eq!(second, [combined, "proxy-run/".to_owned()]);
}

async fn real_proxy_from_emitted_config(flavor: &str) {
    let lab = TestLab::start(&[Protocol::Ws], |c| {
        c.push_interval = Duration::from_millis(300);
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let (ws, wss) = (free_port(), free_port());
    let backend = format!("127.0.0.1:{}", lab.port(Protocol::Ws));
    let config = emitted_config(
        home.path(),
        &[
            "proxy",
            "--listen",
            &format!("127.0.0.1:{ws}"),
            "--listen-tls",
            &format!("127.0.0.1:{wss}"),
            "--backend",
            &backend,
            "--balance",
            "leastconn",
            "--sni",
            "a.test",
        ],
        flavor,
    );
    let _server = match flavor {
        "haproxy" => {
            let mut cmd = Command::new(require("haproxy", "apt-get install -y haproxy"));
            cmd.arg("-f").arg(&config).arg("-db");
            Group::spawn(cmd)
        }
        _ => {
            let mut cmd = Command::new(require("nginx", "apt-get install -y nginx"));
            let prefix = home.path().join("proxy-run");
            cmd.arg("-c")
                .arg(&config)
                .arg("-p")
                .arg(format!("{}/", prefix.display()));
            Group::spawn(cmd)
        }
    };
    wait_listening(ws, flavor).await;
    wait_listening(wss, flavor).await;
    let ca = ca_of(home.path());
    wss_echo_through(ws, wss, &ca, flavor).await;
    sni_picks_the_certificate(wss, &ca, flavor).await;
    // The demo page and its WebSocket through the real proxy, in a real browser.
    let page = format!("https://localhost:{wss}/");
    let cmd = Peer::Chromium.command([
        page.as_str(),
        "--ca",
        &ca,
        "--expect",
        "← hello from the browser",
    ]);
    let state = run_json(cmd, Duration::from_secs(60)).await;
    assert_eq!(
        state["found"], true,
        "{flavor}: page never showed the echo: {state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_haproxy_from_the_emitted_config_passes_the_websocket_tests() {
    real_proxy_from_emitted_config("haproxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_nginx_from_the_emitted_config_passes_the_websocket_tests() {
    real_proxy_from_emitted_config("nginx").await;
}

/// The proxy's `/metrics` text, or `None` if it could not be read within 2 s.
async fn scrape(metrics: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(metrics).await.ok()?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(2), tcp.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    Some(text)
}

/// The value of `series` (name and labels) in a `/metrics` text.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flood_up_to_the_connection_limit_does_not_starve_health_checks() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let prlimit = require("prlimit", "apt-get install -y util-linux");
    let lab = TestLab::start(&[Protocol::Http], |_| {}).await;
    let backend = format!("127.0.0.1:{}", lab.port(Protocol::Http));
    let home = tempfile::tempdir().unwrap();
    // 400 clients allowed, each wanting a backend connection too, under a 512-descriptor
    // limit: the flood alone could take every descriptor the health checks need.
    let mut cmd = Command::new(prlimit);
    cmd.arg("--nofile=512")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home.path())
        .env_remove("RUST_LOG")
        .args([
            "--json",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--backend",
            &backend,
            "--max-connections",
            "400",
            "--health-interval",
            "200ms",
            "--fall",
            "2",
            "--metrics",
            "127.0.0.1:0",
            "--no-access-log",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Group::spawn(cmd);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    let addr = ready["listeners"][0]["addr"].as_str().unwrap().to_string();
    let metrics = ready["metrics"].as_str().unwrap().to_string();
    let up = format!("protolab_proxy_backend_up{{backend=\"{backend}\"}}");
    let passed =
        format!("protolab_proxy_health_checks_total{{backend=\"{backend}\",result=\"passed\"}}");
    let failed =
        format!("protolab_proxy_health_checks_total{{backend=\"{backend}\",result=\"failed\"}}");
    let before = scrape(&metrics).await.expect("metrics before the flood");
    let passed_before = sample(&before, &passed).unwrap();

    // 400 keep-alive clients, each sending one request and holding its connection.
    let (answered_tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    let mut flood = Vec::new();
    for _ in 0..400 {
        let addr = addr.clone();
        let answered_tx = answered_tx.clone();
        flood.push(tokio::spawn(async move {
            let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
                return;
            };
            if tcp
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .is_err()
            {
                return;
            }
            let mut first = [0u8; 12];
            if tcp.read_exact(&mut first).await.is_ok() {
                let _ = answered_tx.send(first == *b"HTTP/1.1 200");
            }
            std::future::pending::<()>().await;
        }));
    }
    drop(answered_tx);
    // Three seconds of flood: fifteen health-check intervals.
    let mut samples = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = scrape(&metrics).await.unwrap_or_default();
        samples.push((
            sample(&text, &up),
            sample(&text, &failed),
            sample(&text, &passed),
        ));
    }
    let mut ok = 0;
    while let Ok(Some(good)) =
        tokio::time::timeout(Duration::from_millis(100), answered.recv()).await
    {
        ok += usize::from(good);
    }
    for task in &flood {
        task.abort();
    }
    child.signal("-TERM");
    let _ = child.0.wait();
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !stderr.contains("backend is DOWN"),
        "the flood took the backend out:\n{stderr}"
    );
    assert!(
        samples
            .iter()
            .all(|(up, failed, _)| *up == Some(1) && *failed == Some(0)),
        "health checks failed or /metrics went unanswered during the flood: {samples:?}\n{stderr}"
    );
    let passed_after = samples.last().and_then(|s| s.2).unwrap();
    assert!(
        passed_after >= passed_before + 8,
        "health checks stopped running: {passed_before} passed before, {passed_after} after"
    );
    assert!(ok >= 100, "only {ok} flood clients were served");
    assert!(
        stderr.contains("open-file limit lets the proxy serve"),
        "the reduced capacity is announced: {stderr}"
    );
}

/// Starts `via` — protolab itself, or HAProxy or nginx from `protolab proxy --emit` — with
/// `--forwarded-for mode` in front of `backend`, sends a request carrying a client's own
/// X-Forwarded-For and Forwarded, and returns those fields as the backend saw them (each
/// joined over its lines).
async fn forwarding_fields_behind(
    via: &str,
    mode: &str,
    backend: &mut LenientBackend,
) -> (String, String) {
    let home = tempfile::tempdir().unwrap();
    let port = free_port();
    let args = [
        "proxy",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--backend",
        &backend.addr.to_string(),
        "--no-health-check",
        "--forwarded-for",
        mode,
    ];
    let _server = if via == "protolab" {
        let mut cmd = protolab(home.path());
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        Group::spawn(cmd)
    } else {
        let config = emitted_config(home.path(), &args, via);
        let mut cmd = if via == "haproxy" {
            let mut cmd = Command::new(require("haproxy", "apt-get install -y haproxy"));
            cmd.arg("-f").arg(&config).arg("-db");
            cmd
        } else {
            let mut cmd = Command::new(require("nginx", "apt-get install -y nginx"));
            let prefix = home.path().join("proxy-run");
            cmd.arg("-c")
                .arg(&config)
                .arg("-p")
                .arg(format!("{}/", prefix.display()));
            cmd
        };
        cmd.stdout(Stdio::null());
        Group::spawn(cmd)
    };
    wait_listening(port, via).await;
    let out = run(
        Peer::Curl.command([
            "-sS",
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "Forwarded: for=203.0.113.9",
            &format!("http://127.0.0.1:{port}/fields"),
        ]),
        PEER_LIMIT,
    )
    .await;
    assert!(out.status.success(), "{via}: {out:?}");
    let seen = backend.requests(Duration::from_millis(300)).await;
    let request = seen
        .iter()
        .find(|r| r.url == "/fields")
        .unwrap_or_else(|| panic!("{via}: the request never reached the backend: {seen:?}"));
    (
        request.values("x-forwarded-for").join(", "),
        request.values("forwarded").join(", "),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_append_or_replace_means_the_same_in_protolab_haproxy_and_nginx() {
    let mut backend = LenientBackend::start().await;
    for via in ["protolab", "haproxy", "nginx"] {
        let (xff, forwarded) = forwarding_fields_behind(via, "append", &mut backend).await;
        assert_eq!(xff, "203.0.113.9, 127.0.0.1", "{via} append");
        assert!(
            forwarded.starts_with("for=203.0.113.9, for=127.0.0.1;proto=http"),
            "{via} append: {forwarded}"
        );
        let (xff, forwarded) = forwarding_fields_behind(via, "replace", &mut backend).await;
        assert_eq!(xff, "127.0.0.1", "{via} replace");
        assert!(
            forwarded.starts_with("for=127.0.0.1;proto=http") && !forwarded.contains("203.0.113.9"),
            "{via} replace: {forwarded}"
        );
    }
}
