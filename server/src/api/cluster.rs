//! The Cluster service: MemberList from the registry, and MemberAdd, MemberRemove, MemberUpdate and
//! MemberPromote as Raft configuration changes (see `membership`), with etcd's safety rules and errors.
//!
//! Changes are decided by the leader, which knows which members it hears from: a follower forwards the call to
//! the leader's client URL. On the leader, one change runs at a time (Raft takes one configuration change at a
//! time and silently drops a second one proposed while the first is pending).
//!
//! **etcd's rules** (its `--strict-reconfig-check`, on by default; with it off only the learner rules hold):
//! - adding a voter needs a quorum of the voters after the change to be started (published), except when a
//!   one-member cluster grows to two ("re-configuration failed due to not enough started members"), and every
//!   voter to have been reachable for the last 5 s ("unhealthy cluster");
//! - removing a voter needs a quorum of the remaining voters started, and, unless the member is already down, a
//!   quorum of the remaining voters reachable without it;
//! - one learner at most; a learner is promoted only once its log is within 90% of the leader's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::api::convert::Headers;
use crate::apply::membership::{ChangeKind, MemberChange, Registry};
use crate::consensus::view::ClusterView;
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, cluster_client::ClusterClient, cluster_server::Cluster};

/// How long every voter must have been reachable before a voter is added (etcd's `HealthInterval`).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How close to the leader's log a learner must be to be promoted.
const LEARNER_READY: f64 = 0.9;

/// The Cluster service.
#[derive(Debug, Clone)]
pub struct ClusterService {
    pub proposer: Proposer,
    pub headers: Headers,
    pub cluster: ClusterView,
    /// Held by the leader while it makes one membership change (shared by the services of every client URL).
    pub one_change: Arc<tokio::sync::Mutex<()>>,
    /// How calls are forwarded to the leader's client URL (TLS as this member's clients use it).
    pub dialer: crate::api::client_tls::Dialer,
    /// MemberList reads the registry after a ReadIndex round (see `member_list`).
    pub reads: crate::read::ReadPath,
    /// `--strict-reconfig-check`: refuse changes that could lose quorum (the started and health rules below).
    pub strict: bool,
    /// `etcd_server_learner_promote_successes` and `_failures` (a learner not yet in sync, by the reason given).
    pub promotions: (prometheus::IntCounter, prometheus::IntCounterVec),
    /// `--max-learners`.
    pub max_learners: usize,
}

/// Where a membership call is handled: here (this member leads) or at the leader's client URL.
enum Route {
    Here,
    Leader(ClusterClient<tonic::transport::Channel>),
}

impl ClusterService {
    fn header(&self) -> Option<pb::ResponseHeader> {
        // etcd's Cluster service headers carry no revision.
        self.headers.no_revision()
    }

    async fn route(&self) -> Result<Route, Status> {
        let n = &self.cluster;
        let leader = n.leader();
        if leader == 0 {
            return Err(Error::NoLeader.into());
        }
        if leader == n.member {
            return Ok(Route::Here);
        }
        let url = n.registry.read().get(leader).and_then(|m| m.client_ur_ls.first().cloned());
        let Some(url) = url else { return Err(Error::NoLeader.into()) };
        let channel = self.dialer.channel(&url).await.map_err(|_| Status::from(Error::NoLeader))?;
        let client = ClusterClient::new(channel);
        Ok(Route::Leader(client))
    }

    /// Proposes `change` and waits until it is applied; the members after it.
    async fn change(&self, kind: ChangeKind, member: pb::Member) -> Result<Vec<pb::Member>, Status> {
        let (id, rx) = self.proposer.register();
        let change = MemberChange { request: id.0, kind: kind as i32, member: Some(member) };
        let msg = crate::consensus::node::Msg::ProposeConf { id, cc: change.conf_change() };
        match self.proposer.submit(id, msg, rx).await?.outcome {
            crate::apply::Outcome::Members(m) => Ok(m),
            _ => Err(Status::internal("unexpected response to a membership change")),
        }
    }

