// `protolab certs` end to end, in-process, with a temporary state directory and real peers
// (`openssl s_server`, `certutil`).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser as _;

fn protolab(home: &Path, args: &[&str]) -> anyhow::Result<ExitCode> {
    let mut argv = vec![
        "protolab".to_owned(),
        "--home".to_owned(),
        home.display().to_string(),
    ];
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let cli = protolab::Cli::parse_from(argv);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(protolab::run(cli))
}

fn code(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|err| panic!("protolab failed: {err:#}"))
}

#[test]
fn init_issue_show() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("state");
    assert_eq!(code(protolab(&home, &["certs", "init"])), ExitCode::SUCCESS);
    let ca = std::fs::read(home.join("ca.pem")).unwrap();
    // Again: same CA.
    assert_eq!(code(protolab(&home, &["certs", "init"])), ExitCode::SUCCESS);
    assert_eq!(std::fs::read(home.join("ca.pem")).unwrap(), ca);
    assert_eq!(
        code(protolab(
            &home,
            &["certs", "issue", "localhost", "127.0.0.1", "::1"]
        )),
        ExitCode::SUCCESS
    );
    assert!(home.join("certs/localhost+2.pem").is_file());
    assert!(home.join("certs/localhost+2-key.pem").is_file());
    // A bad name is a usage error.
    assert_eq!(
        code(protolab(&home, &["certs", "issue", "not a name"])),
        ExitCode::from(2)
    );
    assert_eq!(
        code(protolab(&home, &["--json", "certs", "show"])),
        ExitCode::SUCCESS
    );
    assert_eq!(code(protolab(&home, &["certs", "show"])), ExitCode::SUCCESS);
    let cert = home.join("certs/localhost+2.pem");
    assert_eq!(
        code(protolab(&home, &["certs", "show", cert.to_str().unwrap()])),
        ExitCode::SUCCESS
    );
    assert_eq!(
        code(protolab(&home, &["certs", "trust"])),
        ExitCode::SUCCESS
    );
}

#[test]
fn show_json_parses() {
    // The JSON goes to the process's stdout, which the test harness captures; run the built
    // binary for this one so the output can be read.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("state");
    let bin = env!("CARGO_BIN_EXE_protolab");
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("--home")
            .arg(&home)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let issued = run(&["--json", "certs", "issue", "app.example.test", "10.1.2.3"]);
    assert_eq!(issued["ca_created"], true);
    assert_eq!(
        issued["cert"]["sans"],
        serde_json::json!(["app.example.test", "10.1.2.3"])
    );
    let shown = run(&["--json", "certs", "show"]);
    assert_eq!(shown["ca"]["cert"]["is_ca"], true);
    assert_eq!(shown["leaves"][0]["cert"]["sans"][0], "app.example.test");
    assert!(shown["leaves"][0]["cert_path"]
        .as_str()
        .unwrap()
        .ends_with("app.example.test+1.pem"));
    let file = run(&[
        "--json",
        "certs",
        "check",
        shown["leaves"][0]["cert_path"].as_str().unwrap(),
        "--name",
        "app.example.test",
    ]);
    assert_eq!(file["ok"], true, "{file}");
}

