//! Key logging (NSS `SSLKEYLOGFILE` format) for decrypting captures, without environment
//! variables: the caller decides where secrets go.
//!
//! Each line is `<label> <client_random hex> <secret hex>` as specified in
//! <https://www.ietf.org/archive/id/draft-ietf-tls-keylogfile-01.html>.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::{Error, Result};

fn line(label: &str, client_random: &[u8], secret: &[u8]) -> String {
    let mut out = String::with_capacity(label.len() + 2 * (client_random.len() + secret.len()) + 3);
    out.push_str(label);
    out.push(' ');
    for b in client_random {
        let _ = write!(out, "{b:02x}");
    }
    out.push(' ');
    for b in secret {
        let _ = write!(out, "{b:02x}");
    }
    out.push('\n');
    out
}

/// Appends secrets to a file (mode 0600: these secrets decrypt traffic).
#[derive(Debug)]
pub struct KeyLogFile {
    file: Mutex<File>,
}

impl KeyLogFile {
    /// Opens (creating, mode 0600) `path` for appending. An existing file that group or
    /// others may read is refused rather than filled with secrets: `mode` only applies to a
    /// file this call creates.
    pub fn create(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt as _;
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|err| Error::io("open key log", path, err))?;
        let mode = file
            .metadata()
            .map_err(|err| Error::io("inspect key log", path, err))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::io(
                "open key log",
                path,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "the file is readable by others (mode {:o}); TLS secrets must stay private: `chmod 600` it or pick a new path",
                        mode & 0o777
                    ),
                ),
            ));
        }
        Ok(Self {
            file: Mutex::new(file),
        })
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let text = line(label, client_random, secret);
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        // A failed write loses one line of secrets; that must not break the TLS connection.
        if let Err(err) = file.write_all(text.as_bytes()) {
            tracing::warn!(%err, "cannot write TLS key log");
        }
    }
}

/// Collects secrets in memory, e.g. to embed in a pcapng Decryption Secrets Block.
#[derive(Debug, Default)]
pub struct KeyLogBuffer {
    lines: Mutex<String>,
}

impl KeyLogBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything logged so far, in NSS key log format.
    pub fn contents(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl rustls::KeyLog for KeyLogBuffer {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let text = line(label, client_random, secret);
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_str(&text);
    }
}
