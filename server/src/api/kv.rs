//! The KV service: validation, then writes through Raft (`propose`) and reads from the store, linearizable ones
//! after a ReadIndex round. No storage access beyond reads of the store.

use std::collections::HashSet;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::convert::{FromApplied, Headers, shape_range};
use crate::apply::{self, store::StoreSlot};
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, kv_server::Kv};
use crate::read::ReadPath;
use crate::request::{Caller, Op};

/// The KV service: writes through the proposer, linearizable reads through the read path, reads from the store.
#[derive(Debug, Clone)]
pub struct KvService {
    pub proposer: Proposer,
    pub reads: ReadPath,
    pub stores: Arc<StoreSlot>,
    pub headers: Headers,
    /// `--max-txn-ops`: the most compares, or ops of one branch, a Txn may have, at every level.
    pub max_txn_ops: usize,
    /// `--quota-backend-bytes`, checked before a write that can grow the store is proposed.
    pub quota: crate::api::quota::Quota,
    /// Ranges served are counted (`etcd_mvcc_range_total`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Who may read what (writes are checked by the apply loop).
    pub auth: crate::apply::perms::Auth,
}

/// A deleted key range `[start, end)`; `None` is unbounded.
type Deleted = (Vec<u8>, Option<Vec<u8>>);

/// etcd's rule for the writes of one branch of a transaction, nested ones included: a key is put at most once, and
/// never where the branch also deletes. The two branches of a nested transaction exclude each other, so both may
/// put the same key. Returns the branch's puts and deleted ranges, for the enclosing level.
fn writes(ops: &[pb::RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<Deleted>), Error> {
    use pb::request_op::Request;
    let deleted = |dels: &[Deleted], key: &[u8]| {
        dels.iter().any(|(start, end)| key >= &start[..] && end.as_ref().is_none_or(|e| key < &e[..]))
    };
    let mut dels: Vec<Deleted> = Vec::new();
    for op in ops.iter().filter_map(|o| o.request.as_ref()) {
        if let Request::RequestDeleteRange(d) = op {
            let end = match &d.range_end[..] {
                [] => Some([&d.key[..], &[0]].concat()),
                [0] => None,
                end => Some(end.to_vec()),
            };
            dels.push((d.key.clone(), end));
        }
    }
    let mut puts = HashSet::new();
    for op in ops.iter().filter_map(|o| o.request.as_ref()) {
        if let Request::RequestTxn(t) = op {
            let (then_puts, then_dels) = writes(&t.success)?;
            let (else_puts, else_dels) = writes(&t.failure)?;
            for k in &then_puts {
                if puts.contains(k) || deleted(&dels, k) {
                    return Err(Error::DuplicateKey);
                }
            }
            for k in &else_puts {
                if (puts.contains(k) && !then_puts.contains(k)) || deleted(&dels, k) {
                    return Err(Error::DuplicateKey);
                }
            }
            puts.extend(then_puts);
            puts.extend(else_puts);
            dels.extend(then_dels);
            dels.extend(else_dels);
        }
    }
    for op in ops.iter().filter_map(|o| o.request.as_ref()) {
        if let Request::RequestPut(p) = op
            && (deleted(&dels, &p.key) || !puts.insert(p.key.clone()))
        {
            return Err(Error::DuplicateKey);
        }
    }
    Ok((puts, dels))
}

/// etcd's checks of a key: not empty.
fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() { Err(Error::EmptyKey) } else { Ok(()) }
}

