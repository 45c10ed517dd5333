//! Helpers for protolab's integration tests: a lab on port 0 with a throwaway CA
//! ([`TestLab`]), launchers for the real peers the tests talk to ([`Peer`]), and a raw
//! WebSocket client for sending bytes no well-behaved client would ([`RawWs`]), and
//! Autobahn|Testsuite's fuzzing server and its verdicts ([`autobahn`]).
//!
//! A missing peer fails the test with the command that installs it: tests never skip.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use protolab_server::{Lab, LabConfig, Protocol};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

pub mod autobahn;
mod ports;

pub use ports::{free_port, free_ports};

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A lab started in-process on port 0 for each protocol, with its own CA in a temp dir.
#[derive(Debug)]
pub struct TestLab {
    /// The running lab.
    pub lab: Lab,
    /// The CA certificate clients must trust for the TLS apps.
    pub ca: PathBuf,
    home: tempfile::TempDir,
}

impl TestLab {
    /// Starts `protocols` with the lab's defaults changed by `tweak`.
    pub async fn start(protocols: &[Protocol], tweak: impl FnOnce(&mut LabConfig)) -> Self {
        let home = tempfile::tempdir().expect("temp dir for the test CA");
        let store = protolab_tls::Store::open(home.path());
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
        let leaf = store.leaf_for(&names).expect("test leaf");
        let mut config = LabConfig {
            apps: protocols.iter().map(|p| (*p, 0)).collect(),
            tls: Some(protolab_tls::server_config(&leaf, &[b"http/1.1"]).expect("TLS config")),
            ..LabConfig::default()
        };
        tweak(&mut config);
        let lab = Lab::start(config).await.expect("lab starts on port 0");
        Self {
            lab,
            ca: store.ca_cert_path(),
            home,
        }
    }

    /// The state dir holding the CA.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The `ws://…/ws` or `http://…/` URL of `protocol`.
    pub fn url(&self, protocol: Protocol) -> String {
        self.endpoint(protocol).url()
    }

    /// The port of `protocol`.
    pub fn port(&self, protocol: Protocol) -> u16 {
        self.endpoint(protocol).addr.port()
    }

    fn endpoint(&self, protocol: Protocol) -> protolab_server::Endpoint {
        self.lab
            .endpoint(protocol)
            .unwrap_or_else(|| panic!("{protocol} is not served by this lab"))
    }
}

/// A real peer program and the Debian/PyPI/npm package that provides it.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// curl (Debian `curl`).
    Curl,
    /// openssl (Debian `openssl`).
    Openssl,
    /// Python `websockets` client script (PyPI `websockets`).
    PythonWs,
    /// Node `ws` client script (npm `ws` in tests/peers).
    NodeWs,
    /// Node's own `http` server with its lenient parser (`insecureHTTPParser`), printing every
    /// request it parsed as a JSON line (`tests/peers/lenient_backend.mjs`; Node only).
    NodeLenientBackend,
    /// Headless Chromium driven over DevTools (Debian `chromium`, `libnss3-tools`).
    Chromium,
    /// A JSON Schema validator: `validate_schema.py SCHEMA FILE` (PyPI `jsonschema`).
    JsonSchema,
    /// A subscriber of the hub's `/connection/ws` (`hub_ws_client.py`, PyPI `websockets`).
    PythonHubWs,
    /// An OpenAPI 3.x document validator (PyPI `openapi-spec-validator`), reading stdin.
    OpenApiValidator,
    /// A JWT signer (`jwt_sign.py`, PyPI `PyJWT` with `cryptography`): prints one token.
    JwtSigner,
    /// A client of the SSE app and its polling paths (`sse_client.py`, PyPI `requests`).
    PythonSse,
    /// A client of the lab's gRPC app (`grpc_client.py`, PyPI `grpcio`, `grpcio-tools` for
    /// reading lab.proto, `grpcio-reflection`).
    PythonGrpc,
}

