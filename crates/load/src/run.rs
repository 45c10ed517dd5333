//! [`Config`] and [`run`]: workers, one per connection, each returning its own histograms and
//! counters; the run merges them into a [`Report`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::task::JoinSet;

use protolab_wire::ws::deflate::{Offer, Params};

use crate::client::{Conn, Counts, Failure, Opened, Plan};
use crate::histogram::{Latency, PerThread};
use crate::payload::Payload;
use crate::report::{
    Bytes, Compression, ErrorKind, Errors, Histograms, Phases, Polls, Report, Tcp,
};
use crate::target::Target;
use crate::tcp_info::{header_bytes_per_packet, TcpCounters};
use crate::tls::Trust;
use crate::workload::Workload;
use crate::Error;

mod fanin;

/// Largest message: the WebSocket decoder's default frame limit.
pub const MAX_MESSAGE: usize = 16 << 20;

/// One load run. Build with [`Config::new`] and change fields.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to send load.
    pub target: Target,
    /// What each connection does. Default [`Workload::Echo`].
    pub workload: Workload,
    /// Concurrent workers (connections for `echo`). Default 1.
    pub connections: usize,
    /// Payload bytes per message, at most [`MAX_MESSAGE`]. Default 32. HTTP sends it as a
    /// `POST` body (to `/echo` when the URL has no path), WebSocket as one binary frame.
    pub size: usize,
    /// The run stops after this long. Default 10 s.
    pub duration: Duration,
    /// ... or after this many exchanges were started, whichever comes first. Default
    /// `u64::MAX`.
    pub max_messages: u64,
    /// Open loop (echo workload only): send this many messages per second in total, spread
    /// evenly over the connections, each on a fixed schedule. Each connection still has one
    /// message in flight, so a message due while the previous one is outstanding goes out
    /// late; its latency is then measured from when it was *due*, not when it went out, so a
    /// stalled server shows up in the percentiles instead of silently lowering the send rate
    /// (coordinated omission, corrected as wrk2 does). A message sent on time is measured from
    /// its send, so the client's own timer (millisecond resolution) is not charged to the
    /// server. Default `None`: closed loop, as fast as echoes return.
    pub rate: Option<f64>,
    /// What TLS trusts (https and wss only). Default: nothing, which fails for TLS targets.
    pub trust: Trust,
    /// Let connections resume earlier TLS sessions (session tickets / PSK, RFC 8446 §2.2), as
    /// browsers do. Default `false`: every connection does a full handshake (certificate and
    /// key exchange), so `connect` measures the full cost.
    pub tls_resumption: bool,
    /// Extra request headers (`Name`, `value`), after the client's own.
    pub headers: Vec<(String, String)>,
    /// WebSocket subprotocols to offer (`Sec-WebSocket-Protocol`).
    pub subprotocols: Vec<String>,
    /// Bound on one exchange (request to whole echo). Default 5 s. A longer wait counts a
    /// [`ErrorKind::Timeout`] and ends the connection.
    pub request_timeout: Duration,
    /// Bound on opening a connection (TCP, TLS, upgrade). Default 5 s.
    pub connect_timeout: Duration,
    /// Push workload: the interval each connection asks the server to push at. Default 10 ms.
    pub push_interval: Duration,
    /// WebSocket only: offer permessage-deflate (RFC 7692) with this offer, compress what is
    /// sent and inflate what comes back once the server accepts. Default `None`. Byte
    /// counts stay what crosses the wire; [`Report::compression`] says what was agreed.
    pub deflate: Option<Offer>,
    /// What the messages carry. Default [`Payload::Alphabet`]; use [`Payload::Json`] with
    /// `deflate` (a repeated alphabet compresses to almost nothing).
    pub payload: Payload,
    /// Connect here instead of to the address the URL's host resolves to, keeping the URL's
    /// host in `Host` and the TLS server name (as curl's `--connect-to`). Default `None`.
    pub connect_to: Option<SocketAddr>,
    /// Set it to end the run early (e.g. on Ctrl-C): each worker finishes the exchange in
    /// flight and starts no other, and [`run`] reports what was measured until then.
    /// Default `None`: the run goes to `duration` or `max_messages`.
    pub stop: Option<Arc<AtomicBool>>,
    /// Echo and connect: the run's first stretch, not measured. Exchanges done within it
    /// are not in the echo latency or the throughput (which is over the time after it);
    /// bytes, phases and connect latency count every exchange. Default zero.
    pub warmup: Duration,
}

