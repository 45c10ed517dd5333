//! Ctrl-C and SIGTERM: the CLI owns signals and turns them into shutdown futures.
//!
//! Handlers are installed explicitly rather than left to the default action, so a signal
//! means the same whoever sends it: a terminal's Ctrl-C (SIGINT to the whole foreground
//! process group), `kill -INT PID`, or a supervisor's SIGTERM. Installing one also undoes an
//! inherited "ignore" (a job started with `&` by a non-interactive shell has SIGINT ignored),
//! which would otherwise make Ctrl-C-by-signal do nothing at all.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGINT and SIGTERM, as many times as they come.
#[derive(Debug)]
pub struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    /// Installs the handlers now, before the work starts, so a signal that arrives during
    /// start-up is not lost to the default action.
    pub fn install() -> anyhow::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Completes on the next SIGINT or SIGTERM.
    pub async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// A future that completes on the first SIGINT or SIGTERM (handlers installed now).
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut interrupts = Interrupts::install()?;
    Ok(async move { interrupts.next().await })
}

/// Exit status of a command stopped by a signal: 128 + SIGINT, as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// SIGINT or SIGTERM as a flag for long work that can stop early and keep what it has: the
/// first signal sets the flag (and prints `on_first`), a second quits at once with
/// [`EXIT_INTERRUPTED`]. Dropping it stops watching.
#[derive(Debug)]
pub struct StopFlag {
    flag: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl StopFlag {
    /// Installs the handlers (see [`Interrupts::install`]) and starts watching.
    pub fn install(on_first: &'static str) -> anyhow::Result<Self> {
        let mut interrupts = Interrupts::install()?;
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        let watcher = tokio::spawn(async move {
            interrupts.next().await;
            set.store(true, Ordering::Relaxed);
            eprintln!("\n{on_first} (interrupt again to quit at once)");
            interrupts.next().await;
            eprintln!("interrupted again: quitting");
            std::process::exit(EXIT_INTERRUPTED.into());
        });
        Ok(Self { flag, watcher })
    }

    /// The flag, for the work to poll.
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
