//! A log-linear latency histogram over nanoseconds, with a stated bound on relative error.
//!
//! Layout: values below 2^SUB_BITS (128 ns) are counted exactly, one bucket each. Above that, each power of two
//! `[2^e, 2^(e+1))` is split into 2^SUB_BITS equal sub-buckets of width `2^(e-SUB_BITS)`. A bucket's width is thus
//! at most 1/128 of its lower bound, and a percentile reported as the bucket's midpoint is within
//! [`RELATIVE_ERROR_BOUND`] (1/256, about 0.4%) of the exact order statistic. fio's own clat histogram has 64
//! sub-buckets per power of two (about 1.6%), so ours is finer than the tool it is compared with.
//!
//! **Invariants** (checked by [`Histogram::check`]):
//! 1. `count` equals the sum of all bucket counts.
//! 2. When `count > 0`: `min <= max`, and `min` and `max` fall in the first and last non-empty buckets.
//!
//! Percentiles follow the nearest-rank definition: the p-th percentile of n samples is the sample of rank
//! `ceil(p/100 * n)` (1-based) in sorted order, as fio and HdrHistogram compute them. Reported values are clamped to
//! the exact `[min, max]`, so p0 and p100 are exact.

use serde::Serialize;

const SUB_BITS: u32 = 7;
const SUB_COUNT: u64 = 1 << SUB_BITS;
/// Number of buckets: 128 exact ones, then 128 per power of two from 2^7 up to 2^63.
const BUCKETS: usize = (SUB_COUNT + (64 - SUB_BITS as u64) * SUB_COUNT) as usize;

/// The largest relative error of any percentile this histogram reports.
pub const RELATIVE_ERROR_BOUND: f64 = 1.0 / (2 * SUB_COUNT) as f64;

/// Latency histogram; see the module header for its layout and error bound.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram").field("count", &self.count).field("min", &self.min).field("max", &self.max).finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < SUB_COUNT {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // e >= SUB_BITS
    let shift = e - SUB_BITS;
    let mantissa = v >> shift; // in [128, 256)
    (SUB_COUNT + u64::from(shift) * SUB_COUNT + (mantissa - SUB_COUNT)) as usize
}

