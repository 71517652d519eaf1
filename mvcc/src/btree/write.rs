//! Changing a tree copy-on-write: a write transaction materializes the pages it touches as owned nodes, edits
//! them in memory, and writes them to new pages when it commits ("spill").
//!
//! **Spill**, bottom-up: small dirty siblings (under a quarter page) are merged into a neighbour; every dirty node
//! is cut into as many pages as its entries need (filled greedily, which suits revision keys that only grow);
//! children that became empty vanish; a root with one child is replaced by that child; a root that split gets a
//! new root above it. Each materialized page goes on the `freed` list: the commit hands it to the allocator, which
//! reuses it only when no reader or durable meta can reach it.
//!
//! **Invariants**: a committed page is never written (all writes go to pages the allocator handed out in this
//! transaction); every leaf stays at the same depth (nodes are only split, merged with siblings, or removed whole).

use crate::btree::node::{self, Val, branch_entry_size, leaf_entry_size};
use crate::btree::read::{NodeView, node as read_node};
use crate::error::Result;
use crate::page::alloc::Allocator;
use crate::page::layout::{self, HEADER_LEN, PageId, PageType, TxnId};
use crate::page::pager::Pager;

/// A child reference: an untouched page, or a node in the arena.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Clean(PageId),
    Dirty(usize),
}

#[derive(Debug)]
enum Dirty {
    /// Entries, and whether every insert since materializing went after the last entry (an append).
    Leaf(Vec<(Vec<u8>, Val)>, bool),
    Branch(Vec<(Vec<u8>, Slot)>),
}

/// Where spilled pages go.
#[derive(Debug)]
pub struct SpillCtx<'a> {
    pub pager: &'a Pager,
    pub alloc: &'a mut Allocator,
    pub txn: TxnId,
    /// Pages to write: first page id and the bytes of the page (or overflow run).
    pub writes: Vec<(PageId, Vec<u8>)>,
}

impl SpillCtx<'_> {
    fn page_size(&self) -> usize {
        self.pager.page_size()
    }

    fn write_page(&mut self, ty: PageType, fill: impl FnOnce(&mut [u8]) -> u16) -> PageId {
        let id = self.alloc.alloc_in(self.txn, 1);
        let mut page = vec![0u8; self.page_size()];
        let n = fill(&mut page);
        layout::seal(id, &mut page, ty, n, self.txn);
        self.writes.push((id, page));
        id
    }

    /// Cuts leaf entries into pages. A leaf that only grew at its end (revision keys, which only increase) fills
    /// each page before starting the next, so an append-only tree stays full. Any other leaf that overflows is
    /// cut into pages of equal size: random inserts then land in half-full pages, not in a full one that splits
    /// again at once.
    fn write_leaves(&mut self, entries: Vec<(Vec<u8>, Val)>, appended: bool) -> Vec<(Vec<u8>, PageId)> {
        let cap = self.page_size();
        let total: usize = HEADER_LEN + entries.iter().map(|(k, v)| leaf_entry_size(k, v)).sum::<usize>();
        let pages = total.div_ceil(cap - HEADER_LEN).max(1);
        let target = if appended || pages == 1 {
            cap
        } else {
            (total / pages + leaf_entry_size(&[], &Val::Inline(Vec::new()))).min(cap)
        };
        let mut out = Vec::new();
        let mut start = 0;
        while start < entries.len() {
            let mut size = HEADER_LEN;
            let mut end = start;
            while end < entries.len() {
                let add = leaf_entry_size(&entries[end].0, &entries[end].1);
                // Past the even target, stop at the first entry that would cross it; never past the page.
                if size + add > cap || (size > HEADER_LEN && size + add > target + add / 2 && size >= target / 2) {
                    break;
                }
                size += add;
                end += 1;
            }
            let group = &entries[start..end.max(start + 1)];
            let id =
                self.write_page(PageType::Leaf, |p| node::write_leaf(p, group.iter().map(|(k, v)| (k.as_slice(), v))));
            out.push((group[0].0.clone(), id));
            start = end.max(start + 1);
        }
        out
    }

    fn write_branches(&mut self, children: Vec<(Vec<u8>, PageId)>) -> Vec<(Vec<u8>, PageId)> {
        let cap = self.page_size();
        let mut out = Vec::new();
        let mut start = 0;
        while start < children.len() {
            let mut size = HEADER_LEN;
            let mut end = start;
            while end < children.len() && size + branch_entry_size(&children[end].0) <= cap {
                size += branch_entry_size(&children[end].0);
                end += 1;
            }
            // A branch page with a single child would add a level without branching: take two when possible.
            let end = end.max(start + 2).min(children.len());
            let group = &children[start..end];
            let id = self
                .write_page(PageType::Branch, |p| node::write_branch(p, group.iter().map(|(k, c)| (k.as_slice(), *c))));
            out.push((group[0].0.clone(), id));
            start = end;
        }
        out
    }
}

