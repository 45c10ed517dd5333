//! [`CountingStream`]: a stream wrapper that counts the bytes crossing it.
//!
//! Placed directly over the TCP socket (under TLS), it counts what goes on the wire: TLS
//! records, HTTP heads, WebSocket frame headers and masks, not just payload. Placed over the
//! TLS stream, it counts the plaintext, so the difference is what TLS itself costs.
//!
//! It also counts *turns*: reads that bring data after this side wrote something. Each is a
//! wait on the peer, so turns plus the TCP handshake are the round trips a client needed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Byte counters shared between a [`CountingStream`] and whoever reads them. Cloning shares
/// the same counters.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    read: AtomicU64,
    written: AtomicU64,
    turns: AtomicU64,
    /// Written since the last read that brought data.
    wrote: AtomicBool,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Bytes read from the stream so far.
    pub received: u64,
    /// Bytes written to the stream so far (accepted by the inner stream).
    pub sent: u64,
    /// Reads that brought data after a write: the times this side waited for the peer.
    pub turns: u64,
}

impl Snapshot {
    /// Bytes moved between `earlier` and `self`.
    #[must_use]
    pub fn since(self, earlier: Self) -> Self {
        Self {
            received: self.received.saturating_sub(earlier.received),
            sent: self.sent.saturating_sub(earlier.sent),
            turns: self.turns.saturating_sub(earlier.turns),
        }
    }

    /// The sum of two counts.
    #[must_use]
    pub fn plus(self, other: Self) -> Self {
        Self {
            received: self.received + other.received,
            sent: self.sent + other.sent,
            turns: self.turns + other.turns,
        }
    }
}

impl Counters {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts now. Both are read independently (each is exact on its own).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            received: self.inner.read.load(Ordering::Relaxed),
            sent: self.inner.written.load(Ordering::Relaxed),
            turns: self.inner.turns.load(Ordering::Relaxed),
        }
    }

    fn add_read(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.inner.read.fetch_add(n as u64, Ordering::Relaxed);
        if self.inner.wrote.swap(false, Ordering::Relaxed) {
            self.inner.turns.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn add_written(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.inner.written.fetch_add(n as u64, Ordering::Relaxed);
        self.inner.wrote.store(true, Ordering::Relaxed);
    }
}

/// Wraps a stream and counts every byte read from and written to it.
#[derive(Debug)]
pub struct CountingStream<S> {
    inner: S,
    counters: Counters,
}

impl<S> CountingStream<S> {
    /// Wraps `inner`, counting into `counters`.
    pub fn new(inner: S, counters: Counters) -> Self {
        Self { inner, counters }
    }

    /// The counters this stream adds to.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let n = buf.filled().len().saturating_sub(before);
            self.counters.add_read(n);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counters.add_written(n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            self.counters.add_written(n);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn counts_both_directions() {
        let (a, mut b) = tokio::io::duplex(64);
        let counters = Counters::new();
        let mut s = CountingStream::new(a, counters.clone());
        s.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(
            counters.snapshot(),
            Snapshot {
                received: 0,
                sent: 5,
                turns: 0
            }
        );
        let mark = counters.snapshot();
        b.write_all(b"0123456789").await.unwrap();
        let mut back = [0u8; 10];
        s.read_exact(&mut back).await.unwrap();
        s.write_all(b"xy").await.unwrap();
        assert_eq!(
            counters.snapshot().since(mark),
            Snapshot {
                received: 10,
                sent: 2,
                turns: 1
            }
        );
        assert_eq!(s.counters().snapshot().received, 10);
    }

    #[tokio::test]
    async fn eof_counts_nothing() {
        let (a, b) = tokio::io::duplex(8);
        drop(b);
        let counters = Counters::new();
        let mut s = CountingStream::new(a, counters.clone());
        let mut buf = Vec::new();
        assert_eq!(s.read_to_end(&mut buf).await.unwrap(), 0);
        assert_eq!(counters.snapshot(), Snapshot::default());
    }
}
