// The README's commands, run the way a new user runs them, so the README cannot drift from the
// program: every command of its `sh` and `console` blocks, in the README's order, through bash,
// with the `protolab` this test was built with first on PATH, in a throwaway HOME and working
// directory.
//
// `protolab`, `curl` and `tshark` commands run to the end and must succeed. Every other
// command, and every one that needs other handling (a server started and stopped, a command
// not run and why), is listed in STEPS; a README command that is neither fails the test, and
// so does a STEPS entry the README no longer has.
//
// What differs from a user's run, on purpose:
// - Ports: the README's fixed ports (3000-3004, 3012, 8080, 8443, 9100) are replaced in every
//   command and expected output by free ones, and `protolab up` gets the port flags to match,
//   so the test never collides with a lab someone is running.
// - `protolab bench` runs 2 s instead of its --duration (or its 10 s default) unless it is
//   bounded by `-n`; so that a 2 s run still sees the lab's pushes, `protolab up` also gets
//   `--push-interval 500ms` (the feed that SSE and polling read pushes every 5 s by default).
// - A command starting with `sudo` runs only when the test runs as root, without the sudo
//   (what the README tells root to do). Steps marked `root` (capturing packets) are skipped
//   otherwise, with a note.
// - `tshark -r` is first told what tshark 4.0 (Debian 12) does with port 3003 by itself,
//   `-d tcp.port==3003,gsm_ipa` (which shows RSL and hides the WSS traffic), on the free port
//   that replaced 3003: a README command that reads a WSS capture without its own
//   `-d tcp.port==3003,tls` then prints nothing, as it does for a user.
// - `setcap` acts on a copy of the binary, so the build's own file is never changed.

#![allow(
    clippy::unwrap_used,
    reason = "test set-up: a failed step should panic right there"
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufRead as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const README: &str = include_str!("../../../../../README.md");

/// Programs whose README commands run to the end without a STEPS entry.
const RUN_BY_DEFAULT: &[&str] = &["protolab", "curl", "tshark"];

/// The fixed ports the README uses, each replaced by a free one.
const README_PORTS: &[u16] = &[
    3000, 3001, 3002, 3003, 3004, 3005, 3006, 3012, 4000, 8080, 8443, 9100,
];

/// How long a command that runs to the end may take; `protolab compare` gets longer (it runs
/// about 90 s as the README gives it: seven rounds of every run).
const RUN_LIMIT: Duration = Duration::from_secs(60);
const COMPARE_LIMIT: Duration = Duration::from_secs(180);
const READY_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(20);

mod steps;

use steps::{How, Step, STEPS};

/// One command of a README code block.
#[derive(Debug)]
struct ReadmeCommand {
    /// 1-based line in README.md.
    line: usize,
    /// Index of its code block.
    block: usize,
    /// As written, continuation lines joined.
    text: String,
    /// Without its trailing comment, spaces collapsed: what STEPS matches.
    key: String,
    /// The output a `console` block shows under it.
    output: Vec<String>,
}

/// The commands of the README's shell code blocks: in `console` blocks the lines after `$ `
/// (the lines up to the next `$ ` are their output), in `sh`/`bash`/`shell` blocks every line
/// that is not blank or a comment.
fn readme_commands(readme: &str) -> Vec<ReadmeCommand> {
    let mut commands: Vec<ReadmeCommand> = Vec::new();
    let mut block: Option<(usize, bool)> = None; // (index, console) of a shell block
    let mut in_fence = false;
    let mut blocks = 0;
    let mut pending: Option<(usize, String)> = None; // a command continued with `\`
    for (i, line) in readme.lines().enumerate() {
        let number = i + 1;
        if let Some(language) = line.trim_start().strip_prefix("```") {
            block = None;
            pending = None;
            in_fence = !in_fence;
            if in_fence {
                blocks += 1;
                block = match language.trim() {
                    "sh" | "bash" | "shell" => Some((blocks, false)),
                    "console" => Some((blocks, true)),
                    _ => None,
                };
            }
            continue;
        }
        let Some((index, console)) = block else {
            continue;
        };
        let (start, command) = if let Some((start, mut command)) = pending.take() {
            command.push(' ');
            command.push_str(line.trim());
            (start, command)
        } else if console {
            match line.strip_prefix("$ ") {
                Some(command) => (number, command.trim().to_owned()),
                None => {
                    if let Some(last) = commands.last_mut().filter(|c| c.block == index) {
                        last.output.push(line.to_owned());
                    }
                    continue;
                }
            }
        } else {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            (number, trimmed.to_owned())
        };
        if let Some(joined) = command.strip_suffix('\\') {
            pending = Some((start, joined.trim_end().to_owned()));
            continue;
        }
        commands.push(ReadmeCommand {
            line: start,
            block: index,
            key: key(&command),
            text: command,
            output: Vec::new(),
        });
    }
    commands
}

