//! What the bench peers share: their command line and their runtime.
//!
//! A peer is our code over another crate's WebSocket implementation, written the fastest
//! reasonable way that crate documents, so the bench compares implementations and not harness
//! choices. Every peer binds 127.0.0.1, prints `listening` once bound, and serves until killed:
//! the echo peers echo every text and binary message on any path; `bench-peer-fanout-floor`
//! fans publications out (see its own documentation).

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};

use clap::Parser;

/// Command line of every bench peer.
#[derive(Debug, Parser)]
pub struct PeerArgs {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long)]
    pub port: u16,
}

impl PeerArgs {
    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

/// A tokio runtime sized by the cores this process may run on (`taskset -c 0` makes that 1).
///
/// With one core a current-thread runtime is the fastest choice: a multi-thread runtime would
/// put a second thread (the one blocking in `block_on`) on the same core and hand every
/// accepted connection across threads.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
    }
}

/// Prints the line the bench driver waits for.
pub fn announce_listening() {
    let mut out = std::io::stdout().lock();
    // The driver reads this line through a pipe; if the pipe is gone nobody is waiting for it.
    let _ = writeln!(out, "listening");
    let _ = out.flush();
}
