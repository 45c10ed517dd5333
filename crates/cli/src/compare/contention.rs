//! Whether the machine, not the protocol, limited a run: how long the load generator's and
//! the lab's threads were ready to run but waited for a CPU (schedstat's run-queue wait,
//! what pidstat calls %wait), how much CPU a hypervisor stole (/proc/stat), and whether the
//! userspace WAN link kept its schedule.
//!
//! A figure measured while a side waited for a CPU a tenth of the run shows the machine's
//! queue as much as the protocol: a protocol that needs more wake-ups pays more of it, so
//! even the ratios between protocols shift. The thresholds below are where the table, the
//! JSON and the report say so.

use std::time::Duration;

use serde::Serialize;

use super::cpu::{SystemTimes, Usage};

/// A side whose threads waited on the run queue more than this share of their wall time
/// (averaged over its runtime threads, as pidstat's %wait is per thread) was held back by
/// the machine.
pub const WAIT_LIMIT: f64 = 0.10;
/// Steal above this share of the machine's CPU time: the hypervisor limited the run.
pub const STEAL_LIMIT: f64 = 0.05;
/// The userspace WAN link is behind its schedule when its packets leave, on average, later
/// than this share of the emulated RTT after they were due: 5% each way is 10% a round trip,
/// which over a four-round-trip handshake comes near the 0.5 round trips at which measured
/// and counted round trips are called in disagreement...
pub const LINK_LATE_SHARE_OF_RTT: f64 = 0.05;
/// ...or later than this, whichever is more: wake-up latency alone, on a quiet machine here
/// (a VM), makes packets leave 0.3-1.0 ms late on average.
pub const LINK_LATE_FLOOR: Duration = Duration::from_millis(1);

/// What one round of a run measured of the machine (differences over the round).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sample {
    /// Wall time of the round.
    pub wall: Duration,
    /// The load generator's threads.
    pub client: Usage,
    /// The lab's threads (zero for a lab elsewhere).
    pub server: Usage,
    /// The userspace WAN link's threads and how late they released packets; `None` without
    /// a userspace link.
    pub link: Option<LinkSample>,
    /// The machine's CPU ticks, total and stolen; `None` where /proc/stat is unreadable.
    pub system: Option<SystemTimes>,
}

/// The userspace WAN link over one round.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LinkSample {
    /// Its two forwarding threads.
    pub usage: Usage,
    /// Packets released, both directions.
    pub packets: u64,
    /// Microseconds those packets left after they were due, added up.
    pub late_us: u64,
}

impl Sample {
    /// Adds another round's sample.
    pub(super) fn add(&mut self, other: &Self) {
        self.wall += other.wall;
        for (mine, theirs) in [
            (&mut self.client, other.client),
            (&mut self.server, other.server),
        ] {
            mine.run += theirs.run;
            mine.wait += theirs.wait;
        }
        self.link = match (self.link, other.link) {
            (Some(a), Some(b)) => Some(LinkSample {
                usage: Usage {
                    run: a.usage.run + b.usage.run,
                    wait: a.usage.wait + b.usage.wait,
                },
                packets: a.packets + b.packets,
                late_us: a.late_us + b.late_us,
            }),
            (a, b) => a.or(b),
        };
        self.system = match (self.system, other.system) {
            (Some(a), Some(b)) => Some(SystemTimes {
                total: a.total + b.total,
                steal: a.steal + b.steal,
            }),
            (a, b) => a.or(b),
        };
    }
}

/// How contended the machine was during a run (all its rounds together).
#[derive(Debug, Clone, Serialize)]
pub struct Contention {
    /// The load generator's run-queue wait ÷ (wall time × its runtime threads): the share of
    /// the run its threads were ready but waited for a CPU (pidstat's %wait, averaged).
    pub client_wait_share: f64,
    /// The same for the lab's threads; `None` for a lab elsewhere.
    pub server_wait_share: Option<f64>,
    /// The share of the machine's CPU time a hypervisor stole (/proc/stat); `None` where
    /// unreadable.
    pub steal_share: Option<f64>,
    /// The userspace WAN link (`--wan-emulator userspace`); `None` on loopback and under
    /// netem, whose work the kernel does in softirq, outside any thread here.
    pub link: Option<LinkLoad>,
    /// Some threshold was crossed: the figures show the machine's limit as much as the
    /// protocol's. `why` says which.
    pub machine_bound: bool,
    /// The thresholds crossed, in words.
    pub why: Vec<String>,
}