/// The inclusive range of values that land in bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB_COUNT {
        return (i, i);
    }
    let shift = (i - SUB_COUNT) / SUB_COUNT;
    let mantissa = SUB_COUNT + (i - SUB_COUNT) % SUB_COUNT;
    let low = mantissa << shift;
    (low, low + ((1u64 << shift) - 1))
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram { counts: vec![0; BUCKETS], count: 0, sum: 0, min: u64::MAX, max: 0 }
    }

    /// Counts one sample, in nanoseconds.
    pub fn record(&mut self, ns: u64) {
        self.counts[bucket_of(ns)] += 1;
        self.count += 1;
        self.sum += u128::from(ns);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Counts one sample given as a [`std::time::Duration`].
    pub fn record_duration(&mut self, d: std::time::Duration) {
        self.record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other` to `self`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank percentile `p` (0..=100), within [`RELATIVE_ERROR_BOUND`]; 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().clamp(1.0, self.count as f64) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bucket_range(i);
                let mid = low + (high - low) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Summary figures for reports.
    pub fn summary(&self) -> Summary {
        let empty = self.count == 0;
        Summary {
            count: self.count,
            min_ns: if empty { 0 } else { self.min },
            mean_ns: if empty { 0 } else { (self.sum / u128::from(self.count)) as u64 },
            p50_ns: self.percentile(50.0),
            p90_ns: self.percentile(90.0),
            p99_ns: self.percentile(99.0),
            p99_9_ns: self.percentile(99.9),
            max_ns: self.max,
        }
    }

    /// Verifies the invariants in the module header; returns a description of the first one broken.
    pub fn check(&self) -> Result<(), String> {
        let total: u64 = self.counts.iter().sum();
        if total != self.count {
            return Err(format!("invariant 1: bucket total {total} != count {}", self.count));
        }
        if self.count > 0 {
            let first = self.counts.iter().position(|&c| c > 0).unwrap_or(0);
            let last = self.counts.iter().rposition(|&c| c > 0).unwrap_or(0);
            if self.min > self.max || bucket_of(self.min) != first || bucket_of(self.max) != last {
                return Err(format!(
                    "invariant 2: min {} / max {} outside buckets {first}..={last}",
                    self.min, self.max
                ));
            }
        }
        Ok(())
    }
}

/// The figures every latency class reports, all in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub count: u64,
    pub min_ns: u64,
    pub mean_ns: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p99_9_ns: u64,
    pub max_ns: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact(sorted: &[u64], p: f64) -> u64 {
        let n = sorted.len() as f64;
        let rank = ((p / 100.0) * n).ceil().clamp(1.0, n) as usize;
        sorted[rank - 1]
    }

    fn assert_within_bound(got: u64, want: u64) {
        let err = got.abs_diff(want) as f64;
        assert!(err <= want as f64 * RELATIVE_ERROR_BOUND + 0.5, "got {got}, exact {want}, error {err} exceeds bound");
    }

    #[test]
    fn buckets_tile_the_value_range() {
        let mut expected_low = 0u64;
        for i in 0..BUCKETS {
            let (low, high) = bucket_range(i);
            assert_eq!(low, expected_low, "bucket {i} starts where the previous ended");
            assert_eq!(bucket_of(low), i);
            assert_eq!(bucket_of(high), i);
            assert!((high - low) as f64 <= low as f64 / SUB_COUNT as f64 + 0.5 || low < SUB_COUNT);
            expected_low = high.wrapping_add(1);
        }
        assert_eq!(expected_low, 0, "the last bucket ends at u64::MAX");
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=100u64 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.percentile(0.0), 1);
        h.check().unwrap();
    }

    #[test]
    fn empty_histogram_reports_zeroes() {
        let h = Histogram::new();
        assert_eq!(h.summary(), Summary::default());
        h.check().unwrap();
    }

    #[test]
    fn fsync_like_distribution_matches_sorted_reference() {
        // A deterministic spread like real fdatasync latencies: a body near 160 µs and a tail to 40 ms.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = Vec::new();
        let mut h = Histogram::new();
        for i in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = if i % 997 == 0 { 1_000_000 + x % 39_000_000 } else { 120_000 + x % 90_000 };
            values.push(v);
            h.record(v);
        }
        values.sort_unstable();
        for p in [1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0] {
            assert_within_bound(h.percentile(p), exact(&values, p));
        }
        let s = h.summary();
        assert_eq!(s.min_ns, values[0]);
        assert_eq!(s.max_ns, *values.last().unwrap());
        assert_eq!(s.mean_ns, (values.iter().map(|&v| v as u128).sum::<u128>() / values.len() as u128) as u64);
        h.check().unwrap();
    }

    proptest! {
        #[test]
        fn any_samples_match_sorted_reference(mut values in prop::collection::vec(0u64..u64::MAX / 2, 1..400),
                                              p in 0.0f64..=100.0) {
            let mut h = Histogram::new();
            for &v in &values { h.record(v); }
            values.sort_unstable();
            assert_within_bound(h.percentile(p), exact(&values, p));
            h.check().unwrap();
        }

        #[test]
        fn merge_equals_recording_everything(a in prop::collection::vec(0u64..10_000_000_000, 0..200),
                                             b in prop::collection::vec(0u64..10_000_000_000, 0..200)) {
            let (mut ha, mut hb, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
            for &v in &a { ha.record(v); all.record(v); }
            for &v in &b { hb.record(v); all.record(v); }
            ha.merge(&hb);
            prop_assert_eq!(ha.summary(), all.summary());
            ha.check().unwrap();
        }
    }
}
