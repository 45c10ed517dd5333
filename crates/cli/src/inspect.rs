//! `protolab inspect FILE`: a capture file as conversations, TLS decrypted when the file
//! embeds its secrets or `--keylog` gives them; and `--inject-secrets` / `--strip-secrets`,
//! which add or remove those embedded secrets.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use protolab_capture::{
    close_meaning, inspect_with, Connection, Dir, Event, Filter, InspectOptions, KeyLog, Note,
    Report,
};

use crate::Context;

/// `protolab inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A pcap or pcapng file (protolab's, tcpdump's or Wireshark's).
    pub file: PathBuf,
    /// With --inject-secrets or --strip-secrets: the pcapng file to write.
    #[arg(value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Only connections with this port on either side; repeatable.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Only the Nth connection (1-based, as numbered in the output).
    #[arg(long, value_name = "N")]
    pub stream: Option<usize>,
    /// Decrypt TLS with this NSS key log (`protolab up --keylog`, SSLKEYLOGFILE), on top of
    /// the secrets the file embeds.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
    /// Write FILE to OUT (pcapng, mode 0600) with this key log embedded in a Decryption
    /// Secrets Block, as `editcap --inject-secrets tls,KEYLOG` does; prints nothing else.
    #[arg(long, value_name = "KEYLOG", requires = "out", conflicts_with_all = ["strip_secrets", "keylog", "ports", "stream"])]
    pub inject_secrets: Option<PathBuf>,
    /// Write FILE to OUT without its Decryption Secrets Blocks, e.g. to share a capture.
    #[arg(long, requires = "out", conflicts_with_all = ["keylog", "ports", "stream"])]
    pub strip_secrets: bool,
}

