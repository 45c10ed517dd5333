//! `protolab hub`: the notification hub on one port — publish API, WebSocket and SSE
//! subscribers — until Ctrl-C or SIGTERM.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use clap::Args;
use ipnet::IpNet;
use protolab_hub::app::{AppConfig, AppState, SharedState};
use protolab_hub::auth::{ApiKeys, JwtVerifier, OriginPolicy};
use protolab_hub::broker::{Broker, RedisBroker, RedisConfig};
use protolab_hub::socketio::{socketio, SocketIoConfig};
use protolab_hub::story::{notifs_routes, NotifsAllow};
use protolab_hub::{router, HistoryLimits, Hub, HubConfig, ServeOptions};

use crate::units::parse_duration;
use crate::Context;

const EXIT_USAGE: u8 = 2;

/// `protolab hub` arguments.
#[derive(Debug, Args)]
pub struct HubArgs {
    /// Address to listen on. Use 0.0.0.0 to reach the hub from other machines (then configure
    /// --api-key-file and --jwt-secret-file or --jwt-public-key).
    #[arg(long, default_value = "127.0.0.1", value_name = "IP")]
    pub listen: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 4000, value_name = "PORT")]
    pub port: u16,
    /// Serve HTTPS and WSS with the lab's certificates (the protolab CA, as `up` does).
    #[arg(long)]
    pub tls: bool,
    /// Publish API keys, one per line (16 characters or more); publishers send
    /// `Authorization: Bearer KEY`. Without it publishing is open to loopback only.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// HS256 secret (32 bytes or more) subscriber JWTs are signed with.
    #[arg(long, value_name = "FILE", conflicts_with = "jwt_public_key")]
    pub jwt_secret_file: Option<PathBuf>,
    /// RS256 or ES256 public key (PEM) subscriber JWTs are signed for.
    #[arg(long, value_name = "PEM")]
    pub jwt_public_key: Option<PathBuf>,
    /// Also accept subscriber connections from pages of this origin (e.g.
    /// `https://gui.example:8443`); repeatable; `*` allows every origin. The hub's own origin
    /// and clients that send no Origin (not browsers) are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Addresses `GET /notifs` takes messages from (CIDR, repeatable).
    #[arg(long = "notifs-allow", value_name = "CIDR", default_values = ["127.0.0.0/8", "::1/128"])]
    pub notifs_allow: Vec<String>,
    /// Notifications kept per channel for recovery.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub history_size: usize,
    /// Age after which a notification leaves history (e.g. 1h, 30m).
    #[arg(long, default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub history_ttl: Duration,
    /// Most channels at once.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub max_channels: usize,
    /// Notifications a subscriber may fall behind before it is disconnected (it recovers on
    /// reconnect).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub subscriber_queue: usize,
    /// Most connections at once (HTTP requests in progress, and subscribers). Default: what
    /// the open-file limit holds (the soft limit is raised to the hard one at start).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Where publishing, history and fan-out live: `memory` (this process alone) or
    /// `redis://HOST:PORT[/DB]` (`rediss://` for TLS, or `redis+unix:///PATH`), shared by every
    /// hub started with the same Redis and --redis-prefix.
    #[arg(
        long,
        default_value = "memory",
        value_name = "memory|redis://HOST:PORT[/DB]"
    )]
    pub broker: String,
    /// CA certificate(s), PEM, that a `rediss://` broker's certificate must chain to. Default:
    /// the protolab CA (`protolab certs`) when it exists, else the system's roots.
    #[arg(long, value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// Prefix of the hub's Redis keys and fan-out channel; hub deployments sharing one Redis
    /// give each a prefix of its own.
    #[arg(long, default_value = "protolab:hub:", value_name = "PREFIX")]
    pub redis_prefix: String,
    /// With a Redis broker: the key of socket.io's Redis adapter (npm
    /// `@socket.io/redis-adapter`) whose rooms the hub shares with socket.io servers on the
    /// same Redis, or `off`.
    #[arg(long, default_value = "socket.io", value_name = "KEY|off")]
    pub socketio_adapter: String,
    /// Time subscribers and requests get to finish on Ctrl-C before they are dropped.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub drain_timeout: Duration,
}

/// Everything `protolab hub` starts with, checked.
#[derive(Debug)]
pub struct HubSetup {
    /// Where to listen.
    pub addr: SocketAddr,
    /// HTTPS/WSS.
    pub tls: bool,
    /// The hub's channels and limits.
    pub hub: HubConfig,
    /// Auth and request limits.
    pub app: AppConfig,
    /// Who may call `GET /notifs`.
    pub notifs_allow: Vec<IpNet>,
    /// Shutdown grace.
    pub drain_timeout: Duration,
    /// `None`: the in-memory broker; else Redis.
    pub redis: Option<RedisConfig>,
}

