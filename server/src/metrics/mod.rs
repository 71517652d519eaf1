//! The series the server counts as it works, in a `prometheus` registry of its own (one per server), appended to
//! `/metrics` after the series read from the member's state (`api::http`). Names, types, labels, buckets and help
//! texts are etcd 3.4's, so its dashboards, alerts and tests read them:
//! - mvcc: `etcd_mvcc_range_total`, `etcd_mvcc_put_total`, `etcd_mvcc_delete_total`, `etcd_mvcc_txn_total` (as
//!   etcd counts them: one per Range, Put and DeleteRange executed, a Txn's included; `txn_total` counts the
//!   requests that executed more than one), `etcd_debugging_mvcc_keys_total` (live keys);
//! - gRPC (go-grpc-prometheus's): `grpc_server_started_total`, `grpc_server_handled_total` (with the status code),
//!   `grpc_server_msg_received_total` and `grpc_server_msg_sent_total`, by method, service and type (see
//!   `api::grpc_metrics`); `etcd_network_client_grpc_{received,sent}_bytes_total`;
//! - disk: `etcd_disk_backend_commit_duration_seconds` (every commit of the store's file, see [`observe_commit`]),
//!   `etcd_disk_backend_defrag_duration_seconds`, `etcd_disk_defrag_inflight`,
//!   `etcd_disk_backend_snapshot_duration_seconds`;
//! - server: `etcd_server_proposals_failed_total`, `etcd_server_health_success` / `_failures`,
//!   `etcd_server_slow_apply_total`, `etcd_server_snapshot_apply_in_progress_total`,
//!   `etcd_server_learner_promote_successes` / `_failures`, `etcd_server_client_requests_total`;
//! - peers (`peer`): rafthttp's series, the round-trip time, snapshots sent and received;
//! - `etcd_mvcc_hash_duration_seconds`, `etcd_mvcc_hash_rev_duration_seconds`, the `etcd_debugging_mvcc_*`
//!   twins of the four mvcc counters, the compaction series and the bytes put;
//! - leases: `etcd_debugging_lease_{granted,renewed,revoked}_total`, `etcd_debugging_lease_ttl_total`,
//!   `etcd_debugging_server_lease_expired_total`;
//! - the process (the `prometheus` crate's process collector): `process_cpu_seconds_total`,
//!   `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, …; and
//!   etcd's own `os_fd_used` and `os_fd_limit`.
//!
//! **Threading**: every series is atomics; recording takes no lock (the label vectors' handles are resolved on
//! each call through a read-mostly map, which the gRPC layer does once per call, not per message). The backend's
//! commit histogram is process-wide ([`observe_commit`] is a plain function the store calls on its writer thread);
//! every other series belongs to one server.

mod peer;

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, exponential_buckets};

pub use peer::{PeerHandles, PeerMetrics, Transfer, Transfers};

use crate::apply::Outcome;

/// The registry and its series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub range: IntCounter,
    pub put: IntCounter,
    pub delete: IntCounter,
    pub txn: IntCounter,
    /// The same four counts under etcd's `etcd_debugging_mvcc_*` names, which etcd 3.4 exports beside them.
    debug_counts: [IntCounter; 4],
    pub keys: IntGauge,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
    pub grpc_msg_received: IntCounterVec,
    pub grpc_msg_sent: IntCounterVec,
    /// Observed only under `--metrics=extensive`, as etcd enables it (a family with no series is not shown).
    pub grpc_handling: prometheus::HistogramVec,
    pub client_received_bytes: IntCounter,
    pub client_sent_bytes: IntCounter,
    pub defrag: Histogram,
    pub defrag_inflight: IntGauge,
    pub snapshot: Histogram,
    pub proposals_failed: IntCounter,
    pub health_success: IntCounter,
    pub health_failures: IntCounter,
    pub lease_granted: IntCounter,
    pub lease_renewed: IntCounter,
    pub lease_revoked: IntCounter,
    pub lease_expired: IntCounter,
    pub lease_ttl: Histogram,
    pub peers: PeerMetrics,
    pub watch_streams: IntGauge,
    pub watchers: IntGauge,
    pub slow_watchers: IntGauge,
    pub watch_events: IntCounter,
    /// Applies (one request, or a run of writes in one commit) that took longer than [`SLOW_APPLY`].
    pub slow_apply: IntCounter,
    pub snapshot_apply_in_progress: IntGauge,
    pub learner_promote_successes: IntCounter,
    pub learner_promote_failures: IntCounterVec,
    /// `etcd_server_client_requests_total` by call type and the client's `client-api-version` header.
    client_requests: IntCounterVec,
    /// The series of the usual versions, resolved on first use so the call path takes no lock.
    client_request_handles: [[OnceLock<IntCounter>; CLIENT_VERSIONS.len()]; 2],
    pub hash: Histogram,
    pub hash_rev: Histogram,
    /// etcd's compaction series: the index's pause, each batch's pause, the whole, in milliseconds; revisions
    /// deleted.
    compaction: [Histogram; 3],
    compaction_keys: IntCounter,
    /// `etcd_debugging_mvcc_total_put_size_in_bytes`: keys and values put, in bytes.
    put_size: IntGauge,
}

