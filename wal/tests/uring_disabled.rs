//! With io_uring switched off in the kernel, a WAL asked to use it falls back to the sync engine and says why.
//!
//! This flips the machine-wide `kernel.io_uring_disabled` sysctl, so it lives alone in its own test binary (cargo
//! runs test binaries one at a time) and restores the old value on drop, even when an assertion fails.

mod common;

use common::{append_range, small};
use wal::{EngineKind, RaftIndex, Wal};

const KNOB: &str = "/proc/sys/kernel/io_uring_disabled";

struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(KNOB, &self.0);
    }
}

#[test]
fn uring_unavailable_falls_back_to_sync_and_says_why() {
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
    let wal = Wal::create(dir.path(), small(EngineKind::Uring)).unwrap();
    assert_eq!(wal.engine(), EngineKind::Sync);
    let why = wal.recovery().engine_fallback.clone().expect("the fallback is reported");
    assert!(why.contains("io_uring is disabled"), "{why}");
    append_range(&wal, 1, 100);
    assert_eq!(wal.replay(RaftIndex(1)).unwrap().entries.len(), 99);
}
