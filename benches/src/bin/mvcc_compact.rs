//! Compaction and defragmentation of 1M revisions, timed, with the worst stall a concurrent writer sees.
//!
//! `cargo run --release -p benches --bin mvcc_compact -- [REVISIONS]` (default 1,000,000; `FERROKV_BENCH_DIR`).
//!
//! 10,000 keys are each updated REVISIONS/10,000 times (values 200 bytes, 1,000 revisions per commit). Then, while
//! a writer keeps putting one key per durable commit and timing each, the store is compacted to 1,000 revisions
//! before the head, and then defragmented. Reported: each phase's time, the file and live sizes, and the writer's
//! longest commit (from asking for the write transaction to its durable commit) in each phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mvcc::{DefragConfig, PutOptions, Store, StoreConfig};

fn with_writer<T>(store: &Store, phase: impl FnOnce() -> T) -> (T, Duration, u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let longest = Arc::new(AtomicU64::new(0));
    let commits = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        let (stop2, longest2, commits2) = (Arc::clone(&stop), Arc::clone(&longest), Arc::clone(&commits));
        s.spawn(move || {
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let t = Instant::now();
                let mut w = store.write().expect("write");
                w.put(format!("live-{}", n % 100).as_bytes(), &n.to_le_bytes(), 0, PutOptions::default()).expect("put");
                w.commit().expect("commit");
                longest2.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                commits2.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        });
        let t = Instant::now();
        let out = phase();
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        (out, took, commits.load(Ordering::Relaxed), Duration::from_micros(longest.load(Ordering::Relaxed)))
    })
}

fn main() {
    let revisions: u64 = std::env::args().nth(1).map(|r| r.parse().expect("REVISIONS")).unwrap_or(1_000_000);
    let dir = benches::scratch();
    let store = Store::open(dir.path().join("store"), &[], StoreConfig::default()).expect("open");
    let value = benches::value(200, 3);
    let t = Instant::now();
    let mut written = 0u64;
    while written < revisions {
        let mut w = store.write().expect("write");
        for _ in 0..1000 {
            w.put(format!("key-{:05}", written % 10_000).as_bytes(), &value, 0, PutOptions::default()).expect("put");
            w.end_revision();
            written += 1;
        }
        w.commit().expect("commit");
    }
    let mb = |b: u64| b as f64 / 1e6;
    let s0 = store.db().stats();
    println!(
        "loaded {revisions} revisions in {:.1} s: file {:.0} MB, live {:.0} MB",
        t.elapsed().as_secs_f64(),
        mb(s0.file_size),
        mb(s0.in_use)
    );

    let at = store.current_revision() - 1000;
    let (res, took, commits, stall) = with_writer(&store, || store.compact(at));
    res.expect("compact");
    let s1 = store.db().stats();
    println!(
        "compaction to {at}: {:.1} s; file {:.0} MB, live {:.0} MB; writer: {commits} commits, longest {:.1} ms",
        took.as_secs_f64(),
        mb(s1.file_size),
        mb(s1.in_use),
        stall.as_secs_f64() * 1e3
    );
    let (res, took, commits, stall) =
        with_writer(&store, || store.db().defrag(DefragConfig::default(), &std::sync::atomic::AtomicBool::new(false)));
    let report = res.expect("defrag");
    let s2 = store.db().stats();
    println!(
        "defragmentation: {:.1} s, {} steps (longest {:.1} ms); file {:.0} -> {:.0} MB, live {:.0} MB; writer: {commits} commits, longest {:.1} ms",
        took.as_secs_f64(),
        report.steps,
        report.longest_step.as_secs_f64() * 1e3,
        mb(report.file_before),
        mb(s2.file_size),
        mb(s2.in_use),
        stall.as_secs_f64() * 1e3
    );
    store.check().expect("invariants hold after compaction and defragmentation");
    println!("check: ok");
}
