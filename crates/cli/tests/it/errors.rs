// What the binary says when something is wrong: usage errors exit 2 in every command, a home
// that cannot be made names `--home`/`PROTOLAB_HOME`, an OS error is said once, a taken port
// names the flag that picks another, compare points only at a report it wrote, TLS failures
// are said in words, and `--help` lists a command's own options before the global ones.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::results::protolab;

/// Runs the binary with `args` (no `--home`), with `env` set.
fn protolab_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("PROTOLAB_HOME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_command_line_that_cannot_work_exits_2_naming_the_flag() {
    let home = tempfile::tempdir().unwrap();
    let pcap = home.path().join("x.pcapng");
    std::fs::write(&pcap, b"").unwrap();
    let pcap = pcap.to_str().unwrap();
    let missing_dir = home.path().join("no/such/dir/out.pcapng");
    let missing_dir = missing_dir.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["compare", "-c", "0"], "--connections"),
        (vec!["compare", "--sizes", "17MiB"], "--sizes"),
        (vec!["compare", "--rate", "0"], "--rate"),
        (vec!["compare", "--duration", "50ms"], "--duration"),
        (
            vec!["compare", "--workloads", "push", "--push-interval", "2h"],
            "--push-interval",
        ),
        (vec!["compare", "--wan-emulator", "netem"], "--wan-emulator"),
        (
            vec!["compare", "--wan-emulator", "tbf", "--rtt", "50ms"],
            "--wan-emulator tbf",
        ),
        (
            vec!["bench", "http://127.0.0.1:1/", "-c", "0"],
            "--connections",
        ),
        (vec!["bench", "ftp://127.0.0.1:21/"], "unsupported scheme"),
        (
            vec!["bench", "http://127.0.0.1:1/", "--rate", "0"],
            "--rate",
        ),
        (
            vec![
                "bench",
                "http://127.0.0.1:1/",
                "--workload",
                "connect",
                "--rate",
                "5",
            ],
            "--rate",
        ),
        (
            vec!["bench", "http://127.0.0.1:1/", "--ws-deflate"],
            "--ws-deflate",
        ),
        (
            vec!["bench", "http://127.0.0.1:1/", "--workload", "push"],
            "--workload push",
        ),
        (
            vec!["bench", "http://127.0.0.1:1/", "--size", "17MiB"],
            "--size",
        ),
        (
            vec!["bench", "http://127.0.0.1:1/", "-n", "0"],
            "--max-messages",
        ),
        (vec!["up", "--only", "gopher"], "--only"),
        (vec!["up", "--max-connections", "0"], "--max-connections"),
        (
            vec!["up", "--http-port", "4000", "--ws-port", "4000"],
            "port 4000",
        ),
        (vec!["up", "--proxy", "--only", "http"], "--proxy"),
        (
            vec!["proxy", "--backend", "127.0.0.1:1", "--rise", "0"],
            "--rise",
        ),
        (
            vec!["proxy", "--backend", "no-port-here"],
            "--backend no-port-here",
        ),
        (
            vec!["proxy", "--backend", "127.0.0.1:1", "--sni", "*.a.test"],
            "--sni",
        ),
        (
            vec![
                "proxy",
                "--backend",
                "127.0.0.1:1",
                "--max-header-size",
                "10",
            ],
            "--max-header-size",
        ),
        (vec!["capture", "--port", "0", "-w", "x.pcapng"], "--port 0"),
        (vec!["capture", "--port", "1", "-w", missing_dir], "-w"),
        (vec!["inspect", pcap, pcap], "--inject-secrets"),
    ];
    for (args, flag) in cases {
        let out = protolab(home.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(flag),
            "{args:?}: expected `{flag}` in:\n{stderr}"
        );
    }
    // Not the command line's fault: a name that does not resolve stays exit 1.
    let out = protolab(
        home.path(),
        &["proxy", "--backend", "no-such-host.invalid:80"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_home_that_cannot_be_made_names_home_and_protolab_home_and_says_the_os_error_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where a directory must go: mkdir fails with ENOTDIR, even for root.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let home = file.join("home");
    let home = home.to_str().unwrap();
    let by_flag = protolab_env(&["--home", home, "certs", "init"], &[]);
    let by_env = protolab_env(&["certs", "init"], &[("PROTOLAB_HOME", home)]);
    let by_default = protolab_env(
        &["certs", "init"],
        &[("HOME", file.to_str().unwrap()), ("XDG_DATA_HOME", "")],
    );
    for (how, out) in [
        ("--home", by_flag),
        ("PROTOLAB_HOME", by_env),
        ("default", by_default),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{how}: {stderr}");
        assert!(
            stderr.contains("--home DIR") && stderr.contains("PROTOLAB_HOME=DIR"),
            "{how}: {stderr}"
        );
        assert_eq!(
            stderr.matches("Not a directory (os error 20)").count(),
            1,
            "{how}: the OS error once:\n{stderr}"
        );
    }
}

/// Runs `protolab ARGS` expecting it to fail at start-up; returns its stderr.
fn fails_at_start(home: &Path, args: &[&str]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} started instead of failing on the taken port");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
    stderr
}

