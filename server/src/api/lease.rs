//! The Lease service: grant and revoke through Raft; keep-alive, time-to-live and the list from the lessor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::convert::{FromApplied, Headers};
use crate::apply::lease::{Leases, MAX_TTL};
use crate::consensus::node::{Msg, RaftQueue, RaftStatus};
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, lease_server::Lease};
use crate::request::Op;

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    pub proposer: Proposer,
    pub leases: Leases,
    pub headers: Headers,
    /// Where a follower forwards keep-alives (to the leader, which decides expiry), and who leads.
    pub raft: RaftQueue,
    pub status: Arc<RaftStatus>,
    /// The shortest TTL granted, in seconds (see [`min_ttl`]).
    pub min_ttl: i64,
    /// `--quota-backend-bytes`, checked before a grant is proposed.
    pub quota: crate::api::quota::Quota,
    /// Who may see a lease's keys (a revoke's permissions are checked by the apply loop).
    pub auth: crate::apply::perms::Auth,
}

/// Source of lease ids: random high bits (so restarts and members do not collide), a counter below them.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn new_id(member: u64) -> i64 {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (((member ^ t) << 24 ^ n) & (i64::MAX as u64)).max(1) as i64
}

/// The shortest TTL etcd grants, long enough to survive a leader election: one and a half election timeouts
/// counted in whole heartbeats, rounded up to seconds (2 s with the default flags, as etcd grants).
pub fn min_ttl(election_ms: u64, heartbeat_ms: u64) -> i64 {
    let ticks = election_ms / heartbeat_ms.max(1);
    ((3 * ticks / 2) * heartbeat_ms).div_ceil(1000) as i64
}

impl LeaseService {
    /// Proposes `op` for the sender of `request` (the apply loop checks a revoke's permissions).
    async fn write<T: FromApplied, R>(&self, request: &Request<R>, op: Op) -> Result<Response<T>, Status> {
        let caller = crate::api::auth::caller(&self.auth, request)?;
        Ok(Response::new(crate::api::convert::write(&self.proposer, &self.headers, &caller, op).await?))
    }
}

pub type Stream<T> = std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

impl LeaseService {
    /// Answers each keep-alive of `inbound` (the gRPC stream's, or the JSON gateway's) until it ends or the answers
    /// are no longer read.
    pub fn keep_alive(
        &self,
        mut inbound: impl tonic::codegen::tokio_stream::Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>>
        + Unpin
        + Send
        + 'static,
    ) -> Stream<pb::LeaseKeepAliveResponse> {
        use tonic::codegen::tokio_stream::StreamExt;
        let (tx, rx) = mpsc::channel(64);
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(Ok(req)) = inbound.next().await {
                // An unknown (or expired) lease renews to TTL 0, as etcd answers. A follower renews its own copy
                // (for TimeToLive) and forwards the renewal to the leader, which decides expiry.
                let ttl = this.leases.lock().renew(req.id, std::time::Instant::now()).unwrap_or(0);
                if ttl > 0 && this.status.leader.load(Ordering::Relaxed) != this.headers.member {
                    let _ = this.raft.offer(Msg::RenewLeases(vec![req.id]));
                } else if ttl > 0 {
                    this.leases.renewed_by_leader();
                }
                let header = this.headers.now();
                if tx.send(Ok(pb::LeaseKeepAliveResponse { header, id: req.id, ttl })).await.is_err() {
                    return;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let mut g = *request.get_ref();
        if g.ttl > MAX_TTL {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        g.ttl = g.ttl.max(self.min_ttl);
        if g.id == 0 {
            g.id = new_id(self.headers.member);
        }
        let op = Op::LeaseGrant(g);
        self.quota.check(&op).await?;
        self.write(&request, op).await
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let op = Op::LeaseRevoke(*request.get_ref());
        self.write(&request, op).await
    }

    type LeaseKeepAliveStream = Stream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        Ok(Response::new(self.keep_alive(request.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let caller = crate::api::auth::caller(&self.auth, &request)?;
        let r = request.into_inner();
        let found = self.leases.lock().time_to_live(r.id, std::time::Instant::now());
        // As etcd 3.5: the lease's keys are told only to whom may read every one of them.
        if let Some((_, _, keys)) = &found {
            let state = self.auth.current();
            for k in keys {
                state.range_permitted(&caller, k, &[])?;
            }
        }
        let (ttl, granted, keys) = match found {
            Some((ttl, granted, keys)) => (ttl, granted, if r.keys { keys } else { Vec::new() }),
            None => (-1, 0, Vec::new()),
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.headers.now(),
            id: r.id,
            ttl,
            granted_ttl: granted,
            keys,
        }))
    }

    async fn lease_leases(
        &self,
        _: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let leases = self.leases.lock().ids().into_iter().map(|id| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse { header: self.headers.now(), leases }))
    }
}
