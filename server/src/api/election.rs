//! etcd's Election service (`v3electionpb.Election`), as etcd 3.4 serves it: clientv3's election recipe run on the
//! server (see `recipes`). A campaigner's key is `name/<lease hex>`, holding its proclaimed value; the oldest key
//! under `name/` is the leader. A `LeaderKey` (name, key, create revision, lease) is the proof of leadership that
//! `Proclaim` and `Resign` check against the key's create revision.
//!
//! Errors are etcd's texts, which its clients match: "election: not leader", "election: no leader",
//! "\"leader\" field must be provided" (gRPC code Unknown, as a plain Go error reaches the client).

use std::pin::Pin;

use tonic::codegen::tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};

use crate::api::recipes::{self, Caller, Recipes};
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb::KeyValue;
use crate::proto::v3electionpb::{self as epb, election_server::Election};

const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = "\"leader\" field must be provided";

/// Observers' responses waiting to be sent, per stream.
const OBSERVE_BUFFER: usize = 16;

/// The Election service.
#[derive(Debug, Clone)]
pub struct ElectionService {
    pub recipes: Recipes,
}

/// Puts `value` on the leader's key if it is still the key created at `rev` (clientv3's `Proclaim`).
async fn proclaim(
    r: &Recipes,
    caller: &Caller,
    leader: &epb::LeaderKey,
    value: &[u8],
) -> Result<pb::TxnResponse, Status> {
    let txn = pb::TxnRequest {
        compare: vec![recipes::created_at(&leader.key, leader.rev)],
        success: vec![recipes::put_op(&leader.key, value, leader.lease)],
        failure: vec![],
    };
    let resp = r.txn(caller, txn).await?;
    if !resp.succeeded {
        return Err(Status::unknown(NOT_LEADER));
    }
    Ok(resp)
}

