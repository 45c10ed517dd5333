//! What a WS app connection does, free of I/O, shared by the task that runs one
//! ([`crate::ws::run`]) and the event loop ([`crate::wsloop`]): which frames are echoed where
//! they lie, the answer to each message, how a connection ends, the push and keepalive
//! schedule, the session state a connection carries from its task to the loop, and the read
//! sizes and memory allowances.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protolab_wire::ws::deflate::{self, Deflater};
use protolab_wire::ws::{
    apply_mask, close_code, decode_header, encode_close, encode_frame, write_header, CloseFrame,
    Decoder, DecoderConfig, FrameHeader, Message, OpCode, ProtocolError, Role,
};

use crate::io::READ_CHUNK;
use crate::limits::Limits;

/// Binary echoes at least this large skip two copies — into a decoded message, then into an
/// output frame: the payload is unmasked where it lies in the read buffer and written from
/// there behind its new header in one vectored write. Smaller echoes keep the batched path,
/// where one write carries the answers to every message a read brought.
pub(crate) const DIRECT_ECHO_BYTES: usize = 4096;

/// Room beyond the next frame for TLS record overhead: two records' headers and tags.
const TLS_SLACK: usize = 2 * protolab_tls::record::MAX_OVERHEAD;

/// What permessage-deflate's state costs a connection: zlib's compressor at a 15-bit window
/// and its default memory level (window, hash chains and pending buffer, about 256 KiB) plus
/// the inflater's 32 KiB window. Charged to the message budget when the extension is agreed,
/// so compression is declined, not the connection refused, when memory is short.
pub(crate) const DEFLATE_STATE_BYTES: usize = 320 << 10;

/// Read-buffer capacity every connection may hold without charging the message budget: room
/// for a 16 KiB frame with its TLS records, which echo workloads need on every message.
pub(crate) const FREE_READ_BYTES: usize = 4 * READ_CHUNK;

/// Answers-buffer capacity kept between reads; a larger one (a batch of big echoes, a
/// compressed reply) is freed once written, so an idle connection does not keep it.
pub(crate) const KEPT_OUT_BYTES: usize = 512;

/// When a session on its task moves to the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// It stays on its task (TLS, HTTP/2, [`WsRuntime::Tasks`](crate::WsRuntime::Tasks)).
    Never,
    /// At the first point between messages after the upgrade.
    AtOnce,
    /// Once it has shown it is long-lived ([`MOVE_AFTER_MESSAGES`], [`MOVE_AFTER`]).
    WhenLongLived,
}

/// Under [`WsRuntime::Adaptive`](crate::WsRuntime::Adaptive) a plain connection moves from
/// its task to the event loop once it has exchanged this many messages (frames heard and
/// pushes sent)...
pub(crate) const MOVE_AFTER_MESSAGES: u64 = 32;
/// ...or has been open this long, whichever comes first. The move costs about what 16 to 60
/// messages save on the loop: measured with `compare --lab` against `up` on one core, a
/// connection that upgrades, echoes once and closes cost the lab 47.7 µs of CPU and 2.2
/// context switches when it went to the loop at the upgrade, 35.2 µs and 0.8 on its task.
pub(crate) const MOVE_AFTER: Duration = Duration::from_secs(1);

/// A session's state apart from its socket and buffers: made at the upgrade on the
/// connection's task ([`crate::ws::run`]) and carried to the event loop when the connection
/// moves there, at a point where no frame is half read and no answer unwritten, so the loop
/// goes on where the task stopped (the deflate contexts, the push sequence and schedule, the
/// keepalive's last word from the peer).
pub(crate) struct Session {
    pub(crate) decoder: Decoder,
    pub(crate) deflater: Option<Deflater>,
    /// What the session's fixed state (a deflate context) charges to the budget.
    pub(crate) fixed: usize,
    pub(crate) schedule: Schedule,
    pub(crate) liveness: Liveness,
    pub(crate) push_seq: u64,
}

