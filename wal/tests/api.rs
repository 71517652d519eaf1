//! The WAL's behaviour through its public API, with both engines.

mod common;

use std::sync::Arc;

use common::{ENGINES, append_range, block_on, payload, small};
use wal::{Config, Error, HardState, RaftIndex, Record, SnapshotMarker, Term, Wal};

#[test]
fn append_reopen_replay() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small(engine)).unwrap();
        append_range(&wal, 1, 500);
        let hs = HardState { term: Term(3), vote: 2, commit: RaftIndex(480) };
        wal.append(&[Record::HardState(hs), Record::Metadata(b"member-7")]).unwrap().wait().unwrap();
        assert_eq!(wal.last_index(), Some(RaftIndex(499)));
        drop(wal);

        let wal = Wal::open(dir.path(), small(engine)).unwrap();
        assert!(wal.recovery().segments > 1, "{engine:?}: 500 entries span several 64 KiB segments");
        assert_eq!(wal.recovery().torn_tail, None);
        let r = wal.replay(RaftIndex(1)).unwrap();
        assert_eq!(r.entries.len(), 499);
        for (k, e) in r.entries.iter().enumerate() {
            let i = k as u64 + 1;
            assert_eq!((e.index, e.term, &e.data), (RaftIndex(i), Term(1), &payload(i)));
        }
        assert_eq!(r.hard_state, Some(hs));
        assert_eq!(r.metadata.as_deref(), Some(&b"member-7"[..]));
        assert_eq!(wal.replay(RaftIndex(450)).unwrap().entries.len(), 50);
        // The log continues after reopening.
        append_range(&wal, 500, 510);
        assert_eq!(wal.replay(RaftIndex(1)).unwrap().entries.len(), 509);
    }
}

#[test]
fn create_and_open_refuse_the_wrong_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(Wal::open(dir.path(), Config::default()), Err(Error::BadDir { .. })));
    let wal = Wal::create(dir.path(), Config::default()).unwrap();
    assert!(matches!(Wal::open(dir.path(), Config::default()), Err(Error::Locked { .. })), "one process at a time");
    drop(wal);
    assert!(matches!(Wal::create(dir.path(), Config::default()), Err(Error::BadDir { .. })));
    assert!(Wal::open(dir.path(), Config::default()).is_ok());
}

#[test]
fn truncation_explicit_and_by_overwrite() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small(engine)).unwrap();
        append_range(&wal, 1, 21);
        wal.truncate(RaftIndex(15)).unwrap().wait().unwrap();
        assert_eq!(wal.last_index(), Some(RaftIndex(14)));
        // A leader overwrites 12.. with entries of a newer term.
        let done = wal
            .append(&[
                Record::Entry { index: RaftIndex(12), term: Term(2), data: b"x" },
                Record::Entry { index: RaftIndex(13), term: Term(2), data: b"y" },
            ])
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(done.last_index, Some(RaftIndex(13)));
        let gap = wal.append(&[Record::Entry { index: RaftIndex(15), term: Term(2), data: b"" }]);
        assert!(matches!(gap, Err(Error::NonContiguous { expected: RaftIndex(14), got: RaftIndex(15) })));
        assert!(matches!(wal.truncate(RaftIndex(30)), Err(Error::BadTruncate { .. })));
        drop(wal);
        let wal = Wal::open(dir.path(), small(engine)).unwrap();
        let r = wal.replay(RaftIndex(10)).unwrap();
        let got: Vec<(u64, u64)> = r.entries.iter().map(|e| (e.index.0, e.term.0)).collect();
        assert_eq!(got, vec![(10, 1), (11, 1), (12, 2), (13, 2)]);
    }
}

