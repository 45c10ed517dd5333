// N hubs behind a balancer as docs/hub-redis.md tells it: that page's HAProxy configuration and
// its `protolab proxy` command, run as written (only the ports replaced), in front of two
// `protolab hub` processes on one redis-server; `--broker rediss://` with a Redis whose
// certificate `protolab certs issue` made; and the epoch an SSE subscriber is told before a
// channel's first publish.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_test_support::{free_port, repo_root, require, RedisServer, RedisTls};
use serde_json::Value;

use super::hub::curl;
use super::hub_redis::{notification, publish, sse, Instance};

/// The page the configurations come from.
fn scaleout_doc() -> String {
    std::fs::read_to_string(repo_root().join("docs/hub-redis.md")).expect("docs/hub-redis.md")
}

/// The page's ```haproxy block.
fn haproxy_config(doc: &str) -> String {
    let (_, rest) = doc
        .split_once("```haproxy\n")
        .expect("docs/hub-redis.md has a ```haproxy block");
    let (config, _) = rest.split_once("\n```").expect("the block ends");
    format!("{config}\n")
}

/// The page's `protolab proxy …` command (continuation lines joined, comment dropped), without
/// the program name.
fn proxy_arguments(doc: &str) -> Vec<String> {
    let mut lines = doc
        .lines()
        .skip_while(|line| !line.starts_with("protolab proxy "));
    let mut command = String::new();
    for line in lines.by_ref() {
        let line = line.split_once('#').map_or(line, |(code, _)| code).trim();
        match line.strip_suffix('\\') {
            Some(part) => command.push_str(part),
            None => {
                command.push_str(line);
                break;
            }
        }
        command.push(' ');
    }
    assert!(
        !command.is_empty(),
        "docs/hub-redis.md has a `protolab proxy` command"
    );
    command
        .split_whitespace()
        .skip(2)
        .map(str::to_owned)
        .collect()
}

/// The page's addresses: the balancer on :4000, the hubs on :4001 and :4002.
fn with_ports(text: &str, balancer: u16, a: u16, b: u16) -> String {
    text.replace("127.0.0.1:4000", &format!("127.0.0.1:{balancer}"))
        .replace("127.0.0.1:4001", &format!("127.0.0.1:{a}"))
        .replace("127.0.0.1:4002", &format!("127.0.0.1:{b}"))
}

fn port_of(base: &str) -> u16 {
    base.rsplit_once(':')
        .and_then(|(_, port)| port.trim_end_matches('/').parse().ok())
        .expect("a port in the hub's URL")
}

