//! Group commit: appenders queue encoded frames; one I/O thread turns whatever has queued into a batch — one write
//! per chunk, one fdatasync — and wakes each appender once the flush covering its records has completed.
//!
//! **Adaptive batching.** There is no timer. When the I/O thread is idle, the first append wakes it and is written
//! at once, alone. While a batch is being flushed, new appends accumulate in the queue and form the next batch.
//! With the io_uring engine two batches are in flight, so the next batch's write overlaps the current flush.
//!
//! **Writing on the appender's thread.** An appender that will block until its records are durable
//! ([`Shared::write_here`], through `Wal::append_durable`) and finds the I/O thread idle writes and flushes the
//! queue itself instead of waking the I/O thread and sleeping until it is woken back: the same batches, the same
//! code, two thread wake-ups fewer per batch. Ownership of the engine ([`Core`]) goes with `Queue::io`: whoever
//! moved it out of `Idle` under the queue lock (the I/O thread to `Busy`/`InRing`, an appender to `Caller`) is
//! the only one to lock `Shared::core` until it sets it back. An appender gives it back as soon as its own records
//! are durable, and wakes the I/O thread if more has queued.
//!
//! **Invariants**
//! 1. An appender is completed with `Ok` only after the engine returned the batch holding its last frame, which
//!    happens only after that batch's flush succeeded; batches return in order, so completion follows log order.
//! 2. A segment starts only after every earlier batch is durable: the chunk that opens it is written by itself,
//!    with nothing in flight, into a preallocated spare, flushed, renamed to its final name, and the directory is
//!    fsynced; only then is anything after it submitted.
//! 3. After any failed write, flush, rename or allocation the WAL is poisoned: every queued and in-flight appender
//!    gets the error, later appends are refused, and the thread exits. Nothing is retried. A panic of the I/O
//!    thread poisons the WAL the same way: no appender is left parked on a thread that is gone.
//!
//! **Concurrency**: `Shared::queue` (one mutex) is taken by appenders to encode and by the writer (the I/O thread
//! or an appender writing on its own thread) to take chunks and return buffers; no one holds it during I/O.
//! `core` is never waited for: its owner releases it before `Queue::io` goes back to `Idle`, and a new owner
//! takes it only after moving `Queue::io` out of `Idle` under the queue lock. Waking: `io_cv` when the I/O thread is
//! idle, the engine's waker when it is blocked in the ring with a free slot, nothing when it is busy.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::batch::{Batch, Chunk};
use crate::completion::{self, Appended, Completion, Slot};
use crate::engine::{Done, Engine, Wake, uring_engine::MAX_CHUNKS};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::queue::{IoState, Queue};
use crate::segment;
use crate::types::{RaftIndex, SegmentSeq};

/// State shared by appenders and the I/O thread.
pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    /// Wakes the I/O thread when it is idle.
    pub io_cv: Condvar,
    /// Wakes appenders waiting for queued bytes to drain, and `close`.
    pub space_cv: Condvar,
    pub waker: Option<Arc<dyn Wake>>,
    /// The engine and what it writes to; locked only by whoever owns it through `Queue::io` (see the header).
    pub core: Mutex<Core>,
    pub metrics: std::sync::Arc<Metrics>,
    /// Failpoint: nanoseconds to sleep before each batch is submitted (so before each flush).
    pub fsync_delay_ns: AtomicU64,
    /// Failpoint: the I/O thread panics before it submits the next batch.
    pub panic_next: std::sync::atomic::AtomicBool,
    pub dir: PathBuf,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `encode` under the queue lock (after back-pressure), wakes the I/O thread as needed, and returns the
    /// completion of what `encode` queued. With `write_here`, an idle I/O thread is not woken: the caller takes
    /// the I/O over (`IoState::Caller`) and must then call [`Shared::write_here`], which hands it back.
    pub fn enqueue(
        &self,
        encode: impl FnOnce(&mut Queue, &Arc<Slot>) -> Result<Option<RaftIndex>>,
        write_here: bool,
    ) -> Result<(Completion, bool)> {
        let slot = Slot::new();
        let mut q = self.lock();
        loop {
            if let Some(p) = &q.poisoned {
                return Err(Error::Poisoned(p.to_string()));
            }
            if q.closing {
                return Err(Error::Closed);
            }
            if q.queued_bytes <= q.max_queued_bytes {
                break;
            }
            q = self.space_cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let last_index = encode(&mut q, &slot)?;
        let mut claimed = false;
        let wake = match q.io {
            IoState::Idle if write_here => {
                q.io = IoState::Caller;
                claimed = true;
                None
            }
            IoState::Idle => {
                self.io_cv.notify_one();
                None
            }
            IoState::InRing => {
                q.io = IoState::Busy;
                self.waker.clone()
            }
            IoState::Busy | IoState::Caller => None,
        };
        drop(q);
        if let Some(w) = wake {
            w.wake();
        }
        Ok((Completion::new(slot, Appended { last_index }), claimed))
    }
}

