//! The work directory: a fresh subdirectory of the target that holds every file diskbench writes.
//!
//! **Invariants**
//! 1. diskbench never creates, opens for writing or removes anything outside its work directory.
//! 2. The work directory is created with `mkdir` (never reused: an existing name is an error) and removed with
//!    everything in it when the [`WorkDir`] is dropped: on success, on error and after SIGINT/SIGTERM (the signal
//!    handler only sets a flag; the run unwinds normally). Only SIGKILL can leave it behind; its name starts with
//!    `.diskbench-` so an operator can spot it.

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A work directory, removed on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

/// Checks that `dir` is an existing directory this process may create files in, with a clear error for each way
/// it is not. Writability is asked of the kernel (`access(W_OK)`), so a read-only mount is caught even for root.
pub fn check_target(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::NotADir(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::MissingDir(dir.to_path_buf())),
        Err(e) => return Err(Error::NotWritable { path: dir.to_path_buf(), source: e }),
    }
    let c = c_path(dir)?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::NotWritable { path: dir.to_path_buf(), source: e });
    }
    Ok(())
}

fn c_path(dir: &Path) -> Result<std::ffi::CString> {
    std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Usage(format!("{}: path contains a NUL byte", dir.display())))
}

/// Bytes available to an unprivileged writer on the file system holding `dir`.
pub fn available_bytes(dir: &Path) -> Result<u64> {
    let c = c_path(dir)?;
    // SAFETY: statvfs is plain old data, so all-zero bytes are a valid value for the kernel to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer for the duration of the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::NotWritable { path: dir.to_path_buf(), source: e });
    }
    // The field types differ between targets (u32 on some 32-bit ones), hence the conversions.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(blocks.saturating_mul(block_size))
}

impl WorkDir {
    /// Creates `DIR/.diskbench-<pid>-<n>`, after checking that `DIR` is a directory with `needed` bytes free.
    pub fn create(target: &Path, needed: u64) -> Result<Self> {
        check_target(target)?;
        let available = available_bytes(target)?;
        if available < needed {
            return Err(Error::NotEnoughSpace { path: target.to_path_buf(), needed, available });
        }
        let pid = std::process::id();
        for n in 0..100u32 {
            let path = target.join(format!(".diskbench-{pid}-{n}"));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::NotWritable { path: target.to_path_buf(), source: e }),
            }
        }
        Err(Error::Usage(format!("{}: could not pick a fresh work directory name", target.display())))
    }

    /// The work directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the whole file system (`syncfs`) so that a previous run's dirty data, file removal and discards are
    /// settled before the next run starts its clock. Without it, whichever run follows a large deletion pays for it.
    pub fn settle(&self, phase: &str) -> Result<()> {
        let dir = File::open(&self.path).map_err(|e| Error::io("open", &self.path, phase, e))?;
        // SAFETY: syncfs takes a file descriptor we own for the duration of the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(Error::io("syncfs", &self.path, phase, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Creates a new, empty file in the work directory, opened for reading and writing.
    pub fn create_file(&self, name: &str, phase: &str) -> Result<(File, PathBuf)> {
        self.settle(phase)?;
        let path = self.path.join(name);
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, phase, e))?;
        Ok((file, path))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            eprintln!("diskbench: could not remove work directory {}: {e}", self.path.display());
        }
    }
}

/// Allocates `len` bytes of `file` with `fallocate(mode 0)`, as fio's default `fallocate=native` and etcd's WAL
/// segment preallocation do: the extents exist but are unwritten.
pub fn fallocate(file: &File, path: &Path, len: u64, phase: &str) -> Result<()> {
    let len_off = libc::off_t::try_from(len).map_err(|_| Error::Usage(format!("size {len} is too large")))?;
    loop {
        // SAFETY: fallocate takes a file descriptor we own and plain integers.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::io("fallocate", path, phase, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_dir_is_fresh_and_removed_on_drop() {
        let target = tempfile::tempdir().unwrap();
        std::fs::write(target.path().join("keep.me"), b"operator data").unwrap();
        let path = {
            let w = WorkDir::create(target.path(), 0).unwrap();
            let (_f, p) = w.create_file("x", "test").unwrap();
            assert!(p.exists());
            assert!(w.create_file("x", "test").is_err(), "create_file never reuses a file");
            w.path().to_path_buf()
        };
        assert!(!path.exists());
        let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("keep.me")]);
    }

    #[test]
    fn target_errors_are_distinct() {
        let target = tempfile::tempdir().unwrap();
        let missing = target.path().join("nope");
        assert!(matches!(WorkDir::create(&missing, 0), Err(Error::MissingDir(_))));
        let file = target.path().join("file");
        std::fs::write(&file, b"").unwrap();
        assert!(matches!(WorkDir::create(&file, 0), Err(Error::NotADir(_))));
        let e = WorkDir::create(target.path(), u64::MAX).unwrap_err();
        assert!(matches!(e, Error::NotEnoughSpace { .. }), "{e}");
    }
}
