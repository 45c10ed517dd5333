//! `protolab-bench http`: protolab's HTTP app against nginx (one worker) under wrk, for a small
//! body of the same length, server pinned to core 0 and wrk to core 1.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::cpu;
use crate::driver::{protolab_bin, Options, Tool};
use crate::process::{free_port, run_pinned_client, Ready, Server, TempDir};
use crate::report::{best_rows, HttpRow, Results, Target};

/// The protolab URL path: a small text body (`hello world`).
const PATH: &str = "/echo?msg=hello%20world";
/// Body nginx serves when protolab's could not be fetched.
const DEFAULT_BODY: &[u8] = b"hello world";

/// Runs protolab-http and nginx under wrk and appends rows and the target to `results`.
pub fn run(opts: &Options, results: &mut Results) -> anyhow::Result<()> {
    Tool::Taskset.find(None)?;
    let wrk = Tool::Wrk.find(None)?;
    let nginx = if opts.skipped("nginx") {
        None
    } else {
        Some(Tool::Nginx.find(Some("nginx"))?)
    };
    let protolab = if opts.skipped("protolab-http") {
        None
    } else {
        Some(protolab_bin(opts)?)
    };
    let dir = TempDir::new("protolab-bench-http")?;

    if protolab.is_none() {
        results
            .notes
            .push(crate::report::skipped_note("protolab-http"));
    }
    if nginx.is_none() {
        results.notes.push(crate::report::skipped_note("nginx"));
    }
    // protolab's body, fetched once; nginx then serves the same bytes.
    let mut body: Option<Vec<u8>> = None;
    let mut all = Vec::new();
    for round in 0..opts.rounds {
        let tag = format!("round {}/{}", round + 1, opts.rounds);
        if let Some(protolab) = &protolab {
            let port = free_port()?;
            let url = format!("http://127.0.0.1:{port}{PATH}");
            let port_arg = port.to_string();
            let args = [
                "up",
                "--bind",
                "127.0.0.1",
                "--only",
                "http",
                "--http-port",
                &port_arg,
            ]
            .map(String::from);
            eprintln!("http: {tag}: starting protolab-http on 127.0.0.1:{port}");
            let row = Server::start(
                "protolab-http",
                protolab,
                &args,
                dir.path(),
                port,
                Ready::Line("ready"),
            )
            .and_then(|server| {
                if body.is_none() {
                    body = Some(fetch_body(port, PATH)?);
                }
                let len = body.as_ref().map(Vec::len);
                measure(opts, &wrk, &server, "protolab-http", &url, len)
            })
            .unwrap_or_else(|err| {
                eprintln!("error: protolab-http: {err:#}");
                failed_row("protolab-http", &url, format!("{err:#}"))
            });
            all.push(row);
        }
        if let Some(nginx) = &nginx {
            let port = free_port()?;
            let url = format!("http://127.0.0.1:{port}{PATH}");
            let body = body.clone().unwrap_or_else(|| DEFAULT_BODY.to_vec());
            eprintln!("http: {tag}: starting nginx on 127.0.0.1:{port}");
            let row = start_nginx(nginx, dir.path(), port, &body)
                .and_then(|server| measure(opts, &wrk, &server, "nginx", &url, Some(body.len())))
                .unwrap_or_else(|err| {
                    eprintln!("error: nginx: {err:#}");
                    failed_row("nginx", &url, format!("{err:#}"))
                });
            all.push(row);
        }
    }
    results.http = best_rows(&all, |r| r.req_per_sec, |r| r.server.clone());
    results.http_all = all;

    let rate = |name: &str, f: fn(&HttpRow) -> Option<f64>| {
        results.http.iter().find(|r| r.server == name).and_then(f)
    };
    let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let ratio = div(
        rate("protolab-http", |r| r.req_per_sec),
        rate("nginx", |r| r.req_per_sec),
    );
    let cpu_ratio = div(
        rate("protolab-http", |r| r.req_per_server_cpu_sec),
        rate("nginx", |r| r.req_per_server_cpu_sec),
    );
    if let Some(row) = results.http.iter_mut().find(|r| r.server == "nginx") {
        row.ratio = ratio;
    }
    if !opts.skipped("nginx") && !opts.skipped("protolab-http") {
        results.targets.push(Target {
            name: "protolab-http ≥ 1.0× nginx (small body)".to_owned(),
            goal: 1.0,
            ratio,
            cpu_ratio,
        });
    }
    for r in &results.http {
        results.notes.extend(crate::report::client_bound_note(
            "wrk",
            r.client_cpu_pct,
            &r.server,
        ));
    }
    Ok(())
}

