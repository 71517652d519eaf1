//! What the services share: the member's handles on the layers below (proposals, the Raft thread, the store
//! slot, the lessor, the membership registry, the watch broadcast), built by the wiring (`server::run`).
//!
//! Today every service takes the whole `Node`; narrower handles, each service taking only what it uses, are the
//! next step (see docs/design.md).

use std::sync::Arc;
use std::time::Duration;

use mvcc::Store;
use tokio::sync::watch;

use crate::apply::Ids;
use crate::config::Config;
use crate::consensus::node::{Msg, RaftStatus};
use crate::error::Error;
use crate::proposals::Proposals;

/// What every service shares.
#[derive(Debug)]
pub struct Node {
    pub config: Config,
    /// The store; see [`Node::store`].
    pub stores: Arc<crate::apply::store::StoreSlot>,
    pub proposals: Arc<Proposals>,
    pub raft: crate::consensus::node::RaftQueue,
    pub applied: watch::Receiver<u64>,
    pub status: Arc<RaftStatus>,
    pub ids: Ids,
    /// The members of the cluster (see `membership`).
    pub cluster: Arc<crate::apply::membership::Shared>,
    /// When each peer was last heard from (membership changes consult it).
    pub activity: Arc<crate::consensus::transport::Activity>,
    /// Each committed revision's changes, for watchers.
    pub events: tokio::sync::broadcast::Sender<Arc<crate::apply::Batch>>,
    pub lessor: Arc<std::sync::Mutex<crate::apply::lease::Lessor>>,
    /// The WAL's live metrics, for /metrics.
    pub wal_metrics: Arc<wal::Metrics>,
    /// Held by the leader while it makes one membership change (see `api::cluster`).
    pub membership_lock: tokio::sync::Mutex<()>,
    /// Linearizable reads (ReadIndex, then the applied index).
    pub reads: crate::read::ReadPath,
    /// Set once a graceful stop begins: long maintenance work (defragmentation) ends at its next step.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl Node {
    /// The current store (an installed snapshot replaces it; a reader keeps the one it took until it is done).
    pub fn store(&self) -> Arc<Store> {
        self.stores.get()
    }

    /// Proposes `op` through Raft and waits for its result.
    pub async fn propose(&self, op: crate::request::Op) -> Result<crate::apply::Response, Error> {
        use prost::Message;
        let (id, rx) = self.proposals.register();
        let data = crate::request::InternalRequest { id: id.0, op: Some(op) }.encode_to_vec();
        if data.len() as u64 > self.config.max_request_bytes {
            self.proposals.cancel(id);
            return Err(Error::RequestTooLarge);
        }
        self.submit(id, Msg::Propose { id, data }, rx).await
    }

    /// Hands `msg` (a proposal of request `id`) to the Raft thread and waits for the request's result.
    pub async fn submit(
        &self,
        id: crate::request::RequestId,
        msg: Msg,
        rx: tokio::sync::oneshot::Receiver<crate::apply::Applied>,
    ) -> Result<crate::apply::Response, Error> {
        let committed = self.status.commit.load(std::sync::atomic::Ordering::Relaxed);
        let lags = crate::consensus::node::apply_lags(committed, *self.applied.borrow());
        if let Err(e) = if lags { Err(Error::TooManyRequests) } else { self.raft.offer(msg) } {
            self.proposals.cancel(id);
            return Err(e);
        }
        match tokio::time::timeout(crate::proposals::REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => {
                self.proposals.cancel(id);
                Err(Error::Timeout)
            }
        }
    }

    /// Waits (polling once a heartbeat, up to five election timeouts) until the leader this member sees
    /// satisfies `done`; false on the deadline. Leader transfers report their progress this way.
    pub async fn wait_for_leader(&self, done: impl Fn(u64) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5 * self.config.election_ms);
        while !done(self.status.leader.load(std::sync::atomic::Ordering::Relaxed)) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(self.config.heartbeat_ms)).await;
        }
        true
    }

    /// The lessor, locked.
    pub fn leases(&self) -> std::sync::MutexGuard<'_, crate::apply::lease::Lessor> {
        self.lessor.lock().unwrap_or_else(|p| p.into_inner())
    }
}
