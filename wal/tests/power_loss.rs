//! Power loss: the WAL runs on crashfs (a FUSE file system that journals every write, sync, create and rename), a
//! workload appends from four threads and marks each acknowledged index; then, at every crash point of the journal
//! (up to `WAL_POWER_POINTS`, default 400) and under each loss mode (every unsynced change lost; each file's
//! changes kept up to one torn at a sector; each unsynced sector kept or lost on its own, with random prefixes of
//! directory changes), the image the power loss leaves is written to a plain directory and the WAL is opened on
//! it. It must open, replay entries 1..n contiguous and intact, include every index acknowledged before the crash,
//! and take a new append. Both engines; small segments, so crash points fall in segment changes and removals.
//!
//! The kill -9 crash test (tests/crash.rs) keeps the page cache; this one does not.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{payload, small};
use crashfs::{CrashFs, Loss};
use wal::{EngineKind, RaftIndex, Record, Term, Wal};

/// Creates a WAL on the mount and appends `total` entries from four threads, marking each acknowledged index; a
/// quarter of the way in, segments below the halfway index are released (removed).
fn workload(fs: &CrashFs, engine: EngineKind, total: u64) {
    let wal = Arc::new(Wal::create(fs.path().join("wal"), small(engine)).unwrap());
    let next = Mutex::new(1u64);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let (index, done) = {
                        let mut n = next.lock().unwrap();
                        if *n > total {
                            return;
                        }
                        let index = *n;
                        *n += 1;
                        let data = payload(index);
                        (index, wal.append(&[Record::Entry { index: RaftIndex(index), term: Term(1), data: &data }]))
                    };
                    done.unwrap().wait().unwrap();
                    fs.mark(index);
                    if index == total * 3 / 4 {
                        wal.release_to(RaftIndex(total / 2)).unwrap();
                    }
                }
            });
        }
    });
    Arc::into_inner(wal).unwrap().close().unwrap();
}

/// Recovers the WAL from `image_dir` and checks it against the acknowledged `marks`; `Err` says what is wrong.
fn check(image_dir: &Path, marks: &[u64], engine: EngineKind) -> Result<(), String> {
    let dir = image_dir.join("wal");
    let Some(&highest) = marks.iter().max() else {
        // Nothing acknowledged: whatever is there (or not) is fine, but what opens must be a valid log.
        return match Wal::open(&dir, small(engine)) {
            Ok(w) => w.replay(RaftIndex(1)).map(|_| ()).map_err(|e| format!("replay of an unacknowledged log: {e}")),
            Err(_) => Ok(()),
        };
    };
    let wal = Wal::open(&dir, small(engine)).map_err(|e| format!("open: {e}"))?;
    let replay = wal.replay(RaftIndex(1)).map_err(|e| format!("replay: {e}"))?;
    let first = replay.entries.first().map_or(1, |e| e.index.0);
    for (k, e) in replay.entries.iter().enumerate() {
        if e.index.0 != first + k as u64 || e.data != payload(e.index.0) {
            return Err(format!("entry {} at position {k} is out of order or damaged", e.index.0));
        }
    }
    let last = replay.entries.last().map_or(0, |e| e.index.0);
    if last < highest {
        return Err(format!("acknowledged index {highest} lost: the log ends at {last}"));
    }
    if first > marks.iter().copied().filter(|&m| m >= first).min().unwrap_or(first) {
        return Err(format!("the log starts at {first}"));
    }
    let data = payload(last + 1);
    wal.append(&[Record::Entry { index: RaftIndex(last + 1), term: Term(1), data: &data }])
        .and_then(|c| c.wait())
        .map_err(|e| format!("append after recovery: {e}"))?;
    Ok(())
}

const LOSSES: [Loss; 3] = [Loss::Everything, Loss::Prefix(1), Loss::Sectors(2)];

#[test]
fn acknowledged_appends_survive_power_loss_at_every_crash_point() {
    let max_points = std::env::var("WAL_POWER_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    for engine in [EngineKind::Sync, EngineKind::Uring] {
        let mnt = tempfile::tempdir().unwrap();
        let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
        workload(&fs, engine, 600);
        let journal = fs.unmount().unwrap();
        assert_eq!(journal.marks().len(), 600);
        let report = journal.check_images(max_points, &LOSSES, |dir, marks| check(dir, marks, engine));
        eprintln!(
            "{engine:?}: {} journal operations, {} crash images checked, {} failed",
            report.operations,
            report.checked,
            report.failures.len()
        );
        report.assert_clean(&format!("{engine:?}"));
    }
    // The same test on a deliberately broken build: batches acknowledged without their fdatasync. (Failpoints are
    // process-wide, so this runs here, after the honest runs, not as a test of its own beside them.)
    for engine in [EngineKind::Sync, EngineKind::Uring] {
        let mnt = tempfile::tempdir().unwrap();
        let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
        wal::failpoints::WAL_SKIP_FDATASYNC.set("return").unwrap();
        workload(&fs, engine, 300);
        wal::failpoints::WAL_SKIP_FDATASYNC.clear().unwrap();
        let journal = fs.unmount().unwrap();
        let report = journal.check_images(100, &LOSSES, |dir, marks| check(dir, marks, engine));
        let (checked, failures) = (report.checked, &report.failures);
        eprintln!("{engine:?} without fdatasync: {checked} crash images checked, {} failed", failures.len());
        assert!(!failures.is_empty(), "{engine:?}: skipping every fdatasync went unnoticed in {checked} images");
        eprintln!("  e.g. {}", failures[failures.len() / 2]);
    }
}
