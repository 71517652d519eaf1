//! What a failpoint costs its caller: off (the state every production member runs in) it should cost what one
//! relaxed atomic load costs; set to `off` (armed, firing nothing) it takes its lock. And what the recording that
//! issue 19 added to a put costs at most: two message counters and two byte counters of the gRPC path, the client
//! request counter, the four `etcd_debugging_mvcc_*` counters and the bytes-put gauge of the apply, one
//! observation of the store's commit histogram, and seven failpoints passed (WAL, Raft, commit), alone and with
//! the server's two worker threads recording at once (the counters' cache lines then move between cores).

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use failpoint::Failpoint;

static UNSET: Failpoint = Failpoint::new("benchUnset");
static ARMED_OFF: Failpoint = Failpoint::new("benchArmedOff");
static FLAG: AtomicBool = AtomicBool::new(false);

fn failpoints(c: &mut Criterion) {
    let mut g = c.benchmark_group("failpoint");
    g.bench_function("relaxed_atomic_load", |b| b.iter(|| black_box(&FLAG).load(Ordering::Relaxed)));
    g.bench_function("unset_eval", |b| b.iter(|| black_box(&UNSET).eval()));
    ARMED_OFF.set("off").unwrap();
    g.bench_function("set_off_eval", |b| b.iter(|| black_box(&ARMED_OFF).eval()));
    g.finish();
}

/// The series a put records since issue 19, on one thread's handles.
struct PutRecords {
    counters: [prometheus::IntCounter; 9],
    put_size: prometheus::IntGauge,
    commit: prometheus::Histogram,
}

impl PutRecords {
    fn new() -> Self {
        let c = |n: &str| prometheus::IntCounter::new(n, "-").unwrap();
        let opts = prometheus::HistogramOpts::new("commit", "-")
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14).unwrap());
        PutRecords {
            counters: [
                c("received"),
                c("sent"),
                c("bytes_in"),
                c("bytes_out"),
                c("client_requests"),
                c("debug_range"),
                c("debug_put"),
                c("debug_delete"),
                c("debug_txn"),
            ],
            put_size: prometheus::IntGauge::new("put_size", "-").unwrap(),
            commit: prometheus::Histogram::with_opts(opts).unwrap(),
        }
    }

    fn record(&self) {
        for c in &self.counters {
            c.inc_by(black_box(1));
        }
        self.put_size.add(black_box(264));
        self.commit.observe(black_box(0.0007));
        for _ in 0..7 {
            black_box(&UNSET).eval();
        }
    }
}

fn put_records(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics");
    let records = std::sync::Arc::new(PutRecords::new());
    g.bench_function("put_records", |b| b.iter(|| records.record()));
    g.bench_function("put_records_two_threads", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let r = &records;
                    s.spawn(move || (0..iters).for_each(|_| r.record()));
                }
            });
            // Per put: each thread recorded `iters` puts in the elapsed time, side by side.
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, failpoints, put_records);
criterion_main!(benches);
