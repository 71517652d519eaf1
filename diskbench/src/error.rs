//! diskbench's one error type. Every variant renders as a single line that names the problem, because the binary
//! prints it as `diskbench: <error>` and exits with status 2.

use std::io;
use std::path::PathBuf;

/// Result with diskbench's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop a diskbench run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command line asked for something that makes no sense (zero sizes, unknown workload, ...).
    #[error("{0}")]
    Usage(String),
    /// The target directory does not exist.
    #[error("{}: no such directory", .0.display())]
    MissingDir(PathBuf),
    /// The target path exists but is not a directory.
    #[error("{}: not a directory", .0.display())]
    NotADir(PathBuf),
    /// diskbench could not create its work directory inside the target.
    #[error("cannot write in {}: {}", .path.display(), describe_io(.source))]
    NotWritable { path: PathBuf, source: io::Error },
    /// The file system holds less free space than the selected workloads write.
    #[error(
        "{}: {} free, but the selected workloads need {} (lower --size, --bandwidth-size or --backend-file-size)",
        .path.display(), crate::units::fmt_bytes(*.available), crate::units::fmt_bytes(*.needed)
    )]
    NotEnoughSpace { path: PathBuf, needed: u64, available: u64 },
    /// The disk filled up while a workload was writing.
    #[error("no space left on device while writing {} (ENOSPC) during {phase}", .path.display())]
    NoSpace { path: PathBuf, phase: String },
    /// Any other I/O failure during a workload.
    #[error("{op} {} failed during {phase}: {}", .path.display(), describe_io(.source))]
    Io { op: &'static str, path: PathBuf, phase: String, source: io::Error },
    /// The run was interrupted by SIGINT or SIGTERM.
    #[error("interrupted; work directory removed")]
    Interrupted,
}

impl Error {
    /// Classifies an I/O failure of a workload: a full disk gets its own variant so the message says so plainly.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, phase: impl Into<String>, source: io::Error) -> Self {
        let (path, phase) = (path.into(), phase.into());
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Error::NoSpace { path, phase }
        } else {
            Error::Io { op, path, phase, source }
        }
    }
}

/// The OS's description of an I/O error without Rust's "(os error N)" suffix, lower-cased like the rest of our lines.
fn describe_io(e: &io::Error) -> String {
    let text = match e.raw_os_error() {
        // SAFETY: strerror returns a pointer to a static, NUL-terminated message for any errno value.
        Some(code) => unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) }.to_string_lossy().into_owned(),
        None => e.to_string(),
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_classified_as_no_space() {
        let e = Error::io("write", "/x/f", "wal", io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, Error::NoSpace { .. }), "{e:?}");
        assert_eq!(e.to_string(), "no space left on device while writing /x/f (ENOSPC) during wal");
    }

    #[test]
    fn other_errors_name_the_operation_and_cause() {
        let e = Error::io("fdatasync", "/x/f", "backend", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.to_string(), "fdatasync /x/f failed during backend: input/output error");
        assert!(!e.to_string().contains('\n'));
    }
}
