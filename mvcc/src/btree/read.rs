//! Reading a committed tree: point lookups and ordered range cursors, zero-copy over the mapped pages.

use std::ops::Bound;

use crate::btree::node::{BranchView, LeafView, OVERFLOW_DATA, ValueRef, overflow_pages};
use crate::error::{Error, Result};
use crate::page::layout::u64_at;
use crate::page::pager::Pager;
use crate::page::{PageId, PageType};

/// A decoded tree page.
#[derive(Debug, Clone, Copy)]
pub enum NodeView<'a> {
    Leaf(LeafView<'a>),
    Branch(BranchView<'a>),
}

/// Reads and decodes a tree page.
pub fn node(pager: &Pager, id: PageId) -> Result<NodeView<'_>> {
    let page = pager.page(id)?;
    let bad = |what: &str| Error::Corrupted { page: id, what: what.to_string(), path: pager.path().to_path_buf() };
    match PageType::from_u8(page[crate::page::layout::TYPE_OFFSET]).ok_or_else(|| bad("unknown page type"))? {
        PageType::Leaf => LeafView::new(page).map(NodeView::Leaf).map_err(bad),
        PageType::Branch => BranchView::new(page).map(NodeView::Branch).map_err(bad),
        t => Err(bad(&format!("a tree points at a {t:?} page"))),
    }
}

/// The bytes of a value, reading its overflow run if it has one.
pub fn value_bytes<'a>(pager: &'a Pager, v: ValueRef<'a>) -> Result<&'a [u8]> {
    match v {
        ValueRef::Inline(b) => Ok(b),
        ValueRef::Overflow { page, len } => {
            let run = pager.run(page, overflow_pages(len, pager.page_size()))?;
            if u64_at(run, OVERFLOW_DATA - 8) != len || pager.page_type(page)? != PageType::Overflow {
                return Err(Error::Corrupted {
                    page,
                    what: "overflow run does not match its reference".into(),
                    path: pager.path().to_path_buf(),
                });
            }
            Ok(&run[OVERFLOW_DATA..OVERFLOW_DATA + len as usize])
        }
    }
}

/// Looks `key` up in the tree rooted at `root` (`PageId(0)`: empty tree).
pub fn get<'a>(pager: &'a Pager, root: PageId, key: &[u8]) -> Result<Option<ValueRef<'a>>> {
    if root.0 == 0 {
        return Ok(None);
    }
    let mut id = root;
    loop {
        match node(pager, id)? {
            NodeView::Branch(b) => id = b.child(b.find(key)),
            NodeView::Leaf(l) => return Ok(l.search(key).ok().map(|i| l.value(i))),
        }
    }
}

/// An ordered cursor over `[start, end)` (bounds as given) of one tree.
pub struct Range<'a> {
    pager: &'a Pager,
    stack: Vec<(BranchView<'a>, usize)>,
    leaf: Option<(LeafView<'a>, usize)>,
    end: Bound<Vec<u8>>,
    done: bool,
}

impl std::fmt::Debug for Range<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range").field("depth", &self.stack.len()).field("done", &self.done).finish()
    }
}

impl<'a> Range<'a> {
    /// A cursor positioned at the first key `>= start` (or `> start` for an excluded bound).
    pub fn new(pager: &'a Pager, root: PageId, start: Bound<&[u8]>, end: Bound<Vec<u8>>) -> Result<Self> {
        let mut r = Range { pager, stack: Vec::new(), leaf: None, end, done: root.0 == 0 };
        if r.done {
            return Ok(r);
        }
        let seek: &[u8] = match start {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => &[],
        };
        let mut id = root;
        loop {
            match node(pager, id)? {
                NodeView::Branch(b) => {
                    let i = b.find(seek);
                    r.stack.push((b, i));
                    id = b.child(i);
                }
                NodeView::Leaf(l) => {
                    let pos = match (l.search(seek), start) {
                        (Ok(i), Bound::Excluded(_)) => i + 1,
                        (Ok(i), _) | (Err(i), _) => i,
                    };
                    r.leaf = Some((l, pos));
                    return Ok(r);
                }
            }
        }
    }

    /// Moves to the leftmost leaf of the next subtree; false at the end of the tree.
    fn next_leaf(&mut self) -> Result<bool> {
        while let Some((b, i)) = self.stack.pop() {
            if i + 1 < b.len() {
                self.stack.push((b, i + 1));
                let mut id = b.child(i + 1);
                loop {
                    match node(self.pager, id)? {
                        NodeView::Branch(b) => {
                            self.stack.push((b, 0));
                            id = b.child(0);
                        }
                        NodeView::Leaf(l) => {
                            self.leaf = Some((l, 0));
                            return Ok(true);
                        }
                    }
                }
            }
        }
        Ok(false)
    }
}

impl<'a> Iterator for Range<'a> {
    type Item = Result<(&'a [u8], ValueRef<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let (l, pos) = self.leaf?;
            if pos < l.len() {
                let key = l.key(pos);
                let past = match &self.end {
                    Bound::Included(e) => key > e.as_slice(),
                    Bound::Excluded(e) => key >= e.as_slice(),
                    Bound::Unbounded => false,
                };
                if past {
                    self.done = true;
                    return None;
                }
                self.leaf = Some((l, pos + 1));
                return Some(Ok((key, l.value(pos))));
            }
            match self.next_leaf() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
