//! Proposals waiting for their entry to be applied: request id → the channel its handler waits on. An entry is
//! matched to its waiter by id (never by position); a waiter that times out removes itself, and an applied entry
//! whose waiter is gone (timed out, or proposed by another member) is simply not answered.
//!
//! **Bound.** At most [`MAX_PENDING`] proposals, and [`MAX_PENDING_BYTES`] of their encoded requests, wait at
//! once; a proposal past either is refused at once with etcd's "too many requests" (a lone proposal larger than
//! the byte bound still passes: `--max-request-bytes` bounds it). Without it, requests offered faster than the
//! member applies them (a client pipelining without limit) would each hold their memory until applied, without
//! end.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::apply::{Applied, Response};
use crate::consensus::node::{Msg, RaftQueue, RaftStatus, apply_lags};
use crate::error::Error;
use crate::request::{Op, RequestId};

/// How long a request waits for its result (etcd's request timeout is about 7 s).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(7);

/// Proposals that may wait at once (etcd's own bound is its apply gap alone: see the module header).
pub const MAX_PENDING: usize = 10_000;
/// Bytes of encoded requests that may wait at once.
pub const MAX_PENDING_BYTES: usize = 128 << 20;

/// The registry.
#[derive(Debug)]
pub struct Proposals {
    next: AtomicU64,
    prefix: u64,
    waiting: Mutex<Waiting>,
}

/// The waiters, each with the bytes its request was charged, and their sum.
#[derive(Debug, Default)]
struct Waiting {
    map: HashMap<RequestId, (oneshot::Sender<Applied>, usize)>,
    bytes: usize,
}

impl Waiting {
    fn remove(&mut self, id: RequestId) -> Option<oneshot::Sender<Applied>> {
        let (tx, bytes) = self.map.remove(&id)?;
        self.bytes -= bytes;
        Some(tx)
    }
}

impl Proposals {
    /// Ids start from this member's id in the high bits, so ids from different members never collide.
    pub fn new(member_id: u64) -> Self {
        Proposals { next: AtomicU64::new(1), prefix: member_id << 40, waiting: Mutex::new(Waiting::default()) }
    }