impl Peer {
    /// A command for this peer with `args`, after checking the peer is installed. Panics with
    /// the install command when it is not: a missing peer is a failed test, never a skip.
    pub fn command<I, S>(self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let peers = repo_root().join("tests/peers");
        let mut cmd = match self {
            Self::Curl => Command::new(require("curl", "apt-get install -y curl")),
            Self::Openssl => Command::new(require("openssl", "apt-get install -y openssl")),
            Self::PythonWs => {
                require_python_module("websockets");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("ws_client.py"));
                c
            }
            Self::NodeWs => {
                assert!(
                    peers.join("node_modules/ws").is_dir(),
                    "peer missing: Node `ws` is not installed in tests/peers; run `npm ci --prefix tests/peers` (scripts/install-test-peers does it)"
                );
                let mut c = Command::new(require("node", "apt-get install -y nodejs"));
                c.arg(peers.join("ws_client.mjs"));
                c
            }
            Self::NodeLenientBackend => {
                let mut c = Command::new(require("node", "apt-get install -y nodejs"));
                c.arg(peers.join("lenient_backend.mjs"));
                c
            }
            Self::Chromium => {
                require("chromium", "apt-get install -y chromium");
                require("certutil", "apt-get install -y libnss3-tools");
                require_python_module("websockets");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("chromium_page.py"));
                c
            }
            Self::PythonHubWs => {
                require_python_module("websockets");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("hub_ws_client.py"));
                c
            }
            Self::JwtSigner => {
                require_python_module("jwt");
                require_python_module("cryptography");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("jwt_sign.py"));
                c
            }
            Self::PythonSse => {
                require_python_module("requests");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("sse_client.py"));
                c
            }
            Self::PythonGrpc => {
                require_python_module("grpc");
                require_python_module("grpc_tools");
                require_python_module("grpc_reflection");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("grpc_client.py"));
                c
            }
            Self::OpenApiValidator => {
                require_python_module("openapi_spec_validator");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.args([
                    "-c",
                    "import json, sys; from openapi_spec_validator import validate; validate(json.load(sys.stdin)); print('valid')",
                ]);
                c
            }
            Self::JsonSchema => {
                require_python_module("jsonschema");
                let mut c = Command::new(require("python3", "apt-get install -y python3"));
                c.arg(peers.join("validate_schema.py"));
                c
            }
        };
        cmd.args(args).kill_on_drop(true).stdin(Stdio::null());
        cmd
    }
}

/// The path of `program` on PATH, or a panic that says how to install it.
pub fn require(program: &str, install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("peer missing: `{program}` is not on PATH; install it with `{install}` (scripts/install-test-peers does it)"))
}

fn require_python_module(module: &str) {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "peer missing: Python module `{module}`; run `pip install -r tests/peers/requirements.txt`"
    );
}

/// tshark recording loopback into a file; killed when dropped, so a failing test never leaves
/// a capture running (a leftover one filters every later loopback packet).
pub struct TsharkCapture {
    child: std::process::Child,
}

impl TsharkCapture {
    /// Starts tshark on `lo` with capture `filter` and returns once packets are being
    /// recorded (tshark prints "Capture started." only then).
    pub fn start(filter: &str, file: &Path) -> Self {
        Self::spawn(filter, file, None)
    }

    /// As [`start`](Self::start), keeping only each packet's first 160 bytes: every header
    /// (loopback's 14, IPv6's 40, TCP's up to 60) but little payload. tshark still reads a
    /// segment's payload length from the IP header. For tests that count packets and bytes:
    /// beside other tests' 64 KiB echoes on the same loopback a full capture dropped
    /// segments.
    pub fn headers(filter: &str, file: &Path) -> Self {
        Self::spawn(filter, file, Some(160))
    }

    fn spawn(filter: &str, file: &Path, snaplen: Option<u32>) -> Self {
        use std::io::BufRead as _;
        let mut command =
            std::process::Command::new(require("tshark", "apt-get install -y tshark"));
        // A 64 MiB kernel buffer (2 MiB by default) rides out the moments tshark waits for
        // a CPU on a busy machine.
        command.args(["-i", "lo", "-B", "64", "-f", filter]);
        if let Some(bytes) = snaplen {
            command.args(["-s", &bytes.to_string()]);
        }
        let child = command
            .arg("-w")
            .arg(file)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("tshark starts");
        let mut capture = Self { child };
        let stderr = capture.child.stderr.take().expect("tshark stderr");
        let mut lines = std::io::BufReader::new(stderr);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut line = String::new();
        while !line.contains("Capture started") {
            line.clear();
            assert!(
                std::time::Instant::now() < deadline,
                "tshark did not start capturing"
            );
            let n = lines.read_line(&mut line).expect("tshark stderr");
            assert!(
                n > 0,
                "tshark exited before capturing (needs root or CAP_NET_RAW)"
            );
        }
        capture
    }

