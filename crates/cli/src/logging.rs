//! The tracing subscriber: the only place protolab installs one.

use tracing_subscriber::EnvFilter;

/// Logs to stderr. `RUST_LOG` wins; otherwise `-v` raises protolab's level from warn (the
/// proxy's access log, target `protolab::proxy::access`, is at info and always on).
pub fn init(verbosity: u8) {
    let default = match verbosity {
        // The proxy's access log (one line per request or tunnel) is wanted without -v.
        0 => "warn,protolab::proxy::access=info",
        1 => "info,protolab=info",
        2 => "info,protolab=debug,protolab_server=debug,protolab_tls=debug",
        _ => "debug,protolab=trace,protolab_server=trace,protolab_tls=trace,protolab_wire=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests calling `run` repeatedly) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to a file or a test stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
