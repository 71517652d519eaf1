//! I/O engines: the ways diskbench makes a write durable, behind one small trait.
//!
//! | engine | durable write                                         | `sync` op class is timed as             |
//! |--------|-------------------------------------------------------|-----------------------------------------|
//! | sync   | `pwrite`, then `fdatasync` (what etcd's WAL does)       | the `fdatasync` call, issue→return      |
//! | uring  | io_uring: linked `WRITE` → `FSYNC(DATASYNC)` in one submit | write CQE seen → fsync CQE seen       |
//! | dsync  | `pwritev2(RWF_DSYNC)`: the write is the flush          | the whole `pwritev2` call               |
//!
//! This module tree is the crate's only caller of fdatasync. Engines are `Send` but not shared: one thread drives
//! an engine at a time (the group-commit leader hands it on under a lock).

mod psync;
mod uring;

use std::fmt;
use std::fs::File;
use std::io;
use std::time::Duration;

use serde::Serialize;

/// Which engine a result was measured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// pwrite + fdatasync.
    Sync,
    /// io_uring linked write → fsync(DATASYNC).
    Uring,
    /// pwritev2 with RWF_DSYNC.
    Dsync,
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Sync => "sync",
            EngineKind::Uring => "uring",
            EngineKind::Dsync => "dsync",
        })
    }
}

/// The timings of one durable write.
#[derive(Debug, Clone, Copy)]
pub struct DurableWrite {
    /// The write alone; `None` where the engine cannot separate it from the flush (dsync).
    pub write: Option<Duration>,
    /// The flush, as described in the module table.
    pub sync: Duration,
}

/// A failed engine operation: which system call, and why.
#[derive(Debug)]
pub struct OpError {
    pub op: &'static str,
    pub source: io::Error,
}

impl OpError {
    pub(crate) fn new(op: &'static str, source: io::Error) -> Self {
        OpError { op, source }
    }
}

/// An engine op's result.
pub type OpResult<T> = Result<T, OpError>;

/// A way to write and flush. See the module header for how each engine is timed.
pub trait Engine: Send {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Writes all of `buf` at `offset` and makes it durable.
    ///
    /// # Durability
    /// On `Ok`, the bytes are on stable storage (fdatasync or RWF_DSYNC completed).
    fn write_durable(&mut self, file: &File, buf: &[u8], offset: u64) -> OpResult<DurableWrite>;

    /// Writes every `(offset, bytes)` pair in full; nothing is durable yet. The engine may have them in flight at once.
    fn write_batch(&mut self, file: &File, writes: &[(u64, &[u8])]) -> OpResult<()>;

    /// fdatasync; returns how long it took.
    ///
    /// # Durability
    /// On `Ok`, every completed write to `file` is on stable storage.
    fn sync(&mut self, file: &File) -> OpResult<Duration>;
}

/// Creates an engine, or says why it cannot run on this machine (old kernel, seccomp, unsupported flag).
pub fn open(kind: EngineKind, probe_file: &File) -> Result<Box<dyn Engine>, String> {
    match kind {
        EngineKind::Sync => Ok(Box::new(psync::Psync)),
        EngineKind::Dsync => psync::Dsync::open(probe_file).map(|e| Box::new(e) as Box<dyn Engine>),
        EngineKind::Uring => uring::Uring::open().map(|e| Box::new(e) as Box<dyn Engine>),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn engines(file: &File) -> Vec<Box<dyn Engine>> {
        [EngineKind::Sync, EngineKind::Uring, EngineKind::Dsync]
            .into_iter()
            .filter_map(|k| match open(k, file) {
                Ok(e) => Some(e),
                Err(why) => {
                    // Only io_uring may be missing on a machine; the other two are plain syscalls.
                    assert_eq!(k, EngineKind::Uring, "{k} unavailable: {why}");
                    eprintln!("skipping {k}: {why}");
                    None
                }
            })
            .collect()
    }

    #[test]
    fn every_engine_writes_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let probe = File::create(dir.path().join("probe")).unwrap();
        for mut engine in engines(&probe) {
            let path = dir.path().join(format!("f-{}", engine.kind()));
            let file = File::options().read(true).write(true).create_new(true).open(&path).unwrap();
            let a: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
            let t = engine.write_durable(&file, &a, 0).unwrap();
            assert!(t.sync > Duration::ZERO);
            let pages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 4096]).collect();
            let writes: Vec<(u64, &[u8])> =
                pages.iter().enumerate().map(|(i, p)| (8192 + 4096 * i as u64, p.as_slice())).collect();
            engine.write_batch(&file, &writes).unwrap();
            engine.sync(&file).unwrap();
            let mut back = vec![0u8; 3000];
            file.read_exact_at(&mut back, 0).unwrap();
            assert_eq!(back, a, "{}", engine.kind());
            let mut page = vec![0u8; 4096];
            file.read_exact_at(&mut page, 8192 + 4096 * 39).unwrap();
            assert!(page.iter().all(|&b| b == 39), "{}", engine.kind());
        }
    }

    #[test]
    fn a_read_only_file_gives_an_error_naming_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro");
        std::fs::write(&path, b"x").unwrap();
        let probe = File::create(dir.path().join("probe")).unwrap();
        for mut engine in engines(&probe) {
            let ro = File::open(&path).unwrap();
            let err = engine.write_durable(&ro, b"hello", 0).unwrap_err();
            assert!(err.op.contains("write"), "{}: {}", engine.kind(), err.op);
            assert_eq!(err.source.raw_os_error(), Some(libc::EBADF), "{}", engine.kind());
        }
    }
}
