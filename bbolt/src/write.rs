//! Writing a whole bbolt file, in file order, from entries sorted by key: never the whole file in memory.
//!
//! **Two passes over the source.** bbolt's metas and root bucket come first in the file but name pages written
//! later, so the first pass lays the file out (how many entries each leaf holds, how many pages each node spans,
//! which page id each gets) from the entries' sizes alone; the second writes the pages in page-id order. What is
//! kept between them: a few numbers per leaf and one first key per page (for the branch pages).
//!
//! **Layout**: metas (pages 0 and 1, the same content, transaction ids of either parity), an empty freelist
//! (page 2), the root bucket (page 3, one leaf: one element per bucket), then each bucket in name order: its
//! leaves, then its branch levels from the bottom up, the root last. A leaf takes entries while they fit in one
//! page; an entry larger than a page gets a leaf of its own that spans as many pages as it needs (bbolt's
//! overflow). Every bucket has a page of its own (none inline), an empty one an empty leaf.

use std::io::Write;

use crate::page::{BRANCH, BUCKET_HEADER, BUCKET_LEAF, ELEMENT, FREELIST, HEADER, Header, LEAF, META, Meta};
use crate::{Error, Result};

/// Where the writer takes the entries from.
pub trait Source {
    /// Calls `f` with every (key, value) of bucket number `bucket` (an index into the names given to [`write`])
    /// in strictly increasing key order. Called twice per bucket, first to lay the file out, then to write it:
    /// both calls must yield the same entries (a consistent read snapshot does).
    fn visit(&mut self, bucket: usize, f: &mut crate::Visit<'_>) -> Result<()>;

    /// Told the file's size once the layout is known, before any page is written.
    fn laid_out(&mut self, _bytes: u64) {}
}

/// How the file is written.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub page_size: usize,
    /// The transaction id the metas carry (bbolt counts commits; any value works for a fresh file).
    pub txid: u64,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { page_size: crate::DEFAULT_PAGE_SIZE, txid: 2 }
    }
}

/// A node of the layout: how many elements, the pages it spans, the length of its first key.
#[derive(Debug, Clone, Copy)]
struct Node {
    count: u32,
    pages: u32,
    first_key_len: u32,
}

/// Packs elements of the given sizes into pages, as both passes must (the same decisions each time).
struct Packer {
    page_size: usize,
    nodes: Vec<Node>,
    size: usize,
}

impl Packer {
    fn new(page_size: usize) -> Self {
        Packer { page_size, nodes: Vec::new(), size: HEADER }
    }

    /// Adds an element with `key_len` and `data_len` bytes (key plus value for a leaf).
    fn add(&mut self, key_len: usize, data_len: usize) {
        let elem = ELEMENT + data_len;
        let fits =
            self.nodes.last().is_some_and(|n| n.count < u32::from(u16::MAX) - 1) && self.size + elem <= self.page_size;
        if fits && let Some(n) = self.nodes.last_mut() {
            n.count += 1;
            self.size += elem;
            n.pages = self.size.div_ceil(self.page_size) as u32;
            return;
        }
        self.size = HEADER + elem;
        self.nodes.push(Node {
            count: 1,
            pages: self.size.div_ceil(self.page_size) as u32,
            first_key_len: key_len as u32,
        });
    }

    /// The nodes; an empty level is one empty node.
    fn finish(mut self) -> Vec<Node> {
        if self.nodes.is_empty() {
            self.nodes.push(Node { count: 0, pages: 1, first_key_len: 0 });
        }
        self.nodes
    }
}

/// One bucket's layout: its levels from the leaves up, and the first page id of each node.
#[derive(Debug)]
struct Tree {
    levels: Vec<Vec<Node>>,
    ids: Vec<Vec<u64>>,
}

impl Tree {
    fn root(&self) -> u64 {
        self.ids.last().and_then(|l| l.first()).copied().unwrap_or(0)
    }
}

/// Lays one bucket out from its leaves, its pages numbered from `next` on (advanced past them).
fn lay_out(leaves: Vec<Node>, page_size: usize, next: &mut u64) -> Tree {
    let mut levels = vec![leaves];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let mut p = Packer::new(page_size);
        for child in below {
            p.add(child.first_key_len as usize, child.first_key_len as usize);
        }
        levels.push(p.finish());
    }
    let ids = levels
        .iter()
        .map(|level| {
            level
                .iter()
                .map(|n| {
                    let id = *next;
                    *next += u64::from(n.pages);
                    id
                })
                .collect()
        })
        .collect();
    Tree { levels, ids }
}