impl Session {
    pub(crate) fn new(
        limits: &Limits,
        push_interval: Duration,
        deflate: Option<deflate::Params>,
        start: std::time::Instant,
    ) -> Self {
        let mut decoder = Decoder::new(
            Role::Server,
            DecoderConfig {
                max_frame_bytes: limits.max_message_bytes,
                max_message_bytes: limits.max_message_bytes,
                ..DecoderConfig::default()
            },
        );
        // With permessage-deflate, every message answered through the decoder is compressed
        // (a compressed one always goes that way) and so are pushes; uncompressed frames that
        // take the in-place paths (whole, unfragmented) go back uncompressed, as they came.
        let mut deflater = None;
        let mut fixed = 0;
        if let Some(params) = deflate {
            decoder = decoder.with_inflater(params.inflater(Role::Server));
            deflater = Some(params.deflater(Role::Server, deflate::DEFAULT_LEVEL));
            fixed = DEFLATE_STATE_BYTES;
        }
        let tick = Liveness::tick_every(limits.idle_timeout);
        Self {
            decoder,
            deflater,
            fixed,
            schedule: Schedule::new(start, push_interval, tick),
            liveness: Liveness::new(start, limits.idle_timeout),
            push_seq: 0,
        }
    }
}

/// Why the session loop ended, which decides how the close handshake goes.
pub(crate) enum Ending {
    /// The peer sent a close frame; we answered it.
    PeerClosed,
    /// The peer vanished without a close frame (EOF or I/O error); nothing to send.
    Gone,
    /// We start the close handshake with this code and reason, and wait for the peer's.
    WeClose(u16, String),
    /// We fail the connection (RFC 6455 §7.1.7): a close frame with this code and reason,
    /// then our side of TCP is closed at once (§7.1.1), without waiting for the peer's close
    /// frame, which after a protocol error may never be parseable.
    Fail(u16, String),
}

pub(crate) fn over_budget(peer: SocketAddr) -> Ending {
    tracing::debug!(%peer, "closing WebSocket: the lab's message buffer budget is exhausted");
    Ending::Fail(
        close_code::TRY_AGAIN_LATER,
        "server is over its message memory budget; try again later".into(),
    )
}

pub(crate) fn message_too_slow(limit: Duration, peer: SocketAddr) -> Ending {
    tracing::debug!(%peer, ?limit, "closing WebSocket: a message took too long to arrive");
    Ending::Fail(
        close_code::POLICY,
        format!("message not complete within {}s", limit.as_secs_f64()),
    )
}

/// The session's two periodic jobs, push and keepalive check, on one schedule, so that a
/// session waits on one timer (one armed sleep costs half of two; the WS app's event loop
/// keeps one deadline per connection for the same reason).
///
/// Pushes keep a fixed schedule (slot n is `start + n × interval`): rescheduling from the
/// moment the timer fired loses the timer's lateness every period (a millisecond-resolution
/// timer wakes up to 1 ms late, so a nominal 100/s ran at ~89/s). Slots missed while the
/// runtime was busy are sent at once, up to [`MAX_PUSH_CATCH_UP`]; past that the schedule
/// restarts from now rather than flood the peer. The keepalive check runs once and is
/// rescheduled a whole period later, as tokio's `MissedTickBehavior::Delay` would.
pub(crate) struct Schedule {
    next_push: std::time::Instant,
    push_every: Duration,
    next_keepalive: std::time::Instant,
    keepalive_every: Duration,
}

/// Push slots sent at once after a stall; a longer stall restarts the schedule.
const MAX_PUSH_CATCH_UP: u32 = 8;

/// Which jobs are due, and when that was found.
pub(crate) struct Due {
    pub(crate) now: std::time::Instant,
    /// Push slots that came due (0 when only the keepalive check did).
    pub(crate) pushes: u32,
    pub(crate) keepalive: bool,
}

impl Schedule {
    pub(crate) fn new(
        start: std::time::Instant,
        push_every: Duration,
        keepalive_every: Duration,
    ) -> Self {
        Self {
            next_push: start + push_every,
            push_every,
            next_keepalive: start + keepalive_every,
            keepalive_every,
        }
    }

