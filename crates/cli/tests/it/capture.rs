// `protolab capture` as a user runs it: next to `protolab up --keylog`, stopped by SIGINT,
// checked with tshark and capinfos; and its errors: no CAP_NET_RAW, an unknown interface, a
// key log others can read.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use protolab_test_support::{require, run_json, Peer};

const NO_CAP: &str = "capturing needs the CAP_NET_RAW capability: run as root, or grant it once with sudo setcap cap_net_raw+ep $(which protolab)";

fn protolab(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home").arg(home).env_remove("RUST_LOG");
    cmd
}

/// Kills the child when dropped, so a failing test leaves no lab or capture running.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lines of a child's pipe, read on a thread.
fn lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line starting with `prefix`; returns it and the lines before.
fn wait_line(rx: &Receiver<String>, prefix: &str) -> (String, Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut before = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.starts_with(prefix) => return (line, before),
            Ok(line) => before.push(line),
            Err(_) => panic!("no line starting with {prefix:?} within 30 s; got {before:?}"),
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tshark(file: &Path, filter: &str, field: &str) -> Vec<String> {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(require("tshark", "apt-get install -y tshark"))
        .env("HOME", home.path())
        .env_remove("SSLKEYLOGFILE")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-e", field])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_next_to_up_keylog_writes_a_file_tshark_decrypts_and_stops_on_sigint() {
    let home = tempfile::tempdir().unwrap();
    let keylog = home.path().join("keys.log");
    let mut up = KillOnDrop(
        protolab(home.path())
            .args([
                "up",
                "--only",
                "wss,http",
                "--wss-port",
                "0",
                "--http-port",
                "0",
            ])
            .arg("--keylog")
            .arg(&keylog)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up_lines = lines(up.0.stdout.take().unwrap());
    let (_, urls) = wait_line(&up_lines, "ready");
    let url_of = |protocol: &str| {
        urls.iter()
            .find_map(|l| l.strip_prefix(&format!("{protocol} ")))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {protocol} in {urls:?}"))
            .to_string()
    };
    let (wss, http) = (url_of("wss"), url_of("http"));
    let port_of = |url: &str| {
        url.trim_end_matches("/ws")
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    let (wss_port, http_port) = (port_of(&wss), port_of(&http));

    let out = home.path().join("wss.pcapng");
    let mut capture = KillOnDrop(
        protolab(home.path())
            .args(["--json", "capture", "--port", &wss_port, "--keylog"])
            .arg(&keylog)
            .arg("-w")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = lines(capture.0.stderr.take().unwrap());
    let (started, _) = wait_line(&stderr, "capturing on ");
    assert!(
        started.starts_with(&format!("capturing on lo, ports {wss_port} → ")),
        "{started}"
    );

    let ca = home.path().join("ca.pem").to_string_lossy().into_owned();
    let result = run_json(
        Peer::PythonWs.command(["echo", wss.as_str(), "--cafile", &ca]),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(result["text_echo"], "hello from python", "{result}");
    // Traffic on a port outside the filter stays out of the file.
    let curl = require("curl", "apt-get install -y curl");
    let plain = Command::new(curl)
        .args(["-s", &format!("{http}echo?msg=outside")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "outside");
    tokio::time::sleep(Duration::from_millis(500)).await;

    signal(&capture.0, "-INT");
    let status = wait_exit(&mut capture.0, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "clean exit on SIGINT");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut capture.0.stdout.take().unwrap(), &mut json).unwrap();
    let stats: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let kept = stats["kept"].as_u64().unwrap();
    assert!(kept >= 10, "{stats}");
    assert_eq!(stats["secrets_sessions"], 1, "{stats}");
    assert_eq!(stats["stop"], "stopped", "{stats}");
    let (summary, _) = wait_line(&stderr, &format!("{kept} packets ("));
    assert!(
        summary.ends_with(&format!(
            " bytes) on lo, ports {wss_port} → {}, secrets: 1 sessions embedded",
            out.display()
        )),
        "{summary}"
    );

    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds secrets");
    let info = Command::new(require("capinfos", "apt-get install -y tshark"))
        .args(["-M", "-c"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(info.status.success(), "{info:?}");
    assert!(
        String::from_utf8_lossy(&info.stdout).contains(&format!("Number of packets:   {kept}")),
        "{info:?}"
    );
    assert_eq!(tshark(&out, "frame", "frame.number").len() as u64, kept);
    assert!(tshark(&out, &format!("tcp.port == {http_port}"), "frame.number").is_empty());
    let texts = tshark(&out, "websocket.payload.text", "websocket.payload.text");
    assert_eq!(
        texts,
        ["hello from python", "hello from python"],
        "decrypted with no key log option"
    );
    signal(&up.0, "-TERM");
    assert!(wait_exit(&mut up.0, Duration::from_secs(10)).success());
}

#[test]
fn a_duration_ends_the_capture_by_itself_with_a_valid_empty_file() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("quiet.pcapng");
    // A port nothing uses: the file has the headers and no packets.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let started = Instant::now();
    let result = protolab(home.path())
        .args(["capture", "--port", &port, "--duration", "1s", "-w"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(result.status.success(), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains(&format!("0 packets (0 bytes) on lo, ports {port} → "))
            && stderr.contains("secrets: none")
            && stderr.contains("stopped after --duration"),
        "{stderr}"
    );
    let info = Command::new(require("capinfos", "apt-get install -y tshark"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(info.status.success(), "{info:?}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "no secrets, nothing to hide");
}

#[test]
fn without_cap_net_raw_the_error_says_how_to_get_it() {
    let setpriv = require("setpriv", "apt-get install -y util-linux");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = dir.path().join("x.pcapng");
    let bin = env!("CARGO_BIN_EXE_protolab");
    for drop_privilege in [
        // An ordinary user.
        vec![
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        // root, minus CAP_NET_RAW.
        vec!["--bounding-set=-net_raw", "--inh-caps=-net_raw"],
    ] {
        let result = Command::new(&setpriv)
            .args(&drop_privilege)
            .arg(bin)
            .args(["--home"])
            .arg(dir.path())
            .args(["capture", "--port", "3003", "-w"])
            .arg(&out)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(
            result.status.code(),
            Some(1),
            "{drop_privilege:?}: {stderr}"
        );
        assert_eq!(
            stderr.trim(),
            format!("error: {NO_CAP}"),
            "{drop_privilege:?}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn an_unknown_interface_is_named_with_the_ones_that_exist() {
    let home = tempfile::tempdir().unwrap();
    let result = protolab(home.path())
        .args(["capture", "-i", "nosuch0", "--port", "3003", "-w"])
        .arg(home.path().join("x.pcapng"))
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.starts_with("error: no network interface named `nosuch0`; available: lo"),
        "{stderr}"
    );
}

#[test]
fn a_key_log_others_can_read_is_refused_before_capturing() {
    let home = tempfile::tempdir().unwrap();
    let keylog = home.path().join("keys.log");
    std::fs::write(&keylog, "").unwrap();
    std::fs::set_permissions(&keylog, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = home.path().join("x.pcapng");
    let result = protolab(home.path())
        .args(["capture", "--port", "3003", "--keylog"])
        .arg(&keylog)
        .arg("-w")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("is readable by others (mode 644)")
            && stderr.contains(&format!("chmod 600 {}", keylog.display())),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing captured");
}
