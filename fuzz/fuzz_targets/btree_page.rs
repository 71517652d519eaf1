//! The B+tree page decoders on arbitrary page bytes: the meta page's decoder, and a leaf's and a branch's views,
//! validated and walked, must return without a panic whatever the page holds (the first two bytes pick the page
//! size, so small and odd sizes are tried too).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mvcc::btree::node::{BranchView, LeafView};

fuzz_target!(|data: &[u8]| {
    let Some((&size, page)) = data.split_first() else { return };
    let page = &page[..page.len().min(64 + size as usize * 64)];
    let _ = mvcc::page::meta::Meta::decode(mvcc::PageId(0), page);
    if let Ok(leaf) = LeafView::new(page) {
        if leaf.validate().is_ok() {
            for i in 0..leaf.len() {
                let _ = (leaf.key(i), leaf.value(i));
            }
            if let Some(first) = (!leaf.is_empty()).then(|| leaf.key(0).to_vec()) {
                let _ = leaf.search(&first);
            }
        }
    }
    if let Ok(branch) = BranchView::new(page) {
        if branch.validate().is_ok() {
            for i in 0..branch.len() {
                let _ = (branch.key(i), branch.child(i));
            }
            let _ = branch.find(b"key");
        }
    }
});
