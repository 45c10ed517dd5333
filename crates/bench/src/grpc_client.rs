//! The load of `protolab-bench grpc` (`grpc-client`, which the driver runs pinned to core 1):
//! tonic's generated client for lab.proto over hyper's HTTP/2 client, `connections` ×
//! `calls` closed loops — each loop one unary `Echo` call after another, or one `EchoStream`
//! with one message in flight — for a warm-up and a measured window, bounded in time and in
//! count. Every reply's payload is checked against what was sent. Prints one JSON
//! [`GrpcSample`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::http;

use crate::grpc_proto::lab_client::LabClient;
use crate::grpc_proto::EchoRequest;

/// Which call the loops make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Mode {
    /// Unary `Echo`, one call after another.
    Unary,
    /// Bidirectional `EchoStream`, one message in flight per stream.
    Stream,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct GrpcLoad {
    /// Server port on 127.0.0.1 (h2c with prior knowledge).
    pub port: u16,
    /// Unary or streaming.
    pub mode: Mode,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Closed loops per connection (concurrent calls, or streams).
    pub calls: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Load before the window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Each loop also stops after this many messages (warm-up included).
    pub max_per_loop: u64,
    /// Server whose CPU (process tree) is read around the window.
    pub server_pid: u32,
}

/// What one measured window gave.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GrpcSample {
    /// Echoes completed in the window.
    pub messages: u64,
    /// Length of the window, seconds.
    pub seconds: f64,
    /// `messages / seconds`.
    pub per_sec: f64,
    /// Round trip p50, µs.
    pub p50_us: f64,
    /// Round trip p99, µs.
    pub p99_us: f64,
    /// Server CPU seconds over the window.
    pub server_cpu_secs: Option<f64>,
}

/// tonic's client needs a tower service; hyper's HTTP/2 `SendRequest` is one in all but name.
#[derive(Clone)]
struct H2Service(SendRequest<Body>);

impl tower::Service<http::Request<Body>> for H2Service {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

/// Command line of the hidden `grpc-client` (see [`GrpcLoad`] for each field).
#[derive(Debug, clap::Args)]
#[allow(missing_docs)]
pub struct GrpcClientArgs {
    #[arg(long)]
    pub port: u16,
    #[arg(long, value_enum)]
    pub mode: Mode,
    #[arg(long)]
    pub connections: usize,
    #[arg(long)]
    pub calls: usize,
    #[arg(long)]
    pub size: usize,
    #[arg(long)]
    pub warmup_ms: u64,
    #[arg(long)]
    pub duration_ms: u64,
    #[arg(long)]
    pub max_per_loop: u64,
    #[arg(long)]
    pub server_pid: u32,
}

/// `protolab-bench grpc-client`: one run, its [`GrpcSample`] as one line of JSON on stdout.
pub fn main(args: &GrpcClientArgs) -> anyhow::Result<std::process::ExitCode> {
    let sample = run(&GrpcLoad {
        port: args.port,
        mode: args.mode,
        connections: args.connections,
        calls: args.calls,
        size: args.size,
        warmup: Duration::from_millis(args.warmup_ms),
        duration: Duration::from_millis(args.duration_ms),
        max_per_loop: args.max_per_loop,
        server_pid: args.server_pid,
    })?;
    println!("{}", serde_json::to_string(&sample)?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the load on a current-thread runtime (the process is pinned to one core).
pub fn run(load: &GrpcLoad) -> anyhow::Result<GrpcSample> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run_async(load))
}

async fn run_async(load: &GrpcLoad) -> anyhow::Result<GrpcSample> {
    let origin: http::Uri = format!("http://127.0.0.1:{}", load.port).parse()?;
    let mut clients = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", load.port))
            .await
            .with_context(|| format!("connecting to 127.0.0.1:{}", load.port))?;
        tcp.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .context("HTTP/2 handshake")?;
        tokio::spawn(conn);
        clients.push(LabClient::with_origin(H2Service(send), origin.clone()));
    }
    let start = Instant::now();
    let window_start = start + load.warmup;
    let window_end = window_start + load.duration;
    let mut loops = tokio::task::JoinSet::new();
    for client in &clients {
        for i in 0..load.calls {
            let client = client.clone();
            let payload = payload(load.size, i);
            let (mode, max) = (load.mode, load.max_per_loop);
            loops.spawn(async move {
                match mode {
                    Mode::Unary => unary_loop(client, payload, window_start, window_end, max).await,
                    Mode::Stream => {
                        stream_loop(client, payload, window_start, window_end, max).await
                    }
                }
            });
        }
    }
    tokio::time::sleep_until(window_start).await;
    let cpu_before = crate::cpu::tree_cpu(load.server_pid);
    tokio::time::sleep_until(window_end).await;
    let cpu_after = crate::cpu::tree_cpu(load.server_pid);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut messages = 0;
    while let Some(joined) = loops.join_next().await {
        let (count, histogram) = joined.context("a load loop panicked")??;
        messages += count;
        latency
            .add(histogram)
            .map_err(|e| anyhow::anyhow!("merging latency histograms: {e:?}"))?;
    }
    let seconds = load.duration.as_secs_f64();
    Ok(GrpcSample {
        messages,
        seconds,
        per_sec: messages as f64 / seconds,
        p50_us: latency.value_at_quantile(0.5) as f64,
        p99_us: latency.value_at_quantile(0.99) as f64,
        server_cpu_secs: cpu_before
            .zip(cpu_after)
            .map(|(a, b)| b.saturating_sub(a).as_secs_f64()),
    })
}