/// Runs of whitespace as one space, none at either end.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A command without its trailing comment, spaces collapsed.
fn key(command: &str) -> String {
    let mut quote = None;
    let mut end = command.len();
    let mut previous = ' ';
    for (i, c) in command.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '#') if previous.is_whitespace() => {
                end = i;
                break;
            }
            _ => {}
        }
        previous = c;
    }
    collapse(&command[..end])
}

fn step_for(key: &str) -> Option<&'static Step> {
    STEPS.iter().find(|s| self::key(s.command) == key)
}

/// `NAME=value`: run as part of every later command of its block.
/// `NAME=VALUE`, or `export NAME=VALUE…`: kept and run before the block's later commands.
fn is_assignment(key: &str) -> bool {
    let one = |word: &str| {
        word.split_once('=').is_some_and(|(name, value)| {
            !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !value.contains(' ')
        })
    };
    match key.strip_prefix("export ") {
        Some(rest) => rest.split(' ').all(one),
        None => one(key),
    }
}

fn program(key: &str) -> &str {
    let key = key.strip_prefix("sudo ").unwrap_or(key);
    key.split_whitespace().next().unwrap_or("")
}

/// What is wrong with the README against STEPS, before anything runs.
fn coverage_problems(commands: &[ReadmeCommand]) -> Vec<String> {
    let mut problems = Vec::new();
    for c in commands {
        if step_for(&c.key).is_none()
            && !is_assignment(&c.key)
            && !RUN_BY_DEFAULT.contains(&program(&c.key))
        {
            problems.push(format!(
                "README.md:{}: `{}` runs `{}`, which this test does not run by itself: add it to \
                 STEPS in crates/cli/tests/it/readme.rs with how it runs, or why it cannot",
                c.line,
                c.key,
                program(&c.key)
            ));
        }
    }
    for step in STEPS {
        let wanted = key(step.command);
        if !commands.iter().any(|c| c.key == wanted) {
            problems.push(format!(
                "STEPS lists `{wanted}`, which README.md no longer has: update or remove it"
            ));
        }
        if let How::Serve {
            stop_before: Some(stop),
            ..
        } = step.how
        {
            if !commands.iter().any(|c| c.key == key(stop)) {
                problems.push(format!(
                    "STEPS stops `{wanted}` before `{stop}`, which README.md does not have"
                ));
            }
        }
    }
    problems
}

/// README ports to free ones.
struct Ports(BTreeMap<u16, u16>);

impl Ports {
    fn free() -> Self {
        // Hold every listener until all are picked, so no two README ports get the same one.
        let listeners: Vec<_> = README_PORTS
            .iter()
            .map(|&p| (p, std::net::TcpListener::bind("127.0.0.1:0").unwrap()))
            .collect();
        Self(
            listeners
                .iter()
                .map(|(p, l)| (*p, l.local_addr().unwrap().port()))
                .collect(),
        )
    }

    fn get(&self, port: u16) -> u16 {
        self.0[&port]
    }

