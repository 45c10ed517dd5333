// `protolab certs acme`, `certs renew` and `proxy --acme` against pebble, the ACME CA Let's
// Encrypt publishes for tests, started here on loopback ports picked for each test.
//
// The honest minimum setup: pebble validates challenges for real (PEBBLE_VA_ALWAYS_VALID=0), so
// protolab's own http-01 and tls-alpn-01 responders must answer. The domain is `localhost`:
// Debian's pebble 2.4 resolves names with the system resolver unless `-dnsserver` is given, and
// /etc/hosts names localhost, so pebble connects to 127.0.0.1 (after ::1, refused) on the
// `httpPort` / `tlsPort` of its configuration, which the test points at protolab's responder.
// pebble's HTTPS listener gets a certificate from a throwaway protolab CA, which protolab trusts
// with --directory-ca. Renewal is forced by pebble's own `certificateValidityPeriod`: its
// certificates live 30 seconds, so protolab renews at 20. For dns-01, pebble is started with
// `-dnsserver` pointing at pebble-challtestsrv (same Debian package), whose management API the
// test's hook script calls to set the TXT record; its default A answer for every name is
// 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step is a failed test"
)]

mod peers;

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_server::Protocol;
use protolab_test_support::{free_port, require, Peer, TestLab};

use peers::{
    mode, protolab, protolab_run, served_serial, stored_serial, verify_chain, ChallTestSrv,
    KillGroupOnDrop, Pebble, PEER_LIMIT,
};

async fn obtains_a_certificate(challenge: &str) {
    let pebble = Pebble::start(None).await;
    let home = tempfile::tempdir().unwrap();
    let port = if challenge == "--http-01" {
        pebble.http_port
    } else {
        pebble.tls_port
    };
    let out = protolab_run(home.path(), &pebble.acme_args(challenge, port)).await;
    assert!(
        out.status.success(),
        "{challenge}: {}\npebble:\n{}",
        String::from_utf8_lossy(&out.stderr),
        pebble.log()
    );
    let store = protolab_tls::Store::open(home.path());
    let chain = store.acme_cert_path("localhost");
    verify_chain(&chain, &pebble.root().await).await;
    assert_eq!(mode(&store.acme_key_path("localhost")), 0o600);
    assert_eq!(mode(&store.acme_account_path(&pebble.directory)), 0o600);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&chain.display().to_string()), "{stdout}");

    // Not due yet (pebble's certificates live five years): `renew` leaves it; --force renews
    // with the saved account and the same challenge, and the serial changes.
    let before = stored_serial(home.path());
    let out = protolab_run(home.path(), &["certs".into(), "renew".into()]).await;
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("localhost: not due"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(stored_serial(home.path()), before);
    let args = ["certs", "renew", "--force", "localhost"].map(String::from);
    let out = protolab_run(home.path(), &args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(stored_serial(home.path()), before);
    verify_chain(&chain, &pebble.root().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_01_end_to_end_against_pebble() {
    obtains_a_certificate("--http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn_01_end_to_end_against_pebble() {
    obtains_a_certificate("--tls-alpn-01").await;
}

/// dns-01 through `--dns-01-hook`: the hook (a shell script using curl) publishes the TXT
/// record in pebble-challtestsrv, which pebble resolves through; it is cleared afterwards. A
/// hook that fails stops the order with its exit status and stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_01_through_a_hook_end_to_end_against_pebble() {
    let dns = ChallTestSrv::start().await;
    let pebble = Pebble::start_with(None, Some(dns.dns)).await;
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("hook.log");
    let curl = require("curl", "apt-get install -y curl");
    let hook = home.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
set -e
api=http://127.0.0.1:{port}
case "$PROTOLAB_ACME_ACTION" in
  set) {curl} -sS --fail -d "{{\"host\":\"$PROTOLAB_ACME_TXT_NAME.\",\"value\":\"$PROTOLAB_ACME_TXT_VALUE\"}}" $api/set-txt ;;
  clear) {curl} -sS --fail -d "{{\"host\":\"$PROTOLAB_ACME_TXT_NAME.\"}}" $api/clear-txt ;;
esac
echo "$PROTOLAB_ACME_ACTION $PROTOLAB_ACME_DOMAIN $PROTOLAB_ACME_TXT_NAME" >> {log}
"#,
            port = dns.management,
            curl = curl.display(),
            log = log.display(),
        ),
    )
    .unwrap();
    let args = |hook: &str| {
        [
            "certs",
            "acme",
            "--directory",
            &pebble.directory,
            "--directory-ca",
            &pebble.listener_ca.to_string_lossy(),
            "--domain",
            "localhost",
            "--dns-01-hook",
            hook,
            "--timeout",
            "60s",
        ]
        .map(String::from)
        .to_vec()
    };

    let failing = "echo 'the DNS API said no' >&2; exit 3";
    let out = protolab_run(home.path(), &args(failing)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exit status: 3") && stderr.contains("the DNS API said no"),
        "{stderr}"
    );

    let out = protolab_run(home.path(), &args(&format!("sh {}", hook.display()))).await;
    assert!(
        out.status.success(),
        "{}\npebble:\n{}",
        String::from_utf8_lossy(&out.stderr),
        pebble.log()
    );
    let chain = protolab_tls::Store::open(home.path()).acme_cert_path("localhost");
    verify_chain(&chain, &pebble.root().await).await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "set localhost _acme-challenge.localhost\nclear localhost _acme-challenge.localhost\n"
    );
}