#[test]
fn snapshot_marker_release_and_restated_state() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small(engine)).unwrap();
        wal.append(&[Record::Metadata(b"cluster-1")]).unwrap().wait().unwrap();
        append_range(&wal, 1, 3000);
        let snap = SnapshotMarker { index: RaftIndex(2500), term: Term(1) };
        wal.append(&[Record::Snapshot(snap)]).unwrap().wait().unwrap();
        // Which segments may go: those whose successor starts at or below 2500.
        let firsts: Vec<u64> = {
            let scan = wal::reader::scan(dir.path(), |_| {}).unwrap();
            scan.segments.iter().map(|s| s.header.first_index.0).collect()
        };
        let expect = firsts.windows(2).take_while(|w| w[1] <= 2500).count();
        assert!(expect >= 5, "{engine:?}: the test needs several segments to release: {firsts:?}");
        assert_eq!(wal.release_to(RaftIndex(2500)).unwrap(), expect);
        assert_eq!(wal.release_to(RaftIndex(2500)).unwrap(), 0, "idempotent");
        drop(wal);
        let wal = Wal::open(dir.path(), small(engine)).unwrap();
        assert_eq!(wal.recovery().segments, firsts.len() - expect);
        let r = wal.replay(RaftIndex(0)).unwrap();
        assert_eq!(r.entries.first().map(|e| e.index.0), Some(firsts[expect]), "older entries are gone");
        assert_eq!(r.entries.last().map(|e| e.index), Some(RaftIndex(2999)));
        assert_eq!(r.snapshot, Some(snap));
        assert_eq!(r.metadata.as_deref(), Some(&b"cluster-1"[..]), "metadata survives release: restated per segment");
        // A snapshot ahead of the log (a follower catching up) restarts it.
        let ahead = SnapshotMarker { index: RaftIndex(5000), term: Term(2) };
        wal.append(&[Record::Snapshot(ahead)]).unwrap().wait().unwrap();
        append_range(&wal, 5001, 5003);
        let r = wal.replay(RaftIndex(0)).unwrap();
        let idx: Vec<u64> = r.entries.iter().map(|e| e.index.0).collect();
        assert_eq!(idx, vec![5001, 5002]);
    }
}

/// Runs `append(t, k)` for `k` in `0..per_thread` on each of `threads` threads at once.
fn from_threads(threads: u64, per_thread: u64, append: impl Fn(u64, u64) + Sync) {
    std::thread::scope(|s| {
        for t in 0..threads {
            let append = &append;
            s.spawn(move || (0..per_thread).for_each(|k| append(t, k)));
        }
    });
}

/// The distinct metadata records of the closed log in `dir`, and how many segments hold it.
fn metadata_in(dir: &std::path::Path) -> (std::collections::HashSet<Vec<u8>>, usize) {
    let mut seen = std::collections::HashSet::new();
    let scan = wal::reader::scan(dir, |r| {
        if let wal::record::Decoded::Metadata(m) = r {
            seen.insert(m.clone());
        }
    })
    .unwrap();
    (seen, scan.segments.len())
}

#[test]
fn many_threads_are_batched_and_every_append_survives() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::create(dir.path(), small(engine)).unwrap());
        let (threads, per_thread) = (32, 200);
        from_threads(threads, per_thread, |t, k| {
            let data = format!("t{t}-k{k}");
            wal.append(&[Record::Metadata(data.as_bytes())]).unwrap().wait().unwrap();
        });
        let m = wal.metrics();
        let appends = m.appends.load(std::sync::atomic::Ordering::Relaxed);
        let batches = m.batches.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(appends, threads * per_thread);
        assert!(batches < appends, "{engine:?}: {appends} appends in {batches} batches: some were grouped");
        assert_eq!(m.fsync.snapshot().count, batches, "one fdatasync per batch");
        drop(wal);
        // Every append is in the log exactly once.
        let (seen, segments) = metadata_in(dir.path());
        assert!(segments > 1);
        assert_eq!(seen.len() as u64, threads * per_thread);
    }
}

#[test]
fn completions_can_be_awaited() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small(engine)).unwrap();
        let result = block_on(async {
            let a = wal.append(&[Record::Entry { index: RaftIndex(1), term: Term(1), data: b"a" }]).unwrap();
            let b = wal.append(&[Record::Entry { index: RaftIndex(2), term: Term(1), data: b"b" }]).unwrap();
            (a.await.unwrap(), b.await.unwrap())
        });
        assert_eq!(result.1.last_index, Some(RaftIndex(2)));
    }
}

