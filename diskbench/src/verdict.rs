//! The verdict: the measured figures held against etcd's published guidance.
//!
//! Rules (etcd's op-guide/hardware and FAQ; thresholds are inclusive where etcd's wording is "at least"):
//! 1. WAL: the basis run is the etcd pattern: the `sync` engine on a preallocated file, or the nearest run that was
//!    measured (engine order sync, uring, dsync; file order preallocated, overwrite, growing).
//!    - fdatasync p99 > 10 ms → FAIL (etcd: "wal_fsync_duration_seconds p99 should be < 10 ms");
//!    - sequential IOPS < 50 → FAIL (below a 7,200 rpm disk, etcd's stated minimum);
//!    - 50 ≤ IOPS < 500 → MINIMUM;
//!    - IOPS ≥ 500 and p99 ≤ 10 ms → RECOMMENDED.
//! 2. Backend (when measured): commit p99 > 25 ms on every engine → FAIL (etcd: backend_commit_duration_seconds p99
//!    should be < 25 ms). The best engine counts: a deployment picks it.
//! 3. Tier: the best sustained group-commit rate falls in etcd's cluster tiers as small < 200, medium < 1,000,
//!    large < 10,000 writes/s, xlarge above.
//! 4. Without a WAL run there is no grade (NOT RATED); the exit status is then 0 unless rule 2 failed.

use serde::Serialize;

use crate::engine::EngineKind;
use crate::job::FileMode;
use crate::units::fmt_ns;
use crate::workload::{Results, WalRun};

/// etcd's WAL fdatasync p99 limit.
pub const WAL_P99_LIMIT_NS: u64 = 10_000_000;
/// etcd's backend commit p99 limit.
pub const BACKEND_P99_LIMIT_NS: u64 = 25_000_000;
/// Sequential fdatasync IOPS below which a disk fails.
pub const MIN_IOPS: f64 = 50.0;
/// Sequential fdatasync IOPS etcd recommends for heavy load.
pub const RECOMMENDED_IOPS: f64 = 500.0;

/// How fit the disk is for etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grade {
    Recommended,
    Minimum,
    Fail,
    NotRated,
}

/// etcd's cluster size tiers (op-guide/hardware).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Small,
    Medium,
    Large,
    Xlarge,
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tier::Small => "small",
            Tier::Medium => "medium",
            Tier::Large => "large",
            Tier::Xlarge => "xlarge",
        })
    }
}

/// The verdict and the reasons behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub grade: Grade,
    pub tier: Option<Tier>,
    /// The group-commit rate the tier is based on.
    pub group_commit_appends_per_s: Option<f64>,
    /// Which WAL run the grade is based on, e.g. `sync, preallocated`.
    pub wal_basis: Option<String>,
    /// That run's fdatasync p99, for the `INFO: 99th percentile of fsync is N ns` line.
    pub fsync_p99_ns: Option<u64>,
    pub reasons: Vec<String>,
    pub exit_code: i32,
}

/// Rule 1 for one WAL measurement.
pub fn grade_wal(iops: f64, p99_ns: u64) -> (Grade, String) {
    let p99 = fmt_ns(p99_ns);
    if p99_ns > WAL_P99_LIMIT_NS {
        (Grade::Fail, format!("WAL fdatasync p99 {p99} is above etcd's 10 ms limit"))
    } else if iops < MIN_IOPS {
        (Grade::Fail, format!("{iops:.0} sequential fdatasync IOPS is below etcd's minimum of 50"))
    } else if iops < RECOMMENDED_IOPS {
        (
            Grade::Minimum,
            format!(
                "{iops:.0} sequential fdatasync IOPS meets etcd's minimum (50) but not the 500 recommended for heavy load; p99 {p99} ≤ 10 ms"
            ),
        )
    } else {
        (Grade::Recommended, format!("{iops:.0} sequential fdatasync IOPS ≥ 500 and p99 {p99} ≤ 10 ms"))
    }
}

/// Rule 3.
pub fn tier_for(writes_per_s: f64) -> Tier {
    if writes_per_s < 200.0 {
        Tier::Small
    } else if writes_per_s < 1_000.0 {
        Tier::Medium
    } else if writes_per_s < 10_000.0 {
        Tier::Large
    } else {
        Tier::Xlarge
    }
}

fn basis_rank(run: &WalRun) -> (u8, u8) {
    let engine = match run.engine {
        EngineKind::Sync => 0,
        EngineKind::Uring => 1,
        EngineKind::Dsync => 2,
    };
    let mode = match run.file_mode {
        FileMode::Preallocated => 0,
        FileMode::Overwrite => 1,
        FileMode::Growing => 2,
    };
    (engine, mode)
}

