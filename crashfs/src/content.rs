//! A file's bytes, stored sparsely: only pages holding a non-zero byte are kept, so a 64 MiB WAL segment written
//! with zeroes costs nothing, and copying a file's durable contents costs its data, not its length.
//!
//! **Invariant**: no page is kept at or beyond `len`'s page, and bytes past `len` inside the last page are zero
//! (so growing a file again reads zeroes, as on a real file system).

use std::collections::BTreeMap;

/// The page size of the store (not of the kernel's cache; any power of two would do).
pub const PAGE: u64 = 4096;

/// The bytes of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Content {
    len: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl Content {
    /// The file's length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `data` at `off`, growing the file if it ends past the end.
    pub fn write(&mut self, off: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = off + done as u64;
            let (page, in_page) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - in_page).min(data.len() - done);
            let chunk = &data[done..done + n];
            if chunk.iter().any(|&b| b != 0) {
                let p = self.pages.entry(page).or_insert_with(|| vec![0u8; PAGE as usize].into_boxed_slice());
                p[in_page..in_page + n].copy_from_slice(chunk);
            } else if let Some(p) = self.pages.get_mut(&page) {
                p[in_page..in_page + n].fill(0);
                if p.iter().all(|&b| b == 0) {
                    self.pages.remove(&page);
                }
            }
            done += n;
        }
        self.len = self.len.max(off + data.len() as u64);
    }

    /// Writes `len` zero bytes at `off`, growing the file if they end past the end.
    pub fn zero(&mut self, off: u64, len: u64) {
        let end = off + len;
        let mut at = off;
        while at < end {
            let (page, in_page) = (at / PAGE, at % PAGE);
            let n = (PAGE - in_page).min(end - at);
            if in_page == 0 && n == PAGE {
                self.pages.remove(&page);
            } else if let Some(p) = self.pages.get_mut(&page) {
                p[in_page as usize..(in_page + n) as usize].fill(0);
            }
            at += n;
        }
        self.len = self.len.max(end);
    }

    /// Sets the length: cut (the cut bytes read as zero if the file grows again) or grown with zeroes.
    pub fn set_len(&mut self, len: u64) {
        if len < self.len {
            let first_gone = len.div_ceil(PAGE);
            self.pages.split_off(&first_gone);
            if len % PAGE != 0 {
                if let Some(p) = self.pages.get_mut(&(len / PAGE)) {
                    p[(len % PAGE) as usize..].fill(0);
                }
            }
        }
        self.len = len;
    }

    /// Reads up to `size` bytes at `off` (fewer at the end of the file).
    pub fn read(&self, off: u64, size: usize) -> Vec<u8> {
        let end = self.len.min(off.saturating_add(size as u64));
        if off >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - off) as usize];
        for (&page, bytes) in self.pages.range(off / PAGE..=(end - 1) / PAGE) {
            let start = page * PAGE;
            let from = off.max(start);
            let to = end.min(start + PAGE);
            out[(from - off) as usize..(to - off) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
        }
        out
    }

    /// The runs of pages holding data, as (offset, bytes), merged where pages touch; used to write a sparse copy.
    pub fn extents(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        for (&page, bytes) in &self.pages {
            let start = page * PAGE;
            let keep = (self.len - start).min(PAGE) as usize;
            match out.last_mut() {
                Some((off, data)) if *off + data.len() as u64 == start => data.extend_from_slice(&bytes[..keep]),
                _ => out.push((start, bytes[..keep].to_vec())),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_reads_and_cuts_like_a_file() {
        let mut c = Content::default();
        c.write(4090, b"hello world");
        assert_eq!(c.len(), 4101);
        assert_eq!(c.read(4088, 20), b"\0\0hello world");
        c.zero(4092, 2);
        assert_eq!(c.read(4090, 11), b"he\0\0o world");
        c.set_len(4093);
        c.set_len(5000);
        assert_eq!(c.read(4090, 11), b"he\0\0\0\0\0\0\0\0\0");
        c.zero(0, 8192);
        assert!(c.pages.is_empty(), "zeroed pages are dropped");
        assert_eq!(c.len(), 8192);
        c.write(10, b"x");
        assert_eq!(
            c.extents(),
            vec![(0, {
                let mut v = vec![0u8; 4096];
                v[10] = b'x';
                v
            })]
        );
    }
}
