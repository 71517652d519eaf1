//! A short real run on a temporary directory, checked through its JSON, and the text output's shape.

mod common;

use std::time::Duration;

use common::{entries, run};
use serde_json::Value;

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_f64().unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

fn check_summary(s: &Value, what: &str) {
    let get = |k: &str| s[k].as_u64().unwrap_or_else(|| panic!("{what}.{k} missing: {s}"));
    assert!(get("count") > 0, "{what}: no samples");
    let order = [get("min_ns"), get("p50_ns"), get("p90_ns"), get("p99_ns"), get("p99_9_ns"), get("max_ns")];
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{what}: percentiles out of order: {order:?}");
    assert!(order[0] > 0, "{what}: a flush cannot take 0 ns");
}

#[test]
fn quick_json_run_reports_every_workload_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("operator-file"), b"untouched").unwrap();
    let target = dir.path().to_str().unwrap();
    let out = run(&["--quick", "--json", "--no-progress", target], Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {stderr}"));

    // Exit status follows the verdict.
    let verdict = &report["verdict"];
    let grade = verdict["grade"].as_str().unwrap();
    assert!(["recommended", "minimum", "fail"].contains(&grade), "{grade}");
    assert_eq!(out.status.code(), Some(if grade == "fail" { 1 } else { 0 }), "{stderr}");
    assert!(verdict["reasons"].as_array().unwrap().len() >= 3, "{verdict}");
    let p99 = verdict["fsync_p99_ns"].as_u64().unwrap();
    assert!(stderr.contains(&format!("INFO: 99th percentile of fsync is {p99} ns")), "{stderr}");

    let unavailable = report["results"]["unavailable_engines"].as_array().unwrap().len();
    let engines = 2 - unavailable;
    let results = &report["results"];
    let wal = results["wal"].as_array().unwrap();
    assert_eq!(wal.len(), 2 * engines, "growing and preallocated for each engine");
    for w in wal {
        let ops = w["ops"].as_u64().unwrap();
        assert_eq!(ops, (4 << 20) / 2300, "--quick writes 4 MiB of 2300 B appends: {w}");
        assert_eq!(w["sync"]["count"].as_u64(), Some(ops), "one flush per append");
        check_summary(&w["sync"], "wal.sync");
        assert!(num(w, &["iops"]) > 0.0);
    }
    let groups = results["group_commit"].as_array().unwrap();
    assert_eq!(groups.len(), 3 * engines);
    for g in groups {
        check_summary(&g["append"], "group_commit.append");
        let (appends, batches) = (g["appends"].as_u64().unwrap(), g["batches"].as_u64().unwrap());
        assert!(batches > 0 && appends >= batches, "{g}");
        if g["writers"] == 1 {
            assert_eq!(appends, batches, "a lone writer is never batched with anyone: {g}");
        }
    }
    for b in results["backend"].as_array().unwrap() {
        check_summary(&b["commit"], "backend.commit");
        assert_eq!(b["sync"]["count"].as_u64(), Some(2 * b["commits"].as_u64().unwrap()), "two flushes per commit");
    }
    for b in results["bandwidth"].as_array().unwrap() {
        assert_eq!(b["bytes"].as_u64(), Some(64 << 20));
        assert!(num(b, &["mb_per_s"]) > 0.0);
    }
    assert!(report["context"]["fs_type"].is_string());
    assert_eq!(entries(dir.path()), vec!["operator-file"], "the work directory is gone");
}

#[test]
fn text_output_has_each_section_and_the_fsync_line() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_str().unwrap();
    let out = run(
        &[
            "-w",
            "wal,backend",
            "-e",
            "sync,dsync",
            "--size",
            "256k",
            "--runtime",
            "200ms",
            "--file-mode",
            "overwrite",
            target,
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.code() == Some(0) || out.status.code() == Some(1), "{out:?}");
    for needle in ["WAL: sequential 2300 B appends", "BACKEND: commits of 16", "VERDICT: ", "overwrite", "dsync"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("GROUP COMMIT"), "unselected workloads are not run");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("INFO: 99th percentile of fsync is ") && last.ends_with(" ns"), "{last}");
    assert!(entries(dir.path()).is_empty());
}
