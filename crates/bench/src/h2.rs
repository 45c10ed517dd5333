//! `protolab-bench h2`: protolab's HTTP/2 app against nginx (one worker, `http2`) under
//! h2load, h2c with prior knowledge and h2 over TLS (ALPN), server pinned to core 0 and h2load
//! (one thread) to core 1, rounds interleaved, median and min–max per server and scenario.
//!
//! What each serves, so the comparison is fair: `GET /echo?msg=hello%20world` is answered by
//! protolab's HTTP router (the 11-byte message) and by nginx's `return 200 "hello world"` from
//! memory, its fastest path. `POST /echo` with a 1 KiB body is echoed by protolab (it reads the
//! body and sends it back); nginx 1.22 has no echo without a third-party module, so it reads
//! and discards the body and `return`s the same 1 KiB from memory. Both answer 1 KiB; nginx
//! does slightly less work. Both speak TLS 1.2–1.3 with a certificate from protolab's CA (the
//! same key type), and neither logs requests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use serde::Serialize;

use crate::cpu;
use crate::driver::Tool;
use crate::process::{free_port, run_pinned_client, start_protolab_app, Ready, Server, TempDir};

/// The servers, in the order each round runs them.
pub const SERVERS: [&str; 2] = ["protolab-h2", "nginx"];

/// The GET target: protolab answers the message, nginx the same bytes.
const GET_PATH: &str = "/echo?msg=hello%20world";
const GET_BODY: &str = "hello world";
/// Bytes of the POST body (and of both servers' answer).
const POST_BYTES: usize = 1024;

