//! The store's failpoints, named as etcd's (see the `failpoint` crate), at the places of ours that do what etcd's
//! do. A `return` does nothing here, as in etcd.
//! - `beforeCommit` / `afterCommit`: around a write transaction's commit (etcd: around bbolt's `tx.Commit` in
//!   the backend's batch transaction), the writer lock held, as etcd holds the batch transaction's.
//! - `defragBeforeCopy` / `defragBeforeRename`: etcd's defrag copies the live data into a new file, then renames
//!   it over the old one. Ours moves pages down inside the file, then truncates it: the first fires before the
//!   first move, the second after the last, before the file is cut.
//! - `compactBeforeCommitScheduledCompact` / `compactAfterCommitScheduledCompact`: around the durable commit of
//!   the compaction point; `compactBeforeCommitBatch` / `compactAfterCommitBatch` around each batch of deletions;
//!   `compactBeforeSetFinishedCompact` / `compactAfterSetFinishedCompact` around the commit marking it finished.

use failpoint::Failpoint;

pub static BEFORE_COMMIT: Failpoint = Failpoint::new("beforeCommit");
pub static AFTER_COMMIT: Failpoint = Failpoint::new("afterCommit");
pub static DEFRAG_BEFORE_COPY: Failpoint = Failpoint::new("defragBeforeCopy");
pub static DEFRAG_BEFORE_RENAME: Failpoint = Failpoint::new("defragBeforeRename");
pub static COMPACT_BEFORE_COMMIT_SCHEDULED: Failpoint = Failpoint::new("compactBeforeCommitScheduledCompact");
pub static COMPACT_AFTER_COMMIT_SCHEDULED: Failpoint = Failpoint::new("compactAfterCommitScheduledCompact");
pub static COMPACT_BEFORE_COMMIT_BATCH: Failpoint = Failpoint::new("compactBeforeCommitBatch");
pub static COMPACT_AFTER_COMMIT_BATCH: Failpoint = Failpoint::new("compactAfterCommitBatch");
pub static COMPACT_BEFORE_SET_FINISHED: Failpoint = Failpoint::new("compactBeforeSetFinishedCompact");
pub static COMPACT_AFTER_SET_FINISHED: Failpoint = Failpoint::new("compactAfterSetFinishedCompact");

/// Every failpoint of this crate, for the binary to register.
/// ferrokv's own, a deliberately broken build for the power-loss tests: `return` makes the pager's fdatasync do
/// nothing (commits are still acknowledged), which crashfs's power-loss replay must catch.
pub static SKIP_FDATASYNC: Failpoint = Failpoint::new("mvccSkipFdatasync");

pub static ALL: [&Failpoint; 11] = [
    &BEFORE_COMMIT,
    &AFTER_COMMIT,
    &DEFRAG_BEFORE_COPY,
    &DEFRAG_BEFORE_RENAME,
    &COMPACT_BEFORE_COMMIT_SCHEDULED,
    &COMPACT_AFTER_COMMIT_SCHEDULED,
    &COMPACT_BEFORE_COMMIT_BATCH,
    &COMPACT_AFTER_COMMIT_BATCH,
    &COMPACT_BEFORE_SET_FINISHED,
    &COMPACT_AFTER_SET_FINISHED,
    &SKIP_FDATASYNC,
];
