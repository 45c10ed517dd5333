//! The crate's error type. Every variant says what went wrong *and* what to do about it, because
//! these messages end up in front of a developer at a terminal.

use std::path::PathBuf;

/// Result with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `protolab-tls`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state directory has no CA yet.
    #[error("there is no protolab CA in {dir} yet: run `protolab certs init` to create one")]
    NotInitialized {
        /// The state directory that was searched.
        dir: PathBuf,
    },

    /// The state directory exists but something in it is broken or unsafe.
    #[error("{path}: {problem}. To fix: {fix}")]
    Damaged {
        /// The file (or directory) that is broken.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// The exact steps that repair it.
        fix: String,
    },

    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we were doing, e.g. "write".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// No names were passed to issue a certificate for.
    #[error(
        "no names given: pass at least one DNS name or IP address, e.g. `localhost 127.0.0.1 ::1`"
    )]
    NoNames,

    /// A name to put in a certificate is neither a DNS name nor an IP address.
    #[error("`{name}` cannot go in a certificate: {reason}. Use a DNS name (`localhost`, `app.example.test`, `*.example.test`) or an IP address (`127.0.0.1`, `::1`)")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A server name to check against is not valid.
    #[error("`{name}` is not a valid server name to check against: pass a DNS name or an IP address with --name")]
    InvalidServerName {
        /// The name as given.
        name: String,
    },

    /// A PEM file could not be used.
    #[error("{path}: {problem}")]
    BadPem {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the fix.
        problem: String,
    },

    /// rcgen could not build a certificate. With the parameters this crate uses this should not
    /// happen.
    #[error("cannot generate a certificate ({0}); this is a bug in protolab, please report it")]
    Generate(#[from] rcgen::Error),

    /// rustls rejected a configuration (e.g. a key that does not match the certificate).
    #[error("rustls rejected the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),

    /// No trusted roots were available at all.
    #[error("no trusted roots: {detail}")]
    NoRoots {
        /// What was tried.
        detail: String,
    },

    /// A `HOST:PORT` could not be resolved.
    #[error("cannot resolve `{addr}`: {detail}. Pass HOST:PORT, e.g. `localhost:3001` or `127.0.0.1:3001`")]
    Resolve {
        /// The address as given.
        addr: String,
        /// The resolver's complaint.
        detail: String,
    },

    /// Nobody listens on the port.
    #[error("nothing listens on {addr} (connection refused): start the server or check the port")]
    ConnectionRefused {
        /// The address dialled.
        addr: String,
    },

    /// The TCP connection did not complete.
    #[error("connecting to {addr} timed out after {secs} s: is the host up and the port open in the firewall?")]
    ConnectTimeout {
        /// The address dialled.
        addr: String,
        /// The timeout.
        secs: u64,
    },

    /// The server accepted TCP but did not answer the ClientHello.
    #[error("the server at {addr} did not answer a TLS ClientHello within {secs} s: is it plain HTTP, or TLS on another port?")]
    HandshakeTimeout {
        /// The address dialled.
        addr: String,
        /// The timeout.
        secs: u64,
    },

    /// The server answered, but not with TLS.
    #[error("the server at {addr} does not speak TLS ({detail}): is it plain HTTP? Try http:// or the TLS port")]
    NotTls {
        /// The address dialled.
        addr: String,
        /// What rustls saw.
        detail: String,
    },

    /// The handshake failed before the server showed its certificate.
    #[error("the TLS handshake with {addr} failed before the server sent a certificate: {detail}")]
    Handshake {
        /// The address dialled.
        addr: String,
        /// What happened.
        detail: String,
    },

    /// Some other network error.
    #[error("talking to {addr} failed: {source}")]
    Network {
        /// The address dialled.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An external tool (certutil, update-ca-certificates) is not installed.
    #[error(
        "`{tool}` is not installed: install it with `apt-get install {package}` (Debian/Ubuntu)"
    )]
    ToolMissing {
        /// The program name.
        tool: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },

    /// An external tool ran and failed.
    #[error("`{command}` failed ({status}): {output}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr/stdout.
        output: String,
    },

    /// Writing to the system trust store needs root.
    #[error("cannot write {path}: permission denied. Run it as root, e.g. `sudo protolab certs trust --install system`")]
    NeedRoot {
        /// The file we could not write.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