/// Starts one-worker nginx on 127.0.0.1:`port` serving `body` (see [`nginx_conf`]), with its
/// config, temp files and error log in `dir`.
pub(crate) fn start_nginx(
    nginx: &Path,
    dir: &Path,
    port: u16,
    body: &[u8],
) -> anyhow::Result<Server> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(port, body, dir))
        .with_context(|| format!("writing {}", conf.display()))?;
    let args = vec![
        "-c".to_owned(),
        conf.display().to_string(),
        "-p".to_owned(),
        format!("{}/", dir.display()),
        "-e".to_owned(),
        dir.join("nginx-error.log").display().to_string(),
    ];
    Server::start("nginx", nginx, &args, dir, port, Ready::Port)
}

/// nginx with one worker and the same body at the same path, `return`ed from memory (its
/// fastest path). No access log, and keep-alive connections are not recycled every 1000
/// requests (nginx's default), since protolab does neither.
pub(crate) fn nginx_conf(port: u16, body: &[u8], dir: &Path) -> String {
    let mut escaped = String::new();
    for &b in body {
        match b {
            b'"' | b'\\' | b'$' => {
                escaped.push('\\');
                escaped.push(char::from(b));
            }
            b'\n' => escaped.push_str("\\n"),
            b'\r' => escaped.push_str("\\r"),
            b'\t' => escaped.push_str("\\t"),
            _ => escaped.push(char::from(b)),
        }
    }
    let dir = dir.display();
    format!(
        "worker_processes 1;\n\
         daemon off;\n\
         pid {dir}/nginx.pid;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   default_type text/plain;\n\
         \x20   keepalive_requests 100000000;\n\
         \x20   client_body_temp_path {dir}/body;\n\
         \x20   proxy_temp_path {dir}/proxy;\n\
         \x20   fastcgi_temp_path {dir}/fastcgi;\n\
         \x20   uwsgi_temp_path {dir}/uwsgi;\n\
         \x20   scgi_temp_path {dir}/scgi;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{port};\n\
         \x20       location = /echo {{ return 200 \"{escaped}\"; }}\n\
         \x20       location / {{ return 404; }}\n\
         \x20   }}\n\
         }}\n"
    )
}

/// GETs `path` once and returns the 200 response's body (Content-Length framed).
fn fetch_body(port: u16, path: &str) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("reading the response to GET {path}"))?;
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("response has no complete head")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        bail!("GET {path} answered `{status}`");
    }
    let len: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .context("response has no Content-Length")?;
    let body = raw
        .get(head_end + 4..head_end + 4 + len)
        .context("response body is short")?;
    Ok(body.to_vec())
}

