//! One WebSocket session of the WS app: echo every message, push on a timer, keep the
//! connection alive with pings, and close it properly (RFC 6455 §7) for every way it can end.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use protolab_wire::ws::deflate;
use protolab_wire::ws::{
    apply_mask, close_code, encode_close, encode_frame, Decoder, Message, OpCode,
};
use tokio::time::{sleep_until, Instant, Sleep};

use crate::budget::Charge;
use crate::ctx::{close_gracefully, write_out, write_two, ConnCtx};
use crate::io::{Io, READ_CHUNK};
use crate::lend::LentBuf;
use crate::ws_core::{
    answer, echo_frame, echo_in_place, encode_data, message_too_slow, over_budget, protocol_error,
    push_message, read_room, write_echo_header, Due, Ending, Liveliness, Move, Schedule, Session,
    DIRECT_ECHO_BYTES, FREE_READ_BYTES, KEPT_OUT_BYTES, MOVE_AFTER, MOVE_AFTER_MESSAGES,
};

/// What one session was given at the upgrade.
pub(crate) struct Setup<'a> {
    /// Interval between pushes.
    pub(crate) push_interval: Duration,
    /// permessage-deflate's agreed terms, if it was negotiated.
    pub(crate) deflate: Option<deflate::Params>,
    /// The connection's account with the lab's message budget (holding the deflate state's
    /// share already, when there is one).
    pub(crate) charge: Charge<'a>,
}

/// A session that leaves its task for the event loop: its socket, its state, its account
/// with the budget and its (empty) read buffer.
pub(crate) struct Moving<'c, S> {
    pub(crate) stream: S,
    /// Boxed: the parked task keeps the hand-off's arguments for the connection's life.
    pub(crate) session: Box<Session>,
    pub(crate) charge: Charge<'c>,
    pub(crate) buf: LentBuf<'c>,
}

