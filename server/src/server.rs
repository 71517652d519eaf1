//! Wiring and shutdown order: open the store and the WAL, start the apply thread, then the Raft thread, then serve
//! gRPC on every client URL; log etcd's `ready to serve client requests`; on SIGINT/SIGTERM stop serving, then let
//! the threads end as their channels close.
//!
//! Member and cluster ids are derived from the bootstrap configuration exactly as etcd derives them (SHA-1 over
//! the sorted peer URLs and the cluster token; see `apply::membership::member_id`), so every member computes the
//! same ids, and the same flags give the same ids as etcd.

use std::sync::Arc;
use std::sync::mpsc::{channel, sync_channel};
use std::time::Duration;

use mvcc::{DbConfig, StoreConfig, SyncPolicy};
use tokio::sync::watch;

use crate::api::convert::Headers;
use crate::api::http::Probe;
use crate::apply::lease::Leases;
use crate::apply::store::StoreSlot;
use crate::apply::{Apply, Batch};
use crate::config::Config;
use crate::consensus::node::{Msg, RaftNode, RaftStatus, Start};
use crate::consensus::view::ClusterView;
use crate::error::Error;
use crate::logging::log;
use crate::proposals::{Proposals, Proposer};
use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::{v3electionpb::election_server::ElectionServer, v3lockpb::lock_server::LockServer};
use crate::read::ReadPath;

