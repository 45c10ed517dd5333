//! Adding up reports of one load run from several generators at once (e.g. the pods of a
//! Kubernetes Job): counts add, per-message figures are averaged weighted by what they count,
//! and percentiles come from the runs' HDR histograms added together, so they equal those of
//! one histogram fed every sample.

use crate::histogram::{self, HistogramError};
use crate::report::{Histograms, Report};
use crate::Summary;

/// Why two reports cannot be added up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The runs measured different things.
    #[error("the reports are of different loads: {field} is {ours} in one and {theirs} in another; merge reports of one run only")]
    Mismatch {
        /// The JSON field that differs.
        field: &'static str,
        /// Its value in the report merged so far.
        ours: String,
        /// Its value in the report being added.
        theirs: String,
    },
    /// A report has percentiles but not the histogram they came from.
    #[error("a report has {which} percentiles but no histogram to add up (histograms.{which}): it was made by a protolab older than `merge`; run `protolab bench --json` again with this one")]
    NoHistogram {
        /// The histogram's name under `histograms`.
        which: &'static str,
    },
    /// A histogram could not be read.
    #[error("histograms.{which}: {source}")]
    Histogram {
        /// The histogram's name under `histograms`.
        which: &'static str,
        /// What is wrong with it.
        source: HistogramError,
    },
}

impl Report {
    /// Adds `other`, a report of the same target, workload, message size and payload from a
    /// generator that ran at the same time: connections, messages, bytes and errors add up,
    /// throughputs add up, the duration is the longer one.
    pub fn merge(&mut self, other: &Self) -> Result<(), MergeError> {
        same("target", &self.target, &other.target)?;
        same("scheme", &self.scheme.as_str(), &other.scheme.as_str())?;
        same(
            "workload",
            &self.workload.as_str(),
            &other.workload.as_str(),
        )?;
        same("message_size", &self.message_size, &other.message_size)?;
        same("payload", &self.payload.as_str(), &other.payload.as_str())?;

        // Weighted means need both sides' weights before they are added.
        let (m1, m2) = (self.messages, other.messages);
        let (c1, c2) = (self.connections_opened, other.connections_opened);
        let b = &mut self.bytes;
        let o = &other.bytes;
        for (mine, theirs) in [
            (&mut b.sent_per_message, o.sent_per_message),
            (&mut b.received_per_message, o.received_per_message),
            (
                &mut b.above_tls_sent_per_message,
                o.above_tls_sent_per_message,
            ),
            (
                &mut b.above_tls_received_per_message,
                o.above_tls_received_per_message,
            ),
            (&mut b.payload_sent_per_message, o.payload_sent_per_message),
            (
                &mut b.payload_received_per_message,
                o.payload_received_per_message,
            ),
            (
                &mut b.frame_payload_sent_per_message,
                o.frame_payload_sent_per_message,
            ),
            (
                &mut b.frame_payload_received_per_message,
                o.frame_payload_received_per_message,
            ),
        ] {
            *mine = weighted(*mine, m1, theirs, m2);
        }
        for (mine, theirs) in [
            (
                &mut b.handshake_sent_per_connection,
                o.handshake_sent_per_connection,
            ),
            (
                &mut b.handshake_received_per_connection,
                o.handshake_received_per_connection,
            ),
            (
                &mut b.post_handshake_tls_received_per_connection,
                o.post_handshake_tls_received_per_connection,
            ),
        ] {
            *mine = weighted(*mine, c1, theirs, c2);
        }
        b.total_sent += o.total_sent;
        b.total_received += o.total_received;
        let (t, ot) = (&mut self.tcp, &other.tcp);
        t.packets_per_message = weighted(t.packets_per_message, m1, ot.packets_per_message, m2);
        t.frame_bytes_per_message = weighted(
            t.frame_bytes_per_message,
            m1,
            ot.frame_bytes_per_message,
            m2,
        );
        t.header_bytes_per_packet = t.header_bytes_per_packet.max(ot.header_bytes_per_packet);
        t.packets += ot.packets;
        t.retransmitted_bytes += ot.retransmitted_bytes;
        t.retransmitted_segments += ot.retransmitted_segments;
        t.connections_sampled += ot.connections_sampled;
        t.retransmitted_share =
            (b.total_sent > 0).then(|| t.retransmitted_bytes as f64 / b.total_sent as f64);
        self.round_trips_to_first_echo = weighted(
            self.round_trips_to_first_echo,
            c1,
            other.round_trips_to_first_echo,
            c2,
        );

        self.connections += other.connections;
        self.rate = self.rate.zip(other.rate).map(|(a, b)| a + b);
        self.duration_secs = self.duration_secs.max(other.duration_secs);
        self.messages += other.messages;
        self.throughput_per_sec += other.throughput_per_sec;
        self.connections_opened += other.connections_opened;
        self.connections_without_messages += other.connections_without_messages;
        self.skipped_messages += other.skipped_messages;
        self.pings_answered += other.pings_answered;
        self.polls = match (self.polls, other.polls) {
            (Some(mine), Some(theirs)) => Some(mine.plus(theirs).per_event(self.messages)),
            (mine, theirs) => mine.or(theirs),
        };
        self.errors.merge(&other.errors);
        match (&mut self.compression, &other.compression) {
            (Some(mine), Some(theirs)) => {
                mine.connections_accepted += theirs.connections_accepted;
                if mine.agreed.is_none() {
                    mine.agreed.clone_from(&theirs.agreed);
                }
            }
            (None, Some(theirs)) => self.compression = Some(theirs.clone()),
            _ => {}
        }

        let (h, oh) = (&mut self.histograms, &other.histograms);
        let p = &mut self.phases;
        let op = &other.phases;
        add(
            "latency",
            &mut h.latency,
            &mut self.latency,
            &oh.latency,
            &other.latency,
        )?;
        add(
            "tcp_connect",
            &mut h.tcp_connect,
            &mut p.tcp_connect,
            &oh.tcp_connect,
            &op.tcp_connect,
        )?;
        add(
            "tls_handshake",
            &mut h.tls_handshake,
            &mut p.tls_handshake,
            &oh.tls_handshake,
            &op.tls_handshake,
        )?;
        add(
            "ws_upgrade",
            &mut h.ws_upgrade,
            &mut p.ws_upgrade,
            &oh.ws_upgrade,
            &op.ws_upgrade,
        )?;
        add(
            "first_byte",
            &mut h.first_byte,
            &mut p.first_byte,
            &oh.first_byte,
            &op.first_byte,
        )?;
        add(
            "first_echo",
            &mut h.first_echo,
            &mut p.first_echo,
            &oh.first_echo,
            &op.first_echo,
        )?;
        add(
            "connect_to_first_echo",
            &mut h.connect_to_first_echo,
            &mut p.connect_to_first_echo,
            &oh.connect_to_first_echo,
            &op.connect_to_first_echo,
        )?;
        Ok(())
    }
}

