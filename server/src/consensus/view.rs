//! What the services and the wiring see of the cluster and its leadership, without reaching into the Raft thread:
//! this member's id, the membership registry (written by the apply thread), who leads and in which term (published
//! by the Raft thread), which peers are heard from (kept by the transport), the applied index, and the two
//! requests that move leadership or ask for the leader's replication progress.
//!
//! **Threading**: a cheap clone per service; every read is an atomic load or a short read lock, and the requests go
//! through the Raft thread's bounded queue (a full one is "too many requests").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::apply::membership::Shared;
use crate::consensus::node::{Msg, Progress, RaftQueue, RaftStatus};
use crate::consensus::transport::Activity;
use crate::error::Error;

/// The cluster as this member sees it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This member's id.
    pub member: u64,
    /// The members of the cluster.
    pub registry: Arc<Shared>,
    /// Leader, term, commit index and counters, as the Raft thread publishes them.
    pub status: Arc<RaftStatus>,
    /// When each peer was last heard from.
    pub activity: Arc<Activity>,
    raft: RaftQueue,
    applied: watch::Receiver<u64>,
    heartbeat: Duration,
    election: Duration,
}

impl ClusterView {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        member: u64,
        registry: Arc<Shared>,
        status: Arc<RaftStatus>,
        activity: Arc<Activity>,
        raft: RaftQueue,
        applied: watch::Receiver<u64>,
        heartbeat: Duration,
        election: Duration,
    ) -> Self {
        ClusterView { member, registry, status, activity, raft, applied, heartbeat, election }
    }

    /// The leader this member sees (0: none).
    pub fn leader(&self) -> u64 {
        self.status.leader.load(Ordering::Relaxed)
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == self.member
    }

    /// The election timeout.
    pub fn election_timeout(&self) -> Duration {
        self.election
    }

    /// The index this member has applied up to.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Whether this member is a learner.
    pub fn is_learner(&self) -> bool {
        self.registry.read().get(self.member).is_some_and(|m| m.is_learner)
    }

    /// Asks the Raft thread to hand leadership to `target`, or with 0 to the best-placed voter.
    pub fn transfer_leader(&self, target: u64) -> Result<(), Error> {
        self.raft.offer(Msg::TransferLeader { target })
    }

    /// The leader's view of replication (answered by the Raft thread).
    pub async fn progress(&self) -> Result<Progress, Error> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.raft.offer(Msg::Progress { reply })?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Waits (polling once a heartbeat, up to five election timeouts) until the leader this member sees
    /// satisfies `done`; false on the deadline. Leader transfers report their progress this way.
    pub async fn wait_for_leader(&self, done: impl Fn(u64) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + 5 * self.election;
        while !done(self.leader()) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(self.heartbeat).await;
        }
        true
    }
}
