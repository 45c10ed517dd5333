//! Ctrl-C and SIGTERM: the CLI owns signals and turns them into one shutdown future.

use std::future::Future;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

/// A future that completes on the first SIGINT or SIGTERM. Handlers are installed now, before
/// the lab starts, so a signal that arrives during start-up is not lost to the default action.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
