//! The Lease service: grant and revoke through Raft; keep-alive, time-to-live and the list from the lessor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::api::node::Node;
use crate::apply::Response as Applied;
use crate::apply::lease::MAX_TTL;
use crate::error::Error;
use crate::proto::etcdserverpb::{self as pb, lease_server::Lease};
use crate::request::Op;

/// The Lease service.
#[derive(Debug, Clone)]
pub struct LeaseService {
    pub node: Arc<Node>,
}

/// Source of lease ids: random high bits (so restarts and members do not collide), a counter below them.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn new_id(member: u64) -> i64 {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (((member ^ t) << 24 ^ n) & (i64::MAX as u64)).max(1) as i64
}

impl LeaseService {
    fn header(&self) -> Option<pb::ResponseHeader> {
        self.node.ids.header(self.node.store().current_revision(), self.node.status.term.load(Ordering::Relaxed))
    }

    /// The shortest TTL etcd grants, long enough to survive a leader election: one and a half election timeouts
    /// counted in whole heartbeats, rounded up to seconds (2 s with the default flags, as etcd grants).
    fn min_ttl(&self) -> i64 {
        let c = &self.node.config;
        let ticks = c.election_ms / c.heartbeat_ms.max(1);
        ((3 * ticks / 2) * c.heartbeat_ms).div_ceil(1000) as i64
    }
}

type Stream<T> = std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let mut g = request.into_inner();
        if g.ttl > MAX_TTL {
            return Err(Error::LeaseTtlTooLarge.into());
        }
        g.ttl = g.ttl.max(self.min_ttl());
        if g.id == 0 {
            g.id = new_id(self.node.ids.member);
        }
        match self.node.propose(Op::LeaseGrant(g)).await? {
            Applied::LeaseGrant(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("mismatched apply result")),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        match self.node.propose(Op::LeaseRevoke(request.into_inner())).await? {
            Applied::LeaseRevoke(r) => Ok(Response::new(r)),
            _ => Err(Status::internal("mismatched apply result")),
        }
    }

    type LeaseKeepAliveStream = Stream<pb::LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let node = Arc::clone(&self.node);
        tokio::spawn(async move {
            while let Ok(Some(req)) = inbound.message().await {
                // An unknown (or expired) lease renews to TTL 0, as etcd answers. A follower renews its own copy
                // (for TimeToLive) and forwards the renewal to the leader, which decides expiry.
                let ttl = node.leases().renew(req.id, std::time::Instant::now()).unwrap_or(0);
                if ttl > 0 && node.status.leader.load(Ordering::Relaxed) != node.ids.member {
                    let _ = node.raft.offer(crate::consensus::node::Msg::RenewLeases(vec![req.id]));
                }
                let header = node.ids.header(node.store().current_revision(), node.status.term.load(Ordering::Relaxed));
                if tx.send(Ok(pb::LeaseKeepAliveResponse { header, id: req.id, ttl })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        let found = self.node.leases().time_to_live(r.id, std::time::Instant::now());
        let (ttl, granted, keys) = match found {
            Some((ttl, granted, keys)) => (ttl, granted, if r.keys { keys } else { Vec::new() }),
            None => (-1, 0, Vec::new()),
        };
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.header(),
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
        let leases = self.node.leases().ids().into_iter().map(|id| pb::LeaseStatus { id }).collect();
        Ok(Response::new(pb::LeaseLeasesResponse { header: self.header(), leases }))
    }
}
