//! A guard between an HTTP/2 connection's transport and hyper: it follows frame boundaries in
//! both directions, counts the frames that cost the server work without carrying a request,
//! and when a client sends too many of them writes GOAWAY(ENHANCE_YOUR_CALM) at the next
//! boundary of the server's own frames and ends the connection.
//!
//! hyper (through `h2`) already ends a connection for an oversize frame, a CONTINUATION flood
//! and streams reset before they were accepted; it answers every SETTINGS and PING, though,
//! however many arrive, and counts a stream reset after hyper accepted it as ordinary. Those
//! floods are what this guard is for.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use protolab_wire::http2::{
    encode_goaway, error_code, flags, frame_type, FrameHeader, FrameTracker,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When the connection last received a byte, shared with the task that enforces the idle
/// timeout (hyper owns the guard while the connection runs).
#[derive(Debug)]
pub(super) struct Activity {
    start: Instant,
    last_read_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_read_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// When the last byte arrived (or the connection began).
    pub(super) fn last_read(&self) -> Instant {
        self.start + std::time::Duration::from_millis(self.last_read_ms.load(Ordering::Relaxed))
    }
}

/// A token bucket: `rate` frames a second, in bursts of `rate`.
#[derive(Debug)]
struct Budget {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl Budget {
    fn new(rate: u32) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            refilled: Instant::now(),
        }
    }

    /// Takes one token; `false` when the bucket is empty.
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// Where the guard stands.
#[derive(Debug)]
enum State {
    /// Passing bytes through.
    Open,
    /// Over budget: the GOAWAY waits for the server's frames to reach a boundary.
    Tripped,
    /// Writing the GOAWAY; `written` bytes of `frame` are out.
    Writing { frame: Vec<u8>, written: usize },
    /// The GOAWAY is out: every further read and write fails, which ends hyper's connection.
    Done,
}

/// The transport as hyper sees it.
pub(super) struct Guarded<'a, S> {
    io: &'a mut S,
    /// Bytes read before hyper started (the client preface), handed to hyper first.
    replay: &'a [u8],
    inbound: FrameTracker,
    outbound: FrameTracker,
    budget: Budget,
    /// Highest stream a client opened, named in our GOAWAY as the last one processed.
    last_stream_id: u32,
    state: State,
    /// A read waiting for the GOAWAY to go out.
    read_waker: Option<Waker>,
    activity: Arc<Activity>,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Guarded<'a, S> {
    pub(super) fn new(
        io: &'a mut S,
        replay: &'a [u8],
        control_frames_per_second: u32,
        activity: Arc<Activity>,
    ) -> Self {
        Self {
            io,
            replay,
            inbound: FrameTracker::new(),
            outbound: FrameTracker::new(),
            budget: Budget::new(control_frames_per_second),
            last_stream_id: 0,
            state: State::Open,
            read_waker: None,
            activity,
        }
    }

    /// Counts the client's frames in `bytes` (which follow the preface).
    fn inspect_inbound(&mut self, bytes: &[u8]) {
        let (budget, last_stream_id) = (&mut self.budget, &mut self.last_stream_id);
        let mut over = false;
        self.inbound.feed(bytes, |header| {
            if header.kind == frame_type::HEADERS {
                *last_stream_id = (*last_stream_id).max(header.stream_id);
            }
            if costs_without_request(&header) && !budget.take() {
                over = true;
            }
        });
        if over && matches!(self.state, State::Open) {
            tracing::info!(
                "HTTP/2 client sent control frames faster than allowed; sending GOAWAY(ENHANCE_YOUR_CALM)"
            );
            self.state = State::Tripped;
        }
    }

    /// Moves the GOAWAY along: `Ready(())` once it is out (or could not be written).
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match &mut self.state {
                State::Open => return Poll::Ready(()),
                State::Done => return Poll::Ready(()),
                State::Tripped => {
                    if !self.outbound.at_boundary() {
                        // hyper is in the middle of a frame: it finishes it through
                        // `poll_write`, which comes back here.
                        return Poll::Pending;
                    }
                    let mut frame = Vec::with_capacity(64);
                    encode_goaway(
                        &mut frame,
                        self.last_stream_id,
                        error_code::ENHANCE_YOUR_CALM,
                        b"too many control frames",
                    );
                    self.state = State::Writing { frame, written: 0 };
                }
                State::Writing { frame, written } => {
                    while *written < frame.len() {
                        match Pin::new(&mut *self.io).poll_write(cx, &frame[*written..]) {
                            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                                self.state = State::Done;
                                return Poll::Ready(());
                            }
                            Poll::Ready(Ok(n)) => *written += n,
                            Poll::Pending => return Poll::Pending,
                        }
                    }
                    if Pin::new(&mut *self.io).poll_flush(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.state = State::Done;
                    if let Some(waker) = self.read_waker.take() {
                        waker.wake();
                    }
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// Frames a client can send without limit from the protocol's side, each of which makes the
/// server do something (answer, reset, reprioritise) without a request to show for it.
fn costs_without_request(header: &FrameHeader) -> bool {
    match header.kind {
        frame_type::SETTINGS | frame_type::PING => header.flags & flags::ACK == 0,
        frame_type::RST_STREAM | frame_type::PRIORITY => true,
        frame_type::DATA => header.length == 0 && header.flags & flags::END_STREAM == 0,
        _ => false,
    }
}

fn ended() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection ended after GOAWAY(ENHANCE_YOUR_CALM)",
    )
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.state, State::Open) {
            this.read_waker = Some(cx.waker().clone());
            return match this.poll_goaway(cx) {
                Poll::Ready(()) => Poll::Ready(Err(ended())),
                Poll::Pending => Poll::Pending,
            };
        }
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay = &this.replay[n..];
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                this.activity.touch();
                this.inspect_inbound(fresh);
                if !matches!(this.state, State::Open) {
                    // The bytes of this read are not handed on: hyper would answer them.
                    buf.set_filled(before);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
        polled
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Guarded<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match this.state {
            State::Open => {}
            // A frame hyper has begun must be finished before the GOAWAY can follow it.
            State::Tripped if !this.outbound.at_boundary() => {}
            _ => {
                return match this.poll_goaway(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(ended())),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
        let polled = Pin::new(&mut *this.io).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.outbound.feed(&data[..n], |_| {});
            if matches!(this.state, State::Tripped) && this.outbound.at_boundary() {
                if let Some(waker) = this.read_waker.take() {
                    waker.wake();
                }
            }
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        Pin::new(&mut *this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !matches!(this.state, State::Open) && this.poll_goaway(cx).is_pending() {
            return Poll::Pending;
        }
        // The connection's driver closes the transport itself, lingering so the peer reads
        // the last frames before the FIN; hyper's shutdown only flushes.
        Pin::new(&mut *this.io).poll_flush(cx)
    }
}
