//! WAN emulation for `compare --rtt/--loss/--bandwidth`: the lab listens inside a network
//! namespace of its own, and every packet between it and this namespace crosses a link that
//! adds half the round-trip delay, the loss and the rate limit in each direction. Protocol
//! differences in round trips only show with latency; loopback has none.
//!
//! The link is a veth pair shaped by `tc netem` where the kernel has netem (exact and
//! cheap), `tbf` for a rate alone, and otherwise two TUN devices joined by this process
//! ([`userspace`]): IP packets still cross a real delayed, lossy link, so TCP and TLS pay
//! their real round trips and retransmissions either way.
//!
//! The namespace is this process's alone (named after its pid) and is deleted on drop; a
//! namespace left by a killed run is removed by the next run once its pid is gone.

pub mod shaper;
pub mod userspace;

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use shaper::LinkConfig;

/// What the link looks like.
#[derive(Debug, Clone, Serialize)]
pub struct WanSpec {
    /// Round-trip time added (half each way), milliseconds.
    pub rtt_ms: f64,
    /// Packet loss in each direction, percent.
    pub loss_percent: Option<f64>,
    /// Rate limit in each direction, as tc writes it (`10mbit`, `512kbit`).
    pub bandwidth: Option<String>,
    /// How the link is emulated: asked for before [`Wan::create`] (`None` = the best this
    /// kernel has), what was used after it (see [`Wan::emulator`]).
    pub emulator: Option<Emulator>,
}

impl WanSpec {
    /// One line for the table and the report: `50 ms RTT · 1% loss · 10mbit · netem`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.rtt_ms > 0.0 {
            parts.push(format!("{} ms RTT", self.rtt_ms));
        }
        if let Some(loss) = self.loss_percent {
            parts.push(format!("{loss}% loss each way"));
        }
        if let Some(rate) = &self.bandwidth {
            parts.push(format!("{rate} each way"));
        }
        parts.push(match self.emulator {
            Some(Emulator::Userspace) => "emulated in userspace (TUN devices)".to_owned(),
            Some(e) => format!("tc {}", e.as_str()),
            None => "emulator not chosen yet".to_owned(),
        });
        parts.join(" · ")
    }
}

/// How the link is emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    /// A veth pair with `tc netem` on both ends: exact, in the kernel.
    Netem,
    /// A veth pair with `tc tbf` on both ends: a rate limit alone, in every kernel.
    Tbf,
    /// Two TUN devices joined by protolab's own threads: for kernels without netem; costs a
    /// copy and two syscalls per packet in this process.
    Userspace,
}

impl Emulator {
    /// The name in results.json and the table.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Netem => "netem",
            Self::Tbf => "tbf",
            Self::Userspace => "userspace",
        }
    }
}

/// Prefix of the namespaces this module creates.
const PREFIX: &str = "protolab-wan-";

/// A namespace with the lab's end of a shaped link.
#[derive(Debug)]
pub struct Wan {
    name: String,
    host_if: String,
    emulator: Emulator,
    /// The userspace link's threads (and its TUNs), if that is the emulator.
    forwarder: Option<userspace::Forwarder>,
    /// The address the lab binds inside the namespace.
    pub lab_ip: Ipv4Addr,
    /// This namespace's address on the link.
    pub host_ip: Ipv4Addr,
}

