//! Engines: how a batch is written and made durable. The I/O thread drives one engine; see `group_commit`.
//!
//! - [`sync`](sync_engine): `pwrite` each chunk, then `fdatasync`, on the I/O thread; one batch at a time.
//! - [`uring`](uring_engine): the chunks' writes and an `FSYNC(DATASYNC)` linked in one submission, from
//!   registered buffers; up to two batches in flight, so batch N+1's write runs while batch N's flush completes.
//!
//! Both return completed batches in submission order, which is what lets the I/O thread acknowledge appends in
//! log order.

pub(crate) mod sync_engine;
pub(crate) mod uring_engine;

use std::time::Duration;

use crate::batch::{Batch, Buf};
use crate::error::Result;

/// Which engine to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// pwrite + fdatasync on the I/O thread.
    #[default]
    Sync,
    /// io_uring with pipelined batches; falls back to `Sync` where io_uring is unavailable.
    Uring,
}

/// A batch an engine finished.
pub(crate) struct Done {
    pub batch: Batch,
    /// How long its flush took.
    pub fsync: Duration,
}

/// Interrupts an engine's [`Engine::wait`] from another thread.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

/// A way to write batches and make them durable.
pub(crate) trait Engine: Send {
    /// Most batches in flight at once.
    fn depth(&self) -> usize;

    /// Batches submitted and not yet returned by `wait`.
    fn in_flight(&self) -> usize;

    /// Starts writing `batch` and flushing its file. Returns once it is submitted (or, for the sync engine, done).
    ///
    /// # Durability
    /// The batch is durable only once `wait` returns it.
    fn submit(&mut self, batch: Batch) -> Result<()>;

    /// Blocks until the oldest batch in flight is durable, returning every finished batch in submission order, or
    /// until woken through [`Engine::waker`] (possibly returning none).
    fn wait(&mut self) -> Result<Vec<Done>>;

    /// A handle that makes a blocked `wait` return, for engines whose `wait` can block while work is queued.
    fn waker(&self) -> Option<std::sync::Arc<dyn Wake>>;

    /// Lets the engine register the buffers it will be handed (io_uring fixed buffers). Called once, before use.
    fn register(&mut self, bufs: &mut [Buf]) -> Result<()>;
}
