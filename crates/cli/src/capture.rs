//! `protolab capture`: record the lab's traffic on an interface into a pcapng file that
//! Wireshark, tshark and `protolab inspect` open — with the TLS key log embedded, so HTTPS and
//! WSS decrypt with no settings.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use protolab_capture::live::{
    self, CaptureConfig, CaptureStats, LiveCapture, StopReason, DEFAULT_SNAPLEN,
};

use crate::units::{parse_duration, parse_size};
use crate::Context;

/// `protolab capture` arguments.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Keep TCP packets with this port on either side; repeatable (e.g. --port 3002 --port 3003).
    #[arg(long = "port", value_name = "PORT", required = true)]
    pub ports: Vec<u16>,
    /// Interface to capture on.
    #[arg(short, long, default_value = "lo", value_name = "NAME")]
    pub interface: String,
    /// Stop by itself after this long (e.g. 10s, 2m). Default: until Ctrl-C or SIGTERM.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Option<Duration>,
    /// Stop by itself after this many packets.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Embed the TLS secrets from this NSS key log (e.g. the file `protolab up --keylog FILE`
    /// writes), read when the capture ends. Only sessions the capture saw are embedded; the
    /// file must not be readable by group or others.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    /// The pcapng file to write (mode 0600 when it holds secrets). Written whole at the end.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: PathBuf,
    /// Most bytes kept per packet.
    #[arg(long, default_value_t = DEFAULT_SNAPLEN, value_name = "BYTES")]
    pub snaplen: u32,
    /// Stop once the captured packets take this much (they are spooled to a temporary file).
    #[arg(long, default_value = "1GiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_size: u64,
}

impl TryFrom<&CaptureArgs> for CaptureConfig {
    type Error = anyhow::Error;

    fn try_from(args: &CaptureArgs) -> anyhow::Result<Self> {
        ensure_usage!(
            !args.ports.contains(&0),
            "--port 0 is not a port anything listens on"
        );
        ensure_usage!(
            args.duration.is_none_or(|d| !d.is_zero()),
            "--duration must be greater than zero"
        );
        ensure_usage!(args.count != Some(0), "--count must be at least 1");
        ensure_usage!(args.max_size > 0, "--max-size must be greater than zero");
        let mut ports = args.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        Ok(Self {
            interface: args.interface.clone(),
            ports,
            snaplen: args.snaplen,
            duration: args.duration,
            count: args.count,
            max_bytes: args.max_size,
            ..Self::default()
        })
    }
}

/// Runs `protolab capture`.
pub async fn run(args: CaptureArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = CaptureConfig::try_from(&args)?;
    let dir = match args.write.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_usage!(
        dir.is_dir(),
        "-w {}: the directory {} does not exist",
        args.write.display(),
        dir.display()
    );
    if let Some(keylog) = &args.keylog {
        // Refuse a readable key log now, not after the user has produced the traffic.
        live::check_key_log(keylog)?;
    }
    let shutdown = crate::signals::shutdown_signal()?;
    // No context added: the error already says what to do (CAP_NET_RAW, interface names).
    let mut capture = LiveCapture::start(config)?;
    let target = describe(&capture.config().interface, &capture.config().ports);
    eprintln!(
        "capturing on {target} → {}{}",
        args.write.display(),
        match (args.duration, args.count) {
            (Some(d), _) => format!(
                " for {}; Ctrl-C stops earlier",
                humantime::format_duration(d)
            ),
            (None, Some(n)) => format!(" until {n} packets; Ctrl-C stops earlier"),
            (None, None) => "; Ctrl-C stops".to_string(),
        }
    );
    let live_line = std::io::stderr().is_terminal();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                if live_line {
                    let p = capture.progress();
                    eprint!(
                        "\r\x1b[2K  {} packets ({}), {:.1} s",
                        p.kept,
                        human_bytes(p.bytes),
                        p.elapsed_ms as f64 / 1000.0
                    );
                }
                if capture.is_finished() {
                    break;
                }
            }
        }
    }
    if live_line {
        eprint!("\r\x1b[2K");
    }
    capture.stop()?;

    // The lab appends secrets during the capture: read the key log only now.
    let mut key_log_error = None;
    let secrets = match &args.keylog {
        Some(path) => match live::read_key_log(path) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                key_log_error = Some(err);
                None
            }
        },
        None => None,
    };
    let out = args.write.clone();
    let stats = tokio::task::spawn_blocking(move || capture.finish(secrets.as_deref(), &out))
        .await
        .context("the capture writer stopped")??;

    eprintln!("{}", summary(&stats, &args));
    if ctx.json {
        let mut value = serde_json::to_value(&stats)?;
        value["file"] = serde_json::json!(args.write);
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{value}")?;
        stdout.flush()?;
    }
    if let Some(err) = key_log_error {
        eprintln!("error: {err}; the capture was written without secrets");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(err) = &stats.error {
        eprintln!("error: the capture ended early: {err}; the packets before are in the file");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(interface: &str, ports: &[u16]) -> String {
    let list = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!("{interface}, ports {list}")
}

/// The final lines: `N packets (M bytes) on lo, ports 3003 → out.pcapng, secrets: K sessions
/// embedded`, then anything the user should know (drops, cut packets, limits).
pub fn summary(stats: &CaptureStats, args: &CaptureArgs) -> String {
    let mut s = format!(
        "{} packets ({} bytes) on {} → {}, secrets: ",
        stats.kept,
        stats.bytes,
        describe(&stats.interface, &stats.ports),
        args.write.display()
    );
    if args.keylog.is_some() {
        let _ = write!(s, "{} sessions embedded", stats.secrets_sessions);
        if stats.secrets_unmatched > 0 {
            let _ = write!(
                s,
                " ({} other sessions in the key log left out: not in this capture)",
                stats.secrets_unmatched
            );
        }
    } else if stats.client_hellos > 0 {
        let _ = write!(
            s,
            "none ({} TLS sessions captured; add --keylog FILE to decrypt them)",
            stats.client_hellos
        );
    } else {
        s.push_str("none");
    }
    if stats.dropped_by_kernel > 0 {
        let _ = write!(
            s,
            "\nwarning: the kernel dropped {} packets (socket buffer full); the file misses them",
            stats.dropped_by_kernel
        );
    }
    if stats.truncated > 0 {
        let _ = write!(
            s,
            "\nnote: {} packets were longer than --snaplen {} and were cut",
            stats.truncated, args.snaplen
        );
    }
    match stats.stop {
        Some(StopReason::SizeLimit) => {
            let _ = write!(
                s,
                "\nwarning: stopped at --max-size {}; later packets are not in the file",
                human_bytes(args.max_size)
            );
        }
        Some(StopReason::Count) => s.push_str("\nstopped after --count packets"),
        Some(StopReason::Duration) => s.push_str("\nstopped after --duration"),
        _ => {}
    }
    s
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