/// Applies every rule to a run's results.
pub fn judge(results: &Results) -> Verdict {
    let mut reasons = Vec::new();
    let basis = results.wal.iter().min_by_key(|r| basis_rank(r));
    let mut grade = match basis {
        Some(run) => {
            let (grade, why) = grade_wal(run.iops, run.sync.p99_ns);
            reasons.push(format!("WAL ({}, {}): {why}", run.engine, run.file_mode));
            grade
        }
        None => {
            reasons.push("no WAL run: the disk is not graded (run the wal workload for a grade)".to_string());
            Grade::NotRated
        }
    };
    if let Some(best) = results.backend.iter().min_by_key(|r| r.commit.p99_ns) {
        let p99 = fmt_ns(best.commit.p99_ns);
        if best.commit.p99_ns > BACKEND_P99_LIMIT_NS {
            grade = Grade::Fail;
            reasons.push(format!("backend commit p99 {p99} ({}) is above etcd's 25 ms limit", best.engine));
        } else {
            reasons.push(format!("backend commit p99 {p99} ({}) ≤ 25 ms", best.engine));
        }
    }
    let best_rate = results.group_commit.iter().max_by(|a, b| a.appends_per_s.total_cmp(&b.appends_per_s));
    let tier = best_rate.map(|run| {
        let tier = tier_for(run.appends_per_s);
        reasons.push(format!(
            "group commit sustains {:.0} durable appends/s ({}, {} writers): the {tier} tier (small < 200, medium < \
             1,000, large < 10,000 writes/s, xlarge above)",
            run.appends_per_s, run.engine, run.writers
        ));
        tier
    });
    Verdict {
        grade,
        tier,
        group_commit_appends_per_s: best_rate.map(|r| r.appends_per_s),
        wal_basis: basis.map(|r| format!("{}, {}", r.engine, r.file_mode)),
        fsync_p99_ns: basis.map(|r| r.sync.p99_ns),
        reasons,
        exit_code: if grade == Grade::Fail { 1 } else { 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hist::Summary;
    use crate::workload::{BackendRun, GroupCommitRun};

    fn wal(engine: EngineKind, file_mode: FileMode, iops: f64, p99_ns: u64) -> WalRun {
        WalRun {
            engine,
            file_mode,
            bs: 2300,
            ops: 1000,
            bytes: 2_300_000,
            elapsed_s: 1.0,
            iops,
            mb_per_s: 1.0,
            wrapped: false,
            write: None,
            sync: Summary { p99_ns, ..Summary::default() },
        }
    }

    #[test]
    fn wal_rules_at_their_boundaries() {
        let ms = 1_000_000;
        assert_eq!(grade_wal(500.0, 10 * ms).0, Grade::Recommended, "p99 exactly 10 ms passes");
        assert_eq!(grade_wal(500.0, 10 * ms + 1).0, Grade::Fail, "just above 10 ms fails");
        assert_eq!(grade_wal(499.99, ms).0, Grade::Minimum);
        assert_eq!(grade_wal(50.0, ms).0, Grade::Minimum, "exactly 50 IOPS is the minimum");
        assert_eq!(grade_wal(49.99, ms).0, Grade::Fail);
        assert_eq!(grade_wal(6000.0, 20 * ms).0, Grade::Fail, "fast on average but a slow tail still fails");
        assert!(grade_wal(49.0, ms).1.contains("below etcd's minimum of 50"));
    }

    #[test]
    fn tiers_at_their_boundaries() {
        assert_eq!(tier_for(0.0), Tier::Small);
        assert_eq!(tier_for(199.9), Tier::Small);
        assert_eq!(tier_for(200.0), Tier::Medium);
        assert_eq!(tier_for(999.9), Tier::Medium);
        assert_eq!(tier_for(1_000.0), Tier::Large);
        assert_eq!(tier_for(9_999.9), Tier::Large);
        assert_eq!(tier_for(10_000.0), Tier::Xlarge);
    }

    #[test]
    fn basis_is_the_etcd_pattern_and_exit_codes_follow_the_grade() {
        let results = Results {
            wal: vec![
                wal(EngineKind::Uring, FileMode::Preallocated, 40.0, 1_000),
                wal(EngineKind::Sync, FileMode::Growing, 40.0, 1_000),
                wal(EngineKind::Sync, FileMode::Preallocated, 600.0, 1_000_000),
            ],
            ..Results::default()
        };
        let v = judge(&results);
        assert_eq!(v.grade, Grade::Recommended);
        assert_eq!(v.wal_basis.as_deref(), Some("sync, preallocated"));
        assert_eq!(v.fsync_p99_ns, Some(1_000_000));
        assert_eq!(v.exit_code, 0);
        let failing =
            Results { wal: vec![wal(EngineKind::Sync, FileMode::Preallocated, 10.0, 1)], ..Results::default() };
        assert_eq!(judge(&failing).exit_code, 1);
        let v = judge(&Results::default());
        assert_eq!((v.grade, v.exit_code, v.tier), (Grade::NotRated, 0, None));
    }

    #[test]
    fn slow_backend_fails_and_tier_uses_best_rate() {
        let backend = |engine, p99_ns| BackendRun {
            engine,
            pages_per_commit: 16,
            commits: 10,
            elapsed_s: 1.0,
            commits_per_s: 10.0,
            commit: Summary { p99_ns, ..Summary::default() },
            sync: Summary::default(),
        };
        let group = |writers, appends_per_s| GroupCommitRun {
            engine: EngineKind::Sync,
            writers,
            bs: 2300,
            appends: 1,
            batches: 1,
            elapsed_s: 1.0,
            appends_per_s,
            mean_batch_appends: 1.0,
            append: Summary::default(),
            sync: Summary::default(),
        };
        let results = Results {
            wal: vec![wal(EngineKind::Sync, FileMode::Preallocated, 600.0, 1_000)],
            backend: vec![backend(EngineKind::Sync, 30_000_000), backend(EngineKind::Uring, 25_000_000)],
            group_commit: vec![group(1, 900.0), group(64, 12_000.0), group(8, 5_000.0)],
            ..Results::default()
        };
        let v = judge(&results);
        assert_eq!(v.grade, Grade::Recommended, "the best engine's 25 ms is within the limit: {:?}", v.reasons);
        assert_eq!(v.tier, Some(Tier::Xlarge));
        assert_eq!(v.group_commit_appends_per_s, Some(12_000.0));
        let slow = Results { backend: vec![backend(EngineKind::Sync, 25_000_001)], ..results };
        let v = judge(&slow);
        assert_eq!((v.grade, v.exit_code), (Grade::Fail, 1));
        assert!(v.reasons.iter().any(|r| r.contains("above etcd's 25 ms")));
    }
}
