//! The append queue: where appenders encode their records, in log order, under one lock.
//!
//! Everything that decides *where* bytes go is decided here, at append time: the chained CRC, the segment and
//! offset of every frame, and when a segment is full (then a seal is encoded into the old segment, and a new
//! chunk opens the next segment with its header and the current state records). The I/O thread only executes
//! the plan (see `group_commit`).
//!
//! **Invariants**
//! 1. Frames are encoded in exactly the order they will be replayed, and `chain`/`seq`/`offset` always describe
//!    the end of the last encoded frame.
//! 2. Every segment keeps room for its seal: `offset + frame + SEAL_FRAME_LEN <= segment_size`.
//! 3. One append's records are encoded contiguously, never interleaved with another append's (the lock is held
//!    from validation to the last frame, and nothing inside waits).
//! 4. `state` is the log state after every encoded frame (`state::LogState` rules).

use std::sync::Arc;

use crate::batch::{Buf, Chunk};
use crate::completion::Slot;
use crate::error::{Error, Result};
use crate::record::{self, Record, SEAL_FRAME_LEN, TRUNCATE_FRAME_LEN};
use crate::segment::{self, HEADER_LEN, Header};
use crate::state::{LogState, Violation};
use crate::types::{RaftIndex, SegmentSeq};

/// What the I/O thread is doing, so appenders know whether and how to wake it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoState {
    /// Busy; it will look at the queue before it waits again.
    Busy,
    /// Parked on the condition variable with nothing in flight.
    Idle,
    /// Blocked in the engine with a free pipeline slot: wake it through the engine's waker.
    InRing,
    /// Parked, while an appender writes the queue on its own thread (`Wal::append_durable`); that appender hands
    /// the I/O back (`Idle`, waking the thread if work is left) once its own records are durable.
    Caller,
}

/// A segment known to the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SegmentMeta {
    pub seq: SegmentSeq,
    pub first_index: RaftIndex,
}

/// The queue's state; lives behind the WAL's mutex.
pub(crate) struct Queue {
    pub segment_size: u64,
    pub seq: SegmentSeq,
    pub offset: u64,
    pub chain: u32,
    /// The current segment is sealed (found so at open): the next frame opens a new segment without a seal.
    pub sealed: bool,
    pub state: LogState,
    pub segments: Vec<SegmentMeta>,
    /// Highest segment whose header is durable.
    pub durable_seq: SegmentSeq,
    /// Closed chunks waiting for the I/O thread, in order.
    pub ready: Vec<Chunk>,
    /// The chunk being filled.
    pub current: Option<Chunk>,
    pub pool: Vec<Buf>,
    pub buf_size: usize,
    /// Bytes encoded but not yet durable.
    pub queued_bytes: usize,
    pub max_queued_bytes: usize,
    pub poisoned: Option<Arc<str>>,
    pub closing: bool,
    pub io: IoState,
}

impl Queue {
    /// Whether the I/O thread has anything to take.
    pub fn has_work(&self) -> bool {
        !self.ready.is_empty() || self.current.as_ref().is_some_and(|c| c.buf.len > 0)
    }

    /// Largest payload one record may have: a segment must hold it with its header, state records and seal.
    pub fn max_payload(&self) -> usize {
        (self.segment_size / 4) as usize
    }

    fn close_current(&mut self) {
        if let Some(c) = self.current.take() {
            if c.buf.len > 0 || c.starts.is_some() {
                self.ready.push(c);
            } else {
                self.recycle(c.buf);
            }
        }
    }

    /// Returns a buffer to the pool (only standard-size ones are kept; registered ones are always standard).
    pub fn recycle(&mut self, mut buf: Buf) {
        if buf.data.len() == self.buf_size {
            buf.len = 0;
            self.pool.push(buf);
        }
    }

    fn new_chunk(&mut self, at_least: usize, starts: Option<Header>) {
        let buf = match self.pool.pop() {
            Some(b) if at_least <= b.data.len() => b,
            Some(b) => {
                self.pool.push(b);
                Buf::new(at_least)
            }
            None => Buf::new(at_least.max(self.buf_size)),
        };
        self.current = Some(Chunk { seq: self.seq, offset: self.offset, buf, waiters: Vec::new(), records: 0, starts });
    }

    /// Reserves `len` bytes at the end of the current chunk, cutting to a new segment or chunk first as needed,
    /// and returns their position in the chunk. Read `self.chain` only after this: a cut changes it.
    fn reserve(&mut self, len: usize) -> usize {
        if self.sealed || self.offset + (len + SEAL_FRAME_LEN) as u64 > self.segment_size {
            self.cut();
        }
        if self.current.as_ref().is_none_or(|c| c.buf.remaining() < len) {
            self.close_current();
            self.new_chunk(len, None);
        }
        let Some(chunk) = self.current.as_mut() else { unreachable!("a chunk was opened just above") };
        let at = chunk.buf.len;
        chunk.buf.len += len;
        chunk.records += 1;
        self.offset += len as u64;
        self.queued_bytes += len;
        at
    }

    /// The `len` bytes at `at` in the current chunk (just reserved).
    fn slot(&mut self, at: usize, len: usize) -> &mut [u8] {
        let Some(chunk) = self.current.as_mut() else { unreachable!("reserve leaves a current chunk") };
        &mut chunk.buf.data[at..at + len]
    }