#[test]
fn a_taken_port_names_the_flag_that_picks_another() {
    let home = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = squatter.local_addr().unwrap().port().to_string();
    let others_free = |flag: &str| {
        let mut args = vec!["up".to_owned()];
        for f in [
            "--http-port",
            "--https-port",
            "--ws-port",
            "--wss-port",
            "--sse-port",
            "--h2-port",
            "--grpc-port",
        ] {
            args.extend([
                f.to_owned(),
                if f == flag { &taken } else { "0" }.to_owned(),
            ]);
        }
        args
    };
    let mut cases: Vec<(Vec<String>, &str)> = [
        "--http-port",
        "--https-port",
        "--ws-port",
        "--wss-port",
        "--sse-port",
        "--h2-port",
        "--grpc-port",
    ]
    .into_iter()
    .map(|flag| (others_free(flag), flag))
    .collect();
    for (flag, other) in [
        ("--proxy-port", "--proxy-tls-port"),
        ("--proxy-tls-port", "--proxy-port"),
    ] {
        let mut args = others_free("");
        args.extend(["--proxy", flag, &taken, other, "0"].map(String::from));
        cases.push((args, flag));
    }
    let proxy = |extra: &[&str]| {
        let mut args: Vec<String> = ["proxy", "--backend", "127.0.0.1:1", "--no-health-check"]
            .map(String::from)
            .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        args
    };
    let addr = format!("127.0.0.1:{taken}");
    cases.push((proxy(&["--listen", &addr]), "--listen ADDR"));
    cases.push((proxy(&["--listen-tls", &addr]), "--listen-tls ADDR"));
    cases.push((
        proxy(&["--listen", "127.0.0.1:0", "--metrics", &addr]),
        "--metrics ADDR",
    ));
    for (args, flag) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = fails_at_start(home.path(), &args);
        assert!(
            stderr.contains("already in use") && stderr.contains(&format!("with {flag}")),
            "{args:?}: expected {flag} in:\n{stderr}"
        );
        assert!(stderr.contains(&format!("sport = :{taken}")), "{stderr}");
    }
}

