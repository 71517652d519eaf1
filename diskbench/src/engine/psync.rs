//! The two engines that are plain system calls: `sync` (pwrite + fdatasync, etcd's WAL pattern) and `dsync`
//! (pwritev2 with RWF_DSYNC, one call that both writes and flushes).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::{DurableWrite, Engine, EngineKind, OpError, OpResult};

/// pwrite + fdatasync.
#[derive(Debug)]
pub(super) struct Psync;

fn fdatasync(file: &File) -> OpResult<Duration> {
    let t = Instant::now();
    file.sync_data().map_err(|e| OpError::new("fdatasync", e))?;
    Ok(t.elapsed())
}

fn pwrite_batch(file: &File, writes: &[(u64, &[u8])]) -> OpResult<()> {
    for &(offset, buf) in writes {
        file.write_all_at(buf, offset).map_err(|e| OpError::new("write", e))?;
    }
    Ok(())
}

impl Engine for Psync {
    fn kind(&self) -> EngineKind {
        EngineKind::Sync
    }

    fn write_durable(&mut self, file: &File, buf: &[u8], offset: u64) -> OpResult<DurableWrite> {
        let t = Instant::now();
        file.write_all_at(buf, offset).map_err(|e| OpError::new("write", e))?;
        let write = t.elapsed();
        Ok(DurableWrite { write: Some(write), sync: fdatasync(file)? })
    }

    fn write_batch(&mut self, file: &File, writes: &[(u64, &[u8])]) -> OpResult<()> {
        pwrite_batch(file, writes)
    }

    fn sync(&mut self, file: &File) -> OpResult<Duration> {
        fdatasync(file)
    }
}

/// pwritev2(RWF_DSYNC): the write returns once its data is durable.
#[derive(Debug)]
pub(super) struct Dsync;

impl Dsync {
    /// Checks that the kernel and file system accept RWF_DSYNC by writing nothing with it.
    pub(super) fn open(probe: &File) -> Result<Self, String> {
        match pwritev2_dsync(probe, &[], 0) {
            Ok(_) => Ok(Dsync),
            Err(e) => Err(format!("pwritev2(RWF_DSYNC) is not supported here: {e}")),
        }
    }
}

fn pwritev2_dsync(file: &File, buf: &[u8], offset: u64) -> std::io::Result<usize> {
    let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
    let offset = libc::off_t::try_from(offset).map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: `iov` points at `buf`, which outlives the call; the kernel only reads from it.
    let n = unsafe { libc::pwritev2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_DSYNC) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

impl Engine for Dsync {
    fn kind(&self) -> EngineKind {
        EngineKind::Dsync
    }

    fn write_durable(&mut self, file: &File, mut buf: &[u8], mut offset: u64) -> OpResult<DurableWrite> {
        let t = Instant::now();
        while !buf.is_empty() {
            match pwritev2_dsync(file, buf, offset) {
                Ok(0) => return Err(OpError::new("pwritev2", std::io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(OpError::new("pwritev2", e)),
            }
        }
        Ok(DurableWrite { write: None, sync: t.elapsed() })
    }

    fn write_batch(&mut self, file: &File, writes: &[(u64, &[u8])]) -> OpResult<()> {
        pwrite_batch(file, writes)
    }

    fn sync(&mut self, file: &File) -> OpResult<Duration> {
        fdatasync(file)
    }
}
