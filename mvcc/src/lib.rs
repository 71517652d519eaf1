//! `mvcc`: ferrokv's state-machine storage: a copy-on-write B+tree page file, with etcd's multi-version model on
//! top.
//!
//! # Reading the source
//! 1. `page::layout` and `page::meta`: the bytes on disk (also in docs/format-mvcc.md).
//! 2. `page::pager`: one read-only mapping for reads, pwritev for writes, the only fdatasync.
//! 3. `page::alloc`: free space, rebuilt at open, reused only when nothing can reach it.
//! 4. `btree::node`, `btree::read`: page codec and zero-copy reads; `btree::write`: copy-on-write changes and the
//!    spill at commit; `btree::check`: the invariants.
//! 5. `db`: keyspaces, snapshots for readers, the write transaction and its commit protocol; `sync`: making
//!    commits durable, under the writer lock or beside it; `defrag`: online defragmentation in bounded
//!    copy-on-write steps.
//! 6. `revision`, `kv`: etcd's revisions and the record stored per revision.
//! 7. `store`: the key index (generations), Range/Put/DeleteRange/Txn, and compaction.

pub mod btree;
mod db;
mod defrag;
mod error;
pub mod failpoints;
pub mod kv;
pub mod page;
pub mod revision;
mod snapshot;
pub mod store;
mod sync;

pub use db::{Db, DbConfig, KeyspaceId, RangeIter, ReadTxn, Snapshot, Stats, SyncPolicy, WriteTxn};
pub use defrag::{DefragConfig, DefragOutcome, DefragReport, Layout};
pub use error::{Error, Result};
pub use kv::KeyValue;
pub use page::{PageId, TxnId};
pub use revision::Revision;
pub use snapshot::SnapshotInfo;
pub use store::{
    Change, CompactStats, Compare, CompareOp, CompareTarget, DeleteResult, History, HistoryLimit,
    KEYSPACES as STORE_KEYSPACES, PutOptions, PutResult, RangeOptions, RangeResult, RequestOp, ResponseOp, Store,
    StoreConfig, StoreWrite, TxnRequest, TxnResult,
};
