//! `/metrics` (Prometheus text format 0.0.4) and `/health`, served on every client URL (as etcd serves them next
//! to gRPC) and on each --listen-metrics-urls address.
//!
//! Series names are etcd's, so existing dashboards and alerts (`etcd_server_has_leader`,
//! `etcd_disk_wal_fsync_duration_seconds`, `etcd_mvcc_db_total_size_in_bytes`, ...) work unchanged. Every value is
//! read when scraped from atomics or short critical sections; a scrape never waits on the WAL or on Raft.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::apply::store::StoreSlot;
use crate::consensus::view::ClusterView;
use crate::proposals::Proposals;

/// What a scrape reads: the cluster view, the store, pending proposals, the WAL's counters and the quota.
#[derive(Debug)]
pub struct Probe {
    pub cluster: ClusterView,
    pub stores: Arc<StoreSlot>,
    pub proposals: Arc<Proposals>,
    pub wal_metrics: Arc<wal::Metrics>,
    pub quota: i64,
    /// The raised alarms (`/health` fails while one is raised).
    pub alarms: crate::apply::alarm::Alarms,
    /// The counted series, appended to the scrape.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// The router holding `/metrics`, `/health`, `/version`, and 3.5's `/livez` and `/readyz` (kubeadm probes them).
pub fn router(probe: Arc<Probe>) -> axum::Router {
    let metrics_probe = Arc::clone(&probe);
    let ready_probe = Arc::clone(&probe);
    axum::Router::new()
        .route("/version", get(|| async { version() }))
        .route("/livez", get(|| async { (StatusCode::OK, "ok") }))
        .route(
            "/readyz",
            get(move || {
                let probe = Arc::clone(&ready_probe);
                async move { readyz(&probe) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let probe = Arc::clone(&metrics_probe);
                async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&probe)) }
            }),
        )
        .route(
            "/health",
            get(move |query: axum::extract::RawQuery| {
                let probe = Arc::clone(&probe);
                async move { health(&probe, query.0.as_deref().unwrap_or("")) }
            }),
        )
}

/// etcd 3.4's /health: 200 `{"health":"true"}` while a leader is known and no alarm is raised (but those named
/// by `?exclude=NAME`), 503 `{"health":"false"}` otherwise.
fn health(probe: &Probe, query: &str) -> impl IntoResponse + use<> {
    let excluded: Vec<&str> = query.split('&').filter_map(|kv| kv.strip_prefix("exclude=")).collect();
    let alarmed =
        probe.alarms.list(0).iter().any(|a| !excluded.contains(&crate::apply::alarm::name(a.alarm).unwrap_or("")));
    let ok = !alarmed && probe.cluster.status.leader.load(Relaxed) != 0;
    if ok { &probe.metrics.health_success } else { &probe.metrics.health_failures }.inc();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], format!("{{\"health\":\"{ok}\"}}"))
}

/// etcd's /version: the server version and the cluster version.
fn version() -> impl IntoResponse + use<> {
    let server = crate::api::maintenance::SERVER_VERSION;
    let cluster = format!("{}.0", crate::api::maintenance::API_VERSION);
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"etcdserver\":\"{server}\",\"etcdcluster\":\"{cluster}\"}}"),
    )
}

/// 3.5's /readyz: "ok" while a leader is known; 503 naming the failed check otherwise.
fn readyz(probe: &Probe) -> impl IntoResponse + use<> {
    if probe.cluster.status.leader.load(Relaxed) != 0 {
        (StatusCode::OK, "ok".to_string())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "[-]leader failed: etcdserver: no leader\nreadyz check failed".to_string())
    }
}

/// One gauge or counter with no labels.
fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

