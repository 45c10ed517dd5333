//! One figure over the rounds of a run: its median, range and whether it is noisy, and one
//! protocol's figure against another's round by round ([`Ratio`], filled by `ratios`). Plain
//! statistics, below the results model, the tables and the rounds that fill them.

use protolab_load::Workload;
use serde::Serialize;

/// A figure whose rounds lie further than this from their median (as a share of it) is
/// noisy: one run of it says little, and a difference between protocols smaller than this
/// may be the machine's.
pub const NOISY_ABOVE: f64 = 0.05;

/// One figure over the rounds of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// The median round (the mean of the middle two for an even count).
    pub median: f64,
    /// The lowest round.
    pub min: f64,
    /// The highest round.
    pub max: f64,
    /// The furthest round from the median, as a share of the median (0.03 = ±3%).
    pub deviation: f64,
    /// `deviation` is above [`NOISY_ABOVE`].
    pub noisy: bool,
    /// Each round's value, in the order run.
    pub rounds: Vec<f64>,
}

impl Spread {
    /// The spread of `values`; `None` for fewer than two (nothing to spread).
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.len() < 2 {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        let median = if sorted.len().is_multiple_of(2) {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        } else {
            sorted[mid]
        };
        let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
        let furthest = (max - median).max(median - min);
        let deviation = if median.abs() > f64::EPSILON {
            furthest / median.abs()
        } else if furthest > 0.0 {
            1.0
        } else {
            0.0
        };
        Some(Self {
            median,
            min,
            max,
            deviation,
            noisy: deviation > NOISY_ABOVE,
            rounds: values.to_vec(),
        })
    }
}

/// The least confidence a median's interval is given from order statistics (where the
/// rounds allow it; with fewer than six rounds it is their range, and says so).
pub const CONFIDENCE: f64 = 0.95;

/// One protocol's figure against another's over the rounds of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// `connect`, `echo` or `push`.
    pub workload: Workload,
    /// Payload bytes per message.
    pub size: usize,
    /// The protocol measured...
    pub protocol: String,
    /// ...against this one: the first of `settings.protocols` that ran this workload.
    pub against: String,
    /// The figure, by its path in a run (`report.throughput_per_sec`, `report.latency.p50_us`).
    pub figure: &'static str,
    /// The median of the per-round ratios.
    pub median: f64,
    /// The per-round ratios (`rounds`, in round order), their range and the furthest one's
    /// distance from the median; `None` with one round.
    pub spread: Option<Spread>,
    /// Where the median lies (order statistics of the per-round ratios, no assumption about
    /// their distribution); `None` with one round.
    pub interval: Option<Interval>,
    /// The interval reaches further than 5% from the median: another run may well give a
    /// ratio more than 5% away. With one round there is nothing to judge and this is false.
    pub noisy: bool,
    /// Why a noisy ratio could not be held on this machine, when the machine was contended
    /// during its rounds (run-queue waits, hypervisor steal); `None` when it was not, so the
    /// spread is the protocols' own (or the rounds too few).
    pub machine: Option<String>,
}

impl Ratio {
    /// The mark the table and the report put after it: `!` when it was not held and the
    /// machine was contended, `?` when it was not held on a quiet machine, nothing when held.
    pub fn mark(&self) -> &'static str {
        match (&self.machine, self.noisy) {
            (Some(_), _) => "!",
            (None, true) => "?",
            (None, false) => "",
        }
    }
}

/// A distribution-free confidence interval of a median.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interval {
    /// Its lower end (a per-round ratio).
    pub low: f64,
    /// Its upper end (a per-round ratio).
    pub high: f64,
    /// The chance the true median lies within, given rounds that are independent draws.
    pub confidence: f64,
}

impl Interval {
    /// The interval of the median of `values` from order statistics: the widest-inside pair
    /// `(x[k], x[n-1-k])` that still covers the median with at least [`CONFIDENCE`], or the
    /// whole range when too few values reach it. `None` for fewer than two values.
    pub fn of_median(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n < 2 {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut k = 0;
        while k + 1 < n / 2 && coverage(n, k + 1) >= CONFIDENCE {
            k += 1;
        }
        Some(Self {
            low: sorted[k],
            high: sorted[n - 1 - k],
            confidence: coverage(n, k),
        })
    }

    /// The furthest end's distance from `median`, as a share of it.
    pub(crate) fn deviation(&self, median: f64) -> f64 {
        let furthest = (median - self.low).max(self.high - median);
        if median.abs() > f64::EPSILON {
            furthest / median.abs()
        } else if furthest > 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

/// The chance that `(x[k], x[n-1-k])` of `n` independent draws holds their distribution's
/// median: 1 - 2·P(Binomial(n, ½) ≤ k).
pub(crate) fn coverage(n: usize, k: usize) -> f64 {
    let mut below = 0.0;
    let mut choose = 1.0;
    for i in 0..=k {
        if i > 0 {
            choose = choose * (n + 1 - i) as f64 / i as f64;
        }
        below += choose;
    }
    1.0 - 2.0 * below / 2f64.powi(i32::try_from(n).unwrap_or(i32::MAX))
}
