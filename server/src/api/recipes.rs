//! The concurrency recipes behind etcd's Lock and Election services (etcd runs clientv3's `concurrency` package
//! inside the server): contenders put one key each under `name/`, named by their lease in hex and attached to it;
//! the key with the oldest create revision holds the lock or the leadership, and every other contender waits for
//! the deletion of each key created before its own, newest first (`wait_deletes`).
//!
//! **Invariants**
//! 1. Every read and write is a request to the KV (or Lease) service carrying the caller's metadata and
//!    extensions, so authentication, permissions, quotas and the linearizable read path apply exactly as to the
//!    caller's own requests.
//! 2. A wait never misses a deletion: it subscribes to the apply thread's committed changes *before* it reads, and
//!    any doubt (a lagging subscription, an installed snapshot) ends the wait early so that the caller reads again.
//!
//! **Threading**: async, on the client's request task; nothing is shared beyond the KV service's own handles.

use std::sync::Arc;

use tokio::sync::broadcast;
use tonic::{Request, Status};

use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::apply::Batch;
use crate::proto::etcdserverpb::{self as pb, compare, kv_server::Kv, lease_server::Lease, range_request, request_op};

/// The TTL of the lease granted for a contender that gave none (clientv3's default session TTL).
pub const DEFAULT_SESSION_TTL: i64 = 60;

/// Who asked: what the KV service needs to check the caller (its token, its client certificate).
#[derive(Debug, Clone)]
pub struct Caller {
    metadata: tonic::metadata::MetadataMap,
    extensions: tonic::Extensions,
}

impl Caller {
    pub fn of<T>(request: &Request<T>) -> Self {
        Caller { metadata: request.metadata().clone(), extensions: request.extensions().clone() }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        Request::from_parts(self.metadata.clone(), self.extensions.clone(), message)
    }
}

/// Work to run if a call ends before it holds what it waited for: the client went away (the call's future is
/// dropped) or a read or write failed. Spawned on the runtime when dropped armed; [`Undo::disarm`] once held.
pub struct Undo(Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>);

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undo").field("armed", &self.0.is_some()).finish()
    }
}

impl Undo {
    pub fn new(work: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Undo(Some(Box::pin(work)))
    }

    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let (Some(work), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(work);
        }
    }
}

/// The services the recipes run on, and the committed changes they wait on.
#[derive(Debug, Clone)]
pub struct Recipes {
    pub kv: KvService,
    pub lease: LeaseService,
    pub events: broadcast::Sender<Arc<Batch>>,
}

/// The prefix under which a lock's or an election's contenders put their keys: its name and a slash.
pub fn prefix_of(name: &[u8]) -> Vec<u8> {
    [name, b"/"].concat()
}

/// The key a contender with `lease` puts under `prefix` (clientv3: `fmt.Sprintf("%s%x", pfx, lease)`).
pub fn contender_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    [prefix, format!("{lease:x}").as_bytes()].concat()
}

/// The end of the range of keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The oldest key under `prefix` (clientv3's `WithFirstCreate`).
pub fn first_created(prefix: &[u8]) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: range_request::SortOrder::Ascend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        ..Default::default()
    }
}

/// The newest key under `prefix` created at or before `max_create_revision` (`WithLastCreate`, `WithMaxCreateRev`).
fn last_created(prefix: &[u8], max_create_revision: i64) -> pb::RangeRequest {
    pb::RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: range_request::SortOrder::Descend as i32,
        sort_target: range_request::SortTarget::Create as i32,
        max_create_revision,
        ..Default::default()
    }
}

/// A compare of `key`'s create revision with `revision`.
pub fn created_at(key: &[u8], revision: i64) -> pb::Compare {
    pb::Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(compare::TargetUnion::CreateRevision(revision)),
        ..Default::default()
    }
}

pub fn put_op(key: &[u8], value: &[u8], lease: i64) -> pb::RequestOp {
    let put = pb::PutRequest { key: key.to_vec(), value: value.to_vec(), lease, ..Default::default() };
    pb::RequestOp { request: Some(request_op::Request::RequestPut(put)) }
}

