//! Linearizable reads: a read that is not serializable first learns, through a ReadIndex round, the commit index
//! the leader had when the read arrived (leadership confirmed by a quorum), then waits until this member has
//! applied up to it, and only then reads its own store.
//!
//! **Invariants**: a linearizable read sees every write acknowledged before it began, on whichever member it runs.
//! The reads that reach the Raft thread together share one ReadIndex round (`consensus::reads`).
//!
//! **Threading**: any async task; it waits on a oneshot from the Raft thread, then on the applied index's watch.
//! raft-rs drops a read index request while the leader has not yet committed an entry of its own term (just after
//! an election), so each attempt waits a short while and a dropped one is asked again, until the request timeout;
//! each retry counts in `etcd_server_slow_read_indexes_total`, and a read index that could not be asked (the Raft
//! thread's queue full) or never came counts in `etcd_server_read_indexes_failed_total`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::consensus::node::{Msg, RaftQueue, RaftStatus};
use crate::error::Error;
use crate::proposals::REQUEST_TIMEOUT;

/// How long one read index request may take before it is asked again.
const READ_INDEX_ATTEMPT: Duration = Duration::from_millis(200);

/// What a linearizable read needs: the Raft thread's queue, the applied index, and the counters it keeps.
#[derive(Debug, Clone)]
pub struct ReadPath {
    pub raft: RaftQueue,
    pub applied: watch::Receiver<u64>,
    pub status: Arc<RaftStatus>,
}

impl ReadPath {
    /// Waits until this member has applied everything committed when the read began (ReadIndex).
    pub async fn linearize(&self) -> Result<(), Error> {
        if crate::failpoints::SKIP_READ_INDEX.eval().is_some() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let index = loop {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if let Err(e) = self.raft.offer(Msg::ReadIndex { reply: tx }) {
                self.status.read_indexes_failed.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
            match tokio::time::timeout(READ_INDEX_ATTEMPT, rx).await {
                Ok(Ok(index)) => break index,
                Ok(Err(_)) => return Err(Error::Stopped),
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    self.status.read_indexes_failed.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Timeout);
                }
                Err(_) => {
                    self.status.slow_read_indexes.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        };
        let mut applied = self.applied.clone();
        tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index))
            .await
            .map_err(|_| Error::Timeout)?
            .map_err(|_| Error::Stopped)?;
        Ok(())
    }
}
