//! What the `ws` and `http` benches share: options, the peers' names, and finding the tools
//! they need (failing with the install command when one is missing, never skipping silently).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::process::find_in_path;

/// One WebSocket load: `connections` closed loops of `size`-byte messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    /// Concurrent connections, one message in flight each.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
}

impl Load {
    /// `100 × 20 B`, `10 × 16 KiB`.
    pub fn label(&self) -> String {
        if self.size >= 1024 && self.size.is_multiple_of(1024) {
            format!("{} × {} KiB", self.connections, self.size / 1024)
        } else {
            format!("{} × {} B", self.connections, self.size)
        }
    }
}

impl std::str::FromStr for Load {
    type Err = anyhow::Error;

    /// `100x20`, `10x16k`.
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (c, b) = s
            .split_once(['x', 'X'])
            .with_context(|| format!("load `{s}` is not CONNSxBYTES"))?;
        let (digits, scale) = match b.strip_suffix(['k', 'K']) {
            Some(d) => (d, 1024),
            None => (b, 1),
        };
        let connections = c.parse().with_context(|| format!("connections in `{s}`"))?;
        let size = digits
            .parse::<usize>()
            .with_context(|| format!("size in `{s}`"))?
            * scale;
        if connections == 0 {
            bail!("load `{s}` has no connections");
        }
        Ok(Self { connections, size })
    }
}

/// Options of a bench run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `protolab` binary.
    pub protolab: PathBuf,
    /// Directory holding `protolab-bench` and the `bench-peer-*` binaries.
    pub bin_dir: PathBuf,
    /// `crates/bench/peers`: the Node peer script and its `node_modules`.
    pub peers_dir: PathBuf,
    /// Time before each measured window.
    pub warmup: Duration,
    /// Length of each measured window.
    pub duration: Duration,
    /// Each WS window also ends after this many messages.
    pub max_msgs: u64,
    /// WS loads, each run against every server.
    pub loads: Vec<Load>,
    /// WS: text frames instead of binary.
    pub text: bool,
    /// HTTP: wrk connections.
    pub http_connections: u32,
    /// Rounds over all servers; the best round per server and load is reported.
    pub rounds: u32,
    /// Servers deliberately left out.
    pub skip: Vec<String>,
}

impl Options {
    /// Whether `server` was left out with `--skip` (`protolab` leaves out all protolab apps).
    pub fn skipped(&self, server: &str) -> bool {
        self.skip
            .iter()
            .any(|s| s == server || (s == "protolab" && server.starts_with("protolab-")))
    }
}

/// An external tool, with how to install it (from `/work/shared/PEERS.md`).
#[derive(Debug, Clone, Copy)]
pub enum Tool {
    /// taskset (util-linux).
    Taskset,
    /// websocat 1.x.
    Websocat,
    /// Node.js.
    Node,
    /// nginx.
    Nginx,
    /// wrk.
    Wrk,
    /// oha (crates.io).
    Oha,
}

impl Tool {
    fn command(self) -> &'static str {
        match self {
            Self::Taskset => "taskset",
            Self::Websocat => "websocat",
            Self::Node => "node",
            Self::Nginx => "nginx",
            Self::Wrk => "wrk",
            Self::Oha => "oha",
        }
    }

    fn install(self) -> &'static str {
        match self {
            Self::Taskset => "apt-get install -y util-linux",
            Self::Websocat => "cargo install websocat   (about 1 min; scripts/bench does it)",
            Self::Node => "apt-get install -y nodejs npm",
            Self::Nginx => "apt-get install -y nginx",
            Self::Wrk => "apt-get install -y wrk",
            Self::Oha => "cargo install oha --locked   (a few minutes; scripts/bench does it)",
        }
    }

    /// The tool's path, or an error naming how to install it and how to skip its peer.
    pub fn find(self, skip_as: Option<&str>) -> anyhow::Result<PathBuf> {
        let name = self.command();
        if let Some(p) = find_in_path(name) {
            return Ok(p);
        }
        // cargo install puts binaries here, which a non-login shell may not have on PATH.
        if let Some(home) = std::env::var_os("HOME") {
            let p = Path::new(&home).join(".cargo/bin").join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        let skip = skip_as
            .map(|s| format!(", or leave it out with --skip {s}"))
            .unwrap_or_default();
        bail!(
            "`{name}` not found on PATH: install it with `{}`{skip}",
            self.install()
        )
    }
}

/// A usage error (exit 2, the servers listed on stderr) for the first `--skip` name that is not
/// one of `known`; `None` when every name is known.
pub fn unknown_skip(skip: &[String], known: &[&str]) -> Option<ExitCode> {
    let unknown = skip.iter().find(|s| !known.contains(&s.as_str()))?;
    eprintln!(
        "error: --skip {unknown}: unknown server; one of {}",
        known.join(", ")
    );
    Some(ExitCode::from(2))
}

/// A binary built from this workspace, next to the bench binary.
pub fn workspace_bin(opts: &Options, name: &str) -> anyhow::Result<PathBuf> {
    let path = opts.bin_dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} not found: build it with `cargo build --release -p protolab-bench`, or leave it out with --skip",
            path.display()
        )
    }
}

/// The protolab binary, or an error saying how to build it or skip it.
pub fn protolab_bin(opts: &Options) -> anyhow::Result<PathBuf> {
    if opts.protolab.is_file() {
        Ok(opts.protolab.clone())
    } else {
        bail!(
            "protolab binary {} not found: build it with `cargo build --release -p protolab`, \
             point at it with --protolab PATH, or leave it out with --skip protolab",
            opts.protolab.display()
        )
    }
}

/// The first `ws://`/`wss://`/`http://` URL a server printed, if any.
pub fn printed_url(lines: &[String], scheme: &str) -> Option<String> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find_map(|word| {
            word.starts_with(scheme)
                .then(|| word.trim_end_matches([',', ';', ')', '.']).to_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_loads() {
        let l: Load = "100x20".parse().unwrap();
        assert_eq!(
            (l.connections, l.size, l.label().as_str()),
            (100, 20, "100 × 20 B")
        );
        let l: Load = "10x16k".parse().unwrap();
        assert_eq!((l.size, l.label().as_str()), (16384, "10 × 16 KiB"));
        assert!("0x5".parse::<Load>().is_err());
    }

    #[test]
    fn finds_printed_urls() {
        let lines = vec!["ws   ws://127.0.0.1:3002/ws".to_owned(), "ready".to_owned()];
        assert_eq!(
            printed_url(&lines, "ws://").as_deref(),
            Some("ws://127.0.0.1:3002/ws")
        );
        assert_eq!(printed_url(&lines, "wss://"), None);
    }
}
