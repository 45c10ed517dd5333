//! Latency histograms: [`Latency`] records nanoseconds with 3 significant digits from 1 ns
//! to 1 hour, exactly as an HDR histogram does, and [`Summary`] reports the percentiles in
//! microseconds. [`encode`] and [`decode`] carry a histogram in reports (HDR's V2 format,
//! base64), so reports of several generators add up exactly (`protolab merge`).
//!
//! Each connection records into its own and the run adds them up at the end: no lock or
//! channel on the hot path. An HDR histogram of this range holds 33,792 counters (264 KiB)
//! and zeroes them all when created; a run keeps several per connection, so creating,
//! faulting in and merging them cost more than recording (7 per connection: 100 MB and 24,000
//! page faults at 50 connections). [`Latency`] therefore keeps the same counters in pages
//! of one power of two each (1,024 counters), allocated when a value first lands in
//! them, and builds the HDR histogram only for [`Latency::summary`]. Latencies of one run
//! span a few powers of two, so a connection touches a few pages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest value tracked: one hour in nanoseconds. Larger values are clamped to it.
const MAX_NANOS: u64 = 3_600 * 1_000_000_000;

/// HDR layout for 3 significant digits and a unit of 1 ns: values below 2,048 are counted
/// exactly; above, each power of two is split into 1,024 equal bins.
const HALF_MAGNITUDE: u32 = 10;
const HALF: usize = 1 << HALF_MAGNITUDE;
const SUB_BUCKET_MASK: u64 = (2 << HALF_MAGNITUDE) - 1;

/// Pages needed up to [`MAX_NANOS`]: one per power of two, two for the exact range.
const PAGES: usize = index_for(MAX_NANOS) / HALF + 1;

/// The HDR counter index of `value` (hdrhistogram's `index_for` with unit magnitude 0).
const fn index_for(value: u64) -> usize {
    let bucket = 63 - HALF_MAGNITUDE - (value | SUB_BUCKET_MASK).leading_zeros();
    let sub_bucket = (value >> bucket) as usize;
    ((bucket as usize + 1) << HALF_MAGNITUDE) + sub_bucket - HALF
}

/// The lowest value counted at `index` (hdrhistogram's `value_for`).
fn value_for(index: usize) -> u64 {
    let bucket = (index >> HALF_MAGNITUDE).saturating_sub(1);
    let sub_bucket = if index < HALF {
        index
    } else {
        (index & (HALF - 1)) + HALF
    };
    (sub_bucket as u64) << bucket
}

/// A histogram of durations.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Counter pages by [`index_for`] / 1,024; `None` until a value lands in one.
    pages: [Option<Box<[u64]>>; PAGES],
    len: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// An empty histogram. Allocates nothing until values are recorded.
    pub fn new() -> Self {
        Self {
            pages: [const { None }; PAGES],
            len: 0,
        }
    }

    /// Records one duration (clamped to 1 ns .. 1 hour).
    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Records the same duration `count` times.
    pub fn record_n(&mut self, d: Duration, count: u64) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let index = index_for(nanos.clamp(1, MAX_NANOS));
        let page = self.pages[index / HALF].get_or_insert_with(|| vec![0; HALF].into());
        let slot = &mut page[index % HALF];
        *slot = slot.saturating_add(count);
        self.len = self.len.saturating_add(count);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.pages.iter_mut().zip(&other.pages) {
            let Some(theirs) = theirs else { continue };
            let mine = mine.get_or_insert_with(|| vec![0; HALF].into());
            for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                *a = a.saturating_add(*b);
            }
        }
        self.len = self.len.saturating_add(other.len);
    }

    /// Values recorded.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The percentiles, or `None` if nothing was recorded.
    pub fn summary(&self) -> Option<Summary> {
        if self.is_empty() {
            return None;
        }
        summarize(&self.to_hdr())
    }

    /// The histogram as [`encode`] writes it, or `None` if nothing was recorded.
    pub fn encoded(&self) -> Option<String> {
        (!self.is_empty()).then(|| encode(&self.to_hdr()))
    }

    /// The same counts in an HDR histogram: each bin's count recorded at the bin's lowest
    /// value, which lands in the same bin, so every statistic comes out as if each value had
    /// been recorded there.
    fn to_hdr(&self) -> Histogram<u64> {
        // Bounds are constants within what the crate accepts (low ≥ 1, high ≥ 2 × low,
        // sigfig ≤ 5), so this cannot fail.
        let mut hist = Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid histogram bounds");
        for (p, page) in self.pages.iter().enumerate() {
            let Some(page) = page else { continue };
            for (i, &count) in page.iter().enumerate() {
                if count > 0 {
                    hist.saturating_record_n(value_for(p * HALF + i), count);
                }
            }
        }
        hist
    }
}