impl Config {
    /// Defaults for `target` (see each field).
    pub fn new(target: Target) -> Self {
        Self {
            target,
            workload: Workload::Echo,
            connections: 1,
            size: 32,
            duration: Duration::from_secs(10),
            max_messages: u64::MAX,
            rate: None,
            trust: Trust::Roots(protolab_tls::Roots::new()),
            tls_resumption: false,
            headers: Vec::new(),
            subprotocols: Vec::new(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            push_interval: Duration::from_millis(10),
            deflate: None,
            payload: Payload::Alphabet,
            connect_to: None,
            stop: None,
            warmup: Duration::ZERO,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidConfig { reason });
        if self.connections == 0 {
            return invalid("connections must be at least 1".into());
        }
        if self.warmup >= self.duration {
            return invalid("the warm-up must be shorter than the run's duration".into());
        }
        if self.size > MAX_MESSAGE {
            return invalid(format!(
                "message size {} is larger than the {MAX_MESSAGE}-byte maximum",
                self.size
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return invalid(format!("the rate must be a positive number, not {rate}"));
            }
            if self.workload != Workload::Echo {
                return invalid("a rate applies to the echo workload only".into());
            }
        }
        if self.workload == Workload::Push {
            if !self.target.scheme.is_ws()
                && !self.target.scheme.is_sse()
                && !self.target.scheme.is_grpc()
                && !self.target.scheme.is_poll()
            {
                return invalid(format!(
                    "the push workload needs a ws://, wss://, sse://, sses://, grpc://, grpcs://, poll://, polls://, long-poll:// or long-polls:// URL, not {}://",
                    self.target.scheme
                ));
            }
            if !(Duration::from_millis(1)..=Duration::from_secs(3600)).contains(&self.push_interval)
            {
                return invalid("the push interval must be from 1 ms to 1 hour".into());
            }
        }
        if self.workload == Workload::Fanin
            && (self.target.scheme.is_ws() || self.target.scheme.is_sse())
        {
            return invalid(format!(
                "the fanin workload needs an http(s)://, h2(c):// or grpc(s):// URL, not {}://",
                self.target.scheme
            ));
        }
        if self.target.scheme.is_poll() && self.workload != Workload::Push {
            return invalid(format!(
                "{}:// URLs run the push workload only (--workload push)",
                self.target.scheme
            ));
        }
        if self.deflate.is_some() && !self.target.scheme.is_ws() {
            return invalid(format!(
                "permessage-deflate is a WebSocket extension; the URL is {}://",
                self.target.scheme
            ));
        }
        if self.duration.is_zero() {
            return invalid("the duration must be longer than zero".into());
        }
        for (name, value) in &self.headers {
            check_header(name, value)?;
        }
        for p in &self.subprotocols {
            if p.is_empty() || !p.bytes().all(is_tchar) {
                return invalid(format!("subprotocol `{p}` is not an HTTP token"));
            }
        }
        Ok(())
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks a request header: the name is a token, the value has no CR, LF or NUL (which would
/// let it smuggle another header or request).
pub fn check_header(name: &str, value: &str) -> Result<(), Error> {
    let bad = |reason: &'static str| Error::BadHeader {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(bad("the name must be a token (letters, digits, -, _ ...)"));
    }
    if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(bad("the value contains CR, LF or NUL"));
    }
    Ok(())
}

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
        // Stagger the connections' schedules so the total rate is smooth.
        let schedule = interval.map(|every| Schedule {
            every,
            offset: every.mul_f64(index as f64 / config.connections as f64),
        });
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
                Workload::Echo => echo_worker(&plan, &budget).await,
                Workload::Connect => connect_worker(&plan, &budget).await,
                Workload::Push => push_worker(&plan, &budget).await,
                Workload::Fanin if multiplexed => fanin::fanin_worker(plan, budget, streams).await,
                Workload::Fanin => echo_worker(&plan, &budget).await,
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

/// The run's shared limits: its end and its message count; the open-loop schedule.
#[derive(Clone)]
struct Budget {
    claimed: Arc<AtomicU64>,
    max: u64,
    end: Instant,
    /// [`Config::warmup`]'s end: exchanges done before it are not timed.
    measured_from: Instant,
    schedule: Option<Schedule>,
    /// Where echo workers record each exchange's latency (the run's, shared).
    echo_latency: Arc<PerThread>,
    /// [`Config::stop`]: read once per exchange, written once at most, so its cache line
    /// stays shared between the workers' cores.
    stop: Option<Arc<AtomicBool>>,
}

/// One connection's open-loop send times: `offset`, then every `every`, from when it opened.
#[derive(Clone, Copy)]
struct Schedule {
    every: Duration,
    offset: Duration,
}

impl Budget {
    /// Takes one exchange from the budget; false once the run is over.
    fn claim(&self) -> bool {
        self.claim_at(Instant::now())
    }

    /// [`Budget::claim`] when the caller knows the time: `now`.
    fn claim_at(&self, now: Instant) -> bool {
        // Without a message limit, the shared counter (an atomic add per exchange) is moot.
        now < self.end
            && !self
                .stop
                .as_ref()
                .is_some_and(|stop| stop.load(Ordering::Relaxed))
            && (self.max == u64::MAX || self.claimed.fetch_add(1, Ordering::Relaxed) < self.max)
    }
}

/// How long a polite close may take after the run.
const CLOSE_BOUND: Duration = Duration::from_millis(200);

async fn echo_worker(plan: &Plan, budget: &Budget) -> Stats {
    let mut stats = Stats::default();
    'connections: while budget.claim() {
        let t0 = Instant::now();
        let (mut conn, opened) = match Conn::open(plan, budget.end).await {
            Ok(c) => c,
            Err(failure) => {
                stats.fail(&failure, budget.end);
                break;
            }
        };
        stats.opened(&opened);
        let mut first = true;
        let mut mark = opened.bytes;
        // TCP counters after the first exchange, and the exchanges since: the steady window.
        let mut after_first: Option<TcpCounters> = None;
        let mut steady_here = 0u64;
        let mut due = budget.schedule.map(|s| Instant::now() + s.offset);
        let mut last_done = Instant::now();
        loop {
            // Open loop: wait for this message's slot. If the previous echo came back after
            // the slot, the server held this message up and its latency starts at the slot;
            // otherwise it starts when it is sent, so our timer's lateness (tokio sleeps to
            // the millisecond) is not charged to the server. Closed loop: the clock is read
            // twice per exchange, here and when the echo is in.
            let (intended, sent) = match (due.as_mut(), budget.schedule) {
                (Some(due), Some(schedule)) => {
                    if *due >= budget.end {
                        break;
                    }
                    let slot = *due;
                    *due += schedule.every;
                    if last_done > slot {
                        (slot, Instant::now())
                    } else {
                        tokio::time::sleep_until(slot.into()).await;
                        let now = Instant::now();
                        (now, now)
                    }
                }
                _ => {
                    let now = Instant::now();
                    (now, now)
                }
            };
            let deadline = budget.end.min(sent + plan.request_timeout);
            match conn.exchange(plan, sent, deadline).await {
                Ok(ex) => {
                    let now = conn.counts();
                    last_done = ex.done;
                    if last_done >= budget.measured_from {
                        budget
                            .echo_latency
                            .record(last_done.saturating_duration_since(intended));
                        stats.timed_messages += 1;
                    }
                    let since_connect = first.then(|| ex.done.saturating_duration_since(t0));
                    stats.exchanged(&ex, now, now.since(mark), since_connect);
                    stats.finished = Some(ex.done);
                    mark = now;
                    if first {
                        after_first = conn.tcp_counters();
                    } else {
                        steady_here += 1;
                    }
                    first = false;
                    if !ex.reusable {
                        stats.sample_tcp(&conn, after_first, steady_here);
                        conn.close(Instant::now() + CLOSE_BOUND).await;
                        stats.add_totals(&conn);
                        continue 'connections;
                    }
                }
                Err(failure) => {
                    stats.fail(&failure, budget.end);
                    break;
                }
            }
            if !budget.claim_at(last_done) {
                break;
            }
        }
        stats.sample_tcp(&conn, after_first, steady_here);
        conn.close(Instant::now() + CLOSE_BOUND).await;
        stats.add_totals(&conn);
        break;
    }
    stats
}

async fn connect_worker(plan: &Plan, budget: &Budget) -> Stats {
    let mut stats = Stats::default();
    while budget.claim() {
        let t0 = Instant::now();
        let result = async {
            let (mut conn, opened) = Conn::open(plan, budget.end).await?;
            stats.opened(&opened);
            if plan.target.scheme.is_sse() {
                // An SSE connect ends at the stream's first event: all its bytes are the
                // handshake's, its time is connect to that event.
                let done = Instant::now();
                let since_connect = done.saturating_duration_since(t0);
                stats.latency.record(since_connect);
                let ex = crate::client::Exchange {
                    first_byte: opened.upgrade,
                    total: opened.upgrade.unwrap_or(since_connect),
                    done,
                    reusable: false,
                };
                stats.exchanged(&ex, opened.bytes, Counts::default(), Some(since_connect));
                stats.finished = Some(done);
                stats.sample_tcp(&conn, opened.tcp_counters, 1);
                conn.close(Instant::now() + CLOSE_BOUND).await;
                stats.add_totals(&conn);
                return Ok(());
            }
            let sent = Instant::now();
            let deadline = budget.end.min(sent + plan.request_timeout);
            let exchanged = conn.exchange(plan, sent, deadline).await;
            let now = conn.counts();
            let ex = match exchanged {
                Ok(ex) => ex,
                Err(failure) => {
                    stats.add_totals(&conn);
                    return Err(failure);
                }
            };
            stats.latency.record(ex.total);
            let since_connect = ex.done.saturating_duration_since(t0);
            stats.exchanged(&ex, now, now.since(opened.bytes), Some(since_connect));
            stats.finished = Some(ex.done);
            if ex.done >= budget.measured_from {
                stats.timed_messages += 1;
            }
            stats.sample_tcp(&conn, opened.tcp_counters, 1);
            conn.close(Instant::now() + CLOSE_BOUND).await;
            stats.add_totals(&conn);
            Ok::<_, Failure>(())
        }
        .await;
        if let Err(failure) = result {
            stats.fail(&failure, budget.end);
            // Do not spin on a refusing port: one attempt per 10 ms per worker at most.
            tokio::time::sleep_until(
                budget
                    .end
                    .min(Instant::now() + Duration::from_millis(10))
                    .into(),
            )
            .await;
        }
    }
    stats
}

async fn push_worker(plan: &Plan, budget: &Budget) -> Stats {
    let mut stats = Stats::default();
    let (mut conn, opened) = match Conn::open(plan, budget.end).await {
        Ok(c) => c,
        Err(failure) => {
            stats.fail(&failure, budget.end);
            return stats;
        }
    };
    stats.opened(&opened);
    // Bytes are charged to pushes only at a message boundary: when a read brought more than
    // the push just taken (the next ones, after a stall), those bytes belong to pushes not
    // taken yet, so the pushes and their bytes wait until the buffer is drained again.
    // Otherwise a run that ends with pushes read ahead charges their bytes to counted ones.
    // The same holds at the start: pushes read together with the upgrade's answer have their
    // bytes in the handshake's count, so charging starts at the first boundary after them.
    let mut mark = opened.bytes;
    let mut charging = conn.read_ahead() == 0;
    let (mut pending, mut pending_payload) = (0u64, 0u64);
    let mut pushes = 0u64;
    while budget.claim() {
        match conn.next_push(budget.end).await {
            Ok(push) => {
                stats.latency.record(push.delay);
                stats.messages += 1;
                stats.finished = Some(Instant::now());
                pushes += 1;
                pending += 1;
                pending_payload += push.payload as u64;
                if conn.read_ahead() == 0 {
                    let now = conn.counts();
                    if charging {
                        stats.steady = stats.steady.plus(now.since(mark));
                        stats.steady_messages += pending;
                        stats.push_payload += pending_payload;
                    }
                    (mark, pending, pending_payload, charging) = (now, 0, 0, true);
                }
            }
            Err(failure) => {
                stats.fail(&failure, budget.end);
                break;
            }
        }
    }
    if pushes == 0 {
        stats.silent += 1;
    }
    stats.sample_tcp(&conn, opened.tcp_counters, pushes);
    conn.close(Instant::now() + CLOSE_BOUND).await;
    stats.add_totals(&conn);
    stats
}

/// One worker's measurements; workers' stats merge into the run's.
#[derive(Default)]
struct Stats {
    latency: Latency,
    tcp: Latency,
    tls: Latency,
    upgrade: Latency,
    first_byte: Latency,
    first_echo: Latency,
    connect_to_first_echo: Latency,
    messages: u64,
    /// Echo and connect: messages done after the warm-up, the throughput's count.
    timed_messages: u64,
    opened: u64,
    /// Push: opened connections that received no push.
    silent: u64,
    handshake: Counts,
    /// Bytes of steady-state exchanges (every one after a connection's first) and their count.
    steady: Counts,
    steady_messages: u64,
    /// Bytes of connections' first exchanges and their count.
    first: Counts,
    first_messages: u64,
    /// Round trips from connect to each connection's first echo, summed (count: `first_messages`).
    round_trips: u64,
    /// Payload bytes of the pushes received.
    push_payload: u64,
    /// Connections whose server accepted permessage-deflate, and the first one's terms.
    deflate_accepted: u64,
    deflate_params: Option<Params>,
    total: Counts,
    /// TCP counters over the per-message window (steady exchanges, or connect's one) and
    /// the messages in it.
    tcp_window: TcpCounters,
    tcp_window_messages: u64,
    /// TCP counters of whole connections (SYN to just before the close) and how many.
    tcp_total: TcpCounters,
    tcp_sampled: u64,
    ipv6: bool,
    skipped: u64,
    pings: u64,
    polls: Polls,
    finished: Option<Instant>,
    errors: Errors,
}

impl Stats {
    fn opened(&mut self, opened: &Opened) {
        self.opened += 1;
        self.tcp.record(opened.tcp);
        if let Some(t) = opened.tls {
            self.tls.record(t);
        }
        if let Some(t) = opened.upgrade {
            self.upgrade.record(t);
        }
        self.handshake = self.handshake.plus(opened.bytes);
        if let Some(params) = opened.deflate {
            self.deflate_accepted += 1;
            self.deflate_params.get_or_insert(params);
        }
    }

    fn exchanged(
        &mut self,
        ex: &crate::client::Exchange,
        connection_so_far: Counts,
        bytes: Counts,
        // From connect to this echo, given for a connection's first exchange only.
        since_connect: Option<Duration>,
    ) {
        self.messages += 1;
        if let Some(since_connect) = since_connect {
            if let Some(first_byte) = ex.first_byte {
                self.first_byte.record(first_byte);
            }
            self.first_echo.record(ex.total);
            self.connect_to_first_echo.record(since_connect);
            self.first = self.first.plus(bytes);
            self.first_messages += 1;
            // The TCP handshake's round trip happens below the stream, so it is not a turn.
            self.round_trips += 1 + connection_so_far.wire.turns;
        } else {
            self.steady = self.steady.plus(bytes);
            self.steady_messages += 1;
        }
    }

    /// Samples the connection's TCP counters before it closes: the whole connection so far,
    /// and the window from `window_start` with the `messages` in it.
    fn sample_tcp(&mut self, conn: &Conn, window_start: Option<TcpCounters>, messages: u64) {
        let Some(now) = conn.tcp_counters() else {
            return;
        };
        self.tcp_total = self.tcp_total.plus(now);
        self.tcp_sampled += 1;
        self.ipv6 |= conn.is_ipv6();
        if let Some(start) = window_start.filter(|_| messages > 0) {
            self.tcp_window = self.tcp_window.plus(now.since(start));
            self.tcp_window_messages += messages;
        }
    }

    /// Adds a finished connection's byte counts and extra messages.
    fn add_totals(&mut self, conn: &Conn) {
        self.total = self.total.plus(conn.counts());
        let extras = conn.extras();
        self.skipped += extras.skipped;
        self.pings += extras.pings;
        self.polls.requests += extras.polls;
        self.polls.empty += extras.empty_polls;
        self.polls.missed_events += extras.missed;
    }

    /// Counts `failure`, unless it is the run's end cutting an exchange short after this
    /// worker had answers (a worker that never got one reports the timeout).
    fn fail(&mut self, failure: &Failure, end: Instant) {
        if let Some(wire) = failure.wire {
            self.total = self.total.plus(Counts {
                wire,
                ..Counts::default()
            });
        }
        if failure.kind == ErrorKind::Timeout && Instant::now() >= end && self.messages > 0 {
            return;
        }
        tracing::debug!(kind = failure.kind.as_str(), detail = %failure.detail, "load connection failed");
        self.errors.add(failure.kind, &failure.detail);
    }

    fn merge(&mut self, other: &Self) {
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.tcp, &other.tcp),
            (&mut self.tls, &other.tls),
            (&mut self.upgrade, &other.upgrade),
            (&mut self.first_byte, &other.first_byte),
            (&mut self.first_echo, &other.first_echo),
            (
                &mut self.connect_to_first_echo,
                &other.connect_to_first_echo,
            ),
        ] {
            mine.merge(theirs);
        }
        self.messages += other.messages;
        self.timed_messages += other.timed_messages;
        self.opened += other.opened;
        self.silent += other.silent;
        self.handshake = self.handshake.plus(other.handshake);
        self.steady = self.steady.plus(other.steady);
        self.steady_messages += other.steady_messages;
        self.first = self.first.plus(other.first);
        self.first_messages += other.first_messages;
        self.round_trips += other.round_trips;
        self.push_payload += other.push_payload;
        self.deflate_accepted += other.deflate_accepted;
        self.deflate_params = self.deflate_params.or(other.deflate_params);
        self.total = self.total.plus(other.total);
        self.tcp_window = self.tcp_window.plus(other.tcp_window);
        self.tcp_window_messages += other.tcp_window_messages;
        self.tcp_total = self.tcp_total.plus(other.tcp_total);
        self.tcp_sampled += other.tcp_sampled;
        self.ipv6 |= other.ipv6;
        self.skipped += other.skipped;
        self.pings += other.pings;
        self.polls = self.polls.plus(other.polls);
        self.finished = self.finished.max(other.finished);
        self.errors.merge(&other.errors);
    }