/// The report's histograms are present wherever its percentiles are (what [`Report::merge`]
/// needs), and readable.
pub fn check_histograms(report: &Report) -> Result<(), MergeError> {
    let h: &Histograms = &report.histograms;
    let p = &report.phases;
    for (which, hist, summary) in [
        ("latency", &h.latency, &report.latency),
        ("tcp_connect", &h.tcp_connect, &p.tcp_connect),
        ("tls_handshake", &h.tls_handshake, &p.tls_handshake),
        ("ws_upgrade", &h.ws_upgrade, &p.ws_upgrade),
        ("first_byte", &h.first_byte, &p.first_byte),
        ("first_echo", &h.first_echo, &p.first_echo),
        (
            "connect_to_first_echo",
            &h.connect_to_first_echo,
            &p.connect_to_first_echo,
        ),
    ] {
        match (hist, summary) {
            (None, Some(_)) => return Err(MergeError::NoHistogram { which }),
            (Some(text), _) => {
                histogram::decode(text)
                    .map_err(|source| MergeError::Histogram { which, source })?;
            }
            (None, None) => {}
        }
    }
    Ok(())
}

fn same<T: PartialEq + ToString + ?Sized>(
    field: &'static str,
    ours: &T,
    theirs: &T,
) -> Result<(), MergeError> {
    if ours == theirs {
        return Ok(());
    }
    Err(MergeError::Mismatch {
        field,
        ours: ours.to_string(),
        theirs: theirs.to_string(),
    })
}

/// The mean of two means, each weighted by how many values it is over; a side over nothing
/// (or without a value) does not count.
fn weighted(a: Option<f64>, wa: u64, b: Option<f64>, wb: u64) -> Option<f64> {
    match (a.filter(|_| wa > 0), b.filter(|_| wb > 0)) {
        (Some(a), Some(b)) => Some((a * wa as f64 + b * wb as f64) / (wa + wb) as f64),
        (Some(a), None) => Some(a),
        (None, Some(b)) => Some(b),
        (None, None) => a.or(b),
    }
}

/// Adds histogram `theirs` into `mine` and sets `summary` to the sum's percentiles.
fn add(
    which: &'static str,
    mine: &mut Option<String>,
    summary: &mut Option<Summary>,
    theirs: &Option<String>,
    their_summary: &Option<Summary>,
) -> Result<(), MergeError> {
    let bad = |source| MergeError::Histogram { which, source };
    if mine.is_none() && summary.is_some() || theirs.is_none() && their_summary.is_some() {
        return Err(MergeError::NoHistogram { which });
    }
    let Some(theirs) = theirs else { return Ok(()) };
    let mut sum = histogram::decode(theirs).map_err(bad)?;
    if let Some(mine) = mine.as_deref() {
        let mine = histogram::decode(mine).map_err(bad)?;
        // Both decode to the one layout `decode` accepts, so adding cannot fail.
        sum.add(&mine)
            .map_err(|err| bad(HistogramError::Add(err.to_string())))?;
        if sum.len() > histogram::MAX_SAMPLES {
            return Err(bad(HistogramError::TooManySamples(sum.len())));
        }
    }
    *summary = histogram::summarize(&sum);
    *mine = Some(histogram::encode(&sum));
    Ok(())
}
