//! Listening sockets with an accept backlog sized for bursts of connections.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel completes and queues for `accept` before it starts dropping
/// handshakes. `TcpListener::bind` asks for 128, as the standard library does; a client that
/// opens thousands of WebSockets at once overflows that, and each dropped handshake costs the
/// client a SYN or ACK retransmission (one second, then doubling), which shows up as a slow
/// "time to open N" rather than as a slow server. Linux caps the value at
/// `net.core.somaxconn` (4096 by default since 5.4), so asking for more is harmless.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` like `TcpListener::bind` (address reuse on, so a restarted server does not wait
/// for TIME_WAIT), with a [`LISTEN_BACKLOG`]-deep accept queue.
pub fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
