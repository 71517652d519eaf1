//! Bulk loading: a new store filled from another store's history (an etcd snapshot being restored), then opened.
//!
//! **Invariants**
//! 1. Only an empty file is loaded: [`load`] refuses a file that holds any revision or compaction marker, so a
//!    load never mixes two histories.
//! 2. Revisions arrive in strictly increasing order (checked), each as the `kv` record the writer would have
//!    stored; a record is checked as the index rebuild will read it (a put's create revision and version), so a
//!    bad source is refused at its first bad revision, not at the next open.
//! 3. The load commits in batches of about [`BATCH_BYTES`], not durably; [`load`] syncs once at the end, then opens
//!    the file as a [`Store`] (which rebuilds the index and runs an interrupted compaction to its end). A crash
//!    before the sync leaves a partial file: the caller loads into a place it discards on failure.
//!
//! **Threading**: one thread; the loader holds the file's single write transaction between batches.

use std::path::Path;

use crate::db::{Db, KeyspaceId, WriteTxn};
use crate::error::{Error, Result};
use crate::kv::{self, KeyValue};
use crate::revision::Revision;
use crate::store::{FINISHED_COMPACT, KEY, KEYSPACES, META, SCHEDULED_COMPACT, Store, StoreConfig};

/// Bytes of keys and values a batch commits.
pub const BATCH_BYTES: usize = 8 << 20;

/// Fills an empty store (see the module header).
pub struct Loader<'a> {
    db: &'a Db,
    key: KeyspaceId,
    meta: KeyspaceId,
    txn: Option<WriteTxn<'a>>,
    pending: usize,
    last: Option<Revision>,
    revisions: u64,
}

impl std::fmt::Debug for Loader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("last", &self.last).field("revisions", &self.revisions).finish()
    }
}

fn refused(what: String) -> Error {
    Error::Format { path: Path::new("load").to_path_buf(), what }
}

impl<'a> Loader<'a> {
    fn txn(&mut self) -> Result<&mut WriteTxn<'a>> {
        if self.txn.is_none() {
            self.txn = Some(self.db.write()?);
        }
        self.txn.as_mut().ok_or_else(|| Error::Poisoned("the load's transaction is gone".into()))
    }

    fn count(&mut self, bytes: usize) -> Result<()> {
        self.pending += bytes;
        if self.pending >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.pending = 0;
        match self.txn.take() {
            Some(t) => t.commit(),
            None => Ok(()),
        }
    }

    /// Adds one revision: a put (`kv` with its key, value, create revision, version and lease) or, when
    /// `tombstone`, a deletion of `kv.key`. Revisions must come in increasing order.
    pub fn revision(&mut self, rev: Revision, kv: &KeyValue, tombstone: bool) -> Result<()> {
        if self.last.is_some_and(|l| l >= rev) || rev.main < 1 || rev.sub < 0 {
            return Err(refused(format!("revision {rev} out of order (after {:?})", self.last)));
        }
        if kv.key.is_empty() {
            return Err(refused(format!("revision {rev} has an empty key")));
        }
        if !tombstone && (kv.create_revision < 1 || kv.create_revision > rev.main || kv.version < 1) {
            return Err(refused(format!(
                "revision {rev} of key {:?}: create revision {} and version {} are impossible",
                String::from_utf8_lossy(&kv.key),
                kv.create_revision,
                kv.version
            )));
        }
        let record = if tombstone {
            kv::encode(&KeyValue { key: kv.key.clone(), mod_revision: rev.main, ..KeyValue::default() }, true)
        } else {
            kv::encode(kv, false)
        };
        let key = self.key;
        self.txn()?.put(key, &rev.encode(), &record)?;
        self.last = Some(rev);
        self.revisions += 1;
        self.count(record.len() + 16)
    }

    /// Sets the compaction markers: reads below `finished` fail; a `scheduled` above it is finished at open.
    pub fn compaction(&mut self, scheduled: i64, finished: i64) -> Result<()> {
        let meta = self.meta;
        let txn = self.txn()?;
        if scheduled > 0 {
            txn.put(meta, SCHEDULED_COMPACT, &scheduled.to_le_bytes())?;
        }
        if finished > 0 {
            txn.put(meta, FINISHED_COMPACT, &finished.to_le_bytes())?;
        }
        Ok(())
    }

    /// Puts into one of the caller's keyspaces (leases, alarms, ...).
    pub fn put(&mut self, keyspace: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let ks = self.db.keyspace(keyspace)?;
        self.txn()?.put(ks, key, value)?;
        self.count(key.len() + value.len())
    }

    /// The last revision added.
    pub fn last(&self) -> Option<Revision> {
        self.last
    }

    /// How many revisions were added.
    pub fn revisions(&self) -> u64 {
        self.revisions
    }
}

