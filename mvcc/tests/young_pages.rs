//! Pages written and freed between two syncs are reused at once (allocator invariant 4), and never while a
//! snapshot that reaches them is protected: a reader's, or the meta a sync beside the writer is writing.
//! (Power loss with such reuse under way is in `power_loss.rs`.)

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mvcc::{Db, DbConfig, KeyspaceId, SyncPolicy};

/// The tests run one at a time: one sets a process-wide failpoint.
static SERIAL: Mutex<()> = Mutex::new(());

/// Commits sync only when asked to (as under the server's backend-sync thread, here never due on its own).
fn background() -> DbConfig {
    let sync = SyncPolicy { max_commits: u32::MAX, max_delay: Duration::from_secs(3600), background: true };
    DbConfig { sync, ..DbConfig::default() }
}

fn hot(i: u64) -> Vec<u8> {
    format!("hot value {i:08}").into_bytes()
}

/// A value in an overflow run of two pages.
fn big(i: u64) -> Vec<u8> {
    i.to_be_bytes().repeat(700)
}

/// One commit: the hot key, and every fifth commit the big value, with `i` as the applied index.
fn commit(db: &Db, ks: KeyspaceId, i: u64) {
    let mut w = db.write().unwrap();
    w.put(ks, b"k-01000", &hot(i)).unwrap();
    if i % 5 == 0 {
        w.put(ks, b"big", &big(i)).unwrap();
    }
    w.set_applied(i, 1);
    w.commit().unwrap();
}

/// 2,000 keys, durable.
fn filled(path: &std::path::Path) -> (Db, KeyspaceId) {
    let db = Db::open(path, &["t"], background()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut w = db.write().unwrap();
    for k in 0..2000 {
        w.put(ks, format!("k-{k:05}").as_bytes(), &[7u8; 100]).unwrap();
    }
    w.put(ks, b"big", &big(0)).unwrap();
    w.commit().unwrap();
    db.sync().unwrap();
    (db, ks)
}

#[test]
fn pages_rewritten_between_syncs_are_reused_but_not_under_a_reader() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (db, ks) = filled(&path);
    let before = db.stats().page_count;
    let mut reader = None;
    for i in 1..=1000 {
        commit(&db, ks, i);
        if i == 500 {
            reader = Some(db.read());
        }
    }
    let grown = db.stats().page_count - before;
    eprintln!("1,000 commits of a hot key (and 200 of a 2-page value) without a sync grew the file {grown} pages");
    // Each commit rewrites the hot key's leaf and the branch above it (and a run of two pages every fifth): kept
    // until the next sync, they would take about 2,400 pages. Reused, the file grows by what the reader pins and
    // a few pages of slack.
    assert!(grown <= 40, "the file grew {grown} pages over 1,000 commits between two syncs");
    let reader = reader.unwrap();
    assert_eq!(reader.get(ks, b"k-01000").unwrap(), Some(hot(500).as_slice()), "the reader's leaf was reused");
    assert_eq!(reader.get(ks, b"big").unwrap(), Some(big(500).as_slice()), "the reader's value run was reused");
    db.check().unwrap();
    drop(reader);
    db.sync().unwrap();
    drop(db);
    let db = Db::open(&path, &["t"], background()).unwrap();
    assert_eq!(db.read().get(ks, b"k-01000").unwrap(), Some(hot(1000).as_slice()));
    db.check().unwrap();
}

#[test]
fn a_meta_being_synced_keeps_its_pages() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (db, ks) = filled(&path);
    for i in 1..=50 {
        commit(&db, ks, i);
    }
    // A sync beside the writer whose fdatasyncs take 300 ms each; the writer goes on meanwhile.
    mvcc::failpoints::SKIP_FDATASYNC.set("sleep(300)").unwrap();
    let synced = AtomicBool::new(false);
    let mut i = 50;
    std::thread::scope(|s| {
        s.spawn(|| {
            db.sync_concurrent().unwrap();
            synced.store(true, Ordering::Release);
        });
        std::thread::sleep(Duration::from_millis(50));
        while !synced.load(Ordering::Acquire) {
            i += 1;
            commit(&db, ks, i);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    mvcc::failpoints::SKIP_FDATASYNC.clear().unwrap();
    assert!(i > 100, "only {} commits ran during the sync", i - 50);
    // The file as a crash right now could leave it: every write on disk, the synced meta the newest. Its commit's
    // pages must hold what that commit wrote, although the commits after it rewrote the same keys.
    let image = dir.path().join("image");
    std::fs::copy(&path, &image).unwrap();
    let copy = Db::open(&image, &["t"], background()).unwrap();
    let at = copy.read().snapshot().applied_index;
    assert!((50..i).contains(&at), "the synced meta is commit {at}, of 50..{i}");
    let r = copy.read();
    assert_eq!(r.get(ks, b"k-01000").unwrap(), Some(hot(at).as_slice()), "commit {at}'s leaf was reused");
    assert_eq!(r.get(ks, b"big").unwrap(), Some(big(at / 5 * 5).as_slice()), "commit {at}'s run was reused");
    drop(r);
    copy.check().unwrap();
    db.check().unwrap();
}
