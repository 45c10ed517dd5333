//! `protolab bench URL`: load one http/https/ws/wss endpoint with echoes and print what
//! `protolab-load` measured, as a table or (`--json`) its results model.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use protolab_load::{Config, Payload, Report, Summary, Target, Trust, Workload};
use protolab_wire::ws::deflate::Offer;

use crate::units::{parse_duration, parse_size};
use crate::Context;

/// Arguments of `protolab bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to load: http://, https://, ws://, wss://, sse://, sses://, h2:// (HTTP/2 over
    /// TLS), h2c:// (HTTP/2 with prior knowledge), grpc:// (h2c) or grpcs:// (TLS) URL. HTTP
    /// posts each message to the URL's path (`/echo` when it has none), HTTP/2 on a stream of
    /// its own; gRPC calls the lab's unary Echo (protolab.lab.v1.Lab/Echo when the URL has no
    /// path); WebSocket sends binary messages and expects them back; SSE
    /// (`sse://HOST/events`: an HTTP event stream) reads pushed events, or for echo POSTs
    /// `/echo?stream=ID` and reads the echo event.
    pub url: String,
    /// `echo`: each connection stays open with one message in flight (closed loop).
    /// `connect`: a new connection per message, to time TCP, TLS and the upgrade.
    /// `push` (ws/wss/sse/sses/grpc/grpcs): server-to-client delivery delay of the lab's
    /// timestamped pushes. `fanin`: -c requests in flight on one HTTP/2 connection (N for
    /// HTTP/1.1). Default: `push` for sse:// and sses://, `echo` otherwise.
    #[arg(long, value_enum)]
    pub workload: Option<WorkloadArg>,
    /// Concurrent connections (workers for `connect`).
    #[arg(short = 'c', long, default_value_t = 1, value_name = "N")]
    pub connections: usize,
    /// Payload bytes per message, e.g. 32, 1KiB, 64KiB.
    #[arg(long, default_value = "32", value_parser = parse_size, value_name = "BYTES")]
    pub size: u64,
    /// How long to run, e.g. 10s, 500ms, 1m.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Duration,
    /// Open loop: send this many messages per second in total (echo workload), each on a
    /// fixed schedule; latency counts from when a message was due, so server stalls are not
    /// hidden (coordinated omission). Without it, each connection sends as fast as echoes
    /// return.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Stop after this many messages even if the duration has not passed.
    #[arg(short = 'n', long, value_name = "N")]
    pub max_messages: Option<u64>,
    /// Give up on one message (or one connection attempt) after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
    pub timeout: Duration,
    /// Trust this CA certificate (PEM) for https/wss/h2/grpcs instead of the protolab CA and the
    /// system roots.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub cacert: Option<PathBuf>,
    /// Accept any TLS certificate for any name. Only for throwaway lab certificates: anyone on
    /// the path could read and change the traffic.
    #[arg(long)]
    pub insecure: bool,
    /// Resume earlier TLS sessions (as browsers do) instead of a full handshake per
    /// connection.
    #[arg(long)]
    pub tls_resume: bool,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocol to offer (repeatable; ws/wss only).
    #[arg(long, value_name = "P")]
    pub subprotocol: Vec<String>,
    /// Push workload: ask the server for a push this often (`?push_ms=N`, which the lab's WS
    /// app understands).
    #[arg(long, default_value = "10ms", value_parser = parse_duration, value_name = "TIME")]
    pub push_interval: Duration,
    /// Offer permessage-deflate (RFC 7692) as browsers do (`permessage-deflate;
    /// client_max_window_bits`), compress what is sent and inflate what comes back when the
    /// server accepts (ws/wss only). Byte counts stay what crosses the wire. Sends JSON
    /// messages unless --payload says otherwise.
    #[arg(long)]
    pub ws_deflate: bool,
    /// What messages carry: `alphabet` (abc…, the same every time) or `json` (trade-like
    /// records, new values in every WebSocket message). Default: json with --ws-deflate,
    /// alphabet otherwise.
    #[arg(long, value_enum, value_name = "KIND")]
    pub payload: Option<PayloadArg>,
}

/// `--payload` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PayloadArg {
    /// `abc…xyz` repeated, the same every message.
    Alphabet,
    /// JSON records with new values in every WebSocket message.
    Json,
}

/// `--workload` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    /// Closed loop over long-lived connections.
    Echo,
    /// One new connection per message.
    Connect,
    /// Server pushes over long-lived WebSockets or a gRPC server stream.
    Push,
    /// -c N requests in flight at once: N streams on one connection for h2/h2c/grpc/grpcs,
    /// N connections for HTTP/1.1.
    Fanin,
}

