//! B+tree pages: the zero-copy view a reader takes of a mapped page, and the owned node a writer edits.
//!
//! **On-disk format** (little-endian, after the 16-byte page header whose count field holds `n`):
//!
//! Leaf: `n` directory entries of 8 bytes — key offset u16, key length u16, value word u32 — then the keys and
//! values they point at. The value word is the inline value's length, or `OVERFLOW | 16` for a value stored in an
//! overflow run, whose 16 bytes after the key are the run's first page id u64 and the value's length u64.
//!
//! Branch: `n` directory entries of 16 bytes — key offset u16, key length u16, reserved u32, child page id u64 —
//! then the keys. Entry `i`'s key is the smallest key under child `i`; a search takes the last entry whose key is
//! `<=` the key sought (or the first entry).
//!
//! Overflow run: the page header (type overflow), value length u64 at offset 16, the value from offset 24, over
//! as many pages as it needs; the first page's checksum covers the whole run.
//!
//! **Invariants** (checked by `btree::check`): keys strictly increase within a page and across the leaves left to
//! right; every leaf is at the same depth; every directory entry points inside its page.

use crate::page::layout::{HEADER_LEN, PageId, u16_at, u32_at, u64_at};

/// Marks a value word as an overflow reference.
pub const OVERFLOW: u32 = 1 << 31;
const LEAF_DIR: usize = 8;
const BRANCH_DIR: usize = 16;
/// Bytes of an overflow reference stored after the key.
pub const OVERFLOW_REF: usize = 16;
/// Where an overflow run's value starts.
pub const OVERFLOW_DATA: usize = HEADER_LEN + 8;

/// A value as a leaf holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRef<'a> {
    Inline(&'a [u8]),
    Overflow { page: PageId, len: u64 },
}

/// A value owned by a writer's dirty node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Inline(Vec<u8>),
    Overflow { page: PageId, len: u64 },
}

impl Val {
    fn stored_len(&self) -> usize {
        match self {
            Val::Inline(v) => v.len(),
            Val::Overflow { .. } => OVERFLOW_REF,
        }
    }
}

impl ValueRef<'_> {
    pub fn to_val(self) -> Val {
        match self {
            ValueRef::Inline(v) => Val::Inline(v.to_vec()),
            ValueRef::Overflow { page, len } => Val::Overflow { page, len },
        }
    }
}

/// Pages an overflow value of `len` bytes takes.
pub fn overflow_pages(len: u64, page_size: usize) -> u64 {
    (OVERFLOW_DATA as u64 + len).div_ceil(page_size as u64)
}

fn count(page: &[u8]) -> usize {
    u16_at(page, crate::page::layout::COUNT_OFFSET) as usize
}

/// A structural problem in a page whose checksum verified (so a writer bug, or damage that kept the checksum).
pub type Malformed = &'static str;

/// A read-only view of a leaf page.
#[derive(Debug, Clone, Copy)]
pub struct LeafView<'a> {
    page: &'a [u8],
    n: usize,
}

impl<'a> LeafView<'a> {
    /// A view of a verified page. Only the directory's extent is checked here: every entry is bounds-checked
    /// when it is read (a page whose checksum verified but whose entries do not fit reads as empty bytes, never
    /// out of bounds), so viewing a page costs O(1), not O(entries).
    pub fn new(page: &'a [u8]) -> Result<Self, Malformed> {
        if page.len() < HEADER_LEN {
            return Err("page shorter than its header");
        }
        let n = count(page);
        if HEADER_LEN + n * LEAF_DIR > page.len() {
            return Err("leaf directory overflows the page");
        }
        Ok(LeafView { page, n })
    }

    /// Checks every entry's bounds (for the invariant checker).
    pub fn validate(&self) -> Result<(), Malformed> {
        for i in 0..self.n {
            let (off, klen, word) = self.dir(i);
            let vlen = if word & OVERFLOW != 0 { OVERFLOW_REF } else { word as usize };
            if off + klen + vlen > self.page.len() {
                return Err("leaf entry points past the page");
            }
        }
        Ok(())
    }