/// Runs `protolab inspect`.
pub async fn run(args: InspectArgs, ctx: &Context) -> anyhow::Result<ExitCode> {
    if args.inject_secrets.is_some() || args.strip_secrets {
        return rewrite(&args);
    }
    ensure_usage!(
        args.out.is_none(),
        "inspect takes one FILE; a second path (OUT) is only for --inject-secrets or --strip-secrets"
    );
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut keylog = KeyLog::new();
    if let Some(path) = &args.keylog {
        let text =
            std::fs::read(path).with_context(|| format!("reading --keylog {}", path.display()))?;
        let errors = keylog.add(&text);
        for e in &errors {
            eprintln!("warning: --keylog {}: {e}", path.display());
        }
        if keylog.is_empty() {
            eprintln!(
                "warning: --keylog {} holds no TLS secrets; TLS records stay encrypted",
                path.display()
            );
        }
    }
    let options = InspectOptions {
        filter: Filter { ports: args.ports },
        keylog,
    };
    let mut report = inspect_with(&bytes, &options);
    for e in &report.secrets_errors {
        eprintln!("warning: {e}");
    }
    if let Some(n) = args.stream {
        ensure_usage!(
            (1..=report.connections.len()).contains(&n),
            "--stream {n}: the file has {} connection(s) matching the filter",
            report.connections.len()
        );
        report.connections = vec![report.connections.swap_remove(n - 1)];
    }
    // Buffered: stdout is line-buffered, and a big capture's JSON has millions of lines.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if ctx.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        out.write_all(render(&report, args.stream).as_bytes())?;
    }
    out.flush()?;
    if let Some(err) = &report.file_error {
        eprintln!("note: {err}");
    }
    Ok(if report.file_error.is_some() && report.packets == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `--inject-secrets` and `--strip-secrets`: FILE to OUT.
fn rewrite(args: &InspectArgs) -> anyhow::Result<ExitCode> {
    let Some(out) = &args.out else {
        bail_usage!("--inject-secrets and --strip-secrets need an OUT file");
    };
    refuse_same_file(&args.file, out)?;
    let input =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let input_what = || format!("rewriting {}", args.file.display());
    if let Some(keylog_path) = &args.inject_secrets {
        refuse_same_file(keylog_path, out)?;
        let keylog = std::fs::read(keylog_path)
            .with_context(|| format!("reading --inject-secrets {}", keylog_path.display()))?;
        let bytes = protolab_capture::inject_secrets(&input, &keylog)
            .with_context(|| format!("--inject-secrets {}", keylog_path.display()))
            .with_context(input_what)?;
        write_private(out, &bytes)?;
        eprintln!(
            "wrote {} with the TLS secrets of {} embedded (mode 0600: anyone with it can decrypt the capture)",
            out.display(),
            keylog_path.display()
        );
    } else {
        let (bytes, removed) = protolab_capture::strip_secrets(&input).with_context(input_what)?;
        std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
        eprintln!(
            "wrote {} without secrets ({removed} Decryption Secrets Block(s) removed)",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to write over `input` (the same path, or another name for the same file).
fn refuse_same_file(input: &Path, out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let same = match (std::fs::metadata(input), std::fs::metadata(out)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => input == out,
    };
    ensure_usage!(
        !same,
        "refusing to overwrite the input {}: give a different OUT file",
        input.display()
    );
    Ok(())
}

/// Writes a file that holds secrets: created 0600, and an existing file is narrowed to 0600
/// before anything is written.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let what = || format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .with_context(what)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(what)?;
    file.set_len(0).with_context(what)?;
    file.write_all(bytes).with_context(what)?;
    Ok(())
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
    if only.is_none() && !report.by_protocol.is_empty() {
        let _ = writeln!(s, "\nby protocol (bytes on the wire, all connections):");
        let _ = writeln!(
            s,
            "  {:<6} {:>5} {:>8} {:>11} {:>11} {:>9} {:>10} {:>10} {:>10} {:>10}",
            "proto",
            "conns",
            "packets",
            "frames B",
            "L2-L4 B",
            "TLS B",
            "HTTP hd B",
            "HTTP bd B",
            "WS frm B",
            "WS pay B"
        );
        for p in &report.by_protocol {
            let l = &p.layers;
            let _ = writeln!(
                s,
                "  {:<6} {:>5} {:>8} {:>11} {:>11} {:>9} {:>10} {:>10} {:>10} {:>10}",
                p.protocol,
                p.connections,
                p.packets,
                p.frame_bytes,
                p.link_ip_tcp,
                l.tls + l.tls_encrypted,
                l.http_headers,
                l.http_body,
                l.ws_framing,
                l.ws_payload
            );
        }
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
            Note::Tls { reason, .. } => writeln!(s, "   note: {reason}"),
            Note::Deflate { dir, reason } => {
                writeln!(s, "   note: {} permessage-deflate: {reason}", arrow(*dir))
            }
        };
    }
    if let Some(d) = &c.decrypted {
        let _ = writeln!(
            s,
            "   decrypted: {} {} ({} + {} records)",
            d.version, d.cipher_suite, d.records[0], d.records[1]
        );
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
            Event::TlsDecrypted {
                version,
                cipher_suite,
            } => format!("TLS decrypted with key-log secrets: {version} {cipher_suite}"),
            Event::TlsRecord {
                dir,
                content_type,
                len,
                decrypted,
            } => {
                let kind = match content_type {
                    20 => "change_cipher_spec",
                    21 => "alert",
                    22 => "handshake",
                    23 => "application_data",
                    _ => "record",
                };
                let how = if *decrypted {
                    " (decrypted)"
                } else if *content_type == 23 {
                    " (encrypted)"
                } else {
                    ""
                };
                format!("{} TLS {kind}{how}, {len} B", arrow(*dir))
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
            Event::WsDeflate { params } => format!("WS permessage-deflate: {params}"),
            Event::WsFrame {
                dir,
                fin,
                opcode,
                mask,
                len,
                preview,
                close,
                compressed,
                inflated_len,
                ..
            } => {
                let mut l = format!("{} WS {opcode}", arrow(*dir));
                if !fin {
                    l.push_str(" (not FIN)");
                }
                if *compressed {
                    l.push_str(" (compressed)");
                }
                if let Some(m) = mask {
                    let _ = write!(l, " mask {:02x}{:02x}{:02x}{:02x}", m[0], m[1], m[2], m[3]);
                }
                let _ = write!(l, " {len} B");
                if let Some(inflated) = inflated_len {
                    let _ = write!(l, " → {inflated} B inflated");
                }
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
            Event::Http2Preface => "→ HTTP/2 connection preface".to_string(),
            Event::Http2Frame {
                dir,
                frame_type,
                stream_id,
                flag_names,
                len,
                headers,
                detail,
                ..
            } => {
                let mut l = format!("{} H2 {frame_type} stream {stream_id}", arrow(*dir));
                if !flag_names.is_empty() {
                    let _ = write!(l, " [{}]", flag_names.join(" "));
                }
                let _ = write!(l, " {len} B");
                if let Some(detail) = detail {
                    let _ = write!(l, "  {detail}");
                }
                for (name, value) in headers {
                    let _ = write!(l, "\n{:>17}{name}: {value}", "");
                }
                l
            }
            Event::GrpcCall { stream_id, path } => {
                format!("→ gRPC call {path} on stream {stream_id}")
            }
            Event::GrpcMessage {
                dir,
                stream_id,
                compressed,
                len,
            } => format!(
                "{} gRPC message on stream {stream_id}, {len} B{}",
                arrow(*dir),
                if *compressed { " (compressed)" } else { "" }
            ),
            Event::GrpcStatus {
                stream_id,
                status,
                message,
            } => {
                let mut l = format!("← gRPC status {status} on stream {stream_id}");
                if let Some(m) = message {
                    let _ = write!(l, "  {m:?}");
                }
                l
            }
            Event::SseEvent {
                id,
                event_type,
                data,
                data_len,
                retry_ms,
            } => {
                let mut l = "← SSE event".to_string();
                if let Some(id) = id {
                    let _ = write!(l, " id {id:?}");
                }
                if let Some(t) = event_type {
                    let _ = write!(l, " type {t:?}");
                }
                if let Some(ms) = retry_ms {
                    let _ = write!(l, " retry {ms} ms");
                }
                let _ = write!(l, " {data_len} B data");
                if !data.is_empty() {
                    let _ = write!(l, "  {data:?}");
                }
                l
            }
            Event::SseComment { text } => format!("← SSE comment {text:?}"),
            _ => format!("{:?}", t.event),
        };
        let _ = writeln!(s, "   {at}  {line}");
    }
    let l = &c.layers;
    let headers =
        (c.wire_bytes[0] + c.wire_bytes[1]).saturating_sub(c.payload_bytes[0] + c.payload_bytes[1]);
    let _ = writeln!(
        s,
        "   cost: link/IP/TCP headers {headers} B, TLS {} B{}, HTTP heads {} B, HTTP bodies {} B, WS framing {} B, WS payload {} B{}",
        l.tls,
        if l.tls_encrypted > 0 {
            format!(", still encrypted {} B", l.tls_encrypted)
        } else {
            String::new()
        },
        l.http_headers,
        l.http_body,
        l.ws_framing,
        l.ws_payload,
        if l.ws_inflated > 0 {
            format!(" (compressed frames inflate to {} B)", l.ws_inflated)
        } else {
            String::new()
        }
    );
    if l.http2_framing > 0 {
        let _ = writeln!(
            s,
            "   HTTP/2: framing {} B, HPACK headers {} B, DATA {} B",
            l.http2_framing, l.http2_headers, l.http2_data
        );
    }
    let retransmitted = c.retransmitted_bytes[0] + c.retransmitted_bytes[1];
    if retransmitted > 0 {
        let _ = writeln!(
            s,
            "   retransmitted: {retransmitted} B of TCP payload sent again (→ {} B, ← {} B), counted once above",
            c.retransmitted_bytes[0], c.retransmitted_bytes[1]
        );
    }
}
