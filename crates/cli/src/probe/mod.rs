//! `protolab probe URL`: what a client meets on the way to an http, https, ws or wss endpoint
//! (any host): DNS answers, TCP connects, the TLS handshake and certificate diagnosis, the
//! HTTP answer or the 101 upgrade, a WebSocket echo and ping, and optionally how long an idle
//! connection lives and who ends it, with every byte shown for `--raw`.
//!
//! Exit status: 0 everything answered as it should; 1 the server was reached but something is
//! wrong (certificate, an HTTP status of 400 or more, upgrade refused, not HTTP, garbage
//! after the 101); 2 unreachable (name does not resolve, port refused, connect timed out) —
//! and, as for every subcommand, a command line that cannot work.

mod conn;
mod exchange;
mod idle;
mod render;
mod report;
mod target;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use protolab_tls::{Error as TlsError, Roots};

use crate::Context;
use conn::{Conn, Stream};
use exchange::{RequestOptions, WsClient};
use report::{Outcome, Report};

/// Exit status when the server was reached but something is wrong.
pub const EXIT_FAILING: u8 = 1;
/// Exit status when nothing could be reached (the same number as a usage error).
pub const EXIT_UNREACHABLE: u8 = 2;

/// `protolab probe` arguments.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL: `http://…`, `https://…`, `ws://…` or `wss://…`, any host.
    #[arg(value_name = "URL")]
    pub url: String,
    /// Bound on every wait: DNS, each TCP connect, the TLS handshake, the response, the echo.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// Then leave the connection idle up to MAX and report how long it lived and how it ended
    /// (FIN, RST, TLS close_notify, a WebSocket close frame and its code).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "MAX")]
    pub idle_timeout_discovery: Option<Duration>,
    /// Print every byte exchanged, both directions (plaintext inside TLS), as text or hexdump.
    #[arg(long)]
    pub raw: bool,
    /// Trust the CA certificates in this PEM file instead of the protolab CA and the system
    /// roots (repeatable).
    #[arg(long, value_name = "FILE")]
    pub cacert: Vec<PathBuf>,
    /// Go on past a certificate the client rejects (it is still diagnosed, and the exit status
    /// does not count it).
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// The TLS name to send (SNI) and check the certificate against. Default: the URL's host.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// `Origin` header on the WebSocket upgrade (none by default, as non-browser clients do).
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// Offer this WebSocket subprotocol (repeatable).
    #[arg(long, value_name = "PROTOCOL")]
    pub subprotocol: Vec<String>,
    /// Skip the second TLS connection that checks TLS session resumption.
    #[arg(long)]
    pub no_resumption: bool,
}

/// Runs `protolab probe`.
pub async fn run(args: ProbeArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let target = target::parse(&args.url).map_err(crate::usage)?;
    ensure_usage!(
        !args.timeout.is_zero(),
        "--timeout must be more than 0 (e.g. --timeout 5s)"
    );
    if let Some(max) = args.idle_timeout_discovery {
        ensure_usage!(
            !max.is_zero(),
            "--idle-timeout-discovery needs a MAX above 0, e.g. --idle-timeout-discovery 2m"
        );
    }
    let tls_client = if target.scheme.is_tls() {
        let roots = roots(ctx, &args.cacert)?;
        let name = args.name.clone().unwrap_or_else(|| target.host.clone());
        Some(tls::Client::new(
            roots,
            &name,
            &[b"http/1.1"],
            args.insecure,
        )?)
    } else {
        None
    };
    let mut report = Report {
        url: args.url.clone(),
        ..Report::default()
    };
    probe(&args, &target, tls_client.as_ref(), &mut report).await;
    if ctx.json {
        let text = serde_json::to_string_pretty(&report).context("encoding JSON")?;
        print(&format!("{text}\n"))?;
    } else {
        print(&render::text(&report))?;
    }
    Ok(match report.outcome {
        Outcome::Ok => ExitCode::SUCCESS,
        Outcome::Failing => ExitCode::from(EXIT_FAILING),
        Outcome::Unreachable => ExitCode::from(EXIT_UNREACHABLE),
    })
}

fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("writing to stdout")
}

