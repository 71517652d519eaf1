//! The sync beside the writer (`SyncPolicy::background`, `Db::sync_concurrent`): a writer commits while a sync's
//! fdatasync is under way, and syncs under and beside the writer lock interleave without losing a commit or
//! breaking an invariant. (Power loss during such syncs is in `power_loss.rs`.)

use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mvcc::{Db, DbConfig, KeyspaceId, SyncPolicy};

/// The tests run one at a time: the first sets a process-wide failpoint.
static SERIAL: Mutex<()> = Mutex::new(());

fn background() -> DbConfig {
    let sync = SyncPolicy { max_commits: u32::MAX, max_delay: Duration::from_millis(1), background: true };
    DbConfig { sync, ..DbConfig::default() }
}

fn put(db: &Db, ks: KeyspaceId, i: u64) {
    let mut w = db.write().unwrap();
    w.put(ks, format!("key-{:05}", i % 3000).as_bytes(), &i.to_be_bytes().repeat(20)).unwrap();
    w.set_applied(i, 1);
    w.commit().unwrap();
}

#[test]
fn a_writer_commits_while_a_concurrent_sync_waits_on_the_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, &["k"], background()).unwrap();
    let ks = db.keyspace("k").unwrap();
    for i in 1..=10 {
        put(&db, ks, i);
    }
    // The sync's first fdatasync takes three seconds.
    let fdatasync = &mvcc::failpoints::SKIP_FDATASYNC;
    fdatasync.set("1*sleep(3000)").unwrap();
    let synced = Arc::new(AtomicBool::new(false));
    let syncer = std::thread::spawn({
        let (db, synced) = (db.clone(), Arc::clone(&synced));
        move || {
            db.sync_concurrent().unwrap();
            synced.store(true, Ordering::Release);
        }
    });
    // The failpoint holds its lock through its sleep: a look at its status that does not come back within 200 ms
    // means the sync is inside that fdatasync (a look that comes back shows whether the sleep has begun yet).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the sync never reached its fdatasync");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(mvcc::failpoints::SKIP_FDATASYNC.status().map(|s| s.1)));
        match rx.recv_timeout(Duration::from_millis(200)) {
            Err(_) => break,
            Ok(Ok(0)) => std::thread::sleep(Duration::from_millis(1)),
            Ok(other) => panic!("the sync's sleep ended before the commit was tried: {other:?}"),
        }
    }
    // The sync is in its fdatasync now: a commit does not wait for it.
    let started = Instant::now();
    put(&db, ks, 11);
    let took = started.elapsed();
    assert!(!synced.load(Ordering::Acquire), "the commit waited for the sync to end");
    assert!(took < Duration::from_millis(1500), "the commit waited {took:?} for the sync's fdatasync");
    syncer.join().unwrap();
    fdatasync.clear().unwrap();
    // The sync made commit 10 durable, not 11, which came after it read the latest commit; the next one does.
    db.sync_concurrent().unwrap();
    drop(db);
    let db = Db::open(&path, &["k"], background()).unwrap();
    assert_eq!(db.read().snapshot().applied_index, 11);
    db.check().unwrap();
}

#[test]
fn syncs_under_and_beside_the_writer_lock_interleave_with_commits() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, &["k"], background()).unwrap();
    let ks = db.keyspace("k").unwrap();
    let done = AtomicBool::new(false);
    let durable = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Two concurrent syncers and one under the writer lock, while the writer commits and readers read.
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Acquire) {
                    let applied = db.read().snapshot().applied_index;
                    db.sync_if_due().unwrap();
                    durable.fetch_max(applied, Ordering::AcqRel);
                }
            });
        }
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                db.sync().unwrap();
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        s.spawn(|| {
            while !done.load(Ordering::Acquire) {
                let r = db.read();
                let n = r.count(ks);
                let seen = r.range(ks, Bound::Unbounded, Bound::Unbounded).unwrap().count() as u64;
                assert_eq!(seen, n, "a reader saw a torn commit");
            }
        });
        for i in 1..=3000 {
            put(&db, ks, i);
        }
        done.store(true, Ordering::Release);
    });
    assert!(durable.load(Ordering::Acquire) > 0, "the concurrent syncers made nothing durable");
    db.check().unwrap();
    let stats = db.stats();
    // Pages freed while syncs were in flight were reused once they were recorded: the file did not grow without
    // bound (3,000 keys of 160 bytes need about 150 pages).
    assert!(stats.page_count < 2000, "the file grew to {} pages", stats.page_count);
    db.sync_concurrent().unwrap();
    drop(db);
    let db = Db::open(&path, &["k"], background()).unwrap();
    assert_eq!(db.read().snapshot().applied_index, 3000);
    assert_eq!(db.read().count(ks), 3000);
    db.check().unwrap();
}