    fn dir(&self, i: usize) -> (usize, usize, u32) {
        let at = HEADER_LEN + i * LEAF_DIR;
        (u16_at(self.page, at) as usize, u16_at(self.page, at + 2) as usize, u32_at(self.page, at + 4))
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn key(&self, i: usize) -> &'a [u8] {
        let (off, klen, _) = self.dir(i);
        self.page.get(off..off + klen).unwrap_or(&[])
    }

    pub fn value(&self, i: usize) -> ValueRef<'a> {
        let (off, klen, word) = self.dir(i);
        let at = off + klen;
        if word & OVERFLOW != 0 {
            match self.page.get(at..at + OVERFLOW_REF) {
                Some(r) => ValueRef::Overflow { page: PageId(u64_at(r, 0)), len: u64_at(r, 8) },
                None => ValueRef::Inline(&[]),
            }
        } else {
            ValueRef::Inline(self.page.get(at..at + word as usize).unwrap_or(&[]))
        }
    }

    /// `Ok(i)` if key `i` equals `key`, else `Err(i)` where it would go.
    pub fn search(&self, key: &[u8]) -> Result<usize, usize> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }
}

/// A read-only view of a branch page.
#[derive(Debug, Clone, Copy)]
pub struct BranchView<'a> {
    page: &'a [u8],
    n: usize,
}

impl<'a> BranchView<'a> {
    /// A view of a verified page (see [`LeafView::new`] on bounds).
    pub fn new(page: &'a [u8]) -> Result<Self, Malformed> {
        if page.len() < HEADER_LEN {
            return Err("page shorter than its header");
        }
        let n = count(page);
        if n == 0 || HEADER_LEN + n * BRANCH_DIR > page.len() {
            return Err("branch directory empty or overflowing the page");
        }
        Ok(BranchView { page, n })
    }

    /// Checks every key's bounds (for the invariant checker).
    pub fn validate(&self) -> Result<(), Malformed> {
        for i in 0..self.n {
            let at = HEADER_LEN + i * BRANCH_DIR;
            if u16_at(self.page, at) as usize + u16_at(self.page, at + 2) as usize > self.page.len() {
                return Err("branch key points past the page");
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn key(&self, i: usize) -> &'a [u8] {
        let at = HEADER_LEN + i * BRANCH_DIR;
        let (off, len) = (u16_at(self.page, at) as usize, u16_at(self.page, at + 2) as usize);
        self.page.get(off..off + len).unwrap_or(&[])
    }

    pub fn child(&self, i: usize) -> PageId {
        PageId(u64_at(self.page, HEADER_LEN + i * BRANCH_DIR + 8))
    }

    /// The child to descend into for `key`.
    pub fn find(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (1, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) <= key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo - 1
    }
}

/// Bytes a leaf with these entries needs.
pub fn leaf_size<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a Val)>) -> usize {
    HEADER_LEN + entries.into_iter().map(|(k, v)| LEAF_DIR + k.len() + v.stored_len()).sum::<usize>()
}

/// Size one leaf entry adds.
pub fn leaf_entry_size(key: &[u8], v: &Val) -> usize {
    LEAF_DIR + key.len() + v.stored_len()
}

/// Size one branch entry adds.
pub fn branch_entry_size(key: &[u8]) -> usize {
    BRANCH_DIR + key.len()
}

/// Serializes leaf entries into `page` (header left for the caller to seal); returns the entry count.
pub fn write_leaf<'a>(page: &mut [u8], entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Val)>) -> u16 {
    let n = entries.len();
    let mut data = HEADER_LEN + n * LEAF_DIR;
    for (i, (k, v)) in entries.enumerate() {
        let at = HEADER_LEN + i * LEAF_DIR;
        page[at..at + 2].copy_from_slice(&(data as u16).to_le_bytes());
        page[at + 2..at + 4].copy_from_slice(&(k.len() as u16).to_le_bytes());
        page[data..data + k.len()].copy_from_slice(k);
        data += k.len();
        match v {
            Val::Inline(b) => {
                page[at + 4..at + 8].copy_from_slice(&(b.len() as u32).to_le_bytes());
                page[data..data + b.len()].copy_from_slice(b);
                data += b.len();
            }
            Val::Overflow { page: p, len } => {
                page[at + 4..at + 8].copy_from_slice(&(OVERFLOW | OVERFLOW_REF as u32).to_le_bytes());
                page[data..data + 8].copy_from_slice(&p.0.to_le_bytes());
                page[data + 8..data + 16].copy_from_slice(&len.to_le_bytes());
                data += OVERFLOW_REF;
            }
        }
    }
    n as u16
}

