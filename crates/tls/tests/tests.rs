//! Integration tests against real peers: `openssl s_server`, `openssl verify`, `openssl x509`,
//! `curl` and `certutil`. A missing peer fails the test with the package to install; nothing is
//! skipped.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use protolab_tls::check::REMOTE_TIMEOUT;
use protolab_tls::rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, IsCa};
use protolab_tls::trust::{self, Installed};
use protolab_tls::{
    ca, check_pem_file, check_remote, Diagnosis, Error, Leaf, Problem, Roots, Store,
};
use time::{Duration as Days, OffsetDateTime};

/// Runs a peer tool; a missing binary is a loud failure naming the Debian package.
fn tool(program: &str, package: &str) -> Command {
    let probe = Command::new(program)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(err) = probe {
        panic!("`{program}` is needed for this test but cannot run ({err}): install the Debian package `{package}`");
    }
    Command::new(program)
}

fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A child process killed when dropped.
struct Peer {
    child: Child,
    port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// `openssl s_server -www` with the given certificate and key, once it accepts connections.
fn s_server(cert: &Path, key: &Path) -> Peer {
    for _attempt in 0..5 {
        let port = free_port();
        let child = tool("openssl", "openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(port.to_string())
            .arg("-cert")
            .arg(cert)
            .arg("-key")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let mut peer = Peer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return peer;
            }
            if peer.child.try_wait().unwrap().is_some() {
                break; // port taken in between, or bad files: try again / fail below
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!(
        "openssl s_server did not start listening (cert {})",
        cert.display()
    );
}

struct Lab {
    tmp: tempfile::TempDir,
    store: Store,
}

impl Lab {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path().join("state")).with_owner("test@lab");
        store.init().unwrap();
        Self { tmp, store }
    }

    fn roots(&self) -> Roots {
        Roots::new().with_ca(&self.store.ca().unwrap())
    }

    /// Writes a leaf to `<tmp>/<name>.pem` and `<name>-key.pem`.
    fn write(&self, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let cert = self.tmp.path().join(format!("{name}.pem"));
        let key = self.tmp.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
        std::fs::write(&key, &leaf.key_pem).unwrap();
        (cert, key)
    }

    fn serve(&self, name: &str, leaf: &Leaf) -> Peer {
        let (cert, key) = self.write(name, leaf);
        s_server(&cert, &key)
    }
}

fn show(d: &Diagnosis) -> String {
    format!("{:?}\n{}", d.problem, d.explanation)
}

#[test]
fn ok_leaf_from_our_ca() {
    let lab = Lab::new();
    let issued = lab
        .store
        .issue(&names(&["localhost", "127.0.0.1", "::1"]))
        .unwrap();
    let peer = s_server(&issued.cert_path, &issued.key_path);
    let d = check_remote(&peer.addr(), "localhost", &lab.roots()).unwrap();
    assert!(d.ok, "{}", show(&d));
    assert!(d.problem.is_none());
    assert!(
        d.verified_by
            .as_deref()
            .unwrap()
            .starts_with("protolab CA at "),
        "{:?}",
        d.verified_by
    );
    assert_eq!(d.chain[0].sans, ["localhost", "127.0.0.1", "::1"]);
    assert!(
        d.connection.as_deref().unwrap().contains("TLS"),
        "{:?}",
        d.connection
    );
    // An IP address as the name works too (no SNI sent).
    let d = check_remote(&peer.addr(), "127.0.0.1", &lab.roots()).unwrap();
    assert!(d.ok, "{}", show(&d));
}

#[test]
fn self_signed_from_openssl_req() {
    let lab = Lab::new();
    let cert = lab.tmp.path().join("self.pem");
    let key = lab.tmp.path().join("self-key.pem");
    let mut req = tool("openssl", "openssl");
    req.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
    ])
    .args([
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-keyout",
    ])
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    run_ok(req);
    let peer = s_server(&cert, &key);
    let d = check_remote(&peer.addr(), "localhost", &lab.roots()).unwrap();
    assert!(!d.ok);
    assert!(
        matches!(d.problem, Some(Problem::SelfSigned { .. })),
        "{}",
        show(&d)
    );
    assert!(d.explanation.contains("self-signed"), "{}", d.explanation);
    assert!(d.chain[0].self_signed);
    // Trusting that very certificate makes it... still not a valid server certificate for
    // webpki (CA:TRUE from openssl's defaults), but no longer "self-signed and untrusted".
    let trusting = Roots::new().with_ca_file(&cert).unwrap();
    let d = check_remote(&peer.addr(), "localhost", &trusting).unwrap();
    assert!(
        !matches!(d.problem, Some(Problem::SelfSigned { .. })),
        "{}",
        show(&d)
    );
}

