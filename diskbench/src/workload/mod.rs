//! The four workloads and the order they run in.
//!
//! Runs execute one at a time, workload by workload in the order of [`Workload`], and within a workload alternating
//! the engines run by run, so that a slow phase of a noisy machine does not land on one engine only. Every run
//! creates its own file in the work directory and removes it before the next run starts (see `job` invariant 3).

mod backend;
mod bandwidth;
mod group_commit;
mod wal;

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::control::Control;
use crate::engine::{self, Engine, EngineKind, OpError};
use crate::error::{Error, Result};
use crate::job::{Job, Workload};
use crate::workdir::WorkDir;

pub use backend::BackendRun;
pub use bandwidth::BandwidthRun;
pub use group_commit::GroupCommitRun;
pub use wal::WalRun;

/// Every run's figures, plus the engines that could not run here.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub wal: Vec<WalRun>,
    pub group_commit: Vec<GroupCommitRun>,
    pub backend: Vec<BackendRun>,
    pub bandwidth: Vec<BandwidthRun>,
    /// `(engine, reason)` for each engine that was asked for but is unavailable on this machine.
    pub unavailable_engines: Vec<(EngineKind, String)>,
}

/// Runs every selected workload with every available engine.
pub fn run_all(job: &Job, work: &WorkDir, ctl: &Control) -> Result<Results> {
    let mut results = Results::default();
    let (probe, _) = work.create_file("engine-probe", "start-up")?;
    let mut engines = Vec::new();
    for &kind in &job.engines {
        match engine::open(kind, &probe) {
            Ok(_) => engines.push(kind),
            Err(why) => results.unavailable_engines.push((kind, why)),
        }
    }
    if engines.is_empty() {
        let why: Vec<String> = results.unavailable_engines.iter().map(|(k, w)| format!("{k}: {w}")).collect();
        return Err(Error::Usage(format!("no selected engine can run here ({})", why.join("; "))));
    }
    let open = |kind| engine::open(kind, &probe).map_err(Error::Usage);
    for workload in &job.workloads {
        match workload {
            Workload::Wal => {
                for &mode in &job.file_modes {
                    for &kind in &engines {
                        results.wal.push(wal::run(open(kind)?.as_mut(), work, job, mode, ctl)?);
                    }
                }
            }
            Workload::GroupCommit => {
                for &writers in &job.writers {
                    for &kind in &engines {
                        results.group_commit.push(group_commit::run(open(kind)?, work, job, writers, ctl)?);
                    }
                }
            }
            Workload::Backend => {
                for &kind in &engines {
                    results.backend.push(backend::run(open(kind)?.as_mut(), work, job, ctl)?);
                }
            }
            Workload::Bandwidth => {
                bandwidth::warm_up(open(engines[0])?.as_mut(), work, job, ctl)?;
                for &kind in &engines {
                    results.bandwidth.push(bandwidth::run(open(kind)?.as_mut(), work, job, ctl)?);
                }
            }
        }
    }
    Ok(results)
}

/// Turns an engine failure into the crate error, naming the file and the run.
fn op_error<'a>(path: &'a Path, phase: &'a str) -> impl Fn(OpError) -> Error + 'a {
    move |e| Error::io(e.op, path, phase, e.source)
}

/// Closes and removes a run's file.
fn remove(file: File, path: &Path, phase: &str) -> Result<()> {
    drop(file);
    std::fs::remove_file(path).map_err(|e| Error::io("remove", path, phase, e))
}

/// Writes `len` bytes of `fill` over `file` in 1 MiB blocks and syncs: the untimed set-up of files that must exist
/// on disk before a run (recycled WAL segments, the backend page file).
fn prefill(engine: &mut dyn Engine, file: &File, path: &Path, len: u64, phase: &str, ctl: &Control) -> Result<()> {
    let block = random_bytes(1 << 20, 7);
    let mut offset = 0;
    while offset < len {
        ctl.check()?;
        let n = (len - offset).min(block.len() as u64) as usize;
        engine.write_batch(file, &[(offset, &block[..n])]).map_err(op_error(path, phase))?;
        offset += n as u64;
    }
    engine.sync(file).map_err(op_error(path, phase))?;
    Ok(())
}

/// Deterministic, incompressible bytes (xorshift64*), so no layer can shortcut zeroes.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// xorshift64*: a tiny PRNG for page choice and buffer contents; not for anything secret.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough value in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `count / elapsed`, 0 for an empty run.
fn rate(count: u64, elapsed: Duration) -> f64 {
    if elapsed.is_zero() { 0.0 } else { count as f64 / elapsed.as_secs_f64() }
}
