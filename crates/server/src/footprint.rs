//! What one idle WebSocket connection's task holds, measured on the futures themselves: the
//! task is spawned once and lives as long as the connection, so every byte of its state (and
//! of each boxed phase it awaits) is paid per idle connection. The bounds are the sizes
//! measured when they were set, with a little room; a change that makes the idle state larger
//! fails here before it shows in `protolab-bench idle`.

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use protolab_tls::stream::TlsStream;
    use protolab_wire::http1::RequestHead;
    use tokio::net::TcpStream;
    use tokio::time::Instant;

    use crate::ctx::ConnCtx;
    use crate::lend::LentBuf;
    use crate::ws::Setup;

    /// `ws::run`'s state over a plain stream: 1,160 B measured (dev profile) once its close
    /// handshake and its waits on a full socket buffer were boxed; 1,224 B with the move to
    /// the event loop (its timer and message count).
    const WS_RUN_MAX: usize = 1_280;
    /// `lab::serve` + `conn::serve` + `ws::run` over a plain stream: 112 + 560 + 1,224 B
    /// measured; with the TLS path inline in `lab::serve` (1,992 B) it was 3,560 B.
    const IDLE_TASK_MAX: usize = 1_920;
    /// `wsloop::conn::Conn` in its slot: 616 B measured.
    const CONN_MAX: usize = 704;
    /// The wait for the loop, boxed on the parked task: 352 B measured once the hand-off was
    /// built before it (576 B when the wait held the hand-off's arguments).
    const HAND_OFF_MAX: usize = 416;

    /// The size of what `f` returns (a future), without calling it.
    fn returned_size<A, B, C, D, E, F, R>(_f: impl FnOnce(A, B, C, D, E, F) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    fn returned_size4<A, B, C, D, R>(_f: impl FnOnce(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Each boxed phase an idle WebSocket's task awaits, for one stream type.
    fn phases<S: crate::io::Io + crate::io::PlainTcp + crate::io::Negotiation + 'static>(
    ) -> [(&'static str, usize); 3] {
        [
            (
                "conn::serve",
                returned_size4::<S, SocketAddr, &'static ConnCtx, Instant, _>(
                    crate::conn::serve::<S>,
                ),
            ),
            (
                "conn::upgrade",
                returned_size4::<&'static mut S, RequestHead, SocketAddr, &'static ConnCtx, _>(
                    crate::conn::upgrade::<S>,
                ),
            ),
            (
                "ws::run",
                returned_size::<
                    S,
                    LentBuf<'static>,
                    SocketAddr,
                    &'static ConnCtx,
                    Setup<'static>,
                    crate::ws_core::Move,
                    _,
                >(crate::ws::run::<S>),
            ),
        ]
    }

    fn lab_serve_size() -> usize {
        returned_size4::<
            TcpStream,
            SocketAddr,
            Option<std::sync::Arc<rustls::ServerConfig>>,
            &'static ConnCtx,
            _,
        >(crate::lab::serve)
    }

    /// What a WebSocket on the event loop holds: its connection state in the loop's slot
    /// (`wsloop::conn::Conn`) and, on its parked task, the boxed `conn::serve` and the boxed
    /// hand-off that waits for the loop (dev profile).
    #[test]
    fn an_event_loop_websocket_stays_small() {
        let conn = crate::wsloop::conn_size();
        let hand_off = crate::wsloop::serve_size();
        eprintln!("wsloop Conn {conn} B; hand-off future {hand_off} B");
        assert!(
            conn <= CONN_MAX,
            "a loop connection grew to {conn} B (bound {CONN_MAX} B)"
        );
        assert!(
            hand_off <= HAND_OFF_MAX,
            "the hand-off's wait grew to {hand_off} B (bound {HAND_OFF_MAX} B)"
        );
    }

    /// An idle WebSocket's task holds the lab's `serve` inline and two boxes: `conn::serve`
    /// (awaiting the WebSocket) and `ws::run`. The upgrade's box is gone by then, and the
    /// WebSocket loop's rare waits (closing, a full socket buffer) are boxed only while
    /// they run, so they are no room in it.
    #[test]
    fn idle_websocket_task_state_stays_small() {
        let plain = phases::<TcpStream>();
        let tls = phases::<TlsStream<TcpStream>>();
        let lab_serve = lab_serve_size();
        eprintln!(
            "lab::serve {lab_serve} B; WS {plain:?}; WSS {tls:?}; TcpStream {} B, TlsStream {} B, Sleep {} B",
            std::mem::size_of::<TcpStream>(),
            std::mem::size_of::<TlsStream<TcpStream>>(),
            std::mem::size_of::<tokio::time::Sleep>(),
        );
        let [(_, conn_serve), _, (_, ws_run)] = plain;
        let held = lab_serve + conn_serve + ws_run;
        assert!(
            ws_run <= WS_RUN_MAX,
            "the WebSocket loop's state grew to {ws_run} B (bound {WS_RUN_MAX} B): box what is \
             rarely live, or raise the bound with `protolab-bench idle` figures"
        );
        assert!(
            held <= IDLE_TASK_MAX,
            "an idle WebSocket's futures hold {held} B (bound {IDLE_TASK_MAX} B)"
        );
    }
}
