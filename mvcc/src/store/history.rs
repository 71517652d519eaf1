//! Reading what changed in a key range since a revision, for watchers that start in the past or fell behind, in
//! bounded steps.
//!
//! **Bound.** One call reads at most [`HistoryLimit::revisions`] revisions that touch the range, and stops at the
//! end of the revision that takes it past [`HistoryLimit::bytes`] of keys and values (previous values included): a
//! revision is never split, so a step holds at most the byte bound plus one revision. [`History::read_to`] says
//! where the step ended; the next step starts after it. A watcher catching up on gigabytes of history thus holds a
//! step at a time, not the whole of it.
//!
//! **Consistency.** A step reads one snapshot of the store. Steps may see different current revisions; each
//! revision is read whole, by exactly one step.

use std::ops::Bound;

use crate::error::{Error, Result};
use crate::kv;
use crate::revision::Revision;

use super::{Change, KeyRange, RangeOptions, Store, lock_read};

/// How much one step of [`Store::history`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimit {
    /// Revisions touching the range, at most.
    pub revisions: usize,
    /// Bytes of keys and values (with previous values) past which the step ends, at the end of a revision.
    pub bytes: usize,
}

impl HistoryLimit {
    /// No bound: everything up to the current revision in one step.
    pub const ALL: HistoryLimit = HistoryLimit { revisions: usize::MAX, bytes: usize::MAX };
}

/// One step of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The changes to keys in the range, in revision order.
    pub changes: Vec<Change>,
    /// The store's revision when the step was read.
    pub current: i64,
    /// Every revision up to this one was read in full (`current` once the step reached the end); the next step
    /// starts at `read_to + 1`.
    pub read_to: i64,
}

impl History {
    /// Whether the step reached the revision current when it was read.
    pub fn is_complete(&self) -> bool {
        self.read_to >= self.current
    }
}

fn size(c: &Change) -> usize {
    c.kv.key.len() + c.kv.value.len() + c.prev.as_ref().map_or(0, |p| p.key.len() + p.value.len())
}

