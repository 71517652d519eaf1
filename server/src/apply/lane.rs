//! The way committed entries reach the apply loop: queued to the apply thread, or, when the Raft thread is idle
//! and the batch is a few small writes, applied on the Raft thread itself.
//!
//! Under load the Raft thread queues each batch and goes on writing the next one to the WAL while the apply thread
//! applies it. A lone client gains nothing from that overlap and pays for it: the apply thread is woken, and goes
//! to sleep again, for every put. So when nothing is queued for the apply thread, the Raft thread has no message
//! of its own waiting, and the batch is a few small writes (Puts, and Txns of puts and ranges), the Raft thread
//! applies it itself ([`ApplyLane::entries`]). The result reaches its waiter as it would from the
//! apply thread.
//!
//! **Invariants.**
//! 1. Entries are applied in log order, by one thread at a time. The Raft thread is the only sender. It applies
//!    inline only when `backlog` is zero, and the apply thread lowers `backlog` (release) only after it has
//!    applied a message, so whatever the Raft thread queued before has been applied when it reads zero (acquire),
//!    and nothing can be queued behind its back while it applies.
//! 2. What runs inline is bounded: at most [`INLINE_ENTRIES`] entries and [`INLINE_BYTES`] of them, and no
//!    operation whose cost grows with the store (a compaction, a range delete, a lease revoke), so the Raft
//!    thread's heartbeats are never held for long. The WAL write it already does is the longer wait.
//! 3. A storage failure while applying inline is fatal, as it is on the apply thread: the Raft thread ends with
//!    it and the member stops.
//!
//! **Threading.** The lane belongs to the Raft thread; `backlog` is shared with the apply thread's loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;

use prost::Message;
use raft::eraftpb::{Entry, EntryType};

use crate::apply::{Apply, ApplyMsg};
use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::request::{InternalRequest, Op};

/// At most this many entries are applied inline at once.
pub const INLINE_ENTRIES: usize = 16;
/// At most this many bytes of entries are applied inline at once.
pub const INLINE_BYTES: usize = 64 << 10;

/// Messages queued for the apply thread and not yet applied by it.
#[derive(Debug, Default)]
pub struct Backlog(AtomicUsize);

impl Backlog {
    /// The apply thread has applied one message (called after it, see invariant 1).
    pub fn done(&self) {
        self.0.fetch_sub(1, Ordering::Release);
    }

    fn queued(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn empty(&self) -> bool {
        self.0.load(Ordering::Acquire) == 0
    }
}

/// The Raft thread's end of the apply loop.
#[derive(Debug)]
pub struct ApplyLane {
    tx: SyncSender<ApplyMsg>,
    backlog: Arc<Backlog>,
    /// The apply loop's state, for batches applied inline.
    apply: Arc<Apply>,
}

impl ApplyLane {
    /// A lane that queues to `tx` (whose thread lowers `backlog`) and applies small batches with `apply` when idle.
    pub fn new(tx: SyncSender<ApplyMsg>, backlog: Arc<Backlog>, apply: Arc<Apply>) -> Self {
        ApplyLane { tx, backlog, apply }
    }

    /// Hands `entries` over in log order: applied here if `idle` (the caller has nothing else waiting) and the
    /// batch qualifies (see the module header), else queued to the apply thread, waiting for room.
    pub fn entries(&self, entries: Vec<Entry>, idle: bool) -> Result<(), Error> {
        if idle && self.backlog.empty() && inline_ok(&entries) {
            return self.apply.apply(entries).map_err(|e| {
                crate::logging::log("fatal", "failed to apply committed entries", &[("error", e.to_string())]);
                Error::from(e)
            });
        }
        self.send(ApplyMsg::Entries(entries))
    }

    /// Queues `msg` for the apply thread, waiting for room.
    pub fn send(&self, msg: ApplyMsg) -> Result<(), Error> {
        self.backlog.queued();
        self.tx.send(msg).map_err(|_| Error::Stopped)
    }
}

/// Whether `entries` may be applied on the Raft thread (invariant 2).
fn inline_ok(entries: &[Entry]) -> bool {
    if entries.len() > INLINE_ENTRIES || entries.iter().map(|e| e.data.len()).sum::<usize>() > INLINE_BYTES {
        return false;
    }
    entries.iter().all(|e| match e.get_entry_type() {
        EntryType::EntryNormal if e.data.is_empty() => true,
        EntryType::EntryNormal => match InternalRequest::decode(&e.data[..]) {
            Ok(InternalRequest { op: Some(Op::Put(_)), .. }) => true,
            Ok(InternalRequest { op: Some(Op::Txn(t)), .. }) => small_txn(&t),
            _ => false,
        },
        _ => false,
    })
}

/// A Txn of puts and ranges (nested ones too): no range delete, whose cost grows with the keys it meets.
fn small_txn(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request;
    t.success.iter().chain(&t.failure).all(|op| match &op.request {
        Some(Request::RequestPut(_) | Request::RequestRange(_)) | None => true,
        Some(Request::RequestTxn(t)) => small_txn(t),
        Some(Request::RequestDeleteRange(_)) => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Caller;

    fn entry(op: &Op) -> Entry {
        Entry {
            data: crate::request::encode(crate::request::RequestId(1), &Caller::default(), op).into(),
            ..Default::default()
        }
    }

    fn put(lease: i64, value: usize) -> Op {
        Op::Put(pb::PutRequest { key: b"k".to_vec(), value: vec![0; value], lease, ..Default::default() })
    }

    fn txn(op: pb::request_op::Request) -> Op {
        Op::Txn(pb::TxnRequest { success: vec![pb::RequestOp { request: Some(op) }], ..Default::default() })
    }

    #[test]
    fn only_a_few_small_plain_writes_run_inline() {
        use pb::request_op::Request;
        assert!(inline_ok(&[Entry::default(), entry(&put(0, 256))]));
        assert!(inline_ok(&[entry(&txn(Request::RequestPut(pb::PutRequest::default())))]));
        assert!(inline_ok(&[entry(&txn(Request::RequestRange(pb::RangeRequest::default())))]));
        assert!(inline_ok(&[entry(&put(7, 256))]), "a put under a lease");
        assert!(!inline_ok(&[entry(&put(0, INLINE_BYTES))]), "too many bytes");
        assert!(!inline_ok(&vec![entry(&put(0, 1)); INLINE_ENTRIES + 1]), "too many entries");
        let delete = Op::DeleteRange(pb::DeleteRangeRequest { key: b"a".to_vec(), ..Default::default() });
        assert!(!inline_ok(&[entry(&delete)]), "a range delete");
        assert!(!inline_ok(&[entry(&txn(Request::RequestDeleteRange(pb::DeleteRangeRequest::default())))]));
        assert!(!inline_ok(&[entry(&Op::Compaction(pb::CompactionRequest { revision: 5, physical: false }))]));
        let mut conf = Entry::default();
        conf.set_entry_type(EntryType::EntryConfChange);
        assert!(!inline_ok(&[conf]), "a membership change");
    }
}
