//! The WAL's one error type.

use std::io;
use std::path::PathBuf;

use crate::types::{RaftIndex, SegmentSeq};

/// Result with the WAL's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the WAL can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed.
    #[error("wal: {op} {}: {source}", .path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    /// A record or header failed its checks somewhere a torn write cannot explain.
    #[error("wal: corrupted {what} in segment {} at offset {offset} (run repair to truncate there, keeping a copy)", .path.display())]
    Corrupted { what: String, path: PathBuf, seq: SegmentSeq, offset: u64 },
    /// Segments are missing from the middle of the log.
    #[error("wal: segment {missing} is missing from {} (found {before} and {after})", .dir.display())]
    MissingSegment { dir: PathBuf, missing: SegmentSeq, before: SegmentSeq, after: SegmentSeq },
    /// An earlier write or fsync failed; the WAL accepts nothing more (an fsync is never retried).
    #[error("wal: poisoned by an earlier failure: {0}")]
    Poisoned(String),
    /// The appended records do not continue the log.
    #[error("wal: entry {got} does not continue the log (expected at most {expected}); truncate first")]
    NonContiguous { expected: RaftIndex, got: RaftIndex },
    /// A truncation point beyond the end of the log, or below the last snapshot.
    #[error("wal: cannot truncate from {from}: the log holds entries {first}..={last}")]
    BadTruncate { from: RaftIndex, first: RaftIndex, last: RaftIndex },
    /// A record larger than a segment can hold.
    #[error("wal: record of {len} bytes exceeds the {max}-byte limit")]
    RecordTooLarge { len: usize, max: usize },
    /// The directory holds no WAL (open) or already holds one (create).
    #[error("wal: {}: {why}", .dir.display())]
    BadDir { dir: PathBuf, why: &'static str },
    /// Another process has the WAL open.
    #[error("wal: {} is locked by another process", .dir.display())]
    Locked { dir: PathBuf },
    /// The configuration is unusable.
    #[error("wal: invalid config: {0}")]
    Config(String),
    /// The WAL was closed.
    #[error("wal: closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    /// Whether this is a checksum or structure failure (as opposed to an I/O error or misuse).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupted { .. } | Error::MissingSegment { .. })
    }
}
