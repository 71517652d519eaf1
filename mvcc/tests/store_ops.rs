//! etcd semantics the model test does not reach: every compare target, Put's ignore_value / ignore_lease, range
//! options, a compaction interrupted by a crash resuming at open, and what a DeleteRange returns with and without
//! `prev_kv`.

use mvcc::{
    Compare, CompareOp, CompareTarget, Error, PutOptions, RangeOptions, Revision, Store, StoreConfig, TxnRequest,
};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path().join("s"), &[], StoreConfig::default()).unwrap();
    (dir, s)
}

fn put(s: &Store, k: &str, v: &str, lease: i64) -> i64 {
    let mut w = s.write().unwrap();
    w.put(k.as_bytes(), v.as_bytes(), lease, PutOptions::default()).unwrap();
    w.commit().unwrap()
}

fn holds(s: &Store, key: &str, op: CompareOp, target: CompareTarget) -> bool {
    let mut w = s.write().unwrap();
    w.compare(&Compare { key: key.as_bytes().to_vec(), range_end: vec![], op, target }).unwrap()
}

#[test]
fn first_write_is_revision_two_as_in_etcd() {
    let (_d, s) = store();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(put(&s, "foo", "bar", 0), 2);
    let kv = &s.range(b"foo", &[], RangeOptions::default()).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
}

#[test]
fn every_compare_target() {
    let (_d, s) = store();
    put(&s, "a", "one", 7); // rev 2
    put(&s, "a", "two", 7); // rev 3
    assert!(holds(&s, "a", CompareOp::Equal, CompareTarget::Value(b"two".to_vec())));
    assert!(holds(&s, "a", CompareOp::Greater, CompareTarget::Value(b"one".to_vec())));
    assert!(holds(&s, "a", CompareOp::Equal, CompareTarget::Version(2)));
    assert!(holds(&s, "a", CompareOp::Equal, CompareTarget::CreateRevision(2)));
    assert!(holds(&s, "a", CompareOp::Equal, CompareTarget::ModRevision(3)));
    assert!(holds(&s, "a", CompareOp::Less, CompareTarget::ModRevision(4)));
    assert!(holds(&s, "a", CompareOp::Equal, CompareTarget::Lease(7)));
    assert!(holds(&s, "a", CompareOp::NotEqual, CompareTarget::Lease(8)));
    // A missing key: version, revisions and lease compare as 0; a value compare is false.
    assert!(holds(&s, "nope", CompareOp::Equal, CompareTarget::Version(0)));
    assert!(holds(&s, "nope", CompareOp::Equal, CompareTarget::CreateRevision(0)));
    assert!(!holds(&s, "nope", CompareOp::Equal, CompareTarget::Value(vec![])));
    assert!(!holds(&s, "nope", CompareOp::NotEqual, CompareTarget::Value(b"x".to_vec())));
    // A range compare holds only if it holds for every key in the range.
    put(&s, "b", "zzz", 0);
    let mut w = s.write().unwrap();
    let all = |op, t| Compare { key: b"a".to_vec(), range_end: b"c".to_vec(), op, target: t };
    assert!(w.compare(&all(CompareOp::Greater, CompareTarget::Value(b"a".to_vec()))).unwrap());
    assert!(!w.compare(&all(CompareOp::Equal, CompareTarget::Lease(7))).unwrap());
    let r = w
        .txn(&TxnRequest { compare: vec![all(CompareOp::Equal, CompareTarget::Lease(7))], ..Default::default() })
        .unwrap();
    assert!(!r.succeeded);
}

#[test]
fn ignore_value_and_ignore_lease() {
    let (_d, s) = store();
    let mut w = s.write().unwrap();
    let e = w.put(b"k", b"", 0, PutOptions { ignore_value: true, ..PutOptions::default() }).unwrap_err();
    assert!(matches!(e, Error::KeyNotFound));
    let e = w.put(b"k", b"v", 0, PutOptions { ignore_lease: true, ..PutOptions::default() }).unwrap_err();
    assert!(matches!(e, Error::KeyNotFound));
    drop(w);
    put(&s, "k", "v1", 5);
    let mut w = s.write().unwrap();
    w.put(b"k", b"ignored", 9, PutOptions { ignore_value: true, ..PutOptions::default() }).unwrap();
    w.commit().unwrap();
    let kv = s.range(b"k", &[], RangeOptions::default()).unwrap().kvs.remove(0);
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v1"[..], 9, 2));
    let mut w = s.write().unwrap();
    w.put(b"k", b"v3", 0, PutOptions { ignore_lease: true, ..PutOptions::default() }).unwrap();
    w.commit().unwrap();
    let kv = s.range(b"k", &[], RangeOptions::default()).unwrap().kvs.remove(0);
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"v3"[..], 9));
}

#[test]
fn range_options_and_etcd_key_ranges() {
    let (_d, s) = store();
    for k in ["a", "b", "c", "d"] {
        put(&s, k, k, 0);
    }
    let all = s.range(b"\0", &[0], RangeOptions::default()).unwrap();
    assert_eq!(all.count, 4, "key \\0 with range_end \\0 is every key");
    let from_b = s.range(b"b", &[0], RangeOptions { limit: 2, ..RangeOptions::default() }).unwrap();
    assert_eq!((from_b.count, from_b.kvs.len()), (3, 2), "count ignores the limit");
    let keys = s.range(b"a", b"c", RangeOptions { keys_only: true, ..RangeOptions::default() }).unwrap();
    assert!(keys.kvs.iter().all(|kv| kv.value.is_empty()) && keys.kvs.len() == 2);
    let count = s.range(b"a", b"z", RangeOptions { count_only: true, ..RangeOptions::default() }).unwrap();
    assert!(count.kvs.is_empty() && count.count == 4);
    assert!(s.range(b"c", b"a", RangeOptions::default()).unwrap().kvs.is_empty(), "an empty interval");
    assert!(matches!(
        s.range(b"a", &[], RangeOptions { revision: 99, ..RangeOptions::default() }),
        Err(Error::FutureRev)
    ));
}

