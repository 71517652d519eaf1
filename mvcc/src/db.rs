//! The B+tree file: named keyspaces, many concurrent readers on committed snapshots, one writer.
//!
//! **Concurrency.** Readers take the current [`Snapshot`] (an `Arc`) and register its transaction id in `readers`,
//! both under the `readers` lock, so a writer computing which freed pages are safe always sees them. A reader never
//! blocks the writer or other readers. The writer is serialized by `writer` (a `WriteTxn` holds that lock), which
//! is handed over fairly: a transaction that ends passes the lock to the longest waiter, so a loop of short write
//! transactions (defragmentation, compaction) cannot starve another writer.
//! Lock order: `writer`, then `readers`, then `current`; `writer`, then `meta_io` (see `sync`).
//!
//! **Reuse rule** (allocator invariant 2): pages freed by transaction T are reused once every registered reader's
//! snapshot is `>= T` and the newest durable meta is `>= T`. The second condition is enough for crash safety: the
//! meta a crash falls back to is the newest durable one, whose tree is then intact; a torn write of a newer meta
//! goes to the other slot. Pages written after the newest durable meta and freed before the next sync are reused
//! sooner (allocator invariant 4): right after the commit that freed them, unless a reader's snapshot, a meta on
//! disk, the meta a concurrent sync is writing (`Writer::syncing`) or the latest commit lies between the commit
//! that wrote them and the one that freed them.
//!
//! **Durability.** A commit either syncs (data pages, fdatasync, meta into the slot holding the older meta,
//! fdatasync), or, under a batching [`SyncPolicy`], only writes its data pages: readers see it at once through the
//! mapping, and the meta waits for the next sync, which may run beside later commits (module `sync`). A crash loses
//! unsynced commits as a whole; the caller's write-ahead log (carrying the applied index stored in each meta)
//! replays them.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use parking_lot::{Mutex as FairMutex, MutexGuard as FairGuard};
use std::time::{Duration, Instant};

use crate::btree::node::{self, OVERFLOW_DATA, Val, ValueRef};
use crate::btree::read::{self, NodeView, Range, value_bytes};
use crate::btree::write::{SpillCtx, WriteTree};
use crate::error::{Error, Result};
use crate::page::alloc::Allocator;
use crate::page::layout::{self, PageId, PageType, TxnId};
use crate::page::meta::{Keyspace, MAX_KEYSPACES, Meta};
use crate::page::meta_io::MetaIo;
use crate::page::pager::Pager;

/// A keyspace's handle, from [`Db::keyspace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyspaceId(pub(crate) usize);

/// When commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Sync at the latest every this many commits (1: every commit is durable).
    pub max_commits: u32,
    /// Sync a commit at the latest this long after the first unsynced one (checked at each commit, unless
    /// `background`, and by [`Db::sync_if_due`]).
    pub max_delay: Duration,
    /// The caller keeps `max_delay` itself, calling [`Db::sync_if_due`] from a thread of its own, which syncs
    /// beside the writers (see `sync`); commits then sync only at `max_commits`, and a writer never waits out the
    /// disk for the delay.
    pub background: bool,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        SyncPolicy { max_commits: 1, max_delay: Duration::ZERO, background: false }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// Page size for a new file (existing files keep theirs).
    pub page_size: usize,
    pub sync: SyncPolicy,
    /// Told how long each commit took, from its start to its data being written (and synced, if it syncs), and
    /// how long each sync beside the writer took, for the server's `etcd_disk_backend_commit_duration_seconds`.
    /// Runs on the committing or syncing thread, maybe with the writer lock held: it must only record.
    pub on_commit: Option<fn(Duration)>,
}

impl Default for DbConfig {
    fn default() -> Self {
        DbConfig { page_size: 4096, sync: SyncPolicy::default(), on_commit: None }
    }
}

/// A committed state readers can pin.
#[derive(Debug)]
pub struct Snapshot {
    pub txn: TxnId,
    /// Pages 0..page_count hold this commit's structure.
    pub page_count: u64,
    pub keyspaces: Vec<Keyspace>,
    pub applied_index: u64,
    pub applied_term: u64,
}

