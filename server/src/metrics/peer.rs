//! etcd's peer network series (rafthttp's and the v3 snapshot's), by the other member's id in hex as etcd names
//! it: bytes, send and receive failures, active and disconnected peers, the round-trip time, snapshots sent and
//! received, and how long saving a received snapshot took.
//!
//! **Threading**: each peer's writer thread resolves its handles once ([`PeerMetrics::peer`]); the rest are
//! resolved per event (a connection, a snapshot, a heartbeat answered), never per message.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use prometheus::{Registry, exponential_buckets};

use super::{counter_vec, registered_histogram};

/// The series, and this member's id once known.
#[derive(Debug, Clone)]
pub struct PeerMetrics {
    /// This member's id, once known (the `Local` label).
    pub local: u64,
    pub sent_bytes: IntCounterVec,
    pub received_bytes: IntCounterVec,
    pub sent_failures: IntCounterVec,
    pub received_failures: IntCounterVec,
    pub active: IntGaugeVec,
    pub disconnected: IntCounterVec,
    /// From a leader's heartbeat to the peer's answer (etcd probes each peer every 5 s instead).
    pub round_trip: HistogramVec,
    pub snapshot_send: Transfers,
    pub snapshot_receive: Transfers,
    /// `etcd_snap_db_save_total_duration_seconds`: receiving and staging a snapshot's store, as etcd saves its
    /// `.snap.db` file.
    pub snapshot_save: Histogram,
}

/// Snapshots sent to (or received from) each peer: `etcd_network_snapshot_{send,receive}_*`.
#[derive(Debug, Clone)]
pub struct Transfers {
    pub success: IntCounterVec,
    pub failures: IntCounterVec,
    pub inflight: IntGaugeVec,
    pub seconds: HistogramVec,
}

impl Transfers {
    fn new(r: &Registry, verb: &str, label: &str) -> Self {
        let name = |what: &str| format!("etcd_network_snapshot_{verb}_{what}");
        let (one, many) = if verb == "send" { ("send", "sends") } else { ("receive", "receives") };
        let inflight = IntGaugeVec::new(
            Opts::new(name("inflights_total"), format!("Total number of inflight snapshot {many}")),
            &[label],
        )
        .unwrap_or_else(|e| unreachable!("a valid metric name: {e}"));
        let _ = r.register(Box::new(inflight.clone()));
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                name("total_duration_seconds"),
                format!("Total latency distributions of v3 snapshot {many}"),
            )
            .buckets(super::buckets(0.1, 2.0, 10)),
            &[label],
        )
        .unwrap_or_else(|e| unreachable!("a valid metric name: {e}"));
        let _ = r.register(Box::new(seconds.clone()));
        Transfers {
            success: counter_vec(r, &name("success"), &format!("Total number of successful snapshot {many}"), &[label]),
            failures: counter_vec(r, &name("failures"), &format!("Total number of snapshot {one} failures"), &[label]),
            inflight,
            seconds,
        }
    }

    /// Records a transfer with `peer` (hex id) that began at `started`: a success (with its duration) or a
    /// failure.
    pub fn ended(&self, peer: &str, ok: bool, started: std::time::Instant) {
        if ok {
            self.success.with_label_values(&[peer]).inc();
            self.seconds.with_label_values(&[peer]).observe(started.elapsed().as_secs_f64());
        } else {
            self.failures.with_label_values(&[peer]).inc();
        }
    }

    /// Marks a transfer with `peer` (hex id) under way until the returned guard records how it ended.
    pub fn start(&self, peer: &str) -> Transfer {
        let inflight = self.inflight.with_label_values(&[peer]);
        inflight.inc();
        Transfer { of: self.clone(), peer: peer.to_string(), inflight, started: std::time::Instant::now() }
    }
}

/// One snapshot transfer under way.
#[derive(Debug)]
pub struct Transfer {
    of: Transfers,
    peer: String,
    inflight: IntGauge,
    started: std::time::Instant,
}

impl Transfer {
    /// Records the end: a success (with its duration) or a failure.
    pub fn end(self, ok: bool) {
        self.inflight.dec();
        self.of.ended(&self.peer, ok, self.started);
    }
}

/// One peer's series, resolved once for its writer thread.
#[derive(Debug, Clone)]
pub struct PeerHandles {
    pub sent_bytes: IntCounter,
    pub sent_failures: IntCounter,
    pub active: IntGauge,
    pub disconnected: IntCounter,
}

impl PeerMetrics {
    pub(super) fn new(r: &Registry) -> Self {
        let active = IntGaugeVec::new(
            Opts::new("etcd_network_active_peers", "The current number of active peer connections."),
            &["Local", "Remote"],
        )
        .unwrap_or_else(|e| unreachable!("a valid metric name: {e}"));
        let _ = r.register(Box::new(active.clone()));
        let round_trip = HistogramVec::new(
            HistogramOpts::new("etcd_network_peer_round_trip_time_seconds", "Round-Trip-Time histogram between peers")
                .buckets(exponential_buckets(0.0001, 2.0, 16).unwrap_or_else(|e| unreachable!("buckets: {e}"))),
            &["To"],
        )
        .unwrap_or_else(|e| unreachable!("a valid metric name: {e}"));
        let _ = r.register(Box::new(round_trip.clone()));
        PeerMetrics {
            local: 0,
            sent_bytes: counter_vec(
                r,
                "etcd_network_peer_sent_bytes_total",
                "The total number of bytes sent to peers.",
                &["To"],
            ),
            received_bytes: counter_vec(
                r,
                "etcd_network_peer_received_bytes_total",
                "The total number of bytes received from peers.",
                &["From"],
            ),
            sent_failures: counter_vec(
                r,
                "etcd_network_peer_sent_failures_total",
                "The total number of send failures from peers.",
                &["To"],
            ),
            received_failures: counter_vec(
                r,
                "etcd_network_peer_received_failures_total",
                "The total number of receive failures from peers.",
                &["From"],
            ),
            active,
            disconnected: counter_vec(
                r,
                "etcd_network_disconnected_peers_total",
                "The total number of disconnected peers.",
                &["Local", "Remote"],
            ),
            round_trip,
            snapshot_send: Transfers::new(r, "send", "To"),
            snapshot_receive: Transfers::new(r, "receive", "From"),
            snapshot_save: registered_histogram(
                r,
                "etcd_snap_db_save_total_duration_seconds",
                "The total latency distributions of v3 snapshot save",
                super::buckets(0.1, 2.0, 10),
            ),
        }
    }

    /// The series of the peer `id`, for this member (`with_local`).
    pub fn peer(&self, id: u64) -> PeerHandles {
        let (local, remote) = (format!("{:x}", self.local), format!("{id:x}"));
        PeerHandles {
            sent_bytes: self.sent_bytes.with_label_values(&[&remote]),
            sent_failures: self.sent_failures.with_label_values(&[&remote]),
            active: self.active.with_label_values(&[&local, &remote]),
            disconnected: self.disconnected.with_label_values(&[&local, &remote]),
        }
    }

    /// The same series, labelled for member `local`.
    pub fn with_local(&self, local: u64) -> Self {
        PeerMetrics { local, ..self.clone() }
    }

    /// One round trip to `to`.
    pub fn round_trip(&self, to: u64, took: Duration) {
        self.round_trip.with_label_values(&[&format!("{to:x}")]).observe(took.as_secs_f64());
    }
}
