//! Between etcd's wire types and the server's own: the one `header()` builder ([`Headers`]), mvcc's key-values
//! and results as etcd's messages (range shaping, a Txn's responses), and an applied write's [`Response`] as the
//! message its service returns. The apply layer speaks mvcc's types; only this module builds etcd's responses.
//!
//! **Invariants**: a write's header carries the revision after it and the term of the entry that carried it (as
//! etcd's apply does); a read's, the store's current revision and the current term; the Cluster service's, no
//! revision. The ops of a Txn carry only a revision, a nested Txn's header is empty.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mvcc::{ResponseOp, TxnResult};

use crate::apply::Outcome;
use crate::apply::store::StoreSlot;
use crate::consensus::node::RaftStatus;
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, range_request::SortOrder, range_request::SortTarget};
use crate::proto::mvccpb;
use crate::request::Op;

/// Builds every response header: the cluster and member ids, with a revision and a Raft term.
#[derive(Debug, Clone)]
pub struct Headers {
    pub cluster: u64,
    pub member: u64,
    status: Arc<RaftStatus>,
    stores: Arc<StoreSlot>,
}

impl Headers {
    pub fn new(cluster: u64, member: u64, status: Arc<RaftStatus>, stores: Arc<StoreSlot>) -> Self {
        Headers { cluster, member, status, stores }
    }

    /// A header at `revision` in `term` (an applied write's).
    pub fn at(&self, revision: i64, term: u64) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader { cluster_id: self.cluster, member_id: self.member, revision, raft_term: term })
    }

    /// A header at the store's current revision and the current term (reads, leases, maintenance).
    pub fn now(&self) -> Option<pb::ResponseHeader> {
        self.at(self.stores.get().current_revision(), self.term())
    }

    /// A header at `revision` in the current term (a watch's progress and catch-up).
    pub fn at_revision(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.at(revision, self.term())
    }

    /// A header without a revision, as etcd's Cluster service answers.
    pub fn no_revision(&self) -> Option<pb::ResponseHeader> {
        self.at(0, self.term())
    }

    fn term(&self) -> u64 {
        self.status.term.load(Ordering::Relaxed)
    }
}

