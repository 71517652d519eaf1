//! The Maintenance service: Status, Defragment (online, see mvcc's `defrag`), HashKV, Hash, Alarm, Snapshot and
//! MoveLeader. Downgrade is not implemented and says so.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::api::convert::Headers;
use crate::apply::store::StoreSlot;
use crate::consensus::view::ClusterView;
use crate::error::Error;
use crate::proto::etcdserverpb::{self as pb, maintenance_server::Maintenance};

/// The etcd server version whose behaviour ferrokv matches, reported as the member's version (Status, /metrics'
/// `etcd_server_version`). Clients parse it: kube-apiserver turns off RequestWatchProgress (and with it WatchList
/// and consistent reads from its cache) below 3.4.31 in the 3.4 line, whose watch-progress fixes ferrokv has
/// (a progress answer only once every watcher of the stream is synced). See the README.
pub const SERVER_VERSION: &str = "3.4.31";

/// The cluster (API) version: etcd's v3.4 API.
pub const API_VERSION: &str = "3.4";

/// The Maintenance service.
#[derive(Debug, Clone)]
pub struct MaintenanceService {
    pub stores: Arc<StoreSlot>,
    pub headers: Headers,
    pub cluster: ClusterView,
    /// `--quota-backend-bytes`, reported by Status.
    pub quota: i64,
    /// Set once a graceful stop begins: a defragmentation ends at its next step.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Alarm requests go through Raft.
    pub proposer: crate::proposals::Proposer,
    /// The raised alarms, which Status reports among its errors.
    pub alarms: crate::apply::alarm::Alarms,
    /// Defragmentation and snapshot durations.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl MaintenanceService {
    fn header(&self) -> Option<pb::ResponseHeader> {
        self.headers.now()
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Lists, raises or clears alarms, through Raft as etcd does (see `apply::alarm`).
    async fn alarm(&self, request: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        let op = crate::request::Op::Alarm(request.into_inner());
        // No permission is needed to raise, clear or list alarms (as in etcd).
        let nobody = crate::request::Caller::default();
        Ok(Response::new(crate::api::convert::write(&self.proposer, &self.headers, &nobody, op).await?))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let n = &self.cluster;
        let stats = self.stores.get().db().stats();
        // etcd's errors: no leader, then each raised alarm in protobuf's compact text.
        let mut errors = Vec::new();
        if n.leader() == 0 {
            errors.push(Error::NoLeader.to_string());
        }
        for a in self.alarms.list(pb::AlarmType::None as i32) {
            let name = crate::apply::alarm::name(a.alarm).unwrap_or("NONE");
            errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
        }
        Ok(Response::new(pb::StatusResponse {
            header: self.header(),
            version: SERVER_VERSION.to_string(),
            db_size: stats.file_size as i64,
            leader: n.leader(),
            raft_index: n.status.commit.load(std::sync::atomic::Ordering::Relaxed),
            raft_term: n.status.term.load(std::sync::atomic::Ordering::Relaxed),
            raft_applied_index: n.applied(),
            errors,
            db_size_in_use: stats.in_use as i64,
            is_learner: n.is_learner(),
            storage_version: String::new(),
            db_size_quota: self.quota,
            downgrade_info: None,
        }))
    }

    async fn defragment(&self, _: Request<pb::DefragmentRequest>) -> Result<Response<pb::DefragmentResponse>, Status> {
        let store = self.stores.get();
        let stopping = Arc::clone(&self.stopping);
        let log = crate::logging::log;
        log("info", "defragmenting", &[("current-db-size-bytes", store.db().stats().file_size.to_string())]);
        let started = std::time::Instant::now();
        self.metrics.defrag_inflight.set(1);
        let r = tokio::task::spawn_blocking(move || store.db().defrag(mvcc::DefragConfig::default(), &stopping)).await;
        self.metrics.defrag_inflight.set(0);
        self.metrics.defrag.observe(started.elapsed().as_secs_f64());
        let r = r.map_err(|e| Status::internal(e.to_string()))?.map_err(Error::from)?;
        let fields = [
            ("current-db-size-bytes-diff", (r.file_after as i64 - r.file_before as i64).to_string()),
            ("current-db-size-bytes", r.file_after.to_string()),
            ("current-db-size-in-use-bytes", r.in_use_after.to_string()),
            ("target-db-size-bytes", r.target.to_string()),
            ("passes", r.passes.to_string()),
            ("steps", r.steps.to_string()),
            ("took", format!("{:?}", started.elapsed())),
        ];
        match r.outcome {
            mvcc::DefragOutcome::Reached => log("info", "finished defragmenting directory", &fields),
            outcome => log(
                "warn",
                "finished defragmenting directory above its target size",
                &[&fields[..], &[("reason", format!("{outcome:?}")), ("unmoved-pages", r.unmoved.to_string())]]
                    .concat(),
            ),
        }
        // etcd 3.4.23 answers Defragment with no header, as it does Alarm.
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(&self, _: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        let started = std::time::Instant::now();
        let (hash, _, _) = crate::backup::export::hash_kv(&self.stores.get(), 0)?;
        self.metrics.hash.observe(started.elapsed().as_secs_f64());
        Ok(Response::new(pb::HashResponse { header: self.header(), hash }))
    }

    async fn hash_kv(&self, request: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        let started = std::time::Instant::now();
        let (hash, at, compact) = crate::backup::export::hash_kv(&self.stores.get(), request.into_inner().revision)?;
        self.metrics.hash_rev.observe(started.elapsed().as_secs_f64());
        Ok(Response::new(pb::HashKvResponse {
            header: self.header(),
            hash,
            compact_revision: compact,
            hash_revision: at,
        }))
    }

    type SnapshotStream = crate::backup::stream::Stream;

    /// Streams the store as an etcd 3.4 snapshot file (see `backup`): `etcdctl snapshot save` keeps it,
    /// `snapshot status` and `snapshot restore` read it, and etcd starts from what restore makes.
    async fn snapshot(&self, _: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let histogram = self.metrics.snapshot.clone();
        let took = move |d: std::time::Duration| histogram.observe(d.as_secs_f64());
        Ok(Response::new(crate::backup::stream::snapshot(self.stores.get(), self.header(), took)))
    }

    /// etcd's rules: only the leader moves leadership, only to a voting member, and the call returns once the
    /// target leads (or fails after a few election timeouts).
    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        let n = &self.cluster;
        if !n.is_leader() {
            return Err(Error::NotLeader.into());
        }
        if n.registry.read().get(target).is_none_or(|m| m.is_learner) {
            return Err(Error::BadLeaderTransferee.into());
        }
        if target != n.member {
            n.transfer_leader(target)?;
            if !n.wait_for_leader(|l| l == target).await {
                return Err(Error::LeaderTransferTimeout.into());
            }
        }
        Ok(Response::new(pb::MoveLeaderResponse { header: self.header() }))
    }

    async fn downgrade(&self, _: Request<pb::DowngradeRequest>) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented("ferrokv: Downgrade is not implemented"))
    }
}
