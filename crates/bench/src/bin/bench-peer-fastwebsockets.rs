//! Bench peer: a WebSocket echo server on fastwebsockets over hyper 1.
//!
//! Run with `cargo run --release -p protolab-bench --bin bench-peer-fastwebsockets -- --port 9002`.
//!
//! fastwebsockets' documented echo pattern: hyper serves the upgrade request,
//! `fastwebsockets::upgrade::upgrade` answers 101, and the upgraded socket is wrapped in a
//! `FragmentCollector` so fragmented messages arrive whole. Pongs are automatic
//! (`auto_pong`, on by default); close frames are answered by the library.

use clap::Parser as _;
use fastwebsockets::upgrade::{upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use protolab_bench::peer::{announce_listening, runtime, PeerArgs};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let args = PeerArgs::parse();
    runtime()?.block_on(async {
        let listener = TcpListener::bind(args.addr()).await?;
        announce_listening();
        loop {
            let (stream, _) = listener.accept().await?;
            // Small frames, one in flight: Nagle would hold every echo for the peer's delayed ACK.
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let conn = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(handle))
                    .with_upgrades();
                let _ = conn.await;
            });
        }
    })
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}
