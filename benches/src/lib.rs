//! `benches`: criterion microbenchmarks of ferrokv's hot paths, their fixtures, and bench binaries that print
//! tables for docs/performance.md.
//!
//! Benchmarks write to the directory in `FERROKV_BENCH_DIR` (default `target/bench-dir` under the workspace), so
//! that they run on a real disk rather than a tmpfs `/tmp`. Each run works in a fresh temporary subdirectory.

use std::path::PathBuf;

/// The directory benchmarks write under: `$FERROKV_BENCH_DIR`, or `<workspace>/target/bench-dir`.
pub fn bench_dir() -> PathBuf {
    let dir = std::env::var_os("FERROKV_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-dir"));
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    dir
}

/// A fresh temporary directory under [`bench_dir`].
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(bench_dir()).expect("create a scratch directory")
}

/// `n` deterministic, incompressible bytes.
pub fn value(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
