//! The `group-commit` workload: what a group-commit WAL can sustain on this disk.
//!
//! N writer threads each append a `bs`-byte record and wait until it is durable, in a loop, for the run's duration.
//! Leader/follower batching: a writer that finds no flush in progress becomes the leader, takes every record queued
//! so far, and makes them durable with one write + one flush (the engine's `write_durable`); the others wait on a
//! condition variable and are released together when the flush that covers their record completes. While the
//! leader flushes, the next batch fills. No timer delays a lone writer.
//!
//! The records go into a segment preallocated with fallocate (like etcd's 64 MiB WAL segments); when a batch would
//! run past its end, writing starts over at offset 0 (a recycled segment).
//!
//! **Invariants**
//! 1. A writer's latency sample is taken only after `durable >= its sequence number`, and `durable` is raised only
//!    after the flush covering those records returned `Ok`: no append counts before its flush completed.
//! 2. At most one leader at a time (`leading`), and only the leader holds the engine.
//! 3. After an I/O error every writer stops; the run returns that error.
//!
//! **Concurrency**: one mutex guards the queue; the leader drops it for the duration of the I/O.

use std::fs::File;
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{random_bytes, rate, remove, secs};
use crate::control::Control;
use crate::engine::{Engine, EngineKind};
use crate::error::{Error, Result};
use crate::hist::{Histogram, Summary};
use crate::job::Job;
use crate::workdir::{WorkDir, fallocate};

/// One group-commit run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct GroupCommitRun {
    pub engine: EngineKind,
    pub writers: u32,
    pub bs: u64,
    /// Durable appends completed.
    pub appends: u64,
    /// Flushes (batches) issued.
    pub batches: u64,
    pub elapsed_s: f64,
    pub appends_per_s: f64,
    pub mean_batch_appends: f64,
    /// Per append: from enqueue to the wake-up after its flush.
    pub append: Summary,
    /// Per batch: the flush, timed as in the engine table.
    pub sync: Summary,
}

struct Queue {
    pending: Vec<u8>,
    spare: Vec<u8>,
    queued: u64,
    durable: u64,
    leading: bool,
    offset: u64,
    batches: u64,
    sync_hist: Histogram,
    engine: Option<Box<dyn Engine>>,
    error: Option<Error>,
}

struct Shared<'a> {
    queue: Mutex<Queue>,
    wake: Condvar,
    file: &'a File,
    path: &'a Path,
    phase: &'a str,
    segment_size: u64,
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A writer thread that panicked has already failed the run; its queue state is still consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Enqueues one record and returns once it is durable; `false` when the run failed.
    fn append(&self, record: &[u8]) -> bool {
        let mut q = self.lock();
        if q.error.is_some() {
            return false;
        }
        q.pending.extend_from_slice(record);
        q.queued += 1;
        let mine = q.queued;
        while q.durable < mine {
            if q.error.is_some() {
                return false;
            }
            if q.leading {
                q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            q = self.lead(q);
        }
        true
    }

    /// Flushes everything queued so far as one batch (invariants 1 and 2).
    fn lead<'g>(&'g self, mut q: MutexGuard<'g, Queue>) -> MutexGuard<'g, Queue> {
        q.leading = true;
        let spare = std::mem::take(&mut q.spare);
        let batch = std::mem::replace(&mut q.pending, spare);
        let upto = q.queued;
        let len = batch.len() as u64;
        let offset = if q.offset + len > self.segment_size { 0 } else { q.offset };
        q.offset = offset + len;
        let Some(mut engine) = q.engine.take() else {
            unreachable!("invariant 2: the engine is in the queue whenever no leader holds it");
        };
        drop(q);
        let result = engine.write_durable(self.file, &batch, offset);
        let mut q = self.lock();
        q.engine = Some(engine);
        q.leading = false;
        match result {
            Ok(t) => {
                q.durable = upto;
                q.batches += 1;
                q.sync_hist.record_duration(t.sync);
            }
            Err(e) => q.error = Some(Error::io(e.op, self.path, self.phase, e.source)),
        }
        let mut batch = batch;
        batch.clear();
        q.spare = batch;
        self.wake.notify_all();
        q
    }
}

/// Runs one group-commit measurement with `writers` threads.
pub fn run(engine: Box<dyn Engine>, work: &WorkDir, job: &Job, writers: u32, ctl: &Control) -> Result<GroupCommitRun> {
    let kind = engine.kind();
    let phase = format!("group-commit ({kind}, {writers} writers)");
    let (file, path) = work.create_file(&format!("group-{kind}-{writers}"), &phase)?;
    fallocate(&file, &path, job.segment_size, &phase)?;
    let record = random_bytes(job.bs as usize, 2);
    let shared = Shared {
        queue: Mutex::new(Queue {
            pending: Vec::new(),
            spare: Vec::new(),
            queued: 0,
            durable: 0,
            leading: false,
            offset: 0,
            batches: 0,
            sync_hist: Histogram::new(),
            engine: Some(engine),
            error: None,
        }),
        wake: Condvar::new(),
        file: &file,
        path: &path,
        phase: &phase,
        segment_size: job.segment_size,
    };
    let duration = job.timed();
    let bar = ctl.bar(duration.as_millis() as u64, phase.clone());
    let start = Instant::now();
    let deadline = start + duration;
    let per_writer: Vec<Histogram> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (shared, record, bar) = (&shared, &record, &bar);
                s.spawn(move || {
                    let mut hist = Histogram::new();
                    while !ctl.stopped() && Instant::now() < deadline {
                        let t = Instant::now();
                        if !shared.append(record) {
                            break;
                        }
                        hist.record_duration(t.elapsed());
                        if w == 0 {
                            bar.set_position(start.elapsed().as_millis() as u64);
                        }
                    }
                    hist
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    ctl.check()?;
    let q = shared.queue.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = q.error {
        return Err(e);
    }
    remove(file, &path, &phase)?;
    let mut append = Histogram::new();
    per_writer.iter().for_each(|h| append.merge(h));
    let appends = append.count();
    Ok(GroupCommitRun {
        engine: kind,
        writers,
        bs: job.bs,
        appends,
        batches: q.batches,
        elapsed_s: secs(elapsed),
        appends_per_s: rate(appends, elapsed.max(Duration::from_nanos(1))),
        mean_batch_appends: if q.batches == 0 { 0.0 } else { q.durable as f64 / q.batches as f64 },
        append: append.summary(),
        sync: q.sync_hist.summary(),
    })
}