    /// A fresh id, unique across members, that nobody waits on (e.g. a ReadIndex context).
    pub fn next_id(&self) -> RequestId {
        RequestId(self.prefix ^ self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh id and the receiver its result arrives on.
    pub fn register(&self) -> (RequestId, oneshot::Receiver<Applied>) {
        let id = self.next_id();
        let (tx, rx) = oneshot::channel();
        self.lock().map.insert(id, (tx, 0));
        (id, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges waiter `id` with its request's `bytes`; refuses it (and drops it) past the bounds of the module
    /// header.
    pub fn charge(&self, id: RequestId, bytes: usize) -> Result<(), Error> {
        let mut w = self.lock();
        let over = w.map.len() > MAX_PENDING || (w.bytes > 0 && w.bytes + bytes > MAX_PENDING_BYTES);
        if over {
            w.remove(id);
            return Err(Error::TooManyRequests);
        }
        if let Some(entry) = w.map.get_mut(&id) {
            entry.1 += bytes;
            w.bytes += bytes;
        }
        Ok(())
    }

    /// Proposals waiting to be applied (`etcd_server_proposals_pending`).
    pub fn pending(&self) -> usize {
        self.lock().map.len()
    }

    /// Drops a waiter (timed out, or its proposal could not be sent).
    pub fn cancel(&self, id: RequestId) {
        self.lock().remove(id);
    }
}

/// What a service needs to write: proposes a request through Raft and waits for its applied result. A request
/// over `--max-request-bytes`, a full Raft queue or an apply loop lagging too far is refused at once; a result
/// that does not come within the request timeout is `Timeout`.
#[derive(Debug, Clone)]
pub struct Proposer {
    registry: Arc<Proposals>,
    raft: RaftQueue,
    applied: watch::Receiver<u64>,
    status: Arc<RaftStatus>,
    max_request_bytes: u64,
    timeout: Duration,
    /// Proposals Raft refused or that timed out (`etcd_server_proposals_failed_total`).
    failed: prometheus::IntCounter,
}

impl Proposer {
    pub fn new(
        registry: Arc<Proposals>,
        raft: RaftQueue,
        applied: watch::Receiver<u64>,
        status: Arc<RaftStatus>,
        max_request_bytes: u64,
    ) -> Self {
        let failed = prometheus::IntCounter::new("unregistered", "-").unwrap_or_else(|e| unreachable!("{e}"));
        Proposer { registry, raft, applied, status, max_request_bytes, timeout: REQUEST_TIMEOUT, failed }
    }

    /// Counts failed proposals on `failed` (the server's `etcd_server_proposals_failed_total`).
    pub fn counting_failures(mut self, failed: prometheus::IntCounter) -> Self {
        self.failed = failed;
        self
    }

    /// Proposes `op`, made by `caller`, through Raft and waits for its result. The request stays the caller's
    /// (its response is shaped by it).
    pub async fn propose(&self, caller: &crate::request::Caller, op: &Op) -> Result<Response, Error> {
        let (id, rx) = self.registry.register();
        let data = crate::request::encode(id, caller, op);
        if data.len() as u64 > self.max_request_bytes {
            self.registry.cancel(id);
            return Err(Error::RequestTooLarge);
        }
        if let Err(e) = self.registry.charge(id, data.len()) {
            self.failed.inc();
            return Err(e);
        }
        self.submit(id, Msg::Propose { id, data }, rx).await
    }

    /// A fresh request id and the receiver its result arrives on, for a proposal `submit` sends in another form
    /// (a configuration change).
    pub fn register(&self) -> (RequestId, oneshot::Receiver<Applied>) {
        self.registry.register()
    }

    /// Hands `msg` (a proposal of request `id`) to the Raft thread and waits for the request's result.
    pub async fn submit(&self, id: RequestId, msg: Msg, rx: oneshot::Receiver<Applied>) -> Result<Response, Error> {
        let committed = self.status.commit.load(Ordering::Relaxed);
        let lags = apply_lags(committed, *self.applied.borrow());
        if let Err(e) = if lags { Err(Error::TooManyRequests) } else { self.raft.offer(msg) } {
            self.registry.cancel(id);
            self.failed.inc();
            return Err(e);
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                self.failed.inc();
                Err(Error::Stopped)
            }
            Err(_) => {
                self.registry.cancel(id);
                self.failed.inc();
                Err(Error::Timeout)
            }
        }
    }
}

impl crate::apply::Waiters for Proposals {
    /// Hands an applied result to its waiter, if it is still waiting here.
    fn complete(&self, id: RequestId, result: Applied) {
        if let Some(tx) = self.lock().remove(id) {
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

    fn proposer(queue: usize, max_request_bytes: u64) -> (Proposer, Arc<Proposals>, std::sync::mpsc::Receiver<Msg>) {
        let registry = Arc::new(Proposals::new(7));
        let (tx, rx) = std::sync::mpsc::sync_channel(queue);
        let (_applied_tx, applied) = watch::channel(0);
        let status = Arc::new(RaftStatus::default());
        (Proposer::new(Arc::clone(&registry), RaftQueue::new(tx), applied, status, max_request_bytes), registry, rx)
    }

    fn put(value: usize) -> Op {
        Op::Put(crate::proto::etcdserverpb::PutRequest {
            key: b"k".to_vec(),
            value: vec![7; value],
            ..Default::default()
        })
    }

    /// A proposal reaches the Raft thread encoded with its id, and its applied result comes back to it.
    #[tokio::test]
    async fn a_proposal_travels_with_its_id_and_gets_its_result() {
        use crate::apply::{Outcome, Waiters as _};
        let (p, registry, rx) = proposer(4, 1 << 20);
        let raft = std::thread::spawn(move || match rx.recv().unwrap() {
            Msg::Propose { id, data } => {
                let decoded = <crate::request::InternalRequest as prost::Message>::decode(&data[..]).unwrap();
                assert_eq!(decoded.id, id.0);
                assert_eq!(decoded.op, Some(put(3)));
                registry.complete(id, Ok(Response { revision: 9, term: 2, outcome: Outcome::Put { prev: None } }));
            }
            other => panic!("unexpected {other:?}"),
        });
        let r = p.propose(&crate::request::Caller::default(), &put(3)).await.unwrap();
        assert_eq!((r.revision, r.term), (9, 2));
        raft.join().unwrap();
    }

    /// Refusals come at once and leave no waiter behind: too large, a full queue, a Raft thread that is gone, an
    /// apply loop lagging too far.
    #[tokio::test]
    async fn refusals_leave_no_waiter() {
        let (p, registry, rx) = proposer(1, 64);
        assert!(matches!(p.propose(&crate::request::Caller::default(), &put(100)).await, Err(Error::RequestTooLarge)));
        assert_eq!(registry.pending(), 0);
        p.raft.offer(Msg::Stop).unwrap();
        assert!(matches!(p.propose(&crate::request::Caller::default(), &put(1)).await, Err(Error::TooManyRequests)));
        assert_eq!(registry.pending(), 0);
        rx.recv().unwrap();
        p.status.commit.store(crate::consensus::node::MAX_APPLY_GAP + 1, Ordering::Relaxed);
        assert!(matches!(p.propose(&crate::request::Caller::default(), &put(1)).await, Err(Error::TooManyRequests)));
        p.status.commit.store(0, Ordering::Relaxed);
        drop(rx);
        assert!(matches!(p.propose(&crate::request::Caller::default(), &put(1)).await, Err(Error::Stopped)));
        assert_eq!(registry.pending(), 0);
    }

    /// A result that never comes is a timeout, and the waiter is gone after it.
    #[tokio::test(start_paused = true)]
    async fn a_result_that_never_comes_times_out() {
        let (p, registry, _rx) = proposer(4, 1 << 20);
        assert!(matches!(p.propose(&crate::request::Caller::default(), &put(1)).await, Err(Error::Timeout)));
        assert_eq!(registry.pending(), 0);
    }

    /// Past MAX_PENDING waiters, or MAX_PENDING_BYTES of them, a proposal is refused and leaves no waiter; one
    /// proposal alone passes whatever its size; settled waiters give their bytes back.
    #[test]
    fn waiters_are_bounded_in_number_and_bytes() {
        let r = Proposals::new(1);
        let ids: Vec<RequestId> = (0..MAX_PENDING)
            .map(|_| {
                let (id, _rx) = r.register();
                r.charge(id, 10).unwrap();
                id
            })
            .collect();
        let (id, _rx) = r.register();
        assert!(matches!(r.charge(id, 10), Err(Error::TooManyRequests)));
        assert_eq!(r.pending(), MAX_PENDING);
        for id in ids {
            r.cancel(id);
        }
        assert_eq!((r.pending(), r.lock().bytes), (0, 0));
        let (big, _rx) = r.register();
        r.charge(big, MAX_PENDING_BYTES * 2).unwrap();
        let (next, _rx) = r.register();
        assert!(matches!(r.charge(next, 1), Err(Error::TooManyRequests)));
        crate::apply::Waiters::complete(&r, big, Err(Error::Stopped));
        let (next, _rx) = r.register();
        r.charge(next, 1).unwrap();
        assert_eq!(r.lock().bytes, 1);
    }

    #[test]
    fn ids_differ_across_members() {
        let (x, y) = (Proposals::new(1), Proposals::new(2));
        let xs: std::collections::HashSet<_> = (0..1000).map(|_| x.next_id()).collect();
        assert!((0..1000).all(|_| !xs.contains(&y.next_id())));
    }
}