/// Parses `-H 'Name: value'`, refusing CR and LF (they would smuggle headers).
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not a header like 'X-Name: value'"))?;
    let (name, value) = (name.trim(), value.trim());
    protolab_load::check_header(name, value).map_err(|e| e.to_string())?;
    Ok((name.to_owned(), value.to_owned()))
}

impl BenchArgs {
    /// Validates the arguments into a load config.
    pub fn config(&self, ctx: &Context) -> anyhow::Result<Config> {
        let target = Target::parse(&self.url).map_err(|err| crate::usage(err.to_string()))?;
        let workload =
            self.workload
                .unwrap_or(if target.scheme.is_sse() || target.scheme.is_poll() {
                    WorkloadArg::Push
                } else {
                    WorkloadArg::Echo
                });
        ensure_usage!(
            !self.ws_deflate || target.scheme.is_ws(),
            "--ws-deflate is for ws:// and wss:// URLs, not {}://",
            target.scheme
        );
        ensure_usage!(
            self.subprotocol.is_empty() || target.scheme.is_ws(),
            "--subprotocol is for ws:// and wss:// URLs, not {}://",
            target.scheme
        );
        ensure_usage!(
            self.connections >= 1,
            "--connections (-c) must be at least 1"
        );
        ensure_usage!(
            !self.duration.is_zero(),
            "--duration must be longer than zero"
        );
        ensure_usage!(
            self.max_messages != Some(0),
            "--max-messages (-n) must be at least 1"
        );
        if let Some(rate) = self.rate {
            ensure_usage!(
                rate.is_finite() && rate > 0.0,
                "--rate must be a positive number of messages per second"
            );
            ensure_usage!(
                workload == WorkloadArg::Echo,
                "--rate applies to --workload echo only"
            );
        }
        ensure_usage!(
            workload != WorkloadArg::Fanin
                || !(target.scheme.is_ws() || target.scheme.is_sse() || target.scheme.is_poll()),
            "--workload fanin needs an http(s)://, h2(c):// or grpc(s):// URL, not {}://",
            target.scheme
        );
        ensure_usage!(
            workload != WorkloadArg::Push
                || target.scheme.is_ws()
                || target.scheme.is_sse()
                || target.scheme.is_grpc()
                || target.scheme.is_poll(),
            "--workload push needs a ws://, wss://, sse://, sses://, grpc://, grpcs://, poll:// or long-poll:// URL, not {}://",
            target.scheme
        );
        ensure_usage!(
            workload == WorkloadArg::Push || !target.scheme.is_poll(),
            "{}:// URLs run --workload push only",
            target.scheme
        );
        let size = usize::try_from(self.size)
            .ok()
            .filter(|&size| size <= protolab_load::MAX_MESSAGE)
            .ok_or_else(|| {
                crate::usage(format!(
                    "--size {} is larger than the {}-byte maximum message",
                    self.size,
                    protolab_load::MAX_MESSAGE
                ))
            })?;
        let mut config = Config::new(target);
        config.workload = match workload {
            WorkloadArg::Echo => Workload::Echo,
            WorkloadArg::Connect => Workload::Connect,
            WorkloadArg::Push => Workload::Push,
            WorkloadArg::Fanin => Workload::Fanin,
        };
        config.push_interval = self.push_interval;
        config.connections = self.connections;
        config.size = size;
        config.duration = self.duration;
        config.max_messages = self.max_messages.unwrap_or(u64::MAX);
        config.rate = self.rate;
        config.request_timeout = self.timeout;
        config.connect_timeout = self.timeout;
        config.tls_resumption = self.tls_resume;
        config.headers.clone_from(&self.headers);
        config.subprotocols.clone_from(&self.subprotocol);
        config.deflate = self.ws_deflate.then(Offer::browser);
        config.payload = match (self.payload, self.ws_deflate) {
            (Some(PayloadArg::Json), _) | (None, true) => Payload::Json,
            (Some(PayloadArg::Alphabet), _) | (None, false) => Payload::Alphabet,
        };
        if config.target.scheme.is_tls() {
            config.trust = self.trust(ctx)?;
        }
        Ok(config)
    }

