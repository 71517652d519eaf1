//! Making commits durable: the meta write between two fdatasyncs, under the writer lock or beside it.
//!
//! **Two ways in.** A commit that must be durable (forced, or at the policy's commit limit) and [`Db::sync`] write
//! the meta with the writer lock held, as before (`db::sync_meta`). [`Db::sync_if_due`] and [`Db::sync_concurrent`] take the writer
//! lock only to read the latest meta and, afterwards, to record the result: the fdatasyncs and the meta write run
//! while other threads commit, so a writer never waits out the disk for a sync it did not ask for.
//!
//! **Invariants.**
//! 1. *One meta writer.* Only the holder of `MetaIo` (`page::meta_io`) writes a meta page or syncs for one. `MetaIo::slots` is the
//!    transaction id each slot holds on disk, exactly, and only grows: a meta older than the newest durable one is
//!    never written (it is checked under the lock), so a torn write always leaves the newest durable meta intact.
//! 2. *The writer's view lags, never leads.* `Writer::disk`, which the reuse rule reads (see `db`), is a copy of
//!    `MetaIo::slots` taken under the writer lock after a sync completes. While a concurrent sync writes meta `M`,
//!    the view still says the older meta is the newest durable one, so no page freed after it is reused: every
//!    page `M` reaches stays as `M`'s commit wrote it until `M`'s sync is recorded.
//! 3. *Data before meta.* A commit's data pages are written before its meta becomes the latest, and the first
//!    fdatasync of a sync follows the read of the latest meta, so every page the synced meta names is on disk
//!    before the meta is written.
//! 4. *A failure poisons.* A failed fdatasync or meta write leaves the slot in an unknown state: `MetaIo::failed`
//!    refuses every later meta write, and the writer is poisoned too, so nothing commits on top of it.
//!
//! **Lock order**: `writer`, then `meta_io`. A concurrent sync holds `meta_io` without `writer`, and never takes
//! `writer` while holding it.

use std::time::Instant;

use parking_lot::MutexGuard as FairGuard;

use crate::db::{Db, Shared, lock, release_unpinned};
use crate::error::Result;
use crate::page::meta::Meta;

/// What a concurrent sync read under the writer lock.
struct Taken {
    meta: Meta,
    /// `Writer::syncs` then: a sync under the lock since makes `unsynced` count other commits.
    syncs: u64,
    unsynced: u32,
    at: Instant,
}

/// Makes the latest commit durable while other threads commit (see the module header); with `due_only`, only if
/// the policy's delay has passed since the first unsynced commit.
pub(crate) fn sync_concurrent(shared: &Shared, due_only: bool) -> Result<()> {
    let taken = {
        let mut w = shared.writer.lock();
        w.unpoisoned()?;
        let due = w.first_unsynced.is_some_and(|t| t.elapsed() >= shared.policy.max_delay);
        if w.disk.contains(&w.latest.txn) || (due_only && !due) {
            return Ok(());
        }
        let txn = w.latest.txn;
        w.syncing.push(txn);
        Taken { meta: w.latest.clone(), syncs: w.syncs, unsynced: w.unsynced, at: Instant::now() }
    };
    let written = lock(&shared.meta_io).write(&shared.pager, &taken.meta);
    if let (Ok(true), Some(observe)) = (&written, shared.on_commit) {
        // The sync is the part of etcd's batch commit that waits for the disk: it belongs in the commit time.
        observe(taken.at.elapsed());
    }
    let mut w = shared.writer.lock();
    if let Err(e) = written {
        w.poisoned = Some(e.to_string());
        return Err(e);
    }
    // The meta is on disk (and in `disk`) from here on, or a newer one is: it no longer needs its own entry.
    let slots = lock(&shared.meta_io).slots;
    w.record_disk(slots);
    if let Some(i) = w.syncing.iter().position(|&t| t == taken.meta.txn) {
        w.syncing.swap_remove(i);
    }
    if w.disk.contains(&w.latest.txn) {
        w.unsynced = 0;
        w.first_unsynced = None;
    } else if w.syncs == taken.syncs {
        // Commits made during the sync are still unsynced; the oldest of them is younger than `taken.at`.
        w.unsynced = w.unsynced.saturating_sub(taken.unsynced);
        w.first_unsynced = Some(taken.at);
    }
    release_unpinned(shared, &mut w);
    FairGuard::unlock_fair(w);
    Ok(())
}

impl Db {
    /// Makes every commit so far durable, like [`Db::sync`], but writes while other threads go on committing:
    /// the writer lock is held only to read the latest commit and to record the result.
    ///
    /// # Durability
    /// On `Ok`, every commit that ended before the call survives a crash.
    pub fn sync_concurrent(&self) -> Result<()> {
        sync_concurrent(&self.shared, false)
    }

    /// Drops the store's mapped pages from the process's resident set (see `Pager::forget_resident`): readers fault
    /// back in what they read next, from the page cache.
    pub fn forget_resident(&self) -> Result<()> {
        self.shared.pager.forget_resident()
    }

    /// Syncs, as [`Db::sync_concurrent`] does, if the policy's delay has passed since the first unsynced commit.
    /// With [`SyncPolicy::background`](crate::SyncPolicy::background) set, the caller's own thread calls this
    /// often enough to keep the delay.
    pub fn sync_if_due(&self) -> Result<()> {
        sync_concurrent(&self.shared, true)
    }
}
