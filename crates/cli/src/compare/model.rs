//! `results.json`: what a compare run measured, with the settings and machine it ran on.
//! Its shape is versioned ([`SCHEMA_VERSION`]) and described by
//! `docs/schema/compare-results.v6.schema.json`; a change that breaks readers bumps it.

use std::collections::BTreeMap;

use protolab_load::{Report, Workload};
use serde::Serialize;

/// Bumped when a field is removed or changes meaning; adding fields keeps it. 2: `protocol`
/// may be `ws-deflate` or `wss-deflate` (values a version 1 reader would refuse). 3: the lab
/// may have run elsewhere (`lab_site`), and then the server's CPU figures and
/// `settings.server_threads` are null, never zero. 4: TLS 1.3 session tickets left
/// `received_per_message` (HTTPS connect) and `handshake_received_per_connection` (WSS) for
/// `post_handshake_tls_received_per_connection`, so those two figures are smaller than a
/// version 3 file's for the same traffic; runs carry `round_trips` and `report.tcp`. 5: a run
/// is measured in `settings.rounds` rounds: `report` pools them (its duration is theirs added
/// up, `settings.run_secs` is one round's), `spread` gives each headline figure's median
/// round and range, and `contention` says whether the machine limited the run. 6: a ratio's
/// value is its Hodges–Lehmann `estimate` (5: the rounds' `median`), with that estimate's
/// interval (5: the median's).
pub const SCHEMA_VERSION: u32 = 6;

/// Versions [`compare_with_baseline`] reads: each version only added to or widened the one
/// before, or changed what it does not read (6: the ratios), so an older baseline still
/// compares on the runs both have.
const BASELINE_VERSIONS: std::ops::RangeInclusive<u64> = 1..=6;

/// The whole file.
#[derive(Debug, Clone, Serialize)]
pub struct Results {
    /// Always `protolab.compare.results`.
    pub schema: &'static str,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// protolab's version.
    pub protolab_version: &'static str,
    /// When the run started, RFC 3339 UTC.
    pub started_at: String,
    /// Wall time of the whole run, seconds.
    pub elapsed_secs: f64,
    /// What was asked for.
    pub settings: Settings,
    /// Where it ran.
    pub machine: Machine,
    /// Where the lab ran: started in-process by this run, or deployed elsewhere (`--lab`).
    pub lab_site: LabSite,
    /// The lab's listeners for this run (in-process: ports are picked fresh each run).
    pub lab: Vec<LabEndpoint>,
    /// One entry per protocol × workload × message size, in the order run.
    pub runs: Vec<Run>,
    /// Things a reader must know before trusting a number (e.g. the load generator saturated).
    pub warnings: Vec<String>,
    /// The run was interrupted (SIGINT or SIGTERM): `runs` holds what was measured until then,
    /// the last may have been cut short and later ones are missing; a warning says which.
    pub partial: bool,
    /// The packet capture of the run (`--capture`), if one was made.
    pub capture: Option<CaptureSummary>,
    /// Each protocol's headline figures against the first protocol of its workload and size,
    /// taken round by round (the two measured a second apart) and summed up by their
    /// Hodges–Lehmann estimate.
    pub ratios: Vec<super::spread::Ratio>,
}

/// The capture written beside results.json.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureSummary {
    /// File name in the report folder.
    pub file: String,
    /// What the capture saw and kept.
    pub stats: protolab_capture::live::CaptureStats,
    /// Where the embedded TLS secrets came from: `in-process lab` or the `--lab-keylog`
    /// file; `None` when there were none, so HTTPS and WSS stay encrypted in the file.
    pub secrets_from: Option<String>,
    /// The capture decoded per protocol (TLS decrypted with the embedded secrets): every
    /// byte of the run on the wire, by layer.
    pub wire_cost: Vec<WireCost>,
}

/// One protocol's traffic in the capture, by layer (all its runs together).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WireCost {
    /// `http`, `https`, `ws` or `wss`.
    pub protocol: String,
    /// TCP connections seen.
    pub connections: u64,
    /// Packets, both directions.
    pub packets: u64,
    /// Frame bytes as captured, all layers.
    pub frame_bytes: u64,
    /// Link, IP and TCP headers (frame bytes minus TCP payload).
    pub link_ip_tcp: u64,
    /// TLS's own bytes: handshake, record headers, AEAD tags.
    pub tls: u64,
    /// Application records that could not be decrypted.
    pub tls_encrypted: u64,
    /// HTTP request and response heads.
    pub http_headers: u64,
    /// HTTP bodies.
    pub http_body: u64,
    /// WebSocket frame headers and masks.
    pub ws_framing: u64,
    /// WebSocket payloads.
    pub ws_payload: u64,
}

