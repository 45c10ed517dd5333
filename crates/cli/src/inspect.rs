//! `protolab inspect FILE`: a capture file as conversations.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use protolab_capture::{close_meaning, inspect, Connection, Dir, Event, Filter, Note, Report};

use crate::Context;

/// `protolab inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A pcap or pcapng file (protolab's, tcpdump's or Wireshark's).
    pub file: PathBuf,
    /// Only connections with this port on either side; repeatable.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only the Nth connection (1-based, as numbered in the output).
    #[arg(long, value_name = "N")]
    pub stream: Option<usize>,
}

/// Runs `protolab inspect`.
pub async fn run(args: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut report = inspect(&bytes, &Filter { ports: args.ports });
    if let Some(n) = args.stream {
        anyhow::ensure!(
            (1..=report.connections.len()).contains(&n),
            "--stream {n}: the file has {} connection(s) matching the filter",
            report.connections.len()
        );
        report.connections = vec![report.connections.swap_remove(n - 1)];
    }
    let mut out = std::io::stdout().lock();
    if ctx.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&report, args.stream).as_bytes())?;
    }
    if let Some(err) = &report.file_error {
        eprintln!("note: {err}");
    }
    Ok(if report.file_error.is_some() && report.packets == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn arrow(dir: Dir) -> &'static str {
    match dir {
        Dir::ToServer => "→",
        Dir::ToClient => "←",
    }
}

/// The text timeline of every connection.
pub fn render(report: &Report, only: Option<usize>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} packet(s), {} connection(s){}{}",
        report.packets,
        report.connections.len(),
        if report.skipped > 0 {
            format!(", {} non-TCP packet(s) skipped", report.skipped)
        } else {
            String::new()
        },
        if report.has_secrets {
            ", TLS secrets embedded"
        } else {
            ""
        },
    );
    for (i, c) in report.connections.iter().enumerate() {
        let n = only.unwrap_or(i + 1);
        connection(&mut s, n, c);
    }
    s
}

fn connection(s: &mut String, n: usize, c: &Connection) {
    let _ = writeln!(
        s,
        "\n#{n} {} → {}  ({} packets, {} + {} bytes on the wire)",
        c.client,
        c.server,
        c.packets[0] + c.packets[1],
        c.wire_bytes[0],
        c.wire_bytes[1]
    );
    for note in &c.notes {
        let _ = match note {
            Note::MidStream => writeln!(
                s,
                "   note: the capture started after this connection's handshake"
            ),
            Note::Missing { dir, bytes } => {
                writeln!(
                    s,
                    "   note: {bytes} byte(s) {} were not captured; decoding resumed after them",
                    arrow(*dir)
                )
            }
        };
    }
    for t in &c.events {
        let at = format!("{:>10.3} ms", t.at_ns as f64 / 1e6);
        let line = match &t.event {
            Event::TcpSyn => "TCP SYN".to_string(),
            Event::TcpEstablished { rtt_us } => {
                format!("TCP established, handshake RTT {rtt_us} µs")
            }
            Event::TcpFin { dir } => format!("{} TCP FIN", arrow(*dir)),
            Event::TcpReset { dir } => format!("{} TCP RST", arrow(*dir)),
            Event::TlsClientHello {
                server_name,
                alpn,
                versions,
            } => format!(
                "→ TLS ClientHello  SNI {}  ALPN [{}]  versions [{}]",
                server_name.as_deref().unwrap_or("-"),
                alpn.join(", "),
                versions.join(", ")
            ),
            Event::TlsServerHello {
                version,
                cipher_suite,
            } => {
                format!("← TLS ServerHello  {version}  cipher suite {cipher_suite:#06x}")
            }
            Event::TlsRecord {
                dir,
                content_type,
                len,
            } => {
                let kind = match content_type {
                    20 => "change_cipher_spec",
                    21 => "alert",
                    22 => "handshake",
                    23 => "application_data (encrypted)",
                    _ => "record",
                };
                format!("{} TLS {kind}, {len} B", arrow(*dir))
            }
            Event::HttpRequest {
                method,
                target,
                head_bytes,
            } => format!("→ HTTP {method} {target}  ({head_bytes} B head)"),
            Event::HttpResponse {
                status,
                reason,
                head_bytes,
            } => format!("← HTTP {status} {reason}  ({head_bytes} B head)"),
            Event::WsFrame {
                dir,
                fin,
                opcode,
                mask,
                len,
                preview,
                close,
                ..
            } => {
                let mut l = format!("{} WS {opcode}", arrow(*dir));
                if !fin {
                    l.push_str(" (not FIN)");
                }
                if let Some(m) = mask {
                    let _ = write!(l, " mask {:02x}{:02x}{:02x}{:02x}", m[0], m[1], m[2], m[3]);
                }
                let _ = write!(l, " {len} B");
                match close {
                    Some((code, reason)) => {
                        let _ = write!(l, "  {code} {} {reason:?}", close_meaning(*code));
                    }
                    None if !preview.is_empty() => {
                        let _ = write!(l, "  {preview:?}");
                    }
                    None => {}
                }
                l
            }
            Event::Undecodable { dir, reason } => format!("{} undecodable: {reason}", arrow(*dir)),
            _ => format!("{:?}", t.event),
        };
        let _ = writeln!(s, "   {at}  {line}");
    }
    let l = &c.layers;
    let headers =
        (c.wire_bytes[0] + c.wire_bytes[1]).saturating_sub(c.payload_bytes[0] + c.payload_bytes[1]);
    let _ = writeln!(
        s,
        "   cost: link/IP/TCP headers {headers} B, TLS {} B, HTTP heads {} B, HTTP bodies {} B, WS framing {} B, WS payload {} B",
        l.tls, l.http_headers, l.http_body, l.ws_framing, l.ws_payload
    );
}
