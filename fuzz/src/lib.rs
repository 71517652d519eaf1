//! Helpers shared by the fuzz targets: a scratch file or directory on a memory-backed file system (`/dev/shm`
//! where it exists), so a target that must go through a file stays fast.

use std::path::PathBuf;

/// A directory of its own for this process under `/dev/shm` (or the temp dir), emptied on each call.
pub fn scratch_dir(name: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("ferrokv-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}