/// What a spilled tree amounts to.
#[derive(Debug)]
pub struct Spilled {
    /// The new root (`PageId(0)`: the tree is empty).
    pub root: PageId,
    /// Entries in the tree.
    pub count: u64,
    /// Runs (first page, page count) the transaction made unreachable.
    pub freed: Vec<(PageId, u64)>,
}

/// A tree being changed by a write transaction.
#[derive(Debug)]
pub struct WriteTree {
    root: Option<Slot>,
    arena: Vec<Dirty>,
    count: u64,
    freed: Vec<(PageId, u64)>,
}

fn key_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.cmp(b)
}

impl WriteTree {
    /// Starts from the committed tree at `root` (`PageId(0)`: empty) holding `count` entries.
    pub fn new(root: PageId, count: u64) -> Self {
        WriteTree { root: (root.0 != 0).then_some(Slot::Clean(root)), arena: Vec::new(), count, freed: Vec::new() }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether anything was changed.
    pub fn is_dirty(&self) -> bool {
        !self.arena.is_empty() || !self.freed.is_empty()
    }

    fn materialize(&mut self, pager: &Pager, slot: Slot) -> Result<usize> {
        let id = match slot {
            Slot::Dirty(i) => return Ok(i),
            Slot::Clean(id) => id,
        };
        let dirty = match read_node(pager, id)? {
            NodeView::Leaf(l) => {
                Dirty::Leaf((0..l.len()).map(|i| (l.key(i).to_vec(), l.value(i).to_val())).collect(), true)
            }
            NodeView::Branch(b) => {
                Dirty::Branch((0..b.len()).map(|i| (b.key(i).to_vec(), Slot::Clean(b.child(i)))).collect())
            }
        };
        self.freed.push((id, 1));
        self.arena.push(dirty);
        Ok(self.arena.len() - 1)
    }

    /// Materializes the path to `key`'s leaf; returns the leaf's arena index (creating the root if empty).
    fn leaf_for(&mut self, pager: &Pager, key: &[u8]) -> Result<usize> {
        let root = match self.root {
            Some(slot) => self.materialize(pager, slot)?,
            None => {
                self.arena.push(Dirty::Leaf(Vec::new(), true));
                self.arena.len() - 1
            }
        };
        self.root = Some(Slot::Dirty(root));
        let mut idx = root;
        loop {
            let (ci, child) = match &self.arena[idx] {
                Dirty::Leaf(..) => return Ok(idx),
                Dirty::Branch(children) => {
                    let ci = children.partition_point(|(k, _)| k.as_slice() <= key).saturating_sub(1);
                    (ci, children[ci].1)
                }
            };
            let c = self.materialize(pager, child)?;
            if let Dirty::Branch(children) = &mut self.arena[idx] {
                children[ci].1 = Slot::Dirty(c);
            }
            idx = c;
        }
    }

    /// The value stored for `key`, as of this transaction's changes (an overflow value as its reference: it may
    /// be a run this transaction has not written yet).
    pub fn get(&self, pager: &Pager, key: &[u8]) -> Result<Option<Val>> {
        let mut slot = match self.root {
            Some(s) => s,
            None => return Ok(None),
        };
        loop {
            match slot {
                Slot::Clean(id) => return Ok(crate::btree::read::get(pager, id, key)?.map(node::ValueRef::to_val)),
                Slot::Dirty(i) => match &self.arena[i] {
                    Dirty::Branch(children) => {
                        let ci = children.partition_point(|(k, _)| k.as_slice() <= key).saturating_sub(1);
                        slot = children[ci].1;
                    }
                    Dirty::Leaf(entries, _) => {
                        return Ok(entries
                            .binary_search_by(|(k, _)| key_cmp(k, key))
                            .ok()
                            .map(|j| entries[j].1.clone()));
                    }
                },
            }
        }
    }

    /// Materializes the path to `key`'s leaf, so the commit rewrites those pages at new (lowest free) places.
    /// Defragmentation moves pages this way; an empty tree is left alone.
    pub fn touch(&mut self, pager: &Pager, key: &[u8]) -> Result<()> {
        if self.root.is_some() {
            self.leaf_for(pager, key)?;
        }
        Ok(())
    }

    /// Sets `key` to `val`; returns the value it replaced.
    pub fn insert(&mut self, pager: &Pager, key: &[u8], val: Val) -> Result<Option<Val>> {
        let leaf = self.leaf_for(pager, key)?;
        let Dirty::Leaf(entries, appended) = &mut self.arena[leaf] else { unreachable!("leaf_for returns a leaf") };
        match entries.binary_search_by(|(k, _)| key_cmp(k, key)) {
            Ok(j) => Ok(Some(std::mem::replace(&mut entries[j].1, val))),
            Err(j) => {
                *appended &= j == entries.len();
                entries.insert(j, (key.to_vec(), val));
                self.count += 1;
                Ok(None)
            }
        }
    }

    /// Removes `key`; returns its value if it was there. A missing key dirties nothing.
    pub fn delete(&mut self, pager: &Pager, key: &[u8]) -> Result<Option<Val>> {
        if self.get(pager, key)?.is_some() {
            let leaf = self.leaf_for(pager, key)?;
            let Dirty::Leaf(entries, _) = &mut self.arena[leaf] else { unreachable!("leaf_for returns a leaf") };
            if let Ok(j) = entries.binary_search_by(|(k, _)| key_cmp(k, key)) {
                self.count -= 1;
                return Ok(Some(entries.remove(j).1));
            }
        }
        Ok(None)
    }

    /// Records runs this transaction made unreachable (replaced overflow values).
    pub fn free_run(&mut self, id: PageId, n: u64) {
        self.freed.push((id, n));
    }

    fn size_of(&self, pager: &Pager, slot: Slot) -> Result<usize> {
        Ok(match slot {
            Slot::Dirty(i) => match &self.arena[i] {
                Dirty::Leaf(e, _) => HEADER_LEN + e.iter().map(|(k, v)| leaf_entry_size(k, v)).sum::<usize>(),
                Dirty::Branch(c) => HEADER_LEN + c.iter().map(|(k, _)| branch_entry_size(k)).sum::<usize>(),
            },
            Slot::Clean(_) => pager.page_size(),
        })
    }

    /// Merges each small dirty child into a neighbour (materializing the neighbour), so deletes do not leave the
    /// tree full of near-empty pages.
    fn rebalance(&mut self, pager: &Pager, children: &mut Vec<(Vec<u8>, Slot)>) -> Result<()> {
        let min = pager.page_size() / 4;
        let mut i = children.len();
        while i > 0 && children.len() > 1 {
            i -= 1;
            let Slot::Dirty(c) = children[i].1 else { continue };
            if self.size_of(pager, Slot::Dirty(c))? >= min {
                continue;
            }
            let (keep, gone) = if i > 0 { (i - 1, i) } else { (0, 1) };
            let k = self.materialize(pager, children[keep].1)?;
            let g = self.materialize(pager, children[gone].1)?;
            let moved = std::mem::replace(&mut self.arena[g], Dirty::Leaf(Vec::new(), true));
            match (&mut self.arena[k], moved) {
                (Dirty::Leaf(a, a_appended), Dirty::Leaf(b, b_appended)) => {
                    a.extend(b);
                    *a_appended &= b_appended;
                }
                (Dirty::Branch(a), Dirty::Branch(b)) => a.extend(b),
                (_, other) => {
                    self.arena[g] = other; // siblings are always the same kind; leave both as they were
                    continue;
                }
            }
            children[keep].1 = Slot::Dirty(k);
            children.remove(gone);
            i = i.min(children.len());
        }
        Ok(())
    }

    fn spill_node(&mut self, ctx: &mut SpillCtx<'_>, idx: usize, is_root: bool) -> Result<Vec<(Vec<u8>, PageId)>> {
        match std::mem::replace(&mut self.arena[idx], Dirty::Leaf(Vec::new(), true)) {
            Dirty::Leaf(entries, appended) => Ok(ctx.write_leaves(entries, appended)),
            Dirty::Branch(mut children) => {
                self.rebalance(ctx.pager, &mut children)?;
                let mut out = Vec::with_capacity(children.len());
                for (k, slot) in children {
                    match slot {
                        Slot::Clean(p) => out.push((k, p)),
                        Slot::Dirty(c) => out.extend(self.spill_node(ctx, c, false)?),
                    }
                }
                if is_root && out.len() <= 1 {
                    return Ok(out);
                }
                Ok(ctx.write_branches(out))
            }
        }
    }

    /// Writes every dirty node; returns the new root (`PageId(0)`: empty), the entry count and the runs freed.
    pub fn spill(mut self, ctx: &mut SpillCtx<'_>) -> Result<Spilled> {
        let root = match self.root {
            None => PageId(0),
            Some(Slot::Clean(p)) => p,
            Some(Slot::Dirty(i)) => {
                let mut parts = self.spill_node(ctx, i, true)?;
                while parts.len() > 1 {
                    parts = ctx.write_branches(parts);
                }
                parts.pop().map_or(PageId(0), |(_, p)| p)
            }
        };
        Ok(Spilled { root, count: self.count, freed: self.freed })
    }
}