/// How long a stop waits for in-flight requests before closing the remaining connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How a worker thread (apply, Raft) reports the error that ends it: logged at once, then handed to `serve`,
/// which stops the member as a signal would (minus the leadership hand-over) and makes `run` return the error,
/// so the process exits non-zero after the threads have ended and the WAL is closed. Only the first error counts.
#[derive(Debug, Clone)]
struct Fatal(tokio::sync::mpsc::UnboundedSender<(&'static str, Error)>);

impl Fatal {
    fn report(&self, what: &'static str, e: Error) {
        log("fatal", what, &[("error", e.to_string())]);
        let _ = self.0.send((what, e));
    }
}

/// The names an auto-TLS certificate is made for: the addresses of `urls`, and `localhost`.
fn tls_hosts(urls: &[crate::config::Url]) -> Vec<String> {
    urls.iter().filter(|u| u.unix.is_none()).map(|u| u.addr.ip().to_string()).chain(["localhost".into()]).collect()
}

/// Runs a member until SIGINT, SIGTERM or SIGHUP.
pub fn run(config: Config) -> Result<(), Error> {
    crate::logging::set_log_level(&config.log_level);
    crate::logging::set_outputs(&config.log_outputs).map_err(Error::io("open the log outputs"))?;
    crate::logging::forward_tracing();
    for (level, msg, fields) in &config.notes {
        log(level, msg, fields);
    }
    let member_dir = config.data_dir.join("member");
    // An etcd member's directory is converted (or an interrupted conversion finished) before anything opens it.
    crate::backup::migrate::convert_if_needed(&config.data_dir, config.wal_dir.as_deref())?;
    // Durably: a new data directory whose name a power loss takes back loses every write acknowledged in it.
    wal::create_dir_durable(&member_dir.join("snap"))?;
    // The WAL is the source of truth: the store may lag by up to 100 ms of commits (--backend-batch-interval), or
    // 10,000 commits (--backend-batch-limit), which a restart replays. The interval is kept by the backend's sync
    // thread, beside the apply thread (`apply::syncer`).
    let sync = SyncPolicy {
        max_commits: config.backend_batch_limit.map_or(10_000, |l| u32::try_from(l).unwrap_or(u32::MAX)),
        max_delay: config.backend_batch_interval.unwrap_or(Duration::from_millis(100)),
        background: true,
    };
    let db = DbConfig { sync, on_commit: Some(crate::metrics::observe_commit), ..DbConfig::default() };
    let config_store = StoreConfig { db, ..StoreConfig::default() };
    let stores = Arc::new(
        crate::apply::store::StoreSlot::open(member_dir.join("snap").join("db"), config_store).map_err(Error::from)?,
    );
    let store = stores.get();
    let wal_dir = config.wal_dir.clone().unwrap_or_else(|| member_dir.join("wal"));
    let wal = if wal_dir.join("LOCK").exists() || wal::reader::list_segments(&wal_dir).is_ok_and(|s| !s.is_empty()) {
        wal::Wal::open(&wal_dir, wal::Config::default())
    } else {
        wal::Wal::create(&wal_dir, wal::Config::default())
    }?;
    let wal_metrics = wal.metrics_handle();
    let fixtures = config.data_dir.join("fixtures");
    let peer_tls = crate::consensus::tls::peer_tls(
        &config.peer_tls,
        &fixtures.join("peer"),
        &tls_hosts(&config.listen_peer_urls),
    )?;
    let dialer = crate::consensus::transport::Dialer {
        tls: peer_tls.as_ref().map(|t| Arc::clone(&t.client)),
        local: config
            .listen_peer_urls
            .iter()
            .find(|u| u.unix.is_none())
            .map(|u| u.addr.ip())
            .filter(|ip| !ip.is_unspecified()),
        user_timeout: Duration::from_millis(2 * config.election_ms),
    };
    let boot = crate::consensus::bootstrap::prepare(&config, &member_dir, &store, &wal, &dialer)?;
    let (cluster_id, me) = (boot.identity.cluster, boot.identity.member);
    let peers = boot.peers(me);
    let cluster = Arc::new(crate::apply::membership::Shared::new(boot.identity, boot.registry));
    let activity = Arc::new(crate::consensus::transport::Activity::new(Duration::from_millis(config.election_ms)));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::io("start the runtime"))?;
    let client_hosts = tls_hosts(&config.listen_client_urls);
    let (client_tls, client_dialer) =
        crate::api::client_tls::configure(&config.client_tls, &fixtures.join("client"), &client_hosts)?;
    if config.initial_corrupt_check {
        runtime.block_on(crate::api::corrupt::check_initial(&stores, me, &cluster, &dialer))?;
    }

    let proposals = Arc::new(Proposals::new(me));
    let (applied_tx, applied_rx) = watch::channel(store.applied().0);
    let (apply_tx, apply_rx) = sync_channel::<crate::apply::ApplyMsg>(crate::consensus::node::APPLY_QUEUE);
    let metrics = Arc::new(crate::metrics::Metrics::default());
    metrics.count_keys(&store)?;
    let loaded = crate::apply::lease::Lessor::load(&store, std::time::Instant::now())?;
    let lessor = Leases::new(loaded, metrics.lease_renewed.clone());
    let alarms = crate::apply::alarm::Alarms::default();
    alarms.load(&store)?;
    let jwt = match config.auth_token.split_once(',') {
        _ if config.auth_token == "simple" => None,
        Some(("jwt", options)) => Some(
            crate::apply::jwt::Jwt::parse(options)
                .map_err(|e| Error::Refused(format!("--auth-token: failed to create a JWT token provider: {e}")))?,
        ),
        _ => return Err(Error::Refused(format!("--auth-token: unknown token type {:?}", config.auth_token))),
    };
    let auth = crate::apply::perms::Auth::load(
        &store,
        Duration::from_secs(config.auth_token_ttl),
        jwt,
        config.client_tls.client_cert_auth,
    )?;
    let (events, _) = tokio::sync::broadcast::channel(4096);
    let apply = Apply {
        store: Arc::clone(&stores),
        proposals: Arc::clone(&proposals) as Arc<dyn crate::apply::Waiters>,
        lessor: lessor.clone(),
        events: events.clone(),
        applied: applied_tx,
        cluster: Arc::clone(&cluster),
        alarms: alarms.clone(),
        metrics: Arc::clone(&metrics),
        auth: auth.clone(),
    };
    let (raft_tx, raft_rx) = sync_channel(crate::consensus::node::RAFT_QUEUE);
    let raft_tx = crate::consensus::node::RaftQueue::new(raft_tx);
    let (compactor, compactions) = channel::<u64>();
    let snapshot_count = config.snapshot_count;
    let (fatal_tx, fatal_rx) = tokio::sync::mpsc::unbounded_channel();
    let fatal = Fatal(fatal_tx);
    let apply_fatal = fatal.clone();
    let apply = Arc::new(apply);
    let backlog = Arc::new(crate::apply::lane::Backlog::default());
    let lane = crate::apply::lane::ApplyLane::new(apply_tx, Arc::clone(&backlog), Arc::clone(&apply));
    let apply_thread = std::thread::Builder::new()
        .name("apply".into())
        .spawn(move || {
            if let Err((what, e)) = apply.run(apply_rx, &backlog, compactor, snapshot_count) {
                apply_fatal.report(what, e);
            }
        })
        .map_err(Error::io("start the apply thread"))?;

    let shared = crate::consensus::transport::PeerShared {
        raft: raft_tx.clone(),
        lessor: lessor.clone(),
        stores: Arc::clone(&stores),
        activity: Arc::clone(&activity),
        cluster: Arc::clone(&cluster),
        tls: peer_tls.as_ref().map(|t| Arc::clone(&t.server)),
        metrics: metrics.peers.clone(),
    };
    for url in &config.listen_peer_urls {
        crate::consensus::transport::listen(&crate::consensus::conn::PeerAddr::of(url), shared.clone())?;
    }
    let transport = crate::consensus::transport::Transport::new(
        dialer.clone(),
        &peers,
        Arc::clone(&stores),
        raft_tx.clone(),
        metrics.peers.with_local(me),
    )?;
    let status = Arc::new(RaftStatus::default());
    let start = Start {
        id: me,
        conf: boot.conf,
        conf_floor: boot.conf_floor,
        cluster: Arc::clone(&cluster),
        heartbeat: Duration::from_millis(config.heartbeat_ms),
        election_ticks: (config.election_ms / config.heartbeat_ms) as usize,
        applied: store.applied().0,
        transport,
    };
    let raft = RaftNode::new(start, wal, lane, raft_rx, compactions, Arc::clone(&proposals) as _, Arc::clone(&status))?;
    let raft_fatal = fatal.clone();
    let raft_thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            if let Err(e) = raft.run() {
                raft_fatal.report("raft stopped", e);
            }
        })
        .map_err(Error::io("start the raft thread"))?;

    drop(store);
    let heartbeat = Duration::from_millis(config.heartbeat_ms);
    let election = Duration::from_millis(config.election_ms);
    let view = ClusterView::new(
        me,
        cluster,
        Arc::clone(&status),
        activity,
        raft_tx.clone(),
        applied_rx.clone(),
        heartbeat,
        election,
    );
    let proposer = Proposer::new(
        Arc::clone(&proposals),
        raft_tx.clone(),
        applied_rx.clone(),
        Arc::clone(&status),
        config.max_request_bytes,
    )
    .counting_failures(metrics.proposals_failed.clone());
    let quota = crate::api::quota::Quota {
        stores: Arc::clone(&stores),
        proposer: proposer.clone(),
        alarms: alarms.clone(),
        member: me,
        bytes: config.quota_backend_bytes.unsigned_abs(),
    };
    let probe = Probe {
        cluster: view.clone(),
        stores: Arc::clone(&stores),
        proposals,
        wal_metrics,
        quota: config.quota_backend_bytes,
        alarms: alarms.clone(),
        metrics: Arc::clone(&metrics),
    };
    let handles = Handles {
        reads: ReadPath { raft: raft_tx.clone(), applied: applied_rx, status: Arc::clone(&status) },
        headers: Headers::new(cluster_id, me, status, Arc::clone(&stores)),
        probe: Arc::new(probe),
        quota,
        alarms,
        metrics,
        proposer,
        stores,
        cluster: view,
        leases: lessor,
        events,
        one_change: Arc::default(),
        stopping: Arc::default(),
        auth,
        client_tls,
        client_dialer,
        peer_dialer: dialer.clone(),
        config: config.clone(),
    };
    drop(fatal);
    let served = runtime.block_on(serve(handles, fatal_rx));
    drop(runtime);
    let _ = raft_tx.send(Msg::Stop);
    drop(raft_tx);
    let _ = raft_thread.join();
    let _ = apply_thread.join();
    served
}

