//! Reading a bbolt file that may be truncated, damaged or hostile: every page id is checked against the
//! high-water mark and the file's length before it is read, every element against its page's bytes; a page is
//! never visited twice on one walk (no cycle can loop), the depth is bounded, and memory holds at most one page
//! span per tree level. Any violation is [`Error::Invalid`] naming the page, never a panic.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::page::{self, BRANCH, BUCKET_HEADER, BUCKET_LEAF, HEADER, Header, LEAF, Meta};
use crate::{Error, Result};

/// What receives a tree's leaf elements: flags, key, value.
type LeafVisit<'a> = dyn FnMut(u32, &[u8], &[u8]) -> Result<()> + 'a;

/// The deepest tree a walk follows (bbolt's trees of billions of keys are far shallower).
const MAX_DEPTH: usize = 64;

/// An open bbolt file.
#[derive(Debug)]
pub struct Reader {
    file: File,
    len: u64,
    meta: Meta,
}

fn invalid(page: u64, what: impl Into<String>) -> Error {
    Error::Invalid { page, what: what.into() }
}

/// Where a tree's root is: a page of the file, or a page inline in a bucket's value.
enum Root {
    Page(u64),
    Inline(Vec<u8>),
}

impl Reader {
    /// Opens `path` and picks the current meta (the valid one with the higher transaction id).
    pub fn open(path: impl AsRef<Path>) -> Result<Reader> {
        let io = |what| move |source| Error::Io { what, source };
        let file = File::open(path.as_ref()).map_err(io("open"))?;
        let len = file.metadata().map_err(io("stat"))?.len();
        let mut first = vec![0u8; HEADER + 64];
        file.read_exact_at(&mut first, 0).map_err(|_| Error::NoMeta("the file is shorter than a meta page".into()))?;
        // The first meta tells the page size; the second sits one page further.
        let m0 = Meta::decode(&first);
        let page_size = match &m0 {
            Ok(m) => m.page_size as u64,
            Err(_) => crate::DEFAULT_PAGE_SIZE as u64,
        };
        let mut second = vec![0u8; HEADER + 64];
        let m1 =
            file.read_exact_at(&mut second, page_size).map_err(|e| e.to_string()).and_then(|()| Meta::decode(&second));
        let valid = |m: &Meta| {
            m.page_size.is_power_of_two()
                && (1024..=65536).contains(&m.page_size)
                && m.pgid.checked_mul(u64::from(m.page_size)).is_some()
        };
        let meta = match (m0, m1) {
            (Ok(a), Ok(b)) if valid(&a) && valid(&b) => {
                if a.txid >= b.txid {
                    a
                } else {
                    b
                }
            }
            (Ok(a), _) if valid(&a) => a,
            (_, Ok(b)) if valid(&b) => b,
            (a, b) => return Err(Error::NoMeta(format!("meta 0: {:?}; meta 1: {:?}", a.err(), b.err()))),
        };
        Ok(Reader { file, len, meta })
    }

    pub fn page_size(&self) -> usize {
        self.meta.page_size as usize
    }

    /// The database's size as bbolt reports it (`tx.Size()`): the high-water mark times the page size.
    pub fn size(&self) -> u64 {
        self.meta.pgid.saturating_mul(u64::from(self.meta.page_size))
    }

    /// The current meta's transaction id.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// The bytes of page `id`, overflow pages included, checked against the file and the high-water mark.
    fn page(&self, id: u64) -> Result<Vec<u8>> {
        let ps = self.page_size() as u64;
        if id >= self.meta.pgid {
            return Err(invalid(id, format!("beyond the high-water mark {}", self.meta.pgid)));
        }
        let mut head = [0u8; HEADER];
        self.file.read_exact_at(&mut head, id * ps).map_err(|_| invalid(id, "past the end of the file"))?;
        let h = Header::decode(&head);
        if h.id != id {
            return Err(invalid(id, format!("the page says it is page {}", h.id)));
        }
        let pages = u64::from(h.overflow) + 1;
        if id + pages > self.meta.pgid || (id + pages) * ps > self.len {
            return Err(invalid(id, format!("{pages} pages run past the file")));
        }
        let mut b = vec![0u8; (pages * ps) as usize];
        self.file.read_exact_at(&mut b, id * ps).map_err(|e| invalid(id, e.to_string()))?;
        Ok(b)
    }

