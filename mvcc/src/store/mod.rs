//! etcd's multi-version store on the B+tree file: revisions, key generations, Range, Put, DeleteRange, Txn,
//! compaction.
//!
//! **Layout.** The `key` keyspace maps each revision (16 bytes, big-endian main then sub) to that revision's record
//! (`kv` module). The `meta` keyspace holds the compaction markers `scheduled_compact` and `finished_compact`
//! (i64, little-endian). An in-memory index (key → generations) answers "which revision of key k is visible at
//! revision r"; it is rebuilt at open by scanning `key` in revision order.
//!
//! **Invariants**
//! 1. `current` is the main revision of the last committed write; revisions never decrease, across crashes too
//!    (they are rebuilt from the committed records).
//! 2. Every revision the index holds is in the `key` keyspace of every snapshot a reader at `>= compact` takes.
//! 3. The applied Raft index stored in the file's meta is committed together with the writes it produced
//!    (`StoreWrite::set_applied`), so a restarted server replays exactly the WAL entries after it.
//!
//! **Concurrency.** `state` (index, current, compact) is behind an `RwLock`. A reader holds its read lock only to
//! look up which revisions a range sees and to take its B+tree snapshot (which pins them); it reads the values
//! after releasing it. The writer changes the index only in its overlay and installs the overlay under the write
//! lock after the B+tree commit. Compaction prunes the index under the write
//! lock, then deletes old revisions in bounded batches, each its own commit, between which reads and writes go on.

mod compact;
mod history;

pub use compact::CompactStats;
mod key_index;
pub mod load;
mod txn;
mod write;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::db::{Db, DbConfig, KeyspaceId, ReadTxn};
use crate::error::{Error, Result};
use crate::kv::{self, KeyValue};
use crate::revision::Revision;

pub use history::{History, HistoryLimit};
pub use key_index::{Generation, KeyIndex, Tail, Visible};
pub use txn::{Compare, CompareOp, CompareTarget, PutResult, RequestOp, ResponseOp, TxnRequest, TxnResult};
pub use write::{Change, DeleteResult, PutOptions, StoreWrite};

/// The keyspaces the store itself uses.
pub const KEY: &str = "key";
pub const META: &str = "meta";
/// Every keyspace the store itself opens (a file opened as a bare `Db`, a snapshot image say, needs them).
pub const KEYSPACES: [&str; 2] = [KEY, META];
const SCHEDULED_COMPACT: &[u8] = b"scheduled_compact";
const FINISHED_COMPACT: &[u8] = b"finished_compact";

/// Range options, as etcd's RangeRequest has them (sorting is the caller's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Most keys to return; 0 for no limit.
    pub limit: i64,
    /// Revision to read at; 0 for the current one.
    pub revision: i64,
    pub count_only: bool,
    pub keys_only: bool,
}

/// What a range returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Keys in the range (before the limit).
    pub count: i64,
    /// The store's current revision.
    pub revision: i64,
}

/// The in-memory part of the store.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub index: BTreeMap<Vec<u8>, KeyIndex>,
    pub current: i64,
    pub compact: i64,
}

/// The multi-version store.
#[derive(Debug)]
pub struct Store {
    db: Db,
    key: KeyspaceId,
    meta: KeyspaceId,
    state: RwLock<State>,
    /// Revisions deleted per compaction commit.
    compaction_batch: usize,
}

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub db: DbConfig,
    /// Revisions a compaction deletes per commit (etcd: 1,000).
    pub compaction_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { db: DbConfig::default(), compaction_batch: 1000 }
    }
}

