//! Whole-system benchmarks: protolab's servers against named peers, in the same run, with the
//! same load, and the ratio printed.
//!
//! The principal entry points are [`ws::run`], [`http::run`] and [`proxy::run`], which the `protolab-bench`
//! binary calls; [`client::run`] is the WebSocket load client it re-executes pinned to its own
//! core. The bench peers (`bench-peer-tungstenite`, `bench-peer-fastwebsockets`) are our code
//! over other crates; [`peer`] holds what they share. [`decode::run`] times `protolab inspect`
//! against tshark on a freshly captured, decrypted WSS file. [`fanout::run`] fans one
//! publication out to N idle subscribers of protolab's hub, Flask-SocketIO, Node socket.io and
//! `bench-peer-fanout-floor` (the kernel floor: one write per delivery and nothing else), with
//! [`fanout_client::run`] as the subscriber load and [`fanout_report::render`] as its table.
//!
//! [`idle::run`] holds thousands of idle WebSockets per server for memory and accept rate
//! ([`idle_client::run`] is its client); [`cpu_rate::run`] offers every server the same fixed
//! message rate and reads its CPU per message; [`lineup`] starts the servers both share,
//! uWebSockets among them when scripts/build-uws-peer has built it.
//!
//! [`h2::run`] sets protolab's HTTP/2 app against one-worker nginx under h2load (h2c and TLS);
//! [`grpc::run`] sets its gRPC app against `bench-peer-tonic` and Python grpcio, with
//! [`grpc_client::run`] (tonic's generated client for lab.proto) as the one load for all three.
//!
//! [`sse_fanout::run`] sets the lab's SSE feed against its WS app's pushes, N subscribers
//! each, under `protolab_load`'s push workload.
//!
//! Method (`/work/shared/PEERS.md`): the server runs under `taskset -c 0`, the client under
//! `taskset -c 1`, so each figure is per core. Server CPU is read from `/proc` around each
//! window, so msgs per server CPU-second stays meaningful even when the client is the limit.
//!
//! Not here: criterion micro-benchmarks (they live next to the code they measure), and
//! anything that sends traffic off 127.0.0.1.

pub mod client;
pub mod cpu;
pub mod cpu_rate;
pub mod decode;
pub mod driver;
pub mod fanout;
pub mod fanout_client;
pub mod fanout_report;
pub mod grpc;
pub mod grpc_client;
pub mod h2;
pub mod http;
pub mod idle;
pub mod idle_client;
pub mod lineup;
pub mod loadgen;
pub mod peer;
pub mod process;
pub mod proxy;
pub mod report;
pub mod sse_fanout;
pub mod ws;

/// lab.proto's messages, client and server (build.rs), for `grpc` and `bench-peer-tonic`.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod grpc_proto {
    tonic::include_proto!("protolab.lab.v1");
}
