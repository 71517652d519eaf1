//! Defragmentation always ends, within the bound its module header states, whatever the store and whatever
//! readers are pinned, and leaves every invariant true; with no reader pinning old pages it reaches its target
//! (the live size plus the slack).
//!
//! Random workloads on the store: puts and overwrites of small and overflow values, deletes, compactions at random
//! revisions, long-lived readers opened and closed in between, reopens; then a defragmentation, with the readers
//! still open, and another once they are closed.

use std::sync::atomic::AtomicBool;

use mvcc::{DefragConfig, DefragOutcome, DefragReport, PutOptions, RangeOptions, Store, StoreConfig};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Writes key `k` with a value of `len` bytes (over a quarter page, an overflow run).
    Put {
        k: u8,
        len: usize,
    },
    Delete {
        k: u8,
    },
    /// Compacts at this fraction of the way from the compaction point to the current revision.
    Compact {
        at: f64,
    },
    OpenReader,
    CloseReader {
        i: usize,
    },
    Reopen,
    Defrag,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (any::<u8>(), prop_oneof![3 => 1usize..900, 1 => 1100usize..20_000]).prop_map(|(k, len)| Op::Put { k, len }),
        3 => any::<u8>().prop_map(|k| Op::Delete { k }),
        1 => (0.0f64..1.0).prop_map(|at| Op::Compact { at }),
        1 => Just(Op::OpenReader),
        1 => any::<usize>().prop_map(|i| Op::CloseReader { i }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Defrag),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("key/{:03}/{}", k, "x".repeat(k as usize % 40)).into_bytes()
}

/// The module header's bound: passes, and steps per pass.
fn within_bound(r: &DefragReport, config: &DefragConfig, page: u64) {
    assert!(r.passes <= config.max_passes, "{r:?}");
    let pages = r.file_before / page + 1;
    let per_pass = pages.div_ceil(config.keys_per_step as u64);
    assert!(r.steps <= u64::from(config.max_passes) * per_pass, "{r:?}");
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut store = Store::open(&path, &[], StoreConfig::default()).unwrap();
    let page = 4096;
    let config = DefragConfig { keys_per_step: 8, ..DefragConfig::default() };
    let stop = AtomicBool::new(false);
    let mut readers = Vec::new();
    let defrag = |store: &Store, pinned: bool| {
        let r = store.db().defrag(config, &stop).unwrap();
        within_bound(&r, &config, page);
        store.check().unwrap();
        if !pinned {
            // The module header's target: reached without overflow runs; with them, above it by less than the
            // runs' pages.
            let layout = store.db().layout().unwrap();
            assert_eq!(layout.pending, 0, "{r:?} {layout:?}");
            assert_eq!(layout.page_count, layout.live() + layout.free, "{r:?} {layout:?}");
            let run_pages: u64 = layout.runs.iter().map(|r| r.1).sum();
            if run_pages == 0 {
                assert_eq!(r.outcome, DefragOutcome::Reached, "{r:?} {layout:?}");
            }
            if r.outcome != DefragOutcome::Reached {
                assert_ne!(r.outcome, DefragOutcome::Stopped);
                assert!(r.file_after < r.target + run_pages * page, "{r:?} {layout:?}");
            }
            assert!(r.file_after <= r.target || r.outcome != DefragOutcome::Reached, "{r:?}");
        }
    };
    for op in ops {
        match op {
            Op::Put { k, len } => {
                let mut w = store.write().unwrap();
                w.put(&key(k), &vec![k; len], 0, PutOptions::default()).unwrap();
                w.commit().unwrap();
            }
            Op::Delete { k } => {
                let mut w = store.write().unwrap();
                w.delete_range(&key(k), &[]).unwrap();
                w.commit().unwrap();
            }
            Op::Compact { at } => {
                let (lo, hi) = (store.compact_revision(), store.current_revision());
                let rev = lo + 1 + ((hi - lo - 1).max(0) as f64 * at) as i64;
                if rev > lo && rev <= hi {
                    store.compact(rev).unwrap();
                }
            }
            Op::OpenReader => readers.push(store.db().read()),
            Op::CloseReader { i } => {
                if !readers.is_empty() {
                    let n = readers.len();
                    readers.remove(i % n);
                }
            }
            Op::Reopen => {
                readers.clear();
                drop(store);
                store = Store::open(&path, &[], StoreConfig::default()).unwrap();
            }
            Op::Defrag => defrag(&store, !readers.is_empty()),
        }
    }
    let live = store.range(b"\0", &[0], RangeOptions::default()).unwrap();
    defrag(&store, !readers.is_empty());
    readers.clear();
    defrag(&store, false);
    assert_eq!(store.range(b"\0", &[0], RangeOptions::default()).unwrap().kvs, live.kvs, "defrag changed no data");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn defrag_ends_within_its_bound(ops in prop::collection::vec(op(), 1..300)) {
        run(ops);
    }
}

/// A stop request (the server's graceful stop) ends a defragmentation at its next step, leaving a valid store.
#[test]
fn a_stop_request_ends_it_at_the_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db"), &[], StoreConfig::default()).unwrap();
    let key = |i: u32| format!("k/{:08}", i.wrapping_mul(2_654_435_761)).into_bytes();
    let mut w = store.write().unwrap();
    for i in 0..40_000u32 {
        w.put(&key(i), &[1; 300], 0, PutOptions::default()).unwrap();
    }
    w.commit().unwrap();
    // Every other key goes: once compacted, half of every leaf is free space, scattered over the file.
    let mut w = store.write().unwrap();
    for i in (0..40_000u32).step_by(2) {
        w.delete_range(&key(i), &[]).unwrap();
    }
    w.commit().unwrap();
    // One more revision, so the compaction is past the deletions (the file keeps those at the point itself).
    let mut w = store.write().unwrap();
    w.put(b"last", b"", 0, PutOptions::default()).unwrap();
    w.commit().unwrap();
    store.compact(store.current_revision()).unwrap();
    let stop = AtomicBool::new(false);
    // A pause between steps makes the whole run take long (thousands of steps) and one step short.
    let config =
        DefragConfig { keys_per_step: 4, pause: std::time::Duration::from_millis(2), ..DefragConfig::default() };
    let started = std::time::Instant::now();
    let report = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        store.db().defrag(config, &stop).unwrap()
    });
    assert_eq!(report.outcome, DefragOutcome::Stopped, "{report:?}");
    assert!(report.steps > 0, "{report:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "it stopped at a step boundary: {report:?}");
    store.check().unwrap();
    let again = store.db().defrag(DefragConfig::default(), &AtomicBool::new(false)).unwrap();
    assert_eq!(again.outcome, DefragOutcome::Reached, "{again:?}");
}
