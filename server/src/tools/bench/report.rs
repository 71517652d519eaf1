//! A benchmark's results and their report, laid out as etcd 3.4's `benchmark` tool prints them (its `pkg/report`):
//! "Summary" (total, slowest, fastest, average, standard deviation, requests per second), "Response time
//! histogram" (ten equal buckets between the fastest and the slowest request, bars of `∎` scaled to 40 for the
//! fullest), "Latency distribution" (10, 25, 50, 75, 90, 95, 99 and 99.9th percentiles) and, when requests
//! failed, "Error distribution". Times are seconds with four decimals (etcd's `%4.4f`).
//!
//! **Percentiles** follow etcd's rule, so the figures compare one to one: of `n` sorted latencies the `p`th
//! percentile is the one at index `ceil(p × (n + 1) / 100) − 1`, clamped to the list.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// The percentiles reported.
pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];
const BUCKETS: usize = 10;
const BAR: &str = "∎";

/// What one benchmark run measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Wall time from the first request to the last response.
    pub total: Duration,
    /// Successful requests' latencies in seconds, sorted.
    pub lats: Vec<f64>,
    /// Failed requests by error text.
    pub errors: BTreeMap<String, u64>,
}

impl Stats {
    /// From raw latencies (any order) and errors.
    pub fn new(total: Duration, mut lats: Vec<f64>, errors: BTreeMap<String, u64>) -> Stats {
        lats.sort_by(f64::total_cmp);
        Stats { total, lats, errors }
    }

    pub fn fastest(&self) -> f64 {
        self.lats.first().copied().unwrap_or(0.0)
    }

    pub fn slowest(&self) -> f64 {
        self.lats.last().copied().unwrap_or(0.0)
    }

    pub fn average(&self) -> f64 {
        if self.lats.is_empty() { 0.0 } else { self.lats.iter().sum::<f64>() / self.lats.len() as f64 }
    }

    /// Population standard deviation, as etcd's.
    pub fn stddev(&self) -> f64 {
        if self.lats.is_empty() {
            return 0.0;
        }
        let avg = self.average();
        (self.lats.iter().map(|l| (l - avg) * (l - avg)).sum::<f64>() / self.lats.len() as f64).sqrt()
    }

    /// Successful requests per second of wall time.
    pub fn rps(&self) -> f64 {
        let secs = self.total.as_secs_f64();
        if secs > 0.0 { self.lats.len() as f64 / secs } else { 0.0 }
    }

    /// The `p`th percentile by etcd's rule (see the module header); 0 with no latencies.
    pub fn percentile(&self, p: f64) -> f64 {
        let n = self.lats.len();
        if n == 0 {
            return 0.0;
        }
        let idx = ((p * (n as f64 + 1.0) / 100.0).ceil() as i64 - 1).clamp(0, n as i64 - 1);
        self.lats[idx as usize]
    }

    /// The histogram: each bucket's upper bound and count (etcd's buckets: ten equal steps from the fastest, then
    /// the slowest; a latency goes to the first bucket whose bound it does not exceed).
    pub fn histogram(&self) -> Vec<(f64, u64)> {
        let (fast, slow) = (self.fastest(), self.slowest());
        let step = (slow - fast) / BUCKETS as f64;
        let mut buckets: Vec<(f64, u64)> = (0..BUCKETS).map(|i| (fast + step * i as f64, 0)).collect();
        buckets.push((slow, 0));
        let mut b = 0;
        for &l in &self.lats {
            while l > buckets[b].0 && b < BUCKETS {
                b += 1;
            }
            buckets[b].1 += 1;
        }
        buckets
    }

