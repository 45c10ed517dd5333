//! What the workers share: the run's [`Budget`] of time and messages, and the open-loop
//! [`Schedule`] of each connection.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::histogram::PerThread;

/// The run's shared limits: its end and its message count; the open-loop schedule.
#[derive(Clone)]
pub(super) struct Budget {
    pub(super) claimed: Arc<AtomicU64>,
    pub(super) max: u64,
    pub(super) end: Instant,
    /// [`Config::warmup`](super::Config::warmup)'s end: exchanges done before it are not timed.
    pub(super) measured_from: Instant,
    pub(super) schedule: Option<Schedule>,
    /// Where echo workers record each exchange's latency (the run's, shared).
    pub(super) echo_latency: Arc<PerThread>,
    /// [`Config::stop`](super::Config::stop): read once per exchange, written once at most, so
    /// its cache line stays shared between the workers' cores.
    pub(super) stop: Option<Arc<AtomicBool>>,
}

/// One connection's open-loop send times: `offset`, then every `every`, from when it opened.
#[derive(Clone, Copy)]
pub(super) struct Schedule {
    pub(super) every: Duration,
    pub(super) offset: Duration,
}

impl Budget {
    /// Takes one exchange from the budget; false once the run is over.
    pub(super) fn claim(&self) -> bool {
        self.claim_at(Instant::now())
    }

    /// [`Budget::claim`] when the caller knows the time: `now`.
    pub(super) fn claim_at(&self, now: Instant) -> bool {
        // Without a message limit, the shared counter (an atomic add per exchange) is moot.
        now < self.end
            && !self
                .stop
                .as_ref()
                .is_some_and(|stop| stop.load(Ordering::Relaxed))
            && (self.max == u64::MAX || self.claimed.fetch_add(1, Ordering::Relaxed) < self.max)
    }
}

/// How long a polite close may take after the run.
pub(super) const CLOSE_BOUND: Duration = Duration::from_millis(200);
