//! The page file: reads through one read-only memory map, writes with `pwritev`, and the crate's only fdatasync.
//!
//! **Mapping.** The file is mapped once with a length far beyond its size ([`MAP_LEN`]); pages past the end of the
//! file are never touched, because a page is reachable only after the commit that wrote it. The file grows by
//! `set_len` underneath the mapping, so the mapping never moves and readers never wait for a remap (bbolt
//! blocks readers to remap when its file grows).
//!
//! **Resident pages.** Every page version a reader or the writer read stays mapped until
//! [`Pager::forget_resident`] unmaps them all; the server does that every few seconds (its RSS would otherwise
//! grow to the file's size, which etcd's, reading few of its pages, does not).
//!
//! **Checksums.** A page's checksum is verified the first time it is read, and the result is remembered in a
//! bitmap. Pages are immutable until freed (copy-on-write), and a rewritten page is marked verified by the write
//! that produced it. Corruption is reported as [`Error::Corrupted`] naming the page, never served.
//!
//! **Concurrency**: reads take `&self` from any thread; writes, `sync`, `grow` and `truncate` are called by the
//! single writer only.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{Mmap, MmapOptions, UncheckedAdvice};

use crate::error::{Error, Result};
use crate::page::layout::{self, PageId, PageType};

/// Length of the mapping: 1 TiB of address space, never of memory.
pub const MAP_LEN: usize = 1 << 40;
const CHUNK_PAGES: u64 = 1 << 16;
const CHUNKS: usize = 1 << 14;

/// The page file.
pub struct Pager {
    file: File,
    path: PathBuf,
    map: Mmap,
    page_size: usize,
    /// Bytes the file is known to span.
    file_len: AtomicU64,
    verified: Box<[OnceLock<Box<[AtomicU64]>>]>,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager").field("path", &self.path).field("page_size", &self.page_size).finish()
    }
}

impl Pager {
    /// Maps `file` (opened read-write) with pages of `page_size` bytes.
    pub fn new(file: File, path: &Path, page_size: usize) -> Result<Self> {
        let len = file.metadata().map_err(|e| Error::io("stat", path, e))?.len();
        // SAFETY: the mapping is read-only and only pages inside the file that no writer modifies while they are
        // reachable are read through it (copy-on-write invariant of the B+tree); bytes past the end of the file
        // are never touched.
        let map = unsafe { MmapOptions::new().len(MAP_LEN).map(&file) }.map_err(|e| Error::io("mmap", path, e))?;
        let verified = (0..CHUNKS).map(|_| OnceLock::new()).collect();
        Ok(Pager { file, path: path.to_path_buf(), map, page_size, file_len: AtomicU64::new(len), verified })
    }

