//! One plain WebSocket connection on the event loop: the same session as [`crate::ws::run`]
//! (echo, push, keepalive, limits, the close handshake in every way it can end), driven by
//! readiness events and one deadline instead of awaiting.

use std::io::{ErrorKind, IoSlice, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf as _, BytesMut};
use protolab_wire::ws::deflate::Deflater;
use protolab_wire::ws::{
    apply_mask, close_code, encode_close, encode_frame, Decoder, Message, OpCode,
};

use crate::budget::OwnedCharge;
use crate::ws_core::{
    answer, echo_frame, echo_in_place, encode_data, message_too_slow, over_budget, protocol_error,
    push_message, read_room, write_echo_header, Ending, Liveliness, Liveness, Schedule,
    DIRECT_ECHO_BYTES, FREE_READ_BYTES, KEPT_OUT_BYTES,
};
use crate::Limits;

use super::{Adopted, Shared};

/// Where the connection stands.
#[derive(Clone, Copy)]
enum Phase {
    /// Messages flow.
    Open,
    /// Our close frame is out: read (and discard) until the peer's, at most `until`.
    AwaitingClose { until: Instant },
    /// Our side of TCP is shut: read (and discard) until the peer's FIN, at most `until`.
    Lingering { until: Instant },
}

/// What follows once everything queued is written.
#[derive(Clone, Copy)]
enum Then {
    AwaitClose,
    Linger,
}

/// Whether the loop keeps the connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Keep {
    Yes,
    No,
}

/// A step of answering what was read.
enum Step {
    /// Everything whole was answered; the rest (if any) is part of a frame.
    More,
    /// The socket took less than was written: stop until it is writable.
    Blocked,
    /// The session ends.
    End(Ending),
}

pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) tcp: mio::net::TcpStream,
    peer: SocketAddr,
    limits: Arc<Limits>,
    decoder: Decoder,
    deflater: Option<Deflater>,
    /// What the connection's fixed state (a deflate context) charges to the budget.
    fixed: usize,
    charge: OwnedCharge,
    /// Bytes read and not used yet (a frame's start); empty, with no capacity, otherwise.
    input: BytesMut,
    /// Bytes the socket did not take yet; while any wait, nothing more is read.
    pending: Vec<u8>,
    write_deadline: Option<Instant>,
    schedule: Schedule,
    liveness: Liveness,
    push_seq: u64,
    message_since: Option<Instant>,
    phase: Phase,
    then: Option<Then>,
    /// Reading stopped with bytes possibly left in the socket (edge-triggered readiness will
    /// not report them again): read again once the pending bytes are written.
    paused: bool,
    read_buffers: Arc<crate::lend::ReadBuffers>,
    /// `input` is counted in `read_buffers`.
    input_counted: bool,
    /// The deadline the loop's heap holds for this connection, if any.
    pub(super) armed: Option<Instant>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Conn {
    pub(super) fn new(adopted: Adopted, tcp: mio::net::TcpStream) -> Self {
        let session = *adopted.session;
        Self {
            id: adopted.id,
            tcp,
            peer: adopted.peer,
            schedule: session.schedule,
            liveness: session.liveness,
            limits: adopted.limits,
            decoder: session.decoder,
            deflater: session.deflater,
            fixed: session.fixed,
            charge: adopted.charge,
            input: adopted.input,
            pending: Vec::new(),
            write_deadline: None,
            push_seq: session.push_seq,
            message_since: None,
            phase: Phase::Open,
            then: None,
            paused: false,
            armed: None,
            read_buffers: adopted.read_buffers,
            input_counted: false,
            done: Some(adopted.done),
        }
    }

    /// When the loop must next look at this connection, if it must. While a close waits
    /// for its frame to be written, only the write's timeout counts: pushes and keepalive
    /// have stopped.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Open if self.then.is_none() => Some(self.schedule.next_at()),
            Phase::Open => None,
            Phase::AwaitingClose { until } | Phase::Lingering { until } => Some(until),
        };
        match (phase, self.write_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Counts `input` among the lab's lent read buffers while it holds bytes, as a task's
    /// lent buffer is counted.
    pub(super) fn count_input(&mut self) {
        let holds = !self.input.is_empty();
        if holds != self.input_counted {
            self.input_counted = holds;
            self.read_buffers.count_lent(holds);
        }
    }

    /// Tells the waiting task the connection has ended.
    pub(super) fn ended(&mut self) {
        if std::mem::take(&mut self.input_counted) {
            self.read_buffers.count_lent(false);
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }

    /// A readiness event.
    pub(super) fn on_ready(&mut self, readable: bool, writable: bool, shared: &mut Shared) -> Keep {
        let mut read = readable;
        if writable && !self.pending.is_empty() {
            match self.write_pending() {
                Err(()) => return Keep::No,
                Ok(false) => {
                    self.paused |= read;
                    return Keep::Yes;
                }
                Ok(true) => {
                    if let Some(keep) = self.after_written() {
                        return keep;
                    }
                    read |= std::mem::take(&mut self.paused);
                }
            }
        }
        if read && self.pending.is_empty() {
            return self.read_all(shared);
        }
        if read {
            self.paused = true;
        }
        Keep::Yes
    }

    /// The lab is shutting down: close with 1001 (going away).
    pub(super) fn going_away(&mut self, shared: &mut Shared) -> Keep {
        if !matches!(self.phase, Phase::Open) || self.then.is_some() {
            return Keep::Yes;
        }
        let ending = Ending::WeClose(close_code::GOING_AWAY, "server shutting down".into());
        self.end(ending, shared)
    }

    /// The connection's deadline passed (`now` ≥ [`Self::deadline`], or the heap held an
    /// older, earlier one).
    pub(super) fn on_deadline(&mut self, now: Instant, shared: &mut Shared) -> Keep {
        if self.write_deadline.is_some_and(|w| now >= w) {
            tracing::debug!(peer = %self.peer, "WebSocket write did not finish in time");
            return Keep::No;
        }
        match self.phase {
            Phase::AwaitingClose { until } if now >= until => self.linger(now),
            Phase::Lingering { until } if now >= until => Keep::No,
            Phase::Open if now >= self.schedule.next_at() && self.then.is_none() => {
                self.on_schedule(now, shared)
            }
            _ => Keep::Yes,
        }
    }

    fn on_schedule(&mut self, now: Instant, shared: &mut Shared) -> Keep {
        let due = self.schedule.due(now);
        let out = &mut shared.out;
        for _ in 0..due.pushes {
            self.push_seq += 1;
            let text = push_message(self.push_seq);
            encode_data(out, OpCode::Text, text.as_bytes(), self.deflater.as_mut());
        }
        if due.keepalive {
            let timeout = self.limits.message_timeout;
            if self.message_since.is_some_and(|t| now - t > timeout) {
                return self.end(message_too_slow(timeout, self.peer), shared);
            }
            let liveliness = self.liveness.tick(now);
            if !matches!(liveliness, Liveliness::Heard) && self.pending.is_empty() {
                self.pending = Vec::new();
            }
            match liveliness {
                Liveliness::Idle => {
                    let ending = Ending::WeClose(close_code::GOING_AWAY, "idle timeout".into());
                    return self.end(ending, shared);
                }
                Liveliness::Ping => {
                    encode_frame(&mut shared.out, true, OpCode::Ping, None, b"protolab");
                }
                Liveliness::Heard | Liveliness::Quiet => {}
            }
        }
        self.flush(shared)
    }

    /// Answers what is already buffered, then reads until the socket is drained (or the
    /// peer must first take what we wrote).
    fn read_all(&mut self, shared: &mut Shared) -> Keep {
        if !matches!(self.phase, Phase::Open) {
            return self.read_closing(shared);
        }
        if !self.input.is_empty() {
            let mut input = std::mem::take(&mut self.input);
            let step = self.use_bytes(&mut input, &mut shared.out);
            self.input = input;
            if let Some(keep) = self.after_step(step, shared) {
                return keep;
            }
        }
        loop {
            let wanted = read_room(self.decoder.wanted(&self.input));
            let own = !self.input.is_empty() || wanted > shared.input.len();
            let holding = if own { self.input.len() + wanted } else { 0 };
            if self.recharge(holding).is_err() {
                return self.end(over_budget(self.peer), shared);
            }
            let read = if own {
                self.read_own(wanted, &mut shared.out)
            } else {
                self.read_shared(shared)
            };
            let (n, asked, step) = match read {
                Read::Eof => return self.on_eof(),
                Read::Failed => return Keep::No,
                Read::Drained => break,
                Read::Got { n, asked, step } => (n, asked, step),
            };
            if let Some(keep) = self.after_step(step, shared) {
                return keep;
            }
            if n < asked {
                // The read did not fill the space: the socket is drained for now, and the
                // next bytes to arrive raise a new edge.
                break;
            }
        }
        if self.recharge(self.input.capacity()).is_err() {
            return self.end(over_budget(self.peer), shared);
        }
        self.flush(shared)
    }

    /// Reads while closing: until the peer's close frame (other frames are dropped), then
    /// until its FIN, as `ws::await_peer_close` and `io::linger_close` do.
    fn read_closing(&mut self, shared: &mut Shared) -> Keep {
        loop {
            let n = match read_some(&mut self.tcp, &mut shared.input) {
                Ok(0) | Err(ReadError::Failed) => return Keep::No,
                Ok(n) => n,
                Err(ReadError::Drained) => return Keep::Yes,
            };
            if matches!(self.phase, Phase::AwaitingClose { .. })
                && self.peer_close_in(&shared.input[..n])
                && self.linger(Instant::now()) == Keep::No
            {
                return Keep::No;
            }
        }
    }

    /// Whether the peer's close frame is among the bytes read so far (kept in `input` until
    /// it is whole). After a protocol error the stream is unparseable: it is dropped.
    fn peer_close_in(&mut self, bytes: &[u8]) -> bool {
        self.input.extend_from_slice(bytes);
        let found = loop {
            match self.decoder.decode(&self.input) {
                Ok((0, None)) => break false,
                Ok((n, Some(Message::Close(_)))) => {
                    self.input.advance(n);
                    break true;
                }
                Ok((n, _)) => self.input.advance(n),
                Err(_) => {
                    self.input.clear();
                    break false;
                }
            }
        };
        if found || self.input.is_empty() {
            self.input = BytesMut::new();
        }
        found
    }

    /// Reads into the loop's shared buffer and answers from there; what a frame leaves over
    /// moves to the connection's own buffer.
    fn read_shared(&mut self, shared: &mut Shared) -> Read {
        let n = match read_some(&mut self.tcp, &mut shared.input) {
            Ok(0) => return Read::Eof,
            Ok(n) => n,
            Err(ReadError::Drained) => return Read::Drained,
            Err(ReadError::Failed) => return Read::Failed,
        };
        let asked = shared.input.len();
        let (used, step) = self.answer_bytes(&mut shared.input[..n], &mut shared.out);
        if used < n && !matches!(step, Step::End(_)) {
            self.input = BytesMut::from(&shared.input[used..n]);
        }
        Read::Got { n, asked, step }
    }

    /// Reads into the connection's own buffer (a frame's start is waiting there, or the next
    /// frame is larger than the shared buffer).
    fn read_own(&mut self, wanted: usize, out: &mut Vec<u8>) -> Read {
        let start = self.input.len();
        self.input.resize(start + wanted, 0);
        let result = read_some(&mut self.tcp, &mut self.input[start..]);
        let n = *result.as_ref().unwrap_or(&0);
        self.input.truncate(start + n);
        match result {
            Ok(0) => return Read::Eof,
            Ok(_) => {}
            Err(ReadError::Drained) => return Read::Drained,
            Err(ReadError::Failed) => return Read::Failed,
        }
        let mut input = std::mem::take(&mut self.input);
        let step = self.use_bytes(&mut input, out);
        self.input = input;
        Read::Got {
            n,
            asked: wanted,
            step,
        }
    }

    /// Answers from the front of `input` and drops what was used; an empty buffer gives its
    /// capacity back, so an idle connection holds none.
    fn use_bytes(&mut self, input: &mut BytesMut, out: &mut Vec<u8>) -> Step {
        let (used, step) = self.answer_bytes(&mut input[..], out);
        input.advance(used);
        if input.is_empty() {
            *input = BytesMut::new();
        }
        step
    }

    /// Charges the budget for `holding` bytes of read buffer (past what every connection
    /// may hold for free) and the message the decoder is putting together.
    fn recharge(&mut self, holding: usize) -> Result<(), ()> {
        let bytes = holding.saturating_sub(FREE_READ_BYTES) + self.decoder.buffered();
        self.charge.set(self.fixed + bytes).map_err(|_| ())
    }

    /// Answers every whole frame at the start of `bytes` (the [`crate::ws::run`] rules):
    /// returns how many bytes were used and how it stopped.
    fn answer_bytes(&mut self, bytes: &mut [u8], out: &mut Vec<u8>) -> (usize, Step) {
        let max = self.limits.max_message_bytes;
        let mut at = 0;
        let step = loop {
            let buf = &mut bytes[at..];
            let frame = echo_frame(buf, &self.decoder, max);
            if let Some(frame) = frame.as_ref().filter(|f| f.payload_len < DIRECT_ECHO_BYTES) {
                if let Some(used) = echo_in_place(out, buf, frame) {
                    at += used;
                    self.liveness.heard();
                    continue;
                }
            }
            if let Some(frame) =
                frame.filter(|f| f.opcode == OpCode::Binary && f.payload_len >= DIRECT_ECHO_BYTES)
            {
                // Earlier answers go first (the peer must see echoes in order), then the
                // header, then the payload unmasked where it lies: one vectored write.
                let payload = frame.header_len..frame.header_len + frame.payload_len;
                apply_mask(&mut buf[payload.clone()], frame.mask, 0);
                write_echo_header(out, OpCode::Binary, frame.payload_len);
                let written = self.write_three(out, &buf[payload.clone()], &[]);
                out.clear();
                at += payload.end;
                self.liveness.heard();
                match written {
                    Err(()) => break Step::End(Ending::Gone),
                    Ok(false) => break Step::Blocked,
                    Ok(true) => continue,
                }
            }
            match self.decoder.decode(buf) {
                Ok((0, None)) => break Step::More,
                Ok((used, message)) => {
                    at += used;
                    self.liveness.heard();
                    if let Some(message) = message {
                        if answer(message, out, self.deflater.as_mut()) {
                            break Step::End(Ending::PeerClosed);
                        }
                    }
                }
                Err(err) => break Step::End(protocol_error(&err, self.peer)),
            }
        };
        if matches!(step, Step::More) {
            if self.decoder.in_message() {
                let since = *self.message_since.get_or_insert_with(Instant::now);
                if since.elapsed() > self.limits.message_timeout {
                    return (
                        at,
                        Step::End(message_too_slow(self.limits.message_timeout, self.peer)),
                    );
                }
            } else {
                self.message_since = None;
            }
        }
        (at, step)
    }

    /// What a step means for the connection: `Some` when the caller must return it.
    fn after_step(&mut self, step: Step, shared: &mut Shared) -> Option<Keep> {
        match step {
            Step::More => None,
            Step::Blocked => {
                self.paused = true;
                Some(self.flush(shared))
            }
            Step::End(ending) => Some(self.end(ending, shared)),
        }
    }

    /// Ends the session as `ending` says (see `ws::finish`): answers still owed go first,
    /// then the close frame, then the close handshake's wait and a lingering close.
    fn end(&mut self, ending: Ending, shared: &mut Shared) -> Keep {
        match ending {
            Ending::Gone => {
                tracing::debug!(peer = %self.peer, "WebSocket peer left without a close frame");
                return Keep::No;
            }
            Ending::PeerClosed => self.then = Some(Then::Linger),
            Ending::WeClose(code, reason) => {
                encode_close(&mut shared.out, None, code, &reason);
                self.then = Some(Then::AwaitClose);
            }
            Ending::Fail(code, reason) => {
                encode_close(&mut shared.out, None, code, &reason);
                self.then = Some(Then::Linger);
            }
        }
        self.flush(shared)
    }

    /// Writes the loop's answers (behind anything pending); once all is written, moves on
    /// to what the close handshake needs next.
    fn flush(&mut self, shared: &mut Shared) -> Keep {
        let written = self.write_three(&shared.out, &[], &[]);
        shared.out.clear();
        if shared.out.capacity() > super::SHARED_OUT_KEPT {
            shared.out = Vec::new();
        }
        match written {
            Err(()) => Keep::No,
            Ok(false) => Keep::Yes,
            Ok(true) => self.after_written().unwrap_or(Keep::Yes),
        }
    }

    /// Everything queued is written: the next step of a close, if one is under way.
    fn after_written(&mut self) -> Option<Keep> {
        self.write_deadline = None;
        if self.pending.capacity() > KEPT_OUT_BYTES {
            self.pending = Vec::new();
        }
        match self.then.take()? {
            Then::AwaitClose => {
                let until = Instant::now() + self.limits.close_timeout;
                self.phase = Phase::AwaitingClose { until };
                Some(Keep::Yes)
            }
            Then::Linger => Some(self.linger(Instant::now())),
        }
    }

    /// Shuts our side and waits (bounded) for the peer's FIN, as `io::linger_close` does.
    fn linger(&mut self, now: Instant) -> Keep {
        if self.tcp.shutdown(Shutdown::Write).is_err() {
            return Keep::No;
        }
        self.phase = Phase::Lingering {
            until: now + self.limits.close_timeout,
        };
        Keep::Yes
    }

    fn on_eof(&mut self) -> Keep {
        if matches!(self.phase, Phase::Open) {
            tracing::debug!(peer = %self.peer, "WebSocket peer left without a close frame");
        }
        Keep::No
    }

    /// Writes `a`, `b` and `c` after anything pending, without waiting: `Ok(true)` when all
    /// of it is out, `Ok(false)` when the rest waits in `pending` (with a write deadline).
    fn write_three(&mut self, a: &[u8], b: &[u8], c: &[u8]) -> Result<bool, ()> {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(a);
            self.pending.extend_from_slice(b);
            self.pending.extend_from_slice(c);
            return self.write_pending();
        }
        let mut parts = [a, b, c];
        while parts.iter().any(|p| !p.is_empty()) {
            let slices = parts.map(IoSlice::new);
            match self.tcp.write_vectored(&slices) {
                Ok(0) => return Err(()),
                Ok(mut n) => {
                    for part in &mut parts {
                        let from = n.min(part.len());
                        *part = &part[from..];
                        n -= from;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    for part in parts {
                        self.pending.extend_from_slice(part);
                    }
                    self.write_deadline = Some(Instant::now() + self.limits.write_timeout);
                    return Ok(false);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(()),
            }
        }
        Ok(true)
    }

    /// Writes what is pending: `Ok(true)` once all of it is out.
    fn write_pending(&mut self) -> Result<bool, ()> {
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Ok(true);
            }
            match self.tcp.write(&self.pending[written..]) {
                Ok(0) => break Err(()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break Err(()),
            }
        };
        self.pending.drain(..written);
        if result == Ok(false) && self.write_deadline.is_none() {
            self.write_deadline = Some(Instant::now() + self.limits.write_timeout);
        }
        result
    }
}

/// What one read brought.
enum Read {
    Eof,
    Failed,
    /// Nothing to read right now.
    Drained,
    Got {
        n: usize,
        asked: usize,
        step: Step,
    },
}

enum ReadError {
    Drained,
    Failed,
}

fn read_some(tcp: &mut mio::net::TcpStream, into: &mut [u8]) -> Result<usize, ReadError> {
    loop {
        match tcp.read(into) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Err(ReadError::Drained),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(ReadError::Failed),
        }
    }
}
