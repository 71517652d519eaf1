//! Criterion benchmarks of the WAL's durable append path: `wal_append/fdatasync/256B/<engine>/<writers>`.
//! Each iteration is one 256-byte append acknowledged after the flush that covers it; with several writers the
//! iterations are spread over that many threads and the time is wall-clock for all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wal::{Config, EngineKind, Record, Wal};

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append/fdatasync/256B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    let record = benches::value(256, 1);
    for engine in [EngineKind::Sync, EngineKind::Uring] {
        for writers in [1usize, 16, 64, 256] {
            let dir = benches::scratch();
            let wal = Arc::new(Wal::create(dir.path(), Config { engine, ..Config::default() }).expect("wal"));
            group.bench_function(format!("{engine:?}/{writers}"), |b| {
                b.iter_custom(|iters| {
                    let per = iters.div_ceil(writers as u64);
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..writers {
                            let (wal, record) = (Arc::clone(&wal), &record);
                            s.spawn(move || {
                                for _ in 0..per {
                                    wal.append(&[Record::Metadata(record)]).expect("append").wait().expect("durable");
                                }
                            });
                        }
                    });
                    start.elapsed().mul_f64(iters as f64 / (per * writers as u64) as f64)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, appends);
criterion_main!(benches);