/// A balancer process, killed when dropped.
struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the series `series` (name and labels) in the hub's `/metrics`.
fn metric(base: &str, series: &str) -> u64 {
    let (status, text) = curl(&[&format!("{base}/metrics")]);
    assert_eq!(status, "200", "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

fn sse_connections(base: &str) -> u64 {
    metric(base, "protolab_hub_connections{transport=\"sse\"}")
}

/// Two SSE subscribers through the balancer on `port`: leastconn puts one on each hub, and each
/// gets what was published on either hub, in order.
fn subscribers_through_the_balancer_get_what_either_hub_published(
    port: u16,
    a: &Instance,
    b: &Instance,
    channel: &str,
) {
    let through = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl(&[&format!("{through}/readyz")]).0 != "200" {
        assert!(
            Instant::now() < deadline,
            "the balancer never passed /readyz through"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("{through}/connection/sse?channel={channel}");
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || sse(&url, "start", "6"))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sse_connections(&a.base) + sse_connections(&b.base) < 2 {
        assert!(Instant::now() < deadline, "the subscribers did not connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        (sse_connections(&a.base), sse_connections(&b.base)),
        (1, 1),
        "leastconn puts one subscriber on each hub"
    );
    publish(&a.base, &notification(channel, "published on a"));
    publish(&b.base, &notification(channel, "published on b"));
    for reader in readers {
        let (notifications, _) = reader.join().expect("reader");
        let got: Vec<(u64, &str)> = notifications
            .iter()
            .map(|(_, n)| {
                (
                    n["offset"].as_u64().expect("offset"),
                    n["body"].as_str().expect("body"),
                )
            })
            .collect();
        assert_eq!(got, [(1, "published on a"), (2, "published on b")]);
    }
    // /metrics is per instance (docs/hub-redis.md): each counts its own deliveries, and every
    // publication of the deployment, which reaches every instance
    for hub in [a, b] {
        assert_eq!(
            metric(&hub.base, "protolab_hub_delivered_total{transport=\"sse\"}"),
            2
        );
        assert_eq!(metric(&hub.base, "protolab_hub_published_total"), 2);
    }
}

#[test]
fn haproxy_with_the_documented_configuration_serves_two_hubs_on_one_redis() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let redis = runtime.block_on(RedisServer::start());
    let home = tempfile::tempdir().expect("temp dir");
    let a = Instance::start(home.path(), &redis);
    let b = Instance::start(home.path(), &redis);
    let port = free_port();
    let config = with_ports(
        &haproxy_config(&scaleout_doc()),
        port,
        port_of(&a.base),
        port_of(&b.base),
    );
    let file = home.path().join("hub.cfg");
    std::fs::write(&file, config).expect("write hub.cfg");
    let haproxy = require("haproxy", "apt-get install -y haproxy");
    let check = Command::new(&haproxy)
        .args(["-c", "-f"])
        .arg(&file)
        .output()
        .expect("haproxy runs");
    assert!(
        check.status.success(),
        "haproxy -c refuses the documented configuration: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _balancer = Balancer(
        Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts"),
    );
    subscribers_through_the_balancer_get_what_either_hub_published(port, &a, &b, "lb");
}

#[test]
fn protolab_proxy_with_the_documented_command_serves_two_hubs_on_one_redis() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let redis = runtime.block_on(RedisServer::start());
    let home = tempfile::tempdir().expect("temp dir");
    let a = Instance::start(home.path(), &redis);
    let b = Instance::start(home.path(), &redis);
    let port = free_port();
    let arguments: Vec<String> = proxy_arguments(&scaleout_doc())
        .iter()
        .map(|argument| with_ports(argument, port, port_of(&a.base), port_of(&b.base)))
        .collect();
    let _balancer = Balancer(
        Command::new(env!("CARGO_BIN_EXE_protolab"))
            .arg("--home")
            .arg(home.path())
            .arg("proxy")
            .args(&arguments)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("protolab proxy starts"),
    );
    subscribers_through_the_balancer_get_what_either_hub_published(port, &a, &b, "lb");
}

/// `protolab --json certs issue 127.0.0.1` in `home`: the certificate, key and CA paths.
fn issue(home: &std::path::Path) -> RedisTls {
    let out = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home)
        .args(["--json", "certs", "issue", "127.0.0.1"])
        .output()
        .expect("protolab certs issue runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let path = |key: &str| issued[key].as_str().expect(key).into();
    RedisTls {
        cert: path("cert_path"),
        key: path("key_path"),
        ca: path("ca_path"),
    }
}

/// Runs `protolab hub --port 0 extra…` in `home` until it exits (bounded): status and stderr.
fn hub_that_stops(home: &std::path::Path, extra: &[&str]) -> (Option<i32>, String) {
    let mut hub = Command::new(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home)
        .args(["hub", "--port", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protolab runs");
    let stderr = BufReader::new(hub.stderr.take().expect("stderr"));
    let lines = std::thread::spawn(move || {
        stderr
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while hub.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = hub.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = hub.wait().expect("status").code();
    (status, lines.join().expect("stderr"))
}

#[test]
fn rediss_trusts_the_labs_ca_and_another_ca_stops_the_hub_with_the_reason() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let home = tempfile::tempdir().expect("temp dir");
    let redis = runtime.block_on(RedisServer::start_tls(issue(home.path())));
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");

    // both hubs trust the lab's CA by default: its `certs issue` made Redis's certificate
    let a = Instance::start(home.path(), &redis);
    let b = Instance::start(home.path(), &redis);
    publish(&a.base, &notification("tls", "over rediss"));
    let (notifications, _) = sse(
        &format!("{}/connection/sse?channel=tls", b.base),
        "start",
        "1",
    );
    let bodies: Vec<&str> = notifications
        .iter()
        .filter_map(|(_, n)| n["body"].as_str())
        .collect();
    assert_eq!(bodies, ["over rediss"]);

    // a CA that did not sign it: the hub stops at start and says what to give
    let other = tempfile::tempdir().expect("temp dir");
    let other_ca = issue(other.path()).ca;
    let other_ca = other_ca.to_str().expect("UTF-8 path");
    let (status, stderr) = hub_that_stops(home.path(), &["--broker", &url, "--redis-ca", other_ca]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");
    assert!(
        stderr.contains("TLS") && stderr.contains("--redis-ca"),
        "{stderr}"
    );

    // --redis-ca without a TLS broker is a usage error naming the flag
    let (status, stderr) = hub_that_stops(
        home.path(),
        &["--broker", "redis://127.0.0.1:6379", "--redis-ca", other_ca],
    );
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("--redis-ca"), "{stderr}");
}

/// curl's SSE on a channel nobody published yet, on hub B: the epoch its `subscribed` event
/// carries is the one A's first publication gets, so the id it holds resumes exactly.
#[test]
fn sse_before_the_first_publish_is_told_the_epoch_it_resumes_in() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let redis = runtime.block_on(RedisServer::start());
    let home = tempfile::tempdir().expect("temp dir");
    let a = Instance::start(home.path(), &redis);
    let b = Instance::start(home.path(), &redis);
    let url = format!("{}/connection/sse?channel=fresh", b.base);
    let (_, subscribed) = sse(&url, "start", "1");
    let told = subscribed.first().expect("a subscribed event");
    assert_eq!(told["offset"], 0, "{told}");
    let epoch = told["epoch"].as_str().expect("epoch").to_owned();

    let published = publish(&a.base, &notification("fresh", "first"));
    assert_eq!(
        published["epoch"].as_str(),
        Some(epoch.as_str()),
        "told {told}, published {published}"
    );
    let (notifications, subscribed) = sse(&url, &format!("{epoch}:0"), "1");
    assert_eq!(subscribed[0]["recovered"], true, "{subscribed:?}");
    let ids: Vec<&str> = notifications.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, [format!("{epoch}:1")]);
}
