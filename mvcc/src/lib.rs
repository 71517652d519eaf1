//! `mvcc`: ferrokv's state-machine storage: a copy-on-write B+tree page file, with etcd's multi-version model on
//! top (the MVCC layer is in progress; see issue 4).
//!
//! # Reading the source
//! 1. `page::layout` and `page::meta`: the bytes on disk (also in docs/format-mvcc.md).
//! 2. `page::pager`: one read-only mapping for reads, pwritev for writes, the only fdatasync.
//! 3. `page::alloc`: free space, rebuilt at open, reused only when nothing can reach it.
//! 4. `btree::node`, `btree::read`: page codec and zero-copy reads; `btree::write`: copy-on-write changes and the
//!    spill at commit; `btree::check`: the invariants.
//! 5. `db`: keyspaces, snapshots for readers, the write transaction and its commit protocol.

pub mod btree;
mod db;
mod error;
pub mod page;

pub use db::{Db, DbConfig, KeyspaceId, RangeIter, ReadTxn, Snapshot, Stats, SyncPolicy, WriteTxn};
pub use error::{Error, Result};
pub use page::{PageId, TxnId};
