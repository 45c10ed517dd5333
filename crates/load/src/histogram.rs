//! Latency histograms: [`Latency`] records nanoseconds in an HDR histogram (3 significant
//! digits, 1 ns to 1 hour) and [`Summary`] reports its percentiles in microseconds.
//!
//! HDR histograms merge exactly, so each connection records into its own and the run adds
//! them up at the end: no lock or channel on the hot path.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value tracked: one hour in nanoseconds. Larger values are clamped to it.
const MAX_NANOS: u64 = 3_600 * 1_000_000_000;

/// An HDR histogram of durations.
#[derive(Debug, Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        // Bounds are constants within what the crate accepts (low ≥ 1, high ≥ 2 × low,
        // sigfig ≤ 5), so this cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid histogram bounds");
        Self { hist }
    }

    /// Records one duration (clamped to 1 ns .. 1 hour).
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(nanos.clamp(1, MAX_NANOS));
    }

    /// Records the same duration `count` times.
    pub fn record_n(&mut self, d: Duration, count: u64) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // Cannot fail: the value is clamped into the trackable range.
        let _ = self.hist.record_n(nanos.clamp(1, MAX_NANOS), count);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    /// The percentiles, or `None` if nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        let q = |q: f64| us(self.hist.value_at_quantile(q));
        Some(Summary {
            count: self.hist.len(),
            min_us: us(self.hist.min()),
            mean_us: self.hist.mean() / 1_000.0,
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: us(self.hist.max()),
        })
    }
}

/// Percentiles of a [`Latency`] histogram, in microseconds. Values are HDR bucket values:
/// within 0.1% of what was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Values recorded.
    pub count: u64,
    /// Smallest value.
    pub min_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest value.
    pub max_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.001 + 0.001
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_microseconds() {
        let mut h = Latency::new();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i));
        }
        let s = h.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert!(close(s.min_us, 1.0), "{s:?}");
        assert!(close(s.p50_us, 500.0), "{s:?}");
        assert!(close(s.p90_us, 900.0), "{s:?}");
        assert!(close(s.p99_us, 990.0), "{s:?}");
        assert!(close(s.p999_us, 999.0), "{s:?}");
        assert!(close(s.max_us, 1000.0), "{s:?}");
        assert!(close(s.mean_us, 500.5), "{s:?}");
    }

    #[test]
    fn merging_equals_recording_together() {
        let (mut a, mut b, mut all) = (Latency::new(), Latency::new(), Latency::new());
        for i in 0..500u64 {
            a.record(Duration::from_micros(10 + i));
            all.record(Duration::from_micros(10 + i));
            b.record(Duration::from_millis(1 + i));
            all.record(Duration::from_millis(1 + i));
        }
        a.merge(&b);
        assert_eq!(a.summary(), all.summary());
        assert_eq!(a.len(), 1000);
    }

    #[test]
    fn empty_and_out_of_range() {
        let mut h = Latency::new();
        assert!(h.is_empty() && h.summary().is_none());
        h.record(Duration::ZERO);
        h.record(Duration::from_secs(100_000));
        h.record_n(Duration::from_micros(5), 3);
        let s = h.summary().unwrap();
        assert_eq!(s.count, 5);
        assert!(s.min_us <= 0.002, "{s:?}");
        assert!(close(s.max_us, 3_600_000_000.0), "{s:?}");
    }
}