/// Decodes `file` (a pcapng from `--capture`) and sums each protocol's connections by layer;
/// `ports` maps the lab's ports to protocol names.
pub fn wire_cost(file: &[u8], ports: &[(u16, String)]) -> Vec<WireCost> {
    let filter = protolab_capture::Filter {
        ports: ports.iter().map(|(p, _)| *p).collect(),
    };
    let report = protolab_capture::inspect(file, &filter);
    let mut out: Vec<WireCost> = ports
        .iter()
        .map(|(_, name)| WireCost {
            protocol: name.clone(),
            ..WireCost::default()
        })
        .collect();
    for c in &report.connections {
        let Some(i) = ports.iter().position(|(p, _)| *p == c.server.port()) else {
            continue;
        };
        let w = &mut out[i];
        let frame: u64 = c.wire_bytes.iter().sum();
        let payload: u64 = c.payload_bytes.iter().sum();
        w.connections += 1;
        w.packets += c.packets.iter().sum::<u64>();
        w.frame_bytes += frame;
        w.link_ip_tcp += frame.saturating_sub(payload);
        w.tls += c.layers.tls;
        w.tls_encrypted += c.layers.tls_encrypted;
        w.http_headers += c.layers.http_headers;
        w.http_body += c.layers.http_body;
        w.ws_framing += c.layers.ws_framing;
        w.ws_payload += c.layers.ws_payload;
    }
    out
}

/// The run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// WAN emulation between the load generator and the lab; `None` = loopback.
    pub wan: Option<super::wan::WanSpec>,
    /// Protocols compared (`http`, `https`, `ws`, `wss`, `ws-deflate`, `wss-deflate`).
    pub protocols: Vec<String>,
    /// What echo messages carry: `json` (records with new values every WebSocket message)
    /// whenever a `-deflate` protocol is compared, `alphabet` otherwise.
    pub payload: protolab_load::Payload,
    /// Workloads run (`connect`, `echo`, `push`).
    pub workloads: Vec<String>,
    /// Echo message sizes in bytes; `connect` uses the first.
    pub sizes: Vec<usize>,
    /// Concurrent connections (workers for `connect`).
    pub connections: usize,
    /// Length of each round of each run, seconds.
    pub run_secs: f64,
    /// Rounds: every run was measured this many times, one round of all runs after another.
    pub rounds: usize,
    /// Open-loop echo rate (msgs/s over all connections); `None` = closed loop.
    pub rate: Option<f64>,
    /// Push workload interval, milliseconds.
    pub push_interval_ms: u64,
    /// Whether TLS connections resumed sessions (otherwise every one did a full handshake).
    pub tls_resumption: bool,
    /// Runtime threads serving the lab; `None` when it ran elsewhere (`--lab`).
    pub server_threads: Option<usize>,
    /// Runtime threads of the load generator.
    pub client_threads: usize,
}

/// The machine.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: Option<String>,
    /// Distribution (os-release PRETTY_NAME).
    pub os: Option<String>,
    /// Physical memory, bytes.
    pub memory_bytes: Option<u64>,
}

/// Where the lab ran.
#[derive(Debug, Clone, Serialize)]
pub struct LabSite {
    /// `in-process` (compare started it on its own threads, in this process) or `remote`
    /// (`protolab up` deployed elsewhere: `--lab`, `--lab-url`).
    pub kind: LabKind,
    /// A remote lab's host: `--lab HOST`, or the hosts of the `--lab-url` URLs.
    pub host: Option<String>,
    /// The CA a remote lab's certificates were verified against, when TLS was compared.
    pub ca: Option<String>,
    /// Whether the server's CPU was measured (only for a lab in this process).
    pub server_cpu_measured: bool,
}

/// [`LabSite::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabKind {
    /// Started by compare in this process.
    InProcess,
    /// Deployed elsewhere.
    Remote,
}

impl LabSite {
    /// The lab compare starts itself.
    pub fn in_process() -> Self {
        Self {
            kind: LabKind::InProcess,
            host: None,
            ca: None,
            server_cpu_measured: true,
        }
    }

