//! File-system operations with the WAL's error wrapping. This module and the io_uring engine (which issues
//! `IORING_OP_FSYNC`) are the crate's only places that make anything durable.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

/// fdatasync.
///
/// # Durability
/// On `Ok`, every completed write to `file` is on stable storage.
pub fn sync_data(file: &File, path: &Path) -> Result<()> {
    file.sync_data().map_err(|e| Error::io("fdatasync", path, e))
}

/// fsync: data and all metadata (used after fallocate, so the allocation is durable before the file is used).
///
/// # Durability
/// On `Ok`, the file's data and metadata are on stable storage.
pub fn sync_all(file: &File, path: &Path) -> Result<()> {
    file.sync_all().map_err(|e| Error::io("fsync", path, e))
}

/// fsync of a directory, making creations, renames and removals in it durable.
///
/// # Durability
/// On `Ok`, the directory's entries are on stable storage.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all().map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, each new directory's name made durable by an fsync of its parent.
///
/// # Durability
/// On `Ok`, `dir` exists and survives a power loss: without the parents' fsyncs a new directory's entry (and so
/// everything later synced inside it) may be lost, though every file in it was synced.
pub fn create_dir_durable(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.is_dir() {
        missing.push(at);
        match at.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => at = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => continue,
            Err(e) => return Err(Error::io("create directory", d, e)),
        }
        let parent = d.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_dir(parent)?;
    }
    Ok(())
}

/// Allocates `len` bytes (fallocate mode 0).
pub fn fallocate(file: &File, path: &Path, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Error::Config(format!("size {len} too large")))?;
    loop {
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("fallocate", path, e));
        }
    }
}

/// Writes zeroes over `[from, to)` of `file` and syncs it: erases a torn tail before new records go there, and
/// turns a fresh segment's fallocated (unwritten) extents into written ones.
///
/// Each 1 MiB is made durable before the next is written, so the disk never holds more than 1 MiB of these zeroes
/// queued ahead of another file's fdatasync (the WAL's, while the background thread prepares the next segment).
///
/// # Durability
/// On `Ok`, the zeroes are on stable storage.
pub fn zero_range(file: &File, path: &Path, from: u64, to: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at).map_err(|e| Error::io("write", path, e))?;
        at += n as u64;
        sync_data(file, path)?;
    }
    Ok(())
}

/// An exclusive `flock` on `<dir>/LOCK`, held while the returned file is open.
pub fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    // SAFETY: plain syscall on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Error::Locked { dir: dir.to_path_buf() }
        } else {
            Error::io("flock", &path, e)
        });
    }
    Ok(f)
}

/// A whole file's bytes, mapped read-only (see [`map`]), and the open file behind them.
#[derive(Debug)]
pub struct Mapped {
    file: File,
    map: Option<memmap2::Mmap>,
}

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl Mapped {
    /// Whether any byte from offset `from` on is non-zero. Read with `pread` in 1 MiB pieces rather than through
    /// the map: the zero tail of a preallocated segment is most of its 64 MiB, and touched through the map it would
    /// all count in the process's RSS while the map lives (issue 17: the start-up peak). `path` names the file in
    /// an error.
    pub fn nonzero_from(&self, from: u64, path: &Path) -> Result<bool> {
        use std::os::unix::fs::FileExt;
        let len = self.len() as u64;
        let mut buf = vec![0u8; (1 << 20).min(len.saturating_sub(from)) as usize];
        let mut at = from;
        while at < len {
            let n = ((len - at) as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], at).map_err(|e| Error::io("read", path, e))?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(true);
            }
            at += n as u64;
        }
        Ok(false)
    }
}

/// Maps the whole file at `path` for reading. The reader scans segments through a map rather than reading them
/// into the heap: a segment is preallocated (64 MiB by default), and a read copy of it stayed resident in the
/// allocator for the life of the process (an idle member's RSS, issue 17); mapped, the pages are the page cache's
/// and leave the process with the map.
pub fn map(path: &Path) -> Result<Mapped> {
    let file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
    if len == 0 {
        return Ok(Mapped { file, map: None });
    }
    // SAFETY: a map's bytes must not change or vanish while it is borrowed. The WAL never shrinks a segment
    // (segments are fallocated to their size, appended into and removed whole; a removed file stays mapped), and
    // segments are read at start-up, before anything appends (see `Wal::replay`), or offline by `repair`; so the
    // mapped length stays backed and nothing writes into the map while it is read.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
    Ok(Mapped { file, map: Some(map) })
}