    /// `text` with every README port (a number standing alone) replaced.
    fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric()) {
                let end = (i..bytes.len())
                    .find(|&j| !bytes[j].is_ascii_digit())
                    .unwrap_or(bytes.len());
                let digits = &text[i..end];
                let alone = end == bytes.len() || !bytes[end].is_ascii_alphanumeric();
                match digits.parse::<u16>().ok().and_then(|p| self.0.get(&p)) {
                    Some(port) if alone => out.push_str(&port.to_string()),
                    _ => out.push_str(digits),
                }
                i = end;
            } else {
                let c = text[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }
}

/// The command bash runs for a README command: ports replaced, `protolab up` and `protolab hub`
/// given the matching port flags, `protolab bench` shortened, `sudo` dropped, a trailing `&` dropped.
fn adapt(text: &str, ports: &Ports) -> String {
    let mut command = key(text);
    if let Some(rest) = command.strip_prefix("sudo ") {
        command = rest.to_owned();
    }
    if let Some(rest) = command.strip_suffix('&') {
        command = rest.trim_end().to_owned();
    }
    if let Some(rest) = command.strip_prefix("protolab up") {
        let mut flags = format!(
            " --http-port {} --https-port {} --ws-port {} --wss-port {} --sse-port {} --h2-port {} --grpc-port {} --push-interval 500ms",
            ports.get(3000),
            ports.get(3001),
            ports.get(3002),
            ports.get(3003),
            ports.get(3004),
            ports.get(3005),
            ports.get(3006)
        );
        if rest.contains("--proxy") {
            let _ = write!(
                flags,
                " --proxy-port {} --proxy-tls-port {}",
                ports.get(8080),
                ports.get(8443)
            );
        }
        command = format!("protolab up{flags}{rest}");
    }
    if let Some(rest) = command.strip_prefix("protolab hub") {
        command = format!("protolab hub --port {}{rest}", ports.get(4000));
    }
    if let Some(rest) = command.strip_prefix("tshark -r") {
        // What tshark 4.0 does with 3003 by itself, forced onto the free port that replaced
        // it (a later -d overrides an earlier one): the README's own -d must undo it.
        command = format!("tshark -d tcp.port==3003,gsm_ipa -r{rest}");
    }
    if command.starts_with("protolab bench") && !command.contains(" -n ") {
        command = match command.split_once("--duration ") {
            Some((before, after)) => {
                let rest = after.split_once(' ').map_or("", |(_, rest)| rest);
                format!("{before}--duration 2s {rest}")
                    .trim_end()
                    .to_owned()
            }
            None => format!("{command} --duration 2s"),
        };
    }
    ports.substitute(&command)
}

/// Output of a child's stdout and stderr together, read on threads as it comes.
#[derive(Default)]
struct Output {
    text: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Output {
    fn collect(child: &mut Child) -> Self {
        let mut output = Self::default();
        let pipes: Vec<Box<dyn std::io::Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for pipe in pipes {
            let sink = output.text.clone();
            output.readers.push(std::thread::spawn(move || {
                // Whole lines only: stdout and stderr arrive on two threads, and a chunk of one
                // must not land in the middle of a line of the other.
                let mut pipe = std::io::BufReader::new(pipe);
                let mut line = Vec::new();
                while let Ok(n) = pipe.read_until(b'\n', &mut line) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line));
                    line.clear();
                }
            }));
        }
        output
    }

    fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// All of it, once the child has exited and its pipes closed.
    fn finish(self) -> String {
        for reader in self.readers {
            let _ = reader.join();
        }
        let text = self.text.lock().unwrap();
        text.clone()
    }
}

/// A background command; killed if the test ends early.
struct Served {
    key: String,
    stop_before: Option<String>,
    child: Child,
    output: Output,
}

