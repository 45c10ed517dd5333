//! The `protolab` command line: clap arguments, their validation into typed configs, the lab
//! supervisor behind `up`, and output rendering.
//!
//! [`run`] is the whole program minus process set-up; tests call it in-process with
//! [`Cli::parse_from`](clap::Parser::parse_from). Only this crate uses clap and anyhow.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

pub mod bench;
pub mod capture;
pub mod certs;
pub mod compare;
pub mod hub;
pub mod inspect;
pub mod logging;
pub mod proxy;
pub mod signals;
pub mod units;
pub mod up;

/// Stand up, load, compare and look inside web transport protocols.
#[derive(Debug, Parser)]
#[command(name = "protolab", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options every subcommand takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Where the CA, certificates and keys live. Default: $XDG_DATA_HOME/protolab
    /// (~/.local/share/protolab).
    #[arg(long, global = true, env = "PROTOLAB_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Print machine-readable JSON instead of text where the output is data.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The main job: start the lab in-process, run the same workloads (new connections,
    /// echoes, server pushes) over HTTP, HTTPS, WS and WSS, print them side by side and write
    /// a report (`protolab-report/<time>/index.html` and `results.json`).
    Compare(compare::CompareArgs),
    /// Manage the local CA and certificates (like mkcert), and diagnose TLS certificate errors.
    Certs(certs::CertsArgs),
    /// Run the lab's apps: HTTP :3000, HTTPS :3001, WS :3002, WSS :3003, each with a demo page.
    /// Prints each URL once it listens, then `ready`; Ctrl-C closes everything cleanly.
    Up(up::UpArgs),
    /// Run a TLS-terminating, WebSocket-aware reverse proxy in front of backends (plain :8080,
    /// TLS :8443), or print the same setup for HAProxy or nginx with --emit.
    Proxy(proxy::ProxyArgs),
    /// Run the notification hub (default :4000): publish over HTTP (`POST /api/publish`),
    /// subscribe over WebSocket (`/connection/ws`) or SSE (`/connection/sse`), with per-channel
    /// history so a returning subscriber gets exactly what it missed.
    Hub(hub::HubArgs),
    /// Load an http/https/ws/wss URL with echoes: throughput, latency percentiles, bytes on
    /// the wire per message and per handshake, connection phase timings.
    Bench(bench::BenchArgs),
    /// Read a pcap/pcapng capture and print each connection's conversation: TCP handshake and
    /// RTT, TLS hellos, HTTP requests and responses, the upgrade, every WebSocket frame.
    Inspect(inspect::InspectArgs),
    /// Capture TCP traffic on ports of an interface (default lo) into a pcapng file with the
    /// TLS key log embedded, so Wireshark, tshark and `inspect` see inside HTTPS and WSS.
    /// Needs CAP_NET_RAW; Ctrl-C stops and writes the file.
    Capture(capture::CaptureArgs),
    /// Print a shell completion script, e.g. `protolab completions bash > /etc/bash_completion.d/protolab`.
    Completions {
        /// The shell to generate for.
        shell: clap_complete::Shell,
    },
}

/// Resolved global context handed to every subcommand.
#[derive(Debug, Clone)]
pub struct Context {
    /// The state directory (CA, certificates, keys).
    pub home: PathBuf,
    /// JSON output requested.
    pub json: bool,
}

impl Context {
    fn from_args(global: &GlobalArgs) -> anyhow::Result<Self> {
        let home = match &global.home {
            Some(dir) => dir.clone(),
            None => default_home().context(
                "cannot find a state directory: set PROTOLAB_HOME or --home (neither XDG_DATA_HOME nor HOME is set)",
            )?,
        };
        Ok(Self {
            home,
            json: global.json,
        })
    }
}

fn default_home() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("protolab"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/protolab"))
}

/// Runs one parsed command line. Errors carry context for the user; `main` prints them.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = Context::from_args(&cli.global)?;
    match cli.command {
        Command::Compare(args) => compare::run(args, &ctx).await,
        Command::Certs(args) => certs::run(args, &ctx).await,
        Command::Up(args) => up::run(args, &ctx).await,
        Command::Bench(args) => bench::run(args, &ctx).await,
        Command::Proxy(args) => proxy::run(args, &ctx).await,
        Command::Hub(args) => hub::run(args, &ctx).await,
        Command::Inspect(args) => inspect::run(args, &ctx).await,
        Command::Capture(args) => capture::run(args, &ctx).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "protolab", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Whether `err` is a closed stdout (e.g. `protolab ... | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
