//! The WS app's event loop for plain WebSocket connections.
//!
//! Under tokio every connection is a task, and a message that arrives alone costs a whole
//! turn of the runtime: its timer wheel looked up around `epoll_wait`, the I/O driver's
//! dispatch, a wake, the task's poll and two readiness checks — about as much again as the
//! session's own work (callgrind, in docs/architecture.md). uWebSockets spends half the user
//! CPU per message at such rates. This loop does what it does: one `epoll` set per thread
//! (edge-triggered, through mio), one receive buffer shared by every connection of the thread
//! (a connection keeps bytes only while a frame is incomplete), and one deadline per
//! connection in a heap (push, keepalive, a blocked write, a close's wait), re-armed only when
//! it moves earlier.
//!
//! The HTTP side stays on tokio: the upgrade (Origin check, deflate terms, limits) runs there,
//! then the socket leaves tokio's reactor and comes here. Its task stays behind, parked, so the
//! lab's connection count, limit and drain see the connection as before; it passes the lab's
//! shutdown on (1001 to every connection, then a hard stop) and ends when the loop says the
//! connection has. TLS streams and WebSockets over HTTP/2 keep the task per connection.

mod conn;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::BytesMut;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::budget::OwnedCharge;
use crate::cancel::CancelToken;
use crate::lend::ReadBuffers;
use crate::ws_core::{Move, Session};
use crate::Limits;

use conn::{Conn, Keep};

/// The receive buffer every connection of a loop shares: room for the largest frame the
/// decoder waits for whole (64 KiB, with the header and the slack `ws_core::read_room` asks for),
/// so such a frame is read and echoed where it lands. At 64 KiB even, every 64 KiB frame went
/// to a buffer of the connection's own, allocated and zeroed per message.
const SHARED_INPUT_BYTES: usize = 128 * 1024;
/// The answers buffer is kept between events up to this size, freed past it.
const SHARED_OUT_KEPT: usize = 256 * 1024;
/// What the WS app's event loop threads' names start with (a process that counts or pins
/// the lab's threads looks for them by it).
pub const WS_LOOP_THREADS: &str = "protolab-ws";

/// Readiness events taken per `epoll_wait`.
const EVENTS_PER_WAIT: usize = 1024;
const WAKE: Token = Token(usize::MAX);

/// What one loop's connections share while one of them is being served.
pub(crate) struct Shared {
    input: Vec<u8>,
    out: Vec<u8>,
}

/// An upgraded connection, handed from its task to a loop.
pub(crate) struct Handoff {
    pub(crate) tcp: std::net::TcpStream,
    pub(crate) peer: SocketAddr,
    /// Bytes read and not used yet.
    pub(crate) input: BytesMut,
    pub(crate) limits: Arc<Limits>,
    /// The session as its task left it.
    pub(crate) session: Box<Session>,
    pub(crate) charge: OwnedCharge,
    /// Where the connection's read buffer is counted while it holds one.
    pub(crate) read_buffers: Arc<ReadBuffers>,
}

/// A handoff as the loop receives it.
struct Adopted {
    id: u64,
    peer: SocketAddr,
    input: BytesMut,
    limits: Arc<Limits>,
    session: Box<Session>,
    charge: OwnedCharge,
    read_buffers: Arc<ReadBuffers>,
    done: tokio::sync::oneshot::Sender<()>,
}

enum Command {
    Adopt(Box<(Adopted, std::net::TcpStream)>),
    /// The lab is shutting down: close with 1001.
    GoingAway(u64),
    /// The drain timeout ran out: drop it now.
    Drop(u64),
    Exit,
}

struct LoopHandle {
    commands: Mutex<Sender<Command>>,
    waker: Waker,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LoopHandle {
    fn send(&self, command: Command) {
        let sent = self
            .commands
            .lock()
            .map(|tx| tx.send(command).is_ok())
            .unwrap_or(false);
        if sent {
            if let Err(err) = self.waker.wake() {
                tracing::warn!(%err, "cannot wake the WebSocket event loop");
            }
        }
    }
}

/// The lab's WebSocket event loops, one thread each.
pub(crate) struct WsLoops {
    loops: Vec<LoopHandle>,
    next: AtomicUsize,
    ids: AtomicU64,
    /// Connections the loops serve right now.
    connections: Arc<AtomicUsize>,
    /// When a connection leaves its task for a loop.
    moves: Move,
}

impl std::fmt::Debug for WsLoops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsLoops")
            .field("threads", &self.loops.len())
            .field("connections", &self.connections())
            .finish()
    }
}

