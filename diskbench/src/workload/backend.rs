//! The `backend` workload: a copy-on-write B+tree commit, as bbolt (etcd's backend) and our mvcc crate do it.
//!
//! Each commit writes `pages_per_commit` random 4 KiB pages of a pre-written page file (sorted by offset, as a pager
//! flushes its dirty set), flushes, writes one 4 KiB meta page (alternating between pages 0 and 1), and flushes
//! again. The figure etcd's guidance speaks of is the commit latency: `backend_commit_duration_seconds` p99 < 25 ms.

use std::time::Instant;

use serde::Serialize;

use super::{Rng, op_error, prefill, random_bytes, rate, remove, secs};
use crate::control::Control;
use crate::engine::{Engine, EngineKind};
use crate::error::Result;
use crate::hist::{Histogram, Summary};
use crate::job::{Job, PAGE_SIZE};
use crate::workdir::WorkDir;

/// One backend run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BackendRun {
    pub engine: EngineKind,
    pub pages_per_commit: u32,
    pub commits: u64,
    pub elapsed_s: f64,
    pub commits_per_s: f64,
    /// Whole commit: page writes, flush, meta write, flush.
    pub commit: Summary,
    /// Each of the two flushes of every commit.
    pub sync: Summary,
}

/// Runs one backend measurement.
pub fn run(engine: &mut dyn Engine, work: &WorkDir, job: &Job, ctl: &Control) -> Result<BackendRun> {
    let kind = engine.kind();
    let phase = format!("backend ({kind})");
    let (file, path) = work.create_file(&format!("backend-{kind}"), &phase)?;
    prefill(engine, &file, &path, job.backend_file_size, &phase, ctl)?;
    let data_pages = job.backend_file_size / PAGE_SIZE - 2;
    let page = random_bytes(PAGE_SIZE as usize, 3);
    let mut rng = Rng::new(4);
    let (mut commit_hist, mut sync_hist) = (Histogram::new(), Histogram::new());
    let mut offsets = Vec::with_capacity(job.pages_per_commit as usize);
    let duration = job.timed();
    let bar = ctl.bar(duration.as_millis() as u64, phase.clone());
    let start = Instant::now();
    let mut commits = 0u64;
    while start.elapsed() < duration {
        ctl.check()?;
        offsets.clear();
        offsets.extend((0..job.pages_per_commit).map(|_| (2 + rng.below(data_pages)) * PAGE_SIZE));
        offsets.sort_unstable();
        offsets.dedup();
        let writes: Vec<(u64, &[u8])> = offsets.iter().map(|&o| (o, page.as_slice())).collect();
        let t = Instant::now();
        engine.write_batch(&file, &writes).map_err(op_error(&path, &phase))?;
        sync_hist.record_duration(engine.sync(&file).map_err(op_error(&path, &phase))?);
        let meta = (commits % 2) * PAGE_SIZE;
        let m = engine.write_durable(&file, &page, meta).map_err(op_error(&path, &phase))?;
        sync_hist.record_duration(m.sync);
        commit_hist.record_duration(t.elapsed());
        commits += 1;
        if commits % 16 == 0 {
            bar.set_position(start.elapsed().as_millis() as u64);
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    remove(file, &path, &phase)?;
    Ok(BackendRun {
        engine: kind,
        pages_per_commit: job.pages_per_commit,
        commits,
        elapsed_s: secs(elapsed),
        commits_per_s: rate(commits, elapsed),
        commit: commit_hist.summary(),
        sync: sync_hist.summary(),
    })
}
