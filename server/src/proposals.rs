//! Proposals waiting for their entry to be applied: request id → the channel its handler waits on. An entry is
//! matched to its waiter by id (never by position); a waiter that times out removes itself, and an applied entry
//! whose waiter is gone (timed out, or proposed by another member) is simply not answered.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::apply::Applied;
use crate::request::RequestId;

/// How long a request waits for its result (etcd's request timeout is about 7 s).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(7);

/// The registry.
#[derive(Debug)]
pub struct Proposals {
    next: AtomicU64,
    prefix: u64,
    waiting: Mutex<HashMap<RequestId, oneshot::Sender<Applied>>>,
}

impl Proposals {
    /// Ids start from this member's id in the high bits, so ids from different members never collide.
    pub fn new(member_id: u64) -> Self {
        Proposals { next: AtomicU64::new(1), prefix: member_id << 40, waiting: Mutex::new(HashMap::new()) }
    }

    /// A fresh id, unique across members, that nobody waits on (e.g. a ReadIndex context).
    pub fn next_id(&self) -> RequestId {
        RequestId(self.prefix ^ self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh id and the receiver its result arrives on.
    pub fn register(&self) -> (RequestId, oneshot::Receiver<Applied>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        (id, rx)
    }

    /// Proposals waiting to be applied (`etcd_server_proposals_pending`).
    pub fn pending(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Drops a waiter (timed out, or its proposal could not be sent).
    pub fn cancel(&self, id: RequestId) {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
    }
}

impl crate::apply::Waiters for Proposals {
    /// Hands an applied result to its waiter, if it is still waiting here.
    fn complete(&self, id: RequestId, result: Applied) {
        if let Some(tx) = self.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
            let _ = tx.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Waiters as _;

    #[test]
    fn results_reach_their_waiter_by_id_and_no_one_else() {
        let p = Proposals::new(0xabc);
        let (a, mut rx_a) = p.register();
        let (b, mut rx_b) = p.register();
        assert_ne!(a, b);
        assert_eq!(p.pending(), 2);
        p.complete(b, Err(crate::error::Error::NoLeader));
        assert!(matches!(rx_b.try_recv(), Ok(Err(crate::error::Error::NoLeader))));
        assert!(rx_a.try_recv().is_err(), "a's result has not come");
        p.cancel(a);
        p.complete(a, Err(crate::error::Error::Timeout));
        assert!(rx_a.try_recv().is_err(), "a cancelled waiter gets nothing");
        assert_eq!(p.pending(), 0);
        // An entry proposed on another member (an id nobody here waits on) is simply not answered.
        p.complete(RequestId(42), Err(crate::error::Error::Timeout));
    }

    #[test]
    fn ids_differ_across_members() {
        let (x, y) = (Proposals::new(1), Proposals::new(2));
        let xs: std::collections::HashSet<_> = (0..1000).map(|_| x.next_id()).collect();
        assert!((0..1000).all(|_| !xs.contains(&y.next_id())));
    }
}
