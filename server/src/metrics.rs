//! The series the server counts as it works, in a `prometheus` registry of its own (one per server, no globals),
//! appended to `/metrics` after the series read from the member's state (`api::http`). Names, types and labels are
//! etcd 3.4's, so its dashboards and tests read them:
//! - mvcc: `etcd_mvcc_range_total`, `etcd_mvcc_put_total`, `etcd_mvcc_delete_total`, `etcd_mvcc_txn_total` (as
//!   etcd counts them: one per Range, Put and DeleteRange executed, a Txn's included; `txn_total` counts the
//!   requests that executed more than one), `etcd_debugging_mvcc_keys_total` (live keys);
//! - gRPC (go-grpc-prometheus's): `grpc_server_started_total` and `grpc_server_handled_total` by method, service,
//!   type and, for handled, the status code; a stream the client abandons counts as `Canceled` (see
//!   `api::grpc_metrics`).
//!
//! **Threading**: every series is atomics; recording takes no lock (the label vectors' handles are resolved on
//! each call through a read-mostly map, which the gRPC layer does once per call, not per message).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::apply::Outcome;

/// The registry and its series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub range: IntCounter,
    pub put: IntCounter,
    pub delete: IntCounter,
    pub txn: IntCounter,
    pub keys: IntGauge,
    pub grpc_started: IntCounterVec,
    pub grpc_handled: IntCounterVec,
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
        let keys = IntGauge::new("etcd_debugging_mvcc_keys_total", "Total number of keys.")
            .unwrap_or_else(|e| unreachable!("a valid metric name: {e}"));
        let _ = registry.register(Box::new(keys.clone()));
        let grpc = ["grpc_method", "grpc_service", "grpc_type"];
        Metrics {
            range: counter(&registry, "etcd_mvcc_range_total", "Total number of ranges seen by this member."),
            put: counter(&registry, "etcd_mvcc_put_total", "Total number of puts seen by this member."),
            delete: counter(&registry, "etcd_mvcc_delete_total", "Total number of deletes seen by this member."),
            txn: counter(&registry, "etcd_mvcc_txn_total", "Total number of txns seen by this member."),
            keys,
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
        if counts.iter().sum::<u64>() > 1 {
            self.txn.inc();
        }
        self.range.inc_by(counts[0]);
        self.put.inc_by(counts[1]);
        self.delete.inc_by(counts[2]);
    }

    /// Follows the live key count through a write's changes: a key created, or deleted.
    pub fn changes(&self, changes: &[mvcc::Change]) {
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