/// What the services and the member's own tasks are built from: each takes only the handles it uses.
struct Handles {
    config: Config,
    proposer: Proposer,
    reads: ReadPath,
    stores: Arc<StoreSlot>,
    headers: Headers,
    cluster: ClusterView,
    leases: Leases,
    events: tokio::sync::broadcast::Sender<Arc<Batch>>,
    probe: Arc<Probe>,
    quota: crate::api::quota::Quota,
    alarms: crate::apply::alarm::Alarms,
    metrics: Arc<crate::metrics::Metrics>,
    /// Client TLS, if on.
    client_tls: Option<tokio_rustls::TlsAcceptor>,
    /// How this member dials other members' client URLs.
    client_dialer: crate::api::client_tls::Dialer,
    /// How this member dials other members' peer URLs (the corruption checks ask there).
    peer_dialer: crate::consensus::transport::Dialer,
    /// One membership change at a time, across the services of every client URL.
    one_change: Arc<tokio::sync::Mutex<()>>,
    /// Set once a graceful stop begins: long maintenance work (defragmentation) ends at its next step.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Users, roles, permissions and tokens.
    auth: crate::apply::perms::Auth,
}

impl Handles {
    /// The gRPC services, each accepting messages up to `max` bytes.
    fn grpc(&self, routes: tonic::service::Routes, max: usize) -> tonic::service::Routes {
        let h = self;
        let kv = crate::api::kv::KvService {
            proposer: h.proposer.clone(),
            reads: h.reads.clone(),
            stores: Arc::clone(&h.stores),
            headers: h.headers.clone(),
            max_txn_ops: h.config.max_txn_ops,
            quota: h.quota.clone(),
            metrics: Arc::clone(&h.metrics),
            auth: h.auth.clone(),
        };
        let maintenance = crate::api::maintenance::MaintenanceService {
            stores: Arc::clone(&h.stores),
            headers: h.headers.clone(),
            cluster: h.cluster.clone(),
            quota: h.config.quota_backend_bytes,
            stopping: Arc::clone(&h.stopping),
            proposer: h.proposer.clone(),
            alarms: h.alarms.clone(),
            metrics: Arc::clone(&h.metrics),
        };
        let cluster = crate::api::cluster::ClusterService {
            proposer: h.proposer.clone(),
            headers: h.headers.clone(),
            cluster: h.cluster.clone(),
            one_change: Arc::clone(&h.one_change),
            reads: h.reads.clone(),
            dialer: h.client_dialer.clone(),
            strict: h.config.strict_reconfig_check,
            max_learners: h.config.max_learners,
            promotions: (h.metrics.learner_promote_successes.clone(), h.metrics.learner_promote_failures.clone()),
        };
        let watch = crate::api::watch::WatchService {
            stores: Arc::clone(&h.stores),
            headers: h.headers.clone(),
            events: h.events.clone(),
            progress_every: h.config.watch_progress_notify_interval,
            auth: h.auth.clone(),
            metrics: Arc::clone(&h.metrics),
        };
        let lease = crate::api::lease::LeaseService {
            proposer: h.proposer.clone(),
            leases: h.leases.clone(),
            headers: h.headers.clone(),
            raft: h.reads.raft.clone(),
            status: Arc::clone(&h.cluster.status),
            min_ttl: crate::api::lease::min_ttl(h.config.election_ms, h.config.heartbeat_ms),
            quota: h.quota.clone(),
            auth: h.auth.clone(),
        };
        let auth = crate::api::auth::AuthService {
            proposer: h.proposer.clone(),
            headers: h.headers.clone(),
            bcrypt_cost: h.config.bcrypt_cost,
            auth: h.auth.clone(),
            reads: h.reads.clone(),
        };
        let recipes = crate::api::recipes::Recipes { kv: kv.clone(), lease: lease.clone(), events: h.events.clone() };
        let lock = crate::api::lock::LockService { recipes: recipes.clone() };
        let election = crate::api::election::ElectionService { recipes };
        let gateway = crate::api::gateway::Services {
            kv: kv.clone(),
            lease: lease.clone(),
            cluster: cluster.clone(),
            maintenance: maintenance.clone(),
            auth: auth.clone(),
            lock: lock.clone(),
            election: election.clone(),
            watch: watch.clone(),
            limits: crate::api::gateway::Limits::new(h.config.max_concurrent_streams, max),
            perms: h.auth.clone(),
        };
        let router = routes.into_axum_router();
        let router =
            if h.config.enable_grpc_gateway { router.merge(crate::api::gateway::router(gateway)) } else { router };
        tonic::service::Routes::from(router)
            .add_service(LockServer::new(lock).max_decoding_message_size(max))
            .add_service(ElectionServer::new(election).max_decoding_message_size(max))
            .add_service(KvServer::new(kv).max_decoding_message_size(max))
            .add_service(MaintenanceServer::new(maintenance).max_decoding_message_size(max))
            .add_service(ClusterServer::new(cluster).max_decoding_message_size(max))
            .add_service(WatchServer::new(watch).max_decoding_message_size(max))
            .add_service(LeaseServer::new(lease).max_decoding_message_size(max))
            .add_service(AuthServer::new(auth).max_decoding_message_size(max))
    }
}

