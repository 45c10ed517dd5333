// The servers raise their soft open-file limit to the hard one at start, say so, and take
// `--max-connections` from it: under `prlimit --nofile=256:4096` the hub holds 400
// connections at once, which a soft limit of 256 cannot.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use protolab_test_support::require;

const HELD: usize = 400;

#[test]
fn the_hub_raises_its_open_file_limit_and_holds_more_connections_than_the_soft_one() {
    let prlimit = require("prlimit", "apt-get install -y util-linux");
    let home = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(prlimit)
        .args(["--nofile=256:4096", "--"])
        .arg(env!("CARGO_BIN_EXE_protolab"))
        .arg("--home")
        .arg(home.path())
        .env_remove("RUST_LOG")
        .args(["hub", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("protolab starts");
    let base = crate::hub::hub_url(&mut child);
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();

    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["4096", "4096"], "{open_files}");

    // Each connection gets its answer while every earlier one stays open.
    let mut held = Vec::new();
    for i in 0..HELD {
        let mut tcp = TcpStream::connect(&addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            .expect("request");
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("connection {i} got no answer: {e}"));
        assert_eq!(&head, b"HTTP/1.1 200", "connection {i}");
        held.push(tcp);
    }
    drop(held);

    let _ = child.kill();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr text");
    let _ = child.wait();
    assert!(
        stderr.contains("open files: soft limit raised from 256 to 4096"),
        "{stderr}"
    );
    assert!(
        stderr.contains("max connections: 4032 (from the open-file limit 4096"),
        "{stderr}"
    );
}