    /// Whether each voter but this member has been heard from without a gap since `since`; the count of those.
    fn reachable_since(&self, registry: &Registry, since: Instant) -> (bool, usize) {
        let me = self.cluster.member;
        let mut all = true;
        let mut count = 1;
        for v in registry.voters().into_iter().filter(|v| *v != me) {
            match self.cluster.activity.active_since(v) {
                Some(t) if t <= since => count += 1,
                _ => all = false,
            }
        }
        (all, count)
    }

    fn check_add(&self, registry: &Registry, urls: &[String], learner: bool) -> Result<(), Error> {
        check_urls(registry, urls, None)?;
        let members = registry.members();
        if learner {
            if members.iter().filter(|m| m.is_learner).count() >= self.max_learners {
                return Err(Error::TooManyLearners);
            }
            return Ok(());
        }
        if !self.strict {
            return Ok(());
        }
        let voters: Vec<&pb::Member> = members.iter().filter(|m| !m.is_learner).collect();
        let started = voters.iter().filter(|m| Registry::started(m)).count();
        let after = voters.len() + 1;
        if !(started == 1 && after == 2) && started < after / 2 + 1 {
            return Err(Error::NotEnoughStartedMembers);
        }
        if !self.reachable_since(registry, Instant::now() - HEALTH_INTERVAL).0 {
            return Err(Error::Unhealthy);
        }
        Ok(())
    }

    fn check_remove(&self, registry: &Registry, id: u64) -> Result<pb::Member, Error> {
        let Some(m) = registry.get(id).cloned() else { return Err(Error::MemberNotFound) };
        if m.is_learner || !self.strict {
            return Ok(m);
        }
        let voters: Vec<pb::Member> = registry.members().into_iter().filter(|v| !v.is_learner).collect();
        let rest: Vec<&pb::Member> = voters.iter().filter(|v| v.id != id).collect();
        if rest.iter().filter(|v| Registry::started(v)).count() < rest.len() / 2 + 1 {
            return Err(Error::NotEnoughStartedMembers);
        }
        // A member that is down is not part of the active quorum: removing it is always safe.
        if id != self.cluster.member && self.cluster.activity.active_since(id).is_none() {
            return Ok(m);
        }
        let (_, active) = self.reachable_since(registry, Instant::now() - HEALTH_INTERVAL);
        if active - 1 < 1 + (voters.len() - 1) / 2 {
            return Err(Error::Unhealthy);
        }
        Ok(m)
    }

    async fn check_promote(&self, registry: &Registry, id: u64) -> Result<pb::Member, Error> {
        let Some(m) = registry.get(id).cloned() else { return Err(Error::MemberNotFound) };
        if !m.is_learner {
            return Err(Error::MemberNotLearner);
        }
        let voters: Vec<pb::Member> = registry.members().into_iter().filter(|v| !v.is_learner).collect();
        let started = voters.iter().filter(|v| Registry::started(v)).count() + usize::from(Registry::started(&m));
        let after = voters.len() + 1;
        if self.strict && started < after / 2 + 1 {
            return Err(Error::NotEnoughStartedMembers);
        }
        let progress = self.cluster.progress().await?;
        if !progress.leader {
            return Err(Error::NotLeader);
        }
        let leader_match = progress.matched.get(&self.cluster.member).copied().unwrap_or(progress.last_index);
        match progress.matched.get(&id) {
            Some(&learner) if learner as f64 >= leader_match as f64 * LEARNER_READY => Ok(m),
            _ => {
                let reason = Status::from(Error::LearnerNotReady).message().to_string();
                self.promotions.1.with_label_values(&[&reason]).inc();
                Err(Error::LearnerNotReady)
            }
        }
    }
}

/// Peer URLs for a member (`member`, if it exists already): at least one, each valid, none another member's.
fn check_urls(registry: &Registry, urls: &[String], member: Option<u64>) -> Result<(), Error> {
    if urls.is_empty() {
        return Err(Error::BadMemberUrls);
    }
    for u in urls {
        crate::config::parse_url("peer-urls", u).map_err(|_| Error::BadMemberUrls)?;
        if registry.by_peer_url(u).is_some_and(|other| Some(other.id) != member) {
            return Err(Error::PeerUrlExists);
        }
    }
    Ok(())
}