impl WsLoops {
    /// Starts `threads` loops (at least one).
    pub(crate) fn start(threads: usize, moves: Move) -> std::io::Result<Self> {
        let connections = Arc::new(AtomicUsize::new(0));
        let mut loops = Vec::new();
        for n in 0..threads.max(1) {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKE)?;
            let (tx, rx) = channel();
            let count = Arc::clone(&connections);
            let thread = std::thread::Builder::new()
                .name(format!("{WS_LOOP_THREADS}-{n}"))
                .spawn(move || EventLoop::new(poll, rx, count).run())?;
            loops.push(LoopHandle {
                commands: Mutex::new(tx),
                waker,
                thread: Mutex::new(Some(thread)),
            });
        }
        Ok(Self {
            loops,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(0),
            connections,
            moves,
        })
    }

    /// When a connection leaves its task for a loop.
    pub(crate) fn moves(&self) -> Move {
        self.moves
    }

    /// Connections the loops serve right now.
    pub(crate) fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Hands the connection to a loop and waits until it has ended, passing the lab's
    /// shutdown on: 1001 when `graceful` fires, a hard drop when `hard` does.
    pub(crate) async fn serve(&self, handoff: Handoff, graceful: &CancelToken, hard: &CancelToken) {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let at = self.next.fetch_add(1, Ordering::Relaxed) % self.loops.len();
        let handle = &self.loops[at];
        let (done, mut ended) = tokio::sync::oneshot::channel();
        let adopted = Adopted {
            id,
            peer: handoff.peer,
            input: handoff.input,
            limits: handoff.limits,
            session: handoff.session,
            charge: handoff.charge,
            read_buffers: handoff.read_buffers,
            done,
        };
        handle.send(Command::Adopt(Box::new((adopted, handoff.tcp))));
        // A loop that is gone drops the sender: the wait ends either way.
        tokio::select! {
            _ = &mut ended => return,
            () = graceful.cancelled() => handle.send(Command::GoingAway(id)),
        }
        tokio::select! {
            _ = &mut ended => return,
            () = hard.cancelled() => handle.send(Command::Drop(id)),
        }
        let _ = ended.await;
    }

    /// Stops every loop, dropping the connections they still hold, and waits for them.
    pub(crate) fn stop(&self) {
        for handle in &self.loops {
            handle.send(Command::Exit);
        }
        for handle in &self.loops {
            let thread = handle.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(thread) = thread {
                if thread.join().is_err() {
                    tracing::error!("a WebSocket event loop panicked");
                }
            }
        }
    }
}

impl Drop for WsLoops {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One loop's state, on its own thread.
struct EventLoop {
    poll: Poll,
    commands: Receiver<Command>,
    count: Arc<AtomicUsize>,
    /// Connections by token; freed slots are reused. Boxed, so a slot is a pointer and a
    /// closed connection's state goes back to the allocator at once, not when the vector
    /// does.
    slots: Vec<Option<Box<Conn>>>,
    free: Vec<usize>,
    by_id: HashMap<u64, usize>,
    /// (deadline, slot, connection id), soonest first; an entry whose connection no longer
    /// holds that deadline is stale and skipped.
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// The deadlines being fired, kept for its capacity.
    due: Vec<(Instant, usize, u64)>,
    shared: Shared,
}

impl EventLoop {
    fn new(poll: Poll, commands: Receiver<Command>, count: Arc<AtomicUsize>) -> Self {
        Self {
            poll,
            commands,
            count,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            deadlines: BinaryHeap::new(),
            due: Vec::new(),
            shared: Shared {
                input: vec![0; SHARED_INPUT_BYTES],
                out: Vec::new(),
            },
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        loop {
            let timeout = self
                .deadlines
                .peek()
                .map(|Reverse((at, ..))| at.saturating_duration_since(Instant::now()));
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(%err, "WebSocket event loop cannot wait for events; its connections are dropped");
                break;
            }
            for event in &events {
                let token = event.token();
                if token == WAKE {
                    if !self.take_commands() {
                        self.drop_all();
                        return;
                    }
                    continue;
                }
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                let writable = event.is_writable() || event.is_write_closed();
                self.with_conn(token.0, |conn, shared| {
                    conn.on_ready(readable, writable, shared)
                });
            }
            self.fire_deadlines();
        }
        self.drop_all();
    }

