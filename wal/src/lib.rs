//! `wal`: ferrokv's segmented write-ahead log, where Raft's entries and hard state become durable.
//!
//! An append is acknowledged only once it is on disk, and concurrent appends share one write and one fdatasync
//! (group commit). The crate knows nothing of Raft's messages or gRPC: it stores entries (index, term, bytes),
//! hard states, snapshot markers and metadata, and gives them back in order.
//!
//! ```no_run
//! use wal::{Config, Record, RaftIndex, Term, Wal};
//! let wal = Wal::create("/var/lib/ferrokv/wal", Config::default())?;
//! let done = wal.append(&[Record::Entry { index: RaftIndex(1), term: Term(1), data: b"put k v" }])?;
//! done.wait()?; // durable from here on
//! let replay = wal.replay(RaftIndex(1))?;
//! assert_eq!(replay.entries.len(), 1);
//! # Ok::<(), wal::Error>(())
//! ```
//!
//! # Reading the source
//! 1. [`record`] and [`segment`]: the bytes on disk (also in docs/format-wal.md).
//! 2. `state`: the one set of rules for how records change the log (contiguous entries, truncation, snapshots).
//! 3. `reader`: replay and recovery, and how a torn tail is told apart from damage.
//! 4. `queue`: appenders encode frames under one lock and decide where every byte goes.
//! 5. `group_commit`: the I/O thread that batches, flushes and wakes appenders; `engine` does the I/O (pwrite +
//!    fdatasync, or io_uring with two batches in flight); `pipeline` preallocates the next segment.
//! 6. `repair`: the explicit, operator-invoked truncation at the first damaged record.
//!
//! # Durability
//! [`Completion::wait`] (or awaiting a [`Completion`]) returning `Ok` means the append's records survive a crash
//! or power loss, provided the disk honours flushes. After any write or flush error the WAL is poisoned: every
//! pending and later call fails with [`Error::Poisoned`], and the process should stop and reopen the WAL.

mod batch;
mod completion;
mod engine;
mod error;
pub mod failpoints;
mod fs;
mod group_commit;
mod metrics;
mod pipeline;
mod queue;
pub mod reader;
pub mod record;
mod repair;
pub mod segment;
mod state;
mod types;

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub use completion::{Appended, Completion};
pub use engine::EngineKind;
pub use error::{Error, Result};
pub use fs::create_dir_durable;
pub use metrics::{Histogram, HistogramSnapshot, Metrics};
pub use reader::Replay;
pub use record::Record;
pub use repair::{RepairReport, repair};
pub use types::{Entry, HardState, RaftIndex, SegmentSeq, SnapshotMarker, Term};

use batch::Buf;
use engine::{Engine, sync_engine::SyncEngine, uring_engine::UringEngine};
use group_commit::{Core, IoThread, Shared};
use queue::{IoState, Queue, SegmentMeta};

/// How a WAL is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Size each segment is preallocated to (etcd: 64 MiB). A record may be at most a quarter of it.
    pub segment_size: u64,
    /// Which engine writes and flushes batches.
    pub engine: EngineKind,
    /// Size of each pooled (and, with io_uring, registered) batch buffer.
    pub buffer_size: usize,
    /// Appends wait while more than this many bytes are queued but not yet durable.
    pub max_queued_bytes: usize,
    /// Failpoint for fault drills: sleep this long before each batch's write and flush.
    pub fsync_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            segment_size: 64 << 20,
            engine: EngineKind::default(),
            buffer_size: 1 << 20,
            max_queued_bytes: 64 << 20,
            fsync_delay: Duration::ZERO,
        }
    }
}

impl Config {
    fn check(&self) -> Result<()> {
        if self.segment_size < 64 << 10 || self.segment_size % 4096 != 0 {
            return Err(Error::Config("segment_size must be a multiple of 4 KiB, at least 64 KiB".into()));
        }
        if self.buffer_size < 4096 {
            return Err(Error::Config("buffer_size must be at least 4 KiB".into()));
        }
        Ok(())
    }
}

/// What opening the WAL found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments found.
    pub segments: usize,
    /// Where a torn tail (an unacknowledged, partly written batch) was erased: the segment and offset.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Why the requested io_uring engine was replaced by the sync engine, if it was.
    pub engine_fallback: Option<String>,
}

/// Buffers kept in the pool (and registered with io_uring).
const POOL_BUFFERS: usize = 4;

/// An open write-ahead log. Share it between threads with an `Arc`; every method takes `&self`.
pub struct Wal {
    shared: Arc<Shared>,
    io: Option<JoinHandle<()>>,
    engine: EngineKind,
    recovery: Recovery,
    _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.shared.dir).field("engine", &self.engine).finish()
    }
}