    /// Seals the current segment (unless already sealed) and opens the next, restating the state records.
    fn cut(&mut self) {
        if !self.sealed {
            let chain = self.chain;
            let Some(chunk) = self.current.as_mut().filter(|c| c.buf.remaining() >= SEAL_FRAME_LEN) else {
                self.close_current();
                self.new_chunk(SEAL_FRAME_LEN, None);
                return self.cut();
            };
            let at = chunk.buf.len;
            self.chain = record::encode_seal(&mut chunk.buf.data[at..at + SEAL_FRAME_LEN], chain);
            chunk.buf.len += SEAL_FRAME_LEN;
            chunk.records += 1;
            self.queued_bytes += SEAL_FRAME_LEN;
        }
        self.close_current();
        self.sealed = false;
        self.seq = SegmentSeq(self.seq.0 + 1);
        let header = Header {
            seq: self.seq,
            first_index: self.state.next.unwrap_or(RaftIndex(0)),
            salt: segment::new_salt(),
            segment_size: self.segment_size,
        };
        let (bytes, seed) = header.encode();
        self.offset = 0;
        self.new_chunk(HEADER_LEN, Some(header));
        if let Some(c) = self.current.as_mut() {
            c.buf.data[..HEADER_LEN].copy_from_slice(&bytes);
            c.buf.len = HEADER_LEN;
        }
        self.offset = HEADER_LEN as u64;
        self.queued_bytes += HEADER_LEN;
        self.chain = seed;
        self.segments.push(SegmentMeta { seq: self.seq, first_index: header.first_index });
        // Restate what replay needs, so releasing older segments never loses it.
        let hs = self.state.hard_state;
        let snap = self.state.snapshot;
        let meta = self.state.metadata.clone();
        if let Some(h) = hs {
            self.encode(&Record::HardState(h));
        }
        if let Some(s) = snap {
            self.encode(&Record::Snapshot(s));
        }
        if let Some(m) = meta {
            self.encode(&Record::Metadata(&m));
        }
    }

    fn encode(&mut self, r: &Record<'_>) {
        let len = record::frame_len(record::payload_len(r));
        let at = self.reserve(len);
        let chain = self.chain;
        self.chain = record::encode(self.slot(at, len), r, chain);
    }

    fn encode_truncate(&mut self, from: RaftIndex) {
        let at = self.reserve(TRUNCATE_FRAME_LEN);
        let chain = self.chain;
        self.chain = record::encode_truncate(self.slot(at, TRUNCATE_FRAME_LEN), from, chain);
        self.state.on_truncate(from);
    }

    /// Checks a whole append against the current state without changing anything (invariant 3 needs the check
    /// to come before the first frame is encoded).
    fn validate(&self, records: &[Record<'_>]) -> Result<()> {
        let max = self.max_payload();
        let mut s = self.state.clone_indexes();
        for r in records {
            let len = record::payload_len(r);
            if len > max {
                return Err(Error::RecordTooLarge { len, max });
            }
            match r {
                Record::Entry { index, .. } => {
                    if s.next.is_some_and(|next| *index < next) {
                        s.try_truncate(*index).map_err(|_| self.bad_truncate(*index))?;
                    }
                    s.try_entry(*index).map_err(|v| match v {
                        Violation::NonContiguous { expected, got } => Error::NonContiguous { expected, got },
                        Violation::BadTruncate { from } => self.bad_truncate(from),
                    })?;
                }
                Record::Snapshot(m) => s.on_snapshot(*m),
                Record::HardState(_) | Record::Metadata(_) => {}
            }
        }
        Ok(())
    }

    pub fn bad_truncate(&self, from: RaftIndex) -> Error {
        Error::BadTruncate {
            from,
            first: self.state.first.unwrap_or(RaftIndex(0)),
            last: self.state.last().unwrap_or(RaftIndex(0)),
        }
    }

    /// Encodes one append; returns the log's last index after it. The caller registers `slot` as a waiter.
    pub fn append(&mut self, records: &[Record<'_>], slot: &Arc<Slot>) -> Result<Option<RaftIndex>> {
        self.validate(records)?;
        for r in records {
            if let Record::Entry { index, .. } = r
                && self.state.next.is_some_and(|next| *index < next)
            {
                self.encode_truncate(*index);
            }
            // Encode first: a cut inside `encode` must see the state *before* this record (invariant 4).
            self.encode(r);
            match r {
                Record::Entry { index, .. } => self.state.on_entry(*index),
                Record::Snapshot(m) => self.state.on_snapshot(*m),
                Record::HardState(h) => self.state.hard_state = Some(*h),
                Record::Metadata(m) => self.state.metadata = Some(m.to_vec()),
            }
        }
        if let Some(c) = self.current.as_mut() {
            c.waiters.push(Arc::clone(slot));
        }
        Ok(self.state.last())
    }

    /// Encodes an explicit truncation of every entry from `from` on.
    pub fn truncate(&mut self, from: RaftIndex, slot: &Arc<Slot>) -> Result<Option<RaftIndex>> {
        let mut s = self.state.clone_indexes();
        s.try_truncate(from).map_err(|_| self.bad_truncate(from))?;
        self.encode_truncate(from);
        if let Some(c) = self.current.as_mut() {
            c.waiters.push(Arc::clone(slot));
        }
        Ok(self.state.last())
    }
}