    /// Lets the last packets land, then stops tshark with SIGINT so it finishes the file.
    pub fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let pid = self.child.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill runs");
        assert!(killed.success());
        assert!(self.child.wait().expect("tshark exits").success());
    }
}

impl Drop for TsharkCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `read` every 10 ms until it gives `want` or `limit` passes, and returns what it read
/// last: for a count the lab updates a moment after the event a test waits on.
pub async fn settles<T: PartialEq>(want: T, limit: Duration, mut read: impl FnMut() -> T) -> T {
    let until = tokio::time::Instant::now() + limit;
    loop {
        let now = read();
        if now == want || tokio::time::Instant::now() >= until {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `cmd` to completion within `limit`; panics if it takes longer (a hang is a failure).
pub async fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("peer starts");
    match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.expect("peer output"),
        Err(_) => panic!("peer did not finish within {limit:?}: {cmd:?}"),
    }
}

/// Runs `cmd` and parses the last line of its stdout as JSON; panics with its stderr if the
/// peer failed or printed no JSON.
pub async fn run_json(cmd: Command, limit: Duration) -> serde_json::Value {
    let out = run(cmd, limit).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    serde_json::from_str(last).unwrap_or_else(|_| {
        panic!(
            "peer printed no JSON (status {}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        )
    })
}

/// A peer started in the background, whose stdout lines can be awaited one by one.
#[derive(Debug)]
pub struct Background {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Background {
    /// Starts `cmd` with piped stdout.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("peer starts");
        let stdout = child.stdout.take().expect("piped stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next stdout line, parsed as JSON, within `limit`.
    pub async fn next_json(&mut self, limit: Duration) -> serde_json::Value {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("peer printed nothing within {limit:?}"))
            .expect("read peer stdout")
            .unwrap_or_else(|| panic!("peer exited early"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("peer line is not JSON ({e}): {line}"))
    }

    /// The next stdout line parsed as JSON, or `None` when none arrives within `limit` or the
    /// peer has exited: for reading a peer's events until it goes quiet.
    pub async fn try_next_json(&mut self, limit: Duration) -> Option<serde_json::Value> {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .ok()?
            .expect("read peer stdout")?;
        Some(
            serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("peer line is not JSON ({e}): {line}")),
        )
    }

    /// Waits for the process to exit within `limit`.
    pub async fn wait(mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("peer did not exit within {limit:?}"))
            .expect("peer exit status")
    }
}

/// Node's lenient HTTP server ([`Peer::NodeLenientBackend`]) running on a port of its own,
/// reporting every request it parsed.
#[derive(Debug)]
pub struct LenientBackend {
    peer: Background,
    /// Where it listens (127.0.0.1, a free port).
    pub addr: std::net::SocketAddr,
}

/// One request as the lenient backend parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The method.
    pub method: String,
    /// The request target as received.
    pub url: String,
    /// Every field in order, name as sent.
    pub headers: Vec<(String, String)>,
}

impl ParsedRequest {
    /// Every value of field `name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl LenientBackend {
    /// Starts it and waits until it listens.
    pub async fn start() -> Self {
        let mut peer = Background::spawn(Peer::NodeLenientBackend.command::<_, &str>([]));
        let ready = peer.next_json(Duration::from_secs(15)).await;
        assert_eq!(ready["event"], "ready", "{ready}");
        let port = ready["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .expect("the backend's port");
        Self {
            peer,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The requests reported since the last call, read until the backend has been quiet for
    /// `quiet`.
    pub async fn requests(&mut self, quiet: Duration) -> Vec<ParsedRequest> {
        let mut seen = Vec::new();
        while let Some(event) = self.peer.try_next_json(quiet).await {
            if event["event"] != "request" {
                continue;
            }
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            seen.push(ParsedRequest {
                method: text(&event["method"]),
                url: text(&event["url"]),
                headers: event["headers"]
                    .as_array()
                    .map(|hs| hs.iter().map(|h| (text(&h[0]), text(&h[1]))).collect())
                    .unwrap_or_default(),
            });
        }
        seen
    }
}

/// A hand-driven WebSocket client over plain TCP that sends whatever bytes a test wants, to
/// check how the server meets protocol violations.
#[derive(Debug)]
pub struct RawWs {
    /// The TCP connection, after the upgrade.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawWs {
    /// Connects to `port` on 127.0.0.1 and completes the upgrade on `/ws`.
    pub async fn connect(port: u16) -> Self {
        use protolab_wire::http1::{parse_response, HeadLimits};
        use protolab_wire::ws::handshake;

        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let key = handshake::encode_key(*b"protolab-test-ke");
        let mut req = Vec::new();
        handshake::write_request(
            &mut req,
            &format!("127.0.0.1:{port}"),
            "/ws",
            &key,
            None,
            &[],
            &[],
        );
        stream.write_all(&req).await.expect("send upgrade");
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read 101");
            assert!(n > 0, "server closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
            if let Some((head, used)) =
                parse_response(&buf, &HeadLimits::default()).expect("valid 101")
            {
                handshake::check_response(&head, &key).expect("upgrade accepted");
                buf.drain(..used);
                return Self { stream, buf };
            }
        }
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    /// The next message or control frame from the server, within `limit`; panics on EOF.
    pub async fn next_message(&mut self, limit: Duration) -> protolab_wire::ws::Message {
        use protolab_wire::ws::{Decoder, DecoderConfig, Role};
        let mut decoder = Decoder::new(Role::Client, DecoderConfig::default());
        let read = async {
            loop {
                match decoder.decode(&self.buf).expect("server frames are valid") {
                    (n, Some(msg)) => {
                        self.buf.drain(..n);
                        return msg;
                    }
                    (0, None) => {}
                    (n, None) => {
                        self.buf.drain(..n);
                        continue;
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "server closed TCP without a close frame");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(limit, read)
            .await
            .expect("a message in time")
    }

    /// Reads until the server's close frame and returns its code (1005 when it has none);
    /// echoes, pushes and pings before it are skipped. Panics on EOF or past `limit`.
    pub async fn close_code(&mut self, limit: Duration) -> u16 {
        use protolab_wire::ws::Message;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Message::Close(frame) = self.next_message(left).await {
                return frame.map_or(1005, |f| f.code);
            }
        }
    }
}

/// A redis-server (Debian `redis-server`) on a free loopback port, with no persistence, killed
/// when dropped. [`RedisServer::kill`] and [`RedisServer::restart`] stop it and start it again
/// on the same port, empty, as a crashed Redis would come back.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<std::process::Child>,
    port: u16,
    dir: tempfile::TempDir,
    tls: Option<RedisTls>,
}

/// The certificate and key (PEM files) a TLS-only redis-server serves.
#[derive(Debug, Clone)]
pub struct RedisTls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// A CA file redis-server requires for its own configuration (it asks no client
    /// certificate: `--tls-auth-clients no`).
    pub ca: PathBuf,
}

impl RedisServer {
    /// Starts it and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts it serving TLS only (`--port 0 --tls-port PORT`) with `tls`'s certificate, and
    /// waits until it accepts connections.
    pub async fn start_tls(tls: RedisTls) -> Self {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<RedisTls>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port for redis-server")
            .port();
        let mut server = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir for redis-server"),
            tls,
        };
        server.restart().await;
        server
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` when it serves TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL: no goodbye to its clients) and waits until it has exited.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port, empty, and waits until it answers a PING.
    pub async fn restart(&mut self) {
        self.kill();
        let program = require("redis-server", "apt-get install -y redis-server");
        let port = self.port.to_string();
        let mut command = std::process::Command::new(program);
        match &self.tls {
            None => command.args(["--port", &port]),
            Some(tls) => command
                .args([
                    "--port",
                    "0",
                    "--tls-port",
                    &port,
                    "--tls-auth-clients",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca),
        };
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await {
                // a TLS port is up once it accepts: the clients under test say the rest
                if self.tls.is_some() {
                    return;
                }
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").await.is_ok()
                    && stream.read_exact(&mut answer).await.is_ok()
                    && &answer == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not answer on port {} within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
