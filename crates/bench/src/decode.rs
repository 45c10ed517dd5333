//! `protolab-bench decode`: how fast `protolab inspect --json` decodes a large decrypted WSS
//! capture, against `tshark -2` with the same key log on the same file in the same run.
//!
//! The capture is made fresh each run: the lab's wss app with `--keylog`, dumpcap on `lo`
//! filtered to its port, a bounded `protolab bench` echo load, then
//! `protolab inspect --inject-secrets` so the file carries its secrets (as a shared capture
//! would). Both decoders read that file; the best of `rounds` timings each is kept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde::{Deserialize, Serialize};

use crate::process::{find_in_path, free_port, Ready, Server, TempDir};

/// What to capture and how often to time.
#[derive(Debug, Clone)]
pub struct Config {
    /// The protolab binary (lab, load client, inspect).
    pub protolab: PathBuf,
    /// Load duration.
    pub duration: Duration,
    /// Load connections.
    pub connections: usize,
    /// Bytes per echo message.
    pub size: usize,
    /// The run fails unless the capture holds at least this many packets.
    pub min_packets: u64,
    /// Timing rounds per decoder; the fastest is kept.
    pub rounds: u32,
    /// Keep the capture and key log in this directory.
    pub keep: Option<PathBuf>,
}

/// One decoder's timing.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// What ran.
    pub command: String,
    /// Fastest wall time, seconds.
    pub secs: f64,
    /// Packets per second at that time.
    pub packets_per_sec: f64,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Packets in the capture (as both decoders counted them).
    pub packets: u64,
    /// TCP connections, and how many inspect decrypted.
    pub connections: usize,
    /// Connections inspect decrypted.
    pub decrypted: usize,
    /// Capture file size in bytes.
    pub file_bytes: u64,
    /// `protolab inspect --json`.
    pub protolab: Timing,
    /// `tshark -2 -o tls.keylog_file:…`.
    pub tshark: Timing,
    /// protolab packets/s ÷ tshark packets/s.
    pub ratio: f64,
}

/// Stops a capture child with SIGINT (so the file is complete) or kills it on drop.
struct Capture(Child);

impl Capture {
    fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait()? {
                ensure!(status.success(), "dumpcap exited with {status}");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("dumpcap did not stop within 10 s of SIGINT")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    find_in_path(name)
        .with_context(|| format!("`{name}` is not installed: apt-get install -y {package}"))
}

fn start_capture(port: u16, file: &Path) -> anyhow::Result<Capture> {
    use std::io::BufRead as _;
    let mut child = Command::new(tool("dumpcap", "tshark")?)
        .args([
            "-i",
            "lo",
            "-f",
            &format!("tcp port {port}"),
            "-B",
            "64",
            "-q",
            "-w",
        ])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting dumpcap")?;
    let stderr = child.stderr.take().context("dumpcap stderr")?;
    let capture = Capture(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("File:") || line.contains("Capturing on") => break,
            Some(Ok(_)) => {}
            _ => bail!("dumpcap exited before capturing (needs root or CAP_NET_RAW)"),
        }
    }
    // Keep draining its stderr so dumpcap never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(Duration::from_millis(500));
    Ok(capture)
}

/// Runs `cmd` with stdout to `out`, returning its wall time; fails on a non-zero exit.
fn timed(cmd: &mut Command, out: &Path) -> anyhow::Result<Duration> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let start = Instant::now();
    let status = cmd
        .stdout(file)
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    let took = start.elapsed();
    ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(took)
}

#[derive(Deserialize)]
struct InspectJson {
    packets: u64,
    connections: Vec<InspectConnection>,
}

#[derive(Deserialize)]
struct InspectConnection {
    decrypted: Option<serde::de::IgnoredAny>,
}

