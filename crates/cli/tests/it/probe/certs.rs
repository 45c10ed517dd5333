// The certificate diagnosis of `probe` against `openssl s_server -www` serving certificates
// the test makes with `openssl`: a good one, a self-signed one, an expired one and one for
// another name. Each verdict is compared with `openssl s_client -verify_return_error` and
// Python's `ssl` on the same server: verified or not, and why. The good one is served with a
// stapled OCSP response made by `openssl ocsp`; whether one was stapled is compared with
// `openssl s_client -status`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_test_support::{require, run, Peer};

use super::probe;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require("openssl", "apt-get install -y openssl"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and under it: `good` (localhost), `expired` (localhost, January 2020), `other`
/// (other.test); plus `selfsigned` (localhost, its own issuer). Each as NAME.pem + NAME.key.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=probe test CA",
    ]);
    openssl(dir, &ca);
    let mut selfsigned = vec!["req", "-x509"];
    selfsigned.extend(ec);
    selfsigned.extend([
        "-keyout",
        "selfsigned.key",
        "-out",
        "selfsigned.pem",
        "-days",
        "30",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
    ]);
    openssl(dir, &selfsigned);
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ ca ]\ndefault_ca = probe_ca\n[ probe_ca ]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\nunique_subject = no\n[ any ]\ncommonName = supplied\n",
    )
    .unwrap();
    for (name, host, dates) in [
        ("good", "localhost", ["-days", "30", "", ""]),
        (
            "expired",
            "localhost",
            [
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200201000000Z",
            ],
        ),
        ("other", "other.test", ["-days", "30", "", ""]),
    ] {
        let mut csr = vec!["req"];
        csr.extend(ec);
        let (key, req, subj, san) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("/CN={host}"),
            format!("subjectAltName=DNS:{host}"),
        );
        csr.extend([
            "-keyout", &key, "-out", &req, "-subj", &subj, "-addext", &san,
        ]);
        openssl(dir, &csr);
        let out = format!("{name}.pem");
        let mut sign = vec![
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile",
            "ca.key", "-in", &req, "-out", &out,
        ];
        sign.extend(dates.iter().filter(|a| !a.is_empty()));
        openssl(dir, &sign);
    }
}

/// `openssl s_server -www` with NAME.pem, killed when dropped.
struct SServer {
    child: Child,
    port: u16,
}