/// The writer's state: the engine and the segment it writes. Owned by the I/O thread, or for a while by an
/// appender writing on its own thread (see the header).
pub(crate) struct Core {
    pub engine: Box<dyn Engine>,
    pub file: Arc<File>,
    pub path: Arc<PathBuf>,
    pub pipeline: Pipeline,
    /// Waiters of each batch in flight, oldest first, so a failure can fail them all (invariant 3).
    pub in_flight: VecDeque<Vec<Arc<Slot>>>,
}

impl Queue {
    /// Whether the next chunk to take opens a segment.
    fn head_starts_segment(&self) -> bool {
        match self.ready.first() {
            Some(c) => c.starts.is_some(),
            None => self.current.as_ref().is_some_and(|c| c.starts.is_some()),
        }
    }

    /// Takes up to `max` chunks from the head of the queue, all of one segment.
    fn take_chunks(&mut self, max: usize) -> Vec<Chunk> {
        if self.current.as_ref().is_some_and(|c| c.buf.len > 0)
            && let Some(c) = self.current.take()
        {
            self.ready.push(c);
        }
        let mut n = 0;
        while n < self.ready.len() && n < max && (n == 0 || self.ready[n].starts.is_none()) {
            n += 1;
        }
        self.ready.drain(..n).collect()
    }
}

impl Shared {
    /// Locks the core. Only its owner through `Queue::io` calls this, so it never waits (see the header).
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes and flushes what is queued on the calling thread until `done` is resolved, then hands the I/O back
    /// (see the header). Called once the caller owns the I/O: [`Shared::enqueue`] said it took it over.
    pub fn write_here(&self, done: &Completion) {
        let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut core = self.core();
            while !done.is_done() {
                let chunks = {
                    let mut q = self.lock();
                    if !q.has_work() {
                        break;
                    }
                    q.take_chunks(MAX_CHUNKS)
                };
                core.submit(self, chunks)?;
                while core.engine.in_flight() > 0 {
                    let finished = core.engine.wait()?;
                    core.finish(self, finished);
                }
                self.metrics.appender_batches.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.core().poison(self, &e),
            Err(panic) => {
                let e = Error::Poisoned(format!(
                    "the WAL writer panicked on an appender's thread: {}",
                    panic_text(&*panic)
                ));
                tracing::error!(dir = %self.dir.display(), error = %e, "wal write stopped");
                self.core().poison(self, &e);
            }
        }
        // The core is unlocked: hand the I/O back, and the I/O thread what queued meanwhile.
        let mut q = self.lock();
        q.io = IoState::Idle;
        if q.has_work() || q.closing {
            self.io_cv.notify_one();
        }
    }
}

/// What a panic said, if it said it as a string.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The I/O thread.
pub(crate) struct IoThread {
    pub shared: Arc<Shared>,
}

impl IoThread {
    /// The thread's body: runs until closed or poisoned.
    pub fn run(self) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve()));
        let e = match served {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(panic) => {
                let e = Error::Poisoned(format!("the WAL I/O thread panicked: {}", panic_text(&*panic)));
                tracing::error!(dir = %self.shared.dir.display(), error = %e, "wal I/O thread stopped");
                e
            }
        };
        self.shared.core().poison(&self.shared, &e);
    }

    fn serve(&self) -> Result<()> {
        let shared = &*self.shared;
        loop {
            let mut q = shared.lock();
            let mut core = shared.core();
            loop {
                let free = core.engine.in_flight() < core.engine.depth();
                if free && q.has_work() {
                    if q.head_starts_segment() && core.engine.in_flight() > 0 {
                        break; // invariant 2: drain before a segment starts
                    }
                    let chunks = q.take_chunks(MAX_CHUNKS);
                    drop(q);
                    core.submit(shared, chunks)?;
                    q = shared.lock();
                    continue;
                }
                if core.engine.in_flight() == 0 {
                    if q.closing && !q.has_work() {
                        return Ok(());
                    }
                    drop(core);
                    q.io = IoState::Idle;
                    // An appender may take the I/O over meanwhile (`Caller`); it hands it back as `Idle`.
                    q = shared.io_cv.wait(q).unwrap_or_else(|p| p.into_inner());
                    while q.io == IoState::Caller {
                        q = shared.io_cv.wait(q).unwrap_or_else(|p| p.into_inner());
                    }
                    q.io = IoState::Busy;
                    core = shared.core();
                    continue;
                }
                break;
            }
            let can_take_more = core.engine.in_flight() < core.engine.depth() && shared.waker.is_some();
            q.io = if can_take_more { IoState::InRing } else { IoState::Busy };
            drop(q);
            let done = core.engine.wait()?;
            core.finish(shared, done);
        }
    }
}