/// Deletes the leader's key if it is still the key created at `rev` (clientv3's `Resign`).
async fn resign(r: &Recipes, caller: &Caller, leader: &epb::LeaderKey) -> Result<pb::TxnResponse, Status> {
    let del = pb::DeleteRangeRequest { key: leader.key.clone(), ..Default::default() };
    let txn = pb::TxnRequest {
        compare: vec![recipes::created_at(&leader.key, leader.rev)],
        success: vec![pb::RequestOp { request: Some(pb::request_op::Request::RequestDeleteRange(del)) }],
        failure: vec![],
    };
    r.txn(caller, txn).await
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<epb::CampaignRequest>,
    ) -> Result<Response<epb::CampaignResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let r = &self.recipes;
        let lease = r.session_lease(&caller, req.lease).await?;
        let prefix = recipes::prefix_of(&req.name);
        let key = recipes::contender_key(&prefix, lease);
        let txn = pb::TxnRequest {
            compare: vec![recipes::created_at(&key, 0)],
            success: vec![recipes::put_op(&key, &req.value, lease)],
            failure: vec![recipes::get_op(&key)],
        };
        let resp = r.txn(&caller, txn).await?;
        let mut leader =
            epb::LeaderKey { name: req.name.clone(), key, rev: resp.header.as_ref().map_or(0, |h| h.revision), lease };
        let mut differs = false;
        if !resp.succeeded {
            // This lease campaigned already: keep its place, with the value asked for now.
            let Some(kv) = recipes::txn_kvs(&resp, 0).first() else { return Err(Status::unknown(NOT_LEADER)) };
            leader.rev = kv.create_revision;
            differs = kv.value != req.value;
        }
        // A campaign that goes away, or fails, before it leads resigns.
        let (undo_r, undo_caller, undo_leader) = (r.clone(), caller.clone(), leader.clone());
        let mut undo = recipes::Undo::new(async move {
            let _ = resign(&undo_r, &undo_caller, &undo_leader).await;
        });
        if differs {
            proclaim(r, &caller, &leader, &req.value).await?;
        }
        r.wait_deletes(&caller, &prefix, leader.rev - 1).await?;
        undo.disarm();
        Ok(Response::new(epb::CampaignResponse { header: resp.header, leader: Some(leader) }))
    }

    async fn proclaim(
        &self,
        request: Request<epb::ProclaimRequest>,
    ) -> Result<Response<epb::ProclaimResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let resp = proclaim(&self.recipes, &caller, &leader, &req.value).await?;
        Ok(Response::new(epb::ProclaimResponse { header: resp.header }))
    }

    async fn leader(&self, request: Request<epb::LeaderRequest>) -> Result<Response<epb::LeaderResponse>, Status> {
        let caller = Caller::of(&request);
        let prefix = recipes::prefix_of(&request.into_inner().name);
        let resp = self.recipes.range(&caller, recipes::first_created(&prefix)).await?;
        let kv = resp.kvs.into_iter().next().ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(Response::new(epb::LeaderResponse { header: resp.header, kv: Some(kv) }))
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<epb::LeaderResponse, Status>> + Send>>;

    async fn observe(&self, request: Request<epb::LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let caller = Caller::of(&request);
        let prefix = recipes::prefix_of(&request.into_inner().name);
        let (tx, rx) = tokio::sync::mpsc::channel(OBSERVE_BUFFER);
        let r = self.recipes.clone();
        tokio::spawn(async move {
            let failed = tokio::select! {
                e = observe(&r, &caller, &prefix, &tx) => e,
                () = tx.closed() => return,
            };
            let _ = tx.send(Err(failed)).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<epb::ResignRequest>) -> Result<Response<epb::ResignResponse>, Status> {
        let caller = Caller::of(&request);
        let leader = request.into_inner().leader.ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let resp = resign(&self.recipes, &caller, &leader).await?;
        Ok(Response::new(epb::ResignResponse { header: resp.header }))
    }
}

type Observed = tokio::sync::mpsc::Sender<Result<epb::LeaderResponse, Status>>;

/// Streams the election's leaders in order, as clientv3's `Observe`: the current leader, every value it
/// proclaims, and when its key goes, the next leader. Runs until the stream closes or a read fails.
async fn observe(r: &Recipes, caller: &Caller, prefix: &[u8], tx: &Observed) -> Status {
    let send = |header: pb::ResponseHeader, kv: KeyValue| {
        tx.send(Ok(epb::LeaderResponse { header: Some(header), kv: Some(kv) }))
    };
    loop {
        // The leader now, or the first key put under the prefix (invariant 2 of `recipes`: subscribed first).
        let mut changes = r.subscribe();
        let resp = match r.range(caller, recipes::first_created(prefix)).await {
            Ok(resp) => resp,
            Err(e) => return e,
        };
        let mut header = resp.header.unwrap_or_default();
        let read_at = header.revision;
        let kv = match resp.kvs.into_iter().next() {
            Some(kv) => kv,
            None => match recipes::wait_change(&mut changes, read_at, |c| !c.deleted && c.kv.key.starts_with(prefix))
                .await
            {
                Ok(Some((c, _))) => {
                    header.revision = c.kv.mod_revision;
                    crate::api::convert::to_pb(c.kv)
                }
                Ok(None) => continue,
                Err(e) => return e,
            },
        };
        let key = kv.key.clone();
        if send(header, kv).await.is_err() {
            return Status::cancelled("observer gone");
        }
        // Follow that key: each put is a proclamation, its deletion ends this leader.
        loop {
            match recipes::wait_change(&mut changes, read_at, |c| c.kv.key == key).await {
                Ok(Some((c, revision))) if !c.deleted => {
                    header.revision = revision;
                    if send(header, crate::api::convert::to_pb(c.kv)).await.is_err() {
                        return Status::cancelled("observer gone");
                    }
                }
                Ok(Some(_)) => break,
                // Lagged or resynced: whether the key is still there is read again from the top.
                Ok(None) => break,
                Err(e) => return e,
            }
        }
    }
}