impl SServer {
    fn start(dir: &Path, name: &str, ocsp: Option<&str>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(require("openssl", "apt-get install -y openssl"))
            .current_dir(dir)
            .args(["s_server", "-www", "-accept", &format!("127.0.0.1:{port}")])
            .args([
                "-cert",
                &format!("{name}.pem"),
                "-key",
                &format!("{name}.key"),
            ])
            .args(
                ocsp.map(|file| ["-status_file", file])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !line.contains("ACCEPT") {
            line.clear();
            assert!(Instant::now() < deadline, "s_server never listened");
            assert!(lines.read_line(&mut line).unwrap() > 0, "s_server exited");
        }
        Self { child, port }
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `openssl s_client -verify_return_error` as localhost trusting `ca`: `None` when it
/// verified, else OpenSSL's verify error number.
async fn s_client_verdict(port: u16, ca: &Path) -> Option<u32> {
    let cmd = Peer::Openssl.command([
        "s_client",
        "-brief",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
        "-verify_hostname",
        "localhost",
        "-verify_return_error",
        "-CAfile",
        ca.to_str().unwrap(),
    ]);
    let out = run(cmd, Duration::from_secs(20)).await;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    if text.contains("Verification: OK") {
        return None;
    }
    let num = text
        .split("num=")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .and_then(|n| n.parse().ok());
    Some(num.unwrap_or_else(|| panic!("s_client neither verified nor named an error:\n{text}")))
}

/// Whether `openssl s_client -status` saw a stapled OCSP response.
async fn s_client_saw_ocsp(port: u16) -> bool {
    let cmd = Peer::Openssl.command([
        "s_client",
        "-status",
        "-connect",
        &format!("127.0.0.1:{port}"),
        "-servername",
        "localhost",
    ]);
    let out = run(cmd, Duration::from_secs(20)).await;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("OCSP Response Status: successful") {
        return true;
    }
    assert!(
        text.contains("OCSP response: no response sent"),
        "s_client -status said neither:\n{text}"
    );
    false
}

/// Python's `ssl` with the default context as localhost trusting `ca`: `None` when it
/// verified, else its `verify_code`.
async fn python_verdict(port: u16, ca: &Path) -> Option<u32> {
    let script = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname="localhost"):
            print("OK")
except ssl.SSLCertVerificationError as e:
    print(e.verify_code)
"#;
    let mut cmd = tokio::process::Command::new(require("python3", "apt-get install -y python3"));
    cmd.args(["-c", script, ca.to_str().unwrap(), &port.to_string()])
        .kill_on_drop(true);
    let out = run(cmd, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if text == "OK" {
        None
    } else {
        Some(text.parse().unwrap_or_else(|_| {
            panic!(
                "python said {text:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        }))
    }
}

/// OpenSSL's verify error for each of protolab's problem kinds.
fn openssl_code(kind: &str) -> u32 {
    match kind {
        "self_signed" => 18,
        "expired" => 10,
        "hostname_mismatch" => 62,
        other => panic!("no OpenSSL code mapped for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_diagnosis_agrees_with_openssl_and_python() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let ca: PathBuf = dir.path().join("ca.pem");
    openssl(
        dir.path(),
        &[
            "ocsp",
            "-index",
            "index.txt",
            "-rsigner",
            "ca.pem",
            "-rkey",
            "ca.key",
            "-CA",
            "ca.pem",
            "-issuer",
            "ca.pem",
            "-cert",
            "good.pem",
            "-respout",
            "good.ocsp",
            "-ndays",
            "1",
        ],
    );
    for (name, expected) in [
        ("good", None),
        ("selfsigned", Some("self_signed")),
        ("expired", Some("expired")),
        ("other", Some("hostname_mismatch")),
    ] {
        let stapled = name == "good";
        let server = SServer::start(dir.path(), name, stapled.then_some("good.ocsp"));
        let url = format!("https://localhost:{}/", server.port);
        let (code, report, _) = probe(
            dir.path(),
            &[&url, "--cacert", ca.to_str().unwrap(), "--no-resumption"],
        )
        .await;
        let cert = &report["tls"]["certificate"];
        let openssl = s_client_verdict(server.port, &ca).await;
        let python = python_verdict(server.port, &ca).await;
        assert_eq!(
            s_client_saw_ocsp(server.port).await,
            stapled,
            "{name}: openssl s_client -status disagrees"
        );
        assert_eq!(report["tls"]["ocsp_stapled"], stapled, "{name}: {report:#}");
        match expected {
            None => {
                assert_eq!(code, 0, "{name}: {report:#}");
                assert_eq!(cert["ok"], true, "{name}: {report:#}");
                assert_eq!(
                    (openssl, python),
                    (None, None),
                    "{name}: the peers disagree"
                );
                assert_eq!(report["http"]["status"], 200, "{name}: {report:#}");
            }
            Some(kind) => {
                assert_eq!(code, 1, "{name}: {report:#}");
                assert_eq!(cert["ok"], false, "{name}: {report:#}");
                assert_eq!(cert["problem"]["kind"], kind, "{name}: {report:#}");
                let want = Some(openssl_code(kind));
                assert_eq!(openssl, want, "{name}: openssl s_client says otherwise");
                assert_eq!(python, want, "{name}: Python ssl says otherwise");
                assert!(
                    report["error"]
                        .as_str()
                        .unwrap()
                        .contains("certificate was refused"),
                    "{name}: {report:#}"
                );
                assert!(!cert["explanation"].as_str().unwrap().is_empty());
            }
        }
    }
}
