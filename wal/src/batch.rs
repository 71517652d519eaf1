//! The units group commit moves around: buffers of encoded frames ([`Buf`]), the contiguous piece of one segment
//! they hold ([`Chunk`]), and what the I/O thread hands an engine in one go ([`Batch`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use crate::completion::Slot;
use crate::segment::Header;
use crate::types::SegmentSeq;

/// A buffer of encoded frames. Its memory never moves (a boxed slice, never grown), so an io_uring engine can
/// register it once and write from it with `WRITE_FIXED`.
pub(crate) struct Buf {
    pub data: Box<[u8]>,
    pub len: usize,
    /// Index among the engine's registered buffers, if registered.
    pub fixed: Option<u16>,
}

impl Buf {
    pub fn new(capacity: usize) -> Self {
        Buf { data: vec![0u8; capacity].into_boxed_slice(), len: 0, fixed: None }
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.len
    }

    pub fn bytes(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// Frames bound for one contiguous range of one segment, and the appends that finish in it.
pub(crate) struct Chunk {
    pub seq: SegmentSeq,
    /// File offset of `buf.data[0]`.
    pub offset: u64,
    pub buf: Buf,
    /// Appends whose last frame is in this chunk: completed once it (and every chunk before it) is durable.
    pub waiters: Vec<Arc<Slot>>,
    /// Frames in the chunk.
    pub records: u64,
    /// Set when the chunk opens a new segment (its header is at `buf.data[0..64]`).
    pub starts: Option<Header>,
}

/// Chunks of one segment file for an engine to write and then fdatasync, as one unit.
pub(crate) struct Batch {
    pub file: Arc<File>,
    pub path: Arc<PathBuf>,
    pub chunks: Vec<Chunk>,
}

impl Batch {
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.buf.len as u64).sum()
    }
}
