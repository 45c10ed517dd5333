//! The HTML report's permessage-deflate table: each `-deflate` run beside its plain twin.

use std::fmt::Write as _;

use super::super::model::Results;
use super::super::table::{count, size_label};
use super::{esc, find};

/// Each `-deflate` run beside its uncompressed twin (`ws` for `ws-deflate`): bytes per
/// message on the wire both ways, the compressed payload and what was agreed.
pub(super) fn compression_table(r: &Results) -> String {
    let deflate_runs: Vec<_> = r
        .runs
        .iter()
        .filter(|run| run.protocol.ends_with("-deflate"))
        .collect();
    if deflate_runs.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3>permessage-deflate</h3><table><tr><th>protocol</th><th>workload</th><th>message</th><th>bytes/msg ↑ / ↓ without</th><th>bytes/msg ↑ / ↓ with</th><th>compressed payload ↑ / ↓</th><th>saved on the wire</th><th>agreed</th></tr>",
    );
    let pair = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{} / {}", count(a), count(b)),
        _ => "-".to_owned(),
    };
    for run in deflate_runs {
        let Some(rep) = &run.report else { continue };
        let plain = run.protocol.trim_end_matches("-deflate");
        let twin = find(r, plain, run.workload, run.size);
        let b = &rep.bytes;
        let total = |b: &protolab_load::Bytes| Some(b.sent_per_message? + b.received_per_message?);
        let saved = match (twin.and_then(|t| total(&t.bytes)), total(b)) {
            (Some(without), Some(with)) if without > 0.0 => {
                format!("{:.0}%", (1.0 - with / without) * 100.0)
            }
            _ => "-".to_owned(),
        };
        let agreed = rep
            .compression
            .as_ref()
            .and_then(|c| c.agreed.clone())
            .unwrap_or_else(|| "declined by the server".to_owned());
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&run.protocol),
            run.workload.as_str(),
            esc(&size_label(run.size)),
            rep.payload.as_str(),
            twin.map_or_else(|| "-".to_owned(), |t| pair(t.bytes.sent_per_message, t.bytes.received_per_message)),
            pair(b.sent_per_message, b.received_per_message),
            pair(b.frame_payload_sent_per_message, b.frame_payload_received_per_message),
            saved,
            esc(&agreed)
        );
    }
    out.push_str("</table>");
    out
}
