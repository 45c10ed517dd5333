//! The `protolab` command line: clap arguments, their validation into typed configs, the lab
//! supervisor behind `up`, and output rendering.
//!
//! [`run`] is the whole program minus process set-up; tests call it in-process with
//! [`Cli::parse_from`](clap::Parser::parse_from). Only this crate uses clap and anyhow.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

/// Returns a [`UsageError`] (exit status 2) unless `cond` holds.
macro_rules! ensure_usage {
    ($cond:expr, $($message:tt)+) => {
        if !$cond {
            return Err($crate::UsageError(format!($($message)+)).into());
        }
    };
}

/// Returns a [`UsageError`] (exit status 2).
macro_rules! bail_usage {
    ($($message:tt)+) => {
        return Err($crate::UsageError(format!($($message)+)).into())
    };
}

pub mod acme;
pub mod bench;
pub mod capture;
pub mod certs;
pub mod compare;
pub mod fdlimit;
pub mod healthcheck;
pub mod hub;
pub mod inspect;
pub mod logging;
pub mod merge;
pub mod notify;
pub mod probe;
pub mod progress;
pub mod proxy;
pub mod signals;
pub mod subscribe;
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

/// Options every subcommand takes. Under their own heading, so a subcommand's `--help` lists
/// its own options first.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
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
    /// Run the lab's apps: HTTP :3000, HTTPS :3001, WS :3002, WSS :3003, HTTP/2 :3005, each with a demo page.
    /// Prints each URL once it listens, then `ready`; Ctrl-C closes everything cleanly.
    Up(up::UpArgs),
    /// Run a TLS-terminating, WebSocket-aware reverse proxy in front of backends (plain :8080,
    /// TLS :8443), or print the same setup for HAProxy or nginx with --emit.
    Proxy(proxy::ProxyArgs),
    /// Run the notification hub (default :4000): publish over HTTP (`POST /api/publish`),
    /// subscribe over WebSocket (`/connection/ws`) or SSE (`/connection/sse`), with per-channel
    /// history so a returning subscriber gets exactly what it missed.
    Hub(hub::HubArgs),
    /// Publish a notification to the hub (`notify "disk full" --level error --channel ops`),
    /// retrying while it is unreachable, or with --follow FILE every new line of a log, kept in
    /// an on-disk spool until the hub accepts it.
    Notify(notify::NotifyArgs),
    /// Print a hub's notifications as they are published; reconnects and resumes from the last
    /// one printed.
    Subscribe(subscribe::SubscribeArgs),
    /// Load an http/https/ws/wss URL with echoes: throughput, latency percentiles, bytes on
    /// the wire per message and per handshake, connection phase timings.
    Bench(bench::BenchArgs),
    /// Add up `bench --json` reports of generators that loaded one target at the same time
    /// (e.g. a Kubernetes Job's pods): counts and throughputs add, percentiles come from their
    /// HDR histograms added together.
    Merge(merge::MergeArgs),
    /// Read a pcap/pcapng capture and print each connection's conversation: TCP handshake and
    /// RTT, TLS hellos, HTTP requests and responses, the upgrade, every WebSocket frame.
    Inspect(inspect::InspectArgs),
    /// Capture TCP traffic on ports of an interface (default lo) into a pcapng file with the
    /// TLS key log embedded, so Wireshark, tshark and `inspect` see inside HTTPS and WSS.
    /// Needs CAP_NET_RAW; Ctrl-C stops and writes the file.
    Capture(capture::CaptureArgs),
    /// What a client meets on the way to an http/https/ws/wss URL (any host): DNS, TCP
    /// connects, TLS facts and certificate diagnosis, the HTTP answer or the 101, a WebSocket
    /// echo and ping; `--idle-timeout-discovery` times an idle connection, `--raw` shows every
    /// byte. Exit status 0 ok, 1 reachable but failing, 2 unreachable.
    Probe(probe::ProbeArgs),
    /// Check that this container's apps answer (the image's HEALTHCHECK): one echo per URL
    /// in $PROTOLAB_HEALTHCHECK or the arguments; exit status 0 when every one came back.
    Healthcheck(healthcheck::HealthcheckArgs),
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

    /// The state directory's CA and certificates, with this user's name in any CA it creates.
    pub fn store(&self) -> protolab_tls::Store {
        protolab_tls::Store::open(&self.home).with_owner(owner())
    }
}