/// What the TLS client trusts: as `certs check`, the protolab CA and the system roots, or
/// only the --cacert files.
fn roots(ctx: &Context, cacert: &[PathBuf]) -> anyhow::Result<Roots> {
    let mut roots = Roots::new();
    if cacert.is_empty() {
        match ctx.store().ca() {
            Ok(ca) => roots = roots.with_ca(&ca),
            Err(TlsError::NotInitialized { .. }) => {}
            Err(err) => eprintln!("warning: not trusting the protolab CA: {err}"),
        }
        roots = match roots.clone().with_system() {
            Ok(with) => with,
            Err(err) => {
                eprintln!("warning: {err}");
                roots
            }
        };
    }
    for file in cacert {
        roots = roots
            .with_ca_file(file)
            .with_context(|| format!("reading --cacert {}", file.display()))?;
    }
    Ok(roots)
}

/// Every step in order, filling `report`; stops at the first that fails.
async fn probe(
    args: &ProbeArgs,
    target: &target::Target,
    tls_client: Option<&tls::Client>,
    report: &mut Report,
) {
    let fail = |report: &mut Report, outcome, error: String| {
        report.outcome = outcome;
        report.error = Some(error);
    };
    let addrs = match conn::resolve(&target.host, target.port, args.timeout).await {
        Ok((dns, addrs)) => {
            report.dns = Some(dns);
            addrs
        }
        Err(err) => return fail(report, Outcome::Unreachable, err),
    };
    let Some(tcp) = conn::connect(&addrs, args.timeout, &mut report.tcp).await else {
        let port = target.port;
        return fail(
            report,
            Outcome::Unreachable,
            format!("no address of {} accepted a connection on port {port} (each attempt is listed above)", target.host),
        );
    };
    let opened = Instant::now();
    let peer = tcp.peer_addr().ok();
    let stream = match tls_client {
        None => Stream::Plain(tcp),
        Some(client) => match client.handshake(tcp, args.timeout).await {
            Ok((stream, mut facts)) => {
                facts.insecure = args.insecure;
                let cert_bad = facts.certificate.as_ref().is_some_and(|c| !c.ok);
                report.tls = Some(facts);
                if cert_bad && !args.insecure {
                    report.outcome = Outcome::Failing;
                }
                Stream::Tls(Box::new(stream))
            }
            Err(failed) => {
                report.tls = Some(failed.facts);
                return fail(report, Outcome::Failing, failed.error);
            }
        },
    };
    let mut conn = Conn::new(stream, opened, args.timeout, args.raw);
    let options = RequestOptions {
        origin: args.origin.clone(),
        subprotocols: args.subprotocol.clone(),
    };
    let result = exchange::request(&mut conn, target, &options).await;
    let reusable = match result {
        Ok((facts, reusable)) => {
            let status = facts.status;
            report.http = Some(facts);
            if status >= 400 {
                fail(
                    report,
                    Outcome::Failing,
                    format!("the server answered with the error status {status}"),
                );
            }
            reusable
        }
        Err((facts, error)) => {
            report.http = facts;
            report.raw = conn.take_raw();
            return fail(report, Outcome::Failing, error);
        }
    };
    let mut websocket = None;
    if target.scheme.is_websocket() {
        let mut ws = WsClient::new();
        match ws.check(&mut conn).await {
            Ok(facts) => report.websocket = Some(facts),
            Err(error) => {
                report.raw = conn.take_raw();
                return fail(report, Outcome::Failing, error);
            }
        }
        websocket = Some(ws);
    }
    if let (Some(client), Some(peer), false) = (tls_client, peer, args.no_resumption) {
        let resumed = client.resumes(peer, args.timeout).await;
        if let Some(tls) = &mut report.tls {
            tls.resumed = resumed;
        }
    }
    if let Some(max) = args.idle_timeout_discovery {
        if reusable || websocket.is_some() {
            report.idle = Some(idle::discover(&mut conn, websocket.as_mut(), max).await);
            report.raw = conn.take_raw();
            conn.close().await;
            return;
        }
        eprintln!("note: the server ends the connection after this response (Connection: close or no length), so there is no idle connection to time");
    }
    if let Some(ws) = &mut websocket {
        ws.close(&mut conn).await;
    }
    report.raw = conn.take_raw();
    conn.close().await;
}