pub(crate) struct Writer {
    pub(crate) alloc: Allocator,
    pub(crate) latest: Meta,
    /// Transaction id held in each meta slot on disk as this writer knows it: a copy of `MetaIo::slots`, which a
    /// concurrent sync updates first (it may lag the disk, never lead it; see `sync`).
    pub(crate) disk: [TxnId; 2],
    pub(crate) unsynced: u32,
    pub(crate) first_unsynced: Option<Instant>,
    /// Syncs made under the writer lock so far.
    pub(crate) syncs: u64,
    /// The metas concurrent syncs are writing now (`sync`): protected like the metas on disk.
    pub(crate) syncing: Vec<TxnId>,
    /// Pages written by commits so far.
    pages_written: u64,
    pub(crate) poisoned: Option<String>,
}

impl Writer {
    /// `Err(Poisoned)` once a write or sync has failed: nothing may commit or sync on top of it.
    pub(crate) fn unpoisoned(&self) -> Result<()> {
        self.poisoned.as_ref().map_or(Ok(()), |p| Err(Error::Poisoned(p.clone())))
    }

    /// The newest meta on disk, as this writer knows it.
    pub(crate) fn durable(&self) -> TxnId {
        self.disk[0].max(self.disk[1])
    }

    /// Records the meta slots a sync left on disk (`MetaIo::slots`), and forgets the birth of the pages the newest
    /// of them reaches (allocator invariant 4).
    pub(crate) fn record_disk(&mut self, slots: [TxnId; 2]) {
        self.disk = slots;
        let durable = self.durable();
        self.alloc.forget_born_up_to(durable);
    }
}

pub(crate) struct Shared {
    pub(crate) pager: Pager,
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    readers: Mutex<BTreeMap<TxnId, usize>>,
    pub(crate) writer: FairMutex<Writer>,
    /// The meta slots on disk and the right to write them; taken after `writer`, or alone (see `sync`).
    pub(crate) meta_io: Mutex<MetaIo>,
    pub(crate) policy: SyncPolicy,
    pub(crate) on_commit: Option<fn(Duration)>,
    /// `Stats::in_use` as of the last commit or release, readable without the writer lock (quota checks).
    in_use: AtomicU64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sizes the store reports (etcd's dbSize and dbSizeInUse).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Bytes the file takes (dbSize).
    pub file_size: u64,
    /// Bytes of pages that hold live data or await reuse (dbSizeInUse).
    pub in_use: u64,
    pub free_pages: u64,
    pub pending_pages: u64,
    pub page_count: u64,
    pub txn: TxnId,
    /// Pages written by commits since the store was opened.
    pub pages_written: u64,
}

/// An open store. Cheap to clone; share it between threads.
#[derive(Clone)]
pub struct Db {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.shared.path).finish()
    }
}