pub fn range_op(range: pb::RangeRequest) -> pb::RequestOp {
    pb::RequestOp { request: Some(request_op::Request::RequestRange(range)) }
}

pub fn get_op(key: &[u8]) -> pb::RequestOp {
    range_op(pb::RangeRequest { key: key.to_vec(), ..Default::default() })
}

/// The key-values of the `i`th response of a transaction, which must be a range.
pub fn txn_kvs(resp: &pb::TxnResponse, i: usize) -> &[crate::proto::mvccpb::KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(pb::response_op::Response::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// An error of the KV or Lease service as etcd's Lock and Election services pass it on. etcd runs the recipes
/// through its Go client, which turns each of its own errors ("etcdserver: …") into a plain Go error; gRPC then
/// answers that with code Unknown and the same message. Any other status keeps its code.
fn as_passed_on(status: Status) -> Status {
    if status.message().starts_with("etcdserver: ") { Status::unknown(status.message()) } else { status }
}

impl Recipes {
    pub async fn txn(&self, caller: &Caller, txn: pb::TxnRequest) -> Result<pb::TxnResponse, Status> {
        Ok(self.kv.txn(caller.request(txn)).await.map_err(as_passed_on)?.into_inner())
    }

    pub async fn range(&self, caller: &Caller, range: pb::RangeRequest) -> Result<pb::RangeResponse, Status> {
        Ok(self.kv.range(caller.request(range)).await.map_err(as_passed_on)?.into_inner())
    }

    pub async fn delete(&self, caller: &Caller, key: &[u8]) -> Result<pb::DeleteRangeResponse, Status> {
        let del = pb::DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
        Ok(self.kv.delete_range(caller.request(del)).await.map_err(as_passed_on)?.into_inner())
    }

    /// The caller's lease, or a new one of [`DEFAULT_SESSION_TTL`] seconds when it gave none (`NewSession`).
    pub async fn session_lease(&self, caller: &Caller, lease: i64) -> Result<i64, Status> {
        if lease != 0 {
            return Ok(lease);
        }
        let grant = pb::LeaseGrantRequest { ttl: DEFAULT_SESSION_TTL, id: 0 };
        Ok(self.lease.lease_grant(caller.request(grant)).await.map_err(as_passed_on)?.into_inner().id)
    }

    /// Waits until no key under `prefix` created at or before `max_create_revision` is left, newest first, and
    /// returns the header of the read that found none (clientv3's `waitDeletes`).
    pub async fn wait_deletes(
        &self,
        caller: &Caller,
        prefix: &[u8],
        max_create_revision: i64,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        loop {
            // Invariant 2: subscribed before the read.
            let mut changes = self.subscribe();
            let resp = self.range(caller, last_created(prefix, max_create_revision)).await?;
            let Some(kv) = resp.kvs.first() else { return Ok(resp.header) };
            let read_at = resp.header.as_ref().map_or(0, |h| h.revision);
            wait_change(&mut changes, read_at, |c| c.deleted && c.kv.key == kv.key).await?;
        }
    }

    /// Subscribes to committed changes (before a read, for [`wait_change`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.events.subscribe()
    }
}

/// Waits for a change committed after revision `after` (what the caller's read saw) that `wanted` picks, returning
/// it with its revision; `None` when the wait ended early (the subscription lagged or the store was replaced) and
/// the caller must read again (invariant 2).
pub async fn wait_change(
    changes: &mut broadcast::Receiver<Arc<Batch>>,
    after: i64,
    wanted: impl Fn(&mvcc::Change) -> bool,
) -> Result<Option<(mvcc::Change, i64)>, Status> {
    loop {
        match changes.recv().await {
            Ok(batch) if batch.resync => return Ok(None),
            Ok(batch) if batch.revision <= after => {}
            Ok(batch) => {
                if let Some(c) = batch.changes.iter().find(|c| wanted(c)) {
                    return Ok(Some((c.clone(), batch.revision)));
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(None),
            Err(broadcast::error::RecvError::Closed) => return Err(Status::unavailable("etcdserver: server stopped")),
        }
    }
}