    /// One line for the table and the HTML: where the lab ran, and what that means.
    pub fn describe(&self) -> String {
        match (self.kind, &self.host) {
            (LabKind::InProcess, _) => {
                "lab: in-process (started by this compare run on this machine)".to_owned()
            }
            (LabKind::Remote, host) => format!(
                "lab: remote at {} (not started by this run); its server CPU is not measured",
                host.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// One lab listener.
#[derive(Debug, Clone, Serialize)]
pub struct LabEndpoint {
    /// Its protocol.
    pub protocol: String,
    /// Address and port (for a remote lab, as its URL names them).
    pub addr: String,
    /// The URL the workloads used.
    pub url: String,
}

/// One protocol under one workload at one size.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `http`, `https`, `ws`, `wss`, `ws-deflate` or `wss-deflate`.
    pub protocol: String,
    /// `connect`, `echo` or `push`.
    pub workload: Workload,
    /// Payload bytes per message (push: the size of the server's messages is in the report).
    pub size: usize,
    /// What the load generator measured; `None` if the run could not start (see `error`).
    pub report: Option<Report>,
    /// CPU used during the run.
    pub cpu: Option<Cpu>,
    /// The load generator's threads were busy ≥ 90% of the time: the figures may show the
    /// client's limit, not the protocol's.
    pub client_bound: bool,
    /// Connect runs: round trips to the first echo, counted and, under an emulated RTT,
    /// measured.
    pub round_trips: Option<RoundTrips>,
    /// Why the run produced nothing, if it did not.
    pub error: Option<String>,
    /// Rounds measured (those that ran; `settings.rounds` were planned).
    pub rounds: usize,
    /// Headline figures over the rounds, by their path in this run (`report.latency.p50_us`,
    /// `cpu.client_us_per_1k`...): median round, range, and whether they are noisy. Empty
    /// with one round.
    pub spread: BTreeMap<String, super::spread::Spread>,
    /// Run-queue wait, steal and the WAN link's schedule during the run.
    pub contention: Option<super::contention::Contention>,
    /// The machine, not the protocol, limited this run (`contention.why` says how).
    pub machine_bound: bool,
}

/// Round trips from starting to connect to the first echo.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RoundTrips {
    /// Counted: the TCP handshake plus every read that waited on the server (TLS flights,
    /// the upgrade, the request), averaged over connections. Protocol arithmetic, not time.
    pub counted: f64,
    /// Measured: the median connect → first echo time divided by the emulated RTT (`--rtt`);
    /// `None` on loopback, where there is no RTT to divide by.
    pub measured: Option<f64>,
    /// How far apart the two may be, in round trips, before they are called in disagreement.
    pub tolerance: f64,
    /// `measured` is further than `tolerance` from `counted`: time went somewhere the count
    /// does not see (retransmission timeouts under loss, server CPU, queueing at a rate limit).
    pub disagree: bool,
}

/// Measured and counted round trips may differ by this much before the table flags them:
/// each round trip also carries server and client CPU (a TLS handshake is about a
/// millisecond here), which is a small share of a WAN RTT but adds up over four.
pub const ROUND_TRIP_TOLERANCE: f64 = 0.5;

impl RoundTrips {
    /// From a connect run's report; `rtt_ms` is the emulated RTT, 0 for none.
    pub fn of(report: &Report, rtt_ms: f64) -> Option<Self> {
        let counted = report.round_trips_to_first_echo?;
        let measured = report
            .phases
            .connect_to_first_echo
            .as_ref()
            .filter(|_| rtt_ms > 0.0)
            .map(|s| s.p50_us / 1000.0 / rtt_ms);
        Some(Self {
            counted,
            measured,
            tolerance: ROUND_TRIP_TOLERANCE,
            disagree: measured.is_some_and(|m| (m - counted).abs() > ROUND_TRIP_TOLERANCE),
        })
    }
}

/// CPU time during one run, split between the lab's threads and the load generator's.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cpu {
    /// Load generator CPU, seconds.
    pub client_secs: f64,
    /// Lab (server) CPU, seconds; `None` when the lab ran elsewhere and could not be measured.
    pub server_secs: Option<f64>,
    /// Load generator CPU per 1,000 messages, microseconds.
    pub client_us_per_1k: Option<f64>,
    /// Server CPU per 1,000 messages, microseconds.
    pub server_us_per_1k: Option<f64>,
    /// Load generator CPU / (wall time × its threads): 1.0 = saturated.
    pub client_utilization: f64,
    /// Server CPU / (wall time × its threads); `None` for a lab elsewhere.
    pub server_utilization: Option<f64>,
    /// Load generator CPU seconds per second of the run: cores kept busy.
    pub client_cores: f64,
    /// Server CPU seconds per second of the run; `None` for a lab elsewhere.
    pub server_cores: Option<f64>,
    /// The run was open loop (`--rate`): its CPU per message includes the per-second cost of
    /// waking on the schedule and polling idle sockets, which a low rate spreads over few
    /// messages (at 400 msgs/s, 20-25× the closed-loop figure). Compare `*_cores` between
    /// open-loop runs, and per-message CPU with closed-loop runs only.
    pub fixed_cost_per_second: bool,
}

impl Run {
    /// The key a baseline run is matched by.
    pub fn key(&self) -> (String, String, usize) {
        (
            self.protocol.clone(),
            self.workload.as_str().to_owned(),
            self.size,
        )
    }
}

/// What the machine is, read from /proc and /etc; unknown fields stay `None`.
pub fn machine() -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let cpu_model = read("/proc/cpuinfo").and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
    });
    let memory_bytes = read("/proc/meminfo").and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    let os = read("/etc/os-release").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
    });
    Machine {
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        kernel: read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()),
        os,
        memory_bytes,
    }
}

