//! Property test of the MVCC store against a plain model holding the full key space after every revision:
//! random Put / DeleteRange / Txn / Compact / reopen / several revisions per commit, with reads at old revisions
//! checked against the model and the invariant checker run after every step.

use std::collections::BTreeMap;

use mvcc::{
    Compare, CompareOp, CompareTarget, Error, KeyValue, PutOptions, RangeOptions, RequestOp, Store, StoreConfig,
    TxnRequest,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u8),
    Delete(u8, u8),
    Txn {
        key: u8,
        version: i64,
        then_put: u8,
        else_delete: u8,
    },
    /// Several puts, each its own revision, in one commit.
    Batch(Vec<u8>),
    Compact(u8),
    Defrag,
    Reopen,
    ReadAt(u8, u8, u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0u8..24, 0u8..40).prop_map(|(k, v)| Op::Put(k, v)),
        3 => (0u8..24, 0u8..6).prop_map(|(k, n)| Op::Delete(k, n)),
        3 => (0u8..24, 0i64..4, 0u8..24, 0u8..24).prop_map(|(key, version, then_put, else_delete)| Op::Txn { key, version, then_put, else_delete }),
        2 => prop::collection::vec(0u8..24, 1..5).prop_map(Op::Batch),
        1 => (0u8..10).prop_map(Op::Compact),
        1 => Just(Op::Defrag),
        1 => Just(Op::Reopen),
        4 => (0u8..30, 0u8..24, 0u8..8, 0u8..4).prop_map(|(b, k, n, l)| Op::ReadAt(b, k, n, l)),
    ]
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k:02}").into_bytes()
}

/// The state after each revision: `states[r]` is the key space at revision r (r = 1 is the empty start).
struct Model {
    states: Vec<BTreeMap<Vec<u8>, KeyValue>>,
    compact: i64,
}

impl Model {
    fn current(&self) -> i64 {
        self.states.len() as i64 - 1
    }

    fn at(&self, rev: i64) -> &BTreeMap<Vec<u8>, KeyValue> {
        &self.states[rev as usize]
    }

    /// Applies one revision's changes (puts and deletes in order) if there is any.
    fn revision(&mut self, changes: &[(Vec<u8>, Option<Vec<u8>>)]) {
        if changes.is_empty() {
            return;
        }
        let rev = self.current() + 1;
        let mut s = self.at(rev - 1).clone();
        for (k, v) in changes {
            match v {
                Some(v) => {
                    let (create, version) = s.get(k).map_or((rev, 1), |p| (p.create_revision, p.version + 1));
                    s.insert(
                        k.clone(),
                        KeyValue {
                            key: k.clone(),
                            value: v.clone(),
                            create_revision: create,
                            mod_revision: rev,
                            version,
                            lease: 0,
                        },
                    );
                }
                None => {
                    s.remove(k);
                }
            }
        }
        self.states.push(s);
    }

    fn range(&self, rev: i64, from: &[u8], to: &[u8]) -> Vec<KeyValue> {
        self.at(rev).range(from.to_vec()..to.to_vec()).map(|(_, v)| v.clone()).collect()
    }
}

fn value(k: u8, v: u8) -> Vec<u8> {
    vec![k ^ v; v as usize]
}

