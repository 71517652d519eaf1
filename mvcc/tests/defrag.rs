//! Online defragmentation under load: a store is grown, half its data deleted (so free pages are scattered),
//! then defragmented while a writer and readers keep working. The file must end within 10% of its live size,
//! every value must still read back, and every invariant must hold. `MVCC_DEFRAG_MB` sets the size grown to
//! (default 24; the 200 MB run with the writer's stalls is `benches/src/bin/mvcc_defrag.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mvcc::{Db, DbConfig, DefragConfig};

fn value(i: u64, round: u64) -> Vec<u8> {
    let len = match i % 10 {
        0 => 3000, // overflow values too
        _ => 200 + (i % 300) as usize,
    };
    vec![(i ^ round) as u8; len]
}

#[test]
fn defrag_shrinks_the_file_while_reads_and_writes_go_on() {
    let mb: u64 = std::env::var("MVCC_DEFRAG_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut model = BTreeMap::new();
    let mut i = 0u64;
    while db.stats().file_size < mb << 20 {
        let mut w = db.write().unwrap();
        for _ in 0..2000 {
            let k = format!("{:010}", i * 7919 % 10_000_019).into_bytes();
            let v = value(i, 0);
            w.put(ks, &k, &v).unwrap();
            model.insert(k, v);
            i += 1;
        }
        w.commit().unwrap();
    }
    // Delete the lower half of the key space: its leaves vanish, and the survivors stay wherever they were
    // written, scattered over the whole file.
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    let half = keys.len() / 2;
    for chunk in keys[..half].chunks(5000) {
        let mut w = db.write().unwrap();
        for k in chunk {
            w.delete(ks, k).unwrap();
            model.remove(k);
        }
        w.commit().unwrap();
    }
    let before = db.stats();
    assert!(before.free_pages * 2 >= before.page_count * 8 / 10, "about half the pages are free: {before:?}");
    assert!(db.read().count(ks) > 0);

    let stop = Arc::new(AtomicBool::new(false));
    let model = Arc::new(Mutex::new(model));
    let reads = Arc::new(AtomicU64::new(0));
    let longest_commit_us = Arc::new(AtomicU64::new(0));
    let report = std::thread::scope(|s| {
        // A writer overwriting and adding keys throughout.
        let writer = {
            let (db, stop, model, longest) =
                (db.clone(), Arc::clone(&stop), Arc::clone(&model), Arc::clone(&longest_commit_us));
            s.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // The writer's stall: from asking for the write transaction to its durable commit.
                    let started = std::time::Instant::now();
                    let mut w = db.write().unwrap();
                    let mut m = model.lock().unwrap();
                    for _ in 0..50 {
                        let k = format!("w{:08}", n % 5000).into_bytes();
                        let v = value(n, 1);
                        w.put(ks, &k, &v).unwrap();
                        m.insert(k, v);
                        n += 1;
                    }
                    w.commit().unwrap();
                    longest.fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
            })
        };
        // Readers checking values against a snapshot of the model taken with the same commit visible.
        for t in 0..2u64 {
            let (db, stop, reads) = (db.clone(), Arc::clone(&stop), Arc::clone(&reads));
            let sample: Vec<(Vec<u8>, Vec<u8>)> = model
                .lock()
                .unwrap()
                .iter()
                .filter(|(k, _)| k[0] != b'w')
                .step_by(97)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            s.spawn(move || {
                let mut j = t as usize;
                while !stop.load(Ordering::Relaxed) {
                    let r = db.read();
                    let (k, v) = &sample[j % sample.len()];
                    assert_eq!(r.get(ks, k).unwrap(), Some(v.as_slice()), "a reader sees every value during defrag");
                    reads.fetch_add(1, Ordering::Relaxed);
                    j += 7;
                }
            });
        }
        let report = db.defrag(DefragConfig::default(), &AtomicBool::new(false)).unwrap();
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        report
    });
    // Readers have ended: a last pass gives back what they were holding.
    let report2 = db.defrag(DefragConfig::default(), &AtomicBool::new(false)).unwrap();
    let after = db.stats();
    eprintln!(
        "defrag {mb} MiB: {before:?} -> {after:?}; {report:?}; then {report2:?}; {} reads; writer's longest commit {} ms",
        reads.load(Ordering::Relaxed),
        longest_commit_us.load(Ordering::Relaxed) as f64 / 1e3
    );
    assert!(
        after.file_size < before.file_size * 7 / 10,
        "the file shrank: {} -> {}",
        before.file_size,
        after.file_size
    );
    assert!(
        after.file_size as f64 <= after.in_use as f64 * 1.10,
        "file {} within 10% of live size {}",
        after.file_size,
        after.in_use
    );
    db.check().unwrap();
    let r = db.read();
    for (k, v) in model.lock().unwrap().iter() {
        assert_eq!(r.get(ks, k).unwrap(), Some(v.as_slice()));
    }
    drop(r);
    // And it all survives a reopen.
    let path = dir.path().join("db");
    drop(db);
    let db = Db::open(&path, &["t"], DbConfig::default()).unwrap();
    db.check().unwrap();
    assert_eq!(db.read().count(ks), model.lock().unwrap().len() as u64);
}
