//! The tree invariant checker (tests and fuzzers call it after every step): keys strictly increase across the
//! whole tree, every separator is a lower bound of its subtree and above the subtree before it, every leaf is at
//! the same depth, the entry count matches, and every page verifies.

use crate::btree::read::{NodeView, node};
use crate::error::{Error, Result};
use crate::page::PageId;
use crate::page::pager::Pager;

fn bad(pager: &Pager, page: PageId, what: String) -> Error {
    Error::Corrupted { page, what, path: pager.path().to_path_buf() }
}

/// Checks the tree at `root` holding `count` entries.
pub fn tree(pager: &Pager, root: PageId, count: u64) -> Result<()> {
    if root.0 == 0 {
        return if count == 0 { Ok(()) } else { Err(bad(pager, root, format!("empty tree claims {count} entries"))) };
    }
    let mut leaf_depth = None;
    let mut last: Option<Vec<u8>> = None;
    let mut seen = 0u64;
    // (page, depth, lower bound from the parent's separator)
    let mut stack: Vec<(PageId, usize, Option<Vec<u8>>)> = vec![(root, 0, None)];
    while let Some((id, depth, lower)) = stack.pop() {
        match node(pager, id)? {
            NodeView::Branch(b) => {
                b.validate().map_err(|e| bad(pager, id, e.to_string()))?;
                for i in (0..b.len()).rev() {
                    if i > 0 && b.key(i - 1) >= b.key(i) {
                        return Err(bad(pager, id, format!("branch keys out of order at {i}")));
                    }
                    let lo = if i == 0 { lower.clone() } else { Some(b.key(i).to_vec()) };
                    stack.push((b.child(i), depth + 1, lo));
                }
            }
            NodeView::Leaf(l) => {
                l.validate().map_err(|e| bad(pager, id, e.to_string()))?;
                if *leaf_depth.get_or_insert(depth) != depth {
                    return Err(bad(pager, id, format!("leaf at depth {depth}, others at {leaf_depth:?}")));
                }
                for i in 0..l.len() {
                    let k = l.key(i);
                    if last.as_deref().is_some_and(|p| p >= k) {
                        return Err(bad(pager, id, "keys not strictly increasing".into()));
                    }
                    if lower.as_deref().is_some_and(|lo| k < lo) {
                        return Err(bad(pager, id, "key below its separator".into()));
                    }
                    last = Some(k.to_vec());
                    seen += 1;
                }
            }
        }
    }
    if seen != count {
        return Err(bad(pager, root, format!("tree holds {seen} entries, meta says {count}")));
    }
    Ok(())
}