    pub fn page_size(&self) -> usize {
        self.page_size
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the file spans.
    pub fn file_len(&self) -> u64 {
        self.file_len.load(Ordering::Acquire)
    }

    fn bit(&self, id: PageId) -> Option<(&AtomicU64, u64)> {
        let chunk = (id.0 / CHUNK_PAGES) as usize;
        let slot = self.verified.get(chunk)?;
        let words = slot.get_or_init(|| (0..CHUNK_PAGES / 64).map(|_| AtomicU64::new(0)).collect());
        let i = id.0 % CHUNK_PAGES;
        Some((&words[(i / 64) as usize], 1u64 << (i % 64)))
    }

    fn is_verified(&self, id: PageId) -> bool {
        self.bit(id).is_some_and(|(w, m)| w.load(Ordering::Acquire) & m != 0)
    }

    fn set_verified(&self, id: PageId, yes: bool) {
        if let Some((w, m)) = self.bit(id) {
            if yes {
                w.fetch_or(m, Ordering::Release);
            } else {
                w.fetch_and(!m, Ordering::Release);
            }
        }
    }

    fn corrupted(&self, id: PageId, what: impl Into<String>) -> Error {
        Error::Corrupted { page: id, what: what.into(), path: self.path.clone() }
    }

    /// The bytes of `n` pages starting at `id`, verified as one run (checksum of the first page covers the run).
    pub fn run(&self, id: PageId, n: u64) -> Result<&[u8]> {
        let start = id.0 as usize * self.page_size;
        let end = start + n as usize * self.page_size;
        if id.0 < 2 || end as u64 > self.file_len() {
            return Err(self.corrupted(id, format!("reference past the end of the file ({n} pages)")));
        }
        let bytes = &self.map[start..end];
        if !self.is_verified(id) {
            layout::verify(id, bytes).map_err(|e| self.corrupted(id, e))?;
            self.set_verified(id, true);
        }
        Ok(bytes)
    }

    /// A page's bytes without verification (for copying pages already verified, e.g. into a snapshot).
    pub fn raw_page(&self, id: PageId) -> &[u8] {
        let start = id.0 as usize * self.page_size;
        &self.map[start..start + self.page_size]
    }

    /// One verified page.
    pub fn page(&self, id: PageId) -> Result<&[u8]> {
        self.run(id, 1)
    }

    /// The page's type, after verification.
    pub fn page_type(&self, id: PageId) -> Result<PageType> {
        let b = self.page(id)?;
        PageType::from_u8(b[layout::TYPE_OFFSET]).ok_or_else(|| self.corrupted(id, "unknown page type"))
    }

    /// Reads raw bytes of a meta slot (not verified here: the meta decoder checks it).
    pub fn meta_bytes(&self, slot: u64) -> Option<&[u8]> {
        let start = slot as usize * self.page_size;
        let end = start + self.page_size;
        (end as u64 <= self.file_len()).then(|| &self.map[start..end])
    }

    /// Makes the file at least `pages` long, growing by at least 1/16 of its size (and 1 MiB) at a time, so a
    /// growing file does not extend it once per commit, nor leave more than about 6% unused after a shrink.
    pub fn grow(&self, pages: u64) -> Result<()> {
        let want = pages * self.page_size as u64;
        let have = self.file_len();
        if want <= have {
            return Ok(());
        }
        let step = (have / 16).max(1 << 20);
        let target = want.max(have + step).div_ceil(self.page_size as u64) * self.page_size as u64;
        self.file.set_len(target).map_err(|e| Error::io("grow", &self.path, e))?;
        self.file_len.store(target, Ordering::Release);
        Ok(())
    }

    /// Shrinks the file to `pages` pages (defragmentation gives the tail back).
    pub fn truncate(&self, pages: u64) -> Result<()> {
        let target = pages * self.page_size as u64;
        if target >= self.file_len() {
            return Ok(());
        }
        self.file_len.store(target, Ordering::Release);
        self.file.set_len(target).map_err(|e| Error::io("truncate", &self.path, e))
    }

    /// Writes pages (each `(first page id, bytes of a whole number of pages)`), coalescing adjacent ones into one
    /// `pwritev`. The written pages are marked verified.
    pub fn write(&self, mut pages: Vec<(PageId, &[u8])>) -> Result<()> {
        pages.sort_by_key(|p| p.0);
        let mut i = 0;
        while i < pages.len() {
            let mut j = i + 1;
            let mut next = pages[i].0.0 + (pages[i].1.len() / self.page_size) as u64;
            while j < pages.len() && pages[j].0.0 == next && j - i < 512 {
                next += (pages[j].1.len() / self.page_size) as u64;
                j += 1;
            }
            self.pwritev(pages[i].0, &pages[i..j])?;
            for (id, b) in &pages[i..j] {
                self.set_verified(*id, true);
                for k in 1..(b.len() / self.page_size) as u64 {
                    self.set_verified(PageId(id.0 + k), false);
                }
            }
            i = j;
        }
        Ok(())
    }

    fn pwritev(&self, first: PageId, run: &[(PageId, &[u8])]) -> Result<()> {
        let mut offset = first.0 * self.page_size as u64;
        let mut parts: Vec<&[u8]> = run.iter().map(|p| p.1).collect();
        while !parts.is_empty() {
            let iov: Vec<libc::iovec> = parts
                .iter()
                .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
                .collect();
            // SAFETY: each iovec points into a page buffer borrowed for the duration of the call; the kernel only
            // reads from them.
            let n = unsafe { libc::pwritev(self.file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, offset as i64) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(Error::io("write", &self.path, e));
            }
            let mut n = n as usize;
            offset += n as u64;
            while n > 0 {
                if n >= parts[0].len() {
                    n -= parts[0].len();
                    parts.remove(0);
                } else {
                    parts[0] = &parts[0][n..];
                    n = 0;
                }
            }
        }
        Ok(())
    }

    /// Drops the map's pages from this process's resident set. The page cache keeps them; the next read of one
    /// maps it again (a minor fault). Pages a reader reached once stay mapped otherwise, so without this the
    /// resident set grows to every page version ever read, live or freed: the whole file.
    pub fn forget_resident(&self) -> Result<()> {
        let len = (self.file_len() as usize).min(MAP_LEN);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the mapping is shared, read-only and of a file: MADV_DONTNEED only unmaps its pages, and the next
        // access maps the file's same bytes again (it zero-fills private mappings, never shared ones), so a slice
        // borrowed from the map reads what it read before; the range lies inside the mapping.
        unsafe { self.map.unchecked_advise_range(UncheckedAdvice::DontNeed, 0, len) }
            .map_err(|e| Error::io("madvise", &self.path, e))
    }

    /// Writes a meta page into its slot.
    pub fn write_meta(&self, slot: u64, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.write_all_at(bytes, slot * self.page_size as u64).map_err(|e| Error::io("write meta", &self.path, e))
    }

    /// fdatasync: the crate's only flush.
    ///
    /// # Durability
    /// On `Ok`, every completed write to the file is on stable storage.
    pub fn sync(&self) -> Result<()> {
        if crate::failpoints::SKIP_FDATASYNC.eval().is_some() {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| Error::io("fdatasync", &self.path, e))
    }
}