impl Wan {
    /// Creates the namespace and the link, with the emulator `spec.emulator` asks for or,
    /// if none, netem where the kernel has it and the userspace link where it does not
    /// (`tbf` for a rate alone).
    pub fn create(spec: &WanSpec) -> anyhow::Result<Self> {
        remove_stale();
        let pid = std::process::id();
        // One process may hold several links at once (tests do): number them.
        let n = NEXT_LINK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{PREFIX}{pid}-{n}");
        // Interface names hold 15 bytes: "plh" + 7 pid digits + "-" + the number.
        let (host_if, lab_if) = (format!("plh{pid}-{n}"), format!("pln{pid}-{n}"));
        let block = free_block(pid.wrapping_mul(31).wrapping_add(n));
        let base = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + block * 4;
        let (host_ip, lab_ip) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
        ip(&["netns", "add", &name])?;
        let mut wan = Self {
            name,
            host_if: host_if.clone(),
            emulator: Emulator::Netem,
            forwarder: None,
            lab_ip,
            host_ip,
        };
        let ns = wan.name.as_str();
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        let needs_netem = spec.rtt_ms > 0.0 || spec.loss_percent.is_some();
        wan.emulator = match spec.emulator {
            Some(chosen) => chosen,
            None if !needs_netem => Emulator::Tbf,
            None if netem_available(ns)? => Emulator::Netem,
            None => {
                tracing::info!(
                    "this kernel has no netem qdisc: the WAN link is emulated in userspace"
                );
                Emulator::Userspace
            }
        };
        if wan.emulator == Emulator::Userspace {
            wan.forwarder = Some(wan.userspace_link(spec, &lab_if)?);
            return Ok(wan);
        }
        ensure_usage!(
            wan.emulator == Emulator::Netem || !needs_netem,
            "--wan-emulator tbf only limits the rate: use netem or userspace for --rtt and --loss"
        );
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
        let qdisc = qdisc(spec, wan.emulator);
        let qdisc: Vec<&str> = qdisc.iter().map(String::as_str).collect();
        let mut host_tc = vec!["qdisc", "add", "dev", &host_if, "root"];
        host_tc.extend(&qdisc);
        tc(None, &host_tc)?;
        let mut lab_tc = vec!["qdisc", "add", "dev", &lab_if, "root"];
        lab_tc.extend(&qdisc);
        tc(Some(ns), &lab_tc)?;
        Ok(wan)
    }

    /// Creates the TUN pair (the lab's end from a thread inside the namespace: a TUN
    /// belongs to the namespace it was opened in, and its descriptor works from any thread),
    /// addresses both ends point to point and starts the forwarding threads.
    fn userspace_link(&self, spec: &WanSpec, lab_if: &str) -> anyhow::Result<userspace::Forwarder> {
        let tun_error = |side: &str, name: &str| {
            format!(
                "creating the TUN device {name} ({side} end of the userspace WAN link) needs /dev/net/tun and CAP_NET_ADMIN: run as root"
            )
        };
        let host =
            userspace::open_tun(&self.host_if).with_context(|| tun_error("host", &self.host_if))?;
        let lab = self
            .run_inside(|| userspace::open_tun(lab_if).map_err(anyhow::Error::from))
            .with_context(|| tun_error("lab", lab_if))?;
        let ns = self.name.as_str();
        let (host_ip, lab_ip) = (self.host_ip.to_string(), self.lab_ip.to_string());
        ip(&[
            "addr",
            "add",
            &host_ip,
            "peer",
            &lab_ip,
            "dev",
            &self.host_if,
        ])?;
        ip(&["link", "set", &self.host_if, "up"])?;
        ip(&[
            "-n", ns, "addr", "add", &lab_ip, "peer", &host_ip, "dev", lab_if,
        ])?;
        ip(&["-n", ns, "link", "set", lab_if, "up"])?;
        let rate_bits_per_sec = match &spec.bandwidth {
            None => None,
            Some(rate) => Some(
                bits_per_sec(rate)
                    .with_context(|| format!("`{rate}` is not a rate like 10mbit"))?,
            ),
        };
        let direction = |seed| LinkConfig {
            delay: Duration::from_secs_f64(spec.rtt_ms / 2.0 / 1000.0),
            loss: spec.loss_percent.unwrap_or(0.0) / 100.0,
            rate_bits_per_sec,
            queue_bytes: LinkConfig::DEFAULT_QUEUE_BYTES,
            max_backlog: LinkConfig::DEFAULT_MAX_BACKLOG,
            seed,
        };
        // Fixed seeds, one per direction, so two runs with the same settings lose the same
        // packets of the same sequence.
        userspace::Forwarder::start(host, lab, direction(1), direction(2))
            .context("starting the userspace WAN link's threads")
    }

