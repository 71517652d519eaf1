//! The KV service: validation, then writes through Raft (`propose`) and reads from the store, linearizable ones
//! after a ReadIndex round. No storage access beyond reads of the store.

use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::apply::{self, Response as Applied};
use crate::error::Error;
use crate::proto::etcdserverpb::{self as pb, kv_server::Kv, range_request::SortOrder, range_request::SortTarget};
use crate::proto::mvccpb;
use crate::request::Op;
use crate::server::Node;

/// etcd's limit on operations per Txn.
const MAX_TXN_OPS: usize = 128;
/// How long one read index request may take before it is asked again.
const READ_INDEX_ATTEMPT: Duration = Duration::from_millis(200);
/// How long a request waits (etcd's request timeout is about 7 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// The KV service.
#[derive(Debug, Clone)]
pub struct KvService {
    pub node: Arc<Node>,
}

/// Applies etcd's sort order, revision filters and limit to a range result.
pub fn shape_range(
    r: &pb::RangeRequest,
    res: mvcc::RangeResult,
    header: Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    let count = res.count;
    let mut kvs: Vec<mvccpb::KeyValue> = res.kvs.into_iter().map(apply::to_pb).collect();
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
        match target {
            SortTarget::Key => kvs.sort_by(|a, b| a.key.cmp(&b.key)),
            SortTarget::Version => kvs.sort_by_key(|kv| kv.version),
            SortTarget::Create => kvs.sort_by_key(|kv| kv.create_revision),
            SortTarget::Mod => kvs.sort_by_key(|kv| kv.mod_revision),
            SortTarget::Value => kvs.sort_by(|a, b| a.value.cmp(&b.value)),
        }
        if order == SortOrder::Descend {
            kvs.reverse();
        }
    }
    // When the store applied the limit (no filters, no sort), keys beyond it exist iff the count exceeds it;
    // otherwise the limit applies here, after filters and sorting.
    let store_limited = !r.count_only && apply::range_options(r).limit > 0;
    let mut more = store_limited && count > r.limit;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    pb::RangeResponse { header, kvs, more, count }
}

impl KvService {
    fn check_key(key: &[u8]) -> Result<(), Error> {
        if key.is_empty() { Err(Error::EmptyKey) } else { Ok(()) }
    }

    fn check_txn(t: &pb::TxnRequest) -> Result<(), Error> {
        use pb::request_op::Request;
        if t.compare.len() > MAX_TXN_OPS || t.success.len() > MAX_TXN_OPS || t.failure.len() > MAX_TXN_OPS {
            return Err(Error::TooManyOps);
        }
        for ops in [&t.success, &t.failure] {
            let mut puts = std::collections::HashSet::new();
            for op in ops.iter().filter_map(|o| o.request.as_ref()) {
                match op {
                    Request::RequestPut(p) => {
                        Self::check_key(&p.key)?;
                        if !puts.insert(p.key.clone()) {
                            return Err(Error::DuplicateKey);
                        }
                    }
                    Request::RequestRange(r) => Self::check_key(&r.key)?,
                    Request::RequestDeleteRange(d) => Self::check_key(&d.key)?,
                    Request::RequestTxn(t) => Self::check_txn(t)?,
                }
            }
        }
        Ok(())
    }

    /// Waits until this member has applied everything committed when the read began (ReadIndex).
    ///
    /// raft-rs drops a read index request while the leader has not yet committed an entry of its own term (just
    /// after an election), so each attempt waits a short while and a dropped one is asked again, until the
    /// request timeout.
    async fn linearize(&self) -> Result<(), Error> {
        let node = &self.node;
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let index = loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let ctx = node.proposals.next_id().0.to_be_bytes().to_vec();
            node.raft.send(crate::raft_node::Msg::ReadIndex { ctx, reply: tx }).map_err(|_| Error::Stopped)?;
            match tokio::time::timeout(READ_INDEX_ATTEMPT, rx).await {
                Ok(Ok(index)) => break index,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) if tokio::time::Instant::now() >= deadline => return Err(Error::Timeout),
                Err(_) => continue,
            }
        };
        let mut applied = node.applied.clone();
        tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::Stopped)?;
        Ok(())
    }

    /// A range request, validated and, unless serializable, linearized: ready to read from the store.
    async fn read_request(&self, request: Request<pb::RangeRequest>) -> Result<pb::RangeRequest, Error> {
        let r = request.into_inner();
        Self::check_key(&r.key)?;
        if !r.serializable {
            self.linearize().await?;
        }
        Ok(r)
    }

    fn header(&self) -> Option<pb::ResponseHeader> {
        let node = &self.node;
        node.ids.header(node.store.current_revision(), node.status.term.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let r = self.read_request(request).await?;
        let res = self.node.store.range(&r.key, &r.range_end, apply::range_options(&r)).map_err(Error::from)?;
        Ok(Response::new(shape_range(&r, res, self.header())))
    }

    type RangeStreamStream = crate::grpc::range_stream::RangeStream;

    async fn range_stream(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let r = self.read_request(request).await?;
        Ok(Response::new(crate::grpc::range_stream::start(Arc::clone(&self.node), r, self.header())))
    }

    async fn put(&self, request: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let p = request.into_inner();
        Self::check_key(&p.key)?;
        match self.node.propose(Op::Put(p)).await? {
            Applied::Put(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("mismatched apply result")),
        }
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let d = request.into_inner();
        Self::check_key(&d.key)?;
        match self.node.propose(Op::DeleteRange(d)).await? {
            Applied::DeleteRange(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("mismatched apply result")),
        }
    }

    async fn txn(&self, request: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let t = request.into_inner();
        Self::check_txn(&t)?;
        match self.node.propose(Op::Txn(t)).await? {
            Applied::Txn(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("mismatched apply result")),
        }
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        match self.node.propose(Op::Compaction(request.into_inner())).await? {
            Applied::Compaction(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("mismatched apply result")),
        }
    }
}