/// `user@host` for the CA subject, from the environment (the library never reads it itself).
fn owner() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "someone".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{user}@{host}")
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
    let home_given = cli.global.home.is_some();
    run_command(cli.command, &ctx)
        .await
        .map_err(|err| name_the_home(err, &ctx, home_given))
}

/// Says where the state directory comes from when it is the thing that failed (it cannot be
/// created or written), so the fix (`--home`, `PROTOLAB_HOME`) is in the message.
fn name_the_home(err: anyhow::Error, ctx: &Context, home_given: bool) -> anyhow::Error {
    let about_home = err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<protolab_tls::Error>(),
            Some(protolab_tls::Error::Io { path, .. })
                if path.starts_with(&ctx.home) || ctx.home.starts_with(path)
        )
    });
    if !about_home {
        return err;
    }
    let source = if home_given {
        "given by --home or PROTOLAB_HOME"
    } else {
        "the default, $XDG_DATA_HOME/protolab or ~/.local/share/protolab"
    };
    anyhow::anyhow!(
        "{}\nThe state directory {} is {source}: pass --home DIR or set PROTOLAB_HOME=DIR to a directory you can create and write.",
        error_text(&err),
        ctx.home.display()
    )
}

async fn run_command(command: Command, ctx: &Context) -> anyhow::Result<ExitCode> {
    match command {
        Command::Compare(args) => compare::run(args, ctx).await,
        Command::Certs(args) => certs::run(args, ctx).await,
        Command::Up(args) => up::run(args, ctx).await,
        Command::Bench(args) => bench::run(args, ctx).await,
        Command::Proxy(args) => proxy::run(args, ctx).await,
        Command::Hub(args) => hub::run(args, ctx).await,
        Command::Notify(args) => notify::run(args, ctx).await,
        Command::Subscribe(args) => subscribe::run(args, ctx).await,
        Command::Inspect(args) => inspect::run(args, ctx).await,
        Command::Capture(args) => capture::run(args, ctx).await,
        Command::Merge(args) => merge::run(args, ctx).await,
        Command::Healthcheck(args) => healthcheck::run(args, ctx).await,
        Command::Probe(args) => probe::run(args, ctx).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "protolab", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Exit status of a command line that cannot work as given, like clap's own usage errors.
pub const EXIT_USAGE: u8 = 2;

/// A command line that cannot work as given: a value out of range, flags that contradict each
/// other. Anywhere in an error's chain it makes the exit status [`EXIT_USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A [`UsageError`] as an `anyhow::Error`, for `ok_or_else` and `map_err`.
pub(crate) fn usage(message: String) -> anyhow::Error {
    UsageError(message).into()
}

/// A listener's port was taken: the message names the flag that picks another one.
/// `flag_for` gets the address that could not be bound and, for a lab app, its protocol.
pub(crate) fn name_the_port_flag(
    err: anyhow::Error,
    flag_for: impl Fn(std::net::SocketAddr, Option<protolab_server::Protocol>) -> Option<String>,
) -> anyhow::Error {
    use protolab_server::Error as ServerError;
    let taken = err
        .chain()
        .find_map(|cause| match cause.downcast_ref::<ServerError>() {
            Some(ServerError::PortInUse { protocol, ip, port }) => Some((
                std::net::SocketAddr::new(*ip, *port),
                Some(*protocol),
                format!("the {protocol} app"),
            )),
            Some(ServerError::ProxyPortInUse(addr)) => Some((*addr, None, "the proxy".to_owned())),
            _ => None,
        });
    let Some((addr, protocol, what)) = taken else {
        return err;
    };
    let Some(flag) = flag_for(addr, protocol) else {
        return err;
    };
    anyhow::anyhow!(
        "port {port} on {ip} is already in use ({what}): stop whatever holds it (`ss -ltnp 'sport = :{port}'` shows it) or pick another port with {flag}",
        port = addr.port(),
        ip = addr.ip(),
    )
}

/// The exit status for a failed command: [`EXIT_USAGE`] for a usage error, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> ExitCode {
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::FAILURE
    }
}

/// The error as one line, outermost context first, each cause once. Many error types print
/// their source inside their own message (`cannot create DIR: Permission denied`) and also
/// return it as their source, so the plain chain would say the OS error twice.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let here = cause.to_string();
        if here.is_empty() || text.contains(&here) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&here);
    }
    text
}

/// Whether `err` is a closed stdout (e.g. `protolab ... | head`), which is not a failure.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