impl Served {
    /// SIGINT, as Ctrl-C; the command must finish cleanly.
    fn stop(mut self) {
        // Let the last packets of a capture land.
        std::thread::sleep(Duration::from_millis(300));
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let status = wait(&mut self.child, STOP_LIMIT);
        let output = self.output.text();
        assert!(
            status.is_some_and(|s| s.success()),
            "`{}` did not stop cleanly on SIGINT ({status:?}); its output:\n{output}",
            self.key
        );
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where the commands run: a throwaway HOME and working directory, and a bin directory
/// holding a copy of the binary under test, first on PATH.
struct Sandbox {
    _dir: tempfile::TempDir,
    home: std::path::PathBuf,
    work: std::path::PathBuf,
    path: std::ffi::OsString,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (home, work, bin) = (
            dir.path().join("home"),
            dir.path().join("work"),
            dir.path().join("bin"),
        );
        for d in [&home, &work, &bin] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::copy(env!("CARGO_BIN_EXE_protolab"), bin.join("protolab")).unwrap();
        let mut path = std::ffi::OsString::from(&bin);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        Self {
            _dir: dir,
            home,
            work,
            path,
        }
    }

    fn bash(&self, prelude: &[String], command: &str, exec: bool) -> Command {
        let mut script = prelude.join("\n");
        script.push('\n');
        if exec {
            // The program itself gets the signals, not a shell around it.
            script.push_str("exec ");
        }
        script.push_str(command);
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .current_dir(&self.work)
            .env("HOME", &self.home)
            .env("PATH", &self.path)
            .env("NO_COLOR", "1")
            .env_remove("PROTOLAB_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("RUST_LOG")
            .env_remove("SSLKEYLOGFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

#[test]
fn every_command_in_the_readme_runs_as_written() {
    let commands = readme_commands(README);
    assert!(
        commands.len() >= 20,
        "found only {} commands in README.md: is the parser broken?",
        commands.len()
    );
    let problems = coverage_problems(&commands);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let ports = Ports::free();
    let sandbox = Sandbox::new();
    let root = is_root();
    let mut served: Vec<Served> = Vec::new();
    let mut prelude: (usize, Vec<String>) = (0, Vec::new());
    for c in &commands {
        // Stop what must stop before this command (a lab whose ports it takes, a capture it
        // reads).
        while let Some(i) = served
            .iter()
            .position(|s| s.stop_before.as_deref() == Some(c.key.as_str()))
        {
            served.remove(i).stop();
        }
        if prelude.0 != c.block {
            prelude = (c.block, Vec::new());
        }
        if is_assignment(&c.key) {
            prelude.1.push(ports.substitute(&c.key));
            continue;
        }
        let step = step_for(&c.key);
        let needs_root = c.key.starts_with("sudo ")
            || matches!(
                step.map(|s| &s.how),
                Some(How::Run { root: true, .. } | How::Serve { root: true, .. })
            );
        let where_ = format!("README.md:{}", c.line);
        if let Some(How::NotRun(reason)) = step.map(|s| &s.how) {
            println!("{where_}: `{}` not run: {reason}", c.key);
            continue;
        }
        if needs_root && !root {
            println!("{where_}: `{}` skipped: it needs root (CAP_NET_RAW)", c.key);
            continue;
        }
        let command = adapt(&c.text, &ports);
        let started = Instant::now();
        match step.map(|s| &s.how) {
            Some(How::Serve {
                ready,
                stop_before,
                readme_output,
                ..
            }) => {
                let mut child = sandbox.bash(&prelude.1, &command, true).spawn().unwrap();
                let output = Output::collect(&mut child);
                let mut s = Served {
                    key: c.key.clone(),
                    stop_before: stop_before.map(key),
                    child,
                    output,
                };
                while !s.output.text().contains(ready) {
                    let exited = s.child.try_wait().unwrap();
                    assert!(
                        exited.is_none() && started.elapsed() < READY_LIMIT,
                        "{where_}: `{command}` never printed {ready:?} ({exited:?}); its output:\n{}",
                        s.output.text()
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                if *readme_output {
                    let text = s.output.text();
                    let got: Vec<String> = text.lines().map(collapse).collect();
                    for line in &c.output {
                        let want = collapse(&ports.substitute(line));
                        assert!(
                            got.contains(&want),
                            "{where_}: `{command}` printed no line `{want}` as README.md \
                             shows; it printed:\n{text}"
                        );
                    }
                }
                println!(
                    "{where_}: `{command}` started ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                served.push(s);
            }
            how => {
                let expect = match how {
                    Some(How::Run { expect, .. }) => *expect,
                    _ => &[],
                };
                let limit = if c.key.starts_with("protolab compare") {
                    COMPARE_LIMIT
                } else {
                    RUN_LIMIT
                };
                let mut child = sandbox.bash(&prelude.1, &command, false).spawn().unwrap();
                let output = Output::collect(&mut child);
                let status = wait(&mut child, limit);
                let text = output.finish();
                assert!(
                    status.is_some_and(|s| s.success()),
                    "{where_}: `{command}` failed ({}); its output:\n{text}",
                    status.map_or_else(
                        || format!("still running after {limit:?}"),
                        |s| s.to_string()
                    )
                );
                for want in expect {
                    assert!(
                        text.contains(want),
                        "{where_}: `{command}` printed no {want:?}; it printed:\n{text}"
                    );
                }
                println!(
                    "{where_}: `{command}` ran ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    for s in served {
        s.stop();
    }
}

/// The parser and the checks against STEPS, on a README of our own: the test above can only
/// fail on a drifted README if these do.
#[test]
fn readme_commands_are_found_and_unlisted_ones_fail() {
    let readme = "intro\n\
        ```sh\n\
        # a comment\n\
        protolab certs trust   # prints how\n\
        protolab proxy --listen 127.0.0.1:8080 \\\n    --backend 127.0.0.1:3002\n\
        CA=~/x/ca.pem\n\
        ```\n\
        ```js\n\
        not a command\n\
        ```\n\
        ```console\n\
        $ protolab up\n\
        http   http://localhost:3000/\n\
        ready\n\
        $ rm -rf /   # never run\n\
        ```\n";
    let commands = readme_commands(readme);
    let keys: Vec<&str> = commands.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "protolab certs trust",
            "protolab proxy --listen 127.0.0.1:8080 --backend 127.0.0.1:3002",
            "CA=~/x/ca.pem",
            "protolab up",
            "rm -rf /",
        ]
    );
    assert_eq!(
        commands[3].output,
        ["http   http://localhost:3000/", "ready"]
    );
    assert_eq!(commands[1].line, 5);
    let problems = coverage_problems(&commands);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("README.md:16: `rm -rf /` runs `rm`")),
        "{problems:?}"
    );
    // This README has none of STEPS' commands, so every entry is reported as stale.
    assert!(problems.iter().any(|p| p.contains("`scripts/test`")));

    let ports = Ports::free();
    let adapted = adapt("protolab up --proxy &", &ports);
    assert_eq!(
        adapted,
        format!(
            "protolab up --http-port {} --https-port {} --ws-port {} --wss-port {} --sse-port {} --h2-port {} --grpc-port {} --push-interval 500ms --proxy-port {} --proxy-tls-port {} --proxy",
            ports.get(3000),
            ports.get(3001),
            ports.get(3002),
            ports.get(3003),
            ports.get(3004),
            ports.get(3005),
            ports.get(3006),
            ports.get(8080),
            ports.get(8443)
        )
    );
    assert_eq!(
        adapt(
            "protolab bench ws://localhost:3002/ws -c 50 --duration 10s",
            &ports
        ),
        format!(
            "protolab bench ws://localhost:{}/ws -c 50 --duration 2s",
            ports.get(3002)
        )
    );
    assert_eq!(
        adapt(
            "sudo tshark -r x -d tcp.port==3003,tls -c 13003 # x",
            &ports
        ),
        format!(
            "tshark -d tcp.port=={0},gsm_ipa -r x -d tcp.port=={0},tls -c 13003",
            ports.get(3003)
        )
    );
}
