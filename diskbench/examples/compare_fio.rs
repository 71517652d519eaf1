//! Reproduces diskbench's agreement with fio on etcd's recipe, and times diskbench's default and `--quick` runs.
//!
//! `cargo build --release -p diskbench --examples && target/release/examples/compare_fio DIR [RUNS]`
//!
//! For each of RUNS rounds (default 3) it runs, alternating which goes first,
//! - `fio --rw=write --ioengine=sync --fdatasync=1 --bs=2300 --size=22m` (etcd's recipe, JSON output), and
//! - `diskbench -w wal -e sync --file-mode preallocated` (the same pattern: fio preallocates with fallocate too),
//!
//! each in a fresh subdirectory of DIR, and compares fdatasync p50, p99 and IOPS: medians, and the ratio
//! diskbench/fio with a PASS when it is within 15%. Then it times `diskbench DIR` and `diskbench --quick DIR`.
//! Output is markdown, ready for docs/performance.md. Needs fio on PATH and the release build of diskbench beside
//! this example (target/release/diskbench).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

#[derive(Debug, Clone, Copy)]
struct Sample {
    p50_us: f64,
    p99_us: f64,
    iops: f64,
}

fn diskbench_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("target dir").join("diskbench")
}

fn run_json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} gave no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn fio(dir: &Path) -> Sample {
    let sub = dir.join(format!(".fio-{}", std::process::id()));
    std::fs::create_dir(&sub).expect("create fio dir");
    let v = run_json(Command::new("fio").args([
        "--rw=write",
        "--ioengine=sync",
        "--fdatasync=1",
        "--size=22m",
        "--bs=2300",
        "--name=etcd",
        "--output-format=json",
        &format!("--directory={}", sub.display()),
    ]));
    std::fs::remove_dir_all(&sub).expect("remove fio dir");
    let job = &v["jobs"][0];
    let pct = &job["sync"]["lat_ns"]["percentile"];
    Sample {
        p50_us: pct["50.000000"].as_f64().expect("fio p50") / 1e3,
        p99_us: pct["99.000000"].as_f64().expect("fio p99") / 1e3,
        iops: job["write"]["iops"].as_f64().expect("fio iops"),
    }
}

fn diskbench(dir: &Path) -> Sample {
    let v = run_json(
        Command::new(diskbench_path())
            .args(["-w", "wal", "-e", "sync", "--file-mode", "preallocated", "--json", "--no-progress"])
            .arg(dir),
    );
    let w = &v["results"]["wal"][0];
    Sample {
        p50_us: w["sync"]["p50_ns"].as_f64().expect("p50") / 1e3,
        p99_us: w["sync"]["p99_ns"].as_f64().expect("p99") / 1e3,
        iops: w["iops"].as_f64().expect("iops"),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn timed(args: &[&str], dir: &Path) -> (f64, i32) {
    let t = Instant::now();
    let status = Command::new(diskbench_path()).args(args).arg(dir).output().expect("run diskbench").status;
    (t.elapsed().as_secs_f64(), status.code().unwrap_or(-1))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: compare_fio DIR [RUNS]"));
    let runs: usize = args.next().map(|r| r.parse().expect("RUNS is a number")).unwrap_or(3);
    let (mut f, mut d) = (Vec::new(), Vec::new());
    println!(
        "| round | order | fio p50 µs | diskbench p50 µs | fio p99 µs | diskbench p99 µs | fio IOPS | diskbench IOPS |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for round in 0..runs {
        let fio_first = round % 2 == 0;
        let (a, b) = if fio_first {
            let a = fio(&dir);
            (a, diskbench(&dir))
        } else {
            let b = diskbench(&dir);
            (fio(&dir), b)
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            round + 1,
            if fio_first { "fio, diskbench" } else { "diskbench, fio" },
            a.p50_us,
            b.p50_us,
            a.p99_us,
            b.p99_us,
            a.iops,
            b.iops
        );
        f.push(a);
        d.push(b);
    }
    println!();
    println!("| metric | fio median | diskbench median | diskbench / fio | within 15% |");
    println!("|---|---|---|---|---|");
    type Metric = (&'static str, fn(&Sample) -> f64);
    let metrics: [Metric; 3] =
        [("fdatasync p50 (µs)", |s| s.p50_us), ("fdatasync p99 (µs)", |s| s.p99_us), ("IOPS", |s| s.iops)];
    let mut all_ok = true;
    for (name, get) in metrics {
        let (mf, md) = (median(f.iter().map(get).collect()), median(d.iter().map(get).collect()));
        let ratio = md / mf;
        let ok = (ratio - 1.0).abs() <= 0.15;
        all_ok &= ok;
        println!("| {name} | {mf:.0} | {md:.0} | {ratio:.3} | {} |", if ok { "yes" } else { "NO" });
    }
    println!();
    println!("| run | wall time (s), each round | exit status |");
    println!("|---|---|---|");
    for (label, args) in [("diskbench DIR (default)", &[][..]), ("diskbench --quick DIR", &["--quick"][..])] {
        let times: Vec<(f64, i32)> = (0..runs).map(|_| timed(args, &dir)).collect();
        let list: Vec<String> = times.iter().map(|(t, _)| format!("{t:.1}")).collect();
        let median_t = median(times.iter().map(|(t, _)| *t).collect());
        println!("| {label} | {} (median {median_t:.1}) | {} |", list.join(", "), times[0].1);
    }
    if !all_ok {
        std::process::exit(1);
    }
}
