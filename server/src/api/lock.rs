//! etcd's Lock service (`v3lockpb.Lock`), as etcd 3.4 serves it: clientv3's mutex recipe run on the server
//! (see `recipes`). `Lock` puts the caller's key `name/<lease hex>` if it is not there yet, and returns once every
//! key under `name/` created before it is gone; the key lives as long as the lease or until `Unlock` deletes it.
//!
//! A `Lock` that ends before it holds the lock (the client went away, or a read or write failed) deletes its key,
//! so that it never blocks the contenders behind it (etcd: "release lock key if wait failed").

use tonic::{Request, Response, Status};

use crate::api::recipes::{self, Caller, Recipes};
use crate::proto::etcdserverpb as pb;
use crate::proto::v3lockpb::{self as lockpb, lock_server::Lock};

/// The Lock service.
#[derive(Debug, Clone)]
pub struct LockService {
    pub recipes: Recipes,
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<lockpb::LockRequest>) -> Result<Response<lockpb::LockResponse>, Status> {
        let caller = Caller::of(&request);
        let req = request.into_inner();
        let r = &self.recipes;
        let lease = r.session_lease(&caller, req.lease).await?;
        let prefix = recipes::prefix_of(&req.name);
        let key = recipes::contender_key(&prefix, lease);
        // Put the key unless this lease has one already (locking twice with one lease is one acquisition), and
        // read the holder in the same transaction.
        let txn = pb::TxnRequest {
            compare: vec![recipes::created_at(&key, 0)],
            success: vec![recipes::put_op(&key, b"", lease), recipes::range_op(recipes::first_created(&prefix))],
            failure: vec![recipes::get_op(&key), recipes::range_op(recipes::first_created(&prefix))],
        };
        let resp = r.txn(&caller, txn).await?;
        let header = resp.header;
        let my_rev = if resp.succeeded {
            header.as_ref().map_or(0, |h| h.revision)
        } else {
            recipes::txn_kvs(&resp, 0).first().map_or(0, |kv| kv.create_revision)
        };
        let holder = recipes::txn_kvs(&resp, 1).first().map(|kv| kv.create_revision);
        if holder.is_none_or(|rev| rev == my_rev) {
            return Ok(Response::new(lockpb::LockResponse { header, key }));
        }
        // A waiter that goes away, or fails, deletes its key.
        let (undo_r, undo_caller, undo_key) = (r.clone(), caller.clone(), key.clone());
        let mut undo = recipes::Undo::new(async move {
            let _ = undo_r.delete(&undo_caller, &undo_key).await;
        });
        let header = r.wait_deletes(&caller, &prefix, my_rev - 1).await?;
        undo.disarm();
        Ok(Response::new(lockpb::LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        request: Request<lockpb::UnlockRequest>,
    ) -> Result<Response<lockpb::UnlockResponse>, Status> {
        let caller = Caller::of(&request);
        let resp = self.recipes.delete(&caller, &request.into_inner().key).await?;
        Ok(Response::new(lockpb::UnlockResponse { header: resp.header }))
    }
}