/// What the userspace WAN link cost and whether it kept its schedule.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LinkLoad {
    /// CPU seconds of its forwarding threads per second of the run.
    pub cpu_cores: f64,
    /// Its threads' run-queue wait ÷ (wall time × 2 threads).
    pub wait_share: f64,
    /// Mean time a packet left after it was due, microseconds; `None` when none passed.
    pub mean_late_us: Option<f64>,
    /// It released packets later than its limit (`LINK_LATE_SHARE_OF_RTT` of the RTT, at
    /// least `LINK_LATE_FLOOR`) or its threads waited over `WAIT_LIMIT`: the link was slower
    /// than the one asked for.
    pub behind_schedule: bool,
}

impl Contention {
    /// Judges a run's summed samples; `client_threads` and `server_threads` are the runtime
    /// sizes (`None`: the lab ran elsewhere), `rtt_ms` the emulated RTT (0: none).
    pub(super) fn judge(
        sample: &Sample,
        client_threads: usize,
        server_threads: Option<usize>,
        rtt_ms: f64,
    ) -> Self {
        let wall = sample.wall.as_secs_f64().max(1e-9);
        let share =
            |wait: Duration, threads: usize| wait.as_secs_f64() / (wall * threads.max(1) as f64);
        let client_wait_share = share(sample.client.wait, client_threads);
        let server_wait_share = server_threads.map(|t| share(sample.server.wait, t));
        let steal_share = sample
            .system
            .and_then(|s| s.steal_share_since(SystemTimes::default()));
        let late_limit_us =
            (rtt_ms * 1000.0 * LINK_LATE_SHARE_OF_RTT).max(LINK_LATE_FLOOR.as_secs_f64() * 1e6);
        let link = sample.link.map(|l| {
            let mean_late_us = (l.packets > 0).then(|| l.late_us as f64 / l.packets as f64);
            let wait_share = share(l.usage.wait, 2);
            LinkLoad {
                cpu_cores: l.usage.run.as_secs_f64() / wall,
                wait_share,
                mean_late_us,
                behind_schedule: wait_share > WAIT_LIMIT
                    || mean_late_us.is_some_and(|late| late > late_limit_us),
            }
        });
        let mut why = Vec::new();
        if client_wait_share > WAIT_LIMIT {
            why.push(format!(
                "the load generator's threads waited for a CPU {:.0}% of the run",
                client_wait_share * 100.0
            ));
        }
        if let Some(w) = server_wait_share.filter(|w| *w > WAIT_LIMIT) {
            why.push(format!(
                "the lab's threads waited for a CPU {:.0}% of the run",
                w * 100.0
            ));
        }
        if let Some(s) = steal_share.filter(|s| *s > STEAL_LIMIT) {
            why.push(format!(
                "the hypervisor stole {:.0}% of the machine's CPU time",
                s * 100.0
            ));
        }
        if let Some(l) = link.filter(|l| l.behind_schedule) {
            why.push(format!(
                "the userspace WAN link fell behind its schedule (packets {:.2} ms late on average, limit {:.2} ms; its threads waited for a CPU {:.0}% of the run)",
                l.mean_late_us.unwrap_or(0.0) / 1000.0,
                late_limit_us / 1000.0,
                l.wait_share * 100.0
            ));
        }
        Self {
            client_wait_share,
            server_wait_share,
            steal_share,
            link,
            machine_bound: !why.is_empty(),
            why,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(client_wait_ms: u64, late_us: u64) -> Sample {
        Sample {
            wall: Duration::from_secs(1),
            client: Usage {
                run: Duration::from_millis(500),
                wait: Duration::from_millis(client_wait_ms),
            },
            server: Usage::default(),
            link: Some(LinkSample {
                usage: Usage::default(),
                packets: 1000,
                late_us,
            }),
            system: Some(SystemTimes {
                total: 200,
                steal: 0,
            }),
        }
    }

    #[test]
    fn crossing_a_threshold_says_which() {
        let quiet = Contention::judge(&sample(20, 50_000), 1, Some(1), 50.0);
        assert!(!quiet.machine_bound, "{quiet:?}");
        let waited = Contention::judge(&sample(300, 50_000), 1, Some(1), 50.0);
        assert!(waited.machine_bound);
        assert!(waited.why[0].contains("load generator"), "{:?}", waited.why);
        // 3 ms late per packet against a 2.5 ms limit (5% of 50 ms).
        let late = Contention::judge(&sample(20, 3_000_000), 1, Some(1), 50.0);
        assert!(late.link.is_some_and(|l| l.behind_schedule), "{late:?}");
        assert!(late.why[0].contains("WAN link"), "{:?}", late.why);
        // Two rounds add up: the shares are of the whole.
        let mut two = sample(300, 0);
        two.add(&sample(0, 0));
        let judged = Contention::judge(&two, 1, None, 0.0);
        assert!((judged.client_wait_share - 0.15).abs() < 1e-9);
        assert_eq!(judged.server_wait_share, None);
    }
}
