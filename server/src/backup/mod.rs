//! etcd's snapshot file (a bbolt database with etcd's buckets, then a SHA-256 trailer): what
//! `Maintenance.Snapshot` streams (`etcdctl snapshot save`), so that `etcdctl snapshot status` and
//! `etcdctl snapshot restore`, and etcd itself, read ferrokv's backups; and what `ferrokv snapshot restore` reads
//! back (`import`), from ferrokv or etcd; and an etcd member's directory converted in place (`migrate`, reading
//! etcd's WAL and snapshot files with `etcd_dir`).

pub mod etcd_dir;
pub mod export;
pub mod import;
pub mod migrate;
pub mod restore;
pub mod stream;

use std::path::Path;

use crate::error::Error;

/// Makes `dir`'s entries durable.
fn sync_dir(dir: &Path) -> Result<(), Error> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(format!("sync {}", dir.display())))
}

fn rename(from: &Path, to: &Path) -> Result<(), Error> {
    std::fs::rename(from, to).map_err(Error::io(format!("rename {} to {}", from.display(), to.display())))
}

/// Renames `from` to `to` and makes the rename durable (the directory holding `to` synced): how a restore and a
/// conversion put the member directory they built in place.
fn rename_durably(from: &Path, to: &Path) -> Result<(), Error> {
    rename(from, to)?;
    sync_dir(to.parent().unwrap_or(Path::new(".")))
}