    /// The report as etcd's benchmark prints it.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if !self.lats.is_empty() {
            let secs = |v: f64| format!("{v:4.4} secs");
            s += "\nSummary:\n";
            let _ = writeln!(s, "  Total:\t{}.", secs(self.total.as_secs_f64()));
            let _ = writeln!(s, "  Slowest:\t{}.", secs(self.slowest()));
            let _ = writeln!(s, "  Fastest:\t{}.", secs(self.fastest()));
            let _ = writeln!(s, "  Average:\t{}.", secs(self.average()));
            let _ = writeln!(s, "  Stddev:\t{}.", secs(self.stddev()));
            let _ = writeln!(s, "  Requests/sec:\t{:4.4}", self.rps());
            s += "\nResponse time histogram:\n";
            let hist = self.histogram();
            let max = hist.iter().map(|b| b.1).max().unwrap_or(0);
            for (bound, count) in hist {
                let bar = (count * 40).checked_div(max).unwrap_or(0) as usize;
                let _ = writeln!(s, "  {bound:4.4} [{count}]\t|{}", BAR.repeat(bar));
            }
            s += "\nLatency distribution:\n";
            for p in PERCENTILES {
                let v = self.percentile(p);
                if v > 0.0 {
                    let _ = writeln!(s, "  {p}% in {v:4.4} secs.");
                }
            }
        }
        if !self.errors.is_empty() {
            s += "\nError distribution:\n";
            for (e, n) in &self.errors {
                let _ = writeln!(s, "  [{n}]\t{e}");
            }
        }
        s
    }

    /// The figures as JSON (`--json`): every number the text report shows, unrounded.
    pub fn json(&self, op: &str) -> serde_json::Value {
        let pct: serde_json::Map<String, serde_json::Value> =
            PERCENTILES.iter().map(|p| (p.to_string(), self.percentile(*p).into())).collect();
        let hist: Vec<serde_json::Value> =
            self.histogram().into_iter().map(|(b, c)| serde_json::json!({"le": b, "count": c})).collect();
        serde_json::json!({
            "op": op,
            "total_secs": self.total.as_secs_f64(),
            "requests": self.lats.len(),
            "errors": self.errors.values().sum::<u64>(),
            "error_distribution": self.errors,
            "requests_per_sec": self.rps(),
            "slowest_secs": self.slowest(),
            "fastest_secs": self.fastest(),
            "average_secs": self.average(),
            "stddev_secs": self.stddev(),
            "percentiles_secs": pct,
            "histogram": hist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(lats: &[f64]) -> Stats {
        Stats::new(Duration::from_secs(2), lats.to_vec(), BTreeMap::new())
    }

    #[test]
    fn percentiles_follow_etcds_rule() {
        // n = 10: the 50th is index ceil(5.5) - 1 = 5; the 90th ceil(9.9) - 1 = 9; the 10th ceil(1.1) - 1 = 1.
        let s = stats(&[10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
        assert_eq!(s.percentile(50.0), 6.0);
        assert_eq!(s.percentile(90.0), 10.0);
        assert_eq!(s.percentile(10.0), 2.0);
        assert_eq!(s.percentile(99.9), 10.0, "clamped to the last");
        let one = stats(&[0.5]);
        assert_eq!(one.percentile(10.0), 0.5);
        assert_eq!(stats(&[]).percentile(50.0), 0.0);
    }

    #[test]
    fn summary_figures() {
        let s = stats(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.fastest(), s.slowest(), s.average()), (1.0, 4.0, 2.5));
        assert!((s.stddev() - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.rps(), 2.0);
    }

    #[test]
    fn histogram_buckets_count_every_latency_once() {
        let s = stats(&[0.0, 0.05, 0.1, 0.1, 0.55, 1.0]);
        let h = s.histogram();
        assert_eq!(h.len(), 11);
        assert_eq!(h.iter().map(|b| b.1).sum::<u64>(), 6);
        assert_eq!(h[0], (0.0, 1));
        assert_eq!(h[1].1, 3, "0.05 and both 0.1 are at or below the bound 0.1");
        assert_eq!(h[10], (1.0, 1));
    }

    #[test]
    fn text_layout_is_etcds() {
        let mut errors = BTreeMap::new();
        errors.insert("etcdserver: request timed out".to_string(), 2);
        let s = Stats::new(Duration::from_millis(1500), vec![0.001, 0.002, 0.002, 0.004], errors);
        let text = s.text();
        let expected_head = "\nSummary:\n  Total:\t1.5000 secs.\n  Slowest:\t0.0040 secs.\n  Fastest:\t0.0010 secs.\n";
        assert!(text.starts_with(expected_head), "{text}");
        assert!(
            text.contains("  Requests/sec:\t2.6667\n\nResponse time histogram:\n  0.0010 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n")
        );
        assert!(text.contains("  0.0040 [1]\t|∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎∎\n\nLatency distribution:\n  10% in 0.0010 secs.\n"));
        assert!(
            text.contains("  99.9% in 0.0040 secs.\n\nError distribution:\n  [2]\tetcdserver: request timed out\n")
        );
        let j = s.json("put");
        assert_eq!(j["requests"], 4);
        assert_eq!(j["errors"], 2);
    }
}