/// Checks `args`; the error names the flag to fix.
pub fn setup(args: &HubArgs) -> anyhow::Result<HubSetup> {
    anyhow::ensure!(args.history_size > 0, "--history-size must be at least 1");
    anyhow::ensure!(
        !args.history_ttl.is_zero(),
        "--history-ttl must be greater than zero"
    );
    anyhow::ensure!(args.max_channels > 0, "--max-channels must be at least 1");
    anyhow::ensure!(
        !args.socketio_adapter.is_empty() && !args.socketio_adapter.contains('#'),
        "--socketio-adapter: give the adapter's key (its `key` option, default socket.io), without '#', or off"
    );
    anyhow::ensure!(
        args.subscriber_queue > 0,
        "--subscriber-queue must be at least 1"
    );
    anyhow::ensure!(
        args.max_connections != Some(0),
        "--max-connections must be at least 1"
    );
    let mut redis = match args.broker.as_str() {
        "memory" => None,
        url if url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("redis+unix://") =>
        {
            anyhow::ensure!(
                !args.redis_prefix.is_empty(),
                "--redis-prefix must not be empty"
            );
            let mut config = RedisConfig::new(url);
            config.prefix.clone_from(&args.redis_prefix);
            Some(config)
        }
        other => anyhow::bail!(
            "--broker {other}: give `memory` or a Redis URL like redis://127.0.0.1:6379/0 (rediss:// for TLS, or redis+unix:///PATH)"
        ),
    };
    if let Some(path) = &args.redis_ca {
        let Some(config) = redis.as_mut().filter(|c| c.url.starts_with("rediss://")) else {
            anyhow::bail!("--redis-ca is for a TLS broker: give --broker rediss://HOST:PORT");
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("--redis-ca: cannot read {}", path.display()))?;
        config.ca_pem = Some(pem);
    }
    let notifs_allow = args
        .notifs_allow
        .iter()
        .map(|cidr| {
            cidr.parse::<IpNet>()
                .or_else(|_| cidr.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--notifs-allow: `{cidr}` is not a CIDR like 10.0.0.0/8 or an address"
                    )
                })
        })
        .collect::<anyhow::Result<_>>()?;
    let api_keys = match &args.api_key_file {
        Some(path) => Some(
            read_secret(path, "--api-key-file")
                .and_then(|text| Ok(ApiKeys::parse(&String::from_utf8_lossy(&text))?))
                .with_context(|| format!("--api-key-file {}", path.display()))?,
        ),
        None => None,
    };
    let jwt = match (&args.jwt_secret_file, &args.jwt_public_key) {
        (Some(path), _) => {
            let secret = read_secret(path, "--jwt-secret-file")?;
            let trimmed = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
            Some(
                JwtVerifier::hs256(&trimmed)
                    .with_context(|| format!("--jwt-secret-file {}", path.display()))?,
            )
        }
        (None, Some(path)) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("--jwt-public-key: cannot read {}", path.display()))?;
            Some(
                JwtVerifier::from_public_key_pem(&pem)
                    .with_context(|| format!("--jwt-public-key {}", path.display()))?,
            )
        }
        (None, None) => None,
    };
    let mut app = AppConfig {
        api_keys,
        jwt,
        origins: OriginPolicy::new(&args.allow_origins),
        ..AppConfig::default()
    };
    app.limits.max_connections = crate::fdlimit::max_connections(args.max_connections, 1, 1);
    Ok(HubSetup {
        addr: SocketAddr::new(args.listen, args.port),
        tls: args.tls,
        hub: HubConfig {
            history: HistoryLimits {
                max_len: args.history_size,
                ttl: args.history_ttl,
            },
            max_channels: args.max_channels,
            subscriber_queue: args.subscriber_queue,
        },
        app,
        notifs_allow,
        drain_timeout: args.drain_timeout,
        redis,
    })
}

fn read_secret(path: &std::path::Path, flag: &str) -> anyhow::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        eprintln!(
            "warning: {} can be read by other users; `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("{flag}: cannot read {}", path.display()))
}

/// The hub's router with the other transports over the same hub: the story's `GET /notifs`
/// (for addresses in `notifs_allow`) and socket.io, whose layer goes on the whole router because
/// it answers by path before routing.
fn with_story_transports(
    app: Router,
    state: &SharedState,
    notifs_allow: &[IpNet],
    allow_origins: &[String],
    socketio_adapter: &str,
) -> Router {
    let app = app.merge(notifs_routes(
        Arc::clone(&state.broker),
        NotifsAllow::new(notifs_allow.to_vec()),
        state.config.publication_limits,
    ));
    let mut config = SocketIoConfig {
        origins: OriginPolicy::new(allow_origins),
        redis_adapter_key: (socketio_adapter != "off").then(|| socketio_adapter.to_owned()),
        ..SocketIoConfig::default()
    };
    if let Some(verifier) = &state.config.jwt {
        config = config.with_jwt(verifier.clone());
    }
    socketio(Arc::clone(&state.broker), config).mount(app)
}

