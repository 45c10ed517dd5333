//! `protolab up`: run the lab's apps until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use protolab_server::{Lab, LabConfig, Limits, Protocol};

use crate::units::{parse_duration, parse_size};
use crate::Context;

/// `protolab up` arguments.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to listen on. Use 0.0.0.0 to reach the lab from other machines.
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub bind: IpAddr,
    /// Port of the HTTP app.
    #[arg(long, default_value_t = 3000, value_name = "PORT")]
    pub http_port: u16,
    /// Port of the HTTPS app.
    #[arg(long, default_value_t = 3001, value_name = "PORT")]
    pub https_port: u16,
    /// Port of the WebSocket app.
    #[arg(long, default_value_t = 3002, value_name = "PORT")]
    pub ws_port: u16,
    /// Port of the secure WebSocket app.
    #[arg(long, default_value_t = 3003, value_name = "PORT")]
    pub wss_port: u16,
    /// Port of the server-sent events app (also long-polling and polling).
    #[arg(long, default_value_t = 3004, value_name = "PORT")]
    pub sse_port: u16,
    /// Port of the HTTP/2 app (h2 over TLS and h2c with prior knowledge).
    #[arg(long, default_value_t = 3005, value_name = "PORT")]
    pub h2_port: u16,
    /// Port of the gRPC app (h2c and TLS on the same port).
    #[arg(long, default_value_t = 3006, value_name = "PORT")]
    pub grpc_port: u16,
    /// Serve only these protocols, comma-separated (http, https, ws, wss, sse, h2, grpc).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    pub only: Vec<String>,
    /// Interval between messages the WS apps push to every client, and between the SSE
    /// feed's events (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub push_interval: Duration,
    /// Also accept WebSocket upgrades from pages of this origin (e.g. `https://app.example:8443`);
    /// repeatable; `*` allows every origin. The lab's own pages are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Largest WebSocket message accepted (e.g. 16MiB); bigger ones are closed with 1009.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_message_size: u64,
    /// Largest gRPC message the gRPC app decodes or encodes (e.g. 4MiB); a bigger request
    /// ends its call with RESOURCE_EXHAUSTED.
    #[arg(long, default_value = "4MiB", value_parser = parse_size, value_name = "SIZE")]
    pub grpc_max_message_size: u64,
    /// Memory all WebSocket connections together may hold for messages in progress (e.g.
    /// 2GiB); a connection whose message would pass it is closed with 1013 (try again later)
    /// and a warning is logged. Default: a quarter of this machine's memory, or of the
    /// container's memory limit when that is lower.
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub max_buffered: Option<u64>,
    /// Time one WebSocket message may take from its first frame to its last; a message still
    /// incomplete then is closed with 1008.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub message_timeout: Duration,
    /// Decline permessage-deflate (RFC 7692) on the WS apps. By default it is agreed when a
    /// client offers it, as browsers do: compressed messages are echoed compressed, pushes
    /// are compressed, and each such connection holds about 320 KiB of compressor state.
    #[arg(long)]
    pub no_ws_deflate: bool,
    /// How the ws app runs WebSocket connections once upgraded: `adaptive`, a tokio task per
    /// connection until it has exchanged 32 messages or been open a second, then event loops
    /// of its own (one thread per CPU: one epoll set, one shared receive buffer, a deadline
    /// heap); `loop`, the event loops from the upgrade on; or `tasks`, a tokio task per
    /// connection throughout, as the wss app runs them. Moving costs a connection that only
    /// echoes once a third more CPU than it saves, hence `adaptive`.
    #[arg(long, default_value = "adaptive", value_parser = parse_ws_runtime, value_name = "adaptive|loop|tasks")]
    pub ws_runtime: protolab_server::WsRuntime,
    /// Largest HTTP request head accepted (e.g. 16KiB); bigger ones get 431.
    #[arg(long, default_value = "16KiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_header_size: u64,
    /// Largest HTTP request body accepted by POST /echo; bigger ones get 413.
    #[arg(long, default_value = "1MiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_body_size: u64,
    /// Time a new connection has to finish TLS and send its first request head.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub handshake_timeout: Duration,
    /// Silence after which a connection is closed; WebSockets are pinged at half of it.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,
    /// Connections open at once per app; more wait in the listen backlog. Default: what the
    /// open-file limit holds, shared by the apps (the soft limit is raised to the hard one at
    /// start).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Append the TLS secrets of every HTTPS and WSS connection to FILE (NSS key log format,
    /// as SSLKEYLOGFILE) so Wireshark or tshark can decrypt a capture. Off by default; the
    /// file is created 0600, and an existing file others can read is refused.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<std::path::PathBuf>,
    /// Time open connections get to finish on Ctrl-C before they are dropped.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,
    /// Also run `protolab proxy` in front of the WS app, as production does: ws through
    /// --proxy-port, wss terminated at the proxy on --proxy-tls-port.
    #[arg(long)]
    pub proxy: bool,
    /// Plain port of the proxy (with --proxy).
    #[arg(long, default_value_t = 8080, value_name = "PORT")]
    pub proxy_port: u16,
    /// TLS-terminating port of the proxy (with --proxy).
    #[arg(long, default_value_t = 8443, value_name = "PORT")]
    pub proxy_tls_port: u16,
    /// Serve the certificate `protolab certs acme` saved as NAME on the TLS apps and the
    /// proxy instead of the protolab CA's, renewed while running at two thirds of its lifetime
    /// (new connections get the renewed one; open ones are kept).
    #[arg(long, value_name = "NAME")]
    pub acme: Option<String>,
}

