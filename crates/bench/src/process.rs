//! Child processes of the driver: servers pinned to core 0, clients pinned to core 1.
//!
//! Every child runs in its own process group, recorded in a registry, so it can be stopped as
//! a whole (nginx's worker with its master) when its handle drops, when the driver fails, and
//! when the driver gets Ctrl-C or SIGTERM ([`install_signal_handler`]).

use std::fs::File;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Process groups of live children.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn register(pgid: u32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.push(pgid);
    }
}

fn unregister(pgid: u32) {
    if let Ok(mut groups) = GROUPS.lock() {
        groups.retain(|&g| g != pgid);
    }
}

/// Sends `signal` to a whole process group through kill(1) (this crate forbids `unsafe`, so
/// no libc).
fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), "--".to_owned(), format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

/// On Ctrl-C or SIGTERM, kills every registered child group and exits with 130.
pub fn install_signal_handler() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("\ninterrupted: stopping servers and clients");
            let groups = GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
            for pgid in groups {
                signal_group(pgid, "KILL");
            }
            std::process::exit(130);
        });
    });
}

/// The first `name` on `PATH` that is a file.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A free TCP port on 127.0.0.1 (bound, read, released; the server binds it a moment later).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates a fresh directory named after `prefix`, this process and the time.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to tell that a server is ready.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// It prints this line on stdout, then its port accepts.
    Line(&'static str),
    /// Its port accepts.
    Port,
}

/// A server pinned to core 0, stopped (with its process group) on drop.
#[derive(Debug)]
pub struct Server {
    name: String,
    child: Child,
    /// Lines the server printed on stdout before it was ready.
    pub lines: Vec<String>,
    log: PathBuf,
}

impl Server {
    /// Starts `taskset -c 0 program args…` in `dir` (stderr goes to `dir/<name>.log`) and
    /// waits up to 15 s until it is ready and `port` accepts connections.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        dir: &Path,
        port: u16,
        ready: Ready,
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let stderr = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg("0")
            .arg(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {name}: taskset -c 0 {}", program.display()))?;
        register(child.id());
        let stdout = child.stdout.take();
        let mut server = Self {
            name: name.to_owned(),
            child,
            lines: Vec::new(),
            log,
        };
        let lines = stdout.map(spawn_line_reader);
        let deadline = Instant::now() + Duration::from_secs(15);
        if let (Ready::Line(want), Some(rx)) = (ready, &lines) {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => {
                        let done = line.trim() == want;
                        server.lines.push(line);
                        if done {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        bail!(
                            "{name} did not print `{want}` within 15 s{}",
                            server.log_tail()
                        )
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        bail!("{name} exited before it was ready{}", server.log_tail())
                    }
                }
            }
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "{name} exited with {status} before it was ready{}",
                    server.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{name} did not accept on {addr} within 15 s{}",
                    server.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's pid (taskset execs it, so it is the process we started).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the server is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of its stderr log, formatted for an error message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n  ");
        if tail.is_empty() {
            String::new()
        } else {
            format!("\n  {} stderr:\n  {tail}", self.name)
        }
    }
}

/// Starts `protolab --home HOME up --only APP --APP-port PORT` on 127.0.0.1 as the server
/// `protolab-APP` (e.g. `h2`, `grpc`), its stderr in `dir`; ready when it prints `ready`.
pub fn start_protolab_app(
    protolab: &Path,
    home: &Path,
    dir: &Path,
    app: &str,
    port: u16,
) -> anyhow::Result<Server> {
    let args = [
        "--home".to_owned(),
        home.display().to_string(),
        "up".to_owned(),
        "--bind".to_owned(),
        "127.0.0.1".to_owned(),
        "--only".to_owned(),
        app.to_owned(),
        format!("--{app}-port"),
        port.to_string(),
    ];
    Server::start(
        &format!("protolab-{app}"),
        protolab,
        &args,
        dir,
        port,
        Ready::Line("ready"),
    )
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = self.child.id();
        // SIGTERM first so nginx's master takes its worker down, then SIGKILL whatever is left.
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(3);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(pgid, "KILL");
        let _ = self.child.wait();
        unregister(pgid);
    }
}

/// Reads lines from a child's stdout on a thread until EOF, so the pipe never fills.
fn spawn_line_reader(stdout: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                // Nobody listens any more; keep draining so the child never blocks on stdout.
                continue;
            }
        }
    });
    rx
}

/// Output of a bounded client run.
#[derive(Debug)]
pub struct Output {
    /// Everything it printed on stdout.
    pub stdout: String,
    /// CPU seconds of the client, last sampled shortly before it exited.
    pub cpu_secs: Option<f64>,
    /// Wall time from start to exit.
    pub wall: Duration,
}

/// Runs `taskset -c 1 program args…` to completion, killing it after `limit`.
pub fn run_pinned_client(
    program: &Path,
    args: &[String],
    limit: Duration,
) -> anyhow::Result<Output> {
    let started = Instant::now();
    let mut child = Command::new("taskset")
        .arg("-c")
        .arg("1")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting taskset -c 1 {}", program.display()))?;
    let pid = child.id();
    register(pid);
    let guard = KillOnDrop(pid);
    let mut stdout_pipe = child.stdout.take();
    let mut stderr_pipe = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stdout_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = stderr_pipe.as_mut() {
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let mut cpu_secs = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            drop(guard);
            let _ = child.wait();
            bail!(
                "{} ran longer than {limit:?} and was killed",
                program.display()
            );
        }
        if let Some(cpu) = crate::cpu::process_cpu(pid) {
            cpu_secs = Some(cpu.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let wall = started.elapsed();
    // Reaped: its pid may be reused, so do not signal it any more.
    guard.disarm();
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    if !stderr.trim().is_empty() {
        eprint!("{}", indent(&stderr));
    }
    if !status.success() {
        bail!("{} failed ({status}): {}", program.display(), stderr.trim());
    }
    Ok(Output {
        stdout,
        cpu_secs,
        wall,
    })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Kills a process group when dropped, unless disarmed.
struct KillOnDrop(u32);

impl KillOnDrop {
    fn disarm(mut self) {
        unregister(self.0);
        self.0 = 0;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 != 0 {
            signal_group(self.0, "KILL");
            unregister(self.0);
        }
    }
}