/// etcd's `warnApplyDuration`: an apply slower than this counts in `etcd_server_slow_apply_total` and is logged.
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The `client-api-version` values whose series are cached (etcd's clients send their minor version).
const CLIENT_VERSIONS: [&str; 9] = ["unknown", "3.0", "3.1", "3.2", "3.3", "3.4", "3.5", "3.6", "3.7"];

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("a valid metric name {name}: {e}"));
    let _ = registry.register(Box::new(g.clone()));
    g
}

/// Buckets `start * factor^i`, `i` in `0..n` (as etcd's `prometheus.ExponentialBuckets`).
fn buckets(start: f64, factor: f64, n: usize) -> Vec<f64> {
    exponential_buckets(start, factor, n).unwrap_or_else(|e| unreachable!("valid buckets: {e}"))
}

fn histogram(name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
        .unwrap_or_else(|e| unreachable!("a valid metric name {name}: {e}"))
}

fn registered_histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let h = histogram(name, help, buckets);
    let _ = registry.register(Box::new(h.clone()));
    h
}

/// `etcd_disk_backend_commit_duration_seconds`, for every store this process opens.
static BACKEND_COMMIT: LazyLock<Histogram> = LazyLock::new(|| {
    let help = "The latency distributions of commit called by backend.";
    histogram("etcd_disk_backend_commit_duration_seconds", help, buckets(0.001, 2.0, 14))
});

/// Records one commit of the store's file (`mvcc::DbConfig::on_commit`).
pub fn observe_commit(took: Duration) {
    BACKEND_COMMIT.observe(took.as_secs_f64());
}

/// The number of open file descriptors and their limit (etcd's `os_fd_used`, `os_fd_limit`).
fn fds() -> (f64, f64) {
    let used = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (used, if ok { limit.rlim_cur as f64 } else { 0.0 })
}

/// The address-space limit (`process_virtual_memory_max_bytes`; unlimited is 2^64 - 1, as Go's client shows it).
fn address_space_limit() -> f64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0;
    if ok { limit.rlim_cur as f64 } else { 0.0 }
}

