//! `benches`: criterion microbenchmarks of ferrokv's hot paths, with their fixtures.
//!
//! Empty for now: benchmarks arrive with the crates they measure (`wal`, `mvcc`, the server's apply path). The
//! disk probe's own measurements are made by the `diskbench` binary and recorded in `docs/performance.md`.