fn measure(
    opts: &Options,
    wrk: &Path,
    server: &Server,
    name: &str,
    url: &str,
    body_bytes: Option<usize>,
) -> anyhow::Result<HttpRow> {
    let conns = opts.http_connections.to_string();
    let limit = opts.duration + Duration::from_secs(20);
    if !opts.warmup.is_zero() {
        let secs = opts.warmup.as_secs().max(1);
        run_pinned_client(
            wrk,
            &[
                "-t1".into(),
                "-c".into(),
                conns.clone(),
                format!("-d{secs}s"),
                url.into(),
            ],
            limit,
        )?;
    }
    let secs = opts.duration.as_secs().max(1);
    let before = cpu::tree_cpu(server.pid());
    let out = run_pinned_client(
        wrk,
        &[
            "-t1".into(),
            "-c".into(),
            conns,
            format!("-d{secs}s"),
            "--latency".into(),
            url.into(),
        ],
        limit,
    )?;
    let after = cpu::tree_cpu(server.pid());
    let wall = out.wall.as_secs_f64();
    let parsed =
        parse_wrk(&out.stdout).with_context(|| format!("parsing wrk output:\n{}", out.stdout))?;
    let server_cpu = match (before, after) {
        (Some(a), Some(b)) => Some((b - a).as_secs_f64()),
        _ => None,
    };
    eprintln!("http: {name:<14} {:>9.0} req/s", parsed.req_per_sec);
    Ok(HttpRow {
        server: name.to_owned(),
        url: url.to_owned(),
        body_bytes,
        req_per_sec: Some(parsed.req_per_sec),
        latency_avg_ms: parsed.avg_ms,
        latency_p50_ms: parsed.p50_ms,
        latency_p99_ms: parsed.p99_ms,
        server_cpu_pct: server_cpu.map(|c| 100.0 * c / wall),
        // wrk's total over its wall time, including connection set-up: close to its window.
        req_per_server_cpu_sec: server_cpu
            .filter(|&c| c > 0.0)
            .map(|c| parsed.req_per_sec * wall / c),
        client_cpu_pct: out.cpu_secs.map(|c| 100.0 * c / wall),
        ratio: None,
        errors: parsed.errors,
        error: None,
    })
}

fn failed_row(server: &str, url: &str, error: String) -> HttpRow {
    HttpRow {
        server: server.to_owned(),
        url: url.to_owned(),
        body_bytes: None,
        req_per_sec: None,
        latency_avg_ms: None,
        latency_p50_ms: None,
        latency_p99_ms: None,
        server_cpu_pct: None,
        req_per_server_cpu_sec: None,
        client_cpu_pct: None,
        ratio: None,
        errors: 0,
        error: Some(error),
    }
}

/// What we read from wrk's report.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Wrk {
    pub(crate) req_per_sec: f64,
    avg_ms: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    errors: u64,
}

pub(crate) fn parse_wrk(out: &str) -> anyhow::Result<Wrk> {
    let mut w = Wrk::default();
    let mut rps = None;
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", v, ..] => rps = v.parse().ok(),
            ["Latency", avg, _stdev, _max, _pct] => w.avg_ms = duration_ms(avg),
            ["50%", v] => w.p50_ms = duration_ms(v),
            ["99%", v] => w.p99_ms = duration_ms(v),
            ["Non-2xx", "or", "3xx", "responses:", n] => w.errors += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                w.errors += rest
                    .iter()
                    .filter_map(|t| t.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    w.req_per_sec = rps.context("no `Requests/sec:` line")?;
    Ok(w)
}

/// wrk's and h2load's durations in ms: `706.49us`, `1.25ms`, `2.00s`.
pub(crate) fn duration_ms(s: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 5s test @ http://127.0.0.1:8080/echo
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   706.49us  156.09us   3.33ms   84.79%
    Req/Sec    70.63k     2.68k   75.41k    80.00%
  Latency Distribution
     50%  690.00us
     75%  756.00us
     90%  847.00us
     99%    1.25ms
  351422 requests in 5.00s, 55.63MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  70260.29
Transfer/sec:     11.12MB
";

    #[test]
    fn parses_wrk_report() {
        let w = parse_wrk(WRK).unwrap();
        assert_eq!(w.req_per_sec, 70260.29);
        assert_eq!(w.p99_ms, Some(1.25));
        assert!((w.avg_ms.unwrap() - 0.70649).abs() < 1e-9);
        assert_eq!(w.errors, 3);
    }

    #[test]
    fn escapes_nginx_body() {
        let conf = nginx_conf(1, b"say \"hi\"\n", Path::new("/tmp/x"));
        assert!(conf.contains(r#"return 200 "say \"hi\"\n";"#));
    }
}
