// `--idle-timeout-discovery` through HAProxy and nginx configured by the test with short idle
// timeouts in front of the lab: the time found is within 10% of the configured one, and the
// way the proxy ended the connection is named.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protolab_server::Protocol;
use protolab_test_support::{free_port, require, TestLab};

use super::probe;

/// A proxy in its own process group (nginx has a master and a worker), stopped as a group.
struct Group(Child);

impl Group {
    fn spawn(mut cmd: Command) -> Self {
        cmd.process_group(0).stdin(Stdio::null());
        Self(cmd.spawn().expect("proxy starts"))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

async fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The lab's HTTP and WS apps, with no server pushes that would reset a proxy's idle clock.
async fn quiet_lab() -> TestLab {
    TestLab::start(&[Protocol::Http, Protocol::Ws], |c| {
        c.push_interval = Duration::from_secs(3600);
    })
    .await
}

/// Probes `url` with idle discovery and checks the idle time against `configured` (±10%)
/// and that the server closed with `how`.
async fn idle_through(
    home: &Path,
    url: &str,
    configured: Duration,
    how: &str,
) -> serde_json::Value {
    let (code, report, _) = probe(home, &[url, "--idle-timeout-discovery", "30s"]).await;
    assert_eq!(code, 0, "{url}: {report:#}");
    let idle = &report["idle"];
    let survived = idle["survived_secs"].as_f64().unwrap();
    let want = configured.as_secs_f64();
    assert!(
        (survived - want).abs() <= want * 0.10,
        "{url}: idle connection lived {survived:.2} s, configured {want} s: {report:#}"
    );
    assert_eq!(idle["closed_by"], "server", "{url}: {report:#}");
    assert_eq!(idle["how"], how, "{url}: {report:#}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_idle_timeouts_are_found_within_10_percent_and_the_closer_named() {
    let lab = quiet_lab().await;
    let home = tempfile::tempdir().unwrap();
    let (http, ws) = (free_port(), free_port());
    let config = home.path().join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 100\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 3s\n  timeout server 30s\n  timeout tunnel 7s\n\
             frontend web\n  bind 127.0.0.1:{http}\n  default_backend lab_http\n\
             frontend ws\n  bind 127.0.0.1:{ws}\n  default_backend lab_ws\n\
             backend lab_http\n  server s1 127.0.0.1:{}\n\
             backend lab_ws\n  server s1 127.0.0.1:{}\n",
            lab.port(Protocol::Http),
            lab.port(Protocol::Ws)
        ),
    )
    .unwrap();
    let mut cmd = Command::new(require("haproxy", "apt-get install -y haproxy"));
    cmd.arg("-f").arg(&config).arg("-db");
    let _haproxy = Group::spawn(cmd);
    wait_listening(http, "haproxy").await;
    wait_listening(ws, "haproxy").await;
    // An idle keep-alive connection: `timeout client` (HAProxy's http-keep-alive and
    // http-request timeouts default to it).
    idle_through(
        home.path(),
        &format!("http://127.0.0.1:{http}/"),
        Duration::from_secs(3),
        "FIN",
    )
    .await;
    // An idle WebSocket: `timeout tunnel` once the 101 has passed.
    let report = idle_through(
        home.path(),
        &format!("ws://127.0.0.1:{ws}/ws"),
        Duration::from_secs(7),
        "FIN",
    )
    .await;
    assert_eq!(report["websocket"]["echoed"], true, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_idle_timeouts_are_found_within_10_percent_and_the_closer_named() {
    let lab = quiet_lab().await;
    let home = tempfile::tempdir().unwrap();
    let (http, ws) = (free_port(), free_port());
    let prefix = home.path();
    let config = prefix.join("nginx.conf");
    let dir = prefix.display();
    std::fs::write(
        &config,
        format!(
            "worker_processes 1;\ndaemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
             keepalive_timeout 3s;\n\
             server {{ listen 127.0.0.1:{http}; location / {{ proxy_pass http://127.0.0.1:{}; }} }}\n\
             server {{ listen 127.0.0.1:{ws}; location / {{ proxy_pass http://127.0.0.1:{}; proxy_http_version 1.1;\n\
               proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\"; proxy_read_timeout 4s; }} }}\n}}\n",
            lab.port(Protocol::Http),
            lab.port(Protocol::Ws)
        ),
    )
    .unwrap();
    let mut cmd = Command::new(require("nginx", "apt-get install -y nginx"));
    cmd.arg("-c").arg(&config).arg("-p").arg(format!("{dir}/"));
    let _nginx = Group::spawn(cmd);
    wait_listening(http, "nginx").await;
    wait_listening(ws, "nginx").await;
    // An idle keep-alive connection: `keepalive_timeout`.
    idle_through(
        home.path(),
        &format!("http://127.0.0.1:{http}/"),
        Duration::from_secs(3),
        "FIN",
    )
    .await;
    // An idle proxied WebSocket: `proxy_read_timeout` (nothing from the upstream).
    let report = idle_through(
        home.path(),
        &format!("ws://127.0.0.1:{ws}/ws"),
        Duration::from_secs(4),
        "FIN",
    )
    .await;
    assert_eq!(report["websocket"]["echoed"], true, "{report:#}");
}
