//! `protolab compare`'s command line: the flags and the workloads they name.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use protolab_load::Workload;

use super::{wan, ProtocolArg};
use crate::units::{parse_duration, parse_size};

/// `protolab compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Protocols to compare, comma-separated. `ws-deflate` and `wss-deflate` are the
    /// WebSocket apps with permessage-deflate offered as browsers offer it; with either, every
    /// run's messages are JSON records (new values each message) so ws and ws-deflate carry
    /// the same bytes and the saving shows. `h2` and `grpc` are the HTTP/2 app's /echo and
    /// the gRPC app's unary Echo over h2c (prior knowledge); `h2-tls` and `grpc-tls` over TLS.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "http,https,ws,wss"
    )]
    pub protocols: Vec<ProtocolArg>,
    /// Workloads, comma-separated: `connect` (a new connection per message: handshake cost and
    /// round trips), `echo` (request/response over open connections), `push` (server to
    /// client delivery delay; ws, wss, sse, poll, long-poll and grpc — plain HTTP and h2 are
    /// skipped), `fanin` (--connections requests in flight: streams on one connection for h2
    /// and gRPC).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "connect,echo,push"
    )]
    pub workloads: Vec<WorkloadArg>,
    /// Echo message sizes, comma-separated (connect uses the first). Default 32,1KiB,64KiB
    /// (32 with --quick).
    #[arg(long, value_delimiter = ',', value_parser = parse_size, value_name = "SIZES")]
    pub sizes: Vec<u64>,
    /// Concurrent connections per run (workers for connect).
    #[arg(short = 'c', long, default_value_t = 8, value_name = "N")]
    pub connections: usize,
    /// Total time for all runs and rounds, split evenly between them (the pauses between
    /// runs come on top). Default 63s: 7 rounds of 0.5 s runs for the default protocols,
    /// workloads and sizes (6s with --quick). Without --rounds, a shorter time takes fewer
    /// rounds of 0.5 s runs rather than shorter runs.
    #[arg(long, value_parser = parse_duration, value_name = "TIME")]
    pub duration: Option<Duration>,
    /// Measure every run this many times, one round of all runs after another, so drift on
    /// the machine hits every protocol alike; the table shows each figure's median round and
    /// its spread, and marks figures that moved more than 5% as noisy. Ratios between
    /// protocols are taken within each round and summed up by the median of the geometric
    /// means of every pair of rounds, with a 95% interval. Default 7 (1 with --quick).
    #[arg(long, value_name = "N")]
    pub rounds: Option<usize>,
    /// A fast look: 32-byte messages only, one round and 6 s in total (unless --sizes,
    /// --rounds or --duration say otherwise).
    #[arg(long)]
    pub quick: bool,
    /// Open-loop echo: this many messages per second over all connections, latency measured
    /// from each message's due time (coordinated omission corrected). Default: closed loop.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,
    /// Push workload: how often each connection asks the server to push.
    #[arg(long, default_value = "10ms", value_parser = parse_duration, value_name = "TIME")]
    pub push_interval: Duration,
    /// Resume TLS sessions on reconnect (as browsers do) instead of a full handshake each time.
    #[arg(long)]
    pub tls_resume: bool,
    /// Runtime threads for the lab (default: half the CPUs, at least 1).
    #[arg(long, value_name = "N")]
    pub server_threads: Option<usize>,
    /// Runtime threads for the load generator (default: the other half, at least 1).
    #[arg(long, value_name = "N")]
    pub client_threads: Option<usize>,
    /// Report folder (default: `protolab-report/<UTC timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Do not write a report folder; print only.
    #[arg(long, conflicts_with = "out")]
    pub no_report: bool,
    /// Emulate a WAN: the lab runs in a network namespace behind a link that adds this
    /// round-trip time (half each way): a veth pair with tc netem, or where the kernel has no
    /// netem, two TUN devices joined by protolab. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
    #[arg(long, value_parser = parse_duration, value_name = "TIME")]
    pub rtt: Option<Duration>,
    /// WAN emulation: packet loss in each direction, e.g. 1% (implies the namespace).
    #[arg(long, value_parser = wan::parse_loss, value_name = "PERCENT")]
    pub loss: Option<f64>,
    /// WAN emulation: rate limit in each direction, e.g. 10mbit (implies the namespace).
    #[arg(long, value_parser = wan::parse_bandwidth, value_name = "RATE")]
    pub bandwidth: Option<String>,
    /// WAN emulation: how to emulate the link (default: netem if the kernel has it, else
    /// userspace; tbf for --bandwidth alone). userspace works on every kernel but costs
    /// this process a copy and two syscalls per packet.
    #[arg(long, value_enum, value_name = "EMULATOR")]
    pub wan_emulator: Option<wan::Emulator>,
    /// Record the lab's traffic into capture.pcapng in the report folder, with the TLS
    /// secrets embedded so Wireshark and tshark decrypt HTTPS and WSS with no settings.
    /// Needs CAP_NET_RAW. The capture costs CPU: prefer --rate so it does not skew the
    /// figures, and it stops at --capture-max.
    #[arg(long, conflicts_with = "no_report")]
    pub capture: bool,
    /// Largest capture file; packets after it are not recorded.
    #[arg(long, default_value = "256MiB", value_parser = parse_size, value_name = "SIZE")]
    pub capture_max: u64,
    /// An earlier run's results.json: print how this run changed against it.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Run the workloads against a lab deployed elsewhere (`protolab up` on HOST, e.g. a VM
    /// with forwarded ports) instead of starting one: http://HOST:3000/, https://HOST:3001/,
    /// ws://HOST:3002/ws, wss://HOST:3003/ws, the SSE app (sse, poll, long-poll) on :3004,
    /// the HTTP/2 app (h2, h2-tls) on :3005, the gRPC app (grpc, grpc-tls) on :3006. Its
    /// server CPU cannot be measured from here.
    #[arg(long, value_name = "HOST", conflicts_with_all = ["rtt", "loss", "bandwidth", "wan_emulator", "server_threads"])]
    pub lab: Option<String>,
    /// A lab app elsewhere at another port or URL, PROTOCOL=PORT (on --lab HOST) or
    /// PROTOCOL=URL, comma-separated, e.g. `http=13000`, `wss=wss://lab.test:8443/ws`,
    /// `sse=http://lab.test:3004/events`, `h2=https://lab.test:3005/`, `grpc=lab.test:3006`.
    /// PROTOCOL is the app (http, https, ws, wss, sse, h2, grpc); h2-tls, poll ... name the
    /// app that serves them. Without --lab, URLs alone name the lab and every compared app
    /// needs one.
    #[arg(long = "lab-url", value_delimiter = ',', value_name = "PROTOCOL=URL", conflicts_with_all = ["rtt", "loss", "bandwidth", "wan_emulator", "server_threads"])]
    pub lab_urls: Vec<String>,
    /// The CA certificate (PEM) a lab elsewhere made its certificates with (that lab's
    /// ca.pem), to verify HTTPS and WSS. Default for a lab on this machine: this home's CA.
    #[arg(long, value_name = "FILE")]
    pub lab_ca: Option<PathBuf>,
    /// The TLS key log a lab elsewhere writes (`protolab up --keylog FILE`, shared or copied
    /// here), read after the runs so --capture can embed its secrets and decrypt HTTPS and
    /// WSS. Without it a capture of a lab elsewhere keeps TLS encrypted.
    #[arg(long, value_name = "FILE")]
    pub lab_keylog: Option<PathBuf>,
}

/// `--workloads` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    /// A new connection per message.
    Connect,
    /// Request/response over open connections.
    Echo,
    /// Server-to-client pushes.
    Push,
    /// --connections requests in flight at once: streams on one connection for h2 and gRPC,
    /// one connection each for HTTP/1.1 (WebSocket runs are skipped).
    Fanin,
}

impl WorkloadArg {
    pub(super) fn workload(self) -> Workload {
        match self {
            Self::Connect => Workload::Connect,
            Self::Echo => Workload::Echo,
            Self::Push => Workload::Push,
            Self::Fanin => Workload::Fanin,
        }
    }
}