/// Command line of `protolab-bench h2`.
#[derive(Debug, Args)]
pub struct H2Args {
    /// The protolab binary (a release build). Default: `protolab` next to this binary.
    #[arg(long, value_name = "PATH")]
    pub protolab: Option<PathBuf>,
    /// Measured seconds per h2load run (`-D`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub duration: u64,
    /// Warm-up seconds before each measured window (`--warm-up-time`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(0..=10))]
    pub warmup: u64,
    /// Rounds over both servers (interleaved); the table shows the median and min–max.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// h2load loads as CONNSxSTREAMS (`-c` × `-m`), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10x10,100x1", value_parser = parse_load)]
    pub loads: Vec<(u32, u32)>,
    /// Leave a server out: protolab-h2, nginx. Repeatable.
    #[arg(long, value_name = "SERVER")]
    pub skip: Vec<String>,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// `10x10`: connections × concurrent streams per connection.
pub(crate) fn parse_load(text: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{text}` is not CONNSxSTREAMS like 10x10 (1 to 1000 each)");
    let (c, m) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let c: u32 = c.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if (1..=1000).contains(&c) && (1..=1000).contains(&m) {
        Ok((c, m))
    } else {
        Err(bad())
    }
}

/// One h2load run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// `protolab-h2` or `nginx`.
    pub server: String,
    /// `h2c` or `h2-tls`.
    pub transport: String,
    /// `GET 11 B` or `POST 1 KiB`.
    pub request: String,
    /// `CONNS×STREAMS`.
    pub load: String,
    /// 1-based round.
    pub round: u32,
    /// Requests per second over the measured window (h2load's figure).
    pub req_per_sec: Option<f64>,
    /// h2load's mean time per request, ms.
    pub mean_ms: Option<f64>,
    /// Server CPU (process tree) over warm-up and window, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// h2load's CPU over its whole run, % of one core.
    pub client_cpu_pct: Option<f64>,
    /// Requests that did not finish (h2load's failed, errored and timed out; those in flight
    /// when the window ends count too).
    pub failed: u64,
    /// Why the run has no figures.
    pub error: Option<String>,
}

/// One scenario's summary over rounds: medians, ranges and the ratio.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `h2c` or `h2-tls`.
    pub transport: String,
    /// `GET 11 B` or `POST 1 KiB`.
    pub request: String,
    /// `CONNS×STREAMS`.
    pub load: String,
    /// protolab req/s: median, min, max.
    pub protolab: Option<[f64; 3]>,
    /// nginx req/s: median, min, max.
    pub nginx: Option<[f64; 3]>,
    /// Median protolab req/s ÷ median nginx req/s.
    pub ratio: Option<f64>,
    /// Median req per server CPU-second, protolab ÷ nginx.
    pub cpu_ratio: Option<f64>,
}

/// Everything `protolab-bench h2` measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Every run of every round.
    pub runs: Vec<Run>,
    /// One line per scenario.
    pub summary: Vec<Summary>,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub loadavg: Option<(f64, f64)>,
    /// Skips and warnings.
    pub notes: Vec<String>,
}

struct Scenario {
    tls: bool,
    post: bool,
    conns: u32,
    streams: u32,
}

impl Scenario {
    fn transport(&self) -> &'static str {
        if self.tls {
            "h2-tls"
        } else {
            "h2c"
        }
    }

    fn request(&self) -> String {
        if self.post {
            format!("POST {} KiB", POST_BYTES / 1024)
        } else {
            format!("GET {} B", GET_BODY.len())
        }
    }

    fn load(&self) -> String {
        format!("{}×{}", self.conns, self.streams)
    }
}

/// `protolab-bench h2`: a usage error (exit 2) for an unknown `--skip`, else the run, the
/// table on stdout and the JSON file.
pub fn main(args: &H2Args) -> anyhow::Result<std::process::ExitCode> {
    if let Some(usage) = crate::driver::unknown_skip(&args.skip, &SERVERS) {
        return Ok(usage);
    }
    crate::process::install_signal_handler();
    let results = run(args)?;
    print!("{}", render(&results));
    crate::report::write_json(args.json.as_deref(), &results)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the bench and returns the results ([`render`] prints them).
pub fn run(args: &H2Args) -> anyhow::Result<Results> {
    Tool::Taskset.find(None)?;
    let h2load = crate::process::find_in_path("h2load").context(
        "`h2load` not found on PATH: install it with `apt-get install -y nghttp2-client`",
    )?;
    let me = std::env::current_exe().context("finding the protolab-bench binary")?;
    let protolab = args
        .protolab
        .clone()
        .unwrap_or_else(|| me.with_file_name("protolab"));
    if !protolab.is_file() {
        bail!(
            "protolab binary {} not found: build it with `cargo build --release -p protolab`, or point at it with --protolab PATH",
            protolab.display()
        );
    }
    let nginx = if args.skip.iter().any(|s| s == "nginx") {
        None
    } else {
        Some(Tool::Nginx.find(Some("nginx"))?)
    };
    let with_protolab = !args.skip.iter().any(|s| s == "protolab-h2");
    let dir = TempDir::new("protolab-bench-h2")?;
    let home = dir.path().join("home");
    let (cert, key) = issue_cert(&protolab, &home)?;
    let post_body = dir.path().join("post-body");
    std::fs::write(&post_body, vec![b'x'; POST_BYTES]).context("writing the POST body")?;

    let mut scenarios = Vec::new();
    for tls in [false, true] {
        for post in [false, true] {
            for &(conns, streams) in &args.loads {
                scenarios.push(Scenario {
                    tls,
                    post,
                    conns,
                    streams,
                });
            }
        }
    }
    let mut results = Results::default();
    let load = crate::report::LoadWatch::start();
    let h2 = H2load {
        program: &h2load,
        post_body: &post_body,
        duration: args.duration,
        warmup: args.warmup,
    };
    for round in 1..=args.rounds {
        if with_protolab {
            let port = free_port()?;
            eprintln!(
                "h2: round {round}/{}: protolab-h2 on 127.0.0.1:{port}",
                args.rounds
            );
            let started = start_protolab_app(&protolab, &home, dir.path(), "h2", port);
            for s in &scenarios {
                results.runs.push(h2.measure(
                    started.as_ref(),
                    "protolab-h2",
                    [port, port],
                    s,
                    round,
                ));
            }
        }
        if let Some(nginx) = &nginx {
            let (h2c_port, tls_port) = (free_port()?, free_port()?);
            eprintln!(
                "h2: round {round}/{}: nginx on 127.0.0.1:{h2c_port} (h2c) and :{tls_port} (TLS)",
                args.rounds
            );
            let started = start_nginx(
                nginx,
                dir.path(),
                [h2c_port, tls_port],
                [cert.as_path(), key.as_path()],
            );
            for s in &scenarios {
                results.runs.push(h2.measure(
                    started.as_ref(),
                    "nginx",
                    [h2c_port, tls_port],
                    s,
                    round,
                ));
            }
        }
    }
    results.loadavg = load.end();
    for s in &scenarios {
        results.summary.push(summarize(&results.runs, s));
    }
    for r in &results.runs {
        let run = format!(
            "{} ({} {} {}, round {})",
            r.server, r.transport, r.request, r.load, r.round
        );
        results.notes.extend(crate::report::client_bound_note(
            "h2load",
            r.client_cpu_pct,
            &run,
        ));
    }
    results
        .notes
        .extend(args.skip.iter().map(|s| crate::report::skipped_note(s)));
    Ok(results)
}

/// `protolab certs issue 127.0.0.1 localhost` in `home`: the certificate nginx serves, from
/// the CA that signs protolab's own.
fn issue_cert(protolab: &Path, home: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let out = Command::new(protolab)
        .arg("--home")
        .arg(home)
        .args(["certs", "issue", "127.0.0.1", "localhost"])
        .output()
        .context("running protolab certs issue")?;
    if !out.status.success() {
        bail!(
            "protolab certs issue failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let cert = home.join("certs/127.0.0.1+1.pem");
    let key = home.join("certs/127.0.0.1+1-key.pem");
    if !(cert.is_file() && key.is_file()) {
        bail!(
            "protolab certs issue did not write {} and its key",
            cert.display()
        );
    }
    Ok((cert, key))
}

fn start_nginx(
    nginx: &Path,
    dir: &Path,
    ports: [u16; 2],
    cert_key: [&Path; 2],
) -> anyhow::Result<Server> {
    let conf = dir.join("nginx-h2.conf");
    std::fs::write(&conf, nginx_conf(ports, cert_key, dir))
        .with_context(|| format!("writing {}", conf.display()))?;
    let args = vec![
        "-c".to_owned(),
        conf.display().to_string(),
        "-p".to_owned(),
        format!("{}/", dir.display()),
        "-e".to_owned(),
        dir.join("nginx-h2-error.log").display().to_string(),
    ];
    let server = Server::start("nginx", nginx, &args, dir, ports[0], Ready::Port)?;
    let tls = std::net::SocketAddr::from(([127, 0, 0, 1], ports[1]));
    std::net::TcpStream::connect_timeout(&tls, Duration::from_secs(5))
        .with_context(|| format!("nginx does not accept on its TLS port {tls}"))?;
    Ok(server)
}

/// One worker, http2 on both listeners (h2c with prior knowledge and TLS with ALPN), the
/// answers from memory, no access log, keep-alive never recycled (protolab does not), and
/// room for as many concurrent streams as h2load opens.
fn nginx_conf(ports: [u16; 2], [cert, key]: [&Path; 2], dir: &Path) -> String {
    let [h2c, tls] = ports;
    let (cert, key, dir) = (cert.display(), key.display(), dir.display());
    let post_answer = "x".repeat(POST_BYTES);
    format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {dir}/nginx-h2.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   default_type text/plain;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   http2_max_concurrent_streams 1000;\n\
         \x20   client_body_temp_path {dir}/body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         \x20   ssl_protocols TLSv1.2 TLSv1.3;\n\
         \x20   ssl_certificate {cert};\n\
         \x20   ssl_certificate_key {key};\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{h2c} http2;\n\
         \x20       listen 127.0.0.1:{tls} ssl http2;\n\
         \x20       location = /echo {{\n\
         \x20           if ($request_method = POST) {{ return 200 \"{post_answer}\"; }}\n\
         \x20           return 200 \"{GET_BODY}\";\n\
         \x20       }}\n\
         \x20       location / {{ return 404; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

struct H2load<'a> {
    program: &'a Path,
    post_body: &'a Path,
    duration: u64,
    warmup: u64,
}

impl H2load<'_> {
    /// One h2load run against a started server (or the row that says why it could not run).
    fn measure(
        &self,
        server: Result<&Server, &anyhow::Error>,
        name: &str,
        [h2c_port, tls_port]: [u16; 2],
        s: &Scenario,
        round: u32,
    ) -> Run {
        let mut run = Run {
            server: name.to_owned(),
            transport: s.transport().to_owned(),
            request: s.request(),
            load: s.load(),
            round,
            req_per_sec: None,
            mean_ms: None,
            server_cpu_pct: None,
            client_cpu_pct: None,
            failed: 0,
            error: None,
        };
        let outcome = server
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|server| {
                let url = if s.tls {
                    format!("https://127.0.0.1:{tls_port}{GET_PATH}")
                } else {
                    format!("http://127.0.0.1:{h2c_port}{GET_PATH}")
                };
                self.once(server, s, &url)
            });
        match outcome {
            Ok((parsed, server_cpu_pct, client_cpu_pct)) => {
                eprintln!(
                    "h2: {name:<12} {:<6} {:<10} {:<7} {:>9.0} req/s",
                    run.transport, run.request, run.load, parsed.req_per_sec
                );
                run.req_per_sec = Some(parsed.req_per_sec);
                run.mean_ms = parsed.mean_ms;
                run.failed = parsed.failed;
                run.server_cpu_pct = server_cpu_pct;
                run.client_cpu_pct = client_cpu_pct;
                // More unfinished requests than can be in flight at the window's end, or any
                // answer but 2xx, is a server fault, not a figure.
                let in_flight = u64::from(s.conns) * u64::from(s.streams);
                if parsed.not_2xx > 0 || parsed.failed > in_flight {
                    run.error = Some(format!(
                        "{} answers were not 2xx and {} requests failed (at most {in_flight} may be cut off at the window's end)",
                        parsed.not_2xx, parsed.failed
                    ));
                    run.req_per_sec = None;
                }
            }
            Err(err) => {
                eprintln!("error: {name} {} {}: {err:#}", run.transport, run.request);
                run.error = Some(format!("{err:#}"));
            }
        }
        run
    }

    fn once(
        &self,
        server: &Server,
        s: &Scenario,
        url: &str,
    ) -> anyhow::Result<(H2loadReport, Option<f64>, Option<f64>)> {
        let mut args = vec![
            "-t1".to_owned(),
            "-c".to_owned(),
            s.conns.to_string(),
            "-m".to_owned(),
            s.streams.to_string(),
            "-D".to_owned(),
            self.duration.to_string(),
        ];
        if self.warmup > 0 {
            args.push("--warm-up-time".to_owned());
            args.push(self.warmup.to_string());
        }
        if s.post {
            args.push("-d".to_owned());
            args.push(self.post_body.display().to_string());
        }
        args.push(url.to_owned());
        let limit = Duration::from_secs(self.duration + self.warmup + 20);
        let before = cpu::tree_cpu(server.pid());
        let out = run_pinned_client(self.program, &args, limit)?;
        let after = cpu::tree_cpu(server.pid());
        let wall = out.wall.as_secs_f64();
        let parsed = parse_h2load(&out.stdout)
            .with_context(|| format!("parsing h2load output:\n{}", out.stdout))?;
        let server_cpu = before
            .zip(after)
            .map(|(a, b)| 100.0 * (b.saturating_sub(a)).as_secs_f64() / wall);
        let client_cpu = out.cpu_secs.map(|c| 100.0 * c / wall);
        Ok((parsed, server_cpu, client_cpu))
    }
}

/// What we read from h2load's report.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct H2loadReport {
    pub(crate) req_per_sec: f64,
    pub(crate) mean_ms: Option<f64>,
    /// Requests that failed, errored or timed out: in `-D` mode h2load stops its clients at
    /// the window's end and counts the requests then in flight here too.
    pub(crate) failed: u64,
    /// Answers with a status other than 2xx.
    pub(crate) not_2xx: u64,
}

pub(crate) fn parse_h2load(out: &str) -> anyhow::Result<H2loadReport> {
    let mut report = H2loadReport::default();
    let mut rps = None;
    let mut succeeded = None;
    let mut ok_2xx = None;
    let mut done = None;
    for line in out.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("finished in ") {
            rps = rest
                .split(", ")
                .find_map(|p| p.strip_suffix(" req/s"))
                .and_then(|v| v.trim().parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                match part.split_once(' ') {
                    Some((n, "done")) => done = n.parse::<u64>().ok(),
                    Some((n, "succeeded")) => succeeded = n.parse::<u64>().ok(),
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            for part in rest.split(", ") {
                match part.split_once(' ') {
                    Some((n, "2xx")) => ok_2xx = n.parse::<u64>().ok(),
                    Some((n, _)) => report.not_2xx += n.parse::<u64>().unwrap_or(0),
                    None => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("time for request:") {
            // min, max, mean, sd, +/- sd
            report.mean_ms = rest
                .split_whitespace()
                .nth(2)
                .and_then(crate::http::duration_ms);
        }
    }
    report.req_per_sec = rps.context("no `finished in …, N req/s` line")?;
    let done = done.context("no `requests:` line")?;
    report.failed = done.saturating_sub(succeeded.unwrap_or(0));
    if ok_2xx.is_none() {
        bail!("no `status codes:` line");
    }
    if done == 0 {
        bail!("h2load completed no request");
    }
    Ok(report)
}

/// Median, min and max of the finite `values` ([`crate::report::spread`]), as the JSON's
/// `[median, min, max]`; `None` when there are none.
pub(crate) fn spread(values: Vec<f64>) -> Option<[f64; 3]> {
    crate::report::spread(values).map(|s| [s.median, s.min, s.max])
}

fn summarize(runs: &[Run], s: &Scenario) -> Summary {
    let of = |server: &str| -> Vec<&Run> {
        runs.iter()
            .filter(|r| {
                r.server == server
                    && r.transport == s.transport()
                    && r.request == s.request()
                    && r.load == s.load()
            })
            .collect()
    };
    let rates = |rs: &[&Run]| spread(rs.iter().filter_map(|r| r.req_per_sec).collect());
    let per_cpu = |rs: &[&Run]| {
        spread(
            rs.iter()
                .filter_map(|r| {
                    let cpu = r.server_cpu_pct.filter(|&c| c > 0.0)?;
                    Some(r.req_per_sec? / (cpu / 100.0))
                })
                .collect(),
        )
    };
    let (p, n) = (of("protolab-h2"), of("nginx"));
    let protolab = rates(&p);
    let nginx = rates(&n);
    let div = |a: Option<[f64; 3]>, b: Option<[f64; 3]>| match (a, b) {
        (Some(a), Some(b)) if b[0] > 0.0 => Some(a[0] / b[0]),
        _ => None,
    };
    Summary {
        transport: s.transport().to_owned(),
        request: s.request(),
        load: s.load(),
        ratio: div(protolab, nginx),
        cpu_ratio: div(per_cpu(&p), per_cpu(&n)),
        protolab,
        nginx,
    }
}

/// The table `protolab-bench h2` prints, one ratio line per scenario at the end.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    let fmt = |s: Option<[f64; 3]>| match s {
        Some([m, lo, hi]) => format!("{m:>8.0} ({lo:.0}–{hi:.0})"),
        None => format!("{:>8}", "—"),
    };
    out.push_str(
        "HTTP/2 under h2load (-t1, server on core 0, h2load on core 1), req/s median (min–max)\n",
    );
    out.push_str(&format!(
        "{:<7} {:<10} {:<8} {:<26} {:<26} {:>7} {:>9}\n",
        "", "request", "load", "protolab-h2", "nginx (1 worker)", "ratio", "per CPU"
    ));
    for s in &results.summary {
        out.push_str(&format!(
            "{:<7} {:<10} {:<8} {:<26} {:<26} {:>7} {:>9}\n",
            s.transport,
            s.request,
            s.load,
            fmt(s.protolab),
            fmt(s.nginx),
            s.ratio.map_or("—".to_owned(), |r| format!("{r:.2}×")),
            s.cpu_ratio.map_or("—".to_owned(), |r| format!("{r:.2}×")),
        ));
    }
    for r in results.runs.iter().filter(|r| r.error.is_some()) {
        out.push_str(&format!(
            "error: {} {} {} {} round {}: {}\n",
            r.server,
            r.transport,
            r.request,
            r.load,
            r.round,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    out.push_str(&crate::report::trailer(&results.notes, results.loadavg));
    for s in &results.summary {
        if let Some(r) = s.ratio {
            let verdict = if r >= 1.0 { "met" } else { "MISSED" };
            out.push_str(&format!(
                "ratio protolab-h2/nginx {} {} {}: {r:.2}× (target ≥ 1.0×: {verdict})\n",
                s.transport, s.request, s.load
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H2LOAD: &str = "starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 1s of warm-up time and 5s of main duration for measurements.
Warm-up started for thread #0.
progress: 10% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 5.00s, 41234.60 req/s, 1.66MB/s
requests: 206173 total, 206273 started, 206173 done, 206170 succeeded, 3 failed, 0 errored, 0 timeout
status codes: 206170 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.30MB (8702481) total, 1.18MB (1237038) headers (space savings 95.24%), 2.16MB (2267903) data
                     min         max         mean         sd        +/- sd
time for request:      184us     12.33ms      2.41ms       622us    72.35%
time for connect:      262us      1.03ms       669us       232us    60.00%
time to 1st byte:     1.98ms      2.39ms      2.15ms       124us    70.00%
req/s           :    4112.30     4135.69     4123.46        7.31    60.00%
";

    #[test]
    fn parses_h2load_report() {
        let r = parse_h2load(H2LOAD).unwrap();
        assert_eq!(r.req_per_sec, 41234.60);
        assert_eq!((r.failed, r.not_2xx), (3, 0));
        assert!((r.mean_ms.unwrap() - 2.41).abs() < 1e-9);
    }

    #[test]
    fn counts_answers_other_than_2xx() {
        let report = H2LOAD.replace(
            "206170 2xx, 0 3xx, 0 4xx, 0 5xx",
            "206168 2xx, 0 3xx, 2 4xx, 0 5xx",
        );
        assert_eq!(parse_h2load(&report).unwrap().not_2xx, 2);
    }

    #[test]
    fn a_report_without_a_rate_is_an_error() {
        assert!(parse_h2load("requests: 0 total, 0 started, 0 done").is_err());
    }

    #[test]
    fn median_and_range() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), Some([2.0, 1.0, 3.0]));
        assert_eq!(spread(vec![4.0, 1.0]), Some([2.5, 1.0, 4.0]));
        assert_eq!(spread(vec![]), None);
    }

    #[test]
    fn loads_parse() {
        assert_eq!(parse_load("10x10"), Ok((10, 10)));
        assert!(parse_load("0x1").is_err());
        assert!(parse_load("10").is_err());
    }

    #[test]
    fn nginx_answers_both_requests_over_both_listeners() {
        let conf = nginx_conf(
            [1, 2],
            [Path::new("/c.pem"), Path::new("/k.pem")],
            Path::new("/tmp/x"),
        );
        assert!(conf.contains("listen 127.0.0.1:1 http2;"));
        assert!(conf.contains("listen 127.0.0.1:2 ssl http2;"));
        assert!(conf.contains(&format!("return 200 \"{}\";", "x".repeat(POST_BYTES))));
        assert!(conf.contains("return 200 \"hello world\";"));
    }
}
