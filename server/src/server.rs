//! Wiring and shutdown order: open the store and the WAL, start the apply thread, then the Raft thread, then serve
//! gRPC on every client URL; log etcd's `ready to serve client requests`; on SIGINT/SIGTERM stop serving, then let
//! the threads end as their channels close.
//!
//! Member and cluster ids are derived deterministically from the bootstrap configuration (FNV-1a over the
//! cluster token and each member's sorted peer URLs), so every member computes the same ids.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::Duration;

use mvcc::{DbConfig, Store, StoreConfig, SyncPolicy};
use tokio::sync::watch;

use crate::apply::{Apply, Ids};
use crate::config::{Config, Url};
use crate::error::Error;
use crate::logging::log;
use crate::proposals::Proposals;
use crate::proto::etcdserverpb::{
    self as pb, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::raft_node::{Msg, RaftNode, RaftStatus, Start};

/// How long a stop waits for in-flight requests before closing the remaining connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What every service shares.
#[derive(Debug)]
pub struct Node {
    pub config: Config,
    /// The store; see [`Node::store`].
    pub stores: Arc<crate::snapshot::StoreSlot>,
    pub proposals: Arc<Proposals>,
    pub raft: Sender<Msg>,
    pub applied: watch::Receiver<u64>,
    pub status: Arc<RaftStatus>,
    pub ids: Ids,
    pub members: Vec<pb::Member>,
    /// Each committed revision's changes, for watchers.
    pub events: tokio::sync::broadcast::Sender<Arc<crate::apply::Batch>>,
    pub lessor: Arc<std::sync::Mutex<crate::lease::Lessor>>,
    /// The WAL's live metrics, for /metrics.
    pub wal_metrics: Arc<wal::Metrics>,
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
        if self.raft.send(Msg::Propose { id, data }).is_err() {
            self.proposals.cancel(id);
            return Err(Error::Stopped);
        }
        match tokio::time::timeout(crate::grpc::kv::REQUEST_TIMEOUT, rx).await {
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
    pub fn leases(&self) -> std::sync::MutexGuard<'_, crate::lease::Lessor> {
        self.lessor.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Before a graceful stop, a leader of several members hands leadership to the best-placed voter, as etcd does,
/// so that a rolling restart costs no election timeout. Gives up after a few election timeouts (the stop goes on).
async fn hand_over_leadership(node: &Node) {
    let me = node.ids.member;
    if node.members.len() < 2 || node.status.leader.load(std::sync::atomic::Ordering::Relaxed) != me {
        return;
    }
    log("info", "leadership transfer starting before stop", &[("from", format!("{me:x}"))]);
    if node.raft.send(Msg::TransferLeader { target: 0 }).is_err() {
        return;
    }
    if node.wait_for_leader(|l| l != me && l != 0).await {
        let leader = node.status.leader.load(std::sync::atomic::Ordering::Relaxed);
        log("info", "leadership transferred before stop", &[("to", format!("{leader:x}"))]);
    } else {
        log("warn", "leadership transfer before stop timed out", &[]);
    }
}

/// Proposes the revocation of every expired lease, twice a second (the leader decides expiry; see `lease`). On
/// becoming leader, every lease first gets a full TTL again: the old leader's renewals were not seen here.
async fn expire_leases(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut leading = false;
    loop {
        tick.tick().await;
        let was_leading = leading;
        leading = node.status.leader.load(std::sync::atomic::Ordering::Relaxed) == node.ids.member;
        if !leading {
            continue;
        }
        if !was_leading {
            node.leases().promote(Duration::from_millis(node.config.election_ms));
            continue;
        }
        let expired = node.leases().take_expired();
        for id in expired {
            let n = Arc::clone(&node);
            tokio::spawn(async move {
                match n.propose(crate::request::Op::LeaseRevoke(pb::LeaseRevokeRequest { id })).await {
                    Ok(_) | Err(Error::LeaseNotFound) => {}
                    Err(_) => n.leases().retry(id),
                }
            });
        }
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// A member's id: from the cluster token and its sorted peer URLs.
pub fn member_id(token: &str, peers: &[Url]) -> u64 {
    let mut urls: Vec<&str> = peers.iter().map(|u| u.text.as_str()).collect();
    urls.sort();
    let mut parts: Vec<&[u8]> = vec![token.as_bytes()];
    parts.extend(urls.iter().map(|u| u.as_bytes()));
    fnv1a(&parts)
}

fn fatal(what: &str, e: impl std::fmt::Display) -> ! {
    log("fatal", what, &[("error", e.to_string())]);
    std::process::exit(1);
}

/// Runs a member until SIGINT or SIGTERM.
pub fn run(config: Config) -> Result<(), Error> {
    crate::logging::set_log_level(&config.log_level);
    let member_dir = config.data_dir.join("member");
    let storage = |e: std::io::Error| Error::Storage(format!("{}: {e}", member_dir.display()));
    std::fs::create_dir_all(member_dir.join("snap")).map_err(storage)?;
    let ids_by_name: BTreeMap<&String, u64> = config
        .initial_cluster
        .iter()
        .map(|(name, urls)| (name, member_id(&config.initial_cluster_token, urls)))
        .collect();
    let me = ids_by_name[&config.name];
    let mut all: Vec<u64> = ids_by_name.values().copied().collect();
    all.sort_unstable();
    let cluster =
        fnv1a(&all.iter().map(|i| i.to_be_bytes()).collect::<Vec<_>>().iter().map(|b| &b[..]).collect::<Vec<_>>());
    let ids = Ids { cluster, member: me };
    let members: Vec<pb::Member> = config
        .initial_cluster
        .iter()
        .map(|(name, urls)| pb::Member {
            id: ids_by_name[name],
            name: name.clone(),
            peer_ur_ls: urls.iter().map(|u| u.text.clone()).collect(),
            client_ur_ls: if *name == config.name {
                config.advertise_client_urls.iter().map(|u| u.text.clone()).collect()
            } else {
                Vec::new()
            },
            is_learner: false,
        })
        .collect();

    // The WAL is the source of truth: the store may lag by up to 100 ms of commits, which a restart replays.
    let sync = SyncPolicy { max_commits: 10_000, max_delay: Duration::from_millis(100) };
    let config_store = StoreConfig { db: DbConfig { sync, ..DbConfig::default() }, ..StoreConfig::default() };
    let stores = Arc::new(
        crate::snapshot::StoreSlot::open(member_dir.join("snap").join("db"), config_store).map_err(Error::from)?,
    );
    let store = stores.get();
    let wal_dir = member_dir.join("wal");
    let wal = if wal_dir.join("LOCK").exists() || wal::reader::list_segments(&wal_dir).is_ok_and(|s| !s.is_empty()) {
        wal::Wal::open(&wal_dir, wal::Config::default())
    } else {
        wal::Wal::create(&wal_dir, wal::Config::default())
    }
    .map_err(|e| Error::Storage(e.to_string()))?;
    let wal_metrics = wal.metrics_handle();

    let proposals = Arc::new(Proposals::new(me));
    let (applied_tx, applied_rx) = watch::channel(store.applied().0);
    let (apply_tx, apply_rx) = channel::<crate::raft_node::ApplyMsg>();
    let lessor = Arc::new(std::sync::Mutex::new(crate::lease::Lessor::load(&store).map_err(Error::from)?));
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let apply = Apply {
        store: Arc::clone(&stores),
        proposals: Arc::clone(&proposals),
        ids,
        lessor: Arc::clone(&lessor),
        events: events.clone(),
        applied: applied_tx,
    };
    let (raft_tx, raft_rx) = channel();
    let (compactor, compactions) = channel::<u64>();
    let snapshot_count = config.snapshot_count;
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            let mut last_compaction = apply.store.get().applied().0;
            loop {
                match apply_rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(crate::raft_node::ApplyMsg::Entries(entries)) => {
                        if let Err(e) = apply.apply(entries) {
                            fatal("failed to apply committed entries", e);
                        }
                    }
                    Ok(crate::raft_node::ApplyMsg::Snapshot { index, term, done }) => {
                        let _ = done.send(apply.install_snapshot(index, term));
                        last_compaction = index;
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                if let Err(e) = apply.store.get().db().sync_if_due() {
                    fatal("failed to sync the backend", e);
                }
                // Every --snapshot-count entries: make mvcc durable, then let the log before it go.
                let applied = apply.store.get().applied().0;
                if applied >= last_compaction + snapshot_count {
                    if let Err(e) = apply.store.get().db().sync() {
                        fatal("failed to sync the backend", e);
                    }
                    let _ = compactor.send(applied);
                    last_compaction = applied;
                }
            }
            if let Err(e) = apply.store.get().db().sync() {
                fatal("failed to sync the backend at shutdown", e);
            }
        })
        .map_err(storage)?;

    let peers: std::collections::HashMap<u64, std::net::SocketAddr> = config
        .initial_cluster
        .iter()
        .filter(|(name, _)| **name != config.name)
        .filter_map(|(name, urls)| urls.first().map(|u| (ids_by_name[name], u.addr)))
        .collect();
    for url in &config.listen_peer_urls {
        crate::transport::listen(url.addr, raft_tx.clone(), Arc::clone(&lessor), Arc::clone(&stores))?;
    }
    let transport = crate::transport::Transport::new(&peers, Arc::clone(&stores), raft_tx.clone())?;
    let status = Arc::new(RaftStatus::default());
    let start = Start {
        id: me,
        voters: all.clone(),
        heartbeat: Duration::from_millis(config.heartbeat_ms),
        election_ticks: (config.election_ms / config.heartbeat_ms) as usize,
        applied: store.applied().0,
        transport,
    };
    let raft = RaftNode::new(start, wal, apply_tx, raft_rx, compactions, Arc::clone(&proposals), Arc::clone(&status))?;
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            if let Err(e) = raft.run() {
                fatal("raft stopped", e);
            }
        })
        .map_err(storage)?;

    drop(store);
    let node = Arc::new(Node {
        config: config.clone(),
        stores,
        proposals,
        raft: raft_tx,
        applied: applied_rx,
        status,
        ids,
        members,
        events,
        lessor,
        wal_metrics,
    });
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(storage)?;
    let served = runtime.block_on(serve(Arc::clone(&node)));
    drop(runtime);
    let _ = node.raft.send(Msg::Stop);
    drop(node);
    let _ = raft_thread.join();
    let _ = apply_thread.join();
    served
}

async fn serve(node: Arc<Node>) -> Result<(), Error> {
    let max = node.config.max_request_bytes as usize + 512 * 1024;
    // Client URLs serve gRPC and /metrics, /health; --listen-metrics-urls serve only the latter.
    let client = node.config.listen_client_urls.iter().map(|u| (u, true));
    let metrics_only = node.config.listen_metrics_urls.iter().map(|u| (u, false));
    let mut listeners = Vec::new();
    for (url, grpc) in client.chain(metrics_only) {
        let l = tokio::net::TcpListener::bind(url.addr)
            .await
            .map_err(|e| Error::Storage(format!("listen {}: {e}", url.text)))?;
        listeners.push((url.clone(), l, grpc));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (url, listener, grpc) in listeners {
        let mut routes = tonic::service::Routes::from(crate::metrics::router(Arc::clone(&node)));
        if grpc {
            let n = || Arc::clone(&node);
            routes = routes
                .add_service(KvServer::new(crate::grpc::kv::KvService { node: n() }).max_decoding_message_size(max))
                .add_service(MaintenanceServer::new(crate::grpc::maintenance::MaintenanceService { node: n() }))
                .add_service(ClusterServer::new(crate::grpc::cluster::ClusterService { node: n() }))
                .add_service(WatchServer::new(crate::grpc::watch::WatchService { node: n() }))
                .add_service(LeaseServer::new(crate::grpc::lease::LeaseService { node: n() }));
        }
        let mut stop = stop_rx.clone();
        let incoming = tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(listener);
        tasks.push(tokio::spawn(async move {
            // HTTP/1.1 is accepted next to gRPC's HTTP/2 so that curl and Prometheus can scrape /metrics.
            let served = tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                log("error", "client server stopped", &[("address", url.text.clone()), ("error", e.to_string())]);
            }
        }));
    }
    let expiry = tokio::spawn(expire_leases(Arc::clone(&node)));
    log(
        "info",
        "ready to serve client requests",
        &[("name", node.config.name.clone()), ("member-id", format!("{:x}", node.ids.member))],
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::Storage(e.to_string()))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    log("info", "received a stop signal, shutting down", &[]);
    hand_over_leadership(&node).await;
    let _ = stop_tx.send(true);
    expiry.abort();
    // In-flight requests get a moment to finish; open streams (watches, keep-alives) and idle connections would
    // keep a graceful stop waiting forever, so after the grace period the runtime's drop closes them.
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    for t in tasks {
        tokio::select! {
            _ = t => {}
            _ = &mut grace => break,
        }
    }
    Ok(())
}
