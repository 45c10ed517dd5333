//! The tracing subscriber: the only place protolab installs one.

use tracing_subscriber::EnvFilter;

/// Logs to stderr. `RUST_LOG` wins; otherwise `-v` raises protolab's level from warn.
pub fn init(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info,protolab=info",
        2 => "info,protolab=debug,protolab_server=debug,protolab_tls=debug",
        _ => "debug,protolab=trace,protolab_server=trace,protolab_tls=trace,protolab_wire=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second init (tests calling `run` repeatedly) is harmless; ignore it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
