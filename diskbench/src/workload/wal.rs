//! The `wal` workload: etcd's WAL pattern, as fio's etcd recipe measures it.
//!
//! Sequential appends of `bs` bytes at queue depth 1, each followed by a flush (per the engine), into a file that is
//! growing, preallocated with fallocate (fio's default and etcd's segments) or pre-written (a recycled segment).
//! A size-based run writes `size / bs` appends, as fio does (a trailing partial block is not written); a time-based
//! run wraps around the file until `runtime` is up, as fio's `time_based` does. IOPS is appends per second of wall
//! time, fio's definition.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{op_error, prefill, random_bytes, rate, remove, secs};
use crate::control::Control;
use crate::engine::{Engine, EngineKind};
use crate::error::Result;
use crate::hist::{Histogram, Summary};
use crate::job::{FileMode, Job};
use crate::workdir::{WorkDir, fallocate};

/// One WAL run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct WalRun {
    pub engine: EngineKind,
    pub file_mode: FileMode,
    pub bs: u64,
    pub ops: u64,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub iops: f64,
    pub mb_per_s: f64,
    /// Whether a time-based run went past the end of its file and started over.
    pub wrapped: bool,
    /// The write alone (absent for dsync, whose write is the flush).
    pub write: Option<Summary>,
    /// The flush: fdatasync (sync, uring) or the RWF_DSYNC write (dsync).
    pub sync: Summary,
}

/// Runs one WAL measurement.
pub fn run(engine: &mut dyn Engine, work: &WorkDir, job: &Job, mode: FileMode, ctl: &Control) -> Result<WalRun> {
    let kind = engine.kind();
    let phase = format!("wal ({kind}, {mode})");
    let (file, path) = work.create_file(&format!("wal-{kind}-{mode}"), &phase)?;
    match mode {
        FileMode::Growing => {}
        FileMode::Preallocated => fallocate(&file, &path, job.size, &phase)?,
        FileMode::Overwrite => prefill(engine, &file, &path, job.size, &phase, ctl)?,
    }
    let buf = random_bytes(job.bs as usize, 1);
    let per_pass = job.size / job.bs;
    let bar = match job.runtime {
        Some(d) => ctl.bar(d.as_millis() as u64, phase.clone()),
        None => ctl.bar(per_pass, phase.clone()),
    };
    let (mut write_hist, mut sync_hist) = (Histogram::new(), Histogram::new());
    let interval = job.rate_iops.map(|r| Duration::from_secs_f64(1.0 / f64::from(r)));
    let start = Instant::now();
    let mut ops = 0u64;
    loop {
        match job.runtime {
            Some(limit) if start.elapsed() >= limit => break,
            None if ops == per_pass => break,
            _ => {}
        }
        ctl.check()?;
        if let Some(interval) = interval {
            let due = start + interval.mul_f64(ops as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let offset = (ops % per_pass) * job.bs;
        let t = engine.write_durable(&file, &buf, offset).map_err(op_error(&path, &phase))?;
        if let Some(w) = t.write {
            write_hist.record_duration(w);
        }
        sync_hist.record_duration(t.sync);
        ops += 1;
        if ops % 64 == 0 {
            bar.set_position(job.runtime.map_or(ops, |_| start.elapsed().as_millis() as u64));
        }
    }
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    remove(file, &path, &phase)?;
    let bytes = ops * job.bs;
    Ok(WalRun {
        engine: kind,
        file_mode: mode,
        bs: job.bs,
        ops,
        bytes,
        elapsed_s: secs(elapsed),
        iops: rate(ops, elapsed),
        mb_per_s: rate(bytes, elapsed) / 1e6,
        wrapped: ops > per_pass,
        write: (write_hist.count() > 0).then(|| write_hist.summary()),
        sync: sync_hist.summary(),
    })
}