fn register_process(registry: &Registry) {
    let _ = registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()));
    for (name, help, pick) in [
        ("os_fd_used", "The number of used file descriptors.", (|| fds().0) as fn() -> f64),
        ("os_fd_limit", "The file descriptor limit.", || fds().1),
        (
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            address_space_limit,
        ),
    ] {
        if let Ok(g) = prometheus::PullingGauge::new(name, help, Box::new(pick)) {
            let _ = registry.register(Box::new(g));
        }
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("a valid metric name {name}: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("a valid metric name {name}: {e}"));
    let _ = registry.register(Box::new(c.clone()));
    c
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let grpc = ["grpc_method", "grpc_service", "grpc_type"];
        register_process(&registry);
        let _ = registry.register(Box::new(BACKEND_COMMIT.clone()));
        let r = &registry;
        Metrics {
            range: counter(&registry, "etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            put: counter(&registry, "etcd_mvcc_put_total", "Total number of puts seen by this member."),
            delete: counter(&registry, "etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            txn: counter(&registry, "etcd_mvcc_txn_total", "Total number of txns seen by this member."),
            debug_counts: [
                counter(r, "etcd_debugging_mvcc_range_total", "Total number of ranges seen by this member."),
                counter(r, "etcd_debugging_mvcc_put_total", "Total number of puts seen by this member."),
                counter(r, "etcd_debugging_mvcc_delete_total", "Total number of deletes seen by this member."),
                counter(r, "etcd_debugging_mvcc_txn_total", "Total number of txns seen by this member."),
            ],
            keys: gauge(r, "etcd_debugging_mvcc_keys_total", "Total number of keys."),
            grpc_started: counter_vec(
                &registry,
                "grpc_server_started_total",
                "Total number of RPCs started on the server.",
                &grpc,
            ),
            grpc_handled: counter_vec(
                &registry,
                "grpc_server_handled_total",
                "Total number of RPCs completed on the server, regardless of success or failure.",
                &["grpc_code", "grpc_method", "grpc_service", "grpc_type"],
            ),
            grpc_msg_received: counter_vec(
                r,
                "grpc_server_msg_received_total",
                "Total number of RPC stream messages received on the server.",
                &grpc,
            ),
            grpc_msg_sent: counter_vec(
                r,
                "grpc_server_msg_sent_total",
                "Total number of gRPC stream messages sent by the server.",
                &grpc,
            ),
            grpc_handling: {
                let opts = HistogramOpts::new(
                    "grpc_server_handling_seconds",
                    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                );
                let h = prometheus::HistogramVec::new(opts, &grpc)
                    .unwrap_or_else(|e| unreachable!("a valid metric name: {e}"));
                let _ = r.register(Box::new(h.clone()));
                h
            },
            client_received_bytes: counter(
                r,
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            ),
            client_sent_bytes: counter(
                r,
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            ),
            defrag: registered_histogram(
                r,
                "etcd_disk_backend_defrag_duration_seconds",
                "The latency distribution of backend defragmentation.",
                buckets(0.1, 2.0, 13),
            ),
            defrag_inflight: gauge(
                r,
                "etcd_disk_defrag_inflight",
                "Whether or not defrag is active on the member. 1 means active, 0 means not.",
            ),
            snapshot: registered_histogram(
                r,
                "etcd_disk_backend_snapshot_duration_seconds",
                "The latency distribution of backend snapshots.",
                buckets(0.01, 2.0, 17),
            ),
            proposals_failed: counter(
                r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
            health_success: counter(r, "etcd_server_health_success", "The total number of successful health checks"),
            health_failures: counter(r, "etcd_server_health_failures", "The total number of failed health checks"),
            lease_granted: counter(r, "etcd_debugging_lease_granted_total", "The total number of granted leases."),
            lease_renewed: counter(
                r,
                "etcd_debugging_lease_renewed_total",
                "The number of renewed leases seen by the leader.",
            ),
            lease_revoked: counter(r, "etcd_debugging_lease_revoked_total", "The total number of revoked leases."),
            lease_expired: counter(
                r,
                "etcd_debugging_server_lease_expired_total",
                "The total number of expired leases.",
            ),
            lease_ttl: registered_histogram(
                r,
                "etcd_debugging_lease_ttl_total",
                "Bucketed histogram of lease TTLs.",
                buckets(1.0, 2.0, 24),
            ),
            peers: PeerMetrics::new(r),
            watch_streams: gauge(r, "etcd_debugging_mvcc_watch_stream_total", "Total number of watch streams."),
            watchers: gauge(r, "etcd_debugging_mvcc_watcher_total", "Total number of watchers."),
            slow_watchers: gauge(
                r,
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            ),
            watch_events: counter(r, "etcd_debugging_mvcc_events_total", "Total number of events sent by this member."),
            slow_apply: counter(
                r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            snapshot_apply_in_progress: gauge(
                r,
                "etcd_server_snapshot_apply_in_progress_total",
                "1 if the server is applying the incoming snapshot. 0 if none.",
            ),
            learner_promote_successes: counter(
                r,
                "etcd_server_learner_promote_successes",
                "The total number of successful learner promotions while this member is leader.",
            ),
            learner_promote_failures: counter_vec(
                r,
                "etcd_server_learner_promote_failures",
                "The total number of failed learner promotions (likely learner not ready) while this member is leader.",
                &["Reason"],
            ),
            client_requests: counter_vec(
                r,
                "etcd_server_client_requests_total",
                "The total number of client requests per client version.",
                &["type", "client_api_version"],
            ),
            client_request_handles: Default::default(),
            hash: registered_histogram(
                r,
                "etcd_mvcc_hash_duration_seconds",
                "The latency distribution of storage hash operation.",
                buckets(0.01, 2.0, 15),
            ),
            hash_rev: registered_histogram(
                r,
                "etcd_mvcc_hash_rev_duration_seconds",
                "The latency distribution of storage hash by revision operation.",
                buckets(0.01, 2.0, 15),
            ),
            compaction: [
                registered_histogram(
                    r,
                    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
                    "Bucketed histogram of index compaction pause duration.",
                    buckets(0.5, 2.0, 14),
                ),
                registered_histogram(
                    r,
                    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
                    "Bucketed histogram of db compaction pause duration.",
                    buckets(1.0, 2.0, 13),
                ),
                registered_histogram(
                    r,
                    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
                    "Bucketed histogram of db compaction total duration.",
                    buckets(100.0, 2.0, 14),
                ),
            ],
            compaction_keys: counter(
                r,
                "etcd_debugging_mvcc_db_compaction_keys_total",
                "Total number of db keys compacted.",
            ),
            put_size: gauge(
                r,
                "etcd_debugging_mvcc_total_put_size_in_bytes",
                "The total size of put kv pairs seen by this member.",
            ),
            registry,
        }
    }
}

/// Ranges, puts and deletes a Txn's executed branch ran, nested Txns included.
fn txn_ops(res: &mvcc::TxnResult, counts: &mut [u64; 3]) {
    for r in &res.responses {
        match r {
            mvcc::ResponseOp::Range(_) => counts[0] += 1,
            mvcc::ResponseOp::Put(_) => counts[1] += 1,
            mvcc::ResponseOp::DeleteRange(_) => counts[2] += 1,
            mvcc::ResponseOp::Txn(t) => txn_ops(t, counts),
        }
    }
}

impl Metrics {
    /// Counts what an applied write executed (etcd's metricsTxnWrite).
    pub fn applied(&self, outcome: &Outcome) {
        let counts = match outcome {
            Outcome::Put { .. } => [0, 1, 0],
            Outcome::DeleteRange(_) => [0, 0, 1],
            Outcome::Txn(res) => {
                let mut c = [0; 3];
                txn_ops(res, &mut c);
                c
            }
            _ => return,
        };
        let txn = u64::from(counts.iter().sum::<u64>() > 1);
        for (c, n) in
            [&self.range, &self.put, &self.delete, &self.txn].into_iter().zip([counts[0], counts[1], counts[2], txn])
        {
            c.inc_by(n);
        }
        for (c, n) in self.debug_counts.iter().zip([counts[0], counts[1], counts[2], txn]) {
            c.inc_by(n);
        }
    }

    /// Counts one client call (`stream`: a streaming one) by the `client-api-version` its client sent.
    pub fn client_request(&self, stream: bool, version: Option<&str>) {
        let version = version.unwrap_or("unknown");
        let kind = if stream { "stream" } else { "unary" };
        match CLIENT_VERSIONS.iter().position(|v| *v == version) {
            Some(i) => self.client_request_handles[usize::from(stream)][i]
                .get_or_init(|| self.client_requests.with_label_values(&[kind, version]))
                .inc(),
            None => self.client_requests.with_label_values(&[kind, version]).inc(),
        }
    }

    /// Counts (and logs, as etcd does) an apply that took longer than [`SLOW_APPLY`]; `what` names it.
    pub fn applied_in(&self, took: Duration, what: &str) {
        if took > SLOW_APPLY {
            self.slow_apply.inc();
            let fields =
                [("took", format!("{took:?}")), ("expected-duration", "100ms".into()), ("request", what.into())];
            crate::logging::log("warn", "apply request took too long", &fields);
        }
    }

    /// Records a compaction (in whole milliseconds, as etcd observes them).
    pub fn compacted(&self, stats: &mvcc::CompactStats) {
        let ms = |d: Duration| d.as_millis() as f64;
        self.compaction[0].observe(ms(stats.index_pause));
        for p in &stats.batch_pauses {
            self.compaction[1].observe(ms(*p));
        }
        self.compaction[2].observe(ms(stats.total));
        self.compaction_keys.inc_by(stats.deleted);
    }

    /// Follows the live key count (a key created, or deleted) and the bytes put through a write's changes.
    pub fn changes(&self, changes: &[mvcc::Change]) {
        let put: usize = changes.iter().filter(|c| !c.deleted).map(|c| c.kv.key.len() + c.kv.value.len()).sum();
        self.put_size.add(put as i64);
        for c in changes {
            match (c.deleted, c.prev.is_some()) {
                (false, false) => self.keys.inc(),
                (true, true) => self.keys.dec(),
                _ => {}
            }
        }
    }

    /// Sets the live key count from `store` (at start, and when a snapshot replaces the store).
    pub fn count_keys(&self, store: &mvcc::Store) -> Result<(), mvcc::Error> {
        let opts = mvcc::RangeOptions { count_only: true, ..Default::default() };
        self.keys.set(store.range(b"\0", &[0], opts)?.count);
        Ok(())
    }

    /// The exposition text of the registry's series.
    pub fn text(&self) -> String {
        prometheus::TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_as_etcd_counts() {
        let m = Metrics::default();
        m.applied(&Outcome::Put { prev: None });
        m.applied(&Outcome::DeleteRange(mvcc::DeleteResult { deleted: 0, prevs: Vec::new() }));
        let nested = mvcc::TxnResult {
            succeeded: true,
            responses: vec![
                mvcc::ResponseOp::Put(mvcc::PutResult { prev: None }),
                mvcc::ResponseOp::DeleteRange(mvcc::DeleteResult { deleted: 0, prevs: Vec::new() }),
            ],
        };
        let txn = mvcc::TxnResult {
            succeeded: false,
            responses: vec![mvcc::ResponseOp::Range(Default::default()), mvcc::ResponseOp::Txn(nested)],
        };
        m.applied(&Outcome::Txn(txn));
        assert_eq!((m.range.get(), m.put.get(), m.delete.get(), m.txn.get()), (1, 2, 2, 1));
        let text = m.text();
        assert!(text.contains("etcd_mvcc_put_total 2"), "{text}");
        assert!(text.contains("# TYPE etcd_mvcc_delete_total counter"), "{text}");
    }
}
