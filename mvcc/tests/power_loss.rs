//! Power loss: the store runs on crashfs (a FUSE file system that journals every write, sync, create and rename)
//! through the crash test's deterministic workload (puts, deletes, overflow values), with compactions, two online
//! defragmentations (which move pages down and cut the file) and a snapshot restored into a second file; each
//! commit acknowledged durable is marked. Then, at every crash point of the journal (up to `MVCC_POWER_POINTS`,
//! default 300) and under each loss mode (every unsynced change lost; each file's changes kept up to one torn at
//! a sector; each sector as the page cache held it at some moment), the image is written to a plain directory and
//! the store is opened on it: it must open, pass its invariant check, hold exactly the workload's prefix up to its
//! applied index, and that index must include every acknowledged commit. Once the restore is acknowledged, the
//! restored file must open too.
//!
//! The second test runs the store as the server does, with the periodic sync beside the writer
//! (`SyncPolicy::background`): a thread syncs with `Db::sync_concurrent` while the workload commits, compacts and
//! defragments (whose durable commits sync under the writer lock at the same time), and marks the applied index
//! it read before each sync; each fdatasync takes 3 ms more, so commits land while a sync is under way. The same
//! checks hold at every crash point.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use common::{commit_step, expected};
use crashfs::{CrashFs, Loss};
use mvcc::{Db, DbConfig, DefragConfig, RangeOptions, Store, StoreConfig, SyncPolicy};

/// The mark of the restored copy's acknowledgement (far above any step).
const RESTORED: u64 = 1 << 40;

fn config() -> StoreConfig {
    StoreConfig { compaction_batch: 50, ..StoreConfig::default() }
}

/// After step `step` of `steps` (at revision `rev`): a compaction every 47 steps, an online defragmentation at
/// the half and at nine tenths.
fn maintain(store: &Store, step: u64, rev: i64, steps: u64) {
    if step % 47 == 0 && rev > 31 && rev - 30 > store.compact_revision() {
        store.compact(rev - 30).unwrap();
    }
    if step == steps / 2 || step == steps * 9 / 10 {
        let config = DefragConfig { keys_per_step: 8, ..DefragConfig::default() };
        store.db().defrag(config, &AtomicBool::new(false)).unwrap();
    }
}

fn workload(fs: &CrashFs, steps: u64) {
    let store = Store::open(fs.path().join("store"), &[], config()).unwrap();
    for step in 1..=steps {
        maintain(&store, step, commit_step(&store, step as i64), steps);
        fs.mark(step);
        if step == steps * 3 / 4 {
            let mut image = Vec::new();
            store.db().snapshot_to(&mut image).unwrap();
            drop(
                Db::restore_from(fs.path().join("restored"), &mut image.as_slice(), &[], DbConfig::default()).unwrap(),
            );
            fs.mark(RESTORED);
        }
    }
}

