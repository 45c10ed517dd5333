//! `protolab proxy`: the TLS-terminating, WebSocket-aware reverse proxy in front of backends,
//! or (`--emit`) the same setup as a configuration for the real HAProxy or nginx.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use protolab_server::proxy::{
    self, Balance, Config, Flavor, ForwardedFor, HealthCheck, Listen, Proxy, Runtime, Timeouts,
    TlsFiles,
};

use crate::units::{parse_duration, parse_size};
use crate::Context;

/// `protolab proxy` arguments.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on (repeatable). Plain HTTP unless --tls is given. Default: plain
    /// 127.0.0.1:8080 and TLS 127.0.0.1:8443 when no listener is named.
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Terminate TLS on the --listen addresses (certificate from the protolab CA, issued for
    /// localhost, 127.0.0.1 and ::1).
    #[arg(long)]
    pub tls: bool,
    /// A TLS-terminating listener besides the --listen ones (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen_tls: Vec<SocketAddr>,
    /// A backend, HOST:PORT speaking plain HTTP/1.1 (repeatable, at least one).
    #[arg(long = "backend", value_name = "HOST:PORT", required = true)]
    pub backends: Vec<String>,
    /// How to pick a backend for each new request or WebSocket.
    #[arg(long, value_enum, default_value_t = BalanceArg::Roundrobin)]
    pub balance: BalanceArg,
    /// Serve DNS name NAME with its own certificate from the protolab CA, picked by SNI
    /// (repeatable). Clients sending no SNI or another name get the localhost certificate.
    #[arg(long = "sni", value_name = "NAME")]
    pub sni: Vec<String>,
    /// Serve the certificate `protolab certs acme` saved as NAME (its first domain) instead of
    /// the protolab CA's, and renew it while running at two thirds of its lifetime, the way it
    /// was obtained; new connections get the renewed certificate, open ones are kept. With
    /// --emit the configuration names its files (renew those with `protolab certs renew`).
    #[arg(long, value_name = "NAME")]
    pub acme: Option<String>,
    /// Inactivity on the client side while a request is expected or arriving.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_client: Duration,
    /// Time for a whole request head to arrive (TLS handshake included); bounds slowloris.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_http_request: Duration,
    /// Time to establish a TCP connection to a backend.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_connect: Duration,
    /// Inactivity on the backend side while a response is awaited; then 504.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_server: Duration,
    /// Inactivity of an upgraded connection (WebSocket); replaces client and server timeouts.
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_tunnel: Duration,
    /// Inactivity allowed after the client half-closed a tunnel.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_client_fin: Duration,
    /// Time one write may wait for a client or backend that does not read, tunnels included
    /// (a WebSocket client that stops reading is cut off after it, not after the tunnel
    /// timeout). nginx's send_timeout / proxy_send_timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout_write: Duration,
    /// X-Forwarded-For and Forwarded fields a client sends: `append` keeps them and adds the
    /// address the proxy saw (for a proxy behind another trusted proxy); `replace` drops them
    /// and sends only that address (the safe choice when this proxy is the edge).
    #[arg(long, value_enum, default_value_t = ForwardedForArg::Append, value_name = "MODE")]
    pub forwarded_for: ForwardedForArg,
    /// Path of the health check (HTTP GET; 2xx/3xx is healthy).
    #[arg(long, default_value = "/healthz", value_name = "PATH")]
    pub health_path: String,
    /// Time between two health checks of one backend.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub health_interval: Duration,
    /// Consecutive good checks that bring a backend back.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub rise: u32,
    /// Consecutive failed checks that take a backend out.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub fall: u32,
    /// Do not health-check backends (every backend counts as up).
    #[arg(long)]
    pub no_health_check: bool,
    /// Send a PROXY protocol v2 header to backends first (they must expect it).
    #[arg(long)]
    pub send_proxy_v2: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Largest request or response head; bigger requests get 431.
    #[arg(long, default_value = "16KiB", value_parser = parse_size, value_name = "SIZE")]
    pub max_header_size: u64,
    /// Client connections open at once per listener; more wait in the listen backlog. Fewer
    /// when the open-file limit (`ulimit -n`, its soft limit raised to the hard one at start)
    /// cannot hold them with a backend connection each.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_connections: usize,
    /// Time open requests and tunnels get to finish on Ctrl-C.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,
    /// Append TLS secrets to FILE (NSS key log format) for Wireshark; off by default.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    /// No access log line per request and tunnel (they go to stderr by default).
    #[arg(long)]
    pub no_access_log: bool,
    /// Print the equivalent configuration for the real HAProxy or nginx and exit.
    #[arg(long, value_enum, value_name = "PROXY")]
    pub emit: Option<EmitArg>,
}