/// Runs `protolab hub`.
pub async fn run(args: HubArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let setup = match setup(&args) {
        Ok(setup) => setup,
        Err(err) => {
            eprintln!("error: {err:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let shutdown = crate::signals::shutdown_signal()?;
    let tls = if setup.tls {
        Some(hub_tls(setup.addr.ip(), ctx)?)
    } else {
        None
    };
    if !setup.addr.ip().is_loopback() {
        if setup.app.jwt.is_none() {
            eprintln!("warning: listening on {} with no --jwt-secret-file or --jwt-public-key: anyone who reaches this address can subscribe to every channel", setup.addr.ip());
        }
        if setup.app.api_keys.is_none() {
            eprintln!("note: no --api-key-file: publishing is accepted from loopback only");
        }
    }
    let hub = Arc::new(Hub::new(setup.hub));
    let mut redis = setup.redis;
    if let Some(config) = redis.as_mut().filter(|c| c.url.starts_with("rediss://")) {
        if config.ca_pem.is_none() {
            config.ca_pem = lab_ca(ctx)?;
        }
    }
    let broker = match redis {
        None => Broker::Memory(Arc::clone(&hub)),
        // A hub that cannot reach its Redis at start would serve nothing it promises: stop
        // with the reason (the error names the URL and what to check).
        Some(config) => match RedisBroker::connect(config, Arc::clone(&hub)).await {
            Ok(redis) => Broker::Redis(redis),
            Err(err) => {
                eprintln!("error: --broker: {err}");
                return Ok(ExitCode::FAILURE);
            }
        },
    };
    let state = AppState::with_broker(Arc::new(broker), setup.app);
    let app = with_story_transports(
        router(Arc::clone(&state)),
        &state,
        &setup.notifs_allow,
        &args.allow_origins,
        &args.socketio_adapter,
    );
    let listener = protolab_server::bind_listener(setup.addr).with_context(|| {
        format!(
            "cannot listen on {}; pick another --port or --listen",
            setup.addr
        )
    })?;
    let options = ServeOptions {
        tls,
        drain_timeout: setup.drain_timeout,
        ..ServeOptions::default()
    };
    let server = protolab_hub::serve(listener, app, Arc::clone(&state), options)?;
    let sweeper = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.tick().await;
        loop {
            every.tick().await;
            let dropped = hub.sweep();
            if dropped > 0 {
                tracing::info!(
                    dropped,
                    "dropped channels with no history and no subscribers"
                );
            }
        }
    });
    print_ready(server.local_addr(), setup.tls, ctx)?;
    shutdown.await;
    eprintln!("shutting down: closing subscribers (WebSockets get 1001)…");
    sweeper.abort();
    let dropped = server.shutdown().await;
    if dropped > 0 {
        eprintln!("stopped; {dropped} connection(s) did not finish within the drain timeout and were dropped");
    } else {
        eprintln!("stopped");
    }
    Ok(ExitCode::SUCCESS)
}

/// The protolab CA's certificate, if there is one: what a `rediss://` broker is checked against
/// without --redis-ca (a Redis the lab's `certs issue` made a certificate for).
fn lab_ca(ctx: &Context) -> anyhow::Result<Option<Vec<u8>>> {
    let path = ctx.store().ca_cert_path();
    match std::fs::read(&path) {
        Ok(pem) => Ok(Some(pem)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading the protolab CA {}", path.display())),
    }
}

fn hub_tls(ip: IpAddr, ctx: &Context) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let store = ctx.store();
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    if !ip.is_loopback() && !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    let leaf = store
        .leaf_for(&names)
        .context("preparing the local CA and the hub's certificate")?;
    protolab_tls::server_config(&leaf, &[b"http/1.1"]).context("building the TLS configuration")
}

fn print_ready(addr: SocketAddr, tls: bool, ctx: &Context) -> anyhow::Result<()> {
    let host = if addr.ip().is_loopback() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let base = format!("{http}://{host}");
    let mut out = std::io::stdout().lock();
    if ctx.json {
        let line = serde_json::json!({ "event": "ready", "addr": addr, "url": base,
            "ws": format!("{ws}://{host}/connection/ws"), "sse": format!("{base}/connection/sse") });
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "hub    {base}")?;
        writeln!(
            out,
            "api    {base}/api/publish  (OpenAPI: {base}/api/openapi.json)"
        )?;
        writeln!(out, "ws     {ws}://{host}/connection/ws")?;
        writeln!(out, "sse    {base}/connection/sse?channel=NAME")?;
        writeln!(out, "ready")?;
    }
    out.flush()?;
    if tls {
        let ca = ctx.store().ca_cert_path();
        eprintln!(
            "the hub uses the protolab CA: curl --cacert {} …",
            ca.display()
        );
    }
    eprintln!("press Ctrl-C to stop");
    Ok(())
}