    /// When the next job is due.
    pub(crate) fn next_at(&self) -> std::time::Instant {
        self.next_push.min(self.next_keepalive)
    }

    /// The jobs due at `now`, each moved on to its next time.
    pub(crate) fn due(&mut self, now: std::time::Instant) -> Due {
        let mut pushes = 0;
        while now >= self.next_push && pushes < MAX_PUSH_CATCH_UP {
            pushes += 1;
            self.next_push += self.push_every;
        }
        if now >= self.next_push {
            self.next_push = now + self.push_every;
        }
        let keepalive = now >= self.next_keepalive;
        if keepalive {
            self.next_keepalive = now + self.keepalive_every;
        }
        Due {
            now,
            pushes,
            keepalive,
        }
    }
}

/// Keepalive: when the peer was last heard from, at keepalive-tick granularity (a flag per
/// frame and a clock read per tick, instead of a clock read per frame on the echo hot path).
/// Ping once half the idle timeout has passed in silence; checked four times per idle period,
/// a ping always goes out at least a quarter period before the peer would be dropped, leaving
/// that long for its pong.
pub(crate) struct Liveness {
    last_heard: std::time::Instant,
    heard: bool,
    idle_timeout: Duration,
}

/// What a keepalive tick found.
pub(crate) enum Liveliness {
    /// Heard from since the last tick.
    Heard,
    /// Quiet since the last tick, for less than half the idle timeout.
    Quiet,
    /// Quiet for half the idle timeout or more: ping it.
    Ping,
    /// Quiet for the whole idle timeout: close it.
    Idle,
}

impl Liveness {
    pub(crate) fn new(start: std::time::Instant, idle_timeout: Duration) -> Self {
        Self {
            last_heard: start,
            heard: false,
            idle_timeout,
        }
    }

    /// How often to tick: four times per idle period.
    pub(crate) fn tick_every(idle_timeout: Duration) -> Duration {
        (idle_timeout / 4).max(Duration::from_millis(10))
    }

    /// A frame arrived.
    pub(crate) fn heard(&mut self) {
        self.heard = true;
    }

    pub(crate) fn tick(&mut self, now: std::time::Instant) -> Liveliness {
        if std::mem::take(&mut self.heard) {
            self.last_heard = now;
        }
        let silent = now.saturating_duration_since(self.last_heard);
        if silent >= self.idle_timeout {
            Liveliness::Idle
        } else if silent >= self.idle_timeout / 2 {
            Liveliness::Ping
        } else if silent.is_zero() {
            Liveliness::Heard
        } else {
            Liveliness::Quiet
        }
    }
}

/// A whole data frame at the start of the read buffer that can be echoed without the decoder.
pub(crate) struct EchoFrame {
    pub(crate) opcode: OpCode,
    pub(crate) header_len: usize,
    pub(crate) payload_len: usize,
    pub(crate) mask: [u8; 4],
}

/// The frame at the start of `buf` if it can be echoed as it lies: no fragmented message is
/// open (the decoder would have to reject a new data frame), and it is a final, masked,
/// unextended text or binary frame of at most `max` bytes, all of it already read. The caller
/// picks the path by size (and checks text's UTF-8); everything else goes through the decoder,
/// which enforces every rule.
pub(crate) fn echo_frame(buf: &[u8], decoder: &Decoder, max: usize) -> Option<EchoFrame> {
    if decoder.in_message() {
        return None;
    }
    let (h, header_len) = decode_header(buf).ok()??;
    let payload_len = usize::try_from(h.payload_len).ok()?;
    let mask = h.mask?;
    let whole = buf.len().checked_sub(header_len)? >= payload_len;
    (h.fin
        && h.rsv == 0
        && matches!(h.opcode, OpCode::Binary | OpCode::Text)
        && payload_len <= max
        && whole)
        .then_some(EchoFrame {
            opcode: h.opcode,
            header_len,
            payload_len,
            mask,
        })
}