/// Runs the WebSocket until it closes, or until `moves` says it goes to the event loop and it
/// stands between messages: then it returns what the loop needs to go on. `buf` holds bytes that arrived after the upgrade head
/// (lent only if there are any).
pub(crate) async fn run<'c, S: Io>(
    mut stream: S,
    mut buf: LentBuf<'c>,
    peer: SocketAddr,
    ctx: &'c ConnCtx,
    setup: Setup<'c>,
    moves: Move,
) -> Option<Moving<'c, S>> {
    let limits = &ctx.limits;
    let start = Instant::now();
    let Session {
        mut decoder,
        mut deflater,
        fixed,
        schedule,
        mut liveness,
        mut push_seq,
    } = Session::new(limits, setup.push_interval, setup.deflate, start.into_std());
    // What this connection holds beyond its read buffer, charged to the lab-wide budget.
    let mut charge = setup.charge;
    // When the message in progress began, while one is.
    let mut message_since: Option<Instant> = None;
    // `buf` is held only while some bytes read are not answered yet: an idle connection
    // holds no read buffer, and its answers buffer is freed once it grew past a small
    // reply's size.
    let mut out = Vec::new();
    let move_at = (moves == Move::WhenLongLived).then(|| start + MOVE_AFTER);
    let mut timers = Timers::new(schedule, move_at);
    let mut heard: u64 = 0;

    // Pinned once: re-creating the future every iteration would register and deregister a
    // waiter on the token for every message.
    let shutdown = ctx.graceful.cancelled();
    tokio::pin!(shutdown);

    let mut header = Vec::new();
    let ending = 'session: loop {
        // Answer everything already buffered before waiting again.
        loop {
            let frame = echo_frame(&buf, &decoder, limits.max_message_bytes);
            if let Some(frame) = frame.as_ref().filter(|f| f.payload_len < DIRECT_ECHO_BYTES) {
                if let Some(used) = echo_in_place(&mut out, &buf, frame) {
                    buf.advance(used);
                    liveness.heard();
                    heard += 1;
                    continue;
                }
            }
            if let Some(frame) =
                frame.filter(|f| f.opcode == OpCode::Binary && f.payload_len >= DIRECT_ECHO_BYTES)
            {
                // Earlier answers go first: the peer must see echoes in order.
                if !out.is_empty() {
                    if write_out(&mut stream, &out, ctx).await.is_err() {
                        break 'session Ending::Gone;
                    }
                    out.clear();
                }
                let payload = frame.header_len..frame.header_len + frame.payload_len;
                apply_mask(&mut buf[payload.clone()], frame.mask, 0);
                header.clear();
                write_echo_header(&mut header, OpCode::Binary, frame.payload_len);
                if write_two(&mut stream, &header, &buf[payload.clone()], ctx)
                    .await
                    .is_err()
                {
                    break 'session Ending::Gone;
                }
                buf.advance(payload.end);
                liveness.heard();
                heard += 1;
                continue;
            }
            match decoder.decode(&buf) {
                Ok((0, None)) => break,
                Ok((consumed, message)) => {
                    buf.advance(consumed);
                    liveness.heard();
                    heard += 1;
                    if let Some(message) = message {
                        if answer(message, &mut out, deflater.as_mut()) {
                            if write_out(&mut stream, &out, ctx).await.is_err() {
                                break 'session Ending::Gone;
                            }
                            break 'session Ending::PeerClosed;
                        }
                    }
                }
                Err(err) => break 'session protocol_error(&err, peer),
            }
        }
        if !out.is_empty() {
            if write_out(&mut stream, &out, ctx).await.is_err() {
                break Ending::Gone;
            }
            out.clear();
        }
        // A peer that never lets the socket go idle must still see shutdown.
        if ctx.graceful.is_cancelled() {
            break Ending::WeClose(close_code::GOING_AWAY, "server shutting down".into());
        }
        if decoder.in_message() {
            let since = *message_since.get_or_insert_with(Instant::now);
            if since.elapsed() > limits.message_timeout {
                break message_too_slow(limits.message_timeout, peer);
            }
        } else {
            message_since = None;
            let long_lived = timers.move_due || heard + push_seq >= MOVE_AFTER_MESSAGES;
            let moving = match moves {
                Move::Never => false,
                Move::AtOnce => true,
                Move::WhenLongLived => long_lived,
            };
            if moving && buf.is_empty() {
                // Between messages with every answer written: nothing is lost in the move.
                return Some(Moving {
                    stream,
                    session: Box::new(Session {
                        decoder,
                        deflater,
                        fixed,
                        schedule: timers.schedule,
                        liveness,
                        push_seq,
                    }),
                    charge,
                    buf,
                });
            }
        }
        if out.capacity() > KEPT_OUT_BYTES {
            out = Vec::new();
        }
        buf.give_back_if_empty();
        let room = read_room(decoder.wanted(&buf));
        if charge.set(fixed + held(&buf, room, &decoder)).is_err() {
            break over_budget(peer);
        }
        // Read first: when woken by data, nothing else is polled. `hard` needs no branch:
        // it fires only after `graceful`, which has ended this loop by then.
        tokio::select! {
            biased;
            read = buf.read_from(&mut stream, room) => match read {
                Ok(0) | Err(_) => break Ending::Gone,
                Ok(_) => {}
            },
            () = &mut shutdown => {
                break Ending::WeClose(close_code::GOING_AWAY, "server shutting down".into());
            }
            due = timers.next() => {
                for _ in 0..due.pushes {
                    push_seq += 1;
                    let text = push_message(push_seq);
                    encode_data(&mut out, OpCode::Text, text.as_bytes(), deflater.as_mut());
                }
                if due.keepalive {
                    if message_since.is_some_and(|t| due.now - t.into_std() > limits.message_timeout) {
                        break message_too_slow(limits.message_timeout, peer);
                    }
                    let liveliness = liveness.tick(due.now);
                    if !matches!(liveliness, Liveliness::Heard) && buf.is_empty() {
                        // Quiet since the last tick: the TLS stream's buffers go back too,
                        // and so do this loop's answer buffers.
                        stream.release_idle_buffers();
                        if out.is_empty() {
                            out = Vec::new();
                        }
                        header = Vec::new();
                    }
                    match liveliness {
                        Liveliness::Idle => {
                            break Ending::WeClose(close_code::GOING_AWAY, "idle timeout".into());
                        }
                        Liveliness::Ping => {
                            encode_frame(&mut out, true, OpCode::Ping, None, b"protolab");
                        }
                        Liveliness::Heard | Liveliness::Quiet => {}
                    }
                }
            }
        }
    };

    // Boxed: closing's waits (lingering, the peer's close frame, their timers) would
    // otherwise be room in every open connection's state.
    Box::pin(finish(
        ending,
        &mut stream,
        &mut out,
        &mut buf,
        &mut decoder,
        peer,
        ctx,
    ))
    .await;
    None
}

