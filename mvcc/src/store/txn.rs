//! etcd's Txn: compares evaluated against the state before the transaction, then the success or failure
//! operations (nested transactions included), every change sharing the transaction's one main revision.

use crate::error::Result;
use crate::kv::KeyValue;
use crate::store::write::{DeleteResult, PutOptions, StoreWrite};
use crate::store::{RangeOptions, RangeResult};

/// What a compare looks at, with the value it is compared to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Vec<u8>),
    Lease(i64),
}

/// The comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Equal,
    Greater,
    Less,
    NotEqual,
}

/// One compare of a Txn: holds if it holds for every key of `[key, range_end)` (etcd's rules for `range_end`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// An operation of a Txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestOp {
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        opts: RangeOptions,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: i64,
        opts: PutOptions,
    },
    /// With `prev_kv`, the result carries the deleted keys' last values (etcd's `prev_kv`); without it, only
    /// their count.
    DeleteRange {
        key: Vec<u8>,
        range_end: Vec<u8>,
        prev_kv: bool,
    },
    Txn(TxnRequest),
}

/// A Txn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    pub compare: Vec<Compare>,
    pub success: Vec<RequestOp>,
    pub failure: Vec<RequestOp>,
}

/// What a Put returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub prev: Option<KeyValue>,
}

/// The response to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOp {
    Range(RangeResult),
    Put(PutResult),
    DeleteRange(DeleteResult),
    Txn(TxnResult),
}

/// What a Txn returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    pub responses: Vec<ResponseOp>,
}

fn holds<T: Ord>(op: CompareOp, actual: T, target: T) -> bool {
    match op {
        CompareOp::Equal => actual == target,
        CompareOp::NotEqual => actual != target,
        CompareOp::Greater => actual > target,
        CompareOp::Less => actual < target,
    }
}

impl StoreWrite<'_> {
    /// Whether a compare holds now. A missing key compares as version, revisions and lease 0; a value compare on
    /// a missing key is false (etcd's rule).
    pub fn compare(&mut self, c: &Compare) -> Result<bool> {
        let found = self.range(&c.key, &c.range_end, RangeOptions::default())?;
        if found.kvs.is_empty() {
            return Ok(match &c.target {
                CompareTarget::Value(_) => false,
                CompareTarget::Version(t)
                | CompareTarget::CreateRevision(t)
                | CompareTarget::ModRevision(t)
                | CompareTarget::Lease(t) => holds(c.op, 0, *t),
            });
        }
        Ok(found.kvs.iter().all(|kv| match &c.target {
            CompareTarget::Version(t) => holds(c.op, kv.version, *t),
            CompareTarget::CreateRevision(t) => holds(c.op, kv.create_revision, *t),
            CompareTarget::ModRevision(t) => holds(c.op, kv.mod_revision, *t),
            CompareTarget::Lease(t) => holds(c.op, kv.lease, *t),
            CompareTarget::Value(t) => holds(c.op, kv.value.as_slice(), t.as_slice()),
        }))
    }

    /// etcd's Txn. All its changes share this transaction's current revision.
    pub fn txn(&mut self, req: &TxnRequest) -> Result<TxnResult> {
        let mut succeeded = true;
        for c in &req.compare {
            if !self.compare(c)? {
                succeeded = false;
                break;
            }
        }
        let ops = if succeeded { &req.success } else { &req.failure };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range { key, range_end, opts } => ResponseOp::Range(self.range(key, range_end, *opts)?),
                RequestOp::Put { key, value, lease, opts } => {
                    ResponseOp::Put(PutResult { prev: self.put(key, value, *lease, *opts)? })
                }
                RequestOp::DeleteRange { key, range_end, prev_kv } => {
                    ResponseOp::DeleteRange(self.delete(key, range_end, *prev_kv)?)
                }
                RequestOp::Txn(t) => ResponseOp::Txn(self.txn(t)?),
            });
        }
        Ok(TxnResult { succeeded, responses })
    }
}