#[test]
fn oversized_records_are_refused_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::create(dir.path(), small(wal::EngineKind::Sync)).unwrap();
    let big = vec![7u8; 17 << 10];
    let e = wal.append(&[Record::Metadata(&big)]).unwrap_err();
    assert!(matches!(e, Error::RecordTooLarge { len, max } if len == big.len() && max == 16 << 10), "{e}");
    // Nothing was queued: the log still takes appends and holds only them.
    append_range(&wal, 1, 3);
    assert_eq!(wal.replay(RaftIndex(1)).unwrap().entries.len(), 2);
    // A record bigger than a batch buffer but within the limit goes through.
    let large = vec![9u8; 15 << 10];
    wal.append(&[Record::Metadata(&large)]).unwrap().wait().unwrap();
    assert_eq!(wal.replay(RaftIndex(1)).unwrap().metadata.map(|m| m.len()), Some(large.len()));
}

#[test]
fn fsync_delay_failpoint_delays_every_batch() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small(engine)).unwrap();
        append_range(&wal, 1, 3);
        wal.set_fsync_delay(std::time::Duration::from_millis(40));
        let t = std::time::Instant::now();
        append_range(&wal, 3, 6);
        assert!(t.elapsed() >= std::time::Duration::from_millis(120), "{engine:?}: three batches, each delayed 40 ms");
        let slow = wal.metrics().fsync.snapshot();
        wal.set_fsync_delay(std::time::Duration::ZERO);
        append_range(&wal, 6, 7);
        assert_eq!(wal.metrics().fsync.snapshot().count, slow.count + 1);
    }
}

/// A lone appender that waits for durability writes its batches on its own thread (no hand-off to the I/O
/// thread and back), and what it writes is the same log: replayed in full, across segment changes.
#[test]
fn append_durable_writes_on_the_appenders_thread_when_the_io_thread_is_idle() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), small(engine)).unwrap();
        // One plain append first, then time for the I/O thread to go idle: until it has, it takes what comes.
        append_range(&wal, 1, 2);
        std::thread::sleep(std::time::Duration::from_millis(100));
        let m = wal.metrics();
        let before = m.batches.load(std::sync::atomic::Ordering::Relaxed);
        for i in 2..400u64 {
            let data = payload(i);
            let done = wal.append_durable(&[Record::Entry { index: RaftIndex(i), term: Term(1), data: &data }]);
            assert_eq!(done.unwrap().last_index, Some(RaftIndex(i)));
        }
        let batches = m.batches.load(std::sync::atomic::Ordering::Relaxed) - before;
        let here = m.appender_batches.load(std::sync::atomic::Ordering::Relaxed);
        assert!((398..=404).contains(&batches), "{engine:?}: one batch per append (two at a segment change)");
        assert_eq!(here, batches, "{engine:?}: every batch written on the appender's thread");
        // The I/O thread takes over again for plain appends.
        append_range(&wal, 400, 410);
        assert_eq!(m.appender_batches.load(std::sync::atomic::Ordering::Relaxed), here, "{engine:?}");
        wal.close().unwrap();
        let wal = Wal::open(dir.path(), small(engine)).unwrap();
        assert!(wal.recovery().segments > 1, "{engine:?}: the appender's thread also started segments");
        let r = wal.replay(RaftIndex(1)).unwrap();
        assert_eq!(r.entries.len(), 409, "{engine:?}");
        for e in &r.entries {
            assert_eq!(e.data, payload(e.index.0), "{engine:?}");
        }
    }
}

/// Appenders writing on their own threads and appenders handing off to the I/O thread, at once: every append is
/// durable (a new segment restates the latest metadata, so a record may be seen twice), the I/O moves between them
/// without a lost wake-up (a lost one would hang this test), and closing still stops the I/O thread.
#[test]
fn durable_and_handed_off_appends_mix_without_loss_or_hang() {
    for engine in ENGINES {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::create(dir.path(), small(engine)).unwrap());
        let (threads, per_thread) = (16, 150);
        from_threads(threads, per_thread, |t, k| {
            let data = format!("t{t}-k{k}-{}", "x".repeat(40));
            let record = [Record::Metadata(data.as_bytes())];
            if (t + k) % 2 == 0 {
                wal.append_durable(&record).unwrap();
            } else {
                wal.append(&record).unwrap().wait().unwrap();
            }
        });
        let m = wal.metrics();
        assert_eq!(m.appends.load(std::sync::atomic::Ordering::Relaxed), threads * per_thread);
        Arc::try_unwrap(wal).unwrap().close().unwrap();
        let (seen, segments) = metadata_in(dir.path());
        assert!(segments > 1);
        assert_eq!(seen.len() as u64, threads * per_thread, "{engine:?}");
    }
}