/// The percentiles of an HDR histogram of nanoseconds, or `None` if it is empty.
pub fn summarize(hist: &Histogram<u64>) -> Option<Summary> {
    if hist.is_empty() {
        return None;
    }
    let us = |nanos: u64| nanos as f64 / 1_000.0;
    let q = |q: f64| us(hist.value_at_quantile(q));
    Some(Summary {
        count: hist.len(),
        min_us: us(hist.min()),
        mean_us: hist.mean() / 1_000.0,
        p50_us: q(0.50),
        p90_us: q(0.90),
        p99_us: q(0.99),
        p999_us: q(0.999),
        max_us: us(hist.max()),
    })
}

/// Bytes of a V2 header: cookie, payload length, normalizing offset, significant digits
/// (u32 each), lowest and highest value (u64 each), conversion ratio (f64), big-endian.
const V2_HEADER: usize = 40;
/// The V2 (uncompressed) cookie hdrhistogram writes.
const V2_COOKIE: u32 = 0x1c84_9313;
/// Largest encoded histogram [`decode`] reads: a histogram of this layout with every counter
/// set and large is under 400 KiB in V2; the rest is room.
pub const MAX_ENCODED: usize = 4 << 20;

/// Most samples a histogram [`decode`] reads (or `protolab merge` adds up) may hold: 2^48,
/// nine years at a million messages a second.
pub const MAX_SAMPLES: u64 = 1 << 48;

/// Why [`decode`] refused a histogram.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistogramError {
    /// Longer than [`MAX_ENCODED`].
    #[error("the histogram is {0} bytes long, more than a report's ever is")]
    TooLong(usize),
    /// Not base64.
    #[error("not base64: {0}")]
    Base64(String),
    /// Not an HDR V2 histogram of protolab's layout.
    #[error("not an HDR histogram as protolab writes it (V2, nanoseconds from 1 ns to 1 h, 3 significant digits): {0}")]
    Format(String),
    /// More than [`MAX_SAMPLES`] samples.
    #[error("the histogram holds {0} samples, more than a run records ({MAX_SAMPLES} at most)")]
    TooManySamples(u64),
    /// Two histograms could not be added.
    #[error("adding histograms: {0}")]
    Add(String),
}

