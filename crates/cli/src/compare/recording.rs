//! `compare --capture`: record the lab's ports during the runs, then write the pcapng with
//! whatever TLS secrets the lab's side gave, and decode it per protocol.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use protolab_capture::live::{CaptureConfig, LiveCapture, StopReason};

use super::model;
use super::site::Site;

/// Starts capturing `ports` on `interface`, spooling beside `path`.
pub(super) fn start(
    path: &Path,
    max_bytes: u64,
    interface: String,
    ports: Vec<u16>,
) -> anyhow::Result<LiveCapture> {
    let config = CaptureConfig {
        interface,
        ports,
        max_bytes,
        spool_dir: path.parent().map(Path::to_path_buf),
        ..Default::default()
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    LiveCapture::start(config).context("compare --capture")
}

/// Stops the capture, writes it to `path` with the lab's secrets, and sums its bytes by
/// layer; what a reader must know goes to `warnings`.
pub(super) fn finish(
    live: LiveCapture,
    path: &PathBuf,
    lab: &Site,
    warnings: &mut Vec<String>,
) -> anyhow::Result<model::CaptureSummary> {
    let secrets = lab.secrets(warnings);
    let stats = live
        .finish(secrets.as_ref().map(|(bytes, _)| bytes.as_slice()), path)
        .with_context(|| format!("writing the capture {}", path.display()))?;
    if stats.stop == Some(StopReason::SizeLimit) {
        warnings.push(format!(
            "the capture reached --capture-max after {} packets; later traffic is not in it",
            stats.kept
        ));
    }
    if stats.dropped_by_kernel > 0 {
        warnings.push(format!(
            "the capture missed {} packets the kernel dropped (use --rate to slow the load)",
            stats.dropped_by_kernel
        ));
    }
    let tls = lab.endpoints.iter().any(|e| e.protocol.is_tls());
    if let Some((_, from)) = &secrets {
        if tls && stats.secrets_sessions == 0 {
            warnings.push(format!(
                "{from} held no secret of the TLS connections in the capture, so HTTPS/WSS stay encrypted in it: is it the key log of the lab these runs went to?"
            ));
        }
    }
    warnings.push(
        "a capture was running: its CPU use is in the figures; compare runs with and without --capture before trusting small differences"
            .to_owned(),
    );
    let ports: Vec<(u16, String)> = lab
        .endpoints
        .iter()
        .map(|e| (e.port, e.protocol.name().to_owned()))
        .collect();
    let wire_cost = std::fs::read(path)
        .map(|bytes| model::wire_cost(&bytes, &ports))
        .unwrap_or_else(|err| {
            warnings.push(format!(
                "could not read the capture back to decode it: {err}"
            ));
            Vec::new()
        });
    Ok(model::CaptureSummary {
        file: path
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned()),
        secrets_from: secrets
            .filter(|_| stats.secrets_sessions > 0)
            .map(|(_, from)| from),
        stats,
        wire_cost,
    })
}
