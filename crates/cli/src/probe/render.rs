//! The text form of a [`Report`]: one aligned line per step, the certificate diagnosis in
//! plain words, the response headers, and with `--raw` the bytes as annotated text or hexdump.

use std::fmt::Write as _;

use super::report::{Outcome, RawChunk, Report};
use crate::certs::wrap;

/// The report as text.
pub(super) fn text(report: &Report) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    if let Some(dns) = &report.dns {
        let answer = dns
            .addresses
            .iter()
            .map(|a| match a.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(_)) => format!("{a} (AAAA)"),
                _ => format!("{a} (A)"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        rows.push((
            "dns",
            if dns.literal {
                format!("{answer} (an IP address: nothing to look up)")
            } else {
                format!(
                    "{} → {answer} ({:.1} ms, system resolver)",
                    dns.host, dns.ms
                )
            },
        ));
    }
    for attempt in &report.tcp {
        rows.push((
            "tcp",
            match &attempt.error {
                None => format!("{} connected in {:.1} ms", attempt.address, attempt.ms),
                Some(err) => format!(
                    "{} failed after {:.1} ms: {err}",
                    attempt.address, attempt.ms
                ),
            },
        ));
    }
    if let Some(tls) = &report.tls {
        if let (Some(version), Some(cipher)) = (&tls.version, &tls.cipher) {
            rows.push((
                "tls",
                format!(
                    "{version} {cipher}, ALPN {}, handshake {:.1} ms",
                    tls.alpn.as_deref().unwrap_or("none"),
                    tls.handshake_ms
                ),
            ));
        } else {
            rows.push((
                "tls",
                format!("handshake failed after {:.1} ms", tls.handshake_ms),
            ));
        }
        let resumed = match tls.resumed {
            Some(true) => "a second connection resumed the TLS session",
            Some(false) => "a second connection did not resume (full handshake)",
            None => "not tried",
        };
        rows.push((
            "",
            format!(
                "SNI {}; OCSP stapled: {}; resumption: {resumed}",
                if tls.server_name.parse::<std::net::IpAddr>().is_ok() {
                    "not sent (IP address)".to_owned()
                } else {
                    tls.server_name.clone()
                },
                if tls.ocsp_stapled { "yes" } else { "no" },
            ),
        ));
        if let Some(cert) = &tls.certificate {
            let verdict = if cert.ok {
                "OK".to_owned()
            } else {
                let titles: Vec<&str> = cert.problems.iter().map(|p| p.title()).collect();
                let anyway = if tls.insecure {
                    " (went on anyway: --insecure)"
                } else {
                    ""
                };
                format!("PROBLEM: {}{anyway}", titles.join("; "))
            };
            let leaf = cert
                .chain
                .first()
                .map(|c| {
                    format!(
                        " — leaf {} (names {}), until {}",
                        c.subject,
                        c.sans.join(", "),
                        c.not_after
                    )
                })
                .unwrap_or_default();
            rows.push(("certificate", format!("{verdict}{leaf}")));
        }
    }
    if let Some(http) = &report.http {
        let what = if http.status == 101 {
            "upgrade"
        } else {
            "http"
        };
        let mut line = format!(
            "{} {} {} in {:.1} ms",
            http.version, http.status, http.reason, http.response_ms
        );
        if http.status != 101 {
            let _ = write!(line, ", {} body bytes", http.body_bytes);
        } else {
            let _ = write!(
                line,
                "; subprotocol {}, extensions {}",
                http.subprotocol.as_deref().unwrap_or("none"),
                http.extensions.as_deref().unwrap_or("none")
            );
        }
        rows.push((what, line));
        for (name, value) in &http.headers {
            rows.push(("", format!("{name}: {value}")));
        }
    }
    if let Some(ws) = &report.websocket {
        let echo = match ws.echo_rtt_ms {
            Some(rtt) => format!("echo came back in {rtt:.2} ms"),
            None => "no echo (the server does not echo, or not within --timeout)".to_owned(),
        };
        let ping = match ws.ping_rtt_ms {
            Some(rtt) => format!("ping/pong {rtt:.2} ms"),
            None => "no pong within --timeout".to_owned(),
        };
        let others = if ws.other_messages > 0 {
            format!("; {} other messages from the server", ws.other_messages)
        } else {
            String::new()
        };
        rows.push(("websocket", format!("{echo}; {ping}{others}")));
    }
    if let Some(idle) = &report.idle {
        let line = if idle.still_open {
            format!("{} (idle {:.2} s)", idle.how, idle.survived_secs)
        } else {
            format!(
                "closed by the {} after {:.2} s idle: {}",
                idle.closed_by, idle.survived_secs, idle.how
            )
        };
        let traffic = if idle.server_traffic > 0 {
            format!(
                " ({} frames or bytes from the server meanwhile)",
                idle.server_traffic
            )
        } else {
            String::new()
        };
        rows.push(("idle", format!("{line}{traffic}")));
    }
    let outcome = match report.outcome {
        Outcome::Ok => "ok".to_owned(),
        Outcome::Failing => "FAILING (reachable, but see above)".to_owned(),
        Outcome::Unreachable => "UNREACHABLE".to_owned(),
    };
    rows.push(("result", outcome));
    let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut text = format!("probe {}\n", report.url);
    for (label, value) in &rows {
        let _ = writeln!(text, "  {label:<width$}  {value}");
    }
    if let Some(error) = &report.error {
        text.push('\n');
        text.push_str(&wrap(error, 96, "  "));
    }
    if let Some(cert) = report.tls.as_ref().and_then(|t| t.certificate.as_ref()) {
        if !cert.ok {
            text.push_str("\ncertificate, in plain words (as `protolab certs check` says it):\n");
            text.push_str(&wrap(&cert.explanation, 96, "  "));
        }
    }
    if let Some(raw) = &report.raw {
        text.push_str("\nraw bytes (plaintext inside TLS), → sent, ← received:\n");
        // Payload bytes of a frame that continues into the next chunk, per direction.
        let mut carry = [0usize; 2];
        for chunk in raw {
            raw_chunk(&mut text, chunk);
            if chunk.label.starts_with("WebSocket") {
                let side = usize::from(chunk.direction == "sent");
                carry[side] = annotate_frames(&mut text, &chunk.bytes, carry[side]);
            }
        }
    }
    text
}