    fn trust(&self, ctx: &Context) -> anyhow::Result<Trust> {
        if self.insecure {
            return Ok(Trust::Insecure);
        }
        let roots = protolab_tls::Roots::new();
        if let Some(ca) = &self.cacert {
            return Ok(Trust::Roots(roots.with_ca_file(ca)?));
        }
        // The protolab CA if `certs init` made one, plus the system roots.
        let lab_ca = protolab_tls::Store::open(&ctx.home).ca_cert_path();
        let roots = if lab_ca.exists() {
            roots.with_ca_file(&lab_ca)?
        } else {
            roots
        };
        let roots = match roots.clone().with_system() {
            Ok(with_system) => with_system,
            Err(_) if !roots.is_empty() => roots,
            Err(err) => return Err(err).context("no CA to trust; pass --cacert FILE"),
        };
        Ok(Trust::Roots(roots))
    }
}

/// Runs the load and returns the report, without printing it. Dropping the future drops
/// every connection at once (the server sees FINs or resets).
pub async fn measure(args: &BenchArgs, ctx: &Context) -> anyhow::Result<Report> {
    let config = args.config(ctx)?;
    if args.insecure && config.target.scheme.is_tls() {
        eprintln!(
            "WARNING: --insecure: the server's certificate is NOT verified; anyone on the path can read and change this traffic"
        );
    }
    let target = config.target.to_string();
    protolab_load::run(config).await.map_err(|err| match err {
        // Settings the checks above let through are still the command line's fault.
        protolab_load::Error::InvalidConfig { .. } | protolab_load::Error::BadHeader { .. } => {
            crate::usage(err.to_string())
        }
        err => anyhow::Error::new(err).context(format!("loading {target}")),
    })
}

