// The hub's daemon side as a user runs it: the real `protolab notify` and `protolab subscribe`
// binaries against the real `protolab hub` binary, checked with curl against the hub's history.

use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use protolab_test_support::require;

fn protolab(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_protolab"));
    cmd.arg("--home")
        .arg(home)
        .env_remove("RUST_LOG")
        .env_remove("PROTOLAB_HUB_URL")
        .env_remove("PROTOLAB_HUB_KEY");
    cmd
}

/// A running `protolab hub`, stopped with SIGTERM on drop.
struct Hub {
    child: Child,
    port: u16,
}

impl Hub {
    /// Starts `hub --port PORT extra…` (0 picks one) and waits for `ready`.
    fn start(home: &Path, port: u16, extra: &[&str]) -> Self {
        let mut child = protolab(home)
            .args(["hub", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("protolab hub starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut port = None;
        for line in stdout.lines().map_while(Result::ok) {
            if line == "ready" {
                break;
            }
            if let Some(url) = line.strip_prefix("hub ") {
                port = url.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            }
        }
        let port = port.expect("a `hub URL` line before ready");
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// SIGTERM, then waits (SIGKILL after 10 s); the exit code.
fn terminate(child: &mut Child) -> Option<i32> {
    if let Some(status) = child.try_wait().expect("wait") {
        return status.code();
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Lines of a child's pipe, as they come.
fn lines_of(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; every line read on the way, for messages.
fn wait_for_line(lines: &Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => panic!("no line with {needle:?} within 30 s; saw {seen:#?}"),
        }
    }
}

/// `GET /api/history?channel=` through curl: the notifications as JSON.
fn history(hub: &str, channel: &str, key: Option<&str>) -> Vec<serde_json::Value> {
    let mut curl = Command::new(require("curl", "apt-get install -y curl"));
    curl.args(["-sS", "--max-time", "10"]);
    if let Some(key) = key {
        curl.args(["-H", &format!("Authorization: Bearer {key}")]);
    }
    let out = curl
        .arg(format!("{hub}/api/history?channel={channel}&limit=1000"))
        .output()
        .expect("curl runs");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("history is JSON");
    answer["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

const KEY: &str = "k-0123456789abcdef0123";

#[test]
fn notify_delivers_with_its_level_and_a_wrong_key_exits_1_with_the_hubs_message() {
    let home = tempfile::tempdir().expect("temp dir");
    let keys = home.path().join("keys");
    std::fs::write(&keys, format!("{KEY}\n")).expect("key file");
    let hub = Hub::start(
        home.path(),
        0,
        &["--api-key-file", keys.to_str().expect("utf-8")],
    );
    let out = protolab(home.path())
        .args([
            "notify",
            "disk full",
            "--level",
            "error",
            "--channel",
            "ops",
        ])
        .args(["--title", "disk", "--data", r#"{"host":"a"}"#])
        .env("PROTOLAB_HUB_URL", hub.url())
        .env("PROTOLAB_HUB_KEY", KEY)
        .output()
        .expect("notify runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("published on ops at"), "{stdout}");
    let delivered = history(&hub.url(), "ops", Some(KEY));
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["level"], "error");
    assert_eq!(delivered[0]["title"], "disk");
    assert_eq!(delivered[0]["body"], "disk full");
    assert_eq!(delivered[0]["data"]["host"], "a");

    // What the hub says to a wrong key, asked with curl, is what notify prints.
    let wrong = home.path().join("wrong");
    std::fs::write(&wrong, "k-wrong-wrong-wrong-wrong\n").expect("key file");
    let curl = Command::new(require("curl", "apt-get install -y curl"))
        .args([
            "-sS",
            "-H",
            "Authorization: Bearer k-wrong-wrong-wrong-wrong",
        ])
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(r#"{"channel":"ops","level":"info","body":"x"}"#)
        .arg(format!("{}/api/publish", hub.url()))
        .output()
        .expect("curl runs");
    let refusal: serde_json::Value = serde_json::from_slice(&curl.stdout).expect("JSON error");
    let hub_says = refusal["error"].as_str().expect("an error text");
    let started = Instant::now();
    let out = protolab(home.path())
        .args(["notify", "x", "--channel", "ops", "--hub", &hub.url()])
        .args(["--api-key-file", wrong.to_str().expect("utf-8")])
        .output()
        .expect("notify runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("(401)") && stderr.contains(hub_says),
        "{stderr} lacks {hub_says:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refusal was retried"
    );
    assert_eq!(history(&hub.url(), "ops", Some(KEY)).len(), 1);

    // usage errors exit 2 before anything is sent
    for (args, says) in [
        (vec!["notify", "x", "--level", "fatal"], "--level"),
        (vec!["notify", "x", "--channel", "a b"], "--channel"),
        (vec!["notify", "x", "--hub", "localhost:4000"], "--hub"),
        (vec!["notify"], "MESSAGE"),
        (
            vec!["notify", "--follow", "/tmp/x", "--level-regex", "ERROR"],
            "PATTERN=LEVEL",
        ),
    ] {
        let out = protolab(home.path()).args(&args).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    hub.stop();
}

fn append(path: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("log file");
    file.write_all(text.as_bytes()).expect("append");
}

/// Waits up to 20 s for `done`, failing with `what` and the lines seen so far.
fn wait_until(what: &str, seen: &[String], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: {seen:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Entries in the spool files under the home.
fn spooled(home: &Path) -> usize {
    let Ok(dir) = std::fs::read_dir(home.join("notify-spool")) else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|e| e == "jsonl"))
        .map(|entry| {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let entries = text.lines().filter(|l| l.starts_with("{\"entry\"")).count();
            let done = text.lines().filter(|l| l.starts_with("{\"done\"")).count();
            entries - done.min(entries)
        })
        .sum()
}

#[test]
fn follow_spools_while_the_hub_is_down_and_delivers_each_line_once_in_order_across_restarts() {
    let home = tempfile::tempdir().expect("temp dir");
    // a port the hub will come back on, free now
    let port = {
        let hub = Hub::start(home.path(), 0, &[]);
        let port = hub.port;
        hub.stop();
        port
    };
    let log = home.path().join("app.log");
    append(&log, "written before notify started\n");
    let start_notify = || {
        let mut child = protolab(home.path())
            .args(["notify", "--follow", log.to_str().expect("utf-8")])
            .args([
                "--channel",
                "app",
                "--level-regex",
                "ERROR=error,WARN=warning",
            ])
            .args(["--hub", &format!("http://127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("notify starts");
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        (child, stderr)
    };
    let mut seen = Vec::new();
    let (mut notify, stderr) = start_notify();
    wait_for_line(&stderr, "from its end", &mut seen);
    append(&log, "ERROR disk full\nWARN cpu hot\nplain three\n");
    wait_until("3 lines not spooled", &seen, || spooled(home.path()) >= 3);
    // killed with lines spooled: nothing may be lost, nothing repeated
    notify.kill().expect("SIGKILL");
    notify.wait().expect("reaped");
    append(&log, "four, written while notify was down\nERROR five\n");
    let (mut notify, stderr) = start_notify();
    wait_for_line(&stderr, "resuming", &mut seen);
    append(&log, "six\n");

    let hub = Hub::start(home.path(), port, &[]);
    let expected = [
        ("ERROR disk full", "error"),
        ("WARN cpu hot", "warning"),
        ("plain three", "info"),
        ("four, written while notify was down", "info"),
        ("ERROR five", "error"),
        ("six", "info"),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while history(&hub.url(), "app", None).len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "not delivered: {:?}",
            history(&hub.url(), "app", None)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_line(&stderr, "the hub is back", &mut seen);
    // time for any duplicate to arrive
    std::thread::sleep(Duration::from_millis(1500));
    let delivered = history(&hub.url(), "app", None);
    let got: Vec<(u64, &str, &str)> = delivered
        .iter()
        .map(|n| {
            (
                n["offset"].as_u64().unwrap_or(0),
                n["body"].as_str().unwrap_or(""),
                n["level"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let want: Vec<(u64, &str, &str)> = expected
        .iter()
        .zip(1..)
        .map(|((body, level), offset)| (offset, *body, *level))
        .collect();
    assert_eq!(got, want);
    assert_eq!(spooled(home.path()), 0, "delivered lines left the spool");
    assert_eq!(
        terminate(&mut notify),
        Some(0),
        "Ctrl-C/SIGTERM stops cleanly"
    );
    let rest: Vec<String> = stderr.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("stopped; 0 notification(s)")),
        "{rest:#?}"
    );
    hub.stop();
}

#[test]
fn subscribe_prints_what_is_published_and_says_what_a_hub_restart_lost() {
    let home = tempfile::tempdir().expect("temp dir");
    let hub = Hub::start(home.path(), 0, &[]);
    let port = hub.port;
    let url = hub.url();
    let mut subscriber = protolab(home.path())
        .args(["--json", "subscribe", "ops", "--hub", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("subscribe starts");
    let stdout = lines_of(subscriber.stdout.take().expect("stdout"));
    let stderr = lines_of(subscriber.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    wait_for_line(&stderr, "ops: subscribed", &mut seen);
    let notify = |message: &str, level: &str| {
        let out = protolab(home.path())
            .args(["notify", message, "--channel", "ops", "--level", level])
            .args(["--hub", &url])
            .output()
            .expect("notify runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    notify("first", "warning");
    let line = stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("the notification printed");
    let first: serde_json::Value = serde_json::from_str(&line).expect("one JSON per line");
    assert_eq!(
        (&first["body"], &first["level"], &first["offset"]),
        (&"first".into(), &"warning".into(), &1.into())
    );

    hub.stop();
    let hub = Hub::start(home.path(), port, &[]);
    let said = wait_for_line(&stderr, "could not be recovered", &mut seen);
    assert!(said.contains("epoch is now"), "{said}");
    notify("second", "success");
    let line = stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("a notification after the restart");
    let second: serde_json::Value = serde_json::from_str(&line).expect("one JSON per line");
    assert_eq!(
        (&second["body"], &second["level"], &second["offset"]),
        (&"second".into(), &"success".into(), &1.into())
    );
    assert_ne!(second["epoch"], first["epoch"]);
    assert!(
        seen.iter().any(|l| l.contains("reconnecting in")),
        "{seen:#?}"
    );
    assert_eq!(terminate(&mut subscriber), Some(0));
    hub.stop();
}

/// Over HTTPS/WSS both commands trust the lab's CA from the home; a subscriber the hub refuses
/// (no token where JWTs are required) exits 1 with the hub's words instead of reconnecting.
#[test]
fn notify_and_subscribe_over_tls_and_a_refused_subscriber_exits_1() {
    let home = tempfile::tempdir().expect("temp dir");
    let secret = home.path().join("jwt");
    std::fs::write(&secret, "s".repeat(40)).expect("secret");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let hub = Hub::start(home.path(), 0, &["--tls"]);
    let url = format!("https://localhost:{}", hub.port);
    let mut subscriber = protolab(home.path())
        .args(["subscribe", "ops", "--since", "start", "--hub", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("subscribe starts");
    let stdout = lines_of(subscriber.stdout.take().expect("stdout"));
    let stderr = lines_of(subscriber.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    wait_for_line(&stderr, "connected to wss://localhost:", &mut seen);
    let out = protolab(home.path())
        .args(["notify", "over tls", "--channel", "ops", "--level", "error"])
        .env("PROTOLAB_HUB_URL", &url)
        .output()
        .expect("notify runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("the notification printed");
    assert!(line.ends_with("ops:1 ERROR   over tls"), "{line:?}");
    assert!(!line.contains('\x1b'), "colour on a pipe: {line:?}");
    assert_eq!(terminate(&mut subscriber), Some(0));
    hub.stop();

    let hub = Hub::start(
        home.path(),
        0,
        &["--jwt-secret-file", secret.to_str().expect("utf-8")],
    );
    let started = Instant::now();
    let out = protolab(home.path())
        .args(["subscribe", "ops", "--hub", &hub.url()])
        .output()
        .expect("subscribe runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("(401)"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
    hub.stop();
}

/// A hub that is down when `notify` starts: retried with backoff until it is up (delivered
/// once), or given up after --retry-for with exit 1.
#[test]
fn notify_retries_until_the_hub_is_up_and_gives_up_after_retry_for() {
    let home = tempfile::tempdir().expect("temp dir");
    let port = {
        let hub = Hub::start(home.path(), 0, &[]);
        let port = hub.port;
        hub.stop();
        port
    };
    let url = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let out = protolab(home.path())
        .args(["notify", "nobody there", "--retry-for", "1s", "--hub", &url])
        .output()
        .expect("notify runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("gave up after --retry-for 1s") && stderr.contains("retrying in"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");

    let notify = protolab(home.path())
        .args(["notify", "late hub", "--channel", "ops", "--hub", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("notify starts");
    std::thread::sleep(Duration::from_millis(1500));
    let hub = Hub::start(home.path(), port, &[]);
    let out = notify.wait_with_output().expect("notify ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("retrying in"), "{stderr}");
    let delivered = history(&hub.url(), "ops", None);
    let bodies: Vec<_> = delivered.iter().map(|n| n["body"].clone()).collect();
    assert_eq!(bodies, ["late hub"]);
    hub.stop();
}

/// `notify` killed after the hub accepted a line but before the spool recorded it: the restarted
/// `notify` sends it again with the key it was spooled with, and the hub does not deliver it twice.
#[test]
fn a_line_the_hub_already_has_is_not_delivered_twice_after_a_crash() {
    let home = tempfile::tempdir().expect("temp dir");
    let port = {
        let hub = Hub::start(home.path(), 0, &[]);
        let port = hub.port;
        hub.stop();
        port
    };
    let log = home.path().join("app.log");
    append(&log, "");
    let url = format!("http://127.0.0.1:{port}");
    let start_notify = || {
        let mut child = protolab(home.path())
            .args(["notify", "--follow", log.to_str().expect("utf-8")])
            .args(["--channel", "app", "--hub", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("notify starts");
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        (child, stderr)
    };
    let mut seen = Vec::new();
    let (mut notify, stderr) = start_notify();
    wait_for_line(&stderr, "from its end", &mut seen);
    append(&log, "only once\n");
    wait_until("not spooled", &seen, || spooled(home.path()) >= 1);
    notify.kill().expect("SIGKILL");
    notify.wait().expect("reaped");

    // the hub got it (as the killed notify's last attempt would have delivered it)
    let spool_dir = home.path().join("notify-spool");
    let spool = std::fs::read_dir(&spool_dir)
        .expect("spool dir")
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .expect("a spool file");
    let text = std::fs::read_to_string(spool.path()).expect("spool");
    let entry: serde_json::Value = text
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.get("entry").is_some())
        })
        .expect("an entry");
    let publication = &entry["entry"]["publication"];
    assert!(publication["idempotency_key"].is_string(), "{publication}");
    let hub = Hub::start(home.path(), port, &[]);
    let curl = Command::new(require("curl", "apt-get install -y curl"))
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(publication.to_string())
        .arg(format!("{url}/api/publish"))
        .output()
        .expect("curl runs");
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "202");

    let (mut notify, stderr) = start_notify();
    wait_until("not delivered", &seen, || spooled(home.path()) == 0);
    append(&log, "next\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    while history(&url, "app", None).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            history(&url, "app", None)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let bodies: Vec<_> = history(&url, "app", None)
        .iter()
        .map(|n| (n["offset"].as_u64().unwrap_or(0), n["body"].clone()))
        .collect();
    assert_eq!(bodies, [(1, "only once".into()), (2, "next".into())]);
    assert_eq!(terminate(&mut notify), Some(0));
    drop(stderr);
    hub.stop();
}
