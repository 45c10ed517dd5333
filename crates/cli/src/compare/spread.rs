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

/// The least confidence a ratio's interval is given (where the rounds allow it; with fewer
/// than six rounds it is their range, and says so).
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
    /// The ratio the rounds point to: their Hodges–Lehmann estimate ([`Centre`]).
    pub estimate: f64,
    /// The per-round ratios (`rounds`, in round order), their median, range and the furthest
    /// one's distance from that median; `None` with one round.
    pub spread: Option<Spread>,
    /// Where `estimate` lies ([`Centre`]); `None` with one round.
    pub interval: Option<Interval>,
    /// The interval reaches further than 5% from the estimate: another run may well give a
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

/// A confidence interval of a ratio's estimate.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Interval {
    /// Its lower end.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// The chance the true ratio lies within, given rounds that are independent draws
    /// spread symmetrically (on a log scale) around it.
    pub confidence: f64,
}

impl Interval {
    /// The furthest end's distance from `centre`, as a share of it.
    pub(crate) fn deviation(&self, centre: f64) -> f64 {
        let furthest = (centre - self.low).max(self.high - centre);
        if centre.abs() > f64::EPSILON {
            furthest / centre.abs()
        } else if furthest > 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

/// Where a ratio's rounds centre: the Hodges–Lehmann estimate — the median of the means of
/// every pair of rounds, each round paired with itself too — with the Wilcoxon signed-rank
/// interval that goes with it. Ratios are taken on a log scale (the means are geometric), so
/// a/b and b/a come out as each other's inverse.
///
/// Why not the median of the rounds: with the default seven rounds the median's
/// distribution-free interval is the rounds' whole range (98%), about three standard errors
/// of the median each side, so nearly every ratio read as noisy while the medians of five
/// runs moved about a third as much. This estimate keeps most of the mean's efficiency
/// (95% for normal rounds, against the median's 64%) and the median's indifference to a
/// stalled round; its interval at seven rounds drops the two pair means at each end.
#[derive(Debug, Clone, Copy)]
pub struct Centre {
    /// The estimate.
    pub estimate: f64,
    /// Its interval; `None` with one round.
    pub interval: Option<Interval>,
}

impl Centre {
    /// The centre of `values`; `None` for none. Values that are not all positive and
    /// finite are taken as they are (arithmetic means) rather than on a log scale.
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let logarithmic = values.iter().all(|v| v.is_finite() && *v > 0.0);
        let back = |v: f64| if logarithmic { v.exp() } else { v };
        let scaled: Vec<f64> = values
            .iter()
            .map(|v| if logarithmic { v.ln() } else { *v })
            .collect();
        let mut pair_means = Vec::with_capacity(n * (n + 1) / 2);
        for (i, a) in scaled.iter().enumerate() {
            for b in &scaled[i..] {
                pair_means.push((a + b) / 2.0);
            }
        }
        pair_means.sort_by(f64::total_cmp);
        let count = pair_means.len();
        let middle = count / 2;
        let estimate = if count.is_multiple_of(2) {
            (pair_means[middle - 1] + pair_means[middle]) / 2.0
        } else {
            pair_means[middle]
        };
        let interval = (n >= 2).then(|| {
            let below = signed_rank_cdf(n);
            let coverage = |k: usize| 1.0 - 2.0 * below[k];
            let mut k = 0;
            while k + 1 < middle && coverage(k + 1) >= CONFIDENCE {
                k += 1;
            }
            Interval {
                low: back(pair_means[k]),
                high: back(pair_means[count - 1 - k]),
                confidence: coverage(k),
            }
        });
        Some(Self {
            estimate: back(estimate),
            interval,
        })
    }
}

/// P(T ≤ t) for t = 0..=n(n+1)/2, where T is Wilcoxon's signed-rank statistic of `n` draws
/// symmetric around the true centre: the sum of a random subset of 1..=n. The interval from
/// the (k+1)th lowest to the (k+1)th highest pair mean misses that centre with chance
/// 2·P(T ≤ k).
pub(crate) fn signed_rank_cdf(n: usize) -> Vec<f64> {
    let most = n * (n + 1) / 2;
    // The chance of each sum, rank by rank: rank r is in the subset or not, half and half.
    let mut chance = vec![0.0; most + 1];
    chance[0] = 1.0;
    for rank in 1..=n {
        for sum in (0..=rank * (rank + 1) / 2).rev() {
            let with = if sum >= rank { chance[sum - rank] } else { 0.0 };
            chance[sum] = (chance[sum] + with) / 2.0;
        }
    }
    let mut total = 0.0;
    chance
        .into_iter()
        .map(|p| {
            total += p;
            total
        })
        .collect()
}
