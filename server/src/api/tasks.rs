//! The member's own requests, made as a client of the layers below, like the services: publishing its name and
//! client URLs, revoking expired leases while it leads, and handing leadership over before a graceful stop.
//!
//! **Threading**: async tasks on the runtime the services run on, started and stopped by the wiring.

use std::time::{Duration, Instant};

use crate::apply::lease::Leases;
use crate::consensus::view::ClusterView;
use crate::error::Error;
use crate::logging::log;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb as pb;
use crate::request::Op;

/// How often the leader looks for expired leases.
const LEASE_TICK: Duration = Duration::from_millis(500);
/// Revocations started a tick at most: 1,000 a second, etcd's `leaseRevokeRate`.
const REVOKES_PER_TICK: usize = 500;

/// Before a graceful stop, a leader of several members hands leadership to the best-placed voter, as etcd does,
/// so that a rolling restart costs no election timeout. Gives up after a few election timeouts (the stop goes on).
pub async fn hand_over_leadership(cluster: &ClusterView) {
    let me = cluster.member;
    let others = cluster.registry.read().voters().iter().any(|v| *v != me);
    if !others || !cluster.is_leader() {
        return;
    }
    log("info", "leadership transfer starting before stop", &[("from", format!("{me:x}"))]);
    if cluster.transfer_leader(0).is_err() {
        return;
    }
    if cluster.wait_for_leader(|l| l != me && l != 0).await {
        log("info", "leadership transferred before stop", &[("to", format!("{:x}", cluster.leader()))]);
    } else {
        log("warn", "leadership transfer before stop timed out", &[]);
    }
}

/// Publishes this member's name and client URLs through Raft (etcd's publish), retrying every `retry` until it is
/// applied: until then the member is "unstarted" to the others.
pub async fn publish(proposer: Proposer, cluster: ClusterView, me: pb::Member, retry: Duration) {
    let op = Op::Publish(me);
    loop {
        if cluster.leader() != 0 && proposer.propose(&crate::request::Caller::member(), &op).await.is_ok() {
            let Op::Publish(me) = &op else { return };
            log("info", "published local member to cluster through raft", &[("name", me.name.clone())]);
            // etcd's tooling (its e2e harness among them) waits for this line and the one above.
            let version = crate::api::maintenance::API_VERSION;
            log("info", "enabled capabilities for version", &[("cluster-version", version.to_string())]);
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

/// Proposes the revocation of expired leases, twice a second and at most [`REVOKES_PER_TICK`] each time (the
/// leader decides expiry; see
/// `apply::lease`). On becoming leader, every lease first gets a full TTL again (plus `election`): the old
/// leader's renewals were not seen here.
/// `expired` counts the revocations that went through (`etcd_debugging_server_lease_expired_total`).
pub async fn expire_leases(
    proposer: Proposer,
    cluster: ClusterView,
    leases: Leases,
    election: Duration,
    expired: prometheus::IntCounter,
) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    let mut leading = false;
    loop {
        tick.tick().await;
        let was_leading = leading;
        leading = cluster.is_leader();
        if !leading {
            continue;
        }
        if !was_leading {
            let since = cluster.status.leader_since().unwrap_or_else(Instant::now);
            leases.lock().promote(since, election);
            continue;
        }
        // At most REVOKES_PER_TICK a tick, 1,000 a second as etcd's leaseRevokeRate: an expiry storm (thousands of
        // leases granted together) must not crowd clients' proposals out.
        let due = leases.lock().take_expired(Instant::now(), REVOKES_PER_TICK);
        for id in due {
            let (proposer, leases, expired) = (proposer.clone(), leases.clone(), expired.clone());
            tokio::spawn(async move {
                match proposer
                    .propose(&crate::request::Caller::member(), &Op::LeaseRevoke(pb::LeaseRevokeRequest { id }))
                    .await
                {
                    Ok(_) => expired.inc(),
                    Err(Error::LeaseNotFound) => {}
                    Err(_) => leases.lock().retry(id),
                }
            });
        }
    }
}