impl Db {
    /// Opens the store at `path`, creating it if missing, with at least the named keyspaces.
    ///
    /// # Durability
    /// A new file, and keyspaces added to an existing one, are durable on `Ok`.
    pub fn open(path: impl AsRef<Path>, keyspaces: &[&str], config: DbConfig) -> Result<Db> {
        let path = path.as_ref();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io("open", path, e))?;
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        if len == 0 {
            Self::initialize(&file, path, config.page_size)?;
        }
        let page_size = Self::probe_page_size(&file, path)?;
        let pager = Pager::new(file, path, page_size)?;
        let (meta, slot) = Self::pick_meta(&pager)?;
        let alloc = Self::rebuild_free_space(&pager, &meta)?;
        let other = 1 - slot;
        let other_txn =
            pager.meta_bytes(other).and_then(|b| Meta::decode(PageId(other), b).ok()).map_or(TxnId(0), |m| m.txn);
        let mut disk = [TxnId(0); 2];
        disk[slot as usize] = meta.txn;
        disk[other as usize] = other_txn.min(meta.txn);
        let snapshot = Snapshot {
            txn: meta.txn,
            page_count: meta.page_count,
            keyspaces: meta.keyspaces.clone(),
            applied_index: meta.applied_index,
            applied_term: meta.applied_term,
        };
        let in_use = AtomicU64::new((alloc.page_count() - alloc.free_pages()) * pager.page_size() as u64);
        let db = Db {
            shared: Arc::new(Shared {
                pager,
                path: path.to_path_buf(),
                current: RwLock::new(Arc::new(snapshot)),
                readers: Mutex::new(BTreeMap::new()),
                writer: FairMutex::new(Writer {
                    alloc,
                    latest: meta,
                    disk,
                    unsynced: 0,
                    first_unsynced: None,
                    syncs: 0,
                    syncing: Vec::new(),
                    pages_written: 0,
                    poisoned: None,
                }),
                meta_io: Mutex::new(MetaIo::new(disk)),
                policy: config.sync,
                on_commit: config.on_commit,
                in_use,
            }),
        };
        db.ensure_keyspaces(keyspaces)?;
        Ok(db)
    }

    fn initialize(file: &File, path: &Path, page_size: usize) -> Result<()> {
        if !page_size.is_power_of_two() || !(4096..=65536).contains(&page_size) {
            return Err(Error::Format { path: path.to_path_buf(), what: format!("page size {page_size}") });
        }
        use std::os::unix::fs::FileExt;
        for slot in 0..2u64 {
            let meta = Meta {
                page_size: page_size as u32,
                txn: TxnId(slot),
                page_count: 2,
                applied_index: 0,
                applied_term: 0,
                keyspaces: Vec::new(),
            };
            file.write_all_at(&meta.encode(PageId(slot)), slot * page_size as u64)
                .map_err(|e| Error::io("write meta", path, e))?;
        }
        file.sync_all().map_err(|e| Error::io("fsync", path, e))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
    }

    fn probe_page_size(file: &File, path: &Path) -> Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut head = [0u8; 32];
        file.read_exact_at(&mut head, 0)
            .map_err(|_| Error::Format { path: path.to_path_buf(), what: "file too short to be a store".into() })?;
        let size = layout::u32_at(&head, 28) as usize;
        if size.is_power_of_two() && (4096..=65536).contains(&size) {
            return Ok(size);
        }
        // Slot 0 may be torn: the page size is also in slot 1, one page further; try the sizes in turn.
        for size in [4096usize, 8192, 16384, 32768, 65536] {
            let mut b = vec![0u8; size];
            if file.read_exact_at(&mut b, size as u64).is_ok() && Meta::decode(PageId(1), &b).is_ok() {
                return Ok(size);
            }
        }
        Err(Error::NoValidMeta { path: path.to_path_buf(), what: "no meta page names a valid page size".into() })
    }

    /// The newest meta that verifies, and its slot.
    fn pick_meta(pager: &Pager) -> Result<(Meta, u64)> {
        let decoded: Vec<(u64, std::result::Result<Meta, String>)> = (0..2u64)
            .map(|slot| {
                let m = pager
                    .meta_bytes(slot)
                    .ok_or_else(|| "file shorter than its meta pages".to_string())
                    .and_then(|b| Meta::decode(PageId(slot), b));
                (slot, m)
            })
            .collect();
        let best =
            decoded.iter().filter_map(|(s, m)| m.as_ref().ok().map(|m| (m.clone(), *s))).max_by_key(|(m, _)| m.txn);
        best.ok_or_else(|| Error::NoValidMeta {
            path: pager.path().to_path_buf(),
            what: decoded.iter().filter_map(|(_, m)| m.as_ref().err().cloned()).collect::<Vec<_>>().join("; "),
        })
    }

    /// Free space = pages below the meta's page count that its trees do not reach (see `page::alloc`).
    fn rebuild_free_space(pager: &Pager, meta: &Meta) -> Result<Allocator> {
        let need = meta.page_count * pager.page_size() as u64;
        if pager.file_len() < need {
            return Err(Error::Format {
                path: pager.path().to_path_buf(),
                what: format!("file is {} bytes but its meta page needs {need}: truncated", pager.file_len()),
            });
        }
        let mut used = vec![false; meta.page_count as usize];
        used[0] = true;
        used[1] = true;
        for ks in &meta.keyspaces {
            mark_reachable(pager, ks.root, &mut used)?;
        }
        let mut alloc = Allocator::new(meta.page_count);
        let mut i = 2;
        while i < used.len() {
            if used[i] {
                i += 1;
                continue;
            }
            let start = i;
            while i < used.len() && !used[i] {
                i += 1;
            }
            alloc.free_now(PageId(start as u64), (i - start) as u64);
        }
        Ok(alloc)
    }

    fn ensure_keyspaces(&self, names: &[&str]) -> Result<()> {
        let w = self.shared.writer.lock();
        let missing: Vec<&str> =
            names.iter().copied().filter(|n| !w.latest.keyspaces.iter().any(|k| k.name == *n)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        for n in &missing {
            if n.is_empty() || n.len() > Meta::MAX_NAME || n.as_bytes().contains(&0) {
                return Err(Error::Keyspace(n.to_string(), "names are 1 to 24 bytes with no NUL"));
            }
        }
        if w.latest.keyspaces.len() + missing.len() > MAX_KEYSPACES {
            return Err(Error::Keyspace(missing[0].to_string(), "at most 16 keyspaces per file"));
        }
        let mut txn = WriteTxn::begin(self, w)?;
        for n in missing {
            txn.keyspaces.push(Keyspace { name: n.to_string(), root: PageId(0), count: 0 });
            txn.trees.push(None);
        }
        txn.commit_with(true)
    }

    /// The handle of a keyspace opened with the store.
    pub fn keyspace(&self, name: &str) -> Result<KeyspaceId> {
        let snap = lock_read(&self.shared.current);
        snap.keyspaces
            .iter()
            .position(|k| k.name == name)
            .map(KeyspaceId)
            .ok_or_else(|| Error::Keyspace(name.to_string(), "no such keyspace"))
    }

    /// A read transaction on the latest commit.
    pub fn read(&self) -> ReadTxn {
        let mut readers = lock(&self.shared.readers);
        let snap = lock_read(&self.shared.current);
        *readers.entry(snap.txn).or_insert(0) += 1;
        ReadTxn { shared: Arc::clone(&self.shared), snap }
    }

    /// The write transaction (waits for any other writer).
    pub fn write(&self) -> Result<WriteTxn<'_>> {
        WriteTxn::begin(self, self.shared.writer.lock())
    }

    /// Makes every commit so far durable.
    ///
    /// # Durability
    /// On `Ok`, the latest commit survives a crash.
    pub fn sync(&self) -> Result<()> {
        let mut w = self.shared.writer.lock();
        sync_meta(&self.shared, &mut w)
    }

    /// When commits reach the disk, as opened.
    pub fn sync_policy(&self) -> SyncPolicy {
        self.shared.policy
    }

    /// `Stats::in_use` as of the last commit, without waiting for a writer: cheap enough for every request.
    pub fn in_use(&self) -> u64 {
        self.shared.in_use.load(Ordering::Relaxed)
    }

    /// File and usage sizes.
    pub fn stats(&self) -> Stats {
        let w = self.shared.writer.lock();
        let page = self.shared.pager.page_size() as u64;
        let page_count = w.alloc.page_count();
        Stats {
            file_size: self.shared.pager.file_len(),
            in_use: (page_count - w.alloc.free_pages()) * page,
            free_pages: w.alloc.free_pages(),
            pending_pages: w.alloc.pending_pages(),
            page_count,
            txn: w.latest.txn,
            pages_written: w.pages_written,
        }
    }

    /// Checks every invariant: tree order and depth, checksums of every reachable page, and that no page is
    /// both reachable and free. Costly: for tests and `fsck`-style tools.
    pub fn check(&self) -> Result<()> {
        let w = self.shared.writer.lock();
        w.alloc.check().map_err(|what| self.corrupt(PageId(0), what))?;
        let mut used = vec![false; w.alloc.page_count() as usize];
        let mut free_probe = w.alloc.clone();
        for ks in &w.latest.keyspaces {
            crate::btree::check::tree(&self.shared.pager, ks.root, ks.count)?;
            mark_reachable(&self.shared.pager, ks.root, &mut used)?;
        }
        // Allocating every free page must never hand out a reachable one.
        let free = free_probe.free_pages();
        for _ in 0..free {
            let p = free_probe.alloc(1);
            if used.get(p.0 as usize).copied().unwrap_or(false) {
                return Err(self.corrupt(p, "page is both reachable and free".into()));
            }
        }
        Ok(())
    }

    fn corrupt(&self, page: PageId, what: String) -> Error {
        Error::Corrupted { page, what, path: self.shared.path.clone() }
    }
}