/// Creates the store at `path` (which must be new or empty), lets `fill` add its history, syncs, and opens it.
/// On an error from `fill` nothing is synced and the partial file is the caller's to remove.
pub fn load<E: From<Error>>(
    path: impl AsRef<Path>,
    extra: &[&str],
    config: StoreConfig,
    fill: impl FnOnce(&mut Loader<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<Store, E> {
    let path = path.as_ref();
    let mut names = KEYSPACES.to_vec();
    names.extend_from_slice(extra);
    {
        let db = Db::open(path, &names, config.db.clone())?;
        let (key, meta) = (db.keyspace(KEY)?, db.keyspace(META)?);
        {
            let r = db.read();
            if r.count(key) > 0 || r.count(meta) > 0 {
                return Err(refused(format!("{} already holds a history", path.display())).into());
            }
        }
        let mut loader = Loader { db: &db, key, meta, txn: None, pending: 0, last: None, revisions: 0 };
        fill(&mut loader)?;
        loader.flush()?;
        drop(loader);
        db.sync()?;
    }
    Ok(Store::open(path, extra, config)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RangeOptions;

    fn put(key: &str, value: &str, create: i64, version: i64) -> KeyValue {
        KeyValue { key: key.into(), value: value.into(), create_revision: create, version, ..KeyValue::default() }
    }

    #[test]
    fn a_loaded_history_reads_as_the_writes_that_made_it() {
        let dir = tempfile::tempdir().unwrap();
        // The same history written by hand, for comparison.
        let written = Store::open(dir.path().join("w"), &[], StoreConfig::default()).unwrap();
        for (k, v) in [("a", "1"), ("b", "2"), ("a", "3")] {
            let mut w = written.write().unwrap();
            w.put(k.as_bytes(), v.as_bytes(), 0, Default::default()).unwrap();
            w.commit().unwrap();
        }
        let mut w = written.write().unwrap();
        w.delete_range(b"b", b"").unwrap();
        w.commit().unwrap();

        let store = load(dir.path().join("l"), &["extra"], StoreConfig::default(), |l| {
            l.revision(Revision::new(2, 0), &put("a", "1", 2, 1), false)?;
            l.revision(Revision::new(3, 0), &put("b", "2", 3, 1), false)?;
            l.revision(Revision::new(4, 0), &put("a", "3", 2, 2), false)?;
            l.revision(Revision::new(5, 0), &put("b", "", 0, 0), true)?;
            l.put("extra", b"k", b"v")?;
            Ok::<_, Error>(())
        })
        .unwrap();
        store.check().unwrap();
        assert_eq!(store.current_revision(), 5);
        for at in 2..=5 {
            let opts = RangeOptions { revision: at, ..RangeOptions::default() };
            assert_eq!(store.range(b"a", b"\0", opts).unwrap(), written.range(b"a", b"\0", opts).unwrap(), "at {at}");
        }
        assert_eq!(store.hash_kv(0).unwrap(), written.hash_kv(0).unwrap());
        let ks = store.db().keyspace("extra").unwrap();
        assert_eq!(store.db().read().get(ks, b"k").unwrap(), Some(&b"v"[..]));
    }

    #[test]
    fn a_scheduled_compaction_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = load(dir.path().join("l"), &[], StoreConfig::default(), |l| {
            l.revision(Revision::new(2, 0), &put("a", "1", 2, 1), false)?;
            l.revision(Revision::new(3, 0), &put("a", "2", 2, 2), false)?;
            // etcd's --bump-revision --mark-compacted: the revision jumps, and everything below it is compacted.
            l.compaction(10, 0)
        })
        .unwrap();
        assert_eq!(store.current_revision(), 10);
        assert_eq!(store.compact_revision(), 10);
        let old = RangeOptions { revision: 2, ..RangeOptions::default() };
        assert!(matches!(store.range(b"a", b"", old), Err(Error::Compacted)));
        assert_eq!(store.range(b"a", b"", RangeOptions::default()).unwrap().kvs[0].value, b"2");
    }

    #[test]
    fn bad_sources_are_refused_at_the_first_bad_revision() {
        let dir = tempfile::tempdir().unwrap();
        type Case = (&'static str, Vec<(Revision, KeyValue, bool)>);
        let cases: [Case; 3] = [
            (
                "out of order",
                vec![
                    (Revision::new(3, 0), put("a", "1", 3, 1), false),
                    (Revision::new(2, 0), put("b", "1", 2, 1), false),
                ],
            ),
            ("empty key", vec![(Revision::new(2, 0), put("", "1", 2, 1), false)]),
            ("create after mod", vec![(Revision::new(2, 0), put("a", "1", 7, 1), false)]),
        ];
        for (i, (what, revs)) in cases.into_iter().enumerate() {
            let r = load(dir.path().join(i.to_string()), &[], StoreConfig::default(), |l| {
                revs.iter().try_for_each(|(r, kv, t)| l.revision(*r, kv, *t))
            });
            assert!(matches!(r, Err(Error::Format { .. })), "{what}: {r:?}");
        }
        // A file that already holds a history is not loaded into.
        let path = dir.path().join("full");
        drop(
            load(&path, &[], StoreConfig::default(), |l| l.revision(Revision::new(2, 0), &put("a", "1", 2, 1), false))
                .unwrap(),
        );
        let again = load(&path, &[], StoreConfig::default(), |_| Ok::<_, Error>(()));
        assert!(matches!(again, Err(Error::Format { .. })), "{again:?}");
    }
}