/// A fresh member id for `urls`, as etcd derives one: from the URLs and the time in seconds; never one in use or
/// removed (the next second's id then).
fn new_member_id(registry: &Registry, urls: &[String]) -> u64 {
    let mut now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    loop {
        let id = crate::apply::membership::member_id(now.to_string().as_bytes(), urls);
        if registry.get(id).is_none() && !registry.is_removed(id) {
            return id;
        }
        now += 1;
    }
}

/// A call forwarded to the leader, with the caller's token (the leader checks it again).
fn forwarded<T>(token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(t) = token {
        r.metadata_mut().insert("token", t);
    }
    r
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let token = req.metadata().get("token").cloned();
        let r = req.into_inner();
        let _one = match self.route().await? {
            Route::Leader(mut c) => return c.member_add(forwarded(token, r)).await,
            Route::Here => self.one_change.lock().await,
        };
        let member = {
            let registry = self.cluster.registry.read();
            self.check_add(&registry, &r.peer_ur_ls, r.is_learner)?;
            let id = new_member_id(&registry, &r.peer_ur_ls);
            pb::Member { id, peer_ur_ls: r.peer_ur_ls, is_learner: r.is_learner, ..Default::default() }
        };
        let members = self.change(ChangeKind::Add, member.clone()).await?;
        Ok(Response::new(pb::MemberAddResponse { header: self.header(), member: Some(member), members }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let token = req.metadata().get("token").cloned();
        let r = req.into_inner();
        let _one = match self.route().await? {
            Route::Leader(mut c) => return c.member_remove(forwarded(token, r)).await,
            Route::Here => self.one_change.lock().await,
        };
        let member = self.check_remove(&self.cluster.registry.read(), r.id)?;
        let members = self.change(ChangeKind::Remove, member).await?;
        Ok(Response::new(pb::MemberRemoveResponse { header: self.header(), members }))
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let token = req.metadata().get("token").cloned();
        let r = req.into_inner();
        let _one = match self.route().await? {
            Route::Leader(mut c) => return c.member_update(forwarded(token, r)).await,
            Route::Here => self.one_change.lock().await,
        };
        let member = {
            let registry = self.cluster.registry.read();
            let Some(mut m) = registry.get(r.id).cloned() else { return Err(Error::MemberNotFound.into()) };
            check_urls(&registry, &r.peer_ur_ls, Some(r.id))?;
            m.peer_ur_ls = r.peer_ur_ls;
            m
        };
        let members = self.change(ChangeKind::Update, member).await?;
        Ok(Response::new(pb::MemberUpdateResponse { header: self.header(), members }))
    }

    /// The registry as of a ReadIndex round when there is a leader (etcd 3.5's linearizable MemberList: a list
    /// taken right after a member published itself includes it, on whichever member it is asked); without a leader,
    /// after one election timeout, this member's own view, as etcd 3.4 answers.
    async fn member_list(&self, _: Request<pb::MemberListRequest>) -> Result<Response<pb::MemberListResponse>, Status> {
        if self.cluster.leader() != 0 {
            let _ = tokio::time::timeout(self.cluster.election_timeout(), self.reads.linearize()).await;
        }
        let members = self.cluster.registry.read().members();
        Ok(Response::new(pb::MemberListResponse { header: self.header(), members }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let token = req.metadata().get("token").cloned();
        let r = req.into_inner();
        let _one = match self.route().await? {
            Route::Leader(mut c) => return c.member_promote(forwarded(token, r)).await,
            Route::Here => self.one_change.lock().await,
        };
        let registry = self.cluster.registry.read().clone();
        let mut member = self.check_promote(&registry, r.id).await?;
        member.is_learner = false;
        let members = self.change(ChangeKind::Promote, member).await?;
        self.promotions.0.inc();
        Ok(Response::new(pb::MemberPromoteResponse { header: self.header(), members }))
    }
}