/// `--balance` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BalanceArg {
    /// Each backend in turn.
    #[value(alias = "round-robin")]
    Roundrobin,
    /// The backend with the fewest open connections (best for long-lived WebSockets).
    #[value(alias = "least-conn")]
    Leastconn,
    /// A hash of the client address: one client, one backend.
    #[value(alias = "source-hash")]
    Source,
}

/// `--forwarded-for` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardedForArg {
    /// Keep the client's entries and append the address the proxy saw.
    Append,
    /// Drop the client's entries; send only the address the proxy saw.
    Replace,
}

/// `--emit` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmitArg {
    /// HAProxy 2.x configuration (`haproxy -f FILE`).
    Haproxy,
    /// A whole nginx.conf (`nginx -c FILE`).
    Nginx,
}

/// The validated form of [`ProxyArgs`] (TLS is added from the state dir later).
#[derive(Debug)]
pub struct ProxyConfig {
    /// What the server crate starts.
    pub proxy: Config,
    /// DNS names served with their own certificate, by SNI.
    pub sni: Vec<String>,
    /// The saved ACME certificate served by default (and renewed), instead of the local CA's.
    pub acme: Option<String>,
    /// Where TLS secrets go, if anywhere.
    pub keylog: Option<PathBuf>,
    /// Print a configuration instead of running.
    pub emit: Option<Flavor>,
}

impl TryFrom<ProxyArgs> for ProxyConfig {
    type Error = anyhow::Error;