    /// How the link is emulated.
    pub fn emulator(&self) -> Emulator {
        self.emulator
    }

    /// Packet counts of the userspace link (host → lab, lab → host); `None` under tc.
    pub fn userspace_stats(
        &self,
    ) -> Option<(userspace::DirectionStats, userspace::DirectionStats)> {
        self.forwarder.as_ref().map(userspace::Forwarder::stats)
    }

    /// The host end of the link (the veth, or the host TUN of the userspace link), where a
    /// capture sees the lab's traffic.
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
        // The threads stop and close both TUNs, which deletes them.
        drop(self.forwarder.take());
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

/// Whether this kernel has netem: tries it on the new namespace's `lo`, which carries none
/// of the lab's traffic to the load generator, and removes it again.
fn netem_available(ns: &str) -> anyhow::Result<bool> {
    match tc(
        Some(ns),
        &["qdisc", "add", "dev", "lo", "root", "netem", "delay", "0ms"],
    ) {
        Ok(()) => {
            tc(Some(ns), &["qdisc", "del", "dev", "lo", "root"])?;
            Ok(true)
        }
        Err(e) if e.is::<NoNetem>() => Ok(false),
        Err(e) => Err(e),
    }
}

/// tc's answer when the kernel has no netem qdisc.
#[derive(Debug, thiserror::Error)]
#[error("this kernel has no netem qdisc (load it with `modprobe sch_netem`; some distributions ship it in linux-modules-extra; a kernel built without CONFIG_NET_SCH_NETEM cannot), so --wan-emulator netem cannot work here: leave --wan-emulator out to emulate the link in userspace. tc said: {0}")]
struct NoNetem(String);

/// The qdisc for each end: netem for delay and loss (rate too), or tbf when only a rate is
/// asked for — tbf is in every kernel, netem is a module some kernels are built without.
fn qdisc(spec: &WanSpec, emulator: Emulator) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if emulator == Emulator::Netem {
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

/// Links this process has made so far, for unique names.
static NEXT_LINK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A /30 of 10.231.0.0/16 that no interface here uses yet, looking from `seed` on (another
/// process's link, or one of ours, may hold the first choice).
fn free_block(seed: u32) -> u32 {
    const BLOCKS: u32 = 1 << 14;
    let used: Vec<u32> = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|word| word.split('/').next()?.parse::<Ipv4Addr>().ok())
                .filter(|ip| ip.octets()[..2] == [10, 231])
                .map(|ip| (u32::from(ip) - u32::from(Ipv4Addr::new(10, 231, 0, 0))) / 4)
                .collect()
        })
        .unwrap_or_default();
    (0..BLOCKS)
        .map(|i| (seed.wrapping_add(i)) % BLOCKS)
        .find(|b| !used.contains(b))
        .unwrap_or(seed % BLOCKS)
}

/// Removes namespaces of earlier runs whose process is gone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
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
        return Err(NoNetem(stderr).into());
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

/// A tc rate (as [`parse_bandwidth`] accepts it) in bits per second. tc's units: `bit`,
/// `kbit`, `mbit`, `gbit` are powers of 1000 bits; `bps`, `kbps`, `mbps`, `gbps` are bytes.
pub fn bits_per_sec(rate: &str) -> Option<f64> {
    let t = rate.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok().filter(|v: &f64| *v > 0.0)?;
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    Some(num * scale)
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
        assert_eq!(bits_per_sec("10mbit"), Some(10e6));
        assert_eq!(bits_per_sec("512kbit"), Some(512e3));
        assert_eq!(bits_per_sec("2mbps"), Some(16e6));
        assert_eq!(bits_per_sec("mbit"), None);
        assert_eq!(bits_per_sec("10"), None);
    }
}
