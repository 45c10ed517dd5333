//! Headless Chromium scripted one command at a time (tests/peers/chromium_page.py --drive).

use std::process::Stdio;
use std::time::Duration;

use protolab_test_support::Peer;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Time a page gets to show what a test waits for.
const WAIT_SECONDS: u64 = 30;

pub(crate) struct Browser {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Browser {
    pub(crate) async fn open(url: &str) -> Self {
        Self::spawn(Peer::Chromium.command([url, "--drive"]))
    }

    /// As [`open`](Self::open), with the lab's CA trusted as a user trusts it (NSS).
    pub(crate) async fn open_trusting(url: &str, ca: &std::path::Path) -> Self {
        let ca = ca.to_string_lossy();
        Self::spawn(Peer::Chromium.command([url, "--drive", "--ca", &ca]))
    }

    fn spawn(mut command: tokio::process::Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium_page.py runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            _child: child,
            stdin,
            stdout,
        }
    }

    pub(crate) async fn command(&mut self, command: Value) -> Value {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write command");
        let limit = Duration::from_secs(WAIT_SECONDS + 30);
        let answer = tokio::time::timeout(limit, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer to {command}"))
            .expect("read answer")
            .unwrap_or_else(|| panic!("chromium_page.py exited before answering {command}"));
        serde_json::from_str(&answer).expect("a JSON answer")
    }

    pub(crate) async fn eval(&mut self, page: u64, js: &str) -> Value {
        let answer = self
            .command(json!({"cmd": "eval", "page": page, "js": js}))
            .await;
        assert_eq!(answer["ok"], true, "{js}: {answer}");
        answer["value"].clone()
    }

    /// Waits until `js` is truthy on `page`, failing with `what` and the page's text.
    pub(crate) async fn wait(&mut self, page: u64, js: &str, what: &str) -> Value {
        let answer = self
            .command(json!({"cmd": "wait", "page": page, "js": js, "timeout": WAIT_SECONDS}))
            .await;
        assert_eq!(
            answer["ok"], true,
            "{what}: `{js}` never held; the page shows:\n{}\n{answer}",
            answer["text"]
        );
        answer["value"].clone()
    }
}