#[test]
fn an_interrupted_compaction_resumes_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    {
        let s = Store::open(&path, &[], StoreConfig::default()).unwrap();
        for i in 0..50 {
            put(&s, "k", &format!("v{i}"), 0); // revisions 2..=51
        }
        // A crash right after step 1 of a compaction to 40: only the scheduled marker is on disk.
        let meta = s.db().keyspace("meta").unwrap();
        let mut w = s.db().write().unwrap();
        w.put(meta, b"scheduled_compact", &40i64.to_le_bytes()).unwrap();
        w.commit_durable().unwrap();
    }
    let s = Store::open(&path, &[], StoreConfig::default()).unwrap();
    assert_eq!(s.compact_revision(), 40, "the compaction finished at open");
    assert!(matches!(
        s.range(b"k", &[], RangeOptions { revision: 39, ..RangeOptions::default() }),
        Err(Error::Compacted)
    ));
    assert_eq!(
        s.range(b"k", &[], RangeOptions { revision: 40, ..RangeOptions::default() }).unwrap().kvs[0].value,
        b"v38"
    );
    let key = s.db().keyspace("key").unwrap();
    let r = s.db().read();
    assert!(r.get(key, &Revision::new(39, 0).encode()).unwrap().is_none(), "superseded revisions are gone");
    assert!(r.get(key, &Revision::new(40, 0).encode()).unwrap().is_some(), "the one read at 40 is kept");
    drop(r);
    s.check().unwrap();
}

/// A key rewritten many times in and across transactions (a hot key) reads, deletes and compacts as any other:
/// the transaction's index overlay keeps only the new revisions, and compaction still prunes the key's history.
#[test]
fn a_hot_key_keeps_its_history_and_compacts() {
    let (_d, s) = store();
    for round in 0..20 {
        let mut w = s.write().unwrap();
        for i in 0..500 {
            w.put(b"hot", format!("{round}/{i}").as_bytes(), 0, PutOptions::default()).unwrap();
            w.end_revision();
        }
        // The transaction sees its own latest write, and deletes and recreates within it.
        let r = w.range(b"hot", &[], RangeOptions::default()).unwrap();
        assert_eq!(r.kvs[0].value, format!("{round}/499").into_bytes());
        assert_eq!(r.kvs[0].version, (round + 1) * 500);
        w.commit().unwrap();
    }
    put(&s, "cold", "x", 0);
    let kv = &s.range(b"hot", &[], RangeOptions::default()).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.version), (2, 10_000));
    let mid = RangeOptions { revision: 5_001, ..RangeOptions::default() };
    assert_eq!(s.range(b"hot", &[], mid).unwrap().kvs[0].value, b"9/499");
    {
        let mut w = s.write().unwrap();
        w.delete_range(b"hot", &[]).unwrap();
        w.end_revision();
        w.put(b"hot", b"again", 0, PutOptions::default()).unwrap();
        let r = w.range(b"hot", &[], RangeOptions::default()).unwrap();
        assert_eq!((r.kvs[0].version, r.kvs[0].create_revision), (1, r.kvs[0].mod_revision), "a new generation");
        w.commit().unwrap();
    }
    s.check().unwrap();
    let current = s.current_revision();
    s.compact(current).unwrap();
    s.check().unwrap();
    let db = s.db();
    let records = db.read().count(db.keyspace(mvcc::STORE_KEYSPACES[0]).unwrap());
    assert_eq!(records, 2, "one revision each of `hot` and `cold` survives the compaction");
    assert_eq!(s.range(b"hot", &[], RangeOptions::default()).unwrap().kvs[0].value, b"again");
    let old = RangeOptions { revision: 5_001, ..RangeOptions::default() };
    assert!(matches!(s.range(b"hot", &[], old), Err(Error::Compacted)));
    put(&s, "hot", "after", 0);
    s.check().unwrap();
}

/// A DeleteRange without `prev_kv` returns the count and no values, and still hands each key's last value (and its
/// lease) to watchers through the changes; with `prev_kv` the values come back too, as in etcd.
#[test]
fn delete_returns_values_only_when_asked() {
    let (_d, s) = store();
    put(&s, "a", "1", 0);
    put(&s, "b", "2", 7);
    put(&s, "c", "3", 0);
    let mut w = s.write().unwrap();
    let r = w.delete(b"a", b"c", false).unwrap();
    assert_eq!((r.deleted, r.prevs.len()), (2, 0), "the count, no values");
    let changes = w.take_changes();
    let prevs: Vec<_> = changes.iter().map(|c| c.prev.as_ref().map(|p| (p.value.clone(), p.lease))).collect();
    assert_eq!(prevs, vec![Some((b"1".to_vec(), 0)), Some((b"2".to_vec(), 7))], "watchers still get the values");
    assert!(changes.iter().all(|c| c.deleted));
    w.end_revision();
    let r = w.delete(b"c", &[], true).unwrap();
    assert_eq!(r.deleted, 1);
    assert_eq!(r.prevs.iter().map(|p| p.value.clone()).collect::<Vec<_>>(), vec![b"3".to_vec()]);
    w.commit().unwrap();
    assert!(s.range(b"a", b"d", RangeOptions::default()).unwrap().kvs.is_empty());
}