/// Runs `protolab bench` and prints the report. Fails (exit 1) if no message came back.
pub async fn run(args: BenchArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let report = if crate::progress::on_terminal() {
        let total = args.duration;
        let label = args.url.clone();
        let measured = crate::progress::tick_while(measure(&args, ctx), |elapsed| {
            crate::progress::draw(
                elapsed.as_secs_f64() / total.as_secs_f64().max(1e-9),
                &label,
                total.saturating_sub(elapsed),
            );
        })
        .await;
        crate::progress::clear();
        measured?
    } else {
        measure(&args, ctx).await?
    };
    let mut out = std::io::stdout().lock();
    if ctx.json {
        // Serialize first so a closed stdout surfaces as an io::Error (broken pipe is success).
        let json = serde_json::to_string_pretty(&report)?;
        writeln!(out, "{json}")?;
    } else {
        write!(out, "{}", render(&report))?;
    }
    out.flush()?;
    if report.errors.tls > 0 {
        if let Some(why) = explain_tls_failure(&args, ctx).await {
            eprint!("{why}");
        }
    }
    if report.messages == 0 {
        anyhow::bail!(
            "no message came back from {}: {}",
            report.target,
            report
                .errors
                .first
                .as_deref()
                .unwrap_or("the run ended before the first echo")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// After TLS failures: what `protolab certs check` finds at the same address with the same
/// trust, so the problem comes in words with its fix. `None` when it cannot be asked.
async fn explain_tls_failure(args: &BenchArgs, ctx: &Context) -> Option<String> {
    let config = args.config(ctx).ok()?;
    let target = &config.target;
    let addr = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut command = format!("protolab certs check {addr}");
    if let Some(ca) = &args.cacert {
        command.push_str(&format!(" --cacert {}", ca.display()));
    }
    // --insecure accepts every certificate: a failure is then about TLS itself, and the
    // check with nothing trusted still says what the server speaks.
    let roots = match config.trust {
        Trust::Roots(roots) => roots,
        Trust::Insecure => protolab_tls::Roots::new(),
    };
    let host = target.host.clone();
    let remote = addr.clone();
    let checked =
        tokio::task::spawn_blocking(move || protolab_tls::check_remote(&remote, &host, &roots))
            .await
            .ok()?;
    Some(match checked {
        // Not a certificate problem (no TLS, refused, an alert): the load generator's own
        // error already says it in words.
        Err(_) => return None,
        Ok(_) if args.insecure => format!(
            "TLS: the handshake failed although --insecure accepts any certificate (see the errors row); `{command}` shows what the server presents\n"
        ),
        Ok(d) if d.ok => format!(
            "TLS: `{command}` finds the certificate acceptable, so the handshake failed for another reason (see the errors row)\n"
        ),
        Ok(d) => {
            let titles: Vec<&str> = d.problems.iter().map(protolab_tls::Problem::title).collect();
            format!(
                "TLS: the server's certificate is refused: {}. `{command}` shows the whole chain.\n{}",
                titles.join("; "),
                crate::certs::wrap(&d.explanation, 96, "  ")
            )
        }
    })
}

/// The report as a text table.
pub fn render(r: &Report) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
    let workload = r.workload.as_str();
    row("target", r.target.clone());
    let rate = r
        .rate
        .map_or_else(String::new, |rate| format!(", open loop at {rate} msg/s"));
    row(
        "workload",
        format!(
            "{workload}, {} connection{}, {} B messages{rate}",
            r.connections,
            if r.connections == 1 { "" } else { "s" },
            r.message_size
        ),
    );
    row(
        "messages",
        format!(
            "{} in {:.2} s = {:.0} msg/s",
            r.messages, r.duration_secs, r.throughput_per_sec
        ),
    );
    let latency_label = match r.workload {
        Workload::Connect => "connect→echo (µs)",
        Workload::Push => "push delay (µs)",
        _ => "latency (µs)",
    };
    row(latency_label, percentiles(r.latency.as_ref()));
    let b = &r.bytes;
    row(
        "bytes/message",
        format!(
            "sent {}  received {}",
            opt(b.sent_per_message),
            opt(b.received_per_message)
        ),
    );
    if r.scheme.is_tls() {
        row(
            "above TLS/message",
            format!(
                "sent {}  received {}",
                opt(b.above_tls_sent_per_message),
                opt(b.above_tls_received_per_message)
            ),
        );
    }
    if let Some(c) = &r.compression {
        row(
            "permessage-deflate",
            match &c.agreed {
                Some(agreed) => format!(
                    "{agreed} ({} of {} connections)",
                    c.connections_accepted, r.connections_opened
                ),
                None if r.connections_opened == 0 => "no connection opened".to_owned(),
                None => "declined by the server".to_owned(),
            },
        );
        if b.frame_payload_sent_per_message.is_some() {
            row(
                "payload/message",
                format!(
                    "{} {} B, compressed: sent {}  received {}",
                    r.payload.as_str(),
                    r.message_size,
                    opt(b.frame_payload_sent_per_message),
                    opt(b.frame_payload_received_per_message)
                ),
            );
        }
    }
    row(
        "handshake bytes/conn",
        format!(
            "sent {}  received {}",
            opt(b.handshake_sent_per_connection),
            opt(b.handshake_received_per_connection)
        ),
    );
    let p = &r.phases;
    let mut phases = Vec::new();
    for (name, s) in [
        ("tcp", &p.tcp_connect),
        ("tls", &p.tls_handshake),
        ("upgrade", &p.ws_upgrade),
        ("first byte", &p.first_byte),
        ("first echo", &p.first_echo),
    ] {
        if let Some(s) = s {
            phases.push(format!("{name} {:.0}", s.p50_us));
        }
    }
    row(
        "phases p50 (µs)",
        if phases.is_empty() {
            "-".to_owned()
        } else {
            phases.join("  ")
        },
    );
    if let Some(rt) = r.round_trips_to_first_echo {
        row("round trips to 1st echo", format!("{rt:.1}"));
    }
    row("connections opened", r.connections_opened.to_string());
    if r.skipped_messages + r.pings_answered > 0 {
        row(
            "server messages",
            format!(
                "{} skipped (pushes), {} pings answered",
                r.skipped_messages, r.pings_answered
            ),
        );
    }
    if let Some(polls) = r.polls {
        row(
            "polls",
            format!(
                "{} requests, {} empty, {} per delivered event, {} events missed",
                polls.requests,
                polls.empty,
                polls
                    .per_event
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.2}")),
                polls.missed_events
            ),
        );
    }
    let e = &r.errors;
    let errors = if e.total() == 0 {
        "none".to_owned()
    } else {
        let kinds: Vec<String> = protolab_load::Errors::KINDS
            .iter()
            .filter(|&&k| e.count(k) > 0)
            .map(|&k| format!("{} {}", k.as_str(), e.count(k)))
            .collect();
        format!(
            "{} (first: {})",
            kinds.join(", "),
            e.first.as_deref().unwrap_or("-")
        )
    };
    row("errors", errors);
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

fn percentiles(s: Option<&Summary>) -> String {
    s.map_or_else(
        || "-".to_owned(),
        |s| {
            format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
                s.p50_us, s.p90_us, s.p99_us, s.p999_us, s.max_us
            )
        },
    )
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_refuse_line_breaks() {
        assert_eq!(
            parse_header("X-Test:  a b ").unwrap(),
            ("X-Test".to_owned(), "a b".to_owned())
        );
        assert!(parse_header("X-Test: a\r\nEvil: 1").is_err());
        assert!(parse_header("no colon").is_err());
    }
}