/// `proxy --acme NAME --emit haproxy|nginx` names the ACME certificate's files, and the real
/// HAProxy and nginx serve it: a new connection gets the stored serial, which chains to
/// pebble's root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emitted_haproxy_and_nginx_configs_serve_the_acme_certificate() {
    let pebble = Pebble::start(None).await;
    let root = pebble.root().await;
    let home = tempfile::tempdir().unwrap();
    let out = protolab_run(
        home.path(),
        &pebble.acme_args("--http-01", pebble.http_port),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serial = stored_serial(home.path());
    for flavor in ["haproxy", "nginx"] {
        let port = free_port();
        let out = protolab(home.path())
            .args([
                "proxy",
                "--listen-tls",
                &format!("127.0.0.1:{port}"),
                "--backend",
                "127.0.0.1:9",
                "--acme",
                "localhost",
                "--emit",
                flavor,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = home.path().join(format!("{flavor}.conf"));
        std::fs::write(&config, &out.stdout).unwrap();
        let mut cmd = if flavor == "haproxy" {
            let mut cmd = Command::new(require("haproxy", "apt-get install -y haproxy"));
            cmd.arg("-f").arg(&config).arg("-db");
            cmd
        } else {
            let mut cmd = Command::new(require("nginx", "apt-get install -y nginx"));
            cmd.arg("-c")
                .arg(&config)
                .arg("-p")
                .arg(format!("{}/", home.path().join("proxy-run").display()));
            cmd
        };
        // Its own process group, so nginx's workers go with their master.
        let server = cmd
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _guard = KillGroupOnDrop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "{flavor} never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(served_serial(port).await, serial, "{flavor}");
        let verified = Peer::Openssl
            .command([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
                "-CAfile",
                &root.to_string_lossy(),
                "-verify_hostname",
                "localhost",
                "-verify_return_error",
            ])
            .stdin(Stdio::null())
            .output();
        let out = tokio::time::timeout(PEER_LIMIT, verified)
            .await
            .unwrap()
            .unwrap();
        assert!(
            out.status.success(),
            "{flavor}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// A protolab server (`proxy` or `up`) serving an ACME certificate: its TLS port from the
/// ready line, its stderr lines as they come; killed when dropped.
struct Served {
    child: Child,
    port: u16,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn spawn(home: &Path, args: &[&str], addr_of: fn(&serde_json::Value) -> &str) -> Self {
        let mut child = protolab(home)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("{args:?}: no ready line: {line}"));
        let port = addr_of(&ready).rsplit(':').next().unwrap().parse().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            port,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the line saying the certificate was renewed.
    async fn renewed(&mut self, what: &str, pebble: &Pebble) {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(line)) if line.contains("renewed the ACME certificate localhost") => return,
                Ok(Some(line)) => self.seen.push(line),
                _ => panic!(
                    "{what}: no renewal within 45 s; it said:\n{}\npebble:\n{}",
                    self.seen.join("\n"),
                    pebble.log()
                ),
            }
        }
    }
}

/// One WSS connection echoing every 200 ms for 26 s, across the renewal (due 20 s after
/// issuance), trusting only pebble's root.
fn soak(port: u16, root: &Path) -> tokio::task::JoinHandle<serde_json::Value> {
    let soak = Peer::PythonWs
        .command([
            "soak",
            &format!("wss://localhost:{port}/ws"),
            "--cafile",
            &root.to_string_lossy(),
            "--seconds",
            "26",
            "--interval",
            "0.2",
        ])
        .output();
    tokio::spawn(async move {
        let out = tokio::time::timeout(PEER_LIMIT, soak)
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.lines().last().unwrap_or("{}"))
            .unwrap_or_else(|_| panic!("soak output: {text}"))
    })
}

fn assert_soak_undisturbed(what: &str, result: &serde_json::Value) {
    assert_eq!(result["errors"], serde_json::json!([]), "{what}: {result}");
    assert!(result["sent"].as_u64().unwrap() >= 100, "{what}: {result}");
    assert_eq!(result["sent"], result["echoed"], "{what}: {result}");
}

/// pebble issues 30-second certificates; `proxy --acme` (renewing by http-01) and `up --acme`
/// (another home, renewing by tls-alpn-01) renew at 20 s while a WSS client keeps echoing
/// through each: no client sees a disconnect or a lost echo, and a new connection after the
/// renewal gets the new serial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_and_up_renew_and_reload_without_dropping_a_wss_client() {
    let pebble = Pebble::start(Some(30)).await;
    let root = pebble.root().await;
    let (home, home_up) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (home, challenge, port) in [
        (&home, "--http-01", pebble.http_port),
        (&home_up, "--tls-alpn-01", pebble.tls_port),
    ] {
        let out = protolab_run(home.path(), &pebble.acme_args(challenge, port)).await;
        assert!(
            out.status.success(),
            "{}\npebble:\n{}",
            String::from_utf8_lossy(&out.stderr),
            pebble.log()
        );
    }
    let (first, first_up) = (stored_serial(home.path()), stored_serial(home_up.path()));

    let lab = TestLab::start(&[Protocol::Ws], |_| {}).await;
    let backend = format!("127.0.0.1:{}", lab.port(Protocol::Ws));
    let mut proxy = Served::spawn(
        home.path(),
        &[
            "proxy",
            "--listen-tls",
            "127.0.0.1:0",
            "--backend",
            &backend,
            "--acme",
            "localhost",
            "--no-access-log",
            "--json",
        ],
        |ready| ready["listeners"][0]["addr"].as_str().unwrap(),
    );
    let mut up = Served::spawn(
        home_up.path(),
        &[
            "up",
            "--only",
            "wss",
            "--wss-port",
            "0",
            "--acme",
            "localhost",
            "--json",
        ],
        |ready| ready["endpoints"][0]["addr"].as_str().unwrap(),
    );
    assert_eq!(
        served_serial(proxy.port).await,
        first,
        "proxy: the stored certificate"
    );
    assert_eq!(
        served_serial(up.port).await,
        first_up,
        "up: the stored certificate"
    );

    let soaks = [soak(proxy.port, &root), soak(up.port, &root)];
    proxy.renewed("proxy", &pebble).await;
    up.renewed("up", &pebble).await;
    for (what, served, home, first) in [
        ("proxy", &proxy, &home, &first),
        ("up", &up, &home_up, &first_up),
    ] {
        let second = served_serial(served.port).await;
        assert_ne!(
            &second, first,
            "{what}: a new connection gets the renewed certificate"
        );
        assert_eq!(
            second,
            stored_serial(home.path()),
            "{what}: and it is the stored one"
        );
    }
    for (what, soak) in ["proxy", "up"].into_iter().zip(soaks) {
        assert_soak_undisturbed(what, &soak.await.unwrap());
    }
}