/// Makes the capture, times both decoders, and checks they saw the same packets.
pub fn run(config: &Config) -> anyhow::Result<Results> {
    let tmp = TempDir::new("protolab-bench-decode")?;
    let dir = config
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let protolab = &config.protolab;
    ensure!(
        protolab.is_file(),
        "protolab binary {} not found: cargo build --release -p protolab",
        protolab.display()
    );
    let tshark = tool("tshark", "tshark")?;
    let home = tmp.path().join("home");
    let keys = dir.join("server.keys");
    let raw = dir.join("raw.pcapng");
    let file = dir.join("wss-with-secrets.pcapng");
    let _ = std::fs::remove_file(&keys);

    let port = free_port()?;
    let server = Server::start(
        "protolab-wss",
        protolab,
        &[
            "--home".into(),
            home.display().to_string(),
            "up".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--only".into(),
            "wss".into(),
            "--wss-port".into(),
            port.to_string(),
            "--keylog".into(),
            keys.display().to_string(),
        ],
        tmp.path(),
        port,
        Ready::Line("ready"),
    )?;
    let capture = start_capture(port, &raw)?;
    eprintln!(
        "decode: capturing {} s of WSS echo ({} connections × {} B) on port {port}",
        config.duration.as_secs_f64(),
        config.connections,
        config.size
    );
    let load = Command::new("taskset")
        .args(["-c", "1"])
        .arg(protolab)
        .arg("bench")
        .arg(format!("wss://127.0.0.1:{port}/ws"))
        .arg("--cacert")
        .arg(home.join("ca.pem"))
        .args(["-c", &config.connections.to_string()])
        .args(["--size", &config.size.to_string()])
        .args(["--duration", &format!("{}ms", config.duration.as_millis())])
        .args(["-n", "5000000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running protolab bench")?;
    ensure!(
        load.status.success(),
        "protolab bench failed: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    capture.stop()?;
    drop(server);

    let status = Command::new(protolab)
        .arg("inspect")
        .arg("--inject-secrets")
        .arg(&keys)
        .arg(&raw)
        .arg(&file)
        .stderr(Stdio::null())
        .status()
        .context("protolab inspect --inject-secrets")?;
    ensure!(status.success(), "protolab inspect --inject-secrets failed");
    if config.keep.is_none() {
        let _ = std::fs::remove_file(&raw);
    }
    let file_bytes = std::fs::metadata(&file)?.len();

    let json_out = tmp.path().join("inspect.json");
    let fields_out = tmp.path().join("tshark.txt");
    let keylog_pref = format!("tls.keylog_file:{}", keys.display());
    let mut ours = Duration::MAX;
    let mut theirs = Duration::MAX;
    for round in 1..=config.rounds {
        eprintln!("decode: timing round {round}/{}", config.rounds);
        ours = ours.min(timed(
            Command::new(protolab)
                .arg("--json")
                .arg("inspect")
                .arg(&file),
            &json_out,
        )?);
        theirs = theirs.min(timed(
            Command::new(&tshark).arg("-r").arg(&file).args([
                "-o",
                &keylog_pref,
                "-2",
                "-T",
                "fields",
                "-e",
                "frame.number",
            ]),
            &fields_out,
        )?);
    }
    let report: InspectJson =
        serde_json::from_slice(&std::fs::read(&json_out).context("reading inspect's JSON")?)
            .context("parsing inspect's JSON")?;
    let tshark_packets = std::fs::read(&fields_out)?
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count() as u64;
    ensure!(
        report.packets == tshark_packets,
        "inspect counted {} packets, tshark {tshark_packets}",
        report.packets
    );
    ensure!(
        report.packets >= config.min_packets,
        "the capture has {} packets, fewer than {}: raise --duration or --connections",
        report.packets,
        config.min_packets
    );
    let decrypted = report
        .connections
        .iter()
        .filter(|c| c.decrypted.is_some())
        .count();
    ensure!(
        decrypted == report.connections.len(),
        "inspect decrypted {decrypted} of {} connections",
        report.connections.len()
    );
    let timing = |command: String, took: Duration| Timing {
        command,
        secs: took.as_secs_f64(),
        packets_per_sec: report.packets as f64 / took.as_secs_f64(),
    };
    let protolab_t = timing("protolab --json inspect FILE".into(), ours);
    let tshark_t = timing(
        "tshark -r FILE -o tls.keylog_file:KEYS -2 -T fields -e frame.number".into(),
        theirs,
    );
    Ok(Results {
        packets: report.packets,
        connections: report.connections.len(),
        decrypted,
        file_bytes,
        ratio: protolab_t.packets_per_sec / tshark_t.packets_per_sec,
        protolab: protolab_t,
        tshark: tshark_t,
    })
}

/// The results as a small table.
pub fn render(r: &Results) -> String {
    let mut s = format!(
        "decode: {} packets, {} connections ({} decrypted), {:.1} MB with secrets embedded\n",
        r.packets,
        r.connections,
        r.decrypted,
        r.file_bytes as f64 / 1e6
    );
    for t in [&r.protolab, &r.tshark] {
        s.push_str(&format!(
            "  {:>12.0} packets/s  {:>7.3} s  {}\n",
            t.packets_per_sec, t.secs, t.command
        ));
    }
    s.push_str(&format!(
        "  ratio protolab/tshark: {:.1}× (target ≥ 10×)\n",
        r.ratio
    ));
    s
}
