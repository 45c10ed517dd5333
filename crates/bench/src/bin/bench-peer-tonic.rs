//! Bench peer: the gRPC app's service (lab.proto's `Echo` and `EchoStream`) on plain tonic,
//! the same tonic and prost versions as protolab, with nothing of the lab around it.
//!
//! Run with `cargo run --release -p protolab-bench --bin bench-peer-tonic -- --port 9006`.
//!
//! tonic's own `transport::Server` is hyper's HTTP/2 server with tonic's defaults (TCP_NODELAY
//! on, hyper's windows and stream limits); the workspace builds tonic without its `transport`
//! feature (which would add hyper-timeout and async-stream for nothing else), so this peer
//! wires the same thing by hand: one hyper HTTP/2 connection per socket, tonic's generated
//! `LabServer` as the service. `Push` answers UNIMPLEMENTED; the bench does not call it.

use std::pin::Pin;

use clap::Parser as _;
use futures_util::{Stream, StreamExt as _};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use protolab_bench::grpc_proto::lab_server::{Lab, LabServer};
use protolab_bench::grpc_proto::{EchoReply, EchoRequest, PushMessage, PushRequest};
use protolab_bench::peer::{announce_listening, runtime, PeerArgs};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The echo service, written as tonic's examples write it.
struct Echo;

#[tonic::async_trait]
impl Lab for Echo {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            payload: request.into_inner().payload,
        }))
    }

    type EchoStreamStream = ReplyStream<EchoReply>;

    async fn echo_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::EchoStreamStream>, Status> {
        let replies = request
            .into_inner()
            .map(|message| message.map(|m| EchoReply { payload: m.payload }));
        Ok(Response::new(Box::pin(replies)))
    }

    type PushStream = ReplyStream<PushMessage>;

    async fn push(
        &self,
        _request: Request<PushRequest>,
    ) -> Result<Response<Self::PushStream>, Status> {
        Err(Status::unimplemented("the bench peer only echoes"))
    }
}

fn main() -> std::io::Result<()> {
    let args = PeerArgs::parse();
    runtime()?.block_on(async {
        let listener = TcpListener::bind(args.addr()).await?;
        announce_listening();
        let service = LabServer::new(Echo);
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service);
                let _ = conn.await;
            });
        }
    })
}
