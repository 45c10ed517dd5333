// `protolab up` as a user runs it: the real binary, its readiness lines, real peers, and
// SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_test_support::require;

fn protolab(home: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home").arg(home).env_remove("RUST_LOG");
    cmd
}

/// Starts `up` with every port 0 and returns the child and the URLs it printed before `ready`.
fn start_up(home: &std::path::Path, extra: &[&str]) -> (Child, Vec<String>) {
    let mut child = protolab(home)
        .args([
            "up",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--ws-port",
            "0",
            "--wss-port",
            "0",
            "--sse-port",
            "0",
            "--h2-port",
            "0",
            "--grpc-port",
            "0",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protolab starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "ready" => return (child, lines),
            Ok(line) => lines.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no `ready` line within 30 s; got {lines:?}");
            }
        }
    }
}

fn url_of<'a>(lines: &'a [String], protocol: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| {
            l.strip_prefix(protocol)
                .filter(|rest| rest.starts_with(' '))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {protocol} line in {lines:?}"))
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("protolab did not exit within {limit:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn up_only_sse_serves_an_event_stream_and_ends_it_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_up(home.path(), &["--only", "sse", "--push-interval", "100ms"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let url = url_of(&lines, "sse").to_string();
    assert!(
        lines[0].contains("demo page http://localhost:"),
        "{lines:?}"
    );
    let curl = require("curl", "apt-get install -y curl");
    let out = Command::new(&curl)
        .args(["-sSN", "--max-time", "1.5", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("retry: 1000\n"), "{text}");
    assert!(
        text.contains("event: hello\n") && text.contains("\nid: "),
        "{text}"
    );
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn up_prints_every_url_then_ready_serves_them_and_exits_0_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_up(home.path(), &[]);
    assert_eq!(lines.len(), 7, "one line per app: {lines:?}");
    assert!(
        url_of(&lines, "grpc").starts_with("localhost:"),
        "{lines:?}"
    );
    let http = url_of(&lines, "http").to_string();
    let https = url_of(&lines, "https").to_string();
    let ws = url_of(&lines, "ws").to_string();
    let wss = url_of(&lines, "wss").to_string();
    let h2 = url_of(&lines, "h2").to_string();
    let sse = url_of(&lines, "sse").to_string();
    assert!(sse.ends_with("/events"), "{lines:?}");
    assert!(
        ws.ends_with("/ws") && wss.starts_with("wss://localhost:"),
        "{lines:?}"
    );

    // The CA was created on first use, with its key private.
    let ca = home.path().join("ca.pem");
    let key_mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.path().join("ca-key.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(key_mode & 0o777, 0o600);

    let curl = require("curl", "apt-get install -y curl");
    let sse_healthz = sse.replace("/events", "/healthz");
    for url in [
        format!("{http}healthz"),
        format!("{https}healthz"),
        format!("{h2}healthz"),
        sse_healthz,
    ] {
        // --http2 is curl's default over TLS; said anyway, the h2 app speaks nothing else.
        let out = Command::new(&curl)
            .args(["-sS", "--http2", "--max-time", "10", "--cacert"])
            .arg(&ca)
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ok\n",
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    let port = http
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing left listening"
    );
}

#[test]
fn a_taken_port_fails_with_a_message_naming_it() {
    let home = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port().to_string();
    let out = protolab(home.path())
        .args(["up", "--only", "http", "--http-port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("port {port}")) && stderr.contains("already in use"),
        "{stderr}"
    );
}

#[test]
fn wrong_flags_get_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    for (args, needle) in [
        (vec!["up", "--only", "gopher"], "unknown protocol `gopher`"),
        (vec!["up", "--push-interval", "soon"], "not a duration"),
        (vec!["up", "--max-message-size", "lots"], "not a size"),
        (
            vec!["up", "--http-port", "4000", "--ws-port", "4000"],
            "both set to port 4000",
        ),
    ] {
        let out = protolab(home.path()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_are_generated_for_bash() {
    let home = tempfile::tempdir().unwrap();
    let out = protolab(home.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = String::from_utf8_lossy(&out.stdout);
    assert!(
        script.contains("complete -F")
            && script.contains("certs")
            && script.contains("--push-interval")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keylog_holds_the_secrets_the_client_derived_and_is_private() {
    use protolab_test_support::{run_json, Peer};
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt as _;

    let home = tempfile::tempdir().unwrap();
    let server_log = home.path().join("server.keys");
    let client_log = home.path().join("client.keys");
    let server_log_arg = server_log.to_string_lossy().into_owned();
    let (mut child, lines) = start_up(home.path(), &["--only", "wss", "--keylog", &server_log_arg]);
    let wss = url_of(&lines, "wss").to_string();
    let ca = home.path().join("ca.pem").to_string_lossy().into_owned();

    // Python's ssl module writes the client's view of the same secrets to SSLKEYLOGFILE.
    let mut cmd = Peer::PythonWs.command(["echo", wss.as_str(), "--cafile", &ca]);
    cmd.env("SSLKEYLOGFILE", &client_log);
    let result = run_json(cmd, Duration::from_secs(30)).await;
    assert_eq!(result["text_echo"], "hello from python", "{result}");
    sigterm(&child);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(10)).code(),
        Some(0)
    );

    let secrets = |path: &std::path::Path| -> BTreeSet<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                [
                    "CLIENT_HANDSHAKE_TRAFFIC_SECRET ",
                    "SERVER_HANDSHAKE_TRAFFIC_SECRET ",
                    "CLIENT_TRAFFIC_SECRET_0 ",
                    "SERVER_TRAFFIC_SECRET_0 ",
                ]
                .iter()
                .any(|label| l.starts_with(label))
            })
            .map(str::to_string)
            .collect()
    };
    let client = secrets(&client_log);
    let server = secrets(&server_log);
    assert_eq!(
        client.len(),
        4,
        "Python logged one TLS 1.3 connection: {client:?}"
    );
    assert!(
        client.is_subset(&server),
        "server log lacks the client's secrets:\nclient {client:?}\nserver {server:?}"
    );
    let mode = std::fs::metadata(&server_log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // An existing key log that others can read is refused, not filled with secrets.
    let open = home.path().join("open.keys");
    std::fs::write(&open, "").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = protolab(home.path())
        .args(["up", "--only", "wss", "--wss-port", "0", "--keylog"])
        .arg(&open)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("readable by others"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_with_proxy_serves_ws_and_wss_through_the_proxy() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_up(
        home.path(),
        &[
            "--proxy",
            "--proxy-port",
            "0",
            "--proxy-tls-port",
            "0",
            "--push-interval",
            "300ms",
        ],
    );
    let ca = home.path().join("ca.pem").to_string_lossy().into_owned();
    for name in ["proxy-ws", "proxy-wss"] {
        let url = url_of(&lines, name).to_string();
        assert!(url.ends_with("/ws"), "{lines:?}");
        let cmd = protolab_test_support::Peer::PythonWs.command([
            "echo",
            &url,
            "--cafile",
            &ca,
            "--push-within",
            "3",
        ]);
        let result = protolab_test_support::run_json(cmd, Duration::from_secs(30)).await;
        assert_eq!(result["text_echo"], "hello from python", "{url}: {result}");
        assert_eq!(result["push"]["type"], "push", "{url}: {result}");
        assert_eq!(result["close_code"], 1000, "{url}: {result}");
    }
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn a_refused_cross_origin_upgrade_is_logged_at_the_default_level_with_the_flag_that_allows_it() {
    let home = tempfile::tempdir().unwrap();
    let (mut child, lines) = start_up(home.path(), &["--only", "ws"]);
    let url = url_of(&lines, "ws").replace("ws://", "http://");
    let curl = require("curl", "apt-get install -y curl");
    let upgrade = |origin: &str| {
        let out = Command::new(&curl)
            .args([
                "-sS",
                "--max-time",
                "5",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-H", "Connection: Upgrade", "-H", "Upgrade: websocket"])
            .args(["-H", "Sec-WebSocket-Version: 13"])
            .args(["-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
            .args(["-H", &format!("Origin: {origin}")])
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // A burst from one page: refused each time, logged once (a second apart at most).
    for _ in 0..20 {
        assert_eq!(upgrade("https://evil.example"), "403");
    }
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cross-origin"))
        .collect();
    assert!(
        said.first().is_some_and(|l| l.contains("WARN")
            && l.contains("refused a cross-origin WebSocket upgrade from https://evil.example")
            && l.contains("allow it with --allow-origin https://evil.example")),
        "{stderr}"
    );
    assert!(said.len() <= 3, "20 refusals flooded the log: {said:?}");
}