impl Store {
    /// The changes to keys of `[key, range_end)` with main revision `>= from`, in order, up to the current revision
    /// or to where `limit` ends the step (see the module header); `with_prev` also reads each key's value before
    /// the change. [`Error::Compacted`] if `from` is below the compaction point.
    pub fn history(
        &self,
        from: i64,
        key: &[u8],
        range_end: &[u8],
        with_prev: bool,
        limit: HistoryLimit,
    ) -> Result<History> {
        let (r, current) = {
            let st = lock_read(&self.state);
            if from < st.compact {
                return Err(Error::Compacted);
            }
            (self.db.read(), st.current)
        };
        let range = KeyRange::new(key, range_end);
        let in_range = |k: &[u8]| match &range {
            KeyRange::One(one) => k == one.as_slice(),
            KeyRange::From(start) => k >= start.as_slice(),
            KeyRange::Between(a, b) => k >= a.as_slice() && k < b.as_slice(),
        };
        let start = Revision::new(from.max(1), 0).encode();
        let end = Revision::new(current + 1, 0).encode();
        let (mut changes, mut revisions, mut bytes, mut last) = (Vec::new(), 0usize, 0usize, 0i64);
        for item in r.range(self.key, Bound::Included(&start), Bound::Excluded(&end))? {
            let (k, v) = item?;
            let rev = Revision::decode(k).ok_or_else(|| self.bad_record("revision key of the wrong length"))?;
            let (kv, deleted) = kv::decode(v, rev.main).ok_or_else(|| self.bad_record("malformed record"))?;
            if !in_range(&kv.key) {
                continue;
            }
            if rev.main != last {
                if revisions >= limit.revisions || bytes >= limit.bytes {
                    return Ok(History { changes, current, read_to: rev.main - 1 });
                }
                (revisions, last) = (revisions + 1, rev.main);
            }
            let prev = if with_prev && rev.main > 1 {
                match self.range(&kv.key, &[], RangeOptions { revision: rev.main - 1, ..RangeOptions::default() }) {
                    Ok(r) => r.kvs.into_iter().next(),
                    Err(Error::Compacted) => None,
                    Err(e) => return Err(e),
                }
            } else {
                None
            };
            let change = Change { kv, deleted, prev };
            bytes = bytes.saturating_add(size(&change));
            changes.push(change);
        }
        Ok(History { changes, current, read_to: current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PutOptions, StoreConfig};

    /// Revisions 2..=21: puts of 100-byte values, alternately to `a` and `b`.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("s"), &[], StoreConfig::default()).unwrap();
        for i in 0..20u8 {
            let mut w = store.write().unwrap();
            w.put(if i % 2 == 0 { b"a" } else { b"b" }, &[i; 100], 0, PutOptions::default()).unwrap();
            w.commit().unwrap();
        }
        (dir, store)
    }

    /// Steps through the history of `key` from revision 1 under `limit`: the revisions each step returned.
    fn steps(store: &Store, key: &[u8], limit: HistoryLimit) -> Vec<Vec<i64>> {
        let (mut from, mut out) = (1, Vec::new());
        loop {
            let h = store.history(from, key, &[], false, limit).unwrap();
            out.push(h.changes.iter().map(|c| c.kv.mod_revision).collect());
            if h.is_complete() {
                return out;
            }
            from = h.read_to + 1;
        }
    }

    /// A watch may start at the compaction point; a deletion made at exactly that revision is still in its history
    /// (etcd #18089), after a reopen too, until a later compaction removes it.
    #[test]
    fn a_deletion_at_the_compaction_point_stays_in_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let store = Store::open(&path, &[], StoreConfig::default()).unwrap();
        let mut w = store.write().unwrap();
        w.put(b"a", b"1", 0, PutOptions::default()).unwrap();
        w.commit().unwrap();
        let mut w = store.write().unwrap();
        w.delete(b"a", &[], false).unwrap();
        w.commit().unwrap();
        let mut w = store.write().unwrap();
        w.put(b"b", b"2", 0, PutOptions::default()).unwrap();
        w.commit().unwrap();
        store.compact(3).unwrap();
        let deleted = |store: &Store, from| -> Vec<(i64, bool)> {
            let h = store.history(from, b"a", &[], true, HistoryLimit::ALL).unwrap();
            h.changes.iter().map(|c| (c.kv.mod_revision, c.deleted)).collect()
        };
        assert_eq!(deleted(&store, 3), [(3, true)]);
        let mut hashed = Vec::new();
        store
            .visit_hashed(3, &mut |r, _| {
                hashed.push(r.main);
                Ok(())
            })
            .unwrap();
        assert!(hashed.is_empty(), "HashKV covers what etcd 3.4 keeps, and it deletes the tombstone: {hashed:?}");
        assert!(store.range(b"a", &[], RangeOptions { revision: 3, ..Default::default() }).unwrap().kvs.is_empty());
        store.check().unwrap();
        drop(store);
        let store = Store::open(&path, &[], StoreConfig::default()).unwrap();
        store.check().unwrap();
        assert_eq!(deleted(&store, 3), [(3, true)], "after a reopen");
        assert!(store.range(b"a", &[], RangeOptions::default()).unwrap().kvs.is_empty());
        store.compact(4).unwrap();
        assert!(deleted(&store, 4).is_empty());
        let records = store.db().read().range(store.key, Bound::Unbounded, Bound::Unbounded).unwrap().count();
        assert_eq!(records, 1, "only b's put is left in the file");
    }

    #[test]
    fn steps_stop_at_either_bound_and_together_read_every_revision_once() {
        let (_dir, store) = store();
        let all = steps(&store, b"a", HistoryLimit::ALL);
        assert_eq!(all, vec![(2..=20).step_by(2).collect::<Vec<i64>>()]);
        let by_revs = steps(&store, b"a", HistoryLimit { revisions: 4, bytes: usize::MAX });
        assert_eq!(by_revs.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        assert_eq!(by_revs.concat(), all[0]);
        // 101 bytes a change: the step ends at the end of the revision that reaches 250 bytes, the third.
        let by_bytes = steps(&store, b"a", HistoryLimit { revisions: usize::MAX, bytes: 250 });
        assert_eq!(by_bytes.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        assert_eq!(by_bytes.concat(), all[0]);
        // A bound smaller than one revision still makes progress, a revision a step.
        assert_eq!(steps(&store, b"b", HistoryLimit { revisions: usize::MAX, bytes: 1 }).len(), 10);
    }
}
