//! Read buffers lent to a connection only while it reads and holds bytes it has not used yet,
//! as uWebSockets shares one receive buffer per event loop: an idle connection waits for
//! readiness with no buffer at all, then borrows one for the read and what it brought, and
//! gives it back once nothing is pending. Ten thousand idle WebSockets then hold ten thousand
//! nothings instead of ten thousand 16 KiB buffers.
//!
//! Given-back buffers wait in a small per-thread pool for the next read on that thread, so a
//! busy connection takes a warm buffer instead of asking the allocator every message.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{ready, Poll};

use bytes::BytesMut;

use crate::io::{Io, READ_CHUNK};

/// Buffers kept per runtime thread for the next read: enough for the connections one thread
/// serves between two of its reads, bounded so a burst leaves no lasting memory behind.
const POOLED_PER_THREAD: usize = 8;
/// Larger buffers (a big message's) are freed rather than pooled.
const POOLED_MAX_CAPACITY: usize = 4 * READ_CHUNK;
/// Smallest buffer lent: room for a 16 KiB frame with its header and its TLS records' headers
/// and tags, so such a frame lands in one read and its records are opened in place. Lent at
/// exactly 16 KiB, every 16 KiB WSS echo was carried over in pieces (0.8x the rate).
const LENT_MIN_CAPACITY: usize = 2 * READ_CHUNK;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// What the connections of one lab (or one proxy) borrow: a count a test or a metric can read
/// from outside, which falls back to zero once every connection is idle or closed.
#[derive(Debug, Default)]
pub(crate) struct ReadBuffers {
    lent: AtomicUsize,
}

impl ReadBuffers {
    /// Read buffers lent right now.
    pub(crate) fn lent(&self) -> usize {
        self.lent.load(Ordering::Relaxed)
    }

    /// Counts a buffer lent outside this module (the WS app's event loop keeps a frame's
    /// start in a buffer of the connection's own, and counts it here while it does).
    pub(crate) fn count_lent(&self, lent: bool) {
        if lent {
            self.lent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.lent.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A connection's read buffer; `initial` holds bytes that arrived before it (the rest of
    /// an upgrade request's read), and is kept only if it holds any.
    pub(crate) fn buffer(&self, initial: BytesMut) -> LentBuf<'_> {
        let mut buf = LentBuf {
            buf: BytesMut::new(),
            owner: self,
            lent: false,
        };
        if !initial.is_empty() {
            buf.buf = initial;
            buf.mark_lent();
        }
        buf
    }
}

/// A connection's read buffer, held only while lent.
pub(crate) struct LentBuf<'a> {
    buf: BytesMut,
    owner: &'a ReadBuffers,
    lent: bool,
}

impl LentBuf<'_> {
    fn mark_lent(&mut self) {
        self.lent = true;
        self.owner.lent.fetch_add(1, Ordering::Relaxed);
    }

    /// Borrows a buffer if none is held, and makes `room` free in it.
    fn ensure_room(&mut self, room: usize) {
        if !self.lent {
            self.buf = POOL
                .try_with(|pool| pool.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default();
            self.mark_lent();
        }
        self.buf.reserve(room.max(LENT_MIN_CAPACITY));
    }

    /// The bytes held, no longer lent: for a connection that leaves the lab's tasks. An
    /// empty buffer goes back to the pool and nothing is returned: the connection must not
    /// keep a 32 KiB capacity it has no bytes in.
    pub(crate) fn into_bytes(mut self) -> BytesMut {
        if self.buf.is_empty() {
            return BytesMut::new();
        }
        if self.lent {
            self.lent = false;
            self.owner.lent.fetch_sub(1, Ordering::Relaxed);
        }
        std::mem::take(&mut self.buf)
    }

    /// Gives the buffer back when it holds nothing: the connection is between messages.
    pub(crate) fn give_back_if_empty(&mut self) {
        if self.lent && self.buf.is_empty() {
            self.give_back();
        }
    }

    fn give_back(&mut self) {
        self.lent = false;
        self.owner.lent.fetch_sub(1, Ordering::Relaxed);
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        // Reclaims the room consumed bytes left at the front; no allocation for a buffer
        // that once had it.
        buf.reserve(READ_CHUNK);
        if buf.capacity() <= POOLED_MAX_CAPACITY {
            let _ = POOL.try_with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < POOLED_PER_THREAD {
                    pool.push(buf);
                }
            });
        }
    }

    /// Waits until `stream` has something to read, then reads into the buffer, borrowing
    /// one with at least `room` free only then. Returns what `read_buf` would. Cancel-safe:
    /// bytes read stay in the buffer.
    pub(crate) async fn read_from<S: Io>(
        &mut self,
        stream: &mut S,
        room: usize,
    ) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| loop {
            ready!(stream.poll_read_ready(cx))?;
            self.ensure_room(room);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut self.buf) {
                Poll::Ready(read) => return Poll::Ready(read),
                // Readiness was stale (or only a record's start arrived): hold nothing while
                // waiting again.
                Poll::Pending => self.give_back_if_empty(),
            }
        })
        .await
    }
}

impl std::ops::Deref for LentBuf<'_> {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        &self.buf
    }
}

impl std::ops::DerefMut for LentBuf<'_> {
    fn deref_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }
}

impl Drop for LentBuf<'_> {
    fn drop(&mut self) {
        if self.lent {
            self.give_back();
        }
    }
}
