//! Shared by the peer tests: finding a peer program, killing children when a test fails, and
//! a tshark capture on loopback that starts only once packets are really being recorded.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a failed set-up step should panic right there"
)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of `name` on PATH, or a panic naming the Debian package: never a silent skip.
pub(crate) fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("peer missing: `{name}`; install it with `apt-get install -y {package}` (scripts/install-test-peers does it)")
    })
}

/// Kills the child when dropped, so a failing test never leaves a peer running (a leftover
/// tshark filters every later loopback packet and skews benchmarks).
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// tshark writing `file` from `lo` with a capture filter.
pub(crate) struct Capture(KillOnDrop);

impl Capture {
    /// Starts tshark and returns once it records: it prints "Capturing on" before dumpcap
    /// has opened the interface, and "Capture started." once it has.
    pub(crate) fn start(filter: &str, file: &Path) -> Self {
        let mut child = KillOnDrop(
            Command::new(tool("tshark", "tshark"))
                .args(["-i", "lo", "-f", filter, "-w"])
                .arg(file)
                .stderr(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut stderr = BufReader::new(child.0.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut line = String::new();
        while !line.contains("Capture started") {
            line.clear();
            assert!(Instant::now() < deadline, "tshark did not start capturing");
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "tshark exited before capturing (needs root or CAP_NET_RAW)"
            );
        }
        Self(child)
    }

    /// Lets the last packets land, then stops tshark with SIGINT so it finishes the file.
    pub(crate) fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let pid = self.0 .0.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(self.0 .0.wait().unwrap().success());
    }
}