impl Wal {
    /// Creates a new, empty WAL in `dir` (created if missing; it must not already hold a WAL).
    ///
    /// # Durability
    /// On `Ok`, the first segment, its directory entry and the directory's own entry (and any parent it created)
    /// are on stable storage.
    pub fn create(dir: impl AsRef<Path>, config: Config) -> Result<Wal> {
        let dir = dir.as_ref();
        config.check()?;
        fs::create_dir_durable(dir)?;
        let lock = fs::lock_dir(dir)?;
        if !reader::list_segments(dir)?.is_empty() {
            return Err(Error::BadDir { dir: dir.to_path_buf(), why: "already holds a WAL" });
        }
        let seq = SegmentSeq(1);
        let spare = pipeline::prepare(dir, seq, config.segment_size)?;
        let header = segment::Header {
            seq,
            first_index: RaftIndex(0),
            salt: segment::new_salt(),
            segment_size: config.segment_size,
        };
        std::os::unix::fs::FileExt::write_all_at(&spare.file, &header.encode().0, 0)
            .map_err(|e| Error::io("write", &spare.path, e))?;
        fs::sync_data(&spare.file, &spare.path)?;
        let path = segment::path(dir, seq);
        std::fs::rename(&spare.path, &path).map_err(|e| Error::io("rename", &spare.path, e))?;
        fs::sync_dir(dir)?;
        Self::start(dir, config, lock)
    }

    /// Opens the WAL in `dir`, verifying every record and erasing a torn tail (see [`reader`]).
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<Wal> {
        let dir = dir.as_ref();
        config.check()?;
        if !dir.is_dir() {
            return Err(Error::BadDir { dir: dir.to_path_buf(), why: "no such directory" });
        }
        let lock = fs::lock_dir(dir)?;
        Self::start(dir, config, lock)
    }

