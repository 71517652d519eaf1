//! Our B+tree file against redb, the issue-4 workloads in one run, alternating the engines, medians of rounds.
//!
//! `cargo run --release -p benches --example mvcc_vs_redb -- [ROUNDS]` (bench directory: `FERROKV_BENCH_DIR`).
//! Rows: batched inserts of 100k keys (1,000 per durable commit); 100k random gets on 1M keys; 1,000-key range
//! scans on 1M keys; single-put durable commits. Keys 24 random bytes, values 150 bytes, fdatasync per commit.

use std::time::Instant;

#[path = "../shared/engines.rs"]
mod engines;

use engines::{Engine, Ours, Redb, items};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds per round of each workload for one engine.
fn round(e: &dyn Engine, loaded: &[(Vec<u8>, Vec<u8>)], sorted: &[Vec<u8>], seed: u64) -> [f64; 4] {
    let fresh = items(100_000, seed);
    let t = Instant::now();
    for chunk in fresh.chunks(1000) {
        e.insert_batch(chunk);
    }
    let insert = t.elapsed().as_secs_f64();
    let probes: Vec<Vec<u8>> =
        loaded.iter().skip(seed as usize).step_by(9).take(100_000).map(|(k, _)| k.clone()).collect();
    let t = Instant::now();
    assert_eq!(e.get_all(&probes), probes.len());
    let gets = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut bytes = 0;
    for i in 0..200usize {
        bytes += e.scan(&sorted[(i * 4999 + seed as usize * 31) % (sorted.len() - 1000)], 1000);
    }
    assert!(bytes >= 200 * 1000 * 150);
    let scans = t.elapsed().as_secs_f64() / 200.0;
    let t = Instant::now();
    for n in 0..300u64 {
        e.put_one(&(seed << 32 | n).to_be_bytes(), &[7u8; 150]);
    }
    let puts = t.elapsed().as_secs_f64() / 300.0;
    [insert, gets, scans, puts]
}

fn main() {
    let rounds: usize = std::env::args().nth(1).map(|r| r.parse().expect("ROUNDS")).unwrap_or(3);
    let dir = benches::scratch();
    let loaded = items(1_000_000, 42);
    let mut sorted: Vec<Vec<u8>> = loaded.iter().map(|(k, _)| k.clone()).collect();
    sorted.sort();
    let ours = Ours::create(dir.path());
    let redb = Redb::create(dir.path());
    for e in [&ours as &dyn Engine, &redb] {
        let t = Instant::now();
        for chunk in loaded.chunks(10_000) {
            e.insert_batch(chunk);
        }
        eprintln!("{}: loaded 1M keys in {:.1} s", e.name(), t.elapsed().as_secs_f64());
    }
    let mut results: [Vec<[f64; 4]>; 2] = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let e: &dyn Engine = if i == 0 { &ours } else { &redb };
            results[i].push(round(e, &loaded, &sorted, r as u64 + 1));
        }
        eprintln!("round {} of {rounds}", r + 1);
    }
    let names = [
        "insert 100k keys, 1,000 per durable commit (s)",
        "100k random gets on 1M keys (s)",
        "1,000-key range scan on 1M keys (ms)",
        "single-put durable commit (ms)",
    ];
    let scale = [1.0, 1.0, 1e3, 1e3];
    println!("| workload | ferrokv mvcc | redb | redb / ours (>1: ours faster) |");
    println!("|---|---|---|---|");
    for (w, name) in names.iter().enumerate() {
        let ours_m = median(results[0].iter().map(|r| r[w]).collect());
        let redb_m = median(results[1].iter().map(|r| r[w]).collect());
        println!("| {name} | {:.3} | {:.3} | {:.2} |", ours_m * scale[w], redb_m * scale[w], redb_m / ours_m);
    }
}