/// The keys `[key, range_end)` select under etcd's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRange {
    One(Vec<u8>),
    From(Vec<u8>),
    Between(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    /// etcd's rules: an empty `range_end` means `key` alone; `range_end` "\0" means every key from `key` on.
    pub fn new(key: &[u8], range_end: &[u8]) -> KeyRange {
        match range_end {
            [] => KeyRange::One(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            KeyRange::One(k) => (Bound::Included(k), Bound::Included(k)),
            KeyRange::From(k) => (Bound::Included(k), Bound::Unbounded),
            KeyRange::Between(a, b) => (Bound::Included(a), Bound::Excluded(b)),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Between(a, b) if a >= b)
    }
}

fn lock_read(l: &RwLock<State>) -> RwLockReadGuard<'_, State> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn lock_write(l: &RwLock<State>) -> RwLockWriteGuard<'_, State> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn get_i64(r: &ReadTxn, ks: KeyspaceId, key: &[u8]) -> Result<i64> {
    Ok(r.get(ks, key)?.and_then(|b| b.try_into().ok()).map_or(0, i64::from_le_bytes))
}

impl Store {
    /// Opens (or creates) the store at `path`, with `extra` keyspaces for the caller (leases, members, ...).
    /// Rebuilds the index, and finishes a compaction a crash interrupted.
    pub fn open(path: impl AsRef<Path>, extra: &[&str], config: StoreConfig) -> Result<Store> {
        let mut names = KEYSPACES.to_vec();
        names.extend_from_slice(extra);
        let db = Db::open(path, &names, config.db)?;
        let (key, meta) = (db.keyspace(KEY)?, db.keyspace(META)?);
        let store = Store {
            db,
            key,
            meta,
            state: RwLock::new(State::default()),
            compaction_batch: config.compaction_batch.max(1),
        };
        let (scheduled, finished) = store.rebuild()?;
        if scheduled > finished {
            store.compact_resume(scheduled)?;
        }
        Ok(store)
    }

    /// Rebuilds the index from every stored revision; returns the compaction markers.
    fn rebuild(&self) -> Result<(i64, i64)> {
        let r = self.db.read();
        let mut st = State::default();
        for item in r.range(self.key, Bound::Unbounded, Bound::Unbounded)? {
            let (k, v) = item?;
            let rev = Revision::decode(k).ok_or_else(|| self.bad_record("revision key of the wrong length"))?;
            let (kv, tombstone) = kv::decode(v, rev.main).ok_or_else(|| self.bad_record("malformed record"))?;
            let ki = st.index.entry(kv.key.clone()).or_default();
            if tombstone {
                ki.tombstone(rev);
            } else {
                ki.restore_put(rev, kv.create_revision, kv.version);
            }
            st.current = st.current.max(rev.main);
        }
        let scheduled = get_i64(&r, self.meta, SCHEDULED_COMPACT)?;
        let finished = get_i64(&r, self.meta, FINISHED_COMPACT)?;
        st.compact = finished;
        // A compaction at revision c keeps revision c's writes readable, so `current` is at least the marker even
        // when every record up to it was compacted away.
        st.current = st.current.max(scheduled);
        // An empty store is at revision 1, as etcd's is: the first write gets revision 2.
        st.current = st.current.max(1);
        st.index.retain(|_, ki| !ki.is_empty());
        *lock_write(&self.state) = st;
        Ok((scheduled, finished))
    }

    fn bad_record(&self, what: &str) -> Error {
        Error::Format { path: Path::new("key keyspace").to_path_buf(), what: what.to_string() }
    }

    /// The B+tree file underneath (its other keyspaces are the caller's).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The current revision.
    pub fn current_revision(&self) -> i64 {
        lock_read(&self.state).current
    }

    /// The compacted revision: reads below it fail.
    pub fn compact_revision(&self) -> i64 {
        lock_read(&self.state).compact
    }

    /// The applied Raft index and term of the latest commit.
    pub fn applied(&self) -> (u64, u64) {
        let r = self.db.read();
        (r.snapshot().applied_index, r.snapshot().applied_term)
    }

    /// Keys of `[key, range_end)` as of `opts.revision`, etcd's Range.
    pub fn range(&self, key: &[u8], range_end: &[u8], opts: RangeOptions) -> Result<RangeResult> {
        // Only the index lookup runs under the state lock. The file snapshot is taken under it too, and pins every
        // revision the lookup found, so values are read after the lock is released: a large range never holds up
        // a writer's commit.
        let (visible, current, r) = {
            let st = lock_read(&self.state);
            let r = self.db.read();
            let at = resolve_revision(opts.revision, st.current, st.compact)?;
            let range = KeyRange::new(key, range_end);
            // An interval whose end sorts before its start selects nothing (and must not reach BTreeMap::range).
            let visible =
                if range.is_empty() { Vec::new() } else { visible_keys(st.index.range::<[u8], _>(range.bounds()), at) };
            (visible, st.current, r)
        };
        finish_range(visible, opts, current, |rev| read_kv(&r, self.key, rev))
    }

    /// Checks the index invariants and the B+tree's (costly; for tests).
    pub fn check(&self) -> Result<()> {
        self.db.check()?;
        let st = lock_read(&self.state);
        let r = self.db.read();
        for (k, ki) in &st.index {
            ki.check().map_err(|e| self.bad_record(&format!("key {k:?}: {e}")))?;
            for rev in ki.revisions() {
                if r.get(self.key, &rev.encode())?.is_none() {
                    return Err(self.bad_record(&format!("index holds revision {rev} that the file lacks")));
                }
            }
        }
        Ok(())
    }

    /// Starts the write transaction (one at a time).
    pub fn write(&self) -> Result<StoreWrite<'_>> {
        StoreWrite::begin(self)
    }
}

