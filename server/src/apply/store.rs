//! The member's store, replaceable as a whole: the state machine's mvcc store, and the staging and installing of
//! a snapshot image received from the leader (`consensus::snapshot` moves the bytes).
//!
//! **Invariants**: the store is replaced only by the apply thread, between two batches of entries; readers that
//! hold the old store keep reading the old (unlinked) file until they drop it; staged images that Raft did not
//! take are removed at the next staging or install, and at start.
//!
//! **Crash safety**: an image is staged under a temporary name, verified (CRC32C trailer, every page read back),
//! then renamed; installing renames it over `snap/db` and fsyncs the directory before the store is reopened.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use mvcc::{Store, StoreConfig};

use crate::error::Error;

/// The member's store, replaceable as a whole by an installed snapshot.
#[derive(Debug)]
pub struct StoreSlot {
    current: RwLock<Arc<Store>>,
    path: PathBuf,
    config: StoreConfig,
}

const STAGED_PREFIX: &str = "db.incoming-";

/// The store's keyspaces besides mvcc's own.
pub const KEYSPACES: [&str; 7] = [
    crate::apply::lease::LEASE,
    crate::apply::membership::MEMBERS,
    crate::apply::membership::REMOVED,
    crate::apply::alarm::ALARM,
    crate::apply::auth::AUTH,
    crate::apply::auth::USERS,
    crate::apply::auth::ROLES,
];

impl StoreSlot {
    /// Opens the store at `path`, removing images staged by an earlier run.
    pub fn open(path: PathBuf, config: StoreConfig) -> Result<StoreSlot, mvcc::Error> {
        remove_staged(&path, None);
        let store = Store::open(&path, &KEYSPACES, config.clone())?;
        Ok(StoreSlot { current: RwLock::new(Arc::new(store)), path, config })
    }

    /// The current store.
    pub fn get(&self) -> Arc<Store> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn staged(&self, index: u64, term: u64) -> PathBuf {
        self.path.with_file_name(format!("{STAGED_PREFIX}{index}-{term}"))
    }

    /// Writes an image from `input` to a staging file, verified; returns the Raft index and term it had applied.
    /// Other staged images go.
    pub fn stage(&self, input: &mut impl Read) -> Result<(u64, u64), Error> {
        let receiving = self.path.with_file_name(format!("{STAGED_PREFIX}receiving"));
        remove_staged(&self.path, None);
        let mut keyspaces = mvcc::STORE_KEYSPACES.to_vec();
        keyspaces.push(crate::apply::lease::LEASE);
        let db = mvcc::Db::restore_from(&receiving, input, &keyspaces, self.config.db.clone())?;
        let (index, term) = {
            let r = db.read();
            (r.snapshot().applied_index, r.snapshot().applied_term)
        };
        drop(db);
        std::fs::rename(&receiving, self.staged(index, term))
            .map_err(Error::io(format!("stage snapshot {}", receiving.display())))?;
        Ok((index, term))
    }

    /// Replaces the store with the image staged for `(index, term)`; returns the new store.
    pub fn install(&self, index: u64, term: u64) -> Result<Arc<Store>, Error> {
        let staged = self.staged(index, term);
        let io = |e: std::io::Error| Error::io(format!("install snapshot {}", staged.display()))(e);
        std::fs::rename(&staged, &self.path).map_err(io)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        let store = Arc::new(Store::open(&self.path, &KEYSPACES, self.config.clone())?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&store);
        remove_staged(&self.path, None);
        Ok(store)
    }
}

/// Removes staged images next to `store_path`, except `keep`.
fn remove_staged(store_path: &Path, keep: Option<&Path>) {
    let Some(dir) = store_path.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let staged = e.file_name().to_str().is_some_and(|n| n.starts_with(STAGED_PREFIX));
        if staged && Some(p.as_path()) != keep {
            let _ = std::fs::remove_file(p);
        }
    }
}
