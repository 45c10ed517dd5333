//! Renewal inside a running server: sleep until the certificate is due (two thirds of its
//! lifetime), run the order again, and put the new certificate in the [`CertSlot`] the TLS
//! configuration reads on every handshake. Connections already open keep the certificate
//! they were made with; nothing is restarted.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use protolab_tls::{CertSlot, Store};

use super::{leaf_due, obtain, Record};

/// Fewest seconds between two attempts after a failed renewal.
const MIN_RETRY: Duration = Duration::from_secs(5);
/// Most time between two attempts after a failed renewal.
const MAX_RETRY: Duration = Duration::from_secs(3600);
/// Bound on one renewal attempt.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(120);

/// Loads the saved ACME certificate `name` and its renewal record; says what to run when there
/// is none.
pub fn load(store: &Store, name: &str) -> anyhow::Result<(protolab_tls::Leaf, Record)> {
    let json = store
        .read_acme_record(name)
        .with_context(|| format!("--acme {name}"))?;
    let record: Record = serde_json::from_str(&json)
        .with_context(|| format!("reading {}", store.acme_record_path(name).display()))?;
    let leaf = store
        .load_acme_leaf(name)
        .with_context(|| format!("--acme {name}: loading the certificate"))?;
    Ok((leaf, record))
}

/// Keeps `slot` renewed for as long as the returned task runs (abort it to stop).
pub fn spawn(store: Store, record: Record, slot: Arc<CertSlot>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let name = record.name();
        loop {
            let current = slot.current();
            let Some(leaf_der) = current.cert.first() else {
                return;
            };
            let due = match leaf_due(leaf_der) {
                Ok(due) => due,
                Err(err) => {
                    eprintln!("warning: --acme {name}: {err:#}; not renewing it");
                    return;
                }
            };
            let wait = due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(wait).await;
            match obtain(&store, &record, ATTEMPT_LIMIT).await {
                Ok(leaf) => match slot.replace(&leaf) {
                    Ok(()) => {
                        let info = protolab_tls::inspect::cert_info(leaf.cert_der()).ok();
                        eprintln!(
                            "renewed the ACME certificate {name}: serial {}, valid until {}; new connections get it",
                            info.as_ref().map_or("?", |i| i.serial.as_str()),
                            info.as_ref().map_or("?", |i| i.not_after.as_str()),
                        );
                    }
                    Err(err) => eprintln!(
                        "warning: the renewed certificate {name} cannot be served ({err}); keeping the old one"
                    ),
                },
                Err(err) => {
                    let (_, not_after) = protolab_tls::inspect::validity(leaf_der)
                        .unwrap_or((SystemTime::now(), SystemTime::now()));
                    let left = not_after
                        .duration_since(SystemTime::now())
                        .unwrap_or(Duration::ZERO);
                    let retry = (left / 10).clamp(MIN_RETRY, MAX_RETRY);
                    eprintln!(
                        "warning: renewing the ACME certificate {name} failed: {err:#}; trying again in {}",
                        humantime::format_duration(retry)
                    );
                    tokio::time::sleep(retry).await;
                }
            }
        }
    })
}