/// Appends the header of the server's (unmasked, final) frame of `len` bytes of `opcode`.
pub(crate) fn write_echo_header(out: &mut Vec<u8>, opcode: OpCode, len: usize) {
    write_header(
        out,
        &FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: len as u64,
        },
    );
}

/// Appends the echo of `frame`, which lies whole at the start of `buf`, to `out`, unmasked
/// straight into it (no message is allocated). Returns how many bytes of `buf` it used, or
/// `None` when a text frame's payload is not UTF-8: nothing is appended then, and the frame
/// must go to the decoder, which reports it (1007).
pub(crate) fn echo_in_place(out: &mut Vec<u8>, buf: &[u8], frame: &EchoFrame) -> Option<usize> {
    let start = out.len();
    write_echo_header(out, frame.opcode, frame.payload_len);
    let body = out.len();
    let end = frame.header_len + frame.payload_len;
    out.extend_from_slice(&buf[frame.header_len..end]);
    apply_mask(&mut out[body..], frame.mask, 0);
    if frame.opcode == OpCode::Text && std::str::from_utf8(&out[body..]).is_err() {
        out.truncate(start);
        return None;
    }
    Some(end)
}

/// Encodes the reply to `message` into `out`. Returns true when it was a close frame (the
/// reply, a close echoing its code, is then in `out` and the session ends).
pub(crate) fn answer(message: Message, out: &mut Vec<u8>, deflater: Option<&mut Deflater>) -> bool {
    match message {
        Message::Text(text) => encode_data(out, OpCode::Text, text.as_bytes(), deflater),
        Message::Binary(data) => encode_data(out, OpCode::Binary, &data, deflater),
        Message::Ping(data) => encode_frame(out, true, OpCode::Pong, None, &data),
        Message::Pong(_) => {}
        Message::Close(frame) => {
            match frame {
                Some(CloseFrame { code, .. }) => encode_close(out, None, code, ""),
                None => encode_frame(out, true, OpCode::Close, None, &[]),
            }
            return true;
        }
    }
    false
}

/// One data message, compressed when permessage-deflate is on (RFC 7692 §6: RSV1 on its
/// frame). Should the compressor fail, the message goes uncompressed, which is always allowed.
pub(crate) fn encode_data(
    out: &mut Vec<u8>,
    opcode: OpCode,
    data: &[u8],
    deflater: Option<&mut Deflater>,
) {
    if let Some(deflater) = deflater {
        match deflate::encode_compressed(out, deflater, opcode, None, data) {
            Ok(()) => return,
            Err(err) => tracing::debug!(%err, "sending a message uncompressed"),
        }
    }
    encode_frame(out, true, opcode, None, data);
}

pub(crate) fn protocol_error(err: &ProtocolError, peer: SocketAddr) -> Ending {
    tracing::debug!(%peer, %err, code = err.close_code(), "failing WebSocket on a protocol error");
    Ending::Fail(err.close_code(), err.to_string())
}

/// Free space to make before the next read: what the decoder still wants of the frame it is
/// waiting for (so a 16 KiB message arrives in one read, not two), at least [`READ_CHUNK`].
/// The decoder caps what it wants at the size up to which it waits for whole frames; larger
/// frames are taken as they arrive, so a header announcing 16 MiB reserves no more than that.
pub(crate) fn read_room(wanted: usize) -> usize {
    // The slack lets a large frame's TLS records land whole too (a header and a tag per
    // record), so they are opened in place instead of being carried over.
    if wanted == 0 {
        READ_CHUNK
    } else {
        (wanted + TLS_SLACK).max(READ_CHUNK)
    }
}

/// The pushed message: JSON so a client can tell it from an echo and measure delivery delay
/// (`sent_at_us`: microseconds since the Unix epoch; `sent_at_ms` for pages that use
/// `Date.now()`).
pub(crate) fn push_message(seq: u64) -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        r#"{{"type":"push","seq":{seq},"sent_at_ms":{},"sent_at_us":{}}}"#,
        since_epoch.as_millis(),
        since_epoch.as_micros()
    )
}
