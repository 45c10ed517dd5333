//! [`Stats`]: one worker's measurements, what each workload adds to them, and how the
//! workers' stats merge into the run's.

use std::time::{Duration, Instant};

use protolab_wire::ws::deflate::Params;

use crate::client::{Conn, Counts, Failure, Opened};
use crate::histogram::Latency;
use crate::report::{ErrorKind, Errors, Polls};
use crate::tcp_info::TcpCounters;

/// One worker's measurements; workers' stats merge into the run's.
#[derive(Default)]
pub(super) struct Stats {
    pub(super) latency: Latency,
    pub(super) tcp: Latency,
    pub(super) tls: Latency,
    pub(super) upgrade: Latency,
    pub(super) first_byte: Latency,
    pub(super) first_echo: Latency,
    pub(super) connect_to_first_echo: Latency,
    pub(super) messages: u64,
    /// Echo and connect: messages done after the warm-up, the throughput's count.
    pub(super) timed_messages: u64,
    pub(super) opened: u64,
    /// Push: opened connections that received no push.
    pub(super) silent: u64,
    pub(super) handshake: Counts,
    /// Bytes of steady-state exchanges (every one after a connection's first) and their count.
    pub(super) steady: Counts,
    pub(super) steady_messages: u64,
    /// Bytes of connections' first exchanges and their count.
    pub(super) first: Counts,
    pub(super) first_messages: u64,
    /// Round trips from connect to each connection's first echo, summed (count: `first_messages`).
    pub(super) round_trips: u64,
    /// Payload bytes of the pushes received.
    pub(super) push_payload: u64,
    /// Each push connection's rate over the time it received pushes (its pushes after the
    /// first over the time from the first to the last), summed.
    pub(super) push_rate: f64,
    /// Connections whose server accepted permessage-deflate, and the first one's terms.
    pub(super) deflate_accepted: u64,
    pub(super) deflate_params: Option<Params>,
    pub(super) total: Counts,
    /// TCP counters over the per-message window (steady exchanges, or connect's one) and
    /// the messages in it.
    pub(super) tcp_window: TcpCounters,
    pub(super) tcp_window_messages: u64,
    /// TCP counters of whole connections (SYN to just before the close) and how many.
    pub(super) tcp_total: TcpCounters,
    pub(super) tcp_sampled: u64,
    pub(super) ipv6: bool,
    pub(super) skipped: u64,
    pub(super) pings: u64,
    pub(super) polls: Polls,
    pub(super) finished: Option<Instant>,
    pub(super) errors: Errors,
}

impl Stats {
    pub(super) fn opened(&mut self, opened: &Opened) {
        self.opened += 1;
        self.tcp.record(opened.tcp);
        if let Some(t) = opened.tls {
            self.tls.record(t);
        }
        if let Some(t) = opened.upgrade {
            self.upgrade.record(t);
        }
        self.handshake = self.handshake.plus(opened.bytes);
        if let Some(params) = opened.deflate {
            self.deflate_accepted += 1;
            self.deflate_params.get_or_insert(params);
        }
    }

    pub(super) fn exchanged(
        &mut self,
        ex: &crate::client::Exchange,
        connection_so_far: Counts,
        bytes: Counts,
        // From connect to this echo, given for a connection's first exchange only.
        since_connect: Option<Duration>,
    ) {
        self.messages += 1;
        if let Some(since_connect) = since_connect {
            if let Some(first_byte) = ex.first_byte {
                self.first_byte.record(first_byte);
            }
            self.first_echo.record(ex.total);
            self.connect_to_first_echo.record(since_connect);
            self.first = self.first.plus(bytes);
            self.first_messages += 1;
            // The TCP handshake's round trip happens below the stream, so it is not a turn.
            self.round_trips += 1 + connection_so_far.wire.turns;
        } else {
            self.steady = self.steady.plus(bytes);
            self.steady_messages += 1;
        }
    }

    /// Samples the connection's TCP counters before it closes: the whole connection so far,
    /// and the window from `window_start` with the `messages` in it.
    pub(super) fn sample_tcp(
        &mut self,
        conn: &Conn,
        window_start: Option<TcpCounters>,
        messages: u64,
    ) {
        let Some(now) = conn.tcp_counters() else {
            return;
        };
        self.tcp_total = self.tcp_total.plus(now);
        self.tcp_sampled += 1;
        self.ipv6 |= conn.is_ipv6();
        if let Some(start) = window_start.filter(|_| messages > 0) {
            self.tcp_window = self.tcp_window.plus(now.since(start));
            self.tcp_window_messages += messages;
        }
    }

    /// Adds a finished connection's byte counts and extra messages.
    pub(super) fn add_totals(&mut self, conn: &Conn) {
        self.total = self.total.plus(conn.counts());
        let extras = conn.extras();
        self.skipped += extras.skipped;
        self.pings += extras.pings;
        self.polls.requests += extras.polls;
        self.polls.empty += extras.empty_polls;
        self.polls.missed_events += extras.missed;
    }

    /// Counts `failure`, unless it is the run's end cutting an exchange short after this
    /// worker had answers (a worker that never got one reports the timeout).
    pub(super) fn fail(&mut self, failure: &Failure, end: Instant) {
        if let Some(wire) = failure.wire {
            self.total = self.total.plus(Counts {
                wire,
                ..Counts::default()
            });
        }
        if failure.kind == ErrorKind::Timeout && Instant::now() >= end && self.messages > 0 {
            return;
        }
        tracing::debug!(kind = failure.kind.as_str(), detail = %failure.detail, "load connection failed");
        self.errors.add(failure.kind, &failure.detail);
    }

    pub(super) fn merge(&mut self, other: &Self) {
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.tcp, &other.tcp),
            (&mut self.tls, &other.tls),
            (&mut self.upgrade, &other.upgrade),
            (&mut self.first_byte, &other.first_byte),
            (&mut self.first_echo, &other.first_echo),
            (
                &mut self.connect_to_first_echo,
                &other.connect_to_first_echo,
            ),
        ] {
            mine.merge(theirs);
        }
        self.messages += other.messages;
        self.timed_messages += other.timed_messages;
        self.opened += other.opened;
        self.silent += other.silent;
        self.handshake = self.handshake.plus(other.handshake);
        self.steady = self.steady.plus(other.steady);
        self.steady_messages += other.steady_messages;
        self.first = self.first.plus(other.first);
        self.first_messages += other.first_messages;
        self.round_trips += other.round_trips;
        self.push_payload += other.push_payload;
        self.push_rate += other.push_rate;
        self.deflate_accepted += other.deflate_accepted;
        self.deflate_params = self.deflate_params.or(other.deflate_params);
        self.total = self.total.plus(other.total);
        self.tcp_window = self.tcp_window.plus(other.tcp_window);
        self.tcp_window_messages += other.tcp_window_messages;
        self.tcp_total = self.tcp_total.plus(other.tcp_total);
        self.tcp_sampled += other.tcp_sampled;
        self.ipv6 |= other.ipv6;
        self.skipped += other.skipped;
        self.pings += other.pings;
        self.polls = self.polls.plus(other.polls);
        self.finished = self.finished.max(other.finished);
        self.errors.merge(&other.errors);
    }
}