/// Distinct bytes per loop, so an answer from the wrong call would not pass the check.
fn payload(size: usize, loop_index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| u8::try_from((i + loop_index) % 251).unwrap_or(0))
        .collect()
}

type LoopResult = anyhow::Result<(u64, Histogram<u64>)>;

async fn unary_loop(
    mut client: LabClient<H2Service>,
    payload: Vec<u8>,
    window_start: Instant,
    window_end: Instant,
    max: u64,
) -> LoopResult {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut counted = 0;
    for _ in 0..max {
        let sent = Instant::now();
        if sent >= window_end {
            break;
        }
        let reply = client
            .echo(EchoRequest {
                payload: payload.clone(),
            })
            .await
            .context("unary Echo")?
            .into_inner();
        if reply.payload != payload {
            bail!("Echo answered other bytes than it was sent");
        }
        let done = Instant::now();
        if sent >= window_start && done < window_end {
            counted += 1;
            latency.saturating_record(micros(done - sent));
        }
    }
    Ok((counted, latency))
}

async fn stream_loop(
    mut client: LabClient<H2Service>,
    payload: Vec<u8>,
    window_start: Instant,
    window_end: Instant,
    max: u64,
) -> LoopResult {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<EchoRequest>(1);
    let outbound =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    // The first message goes before the call is opened: opening waits for the response
    // headers, which grpcio sends only with its first reply.
    let mut sent = Instant::now();
    tx.send(EchoRequest {
        payload: payload.clone(),
    })
    .await
    .context("queueing the first EchoStream message")?;
    let mut inbound = client
        .echo_stream(outbound)
        .await
        .context("opening EchoStream")?
        .into_inner();
    let mut counted = 0;
    for i in 0..max {
        if i > 0 {
            sent = Instant::now();
            if sent >= window_end {
                break;
            }
            tx.send(EchoRequest {
                payload: payload.clone(),
            })
            .await
            .context("EchoStream closed its request side")?;
        }
        let reply = inbound
            .message()
            .await
            .context("EchoStream")?
            .context("EchoStream ended before answering")?;
        if reply.payload != payload {
            bail!("EchoStream answered other bytes than it was sent");
        }
        let done = Instant::now();
        if sent >= window_start && done < window_end {
            counted += 1;
            latency.saturating_record(micros(done - sent));
        }
    }
    // Half-close, then read the end of the call so the server sees a clean finish.
    drop(tx);
    while inbound.message().await.ok().flatten().is_some() {}
    Ok((counted, latency))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
