//! The `bandwidth` workload: large sequential writes into a new file, one fsync at the end.
//!
//! This is how a lagging member receives a snapshot, so it bounds how fast a member holding N bytes can be caught up.
//! Throughput counts the final flush: MB/s = bytes / (time of all writes + the flush).
//!
//! Before the first run, [`warm_up`] writes and removes one file of the same size, untimed. On this project's
//! machines (VMs whose guest memory is backed lazily) the first pass of bulk writes through fresh page-cache memory
//! ran 5x slower than every later one, whatever the engine; without the warm-up that cost would land on whichever
//! engine happens to run first.

use std::time::Instant;

use serde::Serialize;

use super::{op_error, prefill, random_bytes, remove, secs};
use crate::control::Control;
use crate::engine::{Engine, EngineKind};
use crate::error::Result;
use crate::job::{BANDWIDTH_BLOCK, Job};
use crate::workdir::WorkDir;

/// One bandwidth run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BandwidthRun {
    pub engine: EngineKind,
    pub block: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    /// Decimal megabytes per second, the final flush included.
    pub mb_per_s: f64,
    /// The final flush alone.
    pub final_sync_ns: u64,
    /// Seconds to write 1 GiB at this rate: a lower bound on catching up a member holding 1 GiB.
    pub catch_up_1gib_s: f64,
}

/// Writes and removes one untimed file of the run's size (see the module header).
pub fn warm_up(engine: &mut dyn Engine, work: &WorkDir, job: &Job, ctl: &Control) -> Result<()> {
    let phase = "bandwidth (warm-up)";
    let (file, path) = work.create_file("bandwidth-warm-up", phase)?;
    prefill(engine, &file, &path, job.bandwidth_size, phase, ctl)?;
    remove(file, &path, phase)
}

/// Runs one bandwidth measurement.
pub fn run(engine: &mut dyn Engine, work: &WorkDir, job: &Job, ctl: &Control) -> Result<BandwidthRun> {
    let kind = engine.kind();
    let phase = format!("bandwidth ({kind})");
    let (file, path) = work.create_file(&format!("bandwidth-{kind}"), &phase)?;
    let block = random_bytes(BANDWIDTH_BLOCK as usize, 5);
    let bar = ctl.bar(job.bandwidth_size, phase.clone());
    let start = Instant::now();
    let mut offset = 0u64;
    while offset < job.bandwidth_size {
        ctl.check()?;
        let n = (job.bandwidth_size - offset).min(BANDWIDTH_BLOCK) as usize;
        engine.write_batch(&file, &[(offset, &block[..n])]).map_err(op_error(&path, &phase))?;
        offset += n as u64;
        bar.set_position(offset);
    }
    let final_sync = engine.sync(&file).map_err(op_error(&path, &phase))?;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    remove(file, &path, &phase)?;
    let bytes_per_s = offset as f64 / elapsed.as_secs_f64().max(1e-9);
    Ok(BandwidthRun {
        engine: kind,
        block: BANDWIDTH_BLOCK,
        bytes: offset,
        elapsed_s: secs(elapsed),
        mb_per_s: bytes_per_s / 1e6,
        final_sync_ns: u64::try_from(final_sync.as_nanos()).unwrap_or(u64::MAX),
        catch_up_1gib_s: (1u64 << 30) as f64 / bytes_per_s,
    })
}