#[test]
fn compare_points_at_a_report_only_when_it_wrote_one() {
    let home = tempfile::tempdir().unwrap();
    // No push arrives within the run: the push run completes no message.
    let never = [
        "compare",
        "--protocols",
        "ws",
        "--workloads",
        "push",
        "--push-interval",
        "1h",
        "--duration",
        "300ms",
    ];
    let out = protolab(home.path(), &[&never[..], &["--no-report"]].concat());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no message completed in: ws push"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("report"),
        "no report was written:\n{stderr}"
    );

    let dir = home.path().join("rep");
    let out = protolab(
        home.path(),
        &[&never[..], &["--out", dir.to_str().unwrap()]].concat(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let results = dir.join("results.json");
    assert!(results.is_file());
    assert!(
        stderr.contains(&results.display().to_string()),
        "the report is named:\n{stderr}"
    );
}

#[test]
fn help_lists_a_commands_own_options_before_the_global_ones() {
    let home = tempfile::tempdir().unwrap();
    for (command, own) in [
        (&["compare", "--help"][..], "--connections"),
        (&["bench", "--help"][..], "--workload"),
        (&["certs", "check", "--help"][..], "--cacert"),
        (&["up", "-h"][..], "--http-port"),
    ] {
        let out = protolab(home.path(), command);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        let own_at = help.find(own).unwrap();
        let global = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{command:?}: no global heading:\n{help}"));
        let home_at = help.find("--home").unwrap();
        assert!(
            own_at < global && global < home_at,
            "{command:?}: own options first, then the global ones:\n{help}"
        );
    }
}

/// `protolab --home HOME ARGS` through the binary, with `USER` set (it names a new CA).
async fn protolab_as(user: &str, home: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("RUST_LOG")
        .env("USER", user)
        .output()
        .await
        .unwrap()
}

/// `openssl s_server` on a free loopback port with `cert` and `key`; killed when dropped.
fn s_server(cert: &Path, key: &Path) -> (tokio::process::Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = protolab_test_support::Peer::Openssl
        .command(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_explains_tls_failures_in_words_as_certs_check_does() {
    use protolab_server::Protocol;
    let lab =
        protolab_test_support::TestLab::start(&[Protocol::Http, Protocol::Https], |_| {}).await;
    let ca = lab.ca.to_str().unwrap().to_owned();
    let bench = |url: String, cacert: String| async move {
        let home = tempfile::tempdir().unwrap();
        let out = protolab_as(
            "someone",
            home.path(),
            &["bench", &url, "--duration", "1s", "--cacert", &cacert],
        )
        .await;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        for debug_name in [
            "InvalidContentType",
            "CaUsedAsEndEntity",
            "OtherError",
            "UnknownIssuer",
        ] {
            assert!(
                !stderr.contains(debug_name),
                "{url}: rustls' words in:\n{stderr}"
            );
        }
        stderr
    };

    // https:// against the plain HTTP port.
    let plain = format!("https://localhost:{}/", lab.port(Protocol::Http));
    let stderr = bench(plain, ca.clone()).await;
    assert!(stderr.contains("did not answer with TLS"), "{stderr}");
    assert!(
        stderr.contains("http://"),
        "says what to use instead:\n{stderr}"
    );

    // A CA this client does not trust: another protolab CA, another owner.
    let stranger = tempfile::tempdir().unwrap();
    let made = protolab_as("stranger", stranger.path(), &["certs", "init"]).await;
    assert!(made.status.success());
    let stranger_ca = stranger.path().join("ca.pem").to_str().unwrap().to_owned();
    let https = format!("https://localhost:{}/", lab.port(Protocol::Https));
    let stderr = bench(https, stranger_ca).await;
    assert!(stderr.contains("unknown issuer"), "{stderr}");
    assert!(
        stderr.contains("does not lead to a root you trust"),
        "{stderr}"
    );
    assert!(
        stderr.contains("protolab certs check localhost:"),
        "{stderr}"
    );

    // A server whose certificate is the CA itself (openssl pointed at ca.pem).
    let (server, port) = s_server(&lab.ca, &lab.home().join("ca-key.pem"));
    let stderr = bench(format!("https://localhost:{port}/"), ca.clone()).await;
    drop(server);
    assert!(stderr.contains("CA certificate"), "{stderr}");
    assert!(stderr.contains("ca.pem instead of"), "{stderr}");
    assert!(
        stderr.contains(&format!("protolab certs check localhost:{port}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn certs_check_reports_every_problem_of_a_self_signed_certificate_for_the_wrong_name() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("self.pem");
    let key = dir.path().join("self-key.pem");
    let made = protolab_test_support::Peer::Openssl
        .command([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            // A server certificate in every other way, so only the two faults remain.
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .await
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let home = dir.path().join("home");
    let cert = cert.to_str().unwrap();
    let out = protolab_as(
        "someone",
        &home,
        &["--json", "certs", "check", cert, "--name", "wrong.test"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["self_signed", "hostname_mismatch"], "{json}");
    assert_eq!(json["problem"]["kind"], "self_signed");

    let out = protolab_as(
        "someone",
        &home,
        &["certs", "check", cert, "--name", "wrong.test"],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("PROBLEMS: self-signed certificate; hostname mismatch"),
        "{text}"
    );
    assert!(
        text.contains("self-signed") && text.contains("\"wrong.test\""),
        "{text}"
    );

    // Served, the same two.
    let (server, port) = s_server(Path::new(cert), &key);
    let out = protolab_as(
        "someone",
        &home,
        &[
            "--json",
            "certs",
            "check",
            &format!("localhost:{port}"),
            "--name",
            "wrong.test",
        ],
    )
    .await;
    drop(server);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["problems"].as_array().map(Vec::len), Some(2), "{json}");
}
