//! Reading the log back: every segment in order, every frame verified, torn tails told apart from damage.
//!
//! **The torn-write rule.** The WAL only ever appends into zeroed space (fresh fallocated segments, and a torn tail
//! is zeroed before anything is appended after it), and a disk writes a 512-byte sector entirely or not at all. So
//! after a crash, every sector past the last completed fdatasync holds either exactly what was written or zeroes.
//! Hence, in the **last** segment:
//! - eight zero bytes where a frame should start mark the end of the log;
//! - a frame whose checksum fails and which covers an all-zero sector, or which the end of the file cuts short, is
//!   a torn write: the log ends before it;
//! - a frame whose checksum fails with every sector written, or whose header is impossible, was damaged after it
//!   was written: that is [`Error::Corrupted`], never skipped.
//!
//! In any other segment the log must run, frame by frame, to the seal record that closed it; anything else is
//! corruption. Segment sequence numbers must be contiguous ([`Error::MissingSegment`]), and each header's first
//! index must continue the log.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::{self, Decoded, Frame};
use crate::segment::{self, HEADER_LEN, Header};
use crate::state::{LogState, Violation};
use crate::types::{Entry, HardState, RaftIndex, SegmentSeq, SnapshotMarker};

/// Bytes a disk writes atomically (the torn-write unit).
pub const SECTOR: usize = 512;

/// What scanning one segment found.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub seq: SegmentSeq,
    pub path: PathBuf,
    pub header: Header,
    /// Offset just past the last valid frame.
    pub end: u64,
    /// Chain value after the last valid frame.
    pub chain: u32,
    /// The segment ends with a seal.
    pub sealed: bool,
    /// Offset of a torn frame at the end (last segment only).
    pub torn_at: Option<u64>,
    /// Whether any byte after `end` is non-zero (a torn tail to erase before appending).
    pub dirty_tail: bool,
    /// The file's length.
    pub file_len: u64,
}

/// The segments of a WAL directory, in order, and the state their records amount to.
#[derive(Debug, Clone)]
pub struct Scan {
    pub segments: Vec<SegmentInfo>,
    pub state: LogState,
}

/// The segment files in `dir`, sorted by sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(SegmentSeq, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(seq) = entry.file_name().to_str().and_then(segment::parse_name) {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    for pair in found.windows(2) {
        if pair[1].0.0 != pair[0].0.0 + 1 {
            return Err(Error::MissingSegment {
                dir: dir.to_path_buf(),
                missing: SegmentSeq(pair[0].0.0 + 1),
                before: pair[0].0,
                after: pair[1].0,
            });
        }
    }
    Ok(found)
}

fn corrupted(what: impl Into<String>, path: &Path, seq: SegmentSeq, offset: u64) -> Error {
    Error::Corrupted { what: what.into(), path: path.to_path_buf(), seq, offset }
}

/// Whether any whole or partial 512-byte sector overlapping `data[from..to]` is entirely zero.
fn has_zero_sector(data: &[u8], from: usize, to: usize) -> bool {
    let to = to.min(data.len());
    let mut sector = from / SECTOR * SECTOR;
    while sector < to {
        let end = (sector + SECTOR).min(data.len());
        if data[sector..end].iter().all(|&b| b == 0) {
            return true;
        }
        sector += SECTOR;
    }
    false
}

/// Scans every segment, calling `visit` with each valid record in log order.
pub fn scan(dir: &Path, mut visit: impl FnMut(&Decoded)) -> Result<Scan> {
    let files = list_segments(dir)?;
    let mut state = LogState::default();
    let mut segments = Vec::with_capacity(files.len());
    let count = files.len();
    for (i, (seq, path)) in files.into_iter().enumerate() {
        let last = i + 1 == count;
        let data = crate::fs::map(&path)?;
        let (header, seed) = Header::decode(&data).map_err(|what| corrupted(what, &path, seq, 0))?;
        if header.seq != seq {
            return Err(corrupted("segment header names another sequence number", &path, seq, 0));
        }
        match state.next {
            Some(next) if header.first_index != next => {
                let what = format!("segment first index {} (the log continues at {next})", header.first_index);
                return Err(corrupted(what, &path, seq, 0));
            }
            // The oldest remaining segment (older ones released): the log resumes at its first index, whatever
            // the state records restated at its start say.
            None if header.first_index.0 > 0 => state.next = Some(header.first_index),
            _ => {}
        }
        let info = scan_segment(&data, seq, &path, header, seed, last, &mut state, &mut visit)?;
        segments.push(info);
    }
    Ok(Scan { segments, state })
}

