//! Damage on disk, and the documented outcome of each (see `reader` and `repair`):
//! - last record cut short (file truncated inside it) → torn tail: open succeeds without it;
//! - tail zeroed (sectors never written) → torn tail: open succeeds, records before it intact;
//! - a flipped byte in the last or an earlier record (every sector written) → `Corrupted` naming segment and
//!   offset; `repair` keeps a `.broken` copy and cuts the log there;
//! - a missing middle segment → `MissingSegment`; `repair` moves the later segments aside;
//! - a damaged segment header → `Corrupted` at offset 0.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{append_range, payload, small};
use wal::record::{Frame, decode};
use wal::segment::{HEADER_LEN, Header};
use wal::{EngineKind, Error, RaftIndex, Wal};

/// Builds a WAL holding entries 1..n and returns its segment paths.
fn build(dir: &Path, n: u64) -> Vec<PathBuf> {
    let wal = Wal::create(dir, small(EngineKind::Sync)).unwrap();
    append_range(&wal, 1, n);
    drop(wal);
    wal::reader::list_segments(dir).unwrap().into_iter().map(|(_, p)| p).collect()
}

/// Offsets and lengths of every frame in a segment.
fn frames(path: &Path) -> Vec<(u64, usize)> {
    let data = std::fs::read(path).unwrap();
    let (_, mut chain) = Header::decode(&data).unwrap();
    let mut at = HEADER_LEN;
    let mut out = Vec::new();
    while let Frame::Valid { len, crc, .. } = decode(&data[at..], chain) {
        out.push((at as u64, len));
        chain = crc;
        at += len;
    }
    out
}

fn entries(dir: &Path) -> Vec<u64> {
    let wal = Wal::open(dir, small(EngineKind::Sync)).unwrap();
    let r = wal.replay(RaftIndex(0)).unwrap();
    for e in &r.entries {
        assert_eq!(e.data, payload(e.index.0), "entry {} intact", e.index);
    }
    r.entries.iter().map(|e| e.index.0).collect()
}

fn flip(path: &Path, offset: u64) {
    let f = std::fs::File::options().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], offset).unwrap();
}

#[test]
fn truncated_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path(), 40);
    let last = segs.last().unwrap();
    let (off, len) = *frames(last).last().unwrap();
    std::fs::File::options().write(true).open(last).unwrap().set_len(off + len as u64 / 2).unwrap();
    let wal = Wal::open(dir.path(), small(EngineKind::Sync)).unwrap();
    assert_eq!(wal.recovery().torn_tail, Some((last.clone(), off)));
    drop(wal);
    assert_eq!(entries(dir.path()), (1..39).collect::<Vec<_>>(), "only the cut record is gone");
}

#[test]
fn zeroed_tail_is_a_torn_tail_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path(), 60);
    let last = segs.last().unwrap();
    let fr = frames(last);
    // Zero from the sector after the start of the 5th-to-last record to the end of the written data.
    let (off, _) = fr[fr.len() - 5];
    let end = fr.last().map(|(o, l)| o + *l as u64).unwrap();
    let from = (off / 512 + 1) * 512;
    assert!(from < end, "the test needs written data past {from}");
    std::fs::File::options()
        .write(true)
        .open(last)
        .unwrap()
        .write_all_at(&vec![0u8; (end - from) as usize], from)
        .unwrap();
    let got = entries(dir.path());
    let survivors = fr.iter().filter(|(o, l)| o + *l as u64 <= from).count();
    assert!(got.len() < 59 && got.len() >= 59 - 5, "{} survived", got.len());
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "a prefix, in order");
    let dropped_in_last = fr.len() - survivors;
    assert_eq!(got.len(), 59 - dropped_in_last);
    // The WAL accepts appends after the erased tail, and they survive a reopen.
    let wal = Wal::open(dir.path(), small(EngineKind::Sync)).unwrap();
    let next = got.len() as u64 + 1;
    append_range(&wal, next, next + 10);
    drop(wal);
    assert_eq!(entries(dir.path()), (1..next + 10).collect::<Vec<_>>());
}

#[test]
fn flipped_byte_in_last_record_is_corruption_and_repair_cuts_there() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path(), 40);
    let last = segs.last().unwrap();
    let (off, len) = *frames(last).last().unwrap();
    flip(last, off + len as u64 - 9);
    match Wal::open(dir.path(), small(EngineKind::Sync)) {
        Err(Error::Corrupted { path, offset, .. }) => assert_eq!((path, offset), (last.clone(), off)),
        other => panic!("expected corruption, got {other:?}"),
    }
    let report = wal::repair(dir.path()).unwrap();
    assert_eq!(report.truncated_at, vec![(last.clone(), off)]);
    let broken = PathBuf::from(format!("{}.broken", last.display()));
    assert_eq!(report.kept, vec![broken.clone()]);
    assert!(broken.exists(), "a copy of the damaged segment is kept");
    assert_eq!(entries(dir.path()), (1..39).collect::<Vec<_>>());
    assert_eq!(wal::repair(dir.path()).unwrap(), wal::RepairReport::default(), "repair of a sound log does nothing");
}

#[test]
fn flipped_byte_in_an_earlier_record_names_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path(), 1200);
    assert!(segs.len() >= 3);
    let victim = &segs[1];
    let (off, _) = frames(victim)[10];
    flip(victim, off + 20);
    let e = Wal::open(dir.path(), small(EngineKind::Sync)).unwrap_err();
    match &e {
        Error::Corrupted { path, offset, .. } => assert_eq!((path, *offset), (victim, off)),
        other => panic!("expected corruption, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&victim.display().to_string()) && msg.contains(&format!("offset {off}")), "{msg}");
    assert!(e.is_corruption());
    // Nothing was changed by the failed open.
    assert!(matches!(Wal::open(dir.path(), small(EngineKind::Sync)), Err(Error::Corrupted { .. })));
    let report = wal::repair(dir.path()).unwrap();
    assert_eq!(report.truncated_at, vec![(victim.clone(), off)]);
    assert_eq!(report.kept.len(), 1 + (segs.len() - 2), "the damaged segment's copy and every later segment");
    let got = entries(dir.path());
    assert!(!got.is_empty() && got == (1..=got.len() as u64).collect::<Vec<_>>());
    let wal = Wal::open(dir.path(), small(EngineKind::Sync)).unwrap();
    let next = got.len() as u64 + 1;
    append_range(&wal, next, next + 3);
}

#[test]
fn missing_middle_segment() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path(), 1200);
    std::fs::remove_file(&segs[1]).unwrap();
    match Wal::open(dir.path(), small(EngineKind::Sync)) {
        Err(Error::MissingSegment { missing, .. }) => assert_eq!(missing.0, 2),
        other => panic!("expected a missing segment, got {other:?}"),
    }
    let report = wal::repair(dir.path()).unwrap();
    assert_eq!(report.kept.len(), segs.len() - 2);
    let got = entries(dir.path());
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "what the first segment held");
}

#[test]
fn damaged_header_is_corruption_at_offset_zero() {
    let dir = tempfile::tempdir().unwrap();
    let segs = build(dir.path(), 1200);
    flip(&segs[2], 20);
    match Wal::open(dir.path(), small(EngineKind::Sync)) {
        Err(Error::Corrupted { path, offset: 0, .. }) => assert_eq!(path, segs[2]),
        other => panic!("expected header corruption, got {other:?}"),
    }
}