#[test]
fn hostname_mismatch_lists_the_names() {
    let lab = Lab::new();
    let leaf = lab
        .store
        .ca()
        .unwrap()
        .issue(&names(&["localhost"]))
        .unwrap();
    let peer = lab.serve("mismatch", &leaf);
    let d = check_remote(&peer.addr(), "example.test", &lab.roots()).unwrap();
    match &d.problem {
        Some(Problem::HostnameMismatch {
            expected,
            presented,
        }) => {
            assert_eq!(expected, "example.test");
            assert_eq!(presented, &["localhost"]);
        }
        other => panic!("expected HostnameMismatch, got {other:?}"),
    }
    assert!(d.explanation.contains("localhost") && d.explanation.contains("example.test"));
}

#[test]
fn unknown_issuer_names_the_issuer() {
    let lab = Lab::new();
    let other = tempfile::tempdir().unwrap();
    let stranger = Store::open(other.path()).with_owner("stranger@elsewhere");
    let leaf = stranger
        .ensure_ca()
        .unwrap()
        .issue(&names(&["localhost"]))
        .unwrap();
    let peer = lab.serve("stranger", &leaf);
    let d = check_remote(&peer.addr(), "localhost", &lab.roots()).unwrap();
    match &d.problem {
        Some(Problem::UnknownIssuer { issuer }) => {
            assert!(issuer.contains("stranger@elsewhere"), "{issuer}")
        }
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
}

#[test]
fn expired_gives_the_dates() {
    let lab = Lab::new();
    let now = OffsetDateTime::now_utc();
    let leaf = lab
        .store
        .ca()
        .unwrap()
        .issue_with_validity(
            &names(&["localhost"]),
            now - Days::days(100),
            now - Days::days(10),
        )
        .unwrap();
    let peer = lab.serve("expired", &leaf);
    let d = check_remote(&peer.addr(), "localhost", &lab.roots()).unwrap();
    match &d.problem {
        Some(Problem::Expired { not_after, now, .. }) => {
            assert!(not_after < now, "{not_after} {now}");
            assert!(d.explanation.contains(not_after.as_str()));
        }
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[test]
fn client_auth_only_is_missing_server_auth() {
    let lab = Lab::new();
    let mut params = ca::leaf_params(&names(&["localhost"])).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let leaf = lab.store.ca().unwrap().sign(params).unwrap();
    let peer = lab.serve("clientonly", &leaf);
    let d = check_remote(&peer.addr(), "localhost", &lab.roots()).unwrap();
    match &d.problem {
        Some(Problem::MissingServerAuth { presented }) => assert_eq!(presented, &["clientAuth"]),
        other => panic!("expected MissingServerAuth, got {other:?}"),
    }
}

#[test]
fn ca_as_leaf() {
    let lab = Lab::new();
    let mut params = ca::leaf_params(&names(&["localhost"])).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let leaf = lab.store.ca().unwrap().sign(params).unwrap();
    let peer = lab.serve("caleaf", &leaf);
    let d = check_remote(&peer.addr(), "localhost", &lab.roots()).unwrap();
    assert!(
        matches!(d.problem, Some(Problem::CaCertAsLeaf { .. })),
        "{}",
        show(&d)
    );
}

#[test]
fn pem_file_check() {
    let lab = Lab::new();
    let issued = lab.store.issue(&names(&["app.example.test"])).unwrap();
    let d = check_pem_file(&issued.cert_path, "app.example.test", &lab.roots()).unwrap();
    assert!(d.ok, "{}", show(&d));
    let d = check_pem_file(&issued.cert_path, "other.example.test", &lab.roots()).unwrap();
    assert!(matches!(d.problem, Some(Problem::HostnameMismatch { .. })));
    // Nothing trusted at all: unknown issuer, not a crash.
    let d = check_pem_file(&issued.cert_path, "app.example.test", &Roots::new()).unwrap();
    assert!(
        matches!(d.problem, Some(Problem::UnknownIssuer { .. })),
        "{}",
        show(&d)
    );
}

#[test]
fn openssl_accepts_our_leaf() {
    let lab = Lab::new();
    let issued = lab
        .store
        .issue(&names(&["localhost", "127.0.0.1", "::1"]))
        .unwrap();
    let mut verify = tool("openssl", "openssl");
    verify
        .args(["verify", "-CAfile"])
        .arg(lab.store.ca_cert_path())
        .arg(&issued.cert_path);
    let out = run_ok(verify);
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
    let mut text = tool("openssl", "openssl");
    text.args(["x509", "-noout", "-text", "-in"])
        .arg(&issued.cert_path);
    let text = String::from_utf8(run_ok(text).stdout).unwrap();
    for needle in [
        "CA:FALSE",
        "TLS Web Server Authentication",
        "DNS:localhost",
        "IP Address:127.0.0.1",
        "IP Address:0:0:0:0:0:0:0:1",
        "Digital Signature",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    // An ECDSA key cannot encipher (RFC 5480 §3).
    assert!(!text.contains("Key Encipherment"), "{text}");
    let mut ca_text = tool("openssl", "openssl");
    ca_text
        .args(["x509", "-noout", "-text", "-in"])
        .arg(lab.store.ca_cert_path());
    let ca_text = String::from_utf8(run_ok(ca_text).stdout).unwrap();
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign, CRL Sign"), "{ca_text}");
}

#[test]
fn curl_trusts_with_cacert_only() {
    let lab = Lab::new();
    let issued = lab
        .store
        .issue(&names(&["localhost", "127.0.0.1", "::1"]))
        .unwrap();
    let peer = s_server(&issued.cert_path, &issued.key_path);
    let url = format!("https://localhost:{}/", peer.port);
    let mut with_ca = tool("curl", "curl");
    with_ca
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", peer.port));
    with_ca
        .arg("--cacert")
        .arg(lab.store.ca_cert_path())
        .arg(&url);
    let out = run_ok(with_ca);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("s_server"),
        "unexpected body"
    );
    let mut without = tool("curl", "curl");
    // An empty CA path so the host's own trust store (which might hold a protolab CA) is out.
    without
        .args([
            "-sS",
            "--max-time",
            "10",
            "--capath",
            "/nonexistent",
            "--cacert",
            "/dev/null",
            "--resolve",
        ])
        .arg(format!("localhost:{}:127.0.0.1", peer.port))
        .arg(&url);
    let out = without.output().unwrap();
    // 60 = peer certificate cannot be authenticated with known CA certificates; 77 = CA file
    // problem. Either way curl refused and said why.
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(code, Some(60 | 77 | 35)),
        "curl without --cacert: {code:?} {stderr}"
    );
    let mut plain = tool("curl", "curl");
    plain
        .args(["-sS", "--max-time", "10", "--resolve"])
        .arg(format!("localhost:{}:127.0.0.1", peer.port))
        .arg(&url);
    let out = plain.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(60),
        "plain curl must fail with a certificate error: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
}

#[test]
fn nothing_listening_is_clear() {
    let port = free_port();
    let err = check_remote(&format!("127.0.0.1:{port}"), "localhost", &Roots::new()).unwrap_err();
    assert!(matches!(err, Error::ConnectionRefused { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("nothing listens on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn plain_http_is_clear() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut sock, _) = listener.accept().unwrap();
        let mut buf = [0u8; 512];
        let _ = sock.read(&mut buf);
        let _ = sock.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        std::thread::sleep(Duration::from_millis(200));
    });
    let err = check_remote(&addr.to_string(), "localhost", &Roots::new()).unwrap_err();
    assert!(matches!(err, Error::NotTls { .. }), "{err}");
    assert!(err.to_string().contains("plain HTTP"), "{err}");
    server.join().unwrap();
}

#[test]
fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let started = Instant::now();
    let err = check_remote(&addr.to_string(), "localhost", &Roots::new()).unwrap_err();
    assert!(matches!(err, Error::HandshakeTimeout { .. }), "{err}");
    assert!(err.to_string().contains("within 10 s"), "{err}");
    assert!(started.elapsed() >= REMOTE_TIMEOUT - Duration::from_secs(1));
    drop(listener);
}

#[test]
fn nss_install_is_idempotent() {
    let lab = Lab::new();
    let db = lab.tmp.path().join("nssdb");
    let ca = lab.store.ca_cert_path();
    assert_eq!(trust::install_nss(&ca, &db).unwrap(), Installed::Added);
    assert_eq!(
        trust::install_nss(&ca, &db).unwrap(),
        Installed::AlreadyPresent
    );
    let mut list = tool("certutil", "libnss3-tools");
    list.arg("-L")
        .arg("-d")
        .arg(format!("sql:{}", db.display()));
    let listing = String::from_utf8(run_ok(list).stdout).unwrap();
    assert!(listing.contains(trust::NSS_NICKNAME), "{listing}");
    assert_eq!(listing.matches(trust::NSS_NICKNAME).count(), 1, "{listing}");
    // A new CA replaces the old one under the same nickname.
    let other = Lab::new();
    assert_eq!(
        trust::install_nss(&other.store.ca_cert_path(), &db).unwrap(),
        Installed::Replaced
    );
}

#[test]
fn system_install_into_a_directory() {
    let lab = Lab::new();
    let dir = lab.tmp.path().join("local-cas");
    let ca = lab.store.ca_cert_path();
    assert_eq!(
        trust::install_system_in(&ca, &dir, false).unwrap(),
        Installed::Added
    );
    assert_eq!(
        trust::install_system_in(&ca, &dir, false).unwrap(),
        Installed::AlreadyPresent
    );
    assert_eq!(
        std::fs::read(dir.join(trust::DEBIAN_FILE_NAME)).unwrap(),
        std::fs::read(&ca).unwrap()
    );
    let recipes = trust::recipes(&ca);
    let all: String = recipes.iter().map(|r| r.how.as_str()).collect();
    for needle in [
        "--cacert",
        "cafile=",
        "NODE_EXTRA_CA_CERTS=",
        "update-ca-certificates",
        "certutil -d sql:$HOME/.pki/nssdb -A -t C,,",
    ] {
        assert!(all.contains(needle), "{needle}");
    }
}
