// `protolab probe URL` as a user runs it (the built binary, `--json`, its exit status) against
// real peers: the lab over its four protocols with `openssl s_client` on the same server,
// HAProxy and nginx with short idle timeouts, `openssl s_server` with bad certificates
// (compared with `openssl s_client -verify_return_error` and Python's `ssl`), and small servers
// of the test's own that record the bytes they saw or misbehave on purpose.
#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step is a failed test"
)]

mod certs;
mod proxies;
mod raw;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use protolab_server::Protocol;
use protolab_test_support::{run, Peer, TestLab};
use tokio::process::Command;

/// Longest a probe may take in these tests (its own --timeout is 5 s per step).
const PROBE_LIMIT: Duration = Duration::from_secs(40);

/// `protolab --home HOME probe ARGS --json`, run to the end: its exit status and its report.
pub(crate) async fn probe(home: &Path, args: &[&str]) -> (i32, serde_json::Value, Output) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home")
        .arg(home)
        .arg("--json")
        .arg("probe")
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true);
    let out = run(cmd, PROBE_LIMIT).await;
    let code = out.status.code().unwrap_or(-1);
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|err| {
        panic!(
            "probe printed no JSON ({err}), status {code}:\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, report, out)
}

/// What `openssl s_client -brief` says it negotiated with 127.0.0.1:`port`: (version, cipher).
pub(crate) async fn openssl_negotiated(port: u16, ca: &Path) -> (String, String) {
    let mut cmd = Peer::Openssl.command([
        "s_client",
        "-brief",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-verify_return_error",
        "-CAfile",
    ]);
    cmd.arg(ca);
    let out = run(cmd, Duration::from_secs(20)).await;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("openssl s_client printed no {name}:\n{text}"))
    };
    (field("Protocol version:"), field("Ciphersuite:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_the_lab_over_http_https_ws_wss_and_tls_facts_agree_with_openssl() {
    // probe speaks HTTP/1.1 and WebSocket, not gRPC; and the SSE app's URL is an event
    // stream, a body that never finishes by design.
    let apps = [Protocol::Http, Protocol::Https, Protocol::Ws, Protocol::Wss];
    let lab = TestLab::start(&apps, |_| {}).await;
    let ca = lab.ca.to_string_lossy().into_owned();
    for protocol in apps {
        let url = lab.url(protocol);
        let (code, report, _) = probe(lab.home(), &[&url, "--cacert", &ca]).await;
        assert_eq!(code, 0, "{url}: {report:#}");
        assert_eq!(report["outcome"], "ok", "{url}: {report:#}");
        assert_eq!(report["dns"]["host"], "localhost");
        assert!(report["tcp"][0]["error"].is_null(), "{url}: {report:#}");
        let expected_status = if protocol.name().starts_with("ws") {
            101
        } else {
            200
        };
        assert_eq!(
            report["http"]["status"], expected_status,
            "{url}: {report:#}"
        );
        if expected_status == 101 {
            assert_eq!(report["websocket"]["echoed"], true, "{url}: {report:#}");
            assert!(
                report["websocket"]["ping_rtt_ms"].as_f64().is_some(),
                "{url}: {report:#}"
            );
        }
        if protocol.is_tls() {
            let tls = &report["tls"];
            assert_eq!(tls["certificate"]["ok"], true, "{url}: {report:#}");
            assert_eq!(tls["alpn"], "http/1.1");
            let (version, cipher) = openssl_negotiated(lab.port(protocol), &lab.ca).await;
            assert_eq!(
                tls["version"],
                version.as_str(),
                "{url}: openssl said {version}"
            );
            assert_eq!(
                tls["cipher"],
                cipher.as_str(),
                "{url}: openssl said {cipher}"
            );
        } else {
            assert!(report["tls"].is_null());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_output_names_each_step_and_the_exit_status_says_ok() {
    let lab = TestLab::start(&[Protocol::Wss], |_| {}).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(lab.home())
        .args(["probe", &lab.url(Protocol::Wss), "--cacert"])
        .arg(&lab.ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for step in [
        "dns",
        "tcp",
        "tls",
        "certificate  OK",
        "upgrade",
        "101",
        "websocket",
        "echo came back",
        "result       ok",
    ] {
        assert!(text.contains(step), "no `{step}` in:\n{text}");
    }
}

/// The lab closes a keep-alive connection idle for its idle timeout (here shorter than its
/// handshake timeout, which bounds the first request); over TLS with a close_notify first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_https_keep_alive_connection_ends_with_close_notify_then_fin() {
    let lab = TestLab::start(&[Protocol::Https], |c| {
        c.limits.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let ca = lab.ca.to_string_lossy().into_owned();
    let url = lab.url(Protocol::Https);
    let (code, report, _) = probe(
        lab.home(),
        &[&url, "--cacert", &ca, "--idle-timeout-discovery", "10s"],
    )
    .await;
    assert_eq!(code, 0, "{report:#}");
    let idle = &report["idle"];
    assert_eq!(idle["how"], "TLS close_notify, then FIN", "{report:#}");
    let survived = idle["survived_secs"].as_f64().unwrap();
    assert!(
        (survived - 2.0).abs() <= 0.2,
        "lived {survived} s, the lab allows 2 s: {report:#}"
    );
    assert_eq!(
        report["tls"]["resumed"], true,
        "the lab resumes TLS sessions: {report:#}"
    );
}

/// Nothing listens: exit 2 at once, with the refused address named.
#[tokio::test]
async fn a_refused_port_is_unreachable_exit_2_quickly() {
    let home = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let (code, report, _) = probe(home.path(), &[&format!("http://127.0.0.1:{port}/")]).await;
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["outcome"], "unreachable");
    assert!(
        report["tcp"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{report:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

/// A name that cannot resolve (RFC 2606 `.invalid`): exit 2, the lookup named.
#[tokio::test]
async fn a_name_that_does_not_resolve_is_unreachable() {
    let home = tempfile::tempdir().unwrap();
    let (code, report, _) = probe(
        home.path(),
        &["https://no-such-host.invalid/", "--timeout", "3s"],
    )
    .await;
    assert_eq!(code, 2, "{report:#}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("does not resolve"),
        "{report:#}"
    );
}

/// A usage error is refused before any network step, with status 2 and the fix.
#[tokio::test]
async fn a_url_without_a_scheme_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home.path())
        .args(["probe", "localhost:3000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("https://localhost:3000"), "{err}");
}
