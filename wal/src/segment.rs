//! Segment files: naming, and the 64-byte header that opens each one.
//!
//! A WAL directory holds `<seq>.wal` files (seq as 16 lowercase hex digits, so names sort in log order), at most
//! one spare `<seq>.wal.tmp` being preallocated, a `LOCK` file, and `*.broken` copies left by repair.
//!
//! **On-disk format** of the header (integers little-endian):
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 8 | magic `FKVWAL\r\n` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | header length (64) |
//! | 16 | 8 | segment sequence number (equals the file name's) |
//! | 24 | 8 | first index: the index the next entry appended would have when the segment was started |
//! | 32 | 8 | salt: random, so that the chain seed differs for every segment ever written |
//! | 40 | 8 | segment size the file was preallocated to |
//! | 48 | 12 | reserved, zero |
//! | 60 | 4 | CRC32C of bytes 0..60: the seed of the segment's record chain |
//!
//! Records follow from offset 64. A segment that is not the last one ends with a seal record; the last one ends
//! where its written bytes end (the rest is preallocated zeroes).
//!
//! **Calling order**: a segment file is created as a spare (`.wal.tmp`, fallocated, fsynced), then its header and
//! first records are written and fdatasynced, then it is renamed to `.wal` and the directory is fsynced.

use std::path::{Path, PathBuf};

use crate::types::{RaftIndex, SegmentSeq};

/// Size of the segment header.
pub const HEADER_LEN: usize = 64;
const MAGIC: [u8; 8] = *b"FKVWAL\r\n";
const VERSION: u32 = 1;
const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const HEADER_LEN_OFFSET: usize = VERSION_OFFSET + 4;
const SEQ_OFFSET: usize = HEADER_LEN_OFFSET + 4;
const FIRST_INDEX_OFFSET: usize = SEQ_OFFSET + 8;
const SALT_OFFSET: usize = FIRST_INDEX_OFFSET + 8;
const SIZE_OFFSET: usize = SALT_OFFSET + 8;
const RESERVED_OFFSET: usize = SIZE_OFFSET + 8;
const CRC_OFFSET: usize = RESERVED_OFFSET + 12;
const _: () = assert!(CRC_OFFSET + 4 == HEADER_LEN);

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub seq: SegmentSeq,
    pub first_index: RaftIndex,
    pub salt: u64,
    pub segment_size: u64,
}

impl Header {
    /// The header's bytes, and the CRC that seeds the segment's record chain.
    pub fn encode(&self) -> ([u8; HEADER_LEN], u32) {
        let mut b = [0u8; HEADER_LEN];
        b[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC);
        b[VERSION_OFFSET..HEADER_LEN_OFFSET].copy_from_slice(&VERSION.to_le_bytes());
        b[HEADER_LEN_OFFSET..SEQ_OFFSET].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[SEQ_OFFSET..FIRST_INDEX_OFFSET].copy_from_slice(&self.seq.0.to_le_bytes());
        b[FIRST_INDEX_OFFSET..SALT_OFFSET].copy_from_slice(&self.first_index.0.to_le_bytes());
        b[SALT_OFFSET..SIZE_OFFSET].copy_from_slice(&self.salt.to_le_bytes());
        b[SIZE_OFFSET..RESERVED_OFFSET].copy_from_slice(&self.segment_size.to_le_bytes());
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
        (b, crc)
    }

    /// Decodes and verifies a header; `Err` says what is wrong with it.
    pub fn decode(b: &[u8]) -> Result<(Header, u32), &'static str> {
        if b.len() < HEADER_LEN {
            return Err("segment shorter than its header");
        }
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if b[MAGIC_OFFSET..VERSION_OFFSET] != MAGIC {
            return Err("segment header magic");
        }
        let crc = crc32c::crc32c(&b[..CRC_OFFSET]);
        if crc != u32_at(CRC_OFFSET) {
            return Err("segment header checksum");
        }
        if u32_at(VERSION_OFFSET) != VERSION {
            return Err("segment format version (this build reads version 1)");
        }
        if u32_at(HEADER_LEN_OFFSET) as usize != HEADER_LEN || b[RESERVED_OFFSET..CRC_OFFSET].iter().any(|&x| x != 0) {
            return Err("segment header layout");
        }
        let header = Header {
            seq: SegmentSeq(u64_at(SEQ_OFFSET)),
            first_index: RaftIndex(u64_at(FIRST_INDEX_OFFSET)),
            salt: u64_at(SALT_OFFSET),
            segment_size: u64_at(SIZE_OFFSET),
        };
        Ok((header, crc))
    }
}

/// `<dir>/<seq>.wal`.
pub fn path(dir: &Path, seq: SegmentSeq) -> PathBuf {
    dir.join(format!("{:016x}.wal", seq.0))
}

/// `<dir>/<seq>.wal.tmp`: a spare being preallocated.
pub fn spare_path(dir: &Path, seq: SegmentSeq) -> PathBuf {
    dir.join(format!("{:016x}.wal.tmp", seq.0))
}

/// The sequence number in a segment file name, or `None` for any other file.
pub fn parse_name(name: &str) -> Option<SegmentSeq> {
    let hex = name.strip_suffix(".wal")?;
    if hex.len() != 16 || !hex.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(SegmentSeq)
}

/// A fresh random salt (from the kernel's CSPRNG, falling back to time and pid).
pub fn new_salt() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: getrandom writes at most `buf.len()` bytes into `buf`, which is valid for writes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        return u64::from_le_bytes(buf);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (t as u64) ^ (u64::from(std::process::id()) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = Header { seq: SegmentSeq(3), first_index: RaftIndex(1001), salt: 0xdead_beef, segment_size: 64 << 20 };
        let (bytes, crc) = h.encode();
        assert_eq!(Header::decode(&bytes), Ok((h, crc)));
        for i in 0..HEADER_LEN {
            let mut b = bytes;
            b[i] ^= 0x80;
            assert!(Header::decode(&b).is_err(), "flip at {i}");
        }
        let other = Header { salt: 1, ..h }.encode().1;
        assert_ne!(crc, other, "the salt changes the chain seed");
    }

    #[test]
    fn names() {
        assert_eq!(path(Path::new("/w"), SegmentSeq(26)), PathBuf::from("/w/000000000000001a.wal"));
        assert_eq!(parse_name("000000000000001a.wal"), Some(SegmentSeq(26)));
        assert_eq!(parse_name("000000000000001a.wal.tmp"), None);
        assert_eq!(parse_name("000000000000001A.wal"), None);
        assert_eq!(parse_name("1a.wal"), None);
        assert_eq!(parse_name("LOCK"), None);
    }
}
