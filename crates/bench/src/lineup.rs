//! The servers of `protolab-bench idle` and `protolab-bench cpu`, and how to start each pinned
//! to core 0: protolab's WS app (on its event loop, and as `protolab-ws-tasks` with a tokio task
//! per connection) and WSS app, the fastwebsockets peer, Node `ws`, and uWebSockets
//! (plain and OpenSSL) when scripts/build-uws-peer has built it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

use crate::driver::Tool;
use crate::process::{free_port, Ready, Server};

/// Every server, in the order they run; `*-tls`/`*-wss` ones speak TLS.
pub const SERVERS: [&str; 7] = [
    "protolab-ws",
    "protolab-ws-tasks",
    "protolab-wss",
    "fastwebsockets",
    "node-ws",
    "uws",
    "uws-tls",
];

/// protolab's idle timeout in these runs: far longer than a cycle holds its connections, so
/// the server neither pings nor closes an idle client (it pings at half of it).
pub const PROTOLAB_IDLE_TIMEOUT: &str = "600s";

/// Where the servers come from.
#[derive(Debug, Clone)]
pub struct Lineup {
    /// The protolab binary.
    pub protolab: PathBuf,
    /// Directory of this bench's binaries (the fastwebsockets peer).
    pub bin_dir: PathBuf,
    /// Directory with the Node peer and its node_modules.
    pub peers_dir: PathBuf,
    /// uWebSockets' echo peer (ws), if built.
    pub uws: Option<PathBuf>,
    /// uWebSockets' echo peer with OpenSSL (wss), if built.
    pub uws_tls: Option<PathBuf>,
}

/// A started server and where to reach it.
#[derive(Debug)]
pub struct Started {
    /// The process (stopped on drop).
    pub server: Server,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Request target of the upgrade.
    pub path: String,
    /// The CA to trust, for TLS servers.
    pub ca: Option<PathBuf>,
}

/// How to build the uWebSockets peer, for the note when it is missing.
pub const UWS_HINT: &str = "build it with `scripts/build-uws-peer` (into target/uws-peer/), or pass --uws PATH / --uws-tls PATH";

/// The uWebSockets binary: `given`, else `file` in target/uws-peer/ beside the bench's
/// target directory (where scripts/build-uws-peer puts it). `None` when neither exists.
pub fn find_uws(given: Option<PathBuf>, bin_dir: &Path, file: &str) -> Option<PathBuf> {
    given.or_else(|| {
        let default = bin_dir.parent()?.join("uws-peer").join(file);
        default.is_file().then_some(default)
    })
}

impl Lineup {
    /// Whether `name` can run here; `Err` says why not and what to do.
    pub fn check(&self, name: &str) -> anyhow::Result<()> {
        let needs = |path: &Option<PathBuf>| match path {
            Some(p) if p.is_file() => Ok(()),
            Some(p) => anyhow::bail!("{name}: {} not found; {UWS_HINT}", p.display()),
            None => anyhow::bail!("{name} skipped: not built; {UWS_HINT}"),
        };
        match name {
            "protolab-ws" | "protolab-ws-tasks" | "protolab-wss" => anyhow::ensure!(
                self.protolab.is_file(),
                "protolab binary {} not found: `cargo build --release -p protolab`, --protolab PATH, or --skip {name}",
                self.protolab.display()
            ),
            "fastwebsockets" => anyhow::ensure!(
                self.bin_dir.join("bench-peer-fastwebsockets").is_file(),
                "bench-peer-fastwebsockets not found in {}: `cargo build --release -p protolab-bench`, or --skip fastwebsockets",
                self.bin_dir.display()
            ),
            "node-ws" => {
                Tool::Node.find(Some("node-ws"))?;
                anyhow::ensure!(
                    self.peers_dir.join("node_modules/ws/package.json").is_file(),
                    "the `ws` npm package is not installed: `npm ci --prefix {}`, or --skip node-ws",
                    self.peers_dir.display()
                );
            }
            "uws" => needs(&self.uws)?,
            "uws-tls" => needs(&self.uws_tls)?,
            other => anyhow::bail!("unknown server `{other}`; one of {}", SERVERS.join(", ")),
        }
        Ok(())
    }

    /// The `servers` that run: not in `skip`, and able to run here. A skipped one, or a
    /// uWebSockets peer that is not built (an optional peer), adds a note to `notes`; any
    /// other server that cannot run is an error. `bench` prefixes what goes to stderr.
    pub fn runnable(
        &self,
        bench: &str,
        servers: &[&'static str],
        skip: &[String],
        notes: &mut Vec<String>,
    ) -> anyhow::Result<Vec<&'static str>> {
        let mut active = Vec::new();
        for &name in servers {
            if skip.iter().any(|s| s == name) {
                notes.push(crate::report::skipped_note(name));
                continue;
            }
            match self.check(name) {
                Ok(()) => active.push(name),
                Err(err) if name.starts_with("uws") => {
                    eprintln!("{bench}: {err:#}");
                    notes.push(format!("{err:#}"));
                }
                Err(err) => return Err(err),
            }
        }
        Ok(active)
    }