fn lock_read(l: &RwLock<Arc<Snapshot>>) -> Arc<Snapshot> {
    Arc::clone(&l.read().unwrap_or_else(|p| p.into_inner()))
}

/// Marks every page of the tree at `root` (overflow runs included) in `used`.
pub(crate) fn mark_reachable(pager: &Pager, root: PageId, used: &mut [bool]) -> Result<()> {
    if root.0 == 0 {
        return Ok(());
    }
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        let mark = |used: &mut [bool], id: PageId, n: u64| -> Result<()> {
            for p in id.0..id.0 + n {
                match used.get_mut(p as usize) {
                    Some(u) if !*u => *u = true,
                    Some(_) => {
                        return Err(Error::Corrupted {
                            page: PageId(p),
                            what: "page reachable twice".into(),
                            path: pager.path().to_path_buf(),
                        });
                    }
                    None => {
                        return Err(Error::Corrupted {
                            page: PageId(p),
                            what: "page beyond the meta's page count".into(),
                            path: pager.path().to_path_buf(),
                        });
                    }
                }
            }
            Ok(())
        };
        mark(used, id, 1)?;
        match read::node(pager, id)? {
            NodeView::Branch(b) => stack.extend((0..b.len()).map(|i| b.child(i))),
            NodeView::Leaf(l) => {
                for i in 0..l.len() {
                    if let ValueRef::Overflow { page, len } = l.value(i) {
                        value_bytes(pager, l.value(i))?;
                        mark(used, page, node::overflow_pages(len, pager.page_size()))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Makes every page that no reader and no durable meta can reach any more reusable (allocator invariant 2):
/// after each commit, and when readers have ended since (defragmentation asks before it measures).
pub(crate) fn release_unpinned(shared: &Shared, w: &mut Writer) {
    let readers = lock(&shared.readers);
    let oldest_reader = readers.keys().next().copied().unwrap_or(w.latest.txn);
    let durable = w.durable();
    // Young runs (allocator invariant 4): reachable from `born..died` only; free unless a snapshot lies there.
    let Writer { alloc, disk, syncing, latest, .. } = w;
    alloc.release_fresh(|born, died| {
        let within = |m: TxnId| born <= m && m < died;
        readers.range(born..died).next().is_some()
            || disk.iter().chain(&*syncing).any(|&m| within(m))
            || within(latest.txn)
    });
    drop(readers);
    w.alloc.release(oldest_reader.min(durable));
    let in_use = (w.alloc.page_count() - w.alloc.free_pages()) * shared.pager.page_size() as u64;
    shared.in_use.store(in_use, Ordering::Relaxed);
}

/// Makes the latest commit durable with the writer lock held (a commit's own sync, [`Db::sync`]).
fn sync_meta(shared: &Shared, w: &mut Writer) -> Result<()> {
    w.unpoisoned()?;
    if w.disk.contains(&w.latest.txn) {
        return Ok(());
    }
    let mut io = lock(&shared.meta_io);
    match io.write(&shared.pager, &w.latest) {
        Ok(_) => {
            w.record_disk(io.slots);
            w.unsynced = 0;
            w.first_unsynced = None;
            w.syncs += 1;
            Ok(())
        }
        Err(e) => {
            w.poisoned = Some(e.to_string());
            Err(e)
        }
    }
}

/// A consistent, read-only view of one commit. Pages it can reach stay untouched while it lives.
pub struct ReadTxn {
    pub(crate) shared: Arc<Shared>,
    snap: Arc<Snapshot>,
}

impl std::fmt::Debug for ReadTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadTxn").field("txn", &self.snap.txn).finish()
    }
}

impl ReadTxn {
    /// The commit this transaction reads.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    fn root(&self, ks: KeyspaceId) -> PageId {
        self.snap.keyspaces.get(ks.0).map_or(PageId(0), |k| k.root)
    }

    /// Entries in a keyspace.
    pub fn count(&self, ks: KeyspaceId) -> u64 {
        self.snap.keyspaces.get(ks.0).map_or(0, |k| k.count)
    }

    /// The value of `key`.
    pub fn get(&self, ks: KeyspaceId, key: &[u8]) -> Result<Option<&[u8]>> {
        let pager = &self.shared.pager;
        read::get(pager, self.root(ks), key)?.map(|v| value_bytes(pager, v)).transpose()
    }

    /// Entries with keys in the given bounds, in key order.
    pub fn range(&self, ks: KeyspaceId, start: Bound<&[u8]>, end: Bound<&[u8]>) -> Result<RangeIter<'_>> {
        let end = match end {
            Bound::Included(e) => Bound::Included(e.to_vec()),
            Bound::Excluded(e) => Bound::Excluded(e.to_vec()),
            Bound::Unbounded => Bound::Unbounded,
        };
        Ok(RangeIter { pager: &self.shared.pager, inner: Range::new(&self.shared.pager, self.root(ks), start, end)? })
    }
}

impl Drop for ReadTxn {
    fn drop(&mut self) {
        let mut readers = lock(&self.shared.readers);
        if let Some(n) = readers.get_mut(&self.snap.txn) {
            *n -= 1;
            if *n == 0 {
                readers.remove(&self.snap.txn);
            }
        }
    }
}

/// Key-value pairs of a range, values resolved.
pub struct RangeIter<'a> {
    pager: &'a Pager,
    inner: Range<'a>,
}

