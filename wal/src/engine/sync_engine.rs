//! The sync engine: one `pwritev` of the batch's chunks (contiguous in the file by construction), then
//! `fdatasync`, on the calling (I/O) thread.

use std::os::fd::AsRawFd;
use std::time::Instant;

use super::{Done, Engine, Wake};
use crate::batch::{Batch, Buf};
use crate::error::{Error, Result};

/// Writes every chunk with as few `pwritev` calls as the kernel allows (one, unless it writes short).
fn write_batch(batch: &Batch) -> std::io::Result<()> {
    let Some(first) = batch.chunks.first() else { return Ok(()) };
    debug_assert!(
        batch.chunks.windows(2).all(|w| w[0].offset + w[0].buf.len as u64 == w[1].offset),
        "a batch's chunks are contiguous"
    );
    let mut offset = first.offset;
    let mut parts: Vec<&[u8]> = batch.chunks.iter().map(|c| c.buf.bytes()).collect();
    while !parts.is_empty() {
        let iov: Vec<libc::iovec> = parts
            .iter()
            .take(libc::UIO_MAXIOV as usize)
            .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
            .collect();
        let off = libc::off_t::try_from(offset).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: every iovec points into a chunk buffer borrowed from `batch` for the duration of the call; the
        // kernel only reads from them.
        let n = unsafe { libc::pwritev(batch.file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, off) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut written = n as usize;
        offset += written as u64;
        while written > 0 {
            let len = parts[0].len();
            if written >= len {
                parts.remove(0);
                written -= len;
            } else {
                parts[0] = &parts[0][written..];
                written = 0;
            }
        }
    }
    Ok(())
}

/// pwritev + fdatasync, one batch at a time.
#[derive(Default)]
pub(crate) struct SyncEngine {
    done: Option<Done>,
}

impl Engine for SyncEngine {
    fn depth(&self) -> usize {
        1
    }

    fn in_flight(&self) -> usize {
        usize::from(self.done.is_some())
    }

    fn submit(&mut self, batch: Batch) -> Result<()> {
        write_batch(&batch).map_err(|e| Error::io("write", batch.path.as_path(), e))?;
        // A sleep set on the failpoint counts as fdatasync time, as a slow disk's would.
        let t = Instant::now();
        crate::failpoints::WAL_BEFORE_FDATASYNC.eval();
        if crate::failpoints::WAL_SKIP_FDATASYNC.eval().is_none() {
            crate::fs::sync_data(&batch.file, &batch.path)?;
        }
        let fsync = t.elapsed();
        crate::failpoints::WAL_AFTER_FDATASYNC.eval();
        self.done = Some(Done { fsync, batch });
        Ok(())
    }

    fn wait(&mut self) -> Result<Vec<Done>> {
        Ok(self.done.take().into_iter().collect())
    }

    fn waker(&self) -> Option<std::sync::Arc<dyn Wake>> {
        None
    }

    fn register(&mut self, _bufs: &mut [Buf]) -> Result<()> {
        Ok(())
    }
}