    fn start(dir: &Path, config: Config, lock: File) -> Result<Wal> {
        remove_spares(dir)?;
        let scan = reader::scan(dir, |_| {})?;
        let Some(last) = scan.segments.last().cloned() else {
            return Err(Error::BadDir { dir: dir.to_path_buf(), why: "holds no WAL segment" });
        };
        let file =
            File::options().read(true).write(true).open(&last.path).map_err(|e| Error::io("open", &last.path, e))?;
        let mut recovery = Recovery { segments: scan.segments.len(), ..Recovery::default() };
        if last.dirty_tail {
            fs::zero_range(&file, &last.path, last.end, last.file_len)?;
            tracing::warn!(segment = %last.path.display(), offset = last.end, "wal: erased a torn tail (an unacknowledged, partly written batch)");
            recovery.torn_tail = Some((last.path.clone(), last.end));
        }
        let (mut engine, kind): (Box<dyn Engine>, EngineKind) = match config.engine {
            EngineKind::Sync => (Box::new(SyncEngine::default()), EngineKind::Sync),
            EngineKind::Uring => match UringEngine::open() {
                Ok(e) => (Box::new(e), EngineKind::Uring),
                Err(why) => {
                    tracing::warn!(reason = %why, "wal: io_uring unavailable, using the sync engine");
                    recovery.engine_fallback = Some(why);
                    (Box::new(SyncEngine::default()), EngineKind::Sync)
                }
            },
        };
        let mut pool: Vec<Buf> = (0..POOL_BUFFERS).map(|_| Buf::new(config.buffer_size)).collect();
        engine.register(&mut pool)?;
        let queue = Queue {
            segment_size: config.segment_size,
            seq: last.seq,
            offset: last.end,
            chain: last.chain,
            sealed: last.sealed,
            state: scan.state,
            segments: scan
                .segments
                .iter()
                .map(|s| SegmentMeta { seq: s.seq, first_index: s.header.first_index })
                .collect(),
            durable_seq: last.seq,
            ready: Vec::new(),
            current: None,
            pool,
            buf_size: config.buffer_size,
            queued_bytes: 0,
            max_queued_bytes: config.max_queued_bytes,
            poisoned: None,
            closing: false,
            io: IoState::Busy,
        };
        let waker = engine.waker();
        let core = Core {
            engine,
            file: Arc::new(file),
            path: Arc::new(last.path.clone()),
            pipeline: pipeline::Pipeline::start(dir, config.segment_size, SegmentSeq(last.seq.0 + 1))?,
            in_flight: VecDeque::new(),
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            io_cv: Condvar::new(),
            space_cv: Condvar::new(),
            waker,
            core: Mutex::new(core),
            metrics: Arc::new(Metrics::default()),
            fsync_delay_ns: AtomicU64::new(config.fsync_delay.as_nanos() as u64),
            panic_next: std::sync::atomic::AtomicBool::new(false),
            dir: dir.to_path_buf(),
        });
        let io = IoThread { shared: Arc::clone(&shared) };
        let handle = std::thread::Builder::new()
            .name("wal-io".into())
            .spawn(move || io.run())
            .map_err(|e| Error::io("spawn", dir, e))?;
        Ok(Wal { shared, io: Some(handle), engine: kind, recovery, _lock: lock })
    }

    /// Queues `records` for the log, in order, and returns a completion that resolves once they are durable.
    ///
    /// Entries must continue the log: an entry's index is the last index plus one, or lower, which first
    /// truncates the log from that index (Raft's overwrite of conflicting entries; replay honours it). An empty
    /// `records` completes at once and says nothing about earlier appends.
    ///
    /// # Durability
    /// Nothing is durable when this returns; it is once the [`Completion`] resolves `Ok`.
    pub fn append(&self, records: &[Record<'_>]) -> Result<Completion> {
        if records.is_empty() {
            return Ok(Completion::new(completion::Slot::done(), Appended { last_index: self.last_index() }));
        }
        self.shared.enqueue(|q, slot| q.append(records, slot), false).map(|(c, _)| c)
    }

    /// Appends `records` (as [`Wal::append`]) and returns once they are durable. When the I/O thread is idle the
    /// batch is written and flushed on the calling thread, which saves the two thread wake-ups of a hand-off; for
    /// an appender that would block on the completion anyway (a Raft loop) it is the cheaper way.
    ///
    /// # Durability
    /// On `Ok`, every record is on stable storage, exactly as after [`Completion::wait`].
    pub fn append_durable(&self, records: &[Record<'_>]) -> Result<Appended> {
        if records.is_empty() {
            return Ok(Appended { last_index: self.last_index() });
        }
        let (done, claimed) = self.shared.enqueue(|q, slot| q.append(records, slot), true)?;
        if claimed {
            self.shared.write_here(&done);
        }
        done.wait()
    }

    /// Discards every entry from `from` on (a truncate record is appended; replay honours it).
    ///
    /// # Durability
    /// The truncation is durable once the returned completion resolves `Ok`.
    pub fn truncate(&self, from: RaftIndex) -> Result<Completion> {
        self.shared.enqueue(|q, slot| q.truncate(from, slot), false).map(|(c, _)| c)
    }

    /// Removes whole segments whose entries all have an index below `index` (a snapshot now covers them). The
    /// active segment is never removed, nor any segment whose successor is not yet durable. Returns how many
    /// segments were removed.
    ///
    /// # Durability
    /// On `Ok`, the removals are durable (the directory is fsynced).
    pub fn release_to(&self, index: RaftIndex) -> Result<usize> {
        let doomed: Vec<SegmentSeq> = {
            let mut q = self.shared.lock();
            let durable = q.durable_seq;
            let mut n = 0;
            while n + 1 < q.segments.len()
                && q.segments[n + 1].seq <= durable
                && q.segments[n + 1].first_index <= index
                && q.segments[n + 1].first_index.0 > 0
            {
                n += 1;
            }
            q.segments.drain(..n).map(|s| s.seq).collect()
        };
        for seq in &doomed {
            let path = segment::path(&self.shared.dir, *seq);
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
        }
        if !doomed.is_empty() {
            fs::sync_dir(&self.shared.dir)?;
        }
        Ok(doomed.len())
    }

    /// Reads the log back: live entries from `from` on, and the latest hard state, snapshot marker and metadata.
    /// Meant for start-up, before appending: it reads what is on disk, which lags appends still in flight.
    pub fn replay(&self, from: RaftIndex) -> Result<Replay> {
        reader::replay(&self.shared.dir, from)
    }

    /// The index of the last live entry queued so far.
    pub fn last_index(&self) -> Option<RaftIndex> {
        self.shared.lock().state.last()
    }

    /// The engine in use (the sync engine when io_uring was asked for but is unavailable).
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// What opening found (torn tail erased, engine fallback).
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Live metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// A handle on the live metrics that outlives `self` (for an exporter on another thread).
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Failpoint for fault drills: from now on, sleep `delay` before each batch's write and flush.
    pub fn set_fsync_delay(&self, delay: Duration) {
        self.shared.fsync_delay_ns.store(delay.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Failpoint for fault drills: the I/O thread panics before it writes the next batch (as a bug would).
    #[doc(hidden)]
    pub fn panic_io_thread(&self) {
        self.shared.panic_next.store(true, Ordering::Relaxed);
    }

    /// Flushes everything queued, stops the I/O thread and releases the directory lock.
    pub fn close(mut self) -> Result<()> {
        self.shutdown();
        match &self.shared.lock().poisoned {
            Some(p) => Err(Error::Poisoned(p.to_string())),
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        {
            let mut q = self.shared.lock();
            q.closing = true;
            if q.io == IoState::InRing
                && let Some(w) = &self.shared.waker
            {
                w.wake();
            }
        }
        self.shared.io_cv.notify_all();
        if let Some(h) = self.io.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Removes spares (`*.wal.tmp`) left by a crash: they never held an acknowledged record.
fn remove_spares(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(".wal.tmp")) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        }
    }
    Ok(())
}