/// etcd's checks of a Put, alone or in a txn: a key, and no value or lease beside the flag that keeps it.
pub fn check_put(p: &pb::PutRequest) -> Result<(), Error> {
    check_key(&p.key)?;
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd's checks of a Txn before it is proposed: op counts (at most `max_ops` compares and ops per branch), keys
/// and empty ops at every level of nesting, and no key written twice in a branch.
pub fn check_txn(t: &pb::TxnRequest, max_ops: usize) -> Result<(), Error> {
    check_ops(t, max_ops)?;
    writes(&t.success)?;
    writes(&t.failure)?;
    Ok(())
}

/// Op counts, keys and empty ops, at every level of nesting.
fn check_ops(t: &pb::TxnRequest, max: usize) -> Result<(), Error> {
    use pb::request_op::Request;
    if t.compare.len() > max || t.success.len() > max || t.failure.len() > max {
        return Err(Error::TooManyOps);
    }
    for op in t.success.iter().chain(&t.failure) {
        // An op with no request (JSON through the gateway can say that) is etcd's "key not found".
        let Some(op) = op.request.as_ref() else { return Err(Error::KeyNotFound) };
        match op {
            Request::RequestPut(p) => check_put(p)?,
            Request::RequestRange(r) => check_key(&r.key)?,
            Request::RequestDeleteRange(d) => check_key(&d.key)?,
            Request::RequestTxn(t) => check_ops(t, max)?,
        }
    }
    Ok(())
}

impl KvService {
    /// Who sent `request` (see `api::auth::caller`).
    fn caller<R>(&self, request: &Request<R>) -> Result<Caller, Error> {
        crate::api::auth::caller(&self.auth, request)
    }

    /// Proposes a write made by `caller` (the apply loop checks its permissions) and shapes its result as the
    /// response of kind `T`.
    async fn write<T: FromApplied>(&self, caller: Caller, op: Op) -> Result<Response<T>, Status> {
        self.quota.check(&op).await?;
        Ok(Response::new(crate::api::convert::write(&self.proposer, &self.headers, &caller, op).await?))
    }

    /// A range request, validated, permitted (read permission on its whole range, as etcd checks it) and,
    /// unless serializable, linearized: ready to read from the store.
    async fn read_request(&self, request: Request<pb::RangeRequest>) -> Result<pb::RangeRequest, Error> {
        let caller = self.caller(&request)?;
        let r = request.into_inner();
        check_key(&r.key)?;
        if !r.serializable {
            self.reads.linearize().await?;
        }
        self.auth.current().range_permitted(&caller, &r.key, &r.range_end)?;
        Ok(r)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let r = self.read_request(request).await?;
        self.metrics.range.inc();
        let res = self.stores.get().range(&r.key, &r.range_end, apply::range_options(&r)).map_err(Error::from)?;
        // The header carries the revision the keys were read at, not the store's revision a moment later (a put
        // applied in between would make a response whose header is newer than its keys: issue 20's checker).
        let header = self.headers.at_revision(res.revision);
        Ok(Response::new(shape_range(&r, res, header)))
    }

    type RangeStreamStream = crate::api::range_stream::RangeStream;

    async fn range_stream(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let r = self.read_request(request).await?;
        Ok(Response::new(crate::api::range_stream::start(Arc::clone(&self.stores), r, self.headers.now())))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let caller = self.caller(&request)?;
        let p = request.into_inner();
        check_put(&p)?;
        self.write(caller, Op::Put(p)).await
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let caller = self.caller(&request)?;
        let d = request.into_inner();
        check_key(&d.key)?;
        self.write(caller, Op::DeleteRange(d)).await
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let caller = self.caller(&request)?;
        let t = request.into_inner();
        check_txn(&t, self.max_txn_ops)?;
        self.write(caller, Op::Txn(t)).await
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let caller = self.caller(&request)?;
        self.write(caller, Op::Compaction(request.into_inner())).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::request_op::Request;

    fn put(k: &str) -> pb::RequestOp {
        pb::RequestOp { request: Some(Request::RequestPut(pb::PutRequest { key: k.into(), ..Default::default() })) }
    }

    fn del(k: &str, end: &[u8]) -> pb::RequestOp {
        let d = pb::DeleteRangeRequest { key: k.into(), range_end: end.to_vec(), ..Default::default() };
        pb::RequestOp { request: Some(Request::RequestDeleteRange(d)) }
    }

    fn txn(success: Vec<pb::RequestOp>, failure: Vec<pb::RequestOp>) -> pb::RequestOp {
        let t = pb::TxnRequest { success, failure, ..Default::default() };
        pb::RequestOp { request: Some(Request::RequestTxn(t)) }
    }

    fn ok(ops: Vec<pb::RequestOp>) -> bool {
        writes(&ops).is_ok()
    }

    #[test]
    fn duplicate_writes_in_a_branch_are_refused_as_etcd_does() {
        assert!(ok(vec![put("a"), put("b"), del("c", b""), del("c", b"")]), "deletes may overlap each other");
        assert!(!ok(vec![put("a"), put("a")]));
        assert!(!ok(vec![put("a"), del("a", b"")]), "a put and a delete of one key");
        assert!(!ok(vec![del("a", b"c"), put("b")]), "a put inside a deleted range");
        assert!(ok(vec![del("a", b"c"), put("c")]), "the range end is exclusive");
        assert!(!ok(vec![del("a", &[0]), put("zzz")]), "a range to the end");
        assert!(ok(vec![txn(vec![put("x")], vec![put("x")])]), "the branches of a nested txn exclude each other");
        assert!(!ok(vec![put("x"), txn(vec![put("x")], vec![])]), "a nested put of a key put outside");
        assert!(!ok(vec![put("y"), txn(vec![], vec![put("y")])]));
        assert!(!ok(vec![del("p", b"q"), txn(vec![], vec![put("pa")])]), "a nested put inside an outer delete");
        assert!(!ok(vec![txn(vec![del("p", b"")], vec![]), put("p")]), "an outer put inside a nested delete");
        assert!(!ok(vec![txn(vec![put("x")], vec![]), txn(vec![put("x")], vec![])]), "two nested txns");
    }
}