    fn try_from(args: ProxyArgs) -> anyhow::Result<Self> {
        let mut listen: Vec<Listen> = args
            .listen
            .iter()
            .map(|&addr| Listen {
                addr,
                tls: args.tls,
            })
            .chain(
                args.listen_tls
                    .iter()
                    .map(|&addr| Listen { addr, tls: true }),
            )
            .collect();
        if listen.is_empty() {
            listen = vec![
                Listen {
                    addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
                    tls: false,
                },
                Listen {
                    addr: SocketAddr::from(([127, 0, 0, 1], 8443)),
                    tls: true,
                },
            ];
        }
        ensure_usage!(
            args.acme.is_none() || listen.iter().any(|l| l.tls),
            "--acme needs a TLS listener: add --tls or --listen-tls ADDR"
        );
        for name in &args.sni {
            ensure_usage!(
                matches!(protolab_tls::Name::parse(name), Ok(protolab_tls::Name::Dns(_)))
                    && !name.starts_with("*."),
                "--sni {name}: not a DNS name without wildcard (clients send no SNI for IP addresses)"
            );
        }
        let backends = args
            .backends
            .iter()
            .map(|b| resolve(b))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for d in [
            ("--timeout-client", args.timeout_client),
            ("--timeout-http-request", args.timeout_http_request),
            ("--timeout-connect", args.timeout_connect),
            ("--timeout-server", args.timeout_server),
            ("--timeout-tunnel", args.timeout_tunnel),
            ("--timeout-client-fin", args.timeout_client_fin),
            ("--timeout-write", args.timeout_write),
            ("--health-interval", args.health_interval),
        ] {
            ensure_usage!(!d.1.is_zero(), "{} must be greater than zero", d.0);
        }
        ensure_usage!(
            args.rise > 0 && args.fall > 0,
            "--rise and --fall must be at least 1"
        );
        ensure_usage!(
            args.health_path.starts_with('/')
                && !args
                    .health_path
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control()),
            "--health-path must be a path like /healthz"
        );
        ensure_usage!(
            args.max_connections > 0,
            "--max-connections must be at least 1"
        );
        let max_header_bytes = usize::try_from(args.max_header_size)
            .ok()
            .filter(|&n| n >= 256)
            .ok_or_else(|| crate::usage("--max-header-size must be at least 256 bytes".into()))?;
        let balance = match args.balance {
            BalanceArg::Roundrobin => Balance::RoundRobin,
            BalanceArg::Leastconn => Balance::LeastConn,
            BalanceArg::Source => Balance::Source,
        };
        Ok(Self {
            proxy: Config {
                listen,
                backends,
                balance,
                timeouts: Timeouts {
                    client: args.timeout_client,
                    http_request: args.timeout_http_request,
                    connect: args.timeout_connect,
                    server: args.timeout_server,
                    tunnel: args.timeout_tunnel,
                    client_fin: args.timeout_client_fin,
                    write: args.timeout_write,
                },
                forwarded_for: match args.forwarded_for {
                    ForwardedForArg::Append => ForwardedFor::Append,
                    ForwardedForArg::Replace => ForwardedFor::Replace,
                },
                health: (!args.no_health_check).then(|| HealthCheck {
                    path: args.health_path.clone(),
                    interval: args.health_interval,
                    rise: args.rise,
                    fall: args.fall,
                }),
                proxy_protocol: args.send_proxy_v2,
                max_header_bytes,
                max_connections: args.max_connections,
                drain_timeout: args.drain_timeout,
                metrics: args.metrics,
                access_log: !args.no_access_log,
                ..Config::default()
            },
            sni: args.sni,
            acme: args.acme,
            keylog: args.keylog,
            emit: args.emit.map(|e| match e {
                EmitArg::Haproxy => Flavor::Haproxy,
                EmitArg::Nginx => Flavor::Nginx,
            }),
        })
    }
}

/// `HOST:PORT` to an address; names are resolved once, at start.
fn resolve(backend: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = backend.parse() {
        return Ok(addr);
    }
    let addrs = backend.to_socket_addrs().map_err(|err| {
        // The standard library says InvalidInput for a missing or bad port; anything else is
        // the resolver's answer about a well-formed name.
        if err.kind() == std::io::ErrorKind::InvalidInput {
            crate::usage(format!(
                "--backend {backend}: not HOST:PORT (e.g. 127.0.0.1:3002 or app.internal:80)"
            ))
        } else {
            anyhow::Error::new(err).context(format!("--backend {backend}: cannot be resolved"))
        }
    })?;
    addrs
        .into_iter()
        .next()
        .with_context(|| format!("--backend {backend}: resolves to no address"))
}