/// The workload with the store's sync on a thread of its own: commits only write their pages, and the syncer
/// marks the applied index it read before each sync that returned.
fn workload_background(fs: &CrashFs, steps: u64) {
    let sync = SyncPolicy { max_commits: u32::MAX, max_delay: std::time::Duration::ZERO, background: true };
    let config = StoreConfig { db: DbConfig { sync, ..DbConfig::default() }, ..config() };
    let store = Store::open(fs.path().join("store"), &[], config).unwrap();
    // A disk whose fdatasync takes 3 ms, so that commits land while a sync is under way.
    mvcc::failpoints::SKIP_FDATASYNC.set("sleep(3)").unwrap();
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let applied = store.applied().0;
                store.db().sync_if_due().unwrap();
                fs.mark(applied);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        for step in 1..=steps {
            maintain(&store, step, commit_step(&store, step as i64), steps);
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
    mvcc::failpoints::SKIP_FDATASYNC.clear().unwrap();
    store.db().sync().unwrap();
    fs.mark(steps);
}

/// Opens the store in `dir` and checks it against the acknowledged `marks`.
fn check(dir: &Path, marks: &[u64]) -> Result<(), String> {
    let durable = marks.iter().copied().filter(|&m| m < RESTORED).max();
    let path = dir.join("store");
    let store = match (Store::open(&path, &[], config()), durable) {
        (Ok(s), _) => s,
        // Nothing acknowledged yet: a store that does not open (or is not there) loses nothing.
        (Err(_), None) => return Ok(()),
        (Err(e), Some(d)) => return Err(format!("open with step {d} acknowledged: {e}")),
    };
    store.check().map_err(|e| format!("invariants: {e}"))?;
    let applied = store.applied().0 as i64;
    if applied < durable.unwrap_or(0) as i64 {
        return Err(format!("applied {applied} is behind the acknowledged step {}", durable.unwrap_or(0)));
    }
    let (want, want_rev) = expected(applied);
    if store.current_revision() != want_rev {
        return Err(format!("revision {} at step {applied}, want {want_rev}", store.current_revision()));
    }
    let got: BTreeMap<Vec<u8>, Vec<u8>> = store
        .range(b"key-", &[0], RangeOptions::default())
        .map_err(|e| format!("range: {e}"))?
        .kvs
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    if got != want {
        return Err(format!("the store is not the workload's prefix up to step {applied}"));
    }
    if marks.contains(&RESTORED) {
        let restored = Store::open(dir.join("restored"), &[], config()).map_err(|e| format!("restored copy: {e}"))?;
        restored.check().map_err(|e| format!("restored copy's invariants: {e}"))?;
        let (want, _) = expected(restored.applied().0 as i64);
        if restored.range(b"key-", &[0], RangeOptions::default()).map_err(|e| e.to_string())?.kvs.len() != want.len() {
            return Err("the restored copy is not the store it was taken from".into());
        }
    }
    Ok(())
}

/// The tests run one at a time: the first sets a process-wide failpoint.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const LOSSES: [Loss; 3] = [Loss::Everything, Loss::Prefix(3), Loss::Sectors(4)];

#[test]
fn acknowledged_commits_survive_power_loss_at_every_crash_point() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let max_points = std::env::var("MVCC_POWER_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mnt = tempfile::tempdir().unwrap();
    let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
    workload(&fs, 400);
    let journal = fs.unmount().unwrap();
    assert!(journal.marks().contains(&RESTORED));
    let report = journal.check_images(max_points, &LOSSES, check);
    eprintln!(
        "mvcc: {} journal operations, {} crash images checked, {} failed",
        report.operations,
        report.checked,
        report.failures.len()
    );
    report.assert_clean("mvcc");

    // The same on a deliberately broken build: commits acknowledged without the pager's fdatasync (failpoints are
    // process-wide, so this runs after the honest run, not beside it).
    let mnt = tempfile::tempdir().unwrap();
    let fs = CrashFs::mount_or_skip(mnt.path()).expect("mounted once already");
    mvcc::failpoints::SKIP_FDATASYNC.set("return").unwrap();
    workload(&fs, 200);
    mvcc::failpoints::SKIP_FDATASYNC.clear().unwrap();
    let journal = fs.unmount().unwrap();
    let report = journal.check_images(100, &LOSSES, check);
    eprintln!("mvcc without fdatasync: {} crash images checked, {} failed", report.checked, report.failures.len());
    assert!(!report.failures.is_empty(), "skipping every fdatasync went unnoticed in {} images", report.checked);
    eprintln!("  e.g. {}", report.failures[report.failures.len() / 2]);
}

#[test]
fn acknowledged_commits_survive_power_loss_with_the_sync_beside_the_writer() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let max_points = std::env::var("MVCC_POWER_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let mnt = tempfile::tempdir().unwrap();
    let Some(fs) = CrashFs::mount_or_skip(mnt.path()) else { return };
    workload_background(&fs, 400);
    let journal = fs.unmount().unwrap();
    let marks = journal.marks();
    // The syncer must have made commits durable while the workload ran, not only the last sync after it.
    let during = marks.iter().filter(|&&m| m > 0 && m < 400).collect::<std::collections::BTreeSet<_>>().len();
    assert!(during >= 3, "only {during} distinct applied indexes were made durable during the workload");
    let report = journal.check_images(max_points, &LOSSES, check);
    eprintln!(
        "mvcc, sync beside the writer: {} journal operations, {during} durable points, {} crash images checked, {} \
         failed",
        report.operations,
        report.checked,
        report.failures.len()
    );
    report.assert_clean("mvcc with the sync beside the writer");
}