fn check_all(store: &Store, m: &Model) {
    assert_eq!(store.current_revision(), m.current());
    let r = store.range(b"k", &[0], RangeOptions::default()).unwrap();
    assert_eq!(r.kvs, m.range(m.current(), b"k", b"l"));
    assert_eq!(r.count, r.kvs.len() as i64);
    assert_eq!(r.revision, m.current());
    store.check().unwrap();
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut store = Store::open(&path, &[], StoreConfig { compaction_batch: 7, ..StoreConfig::default() }).unwrap();
    let mut m = Model { states: vec![BTreeMap::new(), BTreeMap::new()], compact: 0 };
    for op in ops {
        match op {
            Op::Put(k, v) => {
                let mut w = store.write().unwrap();
                let prev = w.put(&key(k), &value(k, v), 0, PutOptions::default()).unwrap();
                assert_eq!(prev.as_ref(), m.at(m.current()).get(&key(k)), "prev_kv");
                assert_eq!(w.commit().unwrap(), m.current() + 1);
                m.revision(&[(key(k), Some(value(k, v)))]);
            }
            Op::Delete(k, n) => {
                let (from, to) = (key(k), key(k.saturating_add(n)));
                let mut w = store.write().unwrap();
                let end = if n == 0 { Vec::new() } else { to.clone() };
                let prevs = w.delete_range(&from, &end).unwrap();
                let want: Vec<KeyValue> = if n == 0 {
                    m.at(m.current()).get(&from).cloned().into_iter().collect()
                } else {
                    m.range(m.current(), &from, &to)
                };
                assert_eq!(prevs, want);
                let rev = w.commit().unwrap();
                let changes: Vec<_> = want.iter().map(|kv| (kv.key.clone(), None)).collect();
                m.revision(&changes);
                assert_eq!(rev, m.current(), "a delete of nothing does not advance the revision");
            }
            Op::Txn { key: k, version, then_put, else_delete } => {
                let holds = m.at(m.current()).get(&key(k)).map_or(0, |kv| kv.version) == version;
                let req = TxnRequest {
                    compare: vec![Compare {
                        key: key(k),
                        range_end: vec![],
                        op: CompareOp::Equal,
                        target: CompareTarget::Version(version),
                    }],
                    success: vec![
                        RequestOp::Put {
                            key: key(then_put),
                            value: value(then_put, 3),
                            lease: 0,
                            opts: PutOptions::default(),
                        },
                        RequestOp::Range { key: key(then_put), range_end: vec![], opts: RangeOptions::default() },
                    ],
                    failure: vec![RequestOp::DeleteRange { key: key(else_delete), range_end: vec![], prev_kv: true }],
                };
                let mut w = store.write().unwrap();
                let res = w.txn(&req).unwrap();
                assert_eq!(res.succeeded, holds);
                w.commit().unwrap();
                if holds {
                    m.revision(&[(key(then_put), Some(value(then_put, 3)))]);
                    let mvcc::ResponseOp::Range(r) = &res.responses[1] else { panic!("range response") };
                    assert_eq!(r.kvs.first(), m.at(m.current()).get(&key(then_put)), "a txn reads its own writes");
                } else if m.at(m.current()).contains_key(&key(else_delete)) {
                    m.revision(&[(key(else_delete), None)]);
                }
            }
            Op::Batch(keys) => {
                let mut w = store.write().unwrap();
                for &k in &keys {
                    w.put(&key(k), &value(k, 9), 0, PutOptions::default()).unwrap();
                    w.end_revision();
                }
                w.commit().unwrap();
                for &k in &keys {
                    m.revision(&[(key(k), Some(value(k, 9)))]);
                }
            }
            Op::Compact(back) => {
                let rev = m.current() - i64::from(back);
                let res = store.compact(rev);
                if rev <= m.compact {
                    assert!(matches!(res, Err(Error::Compacted)), "{res:?}");
                } else {
                    res.unwrap();
                    m.compact = rev;
                }
            }
            Op::Defrag => {
                store.db().defrag(mvcc::DefragConfig::default(), &std::sync::atomic::AtomicBool::new(false)).unwrap();
            }
            Op::Reopen => {
                drop(store);
                store = Store::open(&path, &[], StoreConfig::default()).unwrap();
                assert_eq!(store.compact_revision(), m.compact);
            }
            Op::ReadAt(back, k, n, limit) => {
                let rev = m.current() - i64::from(back);
                let (from, to) = (key(k), key(k.saturating_add(n.max(1))));
                let opts = RangeOptions { revision: rev, limit: i64::from(limit), ..RangeOptions::default() };
                let got = store.range(&from, &to, opts);
                if rev < 1 {
                    // Revision 0 or below means "current".
                    continue;
                }
                if rev < m.compact {
                    assert!(matches!(got, Err(Error::Compacted)), "{got:?}");
                    continue;
                }
                let got = got.unwrap();
                let want = m.range(rev, &from, &to);
                assert_eq!(got.count, want.len() as i64);
                let take = if limit == 0 { want.len() } else { usize::from(limit) };
                assert_eq!(got.kvs, want.into_iter().take(take).collect::<Vec<_>>(), "range at {rev}");
                let future =
                    store.range(&from, &to, RangeOptions { revision: m.current() + 1, ..RangeOptions::default() });
                assert!(matches!(future, Err(Error::FutureRev)));
            }
        }
        check_all(&store, &m);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
