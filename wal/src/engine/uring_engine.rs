//! The io_uring engine: pipelined group commit.
//!
//! A batch is one submission of linked SQEs: a write per chunk (`WRITE_FIXED` from a registered buffer, or `WRITE`
//! for an oversized one) and then `FSYNC(DATASYNC)`. Up to [`DEPTH`] batches are in flight: while batch N's flush
//! runs, batch N+1's write is already in the kernel, and its own flush follows as soon as the write is done. The
//! ring is entered once per pass of the I/O thread (`submit_and_wait` both submits and waits).
//!
//! A READ on an eventfd stays armed in the ring so that appenders can interrupt a wait when new work arrives and a
//! pipeline slot is free ([`Engine::waker`]).
//!
//! **Invariants**
//! 1. Every SQE's user data is a [`Token`]; every buffer an SQE points to is owned by `in_flight` (or by the engine,
//!    for the eventfd buffer) until its CQE has been reaped. On an error the engine drains every CQE still owed
//!    before it returns, so no buffer is freed while the kernel may still read it.
//! 2. Batches are returned strictly in submission order: a batch whose flush finished early waits for its
//!    predecessors, so the log is acknowledged as a prefix.
//! 3. A write that completes short breaks the link (the kernel cancels the flush): the batch fails, and the WAL is
//!    poisoned; nothing is retried.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use super::{Done, Engine, Wake};
use crate::batch::{Batch, Buf};
use crate::error::{Error, Result};

/// Batches in flight at once.
pub(crate) const DEPTH: usize = 2;
/// Most chunks one batch may carry (the I/O thread splits larger runs).
pub(crate) const MAX_CHUNKS: usize = 64;
const RING_ENTRIES: u32 = 256;
// Every batch in flight (its writes and flush) plus the armed eventfd read fits in the ring.
const _: () = assert!(DEPTH * (MAX_CHUNKS + 1) < RING_ENTRIES as usize);

/// What an SQE is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Write { batch: u32, chunk: u16 },
    Fsync { batch: u32 },
    Wake,
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Write { batch, chunk } => (1 << 56) | (u64::from(chunk) << 32) | u64::from(batch),
            Token::Fsync { batch } => (2 << 56) | u64::from(batch),
            Token::Wake => 3 << 56,
        }
    }

    fn decode(v: u64) -> Option<Token> {
        let batch = v as u32;
        let chunk = (v >> 32) as u16;
        match v >> 56 {
            1 => Some(Token::Write { batch, chunk }),
            2 if chunk == 0 => Some(Token::Fsync { batch }),
            3 if v == 3 << 56 => Some(Token::Wake),
            _ => None,
        }
    }
}

struct InFlight {
    id: u32,
    batch: Batch,
    writes_left: usize,
    last_write_seen: Instant,
    fsync_done: Option<Instant>,
    error: Option<Error>,
    /// Time spent in `walBeforeFdatasync` before the submission, counted as fdatasync time (as a slow disk's).
    held: Duration,
}

struct EventFd(OwnedFd);

impl Wake for EventFd {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a valid local buffer to an eventfd we own. A failed write only means a
        // wake-up is lost while the counter is saturated, and then one is pending anyway.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

/// io_uring engine; owns its ring.
pub(crate) struct UringEngine {
    ring: IoUring,
    in_flight: VecDeque<InFlight>,
    next_id: u32,
    eventfd: Arc<EventFd>,
    wake_buf: Box<[u8; 8]>,
    /// SQEs pushed but not yet submitted or reaped, counted to drain on error.
    outstanding: usize,
}

impl UringEngine {
    /// Creates the ring and arms the eventfd; `Err` says why io_uring cannot be used here.
    pub(crate) fn open() -> std::result::Result<Self, String> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => "io_uring is not supported by this kernel".to_string(),
            Some(libc::EPERM) => "io_uring is disabled (kernel.io_uring_disabled or seccomp)".to_string(),
            _ => format!("io_uring_setup failed: {e}"),
        })?;
        // SAFETY: eventfd takes no pointers; a non-negative return is a new descriptor we then own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(format!("eventfd failed: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let eventfd = Arc::new(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }));
        let mut engine = UringEngine {
            ring,
            in_flight: VecDeque::new(),
            next_id: 0,
            eventfd,
            wake_buf: Box::new([0; 8]),
            outstanding: 0,
        };
        engine.arm_wake().map_err(|e| e.to_string())?;
        Ok(engine)
    }

    fn push(&mut self, entry: &squeue::Entry) -> Result<()> {
        // SAFETY: every entry names memory owned by `in_flight` or by `self.wake_buf`, kept alive until its CQE is
        // reaped (invariant 1).
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| Error::io("io_uring submit", "", std::io::Error::other("submission queue full")))?;
        self.outstanding += 1;
        Ok(())
    }

    fn arm_wake(&mut self) -> Result<()> {
        let read = opcode::Read::new(types::Fd(self.eventfd.0.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(Token::Wake.encode());
        self.push(&read)
    }

    fn enter(&mut self, want: usize) -> Result<()> {
        loop {
            match self.ring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("io_uring_enter", "", e)),
            }
        }
    }

    /// Reaps every CQE available; returns whether the eventfd fired.
    fn reap(&mut self) -> Result<bool> {
        let mut woke = false;
        let cqes: Vec<(u64, i32)> = self.ring.completion().map(|c| (c.user_data(), c.result())).collect();
        let now = Instant::now();
        for (data, res) in cqes {
            self.outstanding -= 1;
            match Token::decode(data) {
                Some(Token::Wake) => {
                    woke = true;
                    self.arm_wake()?;
                }
                Some(Token::Write { batch, chunk }) => {
                    let Some(f) = self.in_flight.iter_mut().find(|f| f.id == batch) else { continue };
                    f.writes_left -= 1;
                    f.last_write_seen = now;
                    let want = f.batch.chunks.get(usize::from(chunk)).map_or(0, |c| c.buf.len);
                    if res < 0 || res as usize != want {
                        let e = if res < 0 {
                            std::io::Error::from_raw_os_error(-res)
                        } else {
                            std::io::Error::other(format!("short write: {res} of {want} bytes"))
                        };
                        f.error.get_or_insert(Error::io("write", f.batch.path.as_path(), e));
                    }
                }
                Some(Token::Fsync { batch }) => {
                    let Some(f) = self.in_flight.iter_mut().find(|f| f.id == batch) else { continue };
                    f.fsync_done = Some(now);
                    if res < 0 {
                        let e = std::io::Error::from_raw_os_error(-res);
                        f.error.get_or_insert(Error::io("fdatasync", f.batch.path.as_path(), e));
                    }
                }
                None => return Err(Error::io("io_uring reap", "", std::io::Error::other("unknown completion token"))),
            }
        }
        Ok(woke)
    }

    /// Waits for every CQE still owed (all but the armed eventfd read), so no buffer is in the kernel's hands.
    fn drain(&mut self) {
        while self.outstanding > 1 {
            if self.enter(1).is_err() || self.reap().is_err() {
                return;
            }
        }
    }
}