    fn report(self, config: &Config, start: Instant, measured_from: Instant) -> Report {
        let elapsed = self
            .finished
            .map_or(Duration::ZERO, |f| f.saturating_duration_since(start))
            .min(config.duration);
        let secs = elapsed.as_secs_f64();
        // After a warm-up, the rate is over what followed it (pushes keep their schedule
        // from the start, so they are always counted whole).
        let (rated, rated_secs) =
            if config.warmup > Duration::ZERO && config.workload != Workload::Push {
                let timed = self
                    .finished
                    .map_or(Duration::ZERO, |f| {
                        f.saturating_duration_since(measured_from)
                    })
                    .min(config.duration - config.warmup);
                (self.timed_messages, timed.as_secs_f64())
            } else {
                (self.messages, secs)
            };
        let per = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let (per_message, count) = match (config.workload, self.steady_messages) {
            (Workload::Echo | Workload::Push | Workload::Fanin, n) if n > 0 => (self.steady, n),
            _ => (self.first, self.first_messages),
        };
        let latency_histogram = match config.workload {
            Workload::Echo | Workload::Push | Workload::Fanin => &self.latency,
            Workload::Connect => &self.connect_to_first_echo,
        };
        let latency = latency_histogram.summary();
        let histograms = Histograms {
            latency: latency_histogram.encoded(),
            tcp_connect: self.tcp.encoded(),
            tls_handshake: self.tls.encoded(),
            ws_upgrade: self.upgrade.encoded(),
            first_byte: self.first_byte.encoded(),
            first_echo: self.first_echo.encoded(),
            connect_to_first_echo: self.connect_to_first_echo.encoded(),
        };
        let (payload_sent, payload_received) = match config.workload {
            Workload::Echo | Workload::Connect | Workload::Fanin => {
                (Some(config.size as f64), Some(config.size as f64))
            }
            Workload::Push => (Some(0.0), per(self.push_payload, self.steady_messages)),
        };
        let tls = config.target.scheme.is_tls();
        // Post-handshake TLS records (session tickets) go on their own line, out of the
        // handshake and the message figures, wherever they arrived.
        let without_tickets = |c: &Counts| c.wire.received.saturating_sub(c.post_handshake_tls);
        let header = header_bytes_per_packet(self.ipv6, self.tcp_total.timestamps);
        let packets_per_message = per(self.tcp_window.packets(), self.tcp_window_messages);
        let tcp = Tcp {
            packets_per_message,
            frame_bytes_per_message: packets_per_message
                .zip(per(
                    per_message.wire.sent + without_tickets(&per_message),
                    count,
                ))
                .map(|(packets, payload)| payload + packets * header as f64),
            header_bytes_per_packet: header,
            packets: self.tcp_total.packets(),
            retransmitted_bytes: self.tcp_total.bytes_retrans,
            retransmitted_segments: self.tcp_total.total_retrans,
            retransmitted_share: per(self.tcp_total.bytes_retrans, self.total.wire.sent)
                .filter(|_| self.tcp_sampled > 0),
            connections_sampled: self.tcp_sampled,
        };
        Report {
            target: config.target.to_string(),
            scheme: config.target.scheme,
            workload: config.workload,
            connections: config.connections,
            message_size: config.size,
            rate: config.rate,
            duration_secs: secs,
            messages: self.messages,
            throughput_per_sec: if rated_secs > 0.0 {
                rated as f64 / rated_secs
            } else {
                0.0
            },
            latency,
            bytes: Bytes {
                sent_per_message: per(per_message.wire.sent, count),
                received_per_message: per(without_tickets(&per_message), count),
                above_tls_sent_per_message: per(per_message.app.sent, count),
                above_tls_received_per_message: per(per_message.app.received, count),
                payload_sent_per_message: payload_sent.filter(|_| count > 0),
                payload_received_per_message: payload_received.filter(|_| count > 0),
                frame_payload_sent_per_message: per(per_message.frame_payload.sent, count)
                    .filter(|_| self.deflate_accepted > 0),
                frame_payload_received_per_message: per(per_message.frame_payload.received, count)
                    .filter(|_| self.deflate_accepted > 0),
                handshake_sent_per_connection: per(self.handshake.wire.sent, self.opened),
                handshake_received_per_connection: per(
                    without_tickets(&self.handshake),
                    self.opened,
                ),
                post_handshake_tls_received_per_connection: per(
                    self.total.post_handshake_tls,
                    self.opened,
                )
                .filter(|_| tls),
                total_sent: self.total.wire.sent,
                total_received: self.total.wire.received,
            },
            round_trips_to_first_echo: per(self.round_trips, self.first_messages),
            phases: Phases {
                tcp_connect: self.tcp.summary(),
                tls_handshake: self.tls.summary(),
                ws_upgrade: self.upgrade.summary(),
                first_byte: self.first_byte.summary(),
                first_echo: self.first_echo.summary(),
                connect_to_first_echo: self.connect_to_first_echo.summary(),
            },
            connections_opened: self.opened,
            connections_without_messages: self.silent,
            tcp,
            skipped_messages: self.skipped,
            pings_answered: self.pings,
            polls: config
                .target
                .scheme
                .is_poll()
                .then(|| self.polls.per_event(self.messages)),
            compression: config.deflate.map(|offer| Compression {
                offer: offer.to_string(),
                connections_accepted: self.deflate_accepted,
                agreed: self.deflate_params.map(|p| p.to_string()),
            }),
            payload: config.payload,
            errors: self.errors,
            histograms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        assert!(check_header("X-Test", "a b c").is_ok());
        assert!(check_header("X-Test", "a\r\nEvil: 1").is_err());
        assert!(check_header("X Test", "a").is_err());
        assert!(check_header("", "a").is_err());
    }

    #[test]
    fn config_is_validated() {
        let target = Target::parse("http://localhost:3000/").unwrap();
        let mut c = Config::new(target);
        assert!(c.validate().is_ok());
        c.connections = 0;
        assert!(c.validate().is_err());
        c.connections = 1;
        c.size = MAX_MESSAGE + 1;
        assert!(c.validate().is_err());
    }
}