impl Core {
    fn submit(&mut self, shared: &Shared, chunks: Vec<Chunk>) -> Result<()> {
        // The waiters are recorded first: from here on a failure, or a panic, reaches them (invariant 3).
        self.in_flight.push_back(chunks.iter().flat_map(|c| c.waiters.iter().cloned()).collect());
        if shared.panic_next.swap(false, Ordering::Relaxed) {
            panic!("failpoint: panic_io_thread");
        }
        let delay = shared.fsync_delay_ns.load(Ordering::Relaxed);
        if delay > 0 {
            std::thread::sleep(Duration::from_nanos(delay));
        }
        debug_assert!(chunks.windows(2).all(|w| w[0].seq == w[1].seq), "a batch spans one segment");
        match chunks.first().and_then(|c| c.starts) {
            Some(header) => self.start_segment(shared, header.seq, chunks),
            None => self.engine.submit(Batch { file: Arc::clone(&self.file), path: Arc::clone(&self.path), chunks }),
        }
    }

    /// Invariant 2: writes the chunks that open segment `seq` into a spare, flushes, renames, fsyncs the directory.
    fn start_segment(&mut self, shared: &Shared, seq: SegmentSeq, chunks: Vec<Chunk>) -> Result<()> {
        let spare = self.pipeline.take(seq)?;
        assert_eq!(spare.seq, seq, "the pipeline hands out the spare that was asked for");
        let file = Arc::new(spare.file);
        self.engine.submit(Batch { file: Arc::clone(&file), path: Arc::new(spare.path.clone()), chunks })?;
        let mut done = Vec::new();
        while done.is_empty() {
            done = self.engine.wait()?;
        }
        let final_path = segment::path(&shared.dir, seq);
        std::fs::rename(&spare.path, &final_path).map_err(|e| Error::io("rename", &spare.path, e))?;
        crate::fs::sync_dir(&shared.dir)?;
        self.file = file;
        self.path = Arc::new(final_path);
        shared.lock().durable_seq = seq;
        self.finish(shared, done);
        Ok(())
    }

    /// Completes every appender of the finished batches (invariant 1) and recycles their buffers.
    fn finish(&mut self, shared: &Shared, done: Vec<Done>) {
        if done.is_empty() {
            return;
        }
        let mut waiters = Vec::new();
        {
            let mut q = shared.lock();
            for d in done {
                let appends = self.in_flight.pop_front().unwrap_or_default();
                let records = d.batch.chunks.iter().map(|c| c.records).sum();
                let bytes = d.batch.bytes();
                shared.metrics.record_batch(records, appends.len() as u64, bytes, d.fsync);
                q.queued_bytes = q.queued_bytes.saturating_sub(bytes as usize);
                for c in d.batch.chunks {
                    q.recycle(c.buf);
                }
                waiters.extend(appends);
            }
        }
        shared.space_cv.notify_all();
        completion::complete_all(waiters, Ok(()));
    }

    /// Invariant 3.
    fn poison(&mut self, shared: &Shared, e: &Error) {
        let msg: Arc<str> = Arc::from(e.to_string());
        let mut waiters: Vec<Arc<Slot>> = self.in_flight.drain(..).flatten().collect();
        {
            let mut q = shared.lock();
            q.poisoned = Some(Arc::clone(&msg));
            let current = q.current.take();
            let queued: Vec<Chunk> = q.ready.drain(..).chain(current).collect();
            for c in queued {
                waiters.extend(c.waiters);
            }
        }
        shared.space_cv.notify_all();
        completion::complete_all(waiters, Err(msg));
    }
}
