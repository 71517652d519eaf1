//! Explicit repair, for when open reports damage: keep a copy, then cut the log at the first bad record.
//!
//! Repair loses whatever follows the damage. It is never done implicitly: the operator asks for it, after open
//! reported [`Error::Corrupted`] or [`Error::MissingSegment`] naming the segment and offset.
//!
//! Steps, each durable before the next: (1) copy the damaged segment to `<name>.broken`; (2) zero it from the bad
//! record's offset to its end (a header that is itself damaged moves the whole segment aside); (3) move every later
//! segment aside to `<name>.broken`; (4) fsync the directory. Then scan again, until the log verifies.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::reader;
use crate::types::SegmentSeq;

/// What [`repair`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// `(segment, offset)` where the log was cut, once per damage found; offset `u64::MAX` means after the end
    /// of that segment (the segments after a gap were moved aside).
    pub truncated_at: Vec<(PathBuf, u64)>,
    /// The `.broken` copies kept.
    pub kept: Vec<PathBuf>,
}

fn broken_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".broken");
    PathBuf::from(name)
}

/// Moves every segment after `seq` aside.
fn move_later_aside(dir: &Path, seq: SegmentSeq, report: &mut RepairReport) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(s) = entry.file_name().to_str().and_then(crate::segment::parse_name)
            && s > seq
        {
            let from = entry.path();
            let to = broken_path(&from);
            std::fs::rename(&from, &to).map_err(|e| Error::io("rename", &from, e))?;
            report.kept.push(to);
        }
    }
    Ok(())
}

/// Repairs the WAL in `dir` (which must not be open). Returns what was cut and kept; an intact log is left alone.
pub fn repair(dir: impl AsRef<Path>) -> Result<RepairReport> {
    let dir = dir.as_ref();
    let _lock = crate::fs::lock_dir(dir)?;
    let mut report = RepairReport::default();
    loop {
        match reader::scan(dir, |_| {}) {
            Ok(_) => return Ok(report),
            Err(Error::Corrupted { path, seq, offset, .. }) => {
                let copy = broken_path(&path);
                std::fs::copy(&path, &copy).map_err(|e| Error::io("copy", &path, e))?;
                let f = std::fs::File::open(&copy).map_err(|e| Error::io("open", &copy, e))?;
                crate::fs::sync_all(&f, &copy)?;
                report.kept.push(copy);
                if offset == 0 {
                    std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                } else {
                    let f =
                        std::fs::File::options().write(true).open(&path).map_err(|e| Error::io("open", &path, e))?;
                    let len = f.metadata().map_err(|e| Error::io("stat", &path, e))?.len();
                    crate::fs::zero_range(&f, &path, offset, len)?;
                }
                move_later_aside(dir, seq, &mut report)?;
                crate::fs::sync_dir(dir)?;
                report.truncated_at.push((path, offset));
                if reader::list_segments(dir)?.is_empty() {
                    return Err(Error::BadDir {
                        dir: dir.to_path_buf(),
                        why: "nothing before the damage was salvageable",
                    });
                }
            }
            Err(Error::MissingSegment { before, .. }) => {
                move_later_aside(dir, before, &mut report)?;
                crate::fs::sync_dir(dir)?;
                report.truncated_at.push((crate::segment::path(dir, before), u64::MAX));
            }
            Err(e) => return Err(e),
        }
    }
}
