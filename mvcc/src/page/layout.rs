//! The page header every page starts with, and the ids pages are known by.
//!
//! **On-disk format** (little-endian; see docs/format-mvcc.md):
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 4 | CRC32C of bytes 4..end of the page (of the whole run, for an overflow run), seeded with the page id |
//! | 4 | 1 | page type: 1 meta, 2 branch, 3 leaf, 4 overflow |
//! | 5 | 1 | reserved, zero |
//! | 6 | 2 | entry count (branch, leaf) |
//! | 8 | 8 | id of the transaction that wrote the page |
//! | 16 | … | body |
//!
//! Seeding the CRC with the page id makes a page written to the wrong place fail its check.

use std::fmt;

/// A page's number: its byte offset is `id * page_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PageId(pub u64);

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A write transaction's number; each commit has a larger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxnId(pub u64);

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

pub const CRC_OFFSET: usize = 0;
pub const TYPE_OFFSET: usize = CRC_OFFSET + 4;
pub const RESERVED_OFFSET: usize = TYPE_OFFSET + 1;
pub const COUNT_OFFSET: usize = RESERVED_OFFSET + 1;
pub const TXN_OFFSET: usize = COUNT_OFFSET + 2;
/// Where a page's body starts.
pub const HEADER_LEN: usize = TXN_OFFSET + 8;
const _: () = assert!(HEADER_LEN == 16);

/// What a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    Meta = 1,
    Branch = 2,
    Leaf = 3,
    Overflow = 4,
}

impl PageType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => PageType::Meta,
            2 => PageType::Branch,
            3 => PageType::Leaf,
            4 => PageType::Overflow,
            _ => return None,
        })
    }
}

/// Reads a little-endian u16 at `at`.
pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Reads a little-endian u32 at `at`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a little-endian u64 at `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The checksum a page (or run) of bytes `b` must carry at offset 0.
pub fn checksum(id: PageId, b: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&id.0.to_le_bytes()), &b[TYPE_OFFSET..])
}

/// Fills in the header of `b` and its checksum (the body must already be in place).
pub fn seal(id: PageId, b: &mut [u8], ty: PageType, count: u16, txn: TxnId) {
    b[TYPE_OFFSET] = ty as u8;
    b[RESERVED_OFFSET] = 0;
    b[COUNT_OFFSET..TXN_OFFSET].copy_from_slice(&count.to_le_bytes());
    b[TXN_OFFSET..HEADER_LEN].copy_from_slice(&txn.0.to_le_bytes());
    let crc = checksum(id, b);
    b[CRC_OFFSET..TYPE_OFFSET].copy_from_slice(&crc.to_le_bytes());
}

/// Verifies a page's (or run's) checksum and type.
pub fn verify(id: PageId, b: &[u8]) -> Result<PageType, String> {
    if u32_at(b, CRC_OFFSET) != checksum(id, b) {
        return Err("checksum mismatch".into());
    }
    PageType::from_u8(b[TYPE_OFFSET]).ok_or_else(|| format!("unknown page type {}", b[TYPE_OFFSET]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_verify_and_detect_misplacement() {
        let mut page = vec![0u8; 4096];
        page[100] = 7;
        seal(PageId(9), &mut page, PageType::Leaf, 3, TxnId(4));
        assert_eq!(verify(PageId(9), &page), Ok(PageType::Leaf));
        assert!(verify(PageId(10), &page).is_err(), "the same bytes at another page id fail");
        page[4000] ^= 1;
        assert!(verify(PageId(9), &page).is_err());
    }
}