/// A directory URL that answers errors, one that refuses, and one that never answers: exit
/// status 1 with words saying which, the silent one within --timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_directory_fails_in_plain_words_and_in_bounded_time() {
    let pebble = Pebble::start(None).await;
    let home = tempfile::tempdir().unwrap();
    let base = |url: String| {
        [
            "certs",
            "acme",
            "--directory",
            &url,
            "--directory-ca",
            &pebble.listener_ca.to_string_lossy(),
            "--domain",
            "localhost",
            "--http-01",
            "127.0.0.1:0",
            "--timeout",
            "3s",
        ]
        .map(String::from)
        .to_vec()
    };

    let errors_url = pebble.directory.replace("/dir", "/no-such-directory");
    let out = protolab_run(home.path(), &base(errors_url)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not what an ACME CA sends"), "{stderr}");

    let refused = format!("https://127.0.0.1:{}/dir", free_port());
    let out = protolab_run(home.path(), &base(refused)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");

    // Accepts TCP (the kernel does) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/dir", silent.local_addr().unwrap());
    let started = Instant::now();
    let out = protolab_run(home.path(), &base(url)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did not complete the order within 3s"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

/// pebble validates http-01 on a port nobody answers: its problem document (type and detail)
/// is what the user reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_pebble_cannot_validate_shows_its_problem_detail() {
    let pebble = Pebble::start(None).await;
    let home = tempfile::tempdir().unwrap();
    // The responder listens elsewhere than the port pebble validates on.
    let out = protolab_run(home.path(), &pebble.acme_args("--http-01", free_port())).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("could not validate"), "{stderr}");
    assert!(
        stderr.contains("[connection]"),
        "pebble's problem type: {stderr}"
    );
    assert!(
        stderr.contains(&format!(":{}", pebble.http_port)),
        "pebble's detail names where it connected: {stderr}"
    );
    assert!(!protolab_tls::Store::open(home.path())
        .acme_cert_path("localhost")
        .exists());
}
