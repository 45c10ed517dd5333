//! [`run`]: the driver of one load run. It resolves the target into a shared plan, spawns
//! one worker per connection (`echo`, `connect`, `push`, `fanin`, each in its own module),
//! and merges the workers' [`stats`] into the [`Report`], which [`report`] builds. What a
//! run does is its [`Config`]; what the workers share is the [`budget`].

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::task::JoinSet;

use crate::client::Plan;
use crate::histogram::PerThread;
use crate::report::{ErrorKind, Report};
use crate::workload::Workload;
use crate::Error;

mod budget;
mod config;
mod connect;
mod echo;
mod fanin;
mod push;
mod report;
mod stats;

use budget::{Budget, Schedule};
pub use config::{check_header, Config, MAX_MESSAGE};
use stats::Stats;

/// Runs the load and returns what it measured.
///
/// Returns an error only for what stops the run from starting (bad config, TLS config, name
/// resolution); failures of connections and exchanges are counted in [`Report::errors`].
/// The run ends by `duration` plus the connect timeout at worst, even if the server hangs.
///
/// Cancel safety: dropping the future drops every connection (the server sees resets or FINs).
pub async fn run(config: Config) -> Result<Report, Error> {
    config.validate()?;
    let plan = Arc::new(plan(&config).await?);
    let claimed = Arc::new(AtomicU64::new(0));
    let echo_latency = Arc::new(PerThread::new());
    let start = Instant::now();
    let end = start + config.duration;
    let measured_from = start + config.warmup;
    let mut tasks = JoinSet::new();
    // Each connection's share of the rate: one message per `interval`.
    let interval = config
        .rate
        .map(|rate| Duration::from_secs_f64(config.connections as f64 / rate));
    // fanin on HTTP/2: one worker multiplexes every stream on its one connection.
    let multiplexed = config.workload == Workload::Fanin && plan.h2.is_some();
    let workers = if multiplexed { 1 } else { config.connections };
    let streams = config.connections;
    for index in 0..workers {
        let (plan, claimed) = (Arc::clone(&plan), Arc::clone(&claimed));
        let echo_latency = Arc::clone(&echo_latency);
        let stop = config.stop.clone();
        let max = config.max_messages;
        let workload = config.workload;
        // Stagger the connections' schedules so the total rate is smooth. Push connections
        // open staggered over one push interval for the same reason: the server's schedule
        // for each starts at its upgrade, and connections opened together have their pushes
        // fall due in the same millisecond timer tick, where each waits behind the others'
        // writes and reads — how many did varied from round to round, and so did p50.
        let share = index as f64 / config.connections as f64;
        let schedule = match (interval, workload) {
            (Some(every), _) => Some(Schedule {
                every,
                offset: every.mul_f64(share),
            }),
            (None, Workload::Push) => Some(Schedule {
                every: config.push_interval,
                offset: config.push_interval.mul_f64(share),
            }),
            (None, _) => None,
        };
        tasks.spawn(async move {
            let budget = Budget {
                claimed,
                max,
                end,
                measured_from,
                schedule,
                echo_latency,
                stop,
            };
            match workload {
                Workload::Echo => echo::echo_worker(&plan, &budget).await,
                Workload::Connect => connect::connect_worker(&plan, &budget).await,
                Workload::Push => push::push_worker(&plan, &budget).await,
                Workload::Fanin if multiplexed => fanin::fanin_worker(plan, budget, streams).await,
                Workload::Fanin => echo::echo_worker(&plan, &budget).await,
            }
        });
    }
    let mut total = Stats::default();
    // Every await in a worker is bounded by `end` (or a close bound after it); this is a
    // backstop against a bug, not a timeout anyone should hit.
    let backstop = end + config.connect_timeout + Duration::from_secs(2);
    loop {
        match tokio::time::timeout_at(backstop.into(), tasks.join_next()).await {
            Ok(Some(Ok(stats))) => total.merge(&stats),
            Ok(Some(Err(join))) => total.errors.add(ErrorKind::Io, &format!("worker: {join}")),
            Ok(None) => break,
            Err(_) => {
                tasks.abort_all();
                total.errors.add(
                    ErrorKind::Timeout,
                    "workers did not stop at the end of the run",
                );
                break;
            }
        }
    }
    total.latency.merge(&echo_latency.merged());
    Ok(total.report(&config, start, measured_from))
}

/// Resolves the host and builds what every connection shares.
pub(crate) async fn plan(config: &Config) -> Result<Plan, Error> {
    let mut target = config.target.clone();
    // The SSE feed pushes at the lab's interval, not one a stream asks for.
    if config.workload == Workload::Push && target.scheme.is_ws() {
        let joiner = if target.path.contains('?') { '&' } else { '?' };
        target.path = format!(
            "{}{joiner}push_ms={}",
            target.path,
            config.push_interval.as_millis()
        );
    }
    let target = &target;
    let addrs: Vec<SocketAddr> = match config.connect_to {
        Some(addr) => vec![addr],
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|source| Error::Resolve {
                host: target.host.clone(),
                source,
            })?
            .collect(),
    };
    // Prefer IPv4: `localhost` often resolves to ::1 first while labs listen on 127.0.0.1.
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| Error::Resolve {
            host: target.host.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        })?;
    let tls = if target.scheme.is_tls() {
        let mut tls = crate::tls::client_config(&config.trust)?;
        if target.scheme.is_h2() {
            let mut h2 = (*tls).clone();
            h2.alpn_protocols = vec![crate::client::http2::ALPN_H2.to_vec()];
            tls = Arc::new(h2);
        }
        if !config.tls_resumption {
            let mut full = (*tls).clone();
            full.resumption = rustls::client::Resumption::disabled();
            tls = Arc::new(full);
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|_| Error::BadUrl {
            url: target.to_string(),
            reason: "the host is not a valid TLS server name",
        })?;
        Some((tls, name))
    } else {
        None
    };
    let mut payload = Vec::new();
    config.payload.fill(&mut payload, config.size, 0);
    let http_request = if target.scheme.is_ws()
        || target.scheme.is_sse()
        || target.scheme.is_h2()
        || target.scheme.is_poll()
    {
        Vec::new()
    } else {
        Plan::http_request(target, &payload, &config.headers)
    };
    let h2 = match (target.scheme.is_h2(), config.workload) {
        (false, _) => None,
        (true, Workload::Push) => Some(crate::client::http2::H2Request::grpc_push(
            target,
            config.push_interval,
            &config.headers,
        )?),
        (true, _) => Some(crate::client::http2::H2Request::new(
            target,
            &payload,
            &config.headers,
        )?),
    };
    Ok(Plan {
        target: target.clone(),
        addr,
        tls,
        payload,
        http_request,
        headers: config.headers.clone(),
        subprotocols: config.subprotocols.clone(),
        deflate: config.deflate,
        h2,
        payload_kind: config.payload,
        connect_timeout: config.connect_timeout,
        request_timeout: config.request_timeout,
        sse_echo: target.scheme.is_sse() && config.workload == Workload::Echo,
        poll_interval: config.push_interval,
    })
}
