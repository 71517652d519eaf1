//! Criterion: our B+tree file against redb on the issue-4 workloads, each with its durability in its name.

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "../shared/engines.rs"]
mod engines;

use engines::{Engine, Ours, Redb, items};

fn engines(dir: &std::path::Path) -> Vec<Box<dyn Engine>> {
    vec![Box::new(Ours::create(dir)), Box::new(Redb::create(dir))]
}

fn btree(c: &mut Criterion) {
    let mut g = c.benchmark_group("btree");
    g.sample_size(10);
    // Batched inserts: 100k keys, 1,000 per durable commit.
    fn insert_batches<E: Engine>(b: &mut criterion::Bencher<'_>, create: fn(&std::path::Path) -> E) {
        b.iter_custom(|iters| {
            let mut total = std::time::Duration::ZERO;
            for i in 0..iters {
                let dir = benches::scratch();
                let e = create(dir.path());
                let data = items(100_000, i);
                let t = Instant::now();
                for chunk in data.chunks(1000) {
                    e.insert_batch(chunk);
                }
                total += t.elapsed();
            }
            total
        })
    }
    g.bench_function("insert_100k_batch_1000/fdatasync/ours", |b| insert_batches(b, Ours::create));
    g.bench_function("insert_100k_batch_1000/fdatasync/redb", |b| insert_batches(b, Redb::create));
    // Reads on 1M keys, and single-put durable commits.
    let dir = benches::scratch();
    let data = items(1_000_000, 42);
    let mut sorted: Vec<Vec<u8>> = data.iter().map(|(k, _)| k.clone()).collect();
    sorted.sort();
    let probes: Vec<Vec<u8>> = data.iter().step_by(97).take(10_000).map(|(k, _)| k.clone()).collect();
    for e in engines(dir.path()) {
        for chunk in data.chunks(10_000) {
            e.insert_batch(chunk);
        }
        g.bench_function(format!("get_random_10k_of_1m/{}", e.name()), |b| {
            b.iter(|| assert_eq!(e.get_all(&probes), probes.len()))
        });
        let mut i = 0usize;
        g.bench_function(format!("scan_1000_of_1m/{}", e.name()), |b| {
            b.iter(|| {
                i = (i + 7919) % (sorted.len() - 1000);
                e.scan(&sorted[i], 1000)
            })
        });
        let mut n = 0u64;
        g.bench_function(format!("single_put_commit/fdatasync/{}", e.name()), |b| {
            b.iter(|| {
                n += 1;
                e.put_one(&n.to_be_bytes(), &[7u8; 150]);
            })
        });
    }
    g.finish();
}

criterion_group!(benches_group, btree);
criterion_main!(benches_group);