/// mvcc's key-value in etcd's wire type.
pub fn to_pb(kv: mvcc::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// Proposes the write `op` made by `caller` (whose permissions the apply loop checks) and answers with the response its service returns, shaped by the request (its prev_kv
/// flags and range options). An outcome of another kind than the request's is an internal error.
pub async fn write<T: FromApplied>(
    proposer: &Proposer,
    headers: &Headers,
    caller: &crate::request::Caller,
    op: Op,
) -> Result<T, Error> {
    let r = proposer.propose(caller, &op).await?;
    let header = headers.at(r.revision, r.term);
    T::from_applied(&op, r.outcome, header).ok_or(Error::Corrupt("mismatched apply result".into()))
}

/// A response message built from an applied write's outcome.
pub trait FromApplied: Sized {
    fn from_applied(op: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self>;
}

impl FromApplied for pb::PutResponse {
    fn from_applied(op: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self> {
        match (op, outcome) {
            (Op::Put(p), Outcome::Put { prev }) => {
                Some(pb::PutResponse { header, prev_kv: if p.prev_kv { prev.map(to_pb) } else { None } })
            }
            _ => None,
        }
    }
}

impl FromApplied for pb::DeleteRangeResponse {
    fn from_applied(op: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self> {
        match (op, outcome) {
            (Op::DeleteRange(d), Outcome::DeleteRange(r)) => Some(pb::DeleteRangeResponse {
                header,
                deleted: r.deleted,
                prev_kvs: if d.prev_kv { r.prevs.into_iter().map(to_pb).collect() } else { Vec::new() },
            }),
            _ => None,
        }
    }
}

impl FromApplied for pb::TxnResponse {
    fn from_applied(op: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self> {
        match (op, outcome) {
            (Op::Txn(t), Outcome::Txn(res)) => Some(txn_response(t, res, header)),
            _ => None,
        }
    }
}

impl FromApplied for pb::CompactionResponse {
    fn from_applied(_: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self> {
        matches!(outcome, Outcome::Compaction).then_some(pb::CompactionResponse { header })
    }
}

impl FromApplied for pb::LeaseGrantResponse {
    fn from_applied(_: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self> {
        match outcome {
            Outcome::LeaseGrant { id, ttl } => Some(pb::LeaseGrantResponse { header, id, ttl, error: String::new() }),
            _ => None,
        }
    }
}

impl FromApplied for pb::AlarmResponse {
    /// etcd 3.4.23 answers Alarm with no header (`etcdctl alarm list -w json` prints `{}`), and so does ferrokv.
    fn from_applied(_: &Op, outcome: Outcome, _: Option<pb::ResponseHeader>) -> Option<Self> {
        match outcome {
            Outcome::Alarms(alarms) => Some(pb::AlarmResponse { header: None, alarms }),
            _ => None,
        }
    }
}

impl FromApplied for pb::LeaseRevokeResponse {
    fn from_applied(_: &Op, outcome: Outcome, header: Option<pb::ResponseHeader>) -> Option<Self> {
        matches!(outcome, Outcome::LeaseRevoke).then_some(pb::LeaseRevokeResponse { header })
    }
}

/// Applies etcd's sort order, revision filters and limit to a range result.
pub fn shape_range(
    r: &pb::RangeRequest,
    res: mvcc::RangeResult,
    header: Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    let count = res.count;
    let mut kvs: Vec<mvccpb::KeyValue> = res.kvs.into_iter().map(to_pb).collect();
    let keep = |kv: &mvccpb::KeyValue| {
        (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
            && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
            && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
            && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
    };
    kvs.retain(keep);
    let mut order = SortOrder::try_from(r.sort_order).unwrap_or(SortOrder::None);
    let target = SortTarget::try_from(r.sort_target).unwrap_or(SortTarget::Key);
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend; // etcd sorts ascending when only a target is given
    }
    if order != SortOrder::None {
        let by = |a: &mvccpb::KeyValue, b: &mvccpb::KeyValue| match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        };
        // A stable sort either way: equal ones stay in key order, as etcd prints them.
        if order == SortOrder::Descend {
            kvs.sort_by(|a, b| by(b, a));
        } else {
            kvs.sort_by(by);
        }
    }
    // When the store applied the limit (no filters, no sort), keys beyond it exist iff the count exceeds it;
    // otherwise the limit applies here, after filters and sorting.
    let store_limited = !r.count_only && crate::apply::range_options(r).limit > 0;
    let mut more = store_limited && count > r.limit;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    pb::RangeResponse { header, kvs, more, count }
}

/// mvcc's Txn result as etcd's TxnResponse, honouring each op's prev_kv flag and range shaping.
pub fn txn_response(req: &pb::TxnRequest, res: TxnResult, header: Option<pb::ResponseHeader>) -> pb::TxnResponse {
    use pb::request_op::Request;
    use pb::response_op::Response as R;
    let ops = if res.succeeded { &req.success } else { &req.failure };
    // As etcd: the ops' own headers carry only a revision (the range's, or the transaction's for writes); a nested
    // transaction's header is empty.
    let revision = header.as_ref().map_or(0, |h| h.revision);
    let only = |revision| Some(pb::ResponseHeader { revision, ..Default::default() });
    let responses = ops
        .iter()
        .filter_map(|o| o.request.as_ref())
        .zip(res.responses)
        .map(|(req, resp)| {
            let response = match (req, resp) {
                (Request::RequestRange(r), ResponseOp::Range(rr)) => {
                    let header = only(rr.revision);
                    R::ResponseRange(shape_range(r, rr, header))
                }
                (Request::RequestPut(p), ResponseOp::Put(pr)) => R::ResponsePut(pb::PutResponse {
                    header: only(revision),
                    prev_kv: if p.prev_kv { pr.prev.map(to_pb) } else { None },
                }),
                (Request::RequestDeleteRange(d), ResponseOp::DeleteRange(dr)) => {
                    R::ResponseDeleteRange(pb::DeleteRangeResponse {
                        header: only(revision),
                        deleted: dr.deleted,
                        prev_kvs: if d.prev_kv { dr.prevs.into_iter().map(to_pb).collect() } else { Vec::new() },
                    })
                }
                (Request::RequestTxn(t), ResponseOp::Txn(tr)) => {
                    R::ResponseTxn(txn_response(t, tr, Some(pb::ResponseHeader::default())))
                }
                _ => unreachable!("mvcc answers each op with the matching response kind"),
            };
            pb::ResponseOp { response: Some(response) }
        })
        .collect();
    pb::TxnResponse { header, succeeded: res.succeeded, responses }
}