impl std::fmt::Debug for RangeIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<'a> Iterator for RangeIter<'a> {
    type Item = Result<(&'a [u8], &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        let pager = self.pager;
        self.inner.next().map(|r| r.and_then(|(k, v)| Ok((k, value_bytes(pager, v)?))))
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.w.take() {
            FairGuard::unlock_fair(w);
        }
    }
}

/// The single write transaction. Dropping it without `commit` discards its changes.
pub struct WriteTxn<'a> {
    db: &'a Db,
    w: Option<FairGuard<'a, Writer>>,
    txn: TxnId,
    keyspaces: Vec<Keyspace>,
    trees: Vec<Option<WriteTree>>,
    overflow: Vec<(PageId, Vec<u8>)>,
    applied: Option<(u64, u64)>,
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn").field("txn", &self.txn).finish()
    }
}

impl<'a> WriteTxn<'a> {
    fn begin(db: &'a Db, w: FairGuard<'a, Writer>) -> Result<Self> {
        w.unpoisoned()?;
        let keyspaces = w.latest.keyspaces.clone();
        let trees = keyspaces.iter().map(|_| None).collect();
        let txn = TxnId(w.latest.txn.0 + 1);
        Ok(WriteTxn { db, w: Some(w), txn, keyspaces, trees, overflow: Vec::new(), applied: None })
    }