impl Engine for UringEngine {
    fn depth(&self) -> usize {
        DEPTH
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn submit(&mut self, batch: Batch) -> Result<()> {
        debug_assert!(batch.chunks.len() <= MAX_CHUNKS && self.in_flight.len() < DEPTH);
        let held = Instant::now();
        crate::failpoints::WAL_BEFORE_FDATASYNC.eval();
        let held = held.elapsed();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let fd = types::Fd(batch.file.as_raw_fd());
        let mut entries = Vec::with_capacity(batch.chunks.len() + 1);
        for (i, chunk) in batch.chunks.iter().enumerate() {
            let (ptr, len) = (chunk.buf.data.as_ptr(), chunk.buf.len as u32);
            let entry = match chunk.buf.fixed {
                Some(index) => opcode::WriteFixed::new(fd, ptr, len, index).offset(chunk.offset).build(),
                None => opcode::Write::new(fd, ptr, len).offset(chunk.offset).build(),
            };
            entries.push(
                entry.flags(squeue::Flags::IO_LINK).user_data(Token::Write { batch: id, chunk: i as u16 }.encode()),
            );
        }
        let sync = if crate::failpoints::WAL_SKIP_FDATASYNC.eval().is_some() {
            opcode::Nop::new().build()
        } else {
            opcode::Fsync::new(fd).flags(types::FsyncFlags::DATASYNC).build()
        };
        entries.push(sync.user_data(Token::Fsync { batch: id }.encode()));
        let writes_left = batch.chunks.len();
        self.in_flight.push_back(InFlight {
            id,
            batch,
            writes_left,
            last_write_seen: Instant::now(),
            fsync_done: None,
            error: None,
            held,
        });
        for e in &entries {
            self.push(e)?;
        }
        Ok(())
    }

    fn wait(&mut self) -> Result<Vec<Done>> {
        loop {
            let woke = self.reap()?;
            if let Some(e) = self.in_flight.iter_mut().find_map(|f| f.error.take()) {
                self.drain();
                return Err(e);
            }
            let mut done = Vec::new();
            while self.in_flight.front().is_some_and(|f| f.writes_left == 0 && f.fsync_done.is_some()) {
                let Some(f) = self.in_flight.pop_front() else { break };
                let fsync =
                    f.held + f.fsync_done.map_or(Duration::ZERO, |t| t.saturating_duration_since(f.last_write_seen));
                crate::failpoints::WAL_AFTER_FDATASYNC.eval();
                done.push(Done { batch: f.batch, fsync });
            }
            if !done.is_empty() || woke {
                return Ok(done);
            }
            if let Err(e) = self.enter(1) {
                self.drain();
                return Err(e);
            }
        }
    }

    fn waker(&self) -> Option<Arc<dyn Wake>> {
        Some(self.eventfd.clone())
    }

    fn register(&mut self, bufs: &mut [Buf]) -> Result<()> {
        let iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec { iov_base: b.data.as_mut_ptr().cast(), iov_len: b.data.len() })
            .collect();
        // SAFETY: each iovec covers a live boxed slice that the WAL keeps (never reallocated) for as long as the
        // ring exists: buffers are returned to the pool, not freed, while the engine lives.
        unsafe { self.ring.submitter().register_buffers(&iovecs) }
            .map_err(|e| Error::io("io_uring register buffers", "", e))?;
        for (i, b) in bufs.iter_mut().enumerate() {
            b.fixed = Some(i as u16);
        }
        Ok(())
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        self.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Write { batch: 0, chunk: 0 },
            Token::Write { batch: u32::MAX, chunk: u16::MAX },
            Token::Fsync { batch: 7 },
            Token::Wake,
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(0), None);
        assert_eq!(Token::decode(9 << 56), None);
    }
}