#[test]
fn check_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("state");
    assert_eq!(
        code(protolab(&home, &["certs", "issue", "localhost"])),
        ExitCode::SUCCESS
    );
    let cert = home.join("certs/localhost.pem");
    let key = home.join("certs/localhost-key.pem");
    let c = cert.to_str().unwrap();
    assert_eq!(
        code(protolab(
            &home,
            &["certs", "check", c, "--name", "localhost"]
        )),
        ExitCode::SUCCESS
    );
    assert_eq!(
        code(protolab(
            &home,
            &["certs", "check", c, "--name", "example.test"]
        )),
        ExitCode::from(1)
    );
    // A file without --name, or a target that is neither: usage errors.
    assert_eq!(
        code(protolab(&home, &["certs", "check", c])),
        ExitCode::from(2)
    );
    assert_eq!(
        code(protolab(&home, &["certs", "check", "no-port-here"])),
        ExitCode::from(2)
    );

    // Against a real server.
    let probe = Command::new("openssl").arg("version").output();
    assert!(
        probe.is_ok(),
        "`openssl` is needed: install the Debian package `openssl`"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
            c,
            "-key",
            key.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = format!("localhost:{port}");
    let ok = protolab(&home, &["certs", "check", &target]);
    let mismatch = protolab(
        &home,
        &["certs", "check", &target, "--name", "example.test"],
    );
    let other_ca = protolab(
        &home,
        &[
            "certs",
            "check",
            &target,
            "--cacert",
            "/etc/ssl/certs/ca-certificates.crt",
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(code(ok), ExitCode::SUCCESS);
    assert_eq!(code(mismatch), ExitCode::from(1));
    assert_eq!(code(other_ca), ExitCode::from(1));
    // Nobody listening: an error that says so.
    let err = protolab(&home, &["certs", "check", &target]).unwrap_err();
    assert!(format!("{err:#}").contains("nothing listens on"), "{err:#}");
}

#[test]
fn trust_install_nss() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("state");
    let db = tmp.path().join("nssdb");
    // Before init: a clear error pointing at `certs init`.
    let err = protolab(&home, &["certs", "trust"]).unwrap_err();
    assert!(
        format!("{err:#}").contains("protolab certs init"),
        "{err:#}"
    );
    assert_eq!(code(protolab(&home, &["certs", "init"])), ExitCode::SUCCESS);
    let db_arg = db.to_str().unwrap();
    assert_eq!(
        code(protolab(
            &home,
            &["certs", "trust", "--install", "nss", "--nssdb", db_arg]
        )),
        ExitCode::SUCCESS
    );
    assert_eq!(
        code(protolab(
            &home,
            &["certs", "trust", "--install", "nss", "--nssdb", db_arg]
        )),
        ExitCode::SUCCESS
    );
    let listing = Command::new("certutil")
        .args(["-L", "-d", &format!("sql:{db_arg}")])
        .output()
        .expect("`certutil` is needed: install the Debian package `libnss3-tools`");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert_eq!(listing.matches("protolab CA").count(), 1, "{listing}");
}

#[test]
fn trust_recipe_nss_runs_as_printed() {
    let certutil = protolab_test_support::require("certutil", "apt-get install -y libnss3-tools");
    let timeout = protolab_test_support::require("timeout", "apt-get install -y coreutils");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    // A machine where Chromium has never run: no ~/.pki at all.
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let bin = env!("CARGO_BIN_EXE_protolab");
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .env("PROTOLAB_HOME", &state)
            .env("HOME", &home)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    run(&["certs", "init"]);
    let trust: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "certs", "trust"])).unwrap();
    let recipe = trust["recipes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["client"] == "Chromium (NSS)")
        .unwrap_or_else(|| panic!("no Chromium (NSS) recipe in {trust}"))["how"]
        .as_str()
        .unwrap()
        .to_owned();
    // Twice: once creating the database, once finding it there. `certutil -N` on an existing
    // database asks for its password on the terminal again and again, so a recipe that runs it
    // unguarded would hang: `timeout` signals the whole process group, certutil included.
    for attempt in ["fresh home", "existing database"] {
        let out = Command::new(&timeout)
            .args(["-k", "5", "60", "sh", "-c", &recipe])
            .env("HOME", &home)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{attempt}: the printed recipe failed ({}):\n{recipe}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = format!("sql:{}", home.join(".pki/nssdb").display());
    let listing = Command::new(certutil)
        .args(["-d", &db, "-L"])
        .output()
        .unwrap();
    assert!(
        listing.status.success(),
        "certutil -L: {}",
        String::from_utf8_lossy(&listing.stderr)
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    let nickname = protolab_tls::trust::NSS_NICKNAME;
    assert_eq!(listing.matches(nickname).count(), 1, "{listing}");
}
