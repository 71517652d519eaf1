//! The mvcc crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::page::PageId;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("mvcc: {op} {}: {source}", .path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    /// A page failed its checksum or structure checks: never served.
    #[error("mvcc: page {page} of {} is corrupted: {what}", .path.display())]
    Corrupted { page: PageId, what: String, path: PathBuf },
    /// Neither meta page verifies.
    #[error("mvcc: {} has no valid meta page ({what})", .path.display())]
    NoValidMeta { path: PathBuf, what: String },
    /// A key longer than the tree accepts.
    #[error("mvcc: key of {len} bytes exceeds the {max}-byte limit")]
    KeyTooLarge { len: usize, max: usize },
    /// A keyspace name that is not registered, or too many keyspaces.
    #[error("mvcc: keyspace {0:?}: {1}")]
    Keyspace(String, &'static str),
    /// The file is not a store, or was written by an incompatible version.
    #[error("mvcc: {}: {what}", .path.display())]
    Format { path: PathBuf, what: String },
    /// An earlier write or fsync failed; the store accepts no more writes (an fsync is never retried).
    #[error("mvcc: poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// A revision that has been compacted away.
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// A Put with ignore_value or ignore_lease on a key that does not exist.
    #[error("mvcc: key not found")]
    KeyNotFound,
    /// A revision in the future.
    #[error("mvcc: required revision is a future revision")]
    FutureRev,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }
}