/// `0` means current; below the compaction point and above the current revision are errors.
pub(crate) fn resolve_revision(rev: i64, current: i64, compact: i64) -> Result<i64> {
    if rev > current {
        return Err(Error::FutureRev);
    }
    if rev > 0 && rev < compact {
        return Err(Error::Compacted);
    }
    Ok(if rev <= 0 { current } else { rev })
}

/// `(key, visible revision)` for every key of `entries` that exists at `at`.
pub(crate) fn visible_keys<'a>(
    entries: impl Iterator<Item = (&'a Vec<u8>, &'a KeyIndex)>,
    at: i64,
) -> Vec<(Vec<u8>, Visible)> {
    entries.filter_map(|(k, ki)| ki.at(at).map(|v| (k.clone(), v))).collect()
}

/// Applies count_only / limit / keys_only and reads the values.
pub(crate) fn finish_range(
    visible: Vec<(Vec<u8>, Visible)>,
    opts: RangeOptions,
    current: i64,
    mut read: impl FnMut(Revision) -> Result<KeyValue>,
) -> Result<RangeResult> {
    let count = visible.len() as i64;
    let mut kvs = Vec::new();
    if !opts.count_only {
        let take = if opts.limit > 0 { opts.limit as usize } else { visible.len() };
        for (_, v) in visible.into_iter().take(take) {
            let mut kv = read(v.modified)?;
            if opts.keys_only {
                kv.value.clear();
            }
            kvs.push(kv);
        }
    }
    Ok(RangeResult { kvs, count, revision: current })
}

/// Reads the record of one revision from a snapshot.
pub(crate) fn read_kv(r: &ReadTxn, ks: KeyspaceId, rev: Revision) -> Result<KeyValue> {
    let b = r.get(ks, &rev.encode())?.ok_or_else(|| Error::Format {
        path: Path::new("key keyspace").to_path_buf(),
        what: format!("index names revision {rev}, which is missing"),
    })?;
    kv::decode(b, rev.main).map(|(kv, _)| kv).ok_or_else(|| Error::Format {
        path: Path::new("key keyspace").to_path_buf(),
        what: format!("malformed record at revision {rev}"),
    })
}

impl Store {
    /// The history etcd's HashKV covers at `rev` (0: current), in revision order: every stored revision above
    /// the compaction point and `<= rev`, and, at or below the compaction point, only each key's latest revision
    /// `<= rev` that is not a deletion (etcd's `kvindex.Keep(rev)`; when no key has one, every revision but a
    /// deletion at the compaction point). `visit`
    /// gets each (revision, record); returns the revision hashed to and the compaction revision. The caller
    /// encodes and hashes (see the server's `backup::export::hash_kv`).
    pub fn visit_hashed(&self, rev: i64, visit: &mut dyn FnMut(Revision, &[u8]) -> Result<()>) -> Result<(i64, i64)> {
        // Under the index lock only what must match the index: etcd's keep set (its part at or below the
        // compaction point, which is all the scan asks), and a file snapshot taken at the same moment (it holds
        // every revision up to `at`). The scan runs without the lock, so writers committing meanwhile do not wait.
        let (at, compact, keep, any, r) = {
            let st = lock_read(&self.state);
            let at = resolve_revision(rev, st.current, st.compact)?;
            let mut any = false;
            let keep: std::collections::HashSet<Revision> = st
                .index
                .values()
                .filter_map(|ki| ki.kept_at(at))
                .inspect(|_| any = true)
                .filter(|r| r.main <= st.compact)
                .collect();
            (at, st.compact, keep, any, self.db.read())
        };
        let end = Revision::new(at + 1, 0).encode();
        for item in r.range(self.key, Bound::Unbounded, Bound::Excluded(&end))? {
            let (k, v) = item?;
            let rev = Revision::decode(k).ok_or_else(|| self.bad_record("revision key of the wrong length"))?;
            // A deletion at the compaction point that the file keeps only for watches (see `KeyIndex::compact`)
            // is no revision etcd's Keep names, and etcd 3.4 has already removed it: never hashed.
            let watch_only = || rev.main == compact && kv::decode(v, rev.main).is_some_and(|(_, deleted)| deleted);
            if rev.main > compact || keep.contains(&rev) || (!any && !watch_only()) {
                visit(rev, v)?;
            }
        }
        Ok((at, compact))
    }

    /// CRC32C over [`Store::visit_hashed`]'s history in the store's own encoding (revision key, record): equal
    /// between two stores with equal histories. Returns the hash, the revision hashed to, and the compaction
    /// revision. (The server's HashKV hashes etcd's encoding instead, so that it equals etcd's.)
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64)> {
        let mut crc = 0u32;
        let (at, compact) = self.visit_hashed(rev, &mut |r, v| {
            crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, &r.encode()), v);
            Ok(())
        })?;
        Ok((crc, at, compact))
    }
}
