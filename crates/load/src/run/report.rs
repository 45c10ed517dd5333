//! Building the run's [`Report`] from the merged [`Stats`]: rates over the measured time,
//! per-message and per-connection bytes, TCP figures and the histograms.

use std::time::{Duration, Instant};

use super::config::Config;
use super::stats::Stats;
use crate::client::Counts;
use crate::report::{Bytes, Compression, Histograms, Phases, Report, Tcp};
use crate::tcp_info::header_bytes_per_packet;
use crate::workload::Workload;

impl Stats {
    pub(super) fn report(self, config: &Config, start: Instant, measured_from: Instant) -> Report {
        let elapsed = self
            .finished
            .map_or(Duration::ZERO, |f| f.saturating_duration_since(start))
            .min(config.duration);
        let secs = elapsed.as_secs_f64();
        // After a warm-up, the rate is over what followed it (pushes keep their schedule
        // from the start, so they are always counted whole).
        let (rated, rated_secs) =
            if config.warmup > Duration::ZERO && config.workload != Workload::Push {
                let timed = self
                    .finished
                    .map_or(Duration::ZERO, |f| {
                        f.saturating_duration_since(measured_from)
                    })
                    .min(config.duration - config.warmup);
                (self.timed_messages, timed.as_secs_f64())
            } else {
                (self.messages, secs)
            };
        let per = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let (per_message, count) = match (config.workload, self.steady_messages) {
            (Workload::Echo | Workload::Push | Workload::Fanin, n) if n > 0 => (self.steady, n),
            _ => (self.first, self.first_messages),
        };
        let latency_histogram = match config.workload {
            Workload::Echo | Workload::Push | Workload::Fanin => &self.latency,
            Workload::Connect => &self.connect_to_first_echo,
        };
        let latency = latency_histogram.summary();
        let histograms = Histograms {
            latency: latency_histogram.encoded(),
            tcp_connect: self.tcp.encoded(),
            tls_handshake: self.tls.encoded(),
            ws_upgrade: self.upgrade.encoded(),
            first_byte: self.first_byte.encoded(),
            first_echo: self.first_echo.encoded(),
            connect_to_first_echo: self.connect_to_first_echo.encoded(),
        };
        let (payload_sent, payload_received) = match config.workload {
            Workload::Echo | Workload::Connect | Workload::Fanin => {
                (Some(config.size as f64), Some(config.size as f64))
            }
            Workload::Push => (Some(0.0), per(self.push_payload, self.steady_messages)),
        };
        let tls = config.target.scheme.is_tls();
        // Post-handshake TLS records (session tickets) go on their own line, out of the
        // handshake and the message figures, wherever they arrived.
        let without_tickets = |c: &Counts| c.wire.received.saturating_sub(c.post_handshake_tls);
        let header = header_bytes_per_packet(self.ipv6, self.tcp_total.timestamps);
        let packets_per_message = per(self.tcp_window.packets(), self.tcp_window_messages);
        let tcp = Tcp {
            packets_per_message,
            frame_bytes_per_message: packets_per_message
                .zip(per(
                    per_message.wire.sent + without_tickets(&per_message),
                    count,
                ))
                .map(|(packets, payload)| payload + packets * header as f64),
            header_bytes_per_packet: header,
            packets: self.tcp_total.packets(),
            retransmitted_bytes: self.tcp_total.bytes_retrans,
            retransmitted_segments: self.tcp_total.total_retrans,
            retransmitted_share: per(self.tcp_total.bytes_retrans, self.total.wire.sent)
                .filter(|_| self.tcp_sampled > 0),
            connections_sampled: self.tcp_sampled,
        };
        Report {
            target: config.target.to_string(),
            scheme: config.target.scheme,
            workload: config.workload,
            connections: config.connections,
            message_size: config.size,
            rate: config.rate,
            duration_secs: secs,
            messages: self.messages,
            // Pushes: each connection's rate over the time it received pushes, added up. Over
            // the run's time from its start, the figure moved with where in the schedule the
            // run ended (800/s scheduled read 784–799/s as the connections' phases changed).
            throughput_per_sec: if config.workload == Workload::Push && self.push_rate > 0.0 {
                self.push_rate
            } else if rated_secs > 0.0 {
                rated as f64 / rated_secs
            } else {
                0.0
            },
            latency,
            bytes: Bytes {
                sent_per_message: per(per_message.wire.sent, count),
                received_per_message: per(without_tickets(&per_message), count),
                above_tls_sent_per_message: per(per_message.app.sent, count),
                above_tls_received_per_message: per(per_message.app.received, count),
                payload_sent_per_message: payload_sent.filter(|_| count > 0),
                payload_received_per_message: payload_received.filter(|_| count > 0),
                frame_payload_sent_per_message: per(per_message.frame_payload.sent, count)
                    .filter(|_| self.deflate_accepted > 0),
                frame_payload_received_per_message: per(per_message.frame_payload.received, count)
                    .filter(|_| self.deflate_accepted > 0),
                handshake_sent_per_connection: per(self.handshake.wire.sent, self.opened),
                handshake_received_per_connection: per(
                    without_tickets(&self.handshake),
                    self.opened,
                ),
                post_handshake_tls_received_per_connection: per(
                    self.total.post_handshake_tls,
                    self.opened,
                )
                .filter(|_| tls),
                total_sent: self.total.wire.sent,
                total_received: self.total.wire.received,
            },
            round_trips_to_first_echo: per(self.round_trips, self.first_messages),
            phases: Phases {
                tcp_connect: self.tcp.summary(),
                tls_handshake: self.tls.summary(),
                ws_upgrade: self.upgrade.summary(),
                first_byte: self.first_byte.summary(),
                first_echo: self.first_echo.summary(),
                connect_to_first_echo: self.connect_to_first_echo.summary(),
            },
            connections_opened: self.opened,
            connections_without_messages: self.silent,
            tcp,
            skipped_messages: self.skipped,
            pings_answered: self.pings,
            polls: config
                .target
                .scheme
                .is_poll()
                .then(|| self.polls.per_event(self.messages)),
            compression: config.deflate.map(|offer| Compression {
                offer: offer.to_string(),
                connections_accepted: self.deflate_accepted,
                agreed: self.deflate_params.map(|p| p.to_string()),
            }),
            payload: config.payload,
            errors: self.errors,
            histograms,
        }
    }
}