    /// Runs `f` on the connection in `slot`, then drops it or re-arms its deadline.
    fn with_conn(&mut self, slot: usize, f: impl FnOnce(&mut Conn, &mut Shared) -> Keep) {
        let Some(Some(conn)) = self.slots.get_mut(slot) else {
            return;
        };
        if f(conn, &mut self.shared) == Keep::No {
            self.remove(slot);
            return;
        }
        conn.count_input();
        let Some(next) = conn.deadline() else {
            return;
        };
        if conn.armed.is_none_or(|armed| next < armed) {
            conn.armed = Some(next);
            self.deadlines.push(Reverse((next, slot, conn.id)));
        }
    }

    fn fire_deadlines(&mut self) {
        let Some(Reverse((first, ..))) = self.deadlines.peek() else {
            return;
        };
        let now = Instant::now();
        if *first > now {
            return;
        }
        // Taken out first: a deadline re-armed at or before `now` waits for the next turn
        // instead of spinning this one.
        let mut due = std::mem::take(&mut self.due);
        while let Some(&Reverse(entry)) = self.deadlines.peek() {
            if entry.0 > now {
                break;
            }
            self.deadlines.pop();
            due.push(entry);
        }
        for &(at, slot, id) in &due {
            match self.slots.get_mut(slot) {
                Some(Some(conn)) if conn.id == id && conn.armed == Some(at) => conn.armed = None,
                // Stale: the connection moved its deadline, or is gone.
                _ => continue,
            }
            self.with_conn(slot, |conn, shared| conn.on_deadline(now, shared));
        }
        due.clear();
        self.due = due;
    }

    /// Takes the queued commands; false on `Exit`.
    fn take_commands(&mut self) -> bool {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Adopt(handoff) => {
                    let (adopted, tcp) = *handoff;
                    self.adopt(adopted, tcp);
                }
                Command::GoingAway(id) => {
                    if let Some(&slot) = self.by_id.get(&id) {
                        self.with_conn(slot, Conn::going_away);
                    }
                }
                Command::Drop(id) => {
                    if let Some(&slot) = self.by_id.get(&id) {
                        self.remove(slot);
                    }
                }
                Command::Exit => return false,
            }
        }
        true
    }

    fn adopt(&mut self, adopted: Adopted, tcp: std::net::TcpStream) {
        let peer = adopted.peer;
        let mut tcp = mio::net::TcpStream::from_std(tcp);
        let slot = self.free.pop().unwrap_or(self.slots.len());
        if let Err(err) = self.poll.registry().register(
            &mut tcp,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%peer, %err, "cannot watch an upgraded WebSocket; dropping it");
            if slot < self.slots.len() {
                self.free.push(slot);
            }
            return;
        }
        let id = adopted.id;
        let conn = Box::new(Conn::new(adopted, tcp));
        if slot == self.slots.len() {
            self.slots.push(Some(conn));
        } else {
            self.slots[slot] = Some(conn);
        }
        self.by_id.insert(id, slot);
        self.count.fetch_add(1, Ordering::Relaxed);
        // Bytes that came with the upgrade are answered now; edge-triggered readiness
        // reports anything else that is already waiting.
        self.with_conn(slot, |conn, shared| conn.on_ready(true, false, shared));
    }

    fn remove(&mut self, slot: usize) {
        let Some(mut conn) = self.slots.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Err(err) = self.poll.registry().deregister(&mut conn.tcp) {
            tracing::debug!(%err, "deregistering a closed WebSocket");
        }
        self.by_id.remove(&conn.id);
        conn.ended();
        self.free.push(slot);
        self.count.fetch_sub(1, Ordering::Relaxed);
        if self.by_id.is_empty() {
            // The last connection closed: what the loop grew for the busiest moment goes
            // back (every deadline left is stale).
            self.slots = Vec::new();
            self.free = Vec::new();
            self.by_id = HashMap::new();
            self.deadlines = BinaryHeap::new();
        }
    }

    fn drop_all(&mut self) {
        while let Some(&slot) = self.by_id.values().next() {
            self.remove(slot);
        }
    }
}

/// What one connection's slot holds (for `footprint`'s bound).
#[cfg(test)]
pub(crate) fn conn_size() -> usize {
    std::mem::size_of::<Conn>()
}

/// The size of the wait a parked task holds for an event loop WebSocket's whole life (for
/// `footprint`'s bound).
#[cfg(test)]
pub(crate) fn serve_size() -> usize {
    fn size<A, B, C, D, R>(_f: impl FnOnce(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }
    size::<&'static WsLoops, Handoff, &'static CancelToken, &'static CancelToken, _>(WsLoops::serve)
}