/// Runs `protolab proxy`.
pub async fn run(args: ProxyArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let config = ProxyConfig::try_from(args)?;
    if let Some(flavor) = config.emit {
        let text = emit(&config, flavor, ctx)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Each client takes two descriptors (its own, and one to a backend); the proxy admits as
    // many as the raised limit holds (`--max-connections` or fewer).
    crate::fdlimit::raise_and_say();
    let shutdown = crate::signals::shutdown_signal()?;
    let metrics = config.proxy.metrics;
    let listeners = config.proxy.listen.clone();
    let proxy = start(config, ctx).await.map_err(|err| {
        crate::name_the_port_flag(err, |addr, _| {
            if metrics == Some(addr) {
                return Some("--metrics ADDR".into());
            }
            let tls = listeners.iter().find(|l| l.addr == addr)?.tls;
            Some(
                if tls {
                    "--listen-tls ADDR"
                } else {
                    "--listen ADDR"
                }
                .into(),
            )
        })
    })?;
    print_ready(&proxy, ctx)?;
    shutdown.await;
    eprintln!("shutting down: finishing requests and tunnels…");
    proxy.shutdown().await;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Adds TLS from the state dir when a listener terminates TLS, then starts the proxy.
pub async fn start(mut config: ProxyConfig, ctx: &Context) -> anyhow::Result<Proxy> {
    if config.proxy.listen.iter().any(|l| l.tls) {
        let (default, by_name) = leaves(&config, ctx)?;
        let acme = match &config.acme {
            Some(name) => {
                let store = ctx.store();
                let (leaf, record) = crate::acme::renew::load(&store, name)?;
                let slot = protolab_tls::CertSlot::new(&leaf)
                    .with_context(|| format!("--acme {name}: serving the certificate"))?;
                Some((store, record, slot))
            }
            None => None,
        };
        let mut options = protolab_tls::Options::alpn(&[b"http/1.1"]);
        if let Some(path) = &config.keylog {
            let file = protolab_tls::keylog::KeyLogFile::create(path)
                .with_context(|| format!("--keylog {}", path.display()))?;
            options = options.with_key_log(Arc::new(file));
            eprintln!(
                "warning: writing the TLS secrets of every proxied connection to {}",
                path.display()
            );
        }
        let tls = match (&acme, &default) {
            (Some((_, _, slot)), _) => {
                protolab_tls::server_config_slot(Arc::clone(slot), &by_name, &options)
            }
            (None, Some(default)) if by_name.is_empty() => {
                protolab_tls::server_config_with(default, &options)
            }
            (None, Some(default)) => protolab_tls::server_config_sni(default, &by_name, &options),
            (None, None) => {
                anyhow::bail!("the proxy has no default certificate; this is a bug in protolab")
            }
        };
        config.proxy.tls = Some(tls.context("building the TLS configuration")?);
        let proxy = Proxy::start(config.proxy)
            .await
            .context("starting the proxy")?;
        if let Some((store, record, slot)) = acme {
            // Runs until the process exits: renewal is the proxy's for its whole life.
            drop(crate::acme::renew::spawn(store, record, slot));
        }
        return Ok(proxy);
    }
    Proxy::start(config.proxy)
        .await
        .context("starting the proxy")
}

/// The default certificate's names: loopback names plus any non-loopback listener address.
fn default_names(config: &ProxyConfig) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    for l in &config.proxy.listen {
        let ip = l.addr.ip();
        if !ip.is_loopback() && !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    names
}

/// The proxy's certificates from the state dir: the default one, and one per `--sni` name.
type Leaves = (
    Option<protolab_tls::Leaf>,
    Vec<(String, protolab_tls::Leaf)>,
);

/// The default leaf (none with `--acme`: the ACME certificate is the default) and one leaf per
/// `--sni` name, issued (or reused) from the state dir.
fn leaves(config: &ProxyConfig, ctx: &Context) -> anyhow::Result<Leaves> {
    let store = ctx.store();
    let default = match config.acme {
        Some(_) => None,
        None => Some(
            store
                .leaf_for(&default_names(config))
                .context("preparing the local CA and the proxy's certificate")?,
        ),
    };
    let by_name = config
        .sni
        .iter()
        .map(|name| {
            let leaf = store
                .leaf_for(std::slice::from_ref(name))
                .with_context(|| format!("preparing the certificate for --sni {name}"))?;
            Ok((name.clone(), leaf))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((default, by_name))
}

/// The configuration text; writes the combined certificate+key files HAProxy needs (0600) and
/// nginx's runtime directory into the home, and says on stderr which files it wrote there.
fn emit(config: &ProxyConfig, flavor: Flavor, ctx: &Context) -> anyhow::Result<String> {
    let store = ctx.store();
    let home = store.dir().to_path_buf();
    // Paths as the user finds them in the home.
    let shown = |path: &Path| {
        path.strip_prefix(&home)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let mut written: Vec<(String, &str)> = Vec::new();
    let mut tls = Vec::new();
    if config.proxy.listen.iter().any(|l| l.tls) {
        let ca_existed = store.ca_cert_path().exists();
        let saved_before = store.saved_leaf_paths().unwrap_or_default();
        let (default, by_name) = leaves(config, ctx)?;
        if !ca_existed && store.ca_cert_path().exists() {
            written.push((
                format!(
                    "{}, {}",
                    shown(&store.ca_cert_path()),
                    shown(&store.ca_key_path())
                ),
                "the local CA, new (key 0600)",
            ));
        }
        let default = match (&config.acme, default) {
            (Some(name), _) => crate::acme::renew::load(&store, name)?.0,
            (None, Some(default)) => default,
            (None, None) => {
                anyhow::bail!("the proxy has no default certificate; this is a bug in protolab")
            }
        };
        let named = by_name.into_iter().map(|(n, l)| (Some(n), l));
        for (server_name, leaf) in std::iter::once((None, default)).chain(named) {
            let (Some(cert), Some(key)) = (leaf.cert_path.clone(), leaf.key_path.clone()) else {
                anyhow::bail!("the proxy's certificate was not saved in the state dir");
            };
            if !saved_before.contains(&cert) && !cert.starts_with(store.acme_certs_dir()) {
                written.push((
                    format!("{}, {}", shown(&cert), shown(&key)),
                    "the proxy's certificate from that CA, new (key 0600)",
                ));
            }
            let combined = cert.with_file_name(format!(
                "{}-haproxy.pem",
                cert.file_stem().and_then(|s| s.to_str()).unwrap_or("proxy")
            ));
            write_private(
                &combined,
                format!("{}{}", leaf.chain_pem(), leaf.key_pem).as_bytes(),
            )?;
            written.push((
                shown(&combined),
                "certificate chain and key in one file (0600), as HAProxy's `crt` wants",
            ));
            tls.push(TlsFiles {
                cert,
                key,
                combined,
                server_name,
            });
        }
    }
    let dir = store.dir().join("proxy-run");
    if flavor == Flavor::Nginx {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        written.push((
            format!("{}/", shown(&dir)),
            "nginx's pid and temporary files (`nginx -p` this directory)",
        ));
    }
    if !written.is_empty() {
        let width = written.iter().map(|(p, _)| p.len()).max().unwrap_or(0);
        let mut note = format!(
            "wrote into {} (the protolab home) for this configuration:\n",
            home.display()
        );
        for (path, what) in &written {
            let _ = writeln!(note, "  {path:<width$}  {what}");
        }
        eprint!("{note}");
    }
    Ok(proxy::emit(flavor, &config.proxy, &tls, &Runtime { dir }))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

fn print_ready(proxy: &Proxy, ctx: &Context) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let url = |l: &Listen| {
        let host = if l.addr.ip().is_loopback() {
            format!("localhost:{}", l.addr.port())
        } else {
            l.addr.to_string()
        };
        format!("{}://{host}/", if l.tls { "https" } else { "http" })
    };
    if ctx.json {
        let line = serde_json::json!({
            "event": "ready",
            "listeners": proxy.endpoints().iter().map(|l| serde_json::json!({
                "addr": l.addr, "tls": l.tls, "url": url(l),
            })).collect::<Vec<_>>(),
            "backends": proxy.backends().iter().map(|b| b.addr).collect::<Vec<_>>(),
            "metrics": proxy.metrics_addr(),
            "client_capacity": proxy.client_capacity(),
        });
        writeln!(out, "{line}")?;
    } else {
        for l in proxy.endpoints() {
            let kind = if l.tls { "tls" } else { "plain" };
            writeln!(out, "{kind:<6} {}", url(l))?;
        }
        for b in proxy.backends() {
            writeln!(out, "backend {}", b.addr)?;
        }
        if let Some(m) = proxy.metrics_addr() {
            writeln!(out, "metrics http://{m}/metrics")?;
        }
        writeln!(out, "ready")?;
    }
    out.flush()?;
    eprintln!("press Ctrl-C to stop");
    Ok(())
}