/// One line of a baseline comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `wss echo 32 B`.
    pub run: String,
    /// `msgs/s`, `p50`, ...
    pub metric: &'static str,
    /// The baseline's value.
    pub before: f64,
    /// This run's value.
    pub after: f64,
}

impl Change {
    /// Relative change in percent (`after` vs `before`).
    pub fn percent(&self) -> f64 {
        if self.before == 0.0 {
            0.0
        } else {
            (self.after - self.before) / self.before * 100.0
        }
    }
}

/// Where the baseline's lab ran (`in-process`, or `remote at HOST`), when that differs from
/// this run's; files from before `lab_site` ran theirs in-process.
pub fn other_lab_site(now: &Results, baseline: &serde_json::Value) -> Option<String> {
    let site = baseline.get("lab_site");
    let kind = site
        .and_then(|s| s.get("kind"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("in-process");
    let host = site
        .and_then(|s| s.get("host"))
        .and_then(serde_json::Value::as_str);
    let same = match now.lab_site.kind {
        LabKind::InProcess => kind == "in-process",
        LabKind::Remote => kind == "remote" && host == now.lab_site.host.as_deref(),
    };
    (!same).then(|| match host {
        Some(host) if kind == "remote" => format!("remote at {host}"),
        _ => kind.to_owned(),
    })
}

/// Compares this run with a baseline `results.json` (as parsed JSON, so files from older
/// protolab versions with extra or missing fields still compare on what they share).
pub fn compare_with_baseline(
    now: &Results,
    baseline: &serde_json::Value,
) -> Result<Vec<Change>, String> {
    if baseline.get("schema").and_then(|v| v.as_str()) != Some("protolab.compare.results") {
        return Err(
            "it is not a protolab compare results.json (no `schema` field saying so)".into(),
        );
    }
    let version = baseline
        .get("schema_version")
        .and_then(serde_json::Value::as_u64);
    if !version.is_some_and(|v| BASELINE_VERSIONS.contains(&v)) {
        return Err(format!(
            "its schema_version is {}, this protolab reads 1 to {SCHEMA_VERSION}",
            version.map_or_else(|| "missing".to_owned(), |v| v.to_string())
        ));
    }
    let mut old: BTreeMap<(String, String, usize), &serde_json::Value> = BTreeMap::new();
    for run in baseline
        .get("runs")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        let protocol = run.get("protocol").and_then(|v| v.as_str());
        let workload = run.get("workload").and_then(|v| v.as_str());
        let size = run
            .get("size")
            .and_then(serde_json::Value::as_u64)
            .and_then(|s| usize::try_from(s).ok());
        if let (Some(p), Some(w), Some(s)) = (protocol, workload, size) {
            old.insert((p.to_owned(), w.to_owned(), s), run);
        }
    }
    let mut changes = Vec::new();
    for run in &now.runs {
        let (Some(report), Some(before)) = (&run.report, old.get(&run.key())) else {
            continue;
        };
        let after = serde_json::to_value(report).map_err(|e| e.to_string())?;
        let label = format!(
            "{} {} {}",
            run.protocol,
            run.workload.as_str(),
            crate::units::size_label(run.size)
        );
        let metrics: [(&'static str, &[&str]); 5] = [
            ("msgs/s", &["report", "throughput_per_sec"]),
            ("p50 µs", &["report", "latency", "p50_us"]),
            ("p99 µs", &["report", "latency", "p99_us"]),
            ("bytes/msg sent", &["report", "bytes", "sent_per_message"]),
            ("server CPU µs/1k", &["cpu", "server_us_per_1k"]),
        ];
        let now_run = serde_json::json!({
            "report": after,
            "cpu": serde_json::to_value(run.cpu).map_err(|e| e.to_string())?,
        });
        for (metric, path) in metrics {
            let get = |v: &serde_json::Value| {
                path.iter()
                    .try_fold(v, |v, k| v.get(k))
                    .and_then(serde_json::Value::as_f64)
            };
            if let (Some(b), Some(a)) = (get(before), get(&now_run)) {
                changes.push(Change {
                    run: label.clone(),
                    metric,
                    before: b,
                    after: a,
                });
            }
        }
    }
    Ok(changes)
}
