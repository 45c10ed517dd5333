//! Integration tests of the lab's apps against real peers: curl, openssl, Python
//! `websockets`, Node `ws` and headless Chromium, each started by the test on loopback
//! against a lab bound to port 0.

mod autobahn;
mod browser;
mod grpc;
mod h2;
mod hostile;
mod http;
mod idle;
mod lifecycle;
mod logs;
mod names;
mod pages;
mod proxy;
mod proxy_edges;
mod smuggling;
mod sse;
mod sse_limits;
mod ws;
mod ws_limits;
mod ws_move;

use std::time::Duration;

/// Generous bound for one peer run; peers finish in well under a second normally.
const PEER_LIMIT: Duration = Duration::from_secs(30);