async fn serve(
    h: Handles,
    mut fatal: tokio::sync::mpsc::UnboundedReceiver<(&'static str, Error)>,
) -> Result<(), Error> {
    let max = h.config.max_request_bytes as usize + 512 * 1024;
    // Client URLs serve gRPC and /metrics, /health; --listen-metrics-urls and --listen-client-http-urls serve only
    // the latter. URLs on one address share its listener: http and https there are told apart by the first byte.
    let mut by_addr: Vec<(std::net::SocketAddr, bool, Vec<crate::config::Url>)> = Vec::new();
    let mut listeners = Vec::new();
    let client = h.config.listen_client_urls.iter().map(|u| (u, true));
    let http_only = h.config.listen_metrics_urls.iter().chain(&h.config.listen_client_http_urls).map(|u| (u, false));
    // The gRPC listeners' bytes are the clients' (the metrics-only listeners' scrapes are not).
    let bytes = crate::api::client_conn::ClientBytes {
        received: h.metrics.client_received_bytes.clone(),
        sent: h.metrics.client_sent_bytes.clone(),
    };
    let counted = |grpc: bool| grpc.then(|| bytes.clone());
    for (url, grpc) in client.chain(http_only) {
        if let Some(path) = &url.unix {
            crate::consensus::conn::remove_stale_socket(path, &url.text)?;
            let l = tokio::net::UnixListener::bind(path).map_err(Error::io(format!("listen {}", url.text)))?;
            let l = crate::api::client_tls::ClientListener::Unix(l);
            listeners.push((url.clone(), crate::api::client_tls::incoming(l, counted(grpc)), grpc));
            continue;
        }
        match by_addr.iter_mut().find(|(a, g, _)| *a == url.addr && *g == grpc) {
            Some((_, _, urls)) => urls.push(url.clone()),
            None => by_addr.push((url.addr, grpc, vec![url.clone()])),
        }
    }
    for (addr, grpc, urls) in by_addr {
        let text = urls.iter().map(|u| u.text.as_str()).collect::<Vec<_>>().join(",");
        let l = tokio::net::TcpListener::bind(addr).await.map_err(Error::io(format!("listen {text}")))?;
        let plain = urls.iter().any(|u| !u.tls);
        let tls = if urls.iter().any(|u| u.tls) { h.client_tls.clone() } else { None };
        let l = crate::api::client_tls::ClientListener::Tcp { listener: l, plain, tls };
        listeners.push((urls[0].clone(), crate::api::client_tls::incoming(l, counted(grpc)), grpc));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (url, incoming, grpc) in listeners {
        let mut routes = tonic::service::Routes::from(crate::api::http::router(Arc::clone(&h.probe)));
        if grpc {
            routes = h.grpc(routes, max);
        }
        let mut stop = stop_rx.clone();
        let c = &h.config;
        let keepalive = Some(c.grpc_keepalive_interval).filter(|d| !d.is_zero());
        let keepalive_timeout = Some(c.grpc_keepalive_timeout).filter(|d| !d.is_zero());
        let streams = c.max_concurrent_streams;
        let grpc_metrics =
            crate::api::grpc_metrics::GrpcMetricsLayer::new(Arc::clone(&h.metrics), h.config.metrics_extensive);
        let require_leader = crate::api::require_leader::RequireLeaderLayer {
            status: Arc::clone(&h.cluster.status),
            election: Duration::from_millis(h.config.election_ms),
        };
        let admin_gate = crate::api::admin_gate::AdminGateLayer { auth: h.auth.clone() };
        tasks.push(tokio::spawn(async move {
            // HTTP/1.1 is accepted next to gRPC's HTTP/2 so that curl and Prometheus can scrape /metrics.
            let served = tonic::transport::Server::builder()
                .accept_http1(true)
                .max_concurrent_streams(streams)
                .http2_keepalive_interval(keepalive)
                .http2_keepalive_timeout(keepalive_timeout)
                .layer(grpc_metrics)
                .layer(require_leader)
                .layer(admin_gate)
                .layer(crate::api::recv_limit::RecvLimitLayer { limit: max })
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
    let election = Duration::from_millis(h.config.election_ms);
    let tasks_leases = crate::api::tasks::expire_leases(
        h.proposer.clone(),
        h.cluster.clone(),
        h.leases.clone(),
        election,
        h.metrics.lease_expired.clone(),
    );
    let expiry = tokio::spawn(tasks_leases);
    let me = crate::proto::etcdserverpb::Member {
        id: h.cluster.member,
        name: h.config.name.clone(),
        client_ur_ls: h.config.advertise_client_urls.iter().map(|u| u.text.clone()).collect(),
        ..Default::default()
    };
    let retry = Duration::from_millis(h.config.heartbeat_ms.max(100));
    let compactor = h.config.auto_compaction.map(|mode| {
        let run = crate::api::compactor::run(mode, h.proposer.clone(), Arc::clone(&h.stores), h.cluster.clone());
        tokio::spawn(run)
    });
    let corrupt_check = h.config.corrupt_check_time.map(|every| {
        let check = crate::api::corrupt::monitor(
            every,
            Arc::clone(&h.stores),
            h.cluster.clone(),
            h.peer_dialer.clone(),
            h.proposer.clone(),
        );
        tokio::spawn(check)
    });
    let published = tokio::spawn(crate::api::tasks::publish(h.proposer.clone(), h.cluster.clone(), me, retry));
    log(
        "info",
        "ready to serve client requests",
        &[("name", h.config.name.clone()), ("member-id", format!("{:x}", h.cluster.member))],
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(Error::io("install the SIGTERM handler"))?;
    // etcd stops on SIGHUP as on SIGTERM (its e2e harness sends it).
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(Error::io("install the SIGHUP handler"))?;
    let failed = tokio::select! {
        _ = tokio::signal::ctrl_c() => { log("info", "received a stop signal, shutting down", &[]); None }
        _ = term.recv() => { log("info", "received a stop signal, shutting down", &[]); None }
        _ = hup.recv() => { log("info", "received a stop signal, shutting down", &[("signal", "SIGHUP".into())]); None }
        _ = h.cluster.status.removed.notified() => None,
        Some((_, e)) = fatal.recv() => Some(e),
    };
    h.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
    if failed.is_none() {
        crate::api::tasks::hand_over_leadership(&h.cluster).await;
    }
    let _ = stop_tx.send(true);
    expiry.abort();
    published.abort();
    for t in [corrupt_check, compactor].into_iter().flatten() {
        t.abort();
    }
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
    failed.map_or(Ok(()), Err)
}