#[allow(clippy::too_many_arguments)]
fn scan_segment(
    data: &crate::fs::Mapped,
    seq: SegmentSeq,
    path: &Path,
    header: Header,
    seed: u32,
    last: bool,
    state: &mut LogState,
    visit: &mut impl FnMut(&Decoded),
) -> Result<SegmentInfo> {
    let mut at = HEADER_LEN;
    let mut chain = seed;
    let mut sealed = false;
    let mut torn_at = None;
    while at < data.len() {
        match record::decode(&data[at..], chain) {
            Frame::Valid { record, len, crc } => {
                state.apply(&record).map_err(|v| {
                    let what = match v {
                        Violation::NonContiguous { expected, got } => format!("entry {got} where {expected} was due"),
                        Violation::BadTruncate { from } => format!("truncation from {from} outside the log"),
                    };
                    corrupted(what, path, seq, at as u64)
                })?;
                visit(&record);
                chain = crc;
                at += len;
                if record == Decoded::Seal {
                    sealed = true;
                    break;
                }
            }
            Frame::End => break,
            Frame::BadHeader(what) => return Err(corrupted(what, path, seq, at as u64)),
            Frame::Truncated { .. } if last => {
                torn_at = Some(at as u64); // the file ends inside the frame: its end was never persisted
                break;
            }
            Frame::Truncated { len } | Frame::BadChecksum { len } => {
                if last && has_zero_sector(data, at, at + len) {
                    torn_at = Some(at as u64);
                    break;
                }
                return Err(corrupted("record checksum", path, seq, at as u64));
            }
        }
    }
    if !last && !sealed {
        return Err(corrupted("segment ends without a seal, but a later segment exists", path, seq, at as u64));
    }
    // Past the log's end a sealed segment holds nothing that matters; an open one may hold a torn tail. Checked
    // without the map (`Mapped::nonzero_from`), so its zero tail is not read into the process's RSS.
    let dirty_tail = !sealed && data.nonzero_from(at as u64, path)?;
    Ok(SegmentInfo {
        seq,
        path: path.to_path_buf(),
        header,
        end: at as u64,
        chain,
        sealed,
        torn_at,
        dirty_tail,
        file_len: data.len() as u64,
    })
}

/// Everything replay hands back: the live entries from the requested index on, and the latest state records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// Live entries with index `>= from`, contiguous, in order.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<SnapshotMarker>,
    pub metadata: Option<Vec<u8>>,
}

/// Reads the log and returns the live entries from `from` on (truncations and snapshot markers applied).
pub fn replay(dir: &Path, from: RaftIndex) -> Result<Replay> {
    let mut entries: Vec<Entry> = Vec::new();
    let scan = scan(dir, |record| match record {
        Decoded::Entry(e) if e.index >= from => entries.push(e.clone()),
        Decoded::Truncate(f) => {
            let keep = entries.partition_point(|e| e.index < *f);
            entries.truncate(keep);
        }
        Decoded::Snapshot(s) if entries.last().is_none_or(|e| e.index <= s.index) => entries.clear(),
        _ => {}
    })?;
    Ok(Replay {
        entries,
        hard_state: scan.state.hard_state,
        snapshot: scan.state.snapshot,
        metadata: scan.state.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sector_detection() {
        let mut d = vec![1u8; 4 * SECTOR];
        assert!(!has_zero_sector(&d, 0, d.len()));
        d[2 * SECTOR..3 * SECTOR].fill(0);
        assert!(has_zero_sector(&d, 10, 2 * SECTOR + 1));
        assert!(!has_zero_sector(&d, 10, 2 * SECTOR), "the range stops before the zero sector");
        assert!(has_zero_sector(&d, 3 * SECTOR - 1, 4 * SECTOR + 100), "clipped to the data");
    }
}