/// Writes one page (or span of pages) from its elements: `(flags, key, value or child id)`.
fn page_bytes(id: u64, flags: u16, pages: u32, page_size: usize, elems: &[(u32, &[u8], Payload<'_>)]) -> Vec<u8> {
    let mut b = vec![0u8; pages as usize * page_size];
    let count = elems.len() as u16;
    Header { id, flags, count, overflow: pages - 1 }.encode(&mut b);
    let mut data = HEADER + elems.len() * ELEMENT;
    for (i, (eflags, key, payload)) in elems.iter().enumerate() {
        let at = HEADER + i * ELEMENT;
        let pos = (data - at) as u32;
        match payload {
            Payload::Value(v) => {
                b[at..at + 4].copy_from_slice(&eflags.to_le_bytes());
                b[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
                b[at + 8..at + 12].copy_from_slice(&(key.len() as u32).to_le_bytes());
                b[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
                b[data..data + key.len()].copy_from_slice(key);
                b[data + key.len()..data + key.len() + v.len()].copy_from_slice(v);
                data += key.len() + v.len();
            }
            Payload::Child(c) => {
                b[at..at + 4].copy_from_slice(&pos.to_le_bytes());
                b[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
                b[at + 8..at + 16].copy_from_slice(&c.to_le_bytes());
                b[data..data + key.len()].copy_from_slice(key);
                data += key.len();
            }
        }
    }
    b
}

/// What an element carries after its key.
enum Payload<'a> {
    Value(&'a [u8]),
    Child(u64),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Writes the bbolt file holding the buckets `names` (strictly increasing, as bbolt keeps them) with `source`'s
/// entries to `out`, in file order. Returns the bytes written (a whole number of pages).
pub fn write(out: &mut impl Write, names: &[&[u8]], source: &mut impl Source, opts: WriteOptions) -> Result<u64> {
    let page_size = opts.page_size;
    if !page_size.is_power_of_two() || page_size < 1024 {
        return Err(Error::Input(format!("page size {page_size}")));
    }
    if names.windows(2).any(|w| w[0] >= w[1]) || names.iter().any(|n| n.is_empty()) {
        return Err(Error::Input("bucket names must be non-empty and strictly increasing".into()));
    }
    // Pass 1: the layout.
    let mut next = 4u64;
    let mut trees = Vec::with_capacity(names.len());
    for b in 0..names.len() {
        let mut p = Packer::new(page_size);
        let mut last: Option<Vec<u8>> = None;
        source.visit(b, &mut |k, v| {
            if k.is_empty() || last.as_deref().is_some_and(|l| l >= k) {
                return Err(Error::Input(format!("keys of bucket {b} are empty or out of order")));
            }
            last = Some(k.to_vec());
            p.add(k.len(), k.len() + v.len());
            Ok(())
        })?;
        trees.push(lay_out(p.finish(), page_size, &mut next));
    }
    let root_elems: Vec<(u32, &[u8], Vec<u8>)> = names
        .iter()
        .zip(&trees)
        .map(|(n, t)| {
            let mut v = vec![0u8; BUCKET_HEADER];
            v[0..8].copy_from_slice(&t.root().to_le_bytes());
            (BUCKET_LEAF, *n, v)
        })
        .collect();
    let root_size = HEADER + root_elems.iter().map(|(_, k, v)| ELEMENT + k.len() + v.len()).sum::<usize>();
    if root_size > page_size {
        return Err(Error::Input("too many buckets for one root page".into()));
    }
    source.laid_out(next * page_size as u64);
    // Pass 2: the pages, in page-id order.
    let mut written = 0u64;
    let mut emit = |bytes: &[u8]| -> Result<()> {
        out.write_all(bytes).map_err(io("write a page"))?;
        written += bytes.len() as u64;
        Ok(())
    };
    let base = opts.txid & !1;
    for id in 0..2u64 {
        let meta = Meta {
            page_size: page_size as u32,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 2,
            pgid: next,
            txid: base + id,
        };
        let mut b = vec![0u8; page_size];
        Header { id, flags: META, count: 0, overflow: 0 }.encode(&mut b);
        b[HEADER..HEADER + 64].copy_from_slice(&meta.encode());
        emit(&b)?;
    }
    let mut free = vec![0u8; page_size];
    Header { id: 2, flags: FREELIST, count: 0, overflow: 0 }.encode(&mut free);
    emit(&free)?;
    let elems: Vec<(u32, &[u8], Payload<'_>)> =
        root_elems.iter().map(|(f, k, v)| (*f, *k, Payload::Value(v.as_slice()))).collect();
    emit(&page_bytes(3, LEAF, 1, page_size, &elems))?;
    for (b, tree) in trees.iter().enumerate() {
        write_bucket(b, tree, page_size, source, &mut emit)?;
    }
    Ok(written)
}

/// Pass 2 for one bucket: its leaves as the entries come, then its branch levels.
fn write_bucket(
    b: usize,
    tree: &Tree,
    page_size: usize,
    source: &mut impl Source,
    emit: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let leaves = &tree.levels[0];
    let mut firsts: Vec<Vec<u8>> = Vec::with_capacity(leaves.len());
    let mut pending: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut leaf = 0usize;
    let changed = || Error::Input(format!("bucket {b} changed between the two passes"));
    source.visit(b, &mut |k, v| {
        let node = leaves.get(leaf).ok_or_else(changed)?;
        pending.push((k.to_vec(), v.to_vec()));
        if pending.len() == node.count as usize {
            let elems: Vec<(u32, &[u8], Payload<'_>)> =
                pending.iter().map(|(k, v)| (0, k.as_slice(), Payload::Value(v.as_slice()))).collect();
            emit(&page_bytes(tree.ids[0][leaf], LEAF, node.pages, page_size, &elems))?;
            firsts.push(std::mem::take(&mut pending).swap_remove(0).0);
            leaf += 1;
        }
        Ok(())
    })?;
    if leaves.len() == 1 && leaves[0].count == 0 {
        emit(&page_bytes(tree.ids[0][0], LEAF, 1, page_size, &[]))?;
        firsts.push(Vec::new());
        leaf = 1;
    }
    if leaf != leaves.len() || !pending.is_empty() {
        return Err(changed());
    }
    // The branch levels: each node's children are the next run of the level below.
    for level in 1..tree.levels.len() {
        let mut child = 0usize;
        let mut next_firsts = Vec::with_capacity(tree.levels[level].len());
        for (i, node) in tree.levels[level].iter().enumerate() {
            let run = child..child + node.count as usize;
            let elems: Vec<(u32, &[u8], Payload<'_>)> =
                run.clone().map(|c| (0, firsts[c].as_slice(), Payload::Child(tree.ids[level - 1][c]))).collect();
            emit(&page_bytes(tree.ids[level][i], BRANCH, node.pages, page_size, &elems))?;
            next_firsts.push(firsts[run.start].clone());
            child = run.end;
        }
        firsts = next_firsts;
    }
    Ok(())
}