/// `hist` in HDR histogram's V2 format (uncompressed: it run-length encodes empty counters
/// already), base64 (standard alphabet, padded), as reports carry it.
pub fn encode(hist: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail, and every count fits V2's 64-bit varints.
    V2Serializer::new()
        .serialize(hist, &mut bytes)
        .expect("serializing to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The cumulative distribution of a histogram [`encode`] wrote, for plotting: at most
/// `max_points` (value in microseconds, share of samples at or below it) pairs, rising,
/// ending at the largest value with share 1. Each point is a recorded bucket's upper value.
pub fn cdf(text: &str, max_points: usize) -> Result<Vec<(f64, f64)>, HistogramError> {
    let hist = decode(text)?;
    let total = hist.len();
    if total == 0 {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    let mut below = 0u64;
    for v in hist.iter_recorded() {
        below += v.count_at_value();
        all.push((
            hist.highest_equivalent(v.value_iterated_to()) as f64 / 1_000.0,
            below as f64 / total as f64,
        ));
    }
    // Thin evenly by rank, always keeping the last (the maximum).
    let step = all.len().div_ceil(max_points.max(1)).max(1);
    let last = all.len() - 1;
    Ok(all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == step - 1 || *i == last)
        .map(|(_, p)| *p)
        .collect())
}

/// Reads a histogram [`encode`] wrote. Its header is checked before hdrhistogram reads it:
/// the layout must be the one protolab records (so any two decoded histograms add up
/// exactly) and the payload length the bytes that follow, so a damaged or hostile report
/// cannot make the reader allocate more than the text it gave.
pub fn decode(text: &str) -> Result<Histogram<u64>, HistogramError> {
    if text.len() > MAX_ENCODED {
        return Err(HistogramError::TooLong(text.len()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|err| HistogramError::Base64(err.to_string()))?;
    let format = |what: String| HistogramError::Format(what);
    let header = bytes
        .get(..V2_HEADER)
        .ok_or_else(|| format(format!("{} bytes, shorter than a header", bytes.len())))?;
    let u32_at = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let u64_at = |at: usize| {
        let mut b = [0; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    if u32_at(0) != V2_COOKIE {
        return Err(format(format!(
            "cookie {:#010x}, expected {V2_COOKIE:#010x} (V2, uncompressed)",
            u32_at(0)
        )));
    }
    let payload = u32_at(4) as usize;
    if payload != bytes.len() - V2_HEADER {
        return Err(format(format!(
            "the header announces {payload} bytes of counts, {} follow",
            bytes.len() - V2_HEADER
        )));
    }
    let (digits, lowest, highest) = (u32_at(12), u64_at(16), u64_at(24));
    if (digits, lowest, highest) != (3, 1, MAX_NANOS) {
        return Err(format(format!(
            "{digits} significant digits from {lowest} to {highest}"
        )));
    }
    if !counts_in_range(&bytes[V2_HEADER..]) {
        return Err(format("a count out of range".to_owned()));
    }
    let hist: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|err| format(format!("{err:?}")))?;
    // hdrhistogram sums counts unchecked when it computes percentiles; a total this far below
    // u64::MAX (it saturates, so a larger sum shows as more) keeps every such sum in range.
    if hist.len() > MAX_SAMPLES {
        return Err(HistogramError::TooManySamples(hist.len()));
    }
    Ok(hist)
}

/// Whether no count in a V2 payload is the one value hdrhistogram 7.6's reader cannot take:
/// its varints (LEB128, the ninth byte whole) are zigzag-encoded, and the all-ones varint
/// decodes to `i64::MIN`, whose negation (a run of zeros) overflows, a panic in builds with
/// overflow checks. A truncated last varint is left to the reader, which refuses it.
fn counts_in_range(payload: &[u8]) -> bool {
    let mut bytes = payload.iter();
    loop {
        let mut value = 0u64;
        for shift in 0..9 {
            let Some(&b) = bytes.next() else {
                return true;
            };
            if shift == 8 {
                value |= u64::from(b) << 56;
                break;
            }
            value |= u64::from(b & 0x7f) << (7 * shift);
            if b & 0x80 == 0 {
                break;
            }
        }
        if value == u64::MAX {
            return false;
        }
    }
}

/// [`Latency`] histograms a run's workers share, one per recording thread.
///
/// The echo latency is recorded on every exchange. With a histogram per connection, each
/// record landed in counters the other connections' turns (and the kernel's socket buffers)
/// had pushed out of cache: `perf` put 2.3% of the client's time on that one load. Workers on
/// one thread share one histogram here, so its few hot lines stay cached. A thread picks its
/// shard by a number given to it on first use, so threads do not contend while there are no
/// more threads than shards; the lock is then never contended.
pub(crate) struct PerThread {
    shards: Box<[Mutex<Latency>]>,
}

impl PerThread {
    /// Shards for twice the CPUs this process may use (at most 256).
    pub(crate) fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let n = (cpus * 2).next_power_of_two().min(256);
        Self {
            shards: (0..n).map(|_| Mutex::new(Latency::new())).collect(),
        }
    }

    /// Records `d` in this thread's histogram.
    pub(crate) fn record(&self, d: Duration) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
        }
        let i = THREAD.with(|t| *t) & (self.shards.len() - 1);
        // A panic while holding the lock cannot leave a count half-written.
        self.shards[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(d);
    }

    /// Every value recorded, in one histogram.
    pub(crate) fn merged(&self) -> Latency {
        let mut all = Latency::new();
        for shard in &self.shards {
            all.merge(&shard.lock().unwrap_or_else(PoisonError::into_inner));
        }
        all
    }
}

/// Percentiles of a [`Latency`] histogram, in microseconds. Values are HDR bucket values:
/// within 0.1% of what was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
    fn cdf_of_one_to_a_thousand_microseconds_rises_to_the_maximum() {
        let mut h = Latency::new();
        for i in 1..=1000u64 {
            h.record(Duration::from_micros(i));
        }
        let points = cdf(&h.encoded().unwrap(), 50).unwrap();
        assert!(points.len() <= 51, "{} points", points.len());
        assert!(points
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
        let (last_us, last_share) = *points.last().unwrap();
        assert!(close(last_us, 1000.0), "{last_us}");
        assert!((last_share - 1.0).abs() < 1e-12);
        // Half the samples are at or below 500 µs.
        let median = points.iter().find(|(_, share)| *share >= 0.5).unwrap();
        assert!((median.0 - 500.0).abs() <= 25.0, "{median:?}");
        assert!(cdf("not base64", 10).is_err());
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

    /// A small deterministic generator (xorshift64) for the comparison below.
    fn values(seed: u64, n: usize) -> impl Iterator<Item = u64> {
        let mut x = seed;
        (0..n).map(move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Spread over every magnitude from 1 ns to past the 1-hour clamp.
            x >> (x % 64)
        })
    }

    #[test]
    fn bins_are_hdr_bins() {
        let hdr = Histogram::<u64>::new_with_bounds(1, MAX_NANOS, 3).unwrap();
        let mut edges = vec![
            1,
            2047,
            2048,
            2049,
            4095,
            4096,
            1 << 20,
            MAX_NANOS - 1,
            MAX_NANOS,
        ];
        edges.extend(values(7, 10_000).map(|v| v.clamp(1, MAX_NANOS)));
        for v in edges {
            let i = index_for(v);
            assert_eq!(value_for(i), hdr.lowest_equivalent(v), "value {v}");
            assert!(i / HALF < PAGES, "value {v}");
        }
        assert_eq!(PAGES, 33);
    }

    #[test]
    fn statistics_equal_an_hdr_histogram_of_the_same_values() {
        let mut hdr = Histogram::<u64>::new_with_bounds(1, MAX_NANOS, 3).unwrap();
        let mut ours = Latency::new();
        for v in values(42, 50_000) {
            hdr.saturating_record(v.clamp(1, MAX_NANOS));
            ours.record(Duration::from_nanos(v));
        }
        let s = ours.summary().unwrap();
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        assert_eq!(s.count, hdr.len());
        assert_eq!(s.min_us, us(hdr.min()));
        assert_eq!(s.max_us, us(hdr.max()));
        assert_eq!(s.mean_us, hdr.mean() / 1_000.0);
        assert_eq!(s.p50_us, us(hdr.value_at_quantile(0.5)));
        assert_eq!(s.p999_us, us(hdr.value_at_quantile(0.999)));
    }

    #[test]
    fn threads_record_into_one_whole() {
        let shared = std::sync::Arc::new(PerThread::new());
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let shared = std::sync::Arc::clone(&shared);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        shared.record(Duration::from_micros(t * 1000 + i + 1));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = Latency::new();
        for v in 1..=4000 {
            all.record(Duration::from_micros(v));
        }
        assert_eq!(shared.merged().summary(), all.summary());
    }

    #[test]
    fn encoded_histograms_decode_to_the_same_statistics() {
        let mut h = Latency::new();
        for v in values(9, 20_000) {
            h.record(Duration::from_nanos(v));
        }
        let text = h.encoded().unwrap();
        let back = decode(&text).unwrap();
        assert_eq!(summarize(&back), h.summary());
        assert_eq!(encode(&back), text);
        assert!(Latency::new().encoded().is_none());
    }

    #[test]
    fn decode_refuses_what_it_was_not_written_as() {
        let mut h = Latency::new();
        h.record(Duration::from_micros(5));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(h.encoded().unwrap())
            .unwrap();
        let encode_bytes = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let refused = |b: &[u8]| decode(&encode_bytes(b)).unwrap_err().to_string();

        assert!(refused(&bytes[..20]).contains("shorter than a header"));
        assert!(refused(&bytes[..bytes.len() - 1]).contains("counts"));
        let mut longer = bytes.clone();
        longer[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(refused(&longer).contains("counts"));
        let mut other_layout = bytes.clone();
        other_layout[12..16].copy_from_slice(&5u32.to_be_bytes());
        assert!(refused(&other_layout).contains("5 significant digits"));
        let mut cookie = bytes.clone();
        cookie[3] ^= 1;
        assert!(refused(&cookie).contains("cookie"));
        assert!(matches!(
            decode("not base64!"),
            Err(HistogramError::Base64(_))
        ));
        let huge = "A".repeat(MAX_ENCODED + 1);
        assert!(matches!(decode(&huge), Err(HistogramError::TooLong(_))));
        // Garbage counts after a valid header: an error, not a panic.
        let mut garbage = bytes[..V2_HEADER].to_vec();
        garbage.extend([0xff; 16]);
        let n = (garbage.len() - V2_HEADER) as u32;
        garbage[4..8].copy_from_slice(&n.to_be_bytes());
        assert!(refused(&garbage).contains("out of range"));
        // Counts that run past the histogram's last bin: the reader's own error.
        let mut past_the_end = bytes[..V2_HEADER].to_vec();
        past_the_end.extend([0x81, 0x80, 0x80, 0x80, 0x04, 0x02]);
        let n = (past_the_end.len() - V2_HEADER) as u32;
        past_the_end[4..8].copy_from_slice(&n.to_be_bytes());
        assert!(decode(&encode_bytes(&past_the_end)).is_err());
        // Counts whose sum would overflow the percentile arithmetic (found by fuzzing).
        let mut huge = Histogram::<u64>::new_with_bounds(1, MAX_NANOS, 3).unwrap();
        huge.record_n(10, u64::MAX / 2).unwrap();
        huge.record_n(1_000, u64::MAX / 2).unwrap();
        assert!(matches!(
            decode(&encode(&huge)),
            Err(HistogramError::TooManySamples(_))
        ));
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
