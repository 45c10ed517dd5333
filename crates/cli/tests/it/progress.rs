// Progress lines: `bench` redraws one on a terminal, as `compare` does, and prints none (no
// control codes at all) when stderr is a pipe.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::time::Duration;

use protolab_server::Protocol;
use protolab_test_support::{require, run, TestLab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_shows_progress_on_a_terminal_and_nothing_on_a_pipe() {
    let lab = TestLab::start(&[Protocol::Ws], |_| {}).await;
    let url = lab.url(Protocol::Ws);
    let bin = env!("CARGO_BIN_EXE_protolab");
    let home = lab.home().to_str().unwrap();
    let args = ["--home", home, "bench", &url, "--duration", "1500ms"];

    // script(1) runs the command on a pseudo-terminal and copies what it shows to stdout.
    let script = require("script", "apt-get install -y bsdutils");
    let line = std::iter::once(bin)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    let mut on_tty = tokio::process::Command::new(script);
    on_tty.args(["-q", "-e", "-c", &line, "/dev/null"]);
    let shown = run(on_tty, Duration::from_secs(30)).await;
    let screen = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{screen}");
    assert!(
        screen.contains("\r\x1b[2K[#") && screen.contains(&format!("] {url}")),
        "a redrawn bar naming the target:\n{screen:?}"
    );
    assert!(screen.contains(" s left"), "{screen:?}");
    assert!(screen.contains("messages"), "then the report:\n{screen}");

    let mut piped = tokio::process::Command::new(bin);
    piped.args(args);
    let out = run(piped, Duration::from_secs(30)).await;
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\x1b') && !stderr.contains("s left"),
        "{stderr:?}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("messages"));
}
