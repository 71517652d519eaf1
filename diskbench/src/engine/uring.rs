//! The io_uring engine: a durable write is one submission of a linked `WRITE` → `FSYNC(DATASYNC)` pair.
//!
//! Every SQE carries a typed [`Token`] in its user data, never a bare number. The fsync's latency is timed from the
//! moment the write's CQE is seen to the moment the fsync's CQE is seen: a linked fsync is issued by the kernel when
//! the write completes, so this is the flush's own issue→completion time, as fio times `fdatasync`.
//!
//! **Invariants**: the ring is empty between calls (every submitted SQE is reaped before a method returns), so
//! tokens never outlive the buffers they point at.
//!
//! This is the crate's only `unsafe` besides the pwritev2 call: pushing an SQE hands the kernel raw pointers, and
//! each push is sound because the buffer it names is borrowed until the method has reaped its CQE.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, squeue, types};

use super::{DurableWrite, Engine, EngineKind, OpError, OpResult};

const RING_ENTRIES: u32 = 256;

/// What an SQE is, carried through the kernel in its user data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// The n-th write of the current submission.
    Write(u32),
    /// The fsync of the current submission.
    Fsync,
}

impl Token {
    const FSYNC: u64 = 1 << 32;

    fn encode(self) -> u64 {
        match self {
            Token::Write(i) => u64::from(i),
            Token::Fsync => Self::FSYNC,
        }
    }

    fn decode(v: u64) -> Option<Token> {
        match v {
            Self::FSYNC => Some(Token::Fsync),
            i if i < Self::FSYNC => Some(Token::Write(i as u32)),
            _ => None,
        }
    }
}

/// io_uring engine; owns its ring.
pub(super) struct Uring {
    ring: IoUring,
}

impl std::fmt::Debug for Uring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Uring")
    }
}

impl Uring {
    pub(super) fn open() -> Result<Self, String> {
        IoUring::new(RING_ENTRIES).map(|ring| Uring { ring }).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOSYS) => "io_uring is not supported by this kernel".to_string(),
            Some(libc::EPERM) => "io_uring is disabled (kernel.io_uring_disabled or seccomp)".to_string(),
            _ => format!("io_uring_setup failed: {e}"),
        })
    }

    fn push(&mut self, entry: &squeue::Entry) -> OpResult<()> {
        // SAFETY: every entry pushed here names a buffer borrowed by the calling method, which reaps the matching
        // CQE before it returns (module invariant), so the kernel never sees a dangling pointer.
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| OpError::new("io_uring submit", io::Error::other("submission queue full")))
    }

    /// Waits for one CQE and decodes it.
    fn next_completion(&mut self) -> OpResult<(Token, i32)> {
        loop {
            if let Some(cqe) = self.ring.completion().next() {
                let token = Token::decode(cqe.user_data())
                    .ok_or_else(|| OpError::new("io_uring reap", io::Error::other("unknown completion token")))?;
                return Ok((token, cqe.result()));
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(OpError::new("io_uring_enter", e)),
            }
        }
    }

    fn write_entry(file: &File, buf: &[u8], offset: u64, token: Token) -> squeue::Entry {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        opcode::Write::new(types::Fd(file.as_raw_fd()), buf.as_ptr(), len)
            .offset(offset)
            .build()
            .user_data(token.encode())
    }

    fn fsync_entry(file: &File) -> squeue::Entry {
        opcode::Fsync::new(types::Fd(file.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(Token::Fsync.encode())
    }
}

/// A completed write's byte count, or the error it carried.
fn write_result(res: i32) -> OpResult<usize> {
    if res < 0 { Err(OpError::new("write", io::Error::from_raw_os_error(-res))) } else { Ok(res as usize) }
}

impl Engine for Uring {
    fn kind(&self) -> EngineKind {
        EngineKind::Uring
    }

    fn write_durable(&mut self, file: &File, buf: &[u8], offset: u64) -> OpResult<DurableWrite> {
        let start = Instant::now();
        self.push(&Self::write_entry(file, buf, offset, Token::Write(0)).flags(squeue::Flags::IO_LINK))?;
        self.push(&Self::fsync_entry(file))?;
        self.ring.submit().map_err(|e| OpError::new("io_uring_enter", e))?;
        let (mut written, mut write_seen, mut fsync) = (None, None, None);
        while written.is_none() || fsync.is_none() {
            let (token, res) = self.next_completion()?;
            let now = Instant::now();
            match token {
                Token::Write(_) => {
                    write_seen = Some(now);
                    written = Some(write_result(res));
                }
                Token::Fsync => fsync = Some((now, res)),
            }
        }
        let (Some(written), Some(write_seen), Some((fsync_seen, fsync_res))) = (written, write_seen, fsync) else {
            unreachable!("the loop above exits only once both completions are in");
        };
        let n = written?;
        if n < buf.len() {
            // A short write breaks the link, so the kernel cancelled the fsync: finish both by hand.
            self.write_batch(file, &[(offset + n as u64, &buf[n..])])?;
            let sync = self.sync(file)?;
            return Ok(DurableWrite { write: Some(write_seen - start), sync });
        }
        if fsync_res < 0 {
            return Err(OpError::new("fdatasync", io::Error::from_raw_os_error(-fsync_res)));
        }
        Ok(DurableWrite { write: Some(write_seen - start), sync: fsync_seen.saturating_duration_since(write_seen) })
    }

    fn write_batch(&mut self, file: &File, writes: &[(u64, &[u8])]) -> OpResult<()> {
        let mut pending: Vec<(u64, &[u8])> = writes.to_vec();
        while !pending.is_empty() {
            let chunk = pending.len().min(RING_ENTRIES as usize);
            for (i, &(offset, buf)) in pending[..chunk].iter().enumerate() {
                self.push(&Self::write_entry(file, buf, offset, Token::Write(i as u32)))?;
            }
            self.ring.submit().map_err(|e| OpError::new("io_uring_enter", e))?;
            let mut short = Vec::new();
            let mut first_error = None;
            for _ in 0..chunk {
                let (token, res) = self.next_completion()?;
                let Token::Write(i) = token else { continue };
                match write_result(res) {
                    Ok(n) => {
                        let (offset, buf) = pending[i as usize];
                        if n < buf.len() {
                            short.push((offset + n as u64, &buf[n..]));
                        }
                    }
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
            pending.drain(..chunk);
            pending.extend(short);
        }
        Ok(())
    }

    fn sync(&mut self, file: &File) -> OpResult<Duration> {
        let start = Instant::now();
        self.push(&Self::fsync_entry(file))?;
        self.ring.submit().map_err(|e| OpError::new("io_uring_enter", e))?;
        let (_, res) = self.next_completion()?;
        if res < 0 {
            return Err(OpError::new("fdatasync", io::Error::from_raw_os_error(-res)));
        }
        Ok(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        for t in [Token::Write(0), Token::Write(255), Token::Write(u32::MAX), Token::Fsync] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
        assert_eq!(Token::decode(u64::MAX), None);
    }
}
