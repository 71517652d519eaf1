//! What the WAL measures, for the server to export under etcd's metric names.
//!
//! `fsync` uses the buckets of etcd's `etcd_disk_wal_fsync_duration_seconds` (1 ms doubling to 8.192 s), so the
//! exported histogram is comparable with etcd dashboards. `batch_records` and `batch_bytes` describe group commit;
//! `bytes_written` backs `etcd_disk_wal_write_bytes_total`. All counters are atomics: reading never blocks the WAL.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A fixed-bucket histogram (Prometheus style: cumulative `le` buckets are derived when read).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds of each bucket, ascending; a final implicit `+Inf` bucket follows.
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound, cumulative count)`, the last bound being `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    fn new(bounds: Vec<f64>) -> Self {
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram { bounds, counts, sum_micros: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    /// Buckets `start * factor^i` for `i` in `0..n`, like Prometheus' ExponentialBuckets.
    fn exponential(start: f64, factor: f64, n: usize) -> Self {
        Self::new((0..n).map(|i| start * factor.powi(i as i32)).collect())
    }

    /// Counts `value` (seconds for durations, plain units otherwise; the sum keeps microunits).
    pub fn observe(&self, value: f64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_micros.fetch_add((value * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// A copy with cumulative bucket counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            buckets.push((self.bounds.get(i).copied().unwrap_or(f64::INFINITY), cumulative));
        }
        HistogramSnapshot { buckets, sum: self.sum_micros.load(Relaxed) as f64 / 1e6, count: self.count.load(Relaxed) }
    }
}

/// The WAL's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// Seconds per fdatasync of a batch (`etcd_disk_wal_fsync_duration_seconds`).
    pub fsync: Histogram,
    /// Records per batch.
    pub batch_records: Histogram,
    /// Bytes per batch.
    pub batch_bytes: Histogram,
    /// Bytes written to segments (`etcd_disk_wal_write_bytes_total`).
    pub bytes_written: AtomicU64,
    /// Batches made durable.
    pub batches: AtomicU64,
    /// Appends made durable.
    pub appends: AtomicU64,
    /// Batches an appender wrote on its own thread, the I/O thread being idle (`Wal::append_durable`).
    pub appender_batches: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            fsync: Histogram::exponential(0.001, 2.0, 14),
            batch_records: Histogram::exponential(1.0, 2.0, 12),
            batch_bytes: Histogram::exponential(256.0, 4.0, 10),
            bytes_written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            appends: AtomicU64::new(0),
            appender_batches: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    pub(crate) fn record_batch(&self, records: u64, appends: u64, bytes: u64, fsync: Duration) {
        self.fsync.observe(fsync.as_secs_f64());
        self.batch_records.observe(records as f64);
        self.batch_bytes.observe(bytes as f64);
        self.bytes_written.fetch_add(bytes, Relaxed);
        self.batches.fetch_add(1, Relaxed);
        self.appends.fetch_add(appends, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_fsync_buckets_and_cumulative_counts() {
        let m = Metrics::default();
        let s = m.fsync.snapshot();
        assert_eq!(s.buckets.len(), 15);
        assert_eq!(s.buckets[0].0, 0.001);
        assert!((s.buckets[13].0 - 8.192).abs() < 1e-9);
        m.fsync.observe(0.0002);
        m.fsync.observe(0.001);
        m.fsync.observe(0.003);
        m.fsync.observe(100.0);
        let s = m.fsync.snapshot();
        assert_eq!(s.buckets[0], (0.001, 2), "le=0.001 includes 1 ms exactly");
        assert_eq!(s.buckets[2].1, 3);
        assert_eq!(s.buckets[14], (f64::INFINITY, 4));
        assert_eq!(s.count, 4);
        assert!((s.sum - 100.0042).abs() < 1e-6);
    }
}
