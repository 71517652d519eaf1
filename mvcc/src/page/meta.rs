//! The two meta pages (pages 0 and 1): which trees are current, as of which transaction.
//!
//! A commit writes the meta into slot `txn % 2`, so the previous commit's meta survives a torn meta write.
//! Open reads both and takes the newest that verifies.
//!
//! **On-disk format** (little-endian; after the 16-byte page header; see docs/format-mvcc.md):
//!
//! | offset | len | field |
//! |---|---|---|
//! | 16 | 8 | magic `FKVMVCC\x01` |
//! | 24 | 4 | format version (1) |
//! | 28 | 4 | page size |
//! | 32 | 8 | transaction id |
//! | 40 | 8 | page count: pages 0..count hold the file's structure |
//! | 48 | 8 | applied index (the Raft index of the last write in this commit) |
//! | 56 | 8 | applied term |
//! | 64 | 4 | number of keyspaces `n` (at most 16) |
//! | 68 | 4 | reserved, zero |
//! | 72 | 40·n | keyspaces: name (24 bytes, zero-padded UTF-8), root page id u64 (0: empty), entry count u64 |

use crate::page::layout::{self, HEADER_LEN, PageId, PageType, TxnId, u32_at, u64_at};

const MAGIC: [u8; 8] = *b"FKVMVCC\x01";
const VERSION: u32 = 1;
const MAGIC_OFFSET: usize = HEADER_LEN;
const VERSION_OFFSET: usize = MAGIC_OFFSET + 8;
const PAGE_SIZE_OFFSET: usize = VERSION_OFFSET + 4;
const TXN_OFFSET: usize = PAGE_SIZE_OFFSET + 4;
const PAGE_COUNT_OFFSET: usize = TXN_OFFSET + 8;
const APPLIED_INDEX_OFFSET: usize = PAGE_COUNT_OFFSET + 8;
const APPLIED_TERM_OFFSET: usize = APPLIED_INDEX_OFFSET + 8;
const KEYSPACE_COUNT_OFFSET: usize = APPLIED_TERM_OFFSET + 8;
const KEYSPACES_OFFSET: usize = KEYSPACE_COUNT_OFFSET + 8;
const KEYSPACE_NAME_LEN: usize = 24;
const KEYSPACE_LEN: usize = KEYSPACE_NAME_LEN + 16;
/// Most keyspaces one file holds.
pub const MAX_KEYSPACES: usize = 16;
const _: () = assert!(KEYSPACES_OFFSET == 72 && KEYSPACES_OFFSET + MAX_KEYSPACES * KEYSPACE_LEN <= 4096);

/// One keyspace: a named tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    pub name: String,
    /// Root page, or `PageId(0)` for an empty tree.
    pub root: PageId,
    /// Number of entries in the tree.
    pub count: u64,
}

/// A decoded meta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub page_size: u32,
    pub txn: TxnId,
    pub page_count: u64,
    pub applied_index: u64,
    pub applied_term: u64,
    pub keyspaces: Vec<Keyspace>,
}

impl Meta {
    /// The meta page's bytes, for slot page `id` (0 or 1).
    pub fn encode(&self, id: PageId) -> Vec<u8> {
        let mut b = vec![0u8; self.page_size as usize];
        b[MAGIC_OFFSET..VERSION_OFFSET].copy_from_slice(&MAGIC);
        b[VERSION_OFFSET..PAGE_SIZE_OFFSET].copy_from_slice(&VERSION.to_le_bytes());
        b[PAGE_SIZE_OFFSET..TXN_OFFSET].copy_from_slice(&self.page_size.to_le_bytes());
        b[TXN_OFFSET..PAGE_COUNT_OFFSET].copy_from_slice(&self.txn.0.to_le_bytes());
        b[PAGE_COUNT_OFFSET..APPLIED_INDEX_OFFSET].copy_from_slice(&self.page_count.to_le_bytes());
        b[APPLIED_INDEX_OFFSET..APPLIED_TERM_OFFSET].copy_from_slice(&self.applied_index.to_le_bytes());
        b[APPLIED_TERM_OFFSET..KEYSPACE_COUNT_OFFSET].copy_from_slice(&self.applied_term.to_le_bytes());
        b[KEYSPACE_COUNT_OFFSET..KEYSPACE_COUNT_OFFSET + 4]
            .copy_from_slice(&(self.keyspaces.len() as u32).to_le_bytes());
        for (i, ks) in self.keyspaces.iter().enumerate() {
            let at = KEYSPACES_OFFSET + i * KEYSPACE_LEN;
            b[at..at + ks.name.len()].copy_from_slice(ks.name.as_bytes());
            b[at + KEYSPACE_NAME_LEN..at + KEYSPACE_NAME_LEN + 8].copy_from_slice(&ks.root.0.to_le_bytes());
            b[at + KEYSPACE_NAME_LEN + 8..at + KEYSPACE_LEN].copy_from_slice(&ks.count.to_le_bytes());
        }
        layout::seal(id, &mut b, PageType::Meta, 0, self.txn);
        b
    }

