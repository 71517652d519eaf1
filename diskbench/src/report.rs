//! Output: a readable table for people, JSON for machines, and the one line etcd's tooling greps for.

use std::fmt::Write as _;

use serde::Serialize;

use crate::hist::{RELATIVE_ERROR_BOUND, Summary};
use crate::job::Job;
use crate::sysinfo::Context;
use crate::units::{fmt_bytes, fmt_ns};
use crate::verdict::{Grade, Verdict};
use crate::workload::Results;

/// Everything a run found; serialised as the `--json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    /// Bound on the relative error of every reported percentile.
    pub percentile_relative_error: f64,
    pub job: Job,
    pub context: Context,
    pub results: Results,
    pub verdict: Verdict,
}

impl Report {
    /// Assembles a report.
    pub fn new(job: Job, context: Context, results: Results, verdict: Verdict) -> Self {
        Report {
            tool: "diskbench",
            version: env!("CARGO_PKG_VERSION"),
            percentile_relative_error: RELATIVE_ERROR_BOUND,
            job,
            context,
            results,
            verdict,
        }
    }

    /// The `--json` document.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// `INFO: 99th percentile of fsync is N ns`, the line Red Hat's etcd-perf prints and OpenShift tooling parses.
    pub fn fsync_line(&self) -> Option<String> {
        self.verdict.fsync_p99_ns.map(|ns| format!("INFO: 99th percentile of fsync is {ns} ns"))
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.context_text(&mut out);
        self.results_text(&mut out);
        self.verdict_text(&mut out);
        out
    }

    fn context_text(&self, out: &mut String) {
        let c = &self.context;
        let _ = writeln!(out, "diskbench {} — {}", self.version, c.dir.display());
        let unknown = || "unknown".to_string();
        let _ = writeln!(
            out,
            "  file system  {} (mount {}; fs {}) from {}, mounted at {}",
            c.fs_type.clone().unwrap_or_else(unknown),
            c.mount_options.clone().unwrap_or_default(),
            c.fs_options.clone().unwrap_or_default(),
            c.mount_source.clone().unwrap_or_else(unknown),
            c.mount_point.clone().unwrap_or_else(unknown)
        );
        if let Some(dev) = &c.device {
            let rot = match c.rotational {
                Some(true) => "rotational",
                Some(false) => "non-rotational",
                None => "rotational: unknown",
            };
            let cache = c.write_cache.clone().unwrap_or_else(unknown);
            let _ = writeln!(out, "  device       {dev}: {rot}, write cache: {cache}");
        }
        if let Some(k) = &c.kernel {
            let _ = writeln!(out, "  kernel       {k}");
        }
        for n in &c.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        for w in &c.warnings {
            let _ = writeln!(out, "  WARNING: {w}");
        }
        for (engine, why) in &self.results.unavailable_engines {
            let _ = writeln!(out, "  note: engine {engine} skipped: {why}");
        }
    }

    fn results_text(&self, out: &mut String) {
        let r = &self.results;
        let lat = |s: &Summary| {
            [
                fmt_ns(s.p50_ns),
                fmt_ns(s.p90_ns),
                fmt_ns(s.p99_ns),
                fmt_ns(s.p99_9_ns),
                fmt_ns(s.max_ns),
                fmt_ns(s.mean_ns),
            ]
        };
        if !r.wal.is_empty() {
            let _ =
                writeln!(out, "\nWAL: sequential {} B appends, each followed by a flush, queue depth 1", self.job.bs);
            let mut t = Table::new(&[
                "engine",
                "file",
                "appends",
                "IOPS",
                "MB/s",
                "flush p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "mean",
            ]);
            for w in &r.wal {
                let mut row = vec![
                    w.engine.to_string(),
                    w.file_mode.to_string(),
                    w.ops.to_string(),
                    format!("{:.0}", w.iops),
                    format!("{:.2}", w.mb_per_s),
                ];
                row.extend(lat(&w.sync));
                t.row(row);
            }
            t.render(out);
        }
        if !r.group_commit.is_empty() {
            let _ =
                writeln!(out, "\nGROUP COMMIT: concurrent {} B appends, one write + one flush per batch", self.job.bs);
            let mut t = Table::new(&[
                "engine",
                "writers",
                "appends/s",
                "batch",
                "append p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "flush p99",
            ]);
            for g in &r.group_commit {
                let a = lat(&g.append);
                t.row(vec![
                    g.engine.to_string(),
                    g.writers.to_string(),
                    format!("{:.0}", g.appends_per_s),
                    format!("{:.1}", g.mean_batch_appends),
                    a[0].clone(),
                    a[1].clone(),
                    a[2].clone(),
                    a[3].clone(),
                    a[4].clone(),
                    fmt_ns(g.sync.p99_ns),
                ]);
            }
            t.render(out);
        }
        if !r.backend.is_empty() {
            let pages = self.job.pages_per_commit;
            let _ = writeln!(out, "\nBACKEND: commits of {pages} random 4 KiB pages + flush + meta page + flush");
            let mut t =
                Table::new(&["engine", "commits/s", "commit p50", "p90", "p99", "p99.9", "max", "mean", "flush p99"]);
            for b in &r.backend {
                let mut row = vec![b.engine.to_string(), format!("{:.0}", b.commits_per_s)];
                row.extend(lat(&b.commit));
                row.push(fmt_ns(b.sync.p99_ns));
                t.row(row);
            }
            t.render(out);
        }
        if !r.bandwidth.is_empty() {
            let _ = writeln!(out, "\nBANDWIDTH: sequential 1 MiB writes, one fsync at the end");
            let mut t = Table::new(&["engine", "written", "MB/s", "final fsync", "1 GiB catch-up"]);
            for b in &r.bandwidth {
                t.row(vec![
                    b.engine.to_string(),
                    fmt_bytes(b.bytes),
                    format!("{:.0}", b.mb_per_s),
                    fmt_ns(b.final_sync_ns),
                    format!("{:.1} s", b.catch_up_1gib_s),
                ]);
            }
            t.render(out);
        }
    }

    fn verdict_text(&self, out: &mut String) {
        let v = &self.verdict;
        let grade = match v.grade {
            Grade::Recommended => "PASS (recommended)",
            Grade::Minimum => "PASS (minimum)",
            Grade::Fail => "FAIL",
            Grade::NotRated => "NOT RATED",
        };
        let tier = v.tier.map(|t| format!(", cluster tier: {t}")).unwrap_or_default();
        let _ = writeln!(out, "\nVERDICT: {grade}{tier}");
        for reason in &v.reasons {
            let _ = writeln!(out, "  - {reason}");
        }
        if !self.context.warnings.is_empty() {
            let _ = writeln!(out, "  - but see the warnings above: these figures may not be the disk's");
        }
    }
}

/// A right-aligned text table (first column left-aligned).
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Table { rows: vec![header.iter().map(|h| h.to_string()).collect()] }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| self.rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
            .collect();
        for row in &self.rows {
            let mut line = String::from(" ");
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                if c == 0 {
                    let _ = write!(line, " {cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(line, "  {}{cell}", " ".repeat(pad));
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut t = Table::new(&["engine", "IOPS"]);
        t.row(vec!["sync".into(), "6000".into()]);
        t.row(vec!["uring".into(), "12".into()]);
        let mut out = String::new();
        t.render(&mut out);
        assert_eq!(out, "  engine  IOPS\n  sync    6000\n  uring     12\n");
    }
}
