//! Bench peer: a WebSocket echo server on tokio-tungstenite.
//!
//! Run with `cargo run --release -p protolab-bench --bin bench-peer-tungstenite -- --port 9001`.
//!
//! Echoes every text and binary message on any path; tungstenite answers pings itself. Each
//! echo is `SinkExt::send` (feed + flush), one write per message, which is what a closed-loop
//! client with one message in flight needs.

use clap::Parser as _;
use futures_util::{SinkExt as _, StreamExt as _};
use protolab_bench::peer::{announce_listening, runtime, PeerArgs};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let args = PeerArgs::parse();
    runtime()?.block_on(async {
        let listener = TcpListener::bind(args.addr()).await?;
        announce_listening();
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(serve(stream));
        }
    })
}

async fn serve(stream: TcpStream) {
    // Small frames, one in flight: Nagle would hold every echo for the peer's delayed ACK.
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
