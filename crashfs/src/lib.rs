//! `crashfs`: a file system for power-loss tests. Mount it, run the program under test on it (in this process or
//! another), note with [`CrashFs::mark`] what the program acknowledged, then replay the [`Journal`] to any point and
//! build the [`Image`] a power loss there would leave: every write, length change, create and rename not yet made
//! durable by the fsync the model requires is lost, kept, or torn at a sector, as [`Loss`] says. Recovery then runs
//! on the image, written to an ordinary directory, and must find every acknowledged write.
//!
//! Why a file system and not a trait inside the crates: the WAL writes through io_uring and both stores read
//! through mmap; a FUSE file system sees exactly the calls the kernel sees, from any engine and any process, and
//! the server-level test runs the real binary on it unchanged.
//!
//! # Reading the source
//! 1. `content`: a file's bytes, stored sparsely.
//! 2. `journal`: the operations, the durability model, and replay to a crash image.
//! 3. `fuse`: the live tree served over FUSE, journalling as it replies.
//!
//! Mounting needs `/dev/fuse` and the right to mount (root, or CAP_SYS_ADMIN); [`CrashFs::available`] tells.

mod content;
mod fuse;
mod journal;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use content::Content;
pub use journal::{Crash, Data, Image, Journal, Kind, Loss, Op, Report};

/// What can go wrong mounting, or writing an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Mounting or unmounting the file system failed.
    #[error("{what} {path}: {source}")]
    Mount { what: &'static str, path: PathBuf, source: std::io::Error },
    /// Writing an image failed.
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// A mounted crash-test file system. Dropping it unmounts it.
pub struct CrashFs {
    live: Arc<Mutex<fuse::Live>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for CrashFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashFs").field("mountpoint", &self.mountpoint).finish()
    }
}

impl CrashFs {
    /// Whether this process can mount a FUSE file system: `Ok` or the reason not.
    pub fn available() -> Result<(), String> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map(|_| ())
            .map_err(|e| format!("/dev/fuse: {e}"))?;
        // SAFETY: geteuid takes nothing and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("mounting needs root".into());
        }
        Ok(())
    }

    /// For tests: mounts at `mountpoint`, or returns `None` (the test skips, saying why) where this process may not
    /// mount FUSE file systems; under `CI=true` that is a failure instead, as CI runs the suite as root.
    pub fn mount_or_skip(mountpoint: impl AsRef<Path>) -> Option<CrashFs> {
        CrashFs::usable_or_skip().then(|| CrashFs::mount(mountpoint).expect("mount crashfs"))
    }

    /// For tests: whether this process may mount FUSE file systems; if not, says why (the test skips), and under
    /// `CI=true` fails instead, as CI runs the suite as root.
    pub fn usable_or_skip() -> bool {
        if let Err(why) = CrashFs::available() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "crashfs needs FUSE under CI: {why}");
            eprintln!("skipping: {why}");
            return false;
        }
        true
    }

    /// Mounts an empty file system at `mountpoint` (an existing, empty directory).
    pub fn mount(mountpoint: impl AsRef<Path>) -> Result<CrashFs, Error> {
        let mountpoint = mountpoint.as_ref().to_path_buf();
        let live = Arc::new(Mutex::new(fuse::Live::new()));
        let mut config = fuser::Config::default();
        config.mount_options = vec![fuser::MountOption::FSName("crashfs".into()), fuser::MountOption::RW];
        let session = fuser::spawn_mount(fuse::Fuse(Arc::clone(&live)), &mountpoint, &config)
            .map_err(|source| Error::Mount { what: "mount", path: mountpoint.clone(), source })?;
        Ok(CrashFs { live, session: Some(session), mountpoint })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Adds the program's note `tag` to the journal, after every operation already replied to.
    pub fn mark(&self, tag: u64) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).journal.ops.push(Op::Mark(tag));
    }

    /// A copy of the journal so far.
    pub fn journal(&self) -> Journal {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).journal.clone()
    }

    /// Unmounts (every file on it must be closed, or the unmount is lazy) and returns the journal.
    pub fn unmount(mut self) -> Result<Journal, Error> {
        if let Some(s) = self.session.take() {
            s.umount_and_join().map_err(|source| Error::Mount {
                what: "unmount",
                path: self.mountpoint.clone(),
                source,
            })?;
        }
        Ok(self.journal())
    }
}

impl Drop for CrashFs {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}
