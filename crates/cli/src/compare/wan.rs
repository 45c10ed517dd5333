//! WAN emulation for `compare --rtt/--loss/--bandwidth`: the lab listens inside a network
//! namespace joined to this one by a veth pair, and `tc netem` on both ends adds half the
//! round-trip delay, the loss and the rate limit in each direction. Protocol differences in
//! round trips only show with latency; loopback has none.
//!
//! The namespace is this process's alone (named after its pid) and is deleted on drop; a
//! namespace left by a killed run is removed by the next run once its pid is gone.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

/// What the link looks like.
#[derive(Debug, Clone, Serialize)]
pub struct WanSpec {
    /// Round-trip time added (half each way), milliseconds.
    pub rtt_ms: f64,
    /// Packet loss in each direction, percent.
    pub loss_percent: Option<f64>,
    /// Rate limit in each direction, as tc writes it (`10mbit`, `512kbit`).
    pub bandwidth: Option<String>,
}

/// Prefix of the namespaces this module creates.
const PREFIX: &str = "protolab-wan-";

/// A namespace with the lab's end of a shaped veth pair.
#[derive(Debug)]
pub struct Wan {
    name: String,
    host_if: String,
    /// The address the lab binds inside the namespace.
    pub lab_ip: Ipv4Addr,
}

impl Wan {
    /// Creates the namespace, the veth pair and the netem qdiscs.
    pub fn create(spec: &WanSpec) -> anyhow::Result<Self> {
        remove_stale();
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}");
        // Interface names hold 15 bytes; a /30 per run from 10.231.0.0/16 by pid.
        let (host_if, lab_if) = (format!("plh{pid}"), format!("pln{pid}"));
        let block = pid % (1 << 14);
        let base = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + block * 4;
        let (host_ip, lab_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        ip(&["netns", "add", &name])?;
        let wan = Self {
            name,
            host_if: host_if.clone(),
            lab_ip,
        };
        let ns = wan.name.as_str();
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &lab_if,
        ])?;
        ip(&["link", "set", &lab_if, "netns", ns])?;
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        ip(&["link", "set", &host_if, "up"])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{lab_ip}/30"),
            "dev",
            &lab_if,
        ])?;
        ip(&["-n", ns, "link", "set", &lab_if, "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let qdisc = qdisc(spec);
        let qdisc: Vec<&str> = qdisc.iter().map(String::as_str).collect();
        let mut host_tc = vec!["qdisc", "add", "dev", &host_if, "root"];
        host_tc.extend(&qdisc);
        tc(None, &host_tc)?;
        let mut lab_tc = vec!["qdisc", "add", "dev", &lab_if, "root"];
        lab_tc.extend(&qdisc);
        tc(Some(ns), &lab_tc)?;
        Ok(wan)
    }

    /// The host end of the veth pair, where a capture sees the lab's traffic.
    pub fn host_interface(&self) -> &str {
        &self.host_if
    }

    /// Runs `f` on a thread inside the namespace: sockets it creates (the lab's listeners)
    /// belong to the namespace for their whole life, whichever thread later uses them.
    pub fn run_inside<T: Send>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send,
    ) -> anyhow::Result<T> {
        let path = format!("/var/run/netns/{}", self.name);
        let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).context(
                        "entering the WAN namespace needs CAP_SYS_ADMIN: run compare --rtt as root",
                    )?;
                    f()
                })
                .join()
                .map_err(|_| anyhow::anyhow!("the lab's start-up thread panicked"))?
        })
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        // Deleting one end of a veth deletes the pair. The namespace itself lingers until its
        // last socket is gone (TIME_WAIT holds it for a minute), so the link is deleted
        // explicitly rather than left to the namespace's end.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// The qdisc for each end: netem for delay and loss (rate too), or tbf when only a rate is
