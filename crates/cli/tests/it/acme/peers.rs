//! The peers the ACME tests start (pebble, pebble-challtestsrv) and the checks they share.
#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step is a failed test"
)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_test_support::{free_port, require, run, Peer};

pub(super) const PEER_LIMIT: Duration = Duration::from_secs(60);

pub(super) fn protolab(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home").arg(home).env_remove("RUST_LOG");
    cmd
}

/// A running pebble; killed when dropped.
pub(super) struct Pebble {
    pub(super) child: Child,
    pub(super) dir: tempfile::TempDir,
    pub(super) directory: String,
    pub(super) management: u16,
    /// The port pebble validates http-01 challenges on.
    pub(super) http_port: u16,
    /// The port pebble validates tls-alpn-01 challenges on.
    pub(super) tls_port: u16,
    /// The CA that signed pebble's HTTPS certificate (--directory-ca).
    pub(super) listener_ca: PathBuf,
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pebble {
    /// Starts pebble with certificates valid for `validity_secs` (its default is five years).
    pub(super) async fn start(validity_secs: Option<u64>) -> Self {
        Self::start_with(validity_secs, None).await
    }

    /// [`Pebble::start`], resolving names through the DNS server on `dns` (`-dnsserver`).
    pub(super) async fn start_with(validity_secs: Option<u64>, dns: Option<u16>) -> Self {
        let pebble = require("pebble", "apt-get install -y pebble");
        let dir = tempfile::tempdir().unwrap();
        let store = protolab_tls::Store::open(dir.path().join("listener-ca"));
        store.init().unwrap();
        let leaf = store
            .issue(&["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
        let (listen, management) = (free_port(), free_port());
        let (http_port, tls_port) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": leaf.cert_path,
                "privateKey": leaf.key_path,
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        if let Some(secs) = validity_secs {
            config["pebble"]["certificateValidityPeriod"] = secs.into();
        }
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.path().join("pebble.log")).unwrap();
        let mut cmd = Command::new(pebble);
        if let Some(port) = dns {
            cmd.arg("-dnsserver").arg(format!("127.0.0.1:{port}"));
        }
        let child = cmd
            .arg("-config")
            .arg(&config_path)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let started = Self {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management,
            http_port,
            tls_port,
            listener_ca: store.ca_cert_path(),
            dir,
        };
        for port in [listen, management] {
            let deadline = Instant::now() + Duration::from_secs(20);
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                assert!(
                    Instant::now() < deadline,
                    "pebble never listened on {port}:\n{}",
                    started.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        started
    }

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }

    /// pebble's root (random per run), from its management interface, saved to a file.
    pub(super) async fn root(&self) -> PathBuf {
        let path = self.dir.path().join("pebble-root.pem");
        let out = run(
            Peer::Curl.command([
                "-sS",
                "--fail",
                "--cacert",
                &self.listener_ca.to_string_lossy(),
                "-o",
                &path.to_string_lossy(),
                &format!("https://127.0.0.1:{}/roots/0", self.management),
            ]),
            PEER_LIMIT,
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    /// `certs acme` arguments for this pebble.
    pub(super) fn acme_args(&self, challenge: &str, port: u16) -> Vec<String> {
        [
            "certs",
            "acme",
            "--directory",
            &self.directory,
            "--directory-ca",
            &self.listener_ca.to_string_lossy(),
            "--domain",
            "localhost",
            challenge,
            &format!("127.0.0.1:{port}"),
            "--timeout",
            "60s",
        ]
        .map(String::from)
        .to_vec()
    }
}

/// `protolab ARGS` to completion within the peer limit.
pub(super) async fn protolab_run(home: &Path, args: &[String]) -> std::process::Output {
    let mut cmd = tokio::process::Command::from(protolab(home));
    cmd.args(args);
    run(cmd, PEER_LIMIT).await
}

/// openssl checks the stored chain against pebble's root and the name `localhost`.
pub(super) async fn verify_chain(chain: &Path, root: &Path) {
    let out = run(
        Peer::Openssl.command([
            "verify",
            "-CAfile",
            &root.to_string_lossy(),
            "-untrusted",
            &chain.to_string_lossy(),
            "-verify_hostname",
            "localhost",
            &chain.to_string_lossy(),
        ]),
        PEER_LIMIT,
    )
    .await;
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(super) fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The serial of the certificate a new TLS connection to `port` (SNI localhost) gets, read by
/// openssl.
pub(super) async fn served_serial(port: u16) -> String {
    let s_client = Peer::Openssl
        .command([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(PEER_LIMIT, s_client)
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate from s_client: {text}"));
    let end = text.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let der = pem_to_der(&text[start..end]);
    protolab_tls::inspect::cert_info(&der).unwrap().serial
}

pub(super) fn pem_to_der(pem: &str) -> Vec<u8> {
    use protolab_tls::rustls::pki_types::pem::PemObject as _;
    protolab_tls::rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

pub(super) fn stored_serial(home: &Path) -> String {
    let leaf = protolab_tls::Store::open(home)
        .load_acme_leaf("localhost")
        .unwrap();
    protolab_tls::inspect::cert_info(leaf.cert_der())
        .unwrap()
        .serial
}

/// pebble-challtestsrv (from Debian's pebble package) as the DNS server pebble asks; killed when
/// dropped.
pub(super) struct ChallTestSrv {
    pub(super) child: Child,
    pub(super) dns: u16,
    pub(super) management: u16,
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChallTestSrv {
    pub(super) async fn start() -> Self {
        let program = require("pebble-challtestsrv", "apt-get install -y pebble");
        // The DNS port serves UDP and TCP: take one free for both.
        let dns = loop {
            let port = free_port();
            if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let management = free_port();
        let child = Command::new(program)
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{management}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", management))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "pebble-challtestsrv never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            child,
            dns,
            management,
        }
    }
}

pub(super) struct KillGroupOnDrop(pub(super) Child);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}
