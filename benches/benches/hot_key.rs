//! Criterion: a key with 1,000,000 uncompacted revisions costs what a fresh key costs, for a put, a range and a
//! watch event (the key written, then a watcher's catch-up read of that change with its previous value).
//!
//! One store holds both: the hot key `hot`, written 1,000,000 times, and 100,000 cold keys written once each
//! (the "fresh" side rotates over them, so each still has a handful of revisions at the end). Puts are measured
//! 100 to a commit (`put_x100`), as the server applies a run of writes. Commits are not synced (`nosync` in the
//! names): the disk's flush would hide the CPU cost this bench is about. Set
//! `HOT_KEY_REVISIONS` for a smaller history (default 1,000,000).

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mvcc::{DbConfig, PutOptions, RangeOptions, Store, StoreConfig, SyncPolicy};

const COLD_KEYS: u64 = 100_000;

fn cold(i: u64) -> Vec<u8> {
    format!("cold/{:08}", i % COLD_KEYS).into_bytes()
}

/// 100 puts in one store transaction, each its own revision, one commit: as the server applies a run of writes,
/// and with the commit's page writes shared, so that the put's own cost shows.
fn put_hundred(store: &Store, key: impl Fn(u64) -> Vec<u8>, value: &[u8]) {
    let mut w = store.write().expect("write txn");
    for i in 0..100 {
        w.put(&key(i), value, 0, PutOptions::default()).expect("put");
        w.end_revision();
    }
    w.commit().expect("commit");
}

fn put_one(store: &Store, key: &[u8], value: &[u8]) {
    let mut w = store.write().expect("write txn");
    w.put(key, value, 0, PutOptions::default()).expect("put");
    w.commit().expect("commit");
}

fn hot_key(c: &mut Criterion) {
    let revisions: u64 = std::env::var("HOT_KEY_REVISIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = benches::scratch();
    let config = StoreConfig {
        db: DbConfig {
            sync: SyncPolicy { max_commits: u32::MAX, max_delay: Duration::from_secs(3600), background: false },
            ..DbConfig::default()
        },
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path().join("db"), &[], config).expect("open store");
    let value = benches::value(256, 7);
    // The history: the hot key's revisions interleaved with the cold keys' first writes, 10,000 per commit.
    let mut w = store.write().expect("write txn");
    let mut cold_written = 0;
    for i in 0..revisions {
        w.put(b"hot", &value, 0, PutOptions::default()).expect("put");
        w.end_revision();
        if cold_written < COLD_KEYS && i % (revisions / COLD_KEYS).max(1) == 0 {
            w.put(&cold(cold_written), &value, 0, PutOptions::default()).expect("put");
            w.end_revision();
            cold_written += 1;
        }
        if i % 10_000 == 9_999 {
            w.commit().expect("commit");
            w = store.write().expect("write txn");
        }
    }
    w.commit().expect("commit");
    store.db().sync().expect("sync");

    let mut g = c.benchmark_group("hot_key");
    g.sample_size(30).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let label = format!("{}k_revisions", revisions / 1000);
    g.bench_function(format!("put_x100/nosync/{label}"), |b| {
        b.iter(|| put_hundred(&store, |_| b"hot".to_vec(), &value))
    });
    let mut i = 0;
    g.bench_function("put_x100/nosync/fresh_key", |b| {
        b.iter(|| {
            i += 100;
            put_hundred(&store, |j| cold(i + j), &value)
        })
    });
    let read = |key: &[u8]| {
        let r = store.range(key, &[], RangeOptions::default()).expect("range");
        assert_eq!(r.kvs.len(), 1);
    };
    g.bench_function(format!("range/{label}"), |b| b.iter(|| read(b"hot")));
    g.bench_function("range/fresh_key", |b| {
        b.iter(|| {
            i += 1;
            read(&cold(i))
        })
    });
    // A watch event: the key is written, then a watcher catches up on that change (with its previous value).
    let event = |key: &[u8]| {
        put_one(&store, key, &value);
        let at = store.current_revision();
        let h = store.history(at, key, &[], true, mvcc::HistoryLimit::ALL).expect("history");
        assert_eq!(h.changes.len(), 1);
    };
    g.bench_function(format!("put_and_watch_event/nosync/{label}"), |b| b.iter(|| event(b"hot")));
    g.bench_function("put_and_watch_event/nosync/fresh_key", |b| {
        b.iter(|| {
            i += 1;
            event(&cold(i))
        })
    });
    g.finish();
}

criterion_group!(benches, hot_key);
criterion_main!(benches);
