//! Serving the hub's router on a listener: plain or TLS, a bound on connections, peer addresses
//! for the handlers, and a graceful shutdown that closes subscribers first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::app::SharedState;

/// How the hub listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// TLS (the lab's certificates); `None` serves plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time a new connection has to finish TLS and send its first request head.
    pub handshake_timeout: Duration,
    /// Time subscribers and requests get to finish at shutdown before they are dropped.
    pub drain_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            tls: None,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// A running hub listener.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: SharedState,
    stop_accepting: CancellationToken,
    accept_loop: tokio::task::JoinHandle<()>,
    connections: TaskTracker,
    drain_timeout: Duration,
}

/// Serves `router` (built over `state`) on `listener` until [`Server::shutdown`].
pub fn serve(
    listener: TcpListener,
    router: Router,
    state: SharedState,
    options: ServeOptions,
) -> std::io::Result<Server> {
    let addr = listener.local_addr()?;
    let stop_accepting = CancellationToken::new();
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(state.config.limits.max_connections.max(1)));
    let accept_loop = tokio::spawn(accept_loop(
        listener,
        router,
        options.clone(),
        permits,
        stop_accepting.clone(),
        state.shutdown.clone(),
        connections.clone(),
    ));
    Ok(Server {
        addr,
        state,
        stop_accepting,
        accept_loop,
        connections,
        drain_timeout: options.drain_timeout,
    })
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    permits: Arc<Semaphore>,
    stop: CancellationToken,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        // Past the limit, connections wait in the listen backlog rather than cost memory here.
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // EMFILE and the like pass; back off a little instead of spinning
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        let handshake_timeout = options.handshake_timeout;
        connections.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => serve_connection(stream, peer, router, shutdown, handshake_timeout).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            serve_connection(tls, peer, router, shutdown, handshake_timeout).await
                        }
                        Ok(Err(err)) => tracing::debug!(%peer, %err, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    header_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(err) = result {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, closes subscribers (WebSockets get 1001, SSE streams end), lets requests
    /// in flight finish, and returns how many connections were still open at the drain timeout.
    pub async fn shutdown(self) -> u64 {
        self.stop_accepting.cancel();
        self.state.shutdown.cancel();
        let _ = self.accept_loop.await;
        self.connections.close();
        let drained = async {
            self.connections.wait().await;
            while self.state.metrics.total_connections() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(self.drain_timeout, drained)
            .await
            .is_err()
        {
            return self.state.metrics.total_connections().max(1);
        }
        0
    }
}