/// Serializes branch entries into `page`; returns the entry count.
pub fn write_branch<'a>(page: &mut [u8], entries: impl ExactSizeIterator<Item = (&'a [u8], PageId)>) -> u16 {
    let n = entries.len();
    let mut data = HEADER_LEN + n * BRANCH_DIR;
    for (i, (k, child)) in entries.enumerate() {
        let at = HEADER_LEN + i * BRANCH_DIR;
        page[at..at + 2].copy_from_slice(&(data as u16).to_le_bytes());
        page[at + 2..at + 4].copy_from_slice(&(k.len() as u16).to_le_bytes());
        page[at + 4..at + 8].fill(0);
        page[at + 8..at + 16].copy_from_slice(&child.0.to_le_bytes());
        page[data..data + k.len()].copy_from_slice(k);
        data += k.len();
    }
    n as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `btree_page` fuzz target: a view of bytes shorter than a page header read past them.
    #[test]
    fn views_of_bytes_shorter_than_a_header_are_refused() {
        for len in 0..HEADER_LEN {
            let bytes = vec![0xff; len];
            assert!(LeafView::new(&bytes).is_err(), "leaf of {len} bytes");
            assert!(BranchView::new(&bytes).is_err(), "branch of {len} bytes");
        }
    }

    #[test]
    fn leaf_and_branch_round_trip() {
        let entries = [
            (b"a".to_vec(), Val::Inline(b"1".to_vec())),
            (b"bb".to_vec(), Val::Overflow { page: PageId(9), len: 70000 }),
            (b"ccc".to_vec(), Val::Inline(vec![])),
        ];
        let mut page = vec![0u8; 4096];
        let n = write_leaf(&mut page, entries.iter().map(|(k, v)| (k.as_slice(), v)));
        page[crate::page::layout::COUNT_OFFSET..crate::page::layout::COUNT_OFFSET + 2]
            .copy_from_slice(&n.to_le_bytes());
        let leaf = LeafView::new(&page).unwrap();
        assert_eq!(leaf.len(), 3);
        assert_eq!(leaf.key(1), b"bb");
        assert_eq!(leaf.value(1), ValueRef::Overflow { page: PageId(9), len: 70000 });
        assert_eq!(leaf.value(0), ValueRef::Inline(b"1"));
        assert_eq!(leaf.search(b"bb"), Ok(1));
        assert_eq!(leaf.search(b"b"), Err(1));
        assert_eq!(leaf.search(b"z"), Err(3));

        let children = [(b"".to_vec(), PageId(3)), (b"m".to_vec(), PageId(4)), (b"t".to_vec(), PageId(5))];
        let mut page = vec![0u8; 4096];
        let n = write_branch(&mut page, children.iter().map(|(k, c)| (k.as_slice(), *c)));
        page[crate::page::layout::COUNT_OFFSET..crate::page::layout::COUNT_OFFSET + 2]
            .copy_from_slice(&n.to_le_bytes());
        let b = BranchView::new(&page).unwrap();
        assert_eq!(b.find(b"a"), 0);
        assert_eq!(b.find(b"m"), 1);
        assert_eq!(b.find(b"s"), 1);
        assert_eq!(b.find(b"zz"), 2);
        assert_eq!(b.child(2), PageId(5));
    }

    #[test]
    fn malformed_directories_are_rejected() {
        let mut page = vec![0u8; 4096];
        page[crate::page::layout::COUNT_OFFSET..crate::page::layout::COUNT_OFFSET + 2]
            .copy_from_slice(&1u16.to_le_bytes());
        page[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&4090u16.to_le_bytes());
        page[HEADER_LEN + 2..HEADER_LEN + 4].copy_from_slice(&100u16.to_le_bytes());
        let leaf = LeafView::new(&page).unwrap();
        assert!(leaf.validate().is_err(), "the checker finds the entry past the page");
        assert_eq!(leaf.key(0), b"", "reading it never goes out of bounds");
    }
}