    /// The names of the top-level buckets, in order.
    pub fn buckets(&self) -> Result<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        self.walk(Root::Page(self.meta.root), &mut |flags, k, _| {
            if flags & BUCKET_LEAF != 0 {
                names.push(k.to_vec());
            }
            Ok(())
        })?;
        Ok(names)
    }

    /// Calls `f` with every (key, value) of the top-level bucket `name`, in key order (nested buckets skipped).
    pub fn for_each(&self, name: &[u8], f: &mut crate::Visit<'_>) -> Result<()> {
        let mut found = None;
        self.walk(Root::Page(self.meta.root), &mut |flags, k, v| {
            if flags & BUCKET_LEAF != 0 && k == name {
                found = Some(v.to_vec());
            }
            Ok(())
        })?;
        let value = found.ok_or_else(|| Error::NoBucket(String::from_utf8_lossy(name).into_owned()))?;
        if value.len() < BUCKET_HEADER {
            return Err(invalid(self.meta.root, "a bucket value shorter than its header"));
        }
        let root = page::u64_at(&value, 0);
        let root = if root == 0 { Root::Inline(value[BUCKET_HEADER..].to_vec()) } else { Root::Page(root) };
        self.walk(root, &mut |flags, k, v| if flags & BUCKET_LEAF != 0 { Ok(()) } else { f(k, v) })
    }

    /// Visits a tree's leaf elements in order (flags, key, value), depth first.
    fn walk(&self, root: Root, f: &mut LeafVisit<'_>) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        match root {
            Root::Page(id) => self.visit(id, 0, &mut seen, f),
            Root::Inline(bytes) => {
                if bytes.len() < HEADER {
                    return Err(invalid(0, "an inline bucket page shorter than a header"));
                }
                let h = Header::decode(&bytes);
                if h.flags & LEAF == 0 {
                    return Err(invalid(0, "an inline bucket page that is not a leaf"));
                }
                for i in 0..h.count as usize {
                    let e = page::element(&bytes, LEAF, i, 0)?;
                    f(e.flags, e.key, e.value)?;
                }
                Ok(())
            }
        }
    }

    fn visit(
        &self,
        id: u64,
        depth: usize,
        seen: &mut std::collections::HashSet<u64>,
        f: &mut LeafVisit<'_>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(invalid(id, "the tree is deeper than any bbolt file's"));
        }
        if !seen.insert(id) {
            return Err(invalid(id, "a page reached twice (a cycle, or a page shared by two parents)"));
        }
        let b = self.page(id)?;
        let h = Header::decode(&b);
        if (h.count as usize) * page::ELEMENT + HEADER > b.len() {
            return Err(invalid(id, format!("{} elements do not fit the page", h.count)));
        }
        if h.count == 0 {
            return Ok(());
        }
        let kind = if h.flags & LEAF != 0 {
            LEAF
        } else if h.flags & BRANCH != 0 {
            BRANCH
        } else {
            return Err(invalid(id, format!("flags {:#x}: neither leaf nor branch", h.flags)));
        };
        let mut last: Option<Vec<u8>> = None;
        for i in 0..h.count as usize {
            let e = page::element(&b, kind, i, id)?;
            if last.as_deref().is_some_and(|l| l >= e.key) {
                return Err(invalid(id, format!("keys out of order at element {i}")));
            }
            last = Some(e.key.to_vec());
            if kind == LEAF {
                f(e.flags, e.key, e.value)?;
            } else {
                self.visit(e.child, depth + 1, seen, f)?;
            }
        }
        Ok(())
    }
}
