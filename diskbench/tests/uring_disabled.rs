//! With io_uring switched off in the kernel, diskbench says so and measures with the other engines.
//!
//! This flips the machine-wide `kernel.io_uring_disabled` sysctl, so it lives alone in its own test binary (cargo
//! runs test binaries one at a time) and restores the old value on drop, even when an assertion fails.

mod common;

use std::time::Duration;

use common::{entries, run};

const KNOB: &str = "/proc/sys/kernel/io_uring_disabled";

struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(KNOB, &self.0);
    }
}

#[test]
fn uring_unavailable_is_reported_and_the_run_goes_on() {
    let Ok(old) = std::fs::read_to_string(KNOB) else {
        eprintln!("skipping: this kernel has no {KNOB}");
        return;
    };
    if std::fs::write(KNOB, "2").is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root and must be able to set {KNOB}");
        eprintln!("skipping: cannot write {KNOB} (needs root)");
        return;
    }
    let _restore = Restore(old.trim().to_string());
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["-w", "wal", "--file-mode", "preallocated", "--size", "512k", "--json", dir.path().to_str().unwrap()],
        Duration::from_secs(60),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let unavailable = report["results"]["unavailable_engines"].as_array().unwrap();
    assert_eq!(unavailable.len(), 1, "{unavailable:?}");
    assert_eq!(unavailable[0][0], "uring");
    assert!(unavailable[0][1].as_str().unwrap().contains("io_uring is disabled"), "{unavailable:?}");
    let wal = report["results"]["wal"].as_array().unwrap();
    assert_eq!(wal.len(), 1);
    assert_eq!(wal[0]["engine"], "sync", "the sync engine still ran");
    assert_eq!(out.status.code(), Some(0));
    assert!(entries(dir.path()).is_empty());

    let only_uring = run(&["-e", "uring", "--quick", dir.path().to_str().unwrap()], Duration::from_secs(60));
    common::assert_one_line_error(&only_uring, "no selected engine can run here");
}
