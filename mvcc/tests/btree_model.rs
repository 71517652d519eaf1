//! Property test of the B+tree store against a `BTreeMap` model: random puts (small and overflow values),
//! deletes, range scans, commits, aborted transactions and reopens, with the invariant checker after every
//! commit, and an old snapshot that must keep reading what it saw while later commits free and reuse pages.

use std::collections::BTreeMap;
use std::ops::Bound;

use mvcc::{Db, DbConfig};
use proptest::prelude::*;

/// What the store must hold.
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Clone)]
enum Op {
    Put(u16, u16),
    Delete(u16),
    DeleteRange(u16, u16),
    Commit,
    Abort,
    Reopen,
    PinSnapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0u16..2000, prop_oneof![9 => 0u16..300, 1 => 1000u16..9000]).prop_map(|(k, v)| Op::Put(k, v)),
        8 => (0u16..2000).prop_map(Op::Delete),
        2 => (0u16..2000, 1u16..400).prop_map(|(k, n)| Op::DeleteRange(k, n)),
        6 => Just(Op::Commit),
        1 => Just(Op::Abort),
        1 => Just(Op::Reopen),
        1 => Just(Op::PinSnapshot),
    ]
}

fn key(k: u16) -> Vec<u8> {
    format!("key-{k:05}").into_bytes()
}

fn value(k: u16, len: u16, generation: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(31) ^ u32::from(k) ^ generation) as u8).collect()
}

fn assert_matches(db: &Db, model: &Model) {
    let ks = db.keyspace("t").unwrap();
    let r = db.read();
    assert_eq!(r.count(ks), model.len() as u64);
    let got: Vec<(Vec<u8>, Vec<u8>)> = r
        .range(ks, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(got, want);
    // A bounded range and point gets.
    let lo = key(500);
    let hi = key(700);
    let got: Vec<Vec<u8>> =
        r.range(ks, Bound::Included(&lo), Bound::Excluded(&hi)).unwrap().map(|e| e.unwrap().0.to_vec()).collect();
    let want: Vec<Vec<u8>> = model.range(lo.clone()..hi.clone()).map(|(k, _)| k.clone()).collect();
    assert_eq!(got, want);
    for k in [0u16, 7, 999, 1999] {
        assert_eq!(r.get(ks, &key(k)).unwrap().map(<[u8]>::to_vec), model.get(&key(k)).cloned());
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut db = Db::open(&path, &["t", "other"], DbConfig::default()).unwrap();
    let mut committed: Model = BTreeMap::new();
    let mut pending = committed.clone();
    let mut pinned: Option<(mvcc::ReadTxn, Model)> = None;
    let mut generation = 0u32;
    let mut batch: Vec<Op> = Vec::new();
    let apply = |db: &Db, batch: &[Op], generation: &mut u32, pending: &mut Model, commit: bool| {
        let ks = db.keyspace("t").unwrap();
        let mut w = db.write().unwrap();
        for op in batch {
            match op {
                Op::Put(k, len) => {
                    *generation += 1;
                    let v = value(*k, *len, *generation);
                    w.put(ks, &key(*k), &v).unwrap();
                    assert_eq!(w.get(ks, &key(*k)).unwrap().as_deref(), Some(v.as_slice()), "read your writes");
                    pending.insert(key(*k), v);
                }
                Op::Delete(k) => {
                    assert_eq!(w.delete(ks, &key(*k)).unwrap(), pending.remove(&key(*k)).is_some());
                }
                Op::DeleteRange(k, n) => {
                    for j in *k..k.saturating_add(*n).min(2000) {
                        assert_eq!(w.delete(ks, &key(j)).unwrap(), pending.remove(&key(j)).is_some());
                    }
                }
                _ => unreachable!(),
            }
        }
        if commit {
            w.commit().unwrap();
        }
    };
    for op in ops {
        match op {
            Op::Put(..) | Op::Delete(_) | Op::DeleteRange(..) => batch.push(op),
            Op::Commit => {
                apply(&db, &batch, &mut generation, &mut pending, true);
                batch.clear();
                committed = pending.clone();
                db.check().unwrap();
                assert_matches(&db, &committed);
                if let Some((snap, model)) = &pinned {
                    let ks = db.keyspace("t").unwrap();
                    let got: Model = snap
                        .range(ks, Bound::Unbounded, Bound::Unbounded)
                        .unwrap()
                        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                        .collect();
                    assert_eq!(&got, model, "a pinned snapshot never changes");
                }
            }
            Op::Abort => {
                apply(&db, &batch, &mut generation, &mut pending, false);
                batch.clear();
                pending = committed.clone();
                assert_matches(&db, &committed);
            }
            Op::Reopen => {
                batch.clear();
                pending = committed.clone();
                pinned = None;
                drop(db);
                db = Db::open(&path, &["t", "other"], DbConfig::default()).unwrap();
                db.check().unwrap();
                assert_matches(&db, &committed);
            }
            Op::PinSnapshot => pinned = Some((db.read(), committed.clone())),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn btree_matches_the_model(ops in prop::collection::vec(op(), 1..400)) {
        run(ops);
    }
}

#[test]
fn a_large_tree_splits_merges_and_shrinks_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut model = BTreeMap::new();
    for round in 0..10u32 {
        let mut w = db.write().unwrap();
        for i in 0..2000u32 {
            let k = format!("{:08}", i * 10 + round).into_bytes();
            let v = vec![round as u8; (i % 120) as usize];
            w.put(ks, &k, &v).unwrap();
            model.insert(k, v);
        }
        w.commit().unwrap();
    }
    db.check().unwrap();
    assert_matches_t(&db, &model);
    let grown = db.stats();
    // Delete nine tenths, in a few commits: pages merge, and the freed ones become reusable.
    for round in 0..9u32 {
        let mut w = db.write().unwrap();
        for i in 0..2000u32 {
            let k = format!("{:08}", i * 10 + round).into_bytes();
            assert!(w.delete(ks, &k).unwrap());
            model.remove(&k);
        }
        w.commit().unwrap();
        db.check().unwrap();
    }
    assert_matches_t(&db, &model);
    let shrunk = db.stats();
    assert!(shrunk.free_pages + shrunk.pending_pages > grown.page_count / 2, "{grown:?} -> {shrunk:?}");
}

fn assert_matches_t(db: &Db, model: &Model) {
    let ks = db.keyspace("t").unwrap();
    let r = db.read();
    let got: Vec<(Vec<u8>, Vec<u8>)> = r
        .range(ks, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect();
    assert_eq!(got.len(), model.len());
    assert!(got.iter().zip(model.iter()).all(|((a, b), (c, d))| a == c && b == d));
}
