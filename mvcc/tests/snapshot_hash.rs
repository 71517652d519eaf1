//! Snapshots stream a consistent image while writes continue, restore verifies their checksum, and HashKV
//! agrees between stores with the same history (a restored copy, and a member mid-compaction).

use std::ops::Bound;

use mvcc::{Db, DbConfig, Error, PutOptions, RangeOptions, Store, StoreConfig};

#[test]
fn snapshot_while_writing_then_restore() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut w = db.write().unwrap();
    for i in 0..3000u32 {
        let v = if i % 50 == 0 { vec![7u8; 9000] } else { vec![i as u8; 64] };
        w.put(ks, format!("{i:06}").as_bytes(), &v).unwrap();
    }
    w.commit().unwrap();
    let expected: Vec<(Vec<u8>, Vec<u8>)> = {
        let r = db.read();
        r.range(ks, Bound::Unbounded, Bound::Unbounded)
            .unwrap()
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect()
    };
    // Writes go on in another thread while the snapshot streams.
    let mut image = Vec::new();
    std::thread::scope(|s| {
        let db2 = db.clone();
        let writer = s.spawn(move || {
            for round in 0..20u32 {
                let mut w = db2.write().unwrap();
                for i in 0..300u32 {
                    w.put(ks, format!("{i:06}").as_bytes(), &[round as u8 + 100; 80]).unwrap();
                }
                w.commit().unwrap();
            }
        });
        db.snapshot_to(&mut image).unwrap();
        writer.join().unwrap();
    });
    let restored =
        Db::restore_from(dir.path().join("copy"), &mut image.as_slice(), &["t"], DbConfig::default()).unwrap();
    restored.check().unwrap();
    let r = restored.read();
    let got: Vec<(Vec<u8>, Vec<u8>)> = r
        .range(ks, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    // The image is of one commit: the 300 keys the writer rewrites are all as before, or all from one round.
    let untouched = got[..300] == expected[..300];
    let round = got[0].1.clone();
    assert!(untouched || got[..300].iter().all(|(_, v)| *v == round && v.len() == 80), "the image mixes commits");
    assert_eq!(&got[300..], &expected[300..], "keys the writer never touched are as they were");
    // A damaged stream is refused before anything is written.
    let mut bad = image.clone();
    bad[100_000] ^= 1;
    let err = Db::restore_from(dir.path().join("bad"), &mut bad.as_slice(), &["t"], DbConfig::default()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(!dir.path().join("bad").exists());
    assert!(!dir.path().join("bad.restore.tmp").exists(), "the partial copy is removed");
    // A stream that arrives a few bytes at a time (as from a socket) restores the same image.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7 + self.0.len() % 5);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let trickled = Db::restore_from(dir.path().join("trickle"), &mut Trickle(&image), &["t"], DbConfig::default());
    drop(trickled.unwrap());
    assert_eq!(
        std::fs::read(dir.path().join("trickle")).unwrap(),
        image[..image.len() - 16],
        "the image, byte for byte"
    );
    let cut = &image[..image.len() - 100];
    assert!(matches!(
        Db::restore_from(dir.path().join("cut"), &mut &cut[..], &["t"], DbConfig::default()),
        Err(Error::Format { .. })
    ));
}

#[test]
fn hash_kv_agrees_across_copies_and_compaction_progress() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path().join("a"), &[], StoreConfig::default()).unwrap();
    for i in 0..200u32 {
        let mut w = a.write().unwrap();
        w.put(format!("k{}", i % 17).as_bytes(), &i.to_le_bytes(), 0, PutOptions::default()).unwrap();
        if i % 9 == 0 {
            w.delete_range(format!("k{}", (i + 3) % 17).as_bytes(), &[]).unwrap();
        }
        w.commit().unwrap();
    }
    let (h1, rev, _) = a.hash_kv(0).unwrap();
    let (h_old, _, _) = a.hash_kv(100).unwrap();
    assert_ne!(h1, h_old, "different revisions hash differently");
    // A copy made from a snapshot hashes the same.
    let mut image = Vec::new();
    a.db().snapshot_to(&mut image).unwrap();
    drop(Db::restore_from(dir.path().join("b"), &mut image.as_slice(), &[], DbConfig::default()).unwrap());
    let b = Store::open(dir.path().join("b"), &[], StoreConfig::default()).unwrap();
    assert_eq!(b.hash_kv(rev).unwrap().0, h1);
    assert_eq!(
        b.range(b"k", &[0], RangeOptions::default()).unwrap(),
        a.range(b"k", &[0], RangeOptions::default()).unwrap()
    );
    // Compaction on one member: hashes at the same compaction point agree, finished or not.
    a.compact(150).unwrap();
    b.compact(150).unwrap();
    assert_eq!(a.hash_kv(rev).unwrap(), b.hash_kv(rev).unwrap());
    assert!(matches!(a.hash_kv(120), Err(Error::Compacted)));
}

/// HashKV scans the whole history without holding the index lock: writers commit while it runs, and its hash is
/// the one of the revision it started at.
#[test]
fn hash_kv_does_not_hold_up_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("s"), &[], StoreConfig::default()).unwrap();
    for round in 0..20 {
        let mut w = s.write().unwrap();
        for i in 0..10_000u32 {
            w.put(format!("k/{round}/{i}").as_bytes(), &[7; 200], 0, PutOptions::default()).unwrap();
        }
        w.commit().unwrap();
    }
    let at = s.current_revision();
    let (expected, _, _) = s.hash_kv(at).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (hash, during) = std::thread::scope(|scope| {
        let hasher = scope.spawn(|| {
            let h = s.hash_kv(at).unwrap();
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            h
        });
        // Count the commits that finish while the hash is still running.
        let mut during = 0;
        let mut i = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let mut w = s.write().unwrap();
            w.put(format!("w/{i}").as_bytes(), b"x", 0, PutOptions::default()).unwrap();
            w.commit().unwrap();
            i += 1;
            if !done.load(std::sync::atomic::Ordering::SeqCst) {
                during += 1;
            }
        }
        (hasher.join().unwrap(), during)
    });
    assert_eq!(hash.0, expected, "the hash is the one of revision {at}, whatever was written meanwhile");
    assert!(during >= 2, "writers committed while HashKV scanned ({during} commits)");
}

/// A stream whose trailer checksum holds but whose pages do not open (the snapshot fuzz target made one: libFuzzer
/// finds the checksum through its compare tracing) leaves the store it was to replace as it was.
#[test]
fn an_image_that_does_not_open_replaces_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut w = db.write().unwrap();
    w.put(ks, b"k", b"v").unwrap();
    w.commit().unwrap();
    let mut image = Vec::new();
    db.snapshot_to(&mut image).unwrap();
    // Both meta pages wrecked, and the trailer's checksum made to match.
    let body = image.len() - 16;
    for b in &mut image[..8192] {
        *b = 0xA5;
    }
    let crc = crc32c::crc32c(&image[..body]);
    image[body + 8..body + 12].copy_from_slice(&crc.to_le_bytes());
    let target = dir.path().join("live");
    std::fs::write(&target, b"the store that was there").unwrap();
    let err = Db::restore_from(&target, &mut image.as_slice(), &["t"], DbConfig::default()).unwrap_err();
    println!("{err}");
    let now = std::fs::read(&target).unwrap();
    assert!(now == b"the store that was there", "the old file was replaced ({} bytes now)", now.len());
    assert!(!dir.path().join("live.restore.tmp").exists(), "the copy is removed");
}