/// A histogram in Prometheus' cumulative-bucket form.
fn histogram(out: &mut String, name: &str, help: &str, h: &wal::HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for &(le, count) in &h.buckets {
        if le.is_infinite() {
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        } else {
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
    }
    let _ = writeln!(out, "{name}_sum {}\n{name}_count {}", h.sum, h.count);
}

/// The exposition text for one scrape.
pub fn render(probe: &Probe) -> String {
    let mut out = String::with_capacity(4096);
    let leader = probe.cluster.status.leader.load(Relaxed);
    let stats = probe.stores.get().db().stats();
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let _ = writeln!(
        out,
        "# HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.\n\
         # TYPE etcd_server_version gauge\netcd_server_version{{server_version=\"{}\"}} 1",
        crate::api::maintenance::SERVER_VERSION
    );
    let _ = writeln!(
        out,
        "# HELP etcd_cluster_version Which version is running. 1 for 'cluster_version' label with current cluster \
         version\n# TYPE etcd_cluster_version gauge\netcd_cluster_version{{cluster_version=\"{}\"}} 1",
        crate::api::maintenance::API_VERSION
    );
    let _ = writeln!(
        out,
        "# HELP etcd_server_id Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.\n\
         # TYPE etcd_server_id gauge\netcd_server_id{{server_id=\"{:x}\"}} 1",
        probe.cluster.member
    );
    scalar(
        &mut out,
        "etcd_server_has_leader",
        "gauge",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        flag(leader != 0),
    );
    scalar(
        &mut out,
        "etcd_server_is_leader",
        "gauge",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        flag(leader == probe.cluster.member),
    );
    scalar(
        &mut out,
        "etcd_server_is_learner",
        "gauge",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        flag(probe.cluster.is_learner()),
    );
    let changes = probe.cluster.status.leader_changes.load(Relaxed) as f64;
    scalar(&mut out, "etcd_server_leader_changes_seen_total", "counter", "The number of leader changes seen.", changes);
    let heartbeats = probe.cluster.status.heartbeat_send_failures.load(Relaxed) as f64;
    scalar(
        &mut out,
        "etcd_server_heartbeat_send_failures_total",
        "counter",
        "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
        heartbeats,
    );
    let slow_reads = probe.cluster.status.slow_read_indexes.load(Relaxed) as f64;
    scalar(
        &mut out,
        "etcd_server_slow_read_indexes_total",
        "counter",
        "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
        slow_reads,
    );
    if let Ok(revision) = crate::apply::auth::revision_of(&probe.stores.get()) {
        let help = "The current revision of auth store.";
        scalar(&mut out, "etcd_debugging_auth_revision", "gauge", help, revision as f64);
    }
    let failed_reads = probe.cluster.status.read_indexes_failed.load(Relaxed) as f64;
    scalar(
        &mut out,
        "etcd_server_read_indexes_failed_total",
        "counter",
        "The total number of failed read indexes seen.",
        failed_reads,
    );
    let committed = probe.cluster.status.commit.load(Relaxed) as f64;
    scalar(
        &mut out,
        "etcd_server_proposals_committed_total",
        "gauge",
        "The total number of consensus proposals committed.",
        committed,
    );
    let applied = probe.cluster.applied() as f64;
    scalar(
        &mut out,
        "etcd_server_proposals_applied_total",
        "gauge",
        "The total number of consensus proposals applied.",
        applied,
    );
    let pending = probe.proposals.pending() as f64;
    scalar(
        &mut out,
        "etcd_server_proposals_pending",
        "gauge",
        "The current number of pending proposals to commit.",
        pending,
    );
    let quota = probe.quota as f64;
    scalar(&mut out, "etcd_server_quota_backend_bytes", "gauge", "Current backend storage quota size in bytes.", quota);
    let size = stats.file_size as f64;
    scalar(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "gauge",
        "Total size of the underlying database physically allocated in bytes.",
        size,
    );
    scalar(
        &mut out,
        "etcd_debugging_mvcc_db_total_size_in_bytes",
        "gauge",
        "Total size of the underlying database physically allocated in bytes.",
        size,
    );
    let in_use = stats.in_use as f64;
    scalar(
        &mut out,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "gauge",
        "Total size of the underlying database logically in use in bytes.",
        in_use,
    );
    let rev = probe.stores.get().current_revision() as f64;
    scalar(&mut out, "etcd_debugging_mvcc_current_revision", "gauge", "The current revision of store.", rev);
    let compacted = probe.stores.get().compact_revision() as f64;
    scalar(
        &mut out,
        "etcd_debugging_mvcc_compact_revision",
        "gauge",
        "The revision of the last compaction in store.",
        compacted,
    );
    let wal = &probe.wal_metrics;
    histogram(
        &mut out,
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        &wal.fsync.snapshot(),
    );
    let written = wal.bytes_written.load(Relaxed) as f64;
    scalar(&mut out, "etcd_disk_wal_write_bytes_total", "gauge", "Total number of bytes written in WAL.", written);
    out.push_str(&probe.metrics.text());
    out
}