/// Ends the WebSocket as `ending` says: answers still owed, the close handshake, and a
/// lingering close.
async fn finish<S: Io>(
    ending: Ending,
    stream: &mut S,
    out: &mut Vec<u8>,
    buf: &mut LentBuf<'_>,
    decoder: &mut Decoder,
    peer: SocketAddr,
    ctx: &ConnCtx,
) {
    match ending {
        Ending::Gone => tracing::debug!(%peer, "WebSocket peer left without a close frame"),
        Ending::PeerClosed => {
            // RFC 6455 §7.1.1: after the close handshake the server closes TCP first.
            close_gracefully(stream, ctx).await;
        }
        Ending::WeClose(code, reason) => {
            // Answers to the messages before a protocol error are still owed: the close
            // frame goes after them.
            encode_close(out, None, code, &reason);
            if write_out(stream, out, ctx).await.is_ok() {
                await_peer_close(stream, buf, decoder, ctx).await;
                close_gracefully(stream, ctx).await;
            }
        }
        Ending::Fail(code, reason) => {
            encode_close(out, None, code, &reason);
            if write_out(stream, out, ctx).await.is_ok() {
                close_gracefully(stream, ctx).await;
            }
        }
    }
}

/// Bytes this connection holds for messages beyond what every connection may: the message
/// buffer, and read-buffer capacity past [`FREE_READ_BYTES`] (counting the `room` the next
/// read makes, so the budget is asked before the buffer grows).
fn held(buf: &BytesMut, room: usize, decoder: &Decoder) -> usize {
    (buf.len() + room)
        .max(buf.capacity())
        .saturating_sub(FREE_READ_BYTES)
        + decoder.buffered()
}

/// The [`Schedule`] behind one tokio timer, which also wakes the session when it may move to
/// the event loop.
struct Timers {
    sleep: Pin<Box<Sleep>>,
    schedule: Schedule,
    move_at: Option<Instant>,
    /// `move_at` has passed: the session moves at its next point between messages.
    move_due: bool,
}

impl Timers {
    fn new(schedule: Schedule, move_at: Option<Instant>) -> Self {
        let next = Instant::from_std(schedule.next_at());
        Self {
            sleep: Box::pin(sleep_until(move_at.map_or(next, |at| at.min(next)))),
            schedule,
            move_at,
            move_due: false,
        }
    }

    fn wake_at(&self) -> Instant {
        let next = Instant::from_std(self.schedule.next_at());
        self.move_at.map_or(next, |at| at.min(next))
    }

    /// Completes when at least one job is due (or the move is) and re-arms the timer for the
    /// next one.
    async fn next(&mut self) -> Due {
        self.sleep.as_mut().await;
        let now = Instant::now();
        let due = self.schedule.due(now.into_std());
        if self.move_at.is_some_and(|at| now >= at) {
            self.move_at = None;
            self.move_due = true;
        }
        let next = self.wake_at();
        self.sleep.as_mut().reset(next);
        due
    }
}

/// After our close frame, reads (and discards) until the peer's close frame, EOF, or the close
/// timeout, so the peer sees a clean close handshake rather than a reset.
async fn await_peer_close<S: Io>(
    stream: &mut S,
    buf: &mut LentBuf<'_>,
    decoder: &mut Decoder,
    ctx: &ConnCtx,
) {
    let wait = async {
        loop {
            loop {
                match decoder.decode(buf) {
                    Ok((0, None)) => break,
                    Ok((n, Some(Message::Close(_)))) => {
                        buf.advance(n);
                        return;
                    }
                    Ok((n, _)) => buf.advance(n),
                    // After a protocol error the stream is unparseable; just wait for EOF.
                    Err(_) => buf.clear(),
                }
            }
            match buf.read_from(stream, READ_CHUNK).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::select! {
        () = ctx.hard.cancelled() => {}
        _ = tokio::time::timeout(ctx.limits.close_timeout, wait) => {}
    }
}