/// One chunk: a header line, then the bytes as text when they are text, else a hexdump.
fn raw_chunk(out: &mut String, chunk: &RawChunk) {
    let arrow = if chunk.direction == "sent" {
        "→"
    } else {
        "←"
    };
    let _ = writeln!(
        out,
        "\n{arrow} {} bytes at {:.1} ms: {}",
        chunk.bytes.len(),
        chunk.at_ms,
        chunk.label
    );
    let is_text = chunk
        .bytes
        .iter()
        .all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
    if is_text && !chunk.bytes.is_empty() {
        let text = String::from_utf8_lossy(&chunk.bytes);
        for line in text.split_inclusive('\n') {
            let shown = line.replace('\r', "\\r").replace('\n', "\\n");
            let _ = writeln!(out, "  {arrow} {shown}");
        }
        return;
    }
    for (row, bytes) in chunk.bytes.chunks(16).enumerate() {
        let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = bytes
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "  {arrow} {:04x}  {:<47}  |{ascii}|",
            row * 16,
            hex.join(" ")
        );
    }
}

/// One `frame:` line per WebSocket frame header in `bytes`, after skipping `carry` payload
/// bytes of a frame begun in an earlier chunk: what a reader decodes by hand (RFC 6455 §5.2).
/// Returns the payload bytes still to come in the next chunk.
fn annotate_frames(out: &mut String, bytes: &[u8], carry: usize) -> usize {
    use protolab_wire::ws::{apply_mask, decode_header, OpCode};
    let mut pos = carry.min(bytes.len());
    let mut left = carry - pos;
    while pos < bytes.len() {
        let Ok(Some((header, header_len))) = decode_header(&bytes[pos..]) else {
            let _ = writeln!(out, "    (the rest is not a whole WebSocket frame header)");
            return 0;
        };
        let len = usize::try_from(header.payload_len).unwrap_or(usize::MAX);
        let start = pos + header_len;
        let end = start.saturating_add(len).min(bytes.len());
        let mut payload = bytes[start..end].to_vec();
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        let kind = match header.opcode {
            OpCode::Continuation => "continuation",
            OpCode::Text => "text",
            OpCode::Binary => "binary",
            OpCode::Close => "close",
            OpCode::Ping => "ping",
            OpCode::Pong => "pong",
        };
        let masked = header.mask.map_or_else(
            || "unmasked".to_owned(),
            |k| {
                format!(
                    "masked with {:02x}{:02x}{:02x}{:02x}",
                    k[0], k[1], k[2], k[3]
                )
            },
        );
        let shown = if header.opcode == OpCode::Close && payload.len() >= 2 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            format!("code {code} {:?}", String::from_utf8_lossy(&payload[2..]))
        } else {
            format!(
                "{:?}",
                String::from_utf8_lossy(&payload[..payload.len().min(64)])
            )
        };
        let _ = writeln!(
            out,
            "    frame: {}{kind}, {masked}, {len}-byte payload: {shown}{}",
            if header.fin { "FIN " } else { "" },
            if end - start < len {
                " (continues in the next chunk)"
            } else {
                ""
            }
        );
        left = len - (end - start);
        pos = end;
    }
    left
}