    /// Decodes and verifies the meta page in slot `id`.
    pub fn decode(id: PageId, b: &[u8]) -> Result<Meta, String> {
        if b.len() < 4096 {
            return Err("file shorter than its meta pages".into());
        }
        let page_size = u32_at(b, PAGE_SIZE_OFFSET) as usize;
        if b[MAGIC_OFFSET..VERSION_OFFSET] != MAGIC {
            return Err("not a ferrokv store (bad magic)".into());
        }
        if !page_size.is_power_of_two() || !(4096..=65536).contains(&page_size) || b.len() < page_size {
            return Err(format!("impossible page size {page_size}"));
        }
        match layout::verify(id, &b[..page_size]) {
            Ok(PageType::Meta) => {}
            Ok(t) => return Err(format!("meta slot holds a {t:?} page")),
            Err(e) => return Err(e),
        }
        if u32_at(b, VERSION_OFFSET) != VERSION {
            return Err(format!("format version {} (this build reads 1)", u32_at(b, VERSION_OFFSET)));
        }
        let n = u32_at(b, KEYSPACE_COUNT_OFFSET) as usize;
        if n > MAX_KEYSPACES {
            return Err(format!("{n} keyspaces"));
        }
        let keyspaces = (0..n)
            .map(|i| {
                let at = KEYSPACES_OFFSET + i * KEYSPACE_LEN;
                let raw = &b[at..at + KEYSPACE_NAME_LEN];
                let end = raw.iter().position(|&c| c == 0).unwrap_or(KEYSPACE_NAME_LEN);
                Keyspace {
                    name: String::from_utf8_lossy(&raw[..end]).into_owned(),
                    root: PageId(u64_at(b, at + KEYSPACE_NAME_LEN)),
                    count: u64_at(b, at + KEYSPACE_NAME_LEN + 8),
                }
            })
            .collect();
        Ok(Meta {
            page_size: page_size as u32,
            txn: TxnId(u64_at(b, TXN_OFFSET)),
            page_count: u64_at(b, PAGE_COUNT_OFFSET),
            applied_index: u64_at(b, APPLIED_INDEX_OFFSET),
            applied_term: u64_at(b, APPLIED_TERM_OFFSET),
            keyspaces,
        })
    }

    /// The longest keyspace name.
    pub const MAX_NAME: usize = KEYSPACE_NAME_LEN;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips_and_rejects_damage() {
        let m = Meta {
            page_size: 4096,
            txn: TxnId(42),
            page_count: 1000,
            applied_index: 77,
            applied_term: 3,
            keyspaces: vec![
                Keyspace { name: "key".into(), root: PageId(12), count: 5 },
                Keyspace { name: "meta".into(), root: PageId(0), count: 0 },
            ],
        };
        let b = m.encode(PageId(0));
        assert_eq!(Meta::decode(PageId(0), &b), Ok(m.clone()));
        assert!(Meta::decode(PageId(1), &b).is_err(), "slot 0's page is not valid in slot 1");
        let mut torn = b.clone();
        torn[2000..].fill(0);
        torn[100] ^= 1;
        assert!(Meta::decode(PageId(0), &torn).is_err());
        assert!(Meta::decode(PageId(0), &vec![0u8; 4096]).unwrap_err().contains("magic"));
    }
}
