//! One figure over the rounds of a run: its median, range and whether it is noisy. Plain
//! statistics, below the results model, the tables and the rounds that fill them.

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
