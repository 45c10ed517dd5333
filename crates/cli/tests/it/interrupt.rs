// `protolab compare` stopped by SIGINT: whoever sends it (the process alone, its whole process
// group as a terminal's Ctrl-C does, or a shell that started it with SIGINT ignored), it stops
// the run in progress, writes what was measured marked partial, says so, and exits 130.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::io::BufRead as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use serde_json::Value;

/// Ten runs of 1.5 s each.
const RUNS: usize = 10;
const COMPARE: [&str; 7] = [
    "compare",
    "--quick",
    "--duration",
    "15s",
    "-c",
    "2",
    "--out",
];

/// How the signal reaches compare.
#[derive(Debug, Clone, Copy)]
enum Sender {
    /// `kill -INT PID`: the process alone.
    Process,
    /// What a terminal's Ctrl-C does: SIGINT to the whole foreground process group.
    Terminal,
    /// The process alone, after a shell started it with SIGINT ignored (`trap '' INT`, as a
    /// non-interactive shell does for `cmd &`): the inherited disposition must not win.
    IgnoredByTheShell,
}

fn start(sender: Sender, home: &Path, out: &Path) -> Child {
    let bin = env!("CARGO_BIN_EXE_protolab");
    let mut args: Vec<String> = ["--home", home.to_str().unwrap()]
        .iter()
        .chain(COMPARE.iter())
        .map(|s| (*s).to_owned())
        .collect();
    args.push(out.to_str().unwrap().to_owned());
    let mut cmd = match sender {
        Sender::IgnoredByTheShell => {
            let mut sh = Command::new("sh");
            sh.args(["-c", "trap '' INT; exec \"$0\" \"$@\"", bin]);
            sh.args(&args);
            sh
        }
        Sender::Process | Sender::Terminal => {
            let mut c = Command::new(bin);
            c.args(&args);
            c
        }
    };
    // Its own group, so signalling the group reaches compare and not the test harness.
    cmd.process_group(0)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Forwards `child`'s stderr lines to a channel (the reader thread ends at EOF).
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

async fn interrupted_compare_writes_what_it_measured(sender: Sender) {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("report");
    let mut child = start(sender, home.path(), &out_dir);
    let lines = stderr_lines(&mut child);
    let mut stderr = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Non-terminal stderr: one line as each run starts. Interrupt the third run mid-way.
    while !stderr.iter().any(|l: &String| l.starts_with("[3/10]")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => stderr.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("{sender:?}: no third run started:\n{}", stderr.join("\n"));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let signalled = Instant::now();
    match sender {
        Sender::Terminal => killpg(pid, Signal::SIGINT).unwrap(),
        Sender::Process | Sender::IgnoredByTheShell => kill(pid, Signal::SIGINT).unwrap(),
    }
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if signalled.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("{sender:?}: still running 10 s after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stderr.extend(lines.iter());
    let stderr = stderr.join("\n");
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(status.code(), Some(130), "{sender:?}: {status:?}\n{stderr}");
    assert!(
        stderr.contains("interrupted: finishing the current run"),
        "{sender:?}: {stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "interrupted: 3 of {RUNS} runs measured, written to {} and marked partial",
            out_dir.display()
        )),
        "{sender:?}: {stderr}"
    );
    assert!(
        stdout.starts_with("PARTIAL: the run was interrupted"),
        "{sender:?}: {stdout}"
    );

    let file = out_dir.join("results.json");
    let results: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(results["partial"], true, "{sender:?}");
    let runs = results["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{sender:?}: {results}");
    let run_secs = results["settings"]["run_secs"].as_f64().unwrap();
    let cut = &runs[2]["report"];
    assert!(cut["messages"].as_u64().unwrap() > 0, "{sender:?}: {cut}");
    assert!(
        cut["duration_secs"].as_f64().unwrap() < run_secs * 0.9,
        "{sender:?}: the third run was cut short: {cut}"
    );
    let warnings = results["warnings"].to_string();
    assert!(
        warnings.contains("interrupted: 3 of 10 runs measured, the last (")
            && warnings.contains("cut short"),
        "{sender:?}: {warnings}"
    );
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(html.contains("PARTIAL"), "{sender:?}: the page says so");
    crate::compare::assert_matches_results_schema(
        &file,
        &format!("{sender:?}: results.json does not match its schema"),
    )
    .await;
}

#[tokio::test]
async fn sigint_to_the_process_stops_compare_with_a_partial_report() {
    interrupted_compare_writes_what_it_measured(Sender::Process).await;
}

#[tokio::test]
async fn sigint_from_a_terminal_stops_compare_the_same_way() {
    interrupted_compare_writes_what_it_measured(Sender::Terminal).await;
}

#[tokio::test]
async fn sigint_stops_compare_even_when_the_shell_started_it_ignoring_sigint() {
    interrupted_compare_writes_what_it_measured(Sender::IgnoredByTheShell).await;
}