/// asked for — tbf is in every kernel, netem is a module some kernels are built without.
fn qdisc(spec: &WanSpec) -> Vec<String> {
    let needs_netem = spec.rtt_ms > 0.0 || spec.loss_percent.is_some();
    let mut args: Vec<String> = Vec::new();
    if needs_netem {
        args.extend([
            "netem".into(),
            "delay".into(),
            format!("{:.3}ms", spec.rtt_ms / 2.0),
        ]);
        if let Some(loss) = spec.loss_percent {
            args.extend(["loss".into(), format!("{loss}%")]);
        }
        if let Some(rate) = &spec.bandwidth {
            args.extend(["rate".into(), rate.clone()]);
        }
        // A queue long enough that a rate limit delays bursts instead of dropping them.
        args.extend(["limit".into(), "100000".into()]);
    } else if let Some(rate) = &spec.bandwidth {
        // A second of queue, so bursts wait rather than drop; a burst of 64 KiB lets one
        // TSO segment through at a time.
        args.extend([
            "tbf".into(),
            "rate".into(),
            rate.clone(),
            "burst".into(),
            "64kb".into(),
            "latency".into(),
            "1s".into(),
        ]);
    }
    args
}

/// Removes namespaces of earlier runs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name.strip_prefix(PREFIX) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args, "iproute2")
}

fn tc(netns: Option<&str>, args: &[&str]) -> anyhow::Result<()> {
    match netns {
        None => run("tc", args, "iproute2"),
        Some(ns) => {
            let mut all = vec!["netns", "exec", ns, "tc"];
            all.extend(args);
            run("ip", &all, "iproute2")
        }
    }
}

fn run(program: &str, args: &[&str], package: &str) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!(
                "WAN emulation needs `{program}`: install it with `apt-get install {package}`"
            )
        } else {
            anyhow::anyhow!("running {program}: {e}")
        }
    })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
        anyhow::bail!(
            "WAN emulation (--rtt, --loss, --bandwidth) creates a network namespace and shapes it with tc netem, which needs CAP_NET_ADMIN and CAP_SYS_ADMIN: run as root (e.g. `sudo protolab compare --rtt 50ms`), or drop those flags to compare over loopback (`{program} {}` said: {stderr})",
            args.join(" ")
        );
    }
    if args.contains(&"netem")
        && (stderr.contains("qdisc kind is unknown") || stderr.contains("Unknown qdisc"))
    {
        anyhow::bail!(
            "this kernel has no netem qdisc, so --rtt and --loss cannot be emulated here (load it with `modprobe sch_netem`; some distributions ship it in linux-modules-extra; a kernel built without CONFIG_NET_SCH_NETEM cannot). --bandwidth alone works without netem. tc said: {stderr}"
        );
    }
    anyhow::bail!("`{program} {}` failed: {stderr}", args.join(" "))
}

/// Parses `1%`, `0.5%` or `0.5` (percent).
pub fn parse_loss(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a loss like 1% or 0.5%"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("loss must be from 0% to 100%, not {s}"))
    }
}

/// Checks a tc rate like `10mbit`, `512kbit`, `1gbit`, `100mbps`.
pub fn parse_bandwidth(s: &str) -> Result<String, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let ok_num = num.parse::<f64>().is_ok_and(|v| v > 0.0);
    let ok_unit = matches!(
        unit,
        "bit" | "kbit" | "mbit" | "gbit" | "bps" | "kbps" | "mbps" | "gbps"
    );
    if ok_num && ok_unit {
        Ok(t)
    } else {
        Err(format!(
            "`{s}` is not a bandwidth like 10mbit, 512kbit or 1gbit (tc units)"
        ))
    }
}

/// The round-trip time as milliseconds for the spec.
pub fn rtt_ms(rtt: Duration) -> f64 {
    rtt.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        assert_eq!(parse_loss("1%"), Ok(1.0));
        assert_eq!(parse_loss("0.5"), Ok(0.5));
        assert!(parse_loss("150%").is_err());
        assert!(parse_loss("lots").is_err());
        assert_eq!(parse_bandwidth("10Mbit"), Ok("10mbit".to_owned()));
        assert!(parse_bandwidth("10 furlongs").is_err());
        assert!(parse_bandwidth("mbit").is_err());
    }
}
