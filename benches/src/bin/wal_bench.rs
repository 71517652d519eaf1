//! WAL group-commit benchmark with a printed table: 256-byte appends from 1, 16, 64 and 256 threads, with the sync
//! and io_uring engines, next to diskbench's fdatasync figures for the same directory, taken in the same run.
//!
//! `cargo run --release -p benches --bin wal_bench -- [--rounds N] [--seconds S] [--writers 1,16,64,256]`
//!
//! Every round runs diskbench (`-w wal -e sync --file-mode preallocated`, the etcd recipe), then each
//! (writers, engine) cell, alternating the engines; the table shows medians over rounds. Durability mode: every
//! append is acknowledged only after the fdatasync (or linked `FSYNC(DATASYNC)`) covering it.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diskbench::hist::Histogram;
use wal::{Config, EngineKind, Record, Wal};

struct Cell {
    appends_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    batch: f64,
    fsync_mean_us: f64,
}

fn run_cell(engine: EngineKind, writers: usize, seconds: f64) -> Cell {
    let dir = benches::scratch();
    let wal = Arc::new(Wal::create(dir.path(), Config { engine, ..Config::default() }).expect("create wal"));
    assert_eq!(wal.engine(), engine, "io_uring unavailable here: {:?}", wal.recovery().engine_fallback);
    let stop = Arc::new(AtomicBool::new(false));
    let record = benches::value(256, 1);
    let start = Instant::now();
    let hists: Vec<Histogram> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                let (wal, stop, record) = (Arc::clone(&wal), Arc::clone(&stop), &record);
                s.spawn(move || {
                    let mut h = Histogram::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        wal.append(&[Record::Metadata(record)]).expect("append").wait().expect("durable");
                        h.record_duration(t.elapsed());
                    }
                    h
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        handles.into_iter().map(|h| h.join().expect("writer")).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = Histogram::new();
    hists.iter().for_each(|h| all.merge(h));
    let m = wal.metrics();
    let batches = m.batches.load(Ordering::Relaxed).max(1);
    let fsync = m.fsync.snapshot();
    // The WAL's fsync histogram has etcd's coarse buckets; report its mean instead of a bucket edge.
    let mean_us = if fsync.count == 0 { 0.0 } else { fsync.sum / fsync.count as f64 * 1e6 };
    let s = all.summary();
    Cell {
        appends_per_s: s.count as f64 / elapsed,
        p50_us: s.p50_ns as f64 / 1e3,
        p99_us: s.p99_ns as f64 / 1e3,
        p999_us: s.p99_9_ns as f64 / 1e3,
        batch: s.count as f64 / batches as f64,
        fsync_mean_us: mean_us,
    }
}

fn diskbench_fdatasync() -> (f64, f64, f64) {
    let exe = std::env::current_exe().expect("exe").parent().expect("dir").join("diskbench");
    let dir = benches::bench_dir();
    let out = Command::new(&exe)
        .args(["-w", "wal", "-e", "sync", "--file-mode", "preallocated", "--json", "--no-progress"])
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("run {} (build it with --release -p diskbench): {e}", exe.display()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("diskbench JSON");
    let w = &v["results"]["wal"][0];
    let us = |k: &str| w["sync"][k].as_f64().unwrap_or(0.0) / 1e3;
    (us("p50_ns"), us("p99_ns"), w["iops"].as_f64().unwrap_or(0.0))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut rounds = 3;
    let mut seconds = 3.0;
    let mut writers = vec![1usize, 16, 64, 256];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_default();
        match a.as_str() {
            "--rounds" => rounds = v.parse().expect("--rounds N"),
            "--seconds" => seconds = v.parse().expect("--seconds S"),
            "--writers" => writers = v.split(',').map(|w| w.parse().expect("--writers 1,16")).collect(),
            _ => panic!("unknown argument {a}"),
        }
    }
    let engines = [EngineKind::Sync, EngineKind::Uring];
    let mut disk = Vec::new();
    let mut cells: Vec<Vec<Vec<Cell>>> = writers.iter().map(|_| engines.iter().map(|_| Vec::new()).collect()).collect();
    for round in 0..rounds {
        disk.push(diskbench_fdatasync());
        for (wi, &w) in writers.iter().enumerate() {
            let order: Vec<usize> = if round % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
            for ei in order {
                cells[wi][ei].push(run_cell(engines[ei], w, seconds));
            }
        }
        eprintln!("round {} of {rounds} done", round + 1);
    }
    let disk_p50 = median(disk.iter().map(|d| d.0).collect());
    let disk_p99 = median(disk.iter().map(|d| d.1).collect());
    let disk_iops = median(disk.iter().map(|d| d.2).collect());
    println!("bench dir: {}", benches::bench_dir().display());
    println!(
        "diskbench (etcd recipe, sync engine, preallocated), median of {rounds}: fdatasync p50 {disk_p50:.0} µs, p99 {disk_p99:.0} µs, {disk_iops:.0} IOPS"
    );
    println!();
    println!(
        "| writers | engine | appends/s | append p50 µs | p99 µs | p99.9 µs | appends per batch | mean flush µs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (wi, &w) in writers.iter().enumerate() {
        for (ei, e) in engines.iter().enumerate() {
            let c = &cells[wi][ei];
            let get = |f: fn(&Cell) -> f64| median(c.iter().map(f).collect());
            println!(
                "| {w} | {e:?} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} |",
                get(|c| c.appends_per_s),
                get(|c| c.p50_us),
                get(|c| c.p99_us),
                get(|c| c.p999_us),
                get(|c| c.batch),
                get(|c| c.fsync_mean_us)
            );
        }
    }
    println!();
    let rate = |wi: usize, ei: usize| median(cells[wi][ei].iter().map(|c| c.appends_per_s).collect());
    if let (Some(one), Some(most)) = (writers.iter().position(|&w| w == 1), writers.iter().position(|&w| w == 256)) {
        for (ei, e) in engines.iter().enumerate() {
            let p50 = median(cells[one][ei].iter().map(|c| c.p50_us).collect());
            println!(
                "{e:?}: 1-writer append p50 / diskbench fdatasync p50 = {:.2} (target <= 1.25); 256 writers / 1 writer = {:.1}x (target >= 30)",
                p50 / disk_p50,
                rate(most, ei) / rate(one, ei)
            );
        }
    }
    for (wi, &w) in writers.iter().enumerate() {
        println!("{w} writers: uring / sync throughput = {:.2}", rate(wi, 1) / rate(wi, 0));
    }
}
