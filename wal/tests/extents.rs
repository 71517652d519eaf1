//! Segments are written out, not merely allocated: no extent of a segment file is left *unwritten* (fallocate's
//! state), so an fdatasync of an append never has to commit the file system's conversion of its blocks as well.
//! Checked with the FIEMAP ioctl; on a file system without it (tmpfs) the test says so and checks nothing else.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use common::{append_range, small};
use wal::{EngineKind, Wal};

/// `_IOWR('f', 11, struct fiemap)`.
const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
const FIEMAP_FLAG_SYNC: u32 = 1;
const FIEMAP_EXTENT_LAST: u32 = 1;
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
const EXTENTS: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Extent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

#[repr(C)]
struct Fiemap {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [Extent; EXTENTS],
}

/// Bytes of `path` in unwritten extents, or `None` where the file system has no FIEMAP.
fn unwritten_bytes(path: &Path) -> Option<u64> {
    let f = File::open(path).unwrap();
    let mut total = 0;
    let mut start = 0u64;
    loop {
        let mut m = Fiemap {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: EXTENTS as u32,
            reserved: 0,
            extents: [Extent::default(); EXTENTS],
        };
        // SAFETY: FS_IOC_FIEMAP fills at most `extent_count` extents of the struct we own.
        if unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FIEMAP, &mut m) } != 0 {
            return None;
        }
        let got = &m.extents[..m.mapped_extents as usize];
        total += got.iter().filter(|e| e.flags & FIEMAP_EXTENT_UNWRITTEN != 0).map(|e| e.length).sum::<u64>();
        match got.last() {
            Some(e) if e.flags & FIEMAP_EXTENT_LAST == 0 => start = e.logical + e.length,
            _ => return Some(total),
        }
    }
}

#[test]
fn segments_hold_no_unwritten_extents() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small(EngineKind::Sync);
    config.segment_size = 1 << 20;
    let wal = Wal::create(dir.path(), config.clone()).unwrap();
    // 6,000 entries of up to 300 bytes fill a few 1 MiB segments; the last is the one being appended to.
    append_range(&wal, 1, 6_000);
    drop(wal);
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "the entries span segments: {segments:?}");
    for s in &segments {
        let Some(unwritten) = unwritten_bytes(s) else {
            println!("SKIPPED: the file system of {} has no FIEMAP", dir.path().display());
            return;
        };
        assert_eq!(unwritten, 0, "{} has {unwritten} bytes in unwritten extents", s.display());
    }
    // The log still replays whole.
    let wal = Wal::open(dir.path(), config).unwrap();
    assert_eq!(wal.replay(wal::RaftIndex(1)).unwrap().entries.len(), 5_999);
}