    fn pager(&self) -> &'a Pager {
        &self.db.shared.pager
    }

    fn tree(&mut self, ks: KeyspaceId) -> Result<&mut WriteTree> {
        let k = self.keyspaces.get(ks.0).ok_or_else(|| Error::Keyspace(format!("#{}", ks.0), "no such keyspace"))?;
        let (root, count) = (k.root, k.count);
        Ok(self.trees[ks.0].get_or_insert_with(|| WriteTree::new(root, count)))
    }

    fn max_key(&self) -> usize {
        self.pager().page_size() / 8
    }

    /// The value of `key` as of this transaction's changes.
    pub fn get(&mut self, ks: KeyspaceId, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let pager = self.pager();
        let val = match &self.trees.get(ks.0) {
            Some(Some(t)) => t.get(pager, key)?,
            _ => {
                let root = self.keyspaces.get(ks.0).map_or(PageId(0), |k| k.root);
                read::get(pager, root, key)?.map(ValueRef::to_val)
            }
        };
        Ok(match val {
            None => None,
            Some(Val::Inline(v)) => Some(v),
            Some(Val::Overflow { page, len }) => match self.overflow.iter().find(|(id, _)| *id == page) {
                // A run written by this transaction is still only in memory.
                Some((_, run)) => Some(run[OVERFLOW_DATA..OVERFLOW_DATA + len as usize].to_vec()),
                None => Some(value_bytes(pager, ValueRef::Overflow { page, len })?.to_vec()),
            },
        })
    }

    fn forget(&mut self, ks: KeyspaceId, old: Option<Val>) {
        if let Some(Val::Overflow { page, len }) = old {
            let n = node::overflow_pages(len, self.pager().page_size());
            if let Some(Some(t)) = self.trees.get_mut(ks.0) {
                t.free_run(page, n);
            }
        }
    }

    /// Sets `key` to `value` (inline in its leaf up to [`inline_max`], else in an overflow run of its own).
    pub fn put(&mut self, ks: KeyspaceId, key: &[u8], value: &[u8]) -> Result<()> {
        if key.len() > self.max_key() {
            return Err(Error::KeyTooLarge { len: key.len(), max: self.max_key() });
        }
        let page_size = self.pager().page_size();
        let val = if value.len() > inline_max(page_size) {
            let n = node::overflow_pages(value.len() as u64, page_size);
            let txn = self.txn;
            let id = self.writer().alloc.alloc_in(txn, n);
            let mut run = vec![0u8; n as usize * page_size];
            run[OVERFLOW_DATA - 8..OVERFLOW_DATA].copy_from_slice(&(value.len() as u64).to_le_bytes());
            run[OVERFLOW_DATA..OVERFLOW_DATA + value.len()].copy_from_slice(value);
            layout::seal(id, &mut run, PageType::Overflow, 0, self.txn);
            self.overflow.push((id, run));
            Val::Overflow { page: id, len: value.len() as u64 }
        } else {
            Val::Inline(value.to_vec())
        };
        let pager = self.pager();
        let old = self.tree(ks)?.insert(pager, key, val)?;
        self.forget(ks, old);
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, ks: KeyspaceId, key: &[u8]) -> Result<bool> {
        let pager = self.pager();
        let old = self.tree(ks)?.delete(pager, key)?;
        let found = old.is_some();
        self.forget(ks, old);
        Ok(found)
    }

    /// Rewrites the path to `key` (and its overflow value, if `run` gives the pages of the value's run) at the
    /// lowest free pages, if `page` (the page or run start to move) can land lower: a free page below it, or for
    /// a run a free extent below it that holds the whole run. Returns whether it moved. A run that cannot move is
    /// not read.
    pub(crate) fn relocate(&mut self, ks: KeyspaceId, key: &[u8], run: Option<u64>, page: PageId) -> Result<bool> {
        if let Some(n) = run {
            if self.writer().alloc.lowest_fit(n).is_none_or(|at| at >= page.0) {
                return Ok(false);
            }
            let Some(v) = self.get(ks, key)? else { return Ok(false) };
            self.put(ks, key, &v)?;
            return Ok(true);
        }
        if self.writer().alloc.first_free().is_none_or(|at| at >= page.0) {
            return Ok(false);
        }
        let pager = self.pager();
        self.tree(ks)?.touch(pager, key)?;
        Ok(true)
    }

    /// Makes the pages freed by earlier commits that no reader can reach any more reusable now.
    pub(crate) fn release_unpinned(&mut self) {
        let shared = Arc::clone(&self.db.shared);
        release_unpinned(&shared, self.writer());
    }

    /// The writer state this transaction holds (defragmentation trims the file through it).
    pub(crate) fn writer(&mut self) -> &mut Writer {
        match self.w.as_mut() {
            Some(w) => w,
            None => unreachable!("a live WriteTxn holds the writer lock"),
        }
    }

    /// Records the Raft index and term this commit applies, stored in the same meta as the data.
    pub fn set_applied(&mut self, index: u64, term: u64) {
        self.applied = Some((index, term));
    }

    /// Commits under the store's sync policy.
    ///
    /// # Durability
    /// Durable on `Ok` if the policy syncs this commit (always, with the default policy); otherwise durable at
    /// the next sync, and visible to readers at once either way.
    pub fn commit(self) -> Result<()> {
        self.commit_with(false)
    }

    /// Commits and syncs, whatever the policy.
    ///
    /// # Durability
    /// On `Ok`, this commit survives a crash.
    pub fn commit_durable(self) -> Result<()> {
        self.commit_with(true)
    }

    /// The commit protocol, steps numbered; see the module header.
    fn commit_with(mut self, force_sync: bool) -> Result<()> {
        // The failpoints are inside the commit's measured time, as etcd's are.
        let started = Instant::now();
        crate::failpoints::BEFORE_COMMIT.eval();
        let shared = Arc::clone(&self.db.shared);
        let Some(mut w) = self.w.take() else { unreachable!("a live WriteTxn holds the writer lock") };
        let pager = &shared.pager;
        // 1. Spill every changed tree into pages the allocator hands out now (never reachable by anyone).
        let mut ctx =
            SpillCtx { pager, alloc: &mut w.alloc, txn: self.txn, writes: std::mem::take(&mut self.overflow) };
        let mut freed = Vec::new();
        for (i, tree) in self.trees.iter_mut().enumerate() {
            if let Some(t) = tree.take().filter(|t| t.is_dirty()) {
                let spilled = t.spill(&mut ctx)?;
                self.keyspaces[i].root = spilled.root;
                self.keyspaces[i].count = spilled.count;
                freed.extend(spilled.freed);
            }
        }
        let writes = std::mem::take(&mut ctx.writes);
        w.pages_written += writes.iter().map(|(_, b)| (b.len() / pager.page_size()) as u64).sum::<u64>();
        let (applied_index, applied_term) = self.applied.unwrap_or((w.latest.applied_index, w.latest.applied_term));
        let meta = Meta {
            page_size: pager.page_size() as u32,
            txn: self.txn,
            page_count: w.alloc.page_count(),
            applied_index,
            applied_term,
            keyspaces: self.keyspaces.clone(),
        };
        // 2. Write the data pages (growing the file first).
        let written = pager
            .grow(meta.page_count)
            .and_then(|()| pager.write(writes.iter().map(|(id, b)| (*id, b.as_slice())).collect()));
        if let Err(e) = written {
            w.poisoned = Some(e.to_string());
            return Err(e);
        }
        for (id, n) in freed {
            w.alloc.free_later(self.txn, id, n);
        }
        w.latest = meta;
        w.unsynced += 1;
        let first = *w.first_unsynced.get_or_insert_with(Instant::now);
        // 3. Sync (fdatasync, meta, fdatasync) if forced or due under the policy.
        let policy = shared.policy;
        if force_sync || w.unsynced >= policy.max_commits || (!policy.background && first.elapsed() >= policy.max_delay)
        {
            sync_meta(&shared, &mut w)?;
        }
        crate::failpoints::AFTER_COMMIT.eval();
        if let Some(observe) = shared.on_commit {
            observe(started.elapsed());
        }
        // 4. Publish to readers, then release pages no reader or durable meta can reach.
        let snapshot = Arc::new(Snapshot {
            txn: self.txn,
            page_count: w.latest.page_count,
            keyspaces: self.keyspaces.clone(),
            applied_index,
            applied_term,
        });
        let readers = lock(&shared.readers);
        *shared.current.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
        drop(readers);
        release_unpinned(&shared, &mut w);
        // Hand the lock to the longest waiter (see the module header).
        FairGuard::unlock_fair(w);
        Ok(())
    }
}

/// The largest value kept inline in a leaf: half a page. A value up to it shares its leaf page with others, where
/// an overflow run would take whole pages (a 1 KB value a 4 KB page); an entry of the largest key (an eighth of a
/// page) and such a value still fits a page on its own, so the greedy cut of a spill always places it. Larger
/// values gain nothing inline: one of them and its key fill most of a page either way.
pub fn inline_max(page_size: usize) -> usize {
    page_size / 2
}