/// The validated form of [`UpArgs`] (TLS configuration is added from the state dir later).
#[derive(Debug)]
pub struct UpConfig {
    /// What the server crate starts.
    pub lab: LabConfig,
    /// Where TLS secrets go, if anywhere.
    pub keylog: Option<std::path::PathBuf>,
    /// Also keep TLS secrets in memory (`compare --capture` embeds them in its capture).
    pub keylog_buffer: Option<Arc<protolab_tls::keylog::KeyLogBuffer>>,
    /// The proxy's plain and TLS ports, if `--proxy` was given.
    pub proxy: Option<(u16, u16)>,
    /// The saved ACME certificate served (and renewed) instead of the local CA's.
    pub acme: Option<String>,
}

impl TryFrom<UpArgs> for UpConfig {
    type Error = anyhow::Error;

    fn try_from(args: UpArgs) -> anyhow::Result<Self> {
        let port_of = |p: Protocol| match p {
            Protocol::Http => args.http_port,
            Protocol::Https => args.https_port,
            Protocol::Ws => args.ws_port,
            Protocol::Wss => args.wss_port,
            Protocol::Sse => args.sse_port,
            Protocol::H2 => args.h2_port,
            Protocol::Grpc => args.grpc_port,
        };
        let mut protocols: Vec<Protocol> = if args.only.is_empty() {
            Protocol::ALL.to_vec()
        } else {
            args.only
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|name| {
                    Protocol::from_name(name).ok_or_else(|| {
                        crate::usage(format!(
                            "--only: unknown protocol `{name}`; choose from http, https, ws, wss, sse, h2, grpc"
                        ))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        protocols.sort();
        protocols.dedup();
        ensure_usage!(
            !protocols.is_empty(),
            "--only names no protocol; choose from http, https, ws, wss, sse, h2, grpc"
        );
        let apps: Vec<(Protocol, u16)> = protocols.iter().map(|&p| (p, port_of(p))).collect();
        for (i, (a, pa)) in apps.iter().enumerate() {
            if let Some((b, _)) = apps[i + 1..].iter().find(|(_, pb)| *pb == *pa && *pa != 0) {
                bail_usage!(
                    "{a} and {b} are both set to port {pa}; each protocol needs its own port"
                );
            }
        }
        ensure_usage!(
            !args.push_interval.is_zero(),
            "--push-interval must be greater than zero"
        );
        ensure_usage!(
            !args.idle_timeout.is_zero(),
            "--idle-timeout must be greater than zero"
        );
        ensure_usage!(
            args.max_connections != Some(0),
            "--max-connections must be at least 1"
        );
        let mut limits = Limits {
            max_message_bytes: usize::try_from(args.max_message_size).map_err(|_| {
                crate::usage("--max-message-size is too large for this machine".into())
            })?,
            max_buffered_bytes: usize::try_from(
                args.max_buffered.unwrap_or_else(default_max_buffered),
            )
            .map_err(|_| crate::usage("--max-buffered is too large for this machine".into()))?,
            message_timeout: args.message_timeout,
            max_header_bytes: usize::try_from(args.max_header_size).map_err(|_| {
                crate::usage("--max-header-size is too large for this machine".into())
            })?,
            max_body_bytes: args.max_body_size,
            grpc_max_message_bytes: usize::try_from(args.grpc_max_message_size).map_err(|_| {
                crate::usage("--grpc-max-message-size is too large for this machine".into())
            })?,
            handshake_timeout: args.handshake_timeout,
            idle_timeout: args.idle_timeout,
            drain_timeout: args.drain_timeout,
            ..Limits::default()
        };
        ensure_usage!(
            limits.max_buffered_bytes >= limits.max_message_bytes,
            "--max-buffered ({}) must be at least --max-message-size ({}), or no message of the largest size could ever be received",
            limits.max_buffered_bytes,
            limits.max_message_bytes
        );
        ensure_usage!(
            limits.grpc_max_message_bytes > 0,
            "--grpc-max-message-size must be at least 1 byte"
        );
        ensure_usage!(
            !args.message_timeout.is_zero(),
            "--message-timeout must be greater than zero"
        );
        ensure_usage!(
            limits.max_header_bytes >= 256,
            "--max-header-size must be at least 256 bytes"
        );
        ensure_usage!(
            !args.proxy || protocols.contains(&Protocol::Ws),
            "--proxy puts the proxy in front of the ws app; do not leave ws out with --only"
        );
        ensure_usage!(
            args.acme.is_none() || args.proxy || protocols.iter().any(|p| p.is_tls()),
            "--acme needs a TLS app (https, wss or h2) or --proxy"
        );
        // Last: it raises the open-file limit and says so, which a refused command line must not.
        limits.max_connections =
            crate::fdlimit::max_connections(args.max_connections, 1, apps.len());
        Ok(Self {
            lab: LabConfig {
                bind: args.bind,
                apps,
                push_interval: args.push_interval,
                event_interval: None,
                allowed_origins: args.allow_origins,
                limits,
                tls: None,
                ws_runtime: args.ws_runtime,
                ws_loop_threads: None,
                ws_deflate: (!args.no_ws_deflate)
                    .then(protolab_wire::ws::deflate::ServerConfig::default),
            },
            keylog: args.keylog,
            keylog_buffer: None,
            proxy: args.proxy.then_some((args.proxy_port, args.proxy_tls_port)),
            acme: args.acme,
        })
    }
}

fn parse_ws_runtime(s: &str) -> Result<protolab_server::WsRuntime, String> {
    match s {
        "adaptive" => Ok(protolab_server::WsRuntime::Adaptive),
        "loop" => Ok(protolab_server::WsRuntime::EventLoop),
        "tasks" => Ok(protolab_server::WsRuntime::Tasks),
        _ => Err(format!("`{s}`: expected `adaptive`, `loop` or `tasks`")),
    }
}

/// A quarter of the memory this process may use: the machine's, or its cgroup's limit when
/// that is lower (a container). 1 GiB when neither can be read.
fn default_max_buffered() -> u64 {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let machine = read("/proc/meminfo").and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    });
    // cgroup v2, then v1; "max" (v2) or a huge number (v1) mean no limit.
    let cgroup = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|s| s.trim().parse::<u64>().ok());
    let total = match (machine, cgroup) {
        (Some(m), Some(c)) => m.min(c),
        (m, c) => m.or(c).unwrap_or(4 << 30),
    };
    total / 4
}

/// Runs `protolab up`.
pub async fn run(args: UpArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = UpConfig::try_from(args)?;
    let proxy_ports = config.proxy;
    let acme = config.acme.clone();
    let shutdown = crate::signals::shutdown_signal()?;
    let (lab, proxy) = start(config, ctx).await.map_err(|err| {
        crate::name_the_port_flag(err, |addr, protocol| match (protocol, proxy_ports) {
            (Some(p), _) => Some(format!("--{}-port", p.name())),
            (None, Some((plain, _))) if addr.port() == plain => Some("--proxy-port".into()),
            (None, Some(_)) => Some("--proxy-tls-port".into()),
            (None, None) => None,
        })
    })?;
    print_ready(&lab, proxy.as_ref(), acme.as_deref(), ctx)?;
    shutdown.await;
    eprintln!("shutting down: closing connections (WebSockets get 1001)…");
    // Together: the apps' 1001 close frames travel out through the proxy's tunnels, which
    // then end on their own instead of waiting for the drain timeout.
    let report = match proxy {
        Some(proxy) => tokio::join!(lab.shutdown(), proxy.shutdown()).0,
        None => lab.shutdown().await,
    };
    if report.dropped > 0 {
        eprintln!(
            "stopped; {} connection(s) did not finish within the drain timeout and were dropped",
            report.dropped
        );
    } else {
        eprintln!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds TLS from the state dir when a TLS protocol is served (or the proxy runs), then starts
/// the lab and, with `--proxy`, the proxy in front of its WS app.
pub async fn start(
    mut config: UpConfig,
    ctx: &Context,
) -> anyhow::Result<(Lab, Option<protolab_server::proxy::Proxy>)> {
    let mut renewal = None;
    let tls = if config.lab.apps.iter().any(|(p, _)| p.accepts_tls()) || config.proxy.is_some() {
        let (tls, acme) = lab_tls(
            &config.lab,
            config.keylog.as_deref(),
            config.keylog_buffer.clone(),
            config.acme.as_deref(),
            ctx,
        )?;
        renewal = acme;
        Some(tls)
    } else {
        None
    };
    if config.lab.apps.iter().any(|(p, _)| p.accepts_tls()) {
        config.lab.tls.clone_from(&tls);
    }
    let bind = config.lab.bind;
    let lab = Lab::start(config.lab).await.context("starting the lab")?;
    if let Some((store, record, slot)) = renewal {
        // Runs until the process exits; the apps and the proxy share the slot.
        drop(crate::acme::renew::spawn(store, record, slot));
    }
    let Some((plain, secure)) = config.proxy else {
        return Ok((lab, None));
    };
    let ws = lab
        .endpoint(Protocol::Ws)
        .context("--proxy needs the ws app")?;
    let backend_ip = if ws.addr.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ws.addr.ip()
    };
    let proxy = protolab_server::proxy::Config {
        listen: vec![
            protolab_server::proxy::Listen {
                addr: std::net::SocketAddr::new(bind, plain),
                tls: false,
            },
            protolab_server::proxy::Listen {
                addr: std::net::SocketAddr::new(bind, secure),
                tls: true,
            },
        ],
        backends: vec![std::net::SocketAddr::new(backend_ip, ws.addr.port())],
        tls,
        ..protolab_server::proxy::Config::default()
    };
    match protolab_server::proxy::Proxy::start(proxy).await {
        Ok(proxy) => Ok((lab, Some(proxy))),
        Err(err) => {
            lab.shutdown().await;
            Err(anyhow::Error::new(err).context("starting the proxy"))
        }
    }
}

/// An ACME certificate being served, with what its renewal needs.
type AcmeServed = (
    protolab_tls::Store,
    crate::acme::Record,
    Arc<protolab_tls::CertSlot>,
);

fn lab_tls(
    lab: &LabConfig,
    keylog: Option<&std::path::Path>,
    keylog_buffer: Option<Arc<protolab_tls::keylog::KeyLogBuffer>>,
    acme: Option<&str>,
    ctx: &Context,
) -> anyhow::Result<(Arc<rustls::ServerConfig>, Option<AcmeServed>)> {
    let store = ctx.store();
    let mut options = protolab_tls::Options::alpn(&[b"http/1.1"]);
    if let Some(path) = keylog {
        let file = protolab_tls::keylog::KeyLogFile::create(path)
            .with_context(|| format!("--keylog {}", path.display()))?;
        options = options.with_key_log(Arc::new(file));
        eprintln!(
            "warning: writing the TLS secrets of every HTTPS/WSS connection to {}; anyone with that file can decrypt captured traffic",
            path.display()
        );
    }
    if let Some(buffer) = keylog_buffer {
        options = options.with_key_log(buffer);
    }
    if let Some(name) = acme {
        let (leaf, record) = crate::acme::renew::load(&store, name)?;
        let slot = protolab_tls::CertSlot::new(&leaf)
            .with_context(|| format!("--acme {name}: serving the certificate"))?;
        let tls = protolab_tls::server_config_slot(Arc::clone(&slot), &[], &options)
            .context("building the TLS configuration")?;
        return Ok((tls, Some((store, record, slot))));
    }
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if !lab.bind.is_loopback() && !lab.bind.is_unspecified() {
        names.push(lab.bind.to_string());
    }
    let leaf = store
        .leaf_for(&names)
        .context("preparing the local CA and the lab's certificate")?;
    tracing::info!(ca = %store.ca_cert_path().display(), "TLS apps use the protolab CA");
    let tls = protolab_tls::server_config_with(&leaf, &options)
        .context("building the TLS configuration")?;
    Ok((tls, None))
}

/// `ws://localhost:PORT/ws` or `wss://…` for a proxy listener.
fn proxy_url(listen: &protolab_server::proxy::Listen) -> String {
    let scheme = if listen.tls { "wss" } else { "ws" };
    if listen.addr.ip().is_loopback() {
        format!("{scheme}://localhost:{}/ws", listen.addr.port())
    } else {
        format!("{scheme}://{}/ws", listen.addr)
    }
}

fn print_ready(
    lab: &Lab,
    proxy: Option<&protolab_server::proxy::Proxy>,
    acme: Option<&str>,
    ctx: &Context,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let proxy_listeners = proxy.map_or(&[][..], |p| p.endpoints());
    if ctx.json {
        let line = serde_json::json!({ "event": "ready", "endpoints": lab.endpoints().iter().map(|e| {
            serde_json::json!({ "protocol": e.protocol, "addr": e.addr, "url": e.url(), "page": e.page_url() })
        }).collect::<Vec<_>>(), "proxy": proxy_listeners.iter().map(|l| {
            serde_json::json!({ "addr": l.addr, "tls": l.tls, "url": proxy_url(l) })
        }).collect::<Vec<_>>() });
        writeln!(out, "{line}")?;
    } else {
        for e in lab.endpoints() {
            match e.protocol {
                Protocol::Http | Protocol::Https => writeln!(out, "{:<6} {}", e.protocol, e.url())?,
                Protocol::H2 => writeln!(
                    out,
                    "{:<6} {}  (h2c too: curl --http2-prior-knowledge http://{}/)",
                    e.protocol,
                    e.url(),
                    e.url().trim_start_matches("https://").trim_end_matches('/')
                )?,
                Protocol::Ws | Protocol::Wss | Protocol::Sse => {
                    writeln!(
                        out,
                        "{:<6} {}  (demo page {})",
                        e.protocol,
                        e.url(),
                        e.page_url()
                    )?;
                }
                Protocol::Grpc => writeln!(
                    out,
                    "{:<6} {}  (h2c, or TLS; service protolab.lab.v1.Lab, reflection on)",
                    e.protocol,
                    e.url()
                )?,
            }
        }
        for l in proxy_listeners {
            let name = if l.tls { "proxy-wss" } else { "proxy-ws" };
            writeln!(out, "{name:<9} {}  (ws app behind the proxy)", proxy_url(l))?;
        }
        writeln!(out, "ready")?;
    }
    out.flush()?;
    if let Some(name) = acme {
        eprintln!("TLS apps use the ACME certificate {name}, renewed while running");
    } else if lab.endpoints().iter().any(|e| e.protocol.accepts_tls()) {
        let ca = ctx.store().ca_cert_path();
        eprintln!("TLS apps use the protolab CA: curl --cacert {} …  (`protolab certs trust` for browsers)", ca.display());
    }
    eprintln!("press Ctrl-C to stop");
    Ok(())
}