    /// Starts `name` on a fresh port, its stderr in `dir`; `home` is the protolab home whose
    /// CA signs every TLS server's certificate.
    pub fn start(&self, name: &str, dir: &Path, home: &Path) -> anyhow::Result<Started> {
        self.check(name)?;
        let port = free_port()?;
        let port_arg = port.to_string();
        let home_arg = home.display().to_string();
        let protolab = |only: &str, port_flag: &str| -> Vec<String> {
            [
                "--home",
                &home_arg,
                "up",
                "--bind",
                "127.0.0.1",
                "--only",
                only,
                port_flag,
                &port_arg,
                "--idle-timeout",
                PROTOLAB_IDLE_TIMEOUT,
            ]
            .map(String::from)
            .into()
        };
        let (program, args, ready, path, ca) = match name {
            "protolab-ws" => (
                self.protolab.clone(),
                protolab("ws", "--ws-port"),
                Ready::Line("ready"),
                "/ws",
                None,
            ),
            "protolab-ws-tasks" => (
                self.protolab.clone(),
                [
                    protolab("ws", "--ws-port"),
                    vec!["--ws-runtime".into(), "tasks".into()],
                ]
                .concat(),
                Ready::Line("ready"),
                "/ws",
                None,
            ),
            "protolab-wss" => (
                self.protolab.clone(),
                protolab("wss", "--wss-port"),
                Ready::Line("ready"),
                "/ws",
                Some(home.join("ca.pem")),
            ),
            "fastwebsockets" => (
                self.bin_dir.join("bench-peer-fastwebsockets"),
                vec!["--port".into(), port_arg],
                Ready::Line("listening"),
                "/",
                None,
            ),
            "node-ws" => (
                Tool::Node.find(Some("node-ws"))?,
                vec![
                    self.peers_dir
                        .join("ws-echo-server.js")
                        .display()
                        .to_string(),
                    "--port".into(),
                    port_arg,
                ],
                Ready::Line("listening"),
                "/",
                None,
            ),
            "uws" => (
                self.uws.clone().context("uws not built")?,
                vec![port_arg],
                Ready::Line("listening"),
                "/",
                None,
            ),
            "uws-tls" => {
                let (cert, key) = self.issue_cert(home)?;
                (
                    self.uws_tls.clone().context("uws-tls not built")?,
                    vec![port_arg, cert, key],
                    Ready::Line("listening"),
                    "/",
                    Some(home.join("ca.pem")),
                )
            }
            other => anyhow::bail!("unknown server `{other}`"),
        };
        let server = Server::start(name, &program, &args, dir, port, ready)?;
        Ok(Started {
            server,
            port,
            path: path.to_owned(),
            ca,
        })
    }

    /// A certificate for 127.0.0.1 from protolab's CA in `home` (`protolab certs issue`), so
    /// uWS serves the same kind of key and chain as protolab's WSS app.
    fn issue_cert(&self, home: &Path) -> anyhow::Result<(String, String)> {
        let cert = home.join("certs/127.0.0.1+1.pem");
        let key = home.join("certs/127.0.0.1+1-key.pem");
        if cert.is_file() && key.is_file() {
            return Ok((cert.display().to_string(), key.display().to_string()));
        }
        let out = Command::new(&self.protolab)
            .arg("--home")
            .arg(home)
            .args(["certs", "issue", "127.0.0.1", "localhost"])
            .output()
            .context("running protolab certs issue")?;
        anyhow::ensure!(
            out.status.success(),
            "protolab certs issue failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        anyhow::ensure!(
            cert.is_file() && key.is_file(),
            "protolab certs issue did not write {} and its key",
            cert.display()
        );
        Ok((cert.display().to_string(), key.display().to_string()))
    }
}

/// Raises `pid`'s open-files limit to `limit` with prlimit(1) (the bench forbids `unsafe`, so
/// no setrlimit of its own).
pub fn raise_nofile(prlimit: &Path, pid: u32, limit: usize) -> anyhow::Result<()> {
    let status = Command::new(prlimit)
        .args(["--pid", &pid.to_string()])
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .context("running prlimit")?;
    anyhow::ensure!(
        status.success(),
        "prlimit could not raise pid {pid}'s open-files limit to {limit}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::TempDir;

    #[test]
    fn finds_uws_where_the_build_script_puts_it_or_says_how_to_build_it() {
        let dir = TempDir::new("protolab-bench-lineup-test").unwrap();
        let bin_dir = dir.path().join("release");
        std::fs::create_dir_all(&bin_dir).unwrap();
        assert_eq!(find_uws(None, &bin_dir, "uws-echo"), None);
        let lineup = Lineup {
            protolab: bin_dir.join("protolab"),
            bin_dir: bin_dir.clone(),
            peers_dir: dir.path().to_owned(),
            uws: None,
            uws_tls: None,
        };
        let err = format!("{:#}", lineup.check("uws").unwrap_err());
        assert!(
            err.contains("skipped") && err.contains("scripts/build-uws-peer"),
            "{err}"
        );

        let built = dir.path().join("uws-peer");
        std::fs::create_dir_all(&built).unwrap();
        std::fs::write(built.join("uws-echo"), b"").unwrap();
        assert_eq!(
            find_uws(None, &bin_dir, "uws-echo"),
            Some(built.join("uws-echo"))
        );
        let given = PathBuf::from("/elsewhere/uws-echo");
        assert_eq!(
            find_uws(Some(given.clone()), &bin_dir, "uws-echo"),
            Some(given)
        );
    }
}
