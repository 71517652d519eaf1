//! Online defragmentation: gives free space back to the file system while reads and writes go on.
//!
//! No stop-the-world copy. Each step is an ordinary copy-on-write commit:
//! 1. From a read snapshot, list every reachable page (overflow runs included) at or above the target size, with
//!    a key that leads to it.
//! 2. A write transaction "touches" a bounded number of those keys: the path to each is materialized and
//!    written, at commit, into the lowest free pages (the allocator is first-fit); overflow values are rewritten.
//!    The commit is durable; the old pages become free once no reader can reach them.
//! 3. When the tail of the file is free, a meta-only durable commit records the smaller page count, and then the
//!    file is truncated to it. A crash at any point leaves a valid store: every step is a commit, and the file is
//!    cut only below what the durable meta needs.
//!
//! The writer waits at most one step (a bounded number of keys, default 32, or one 8 MiB cut of the file);
//! readers never wait. A reader that
//! holds an old snapshot keeps the pages it can reach: they are freed, and the file shrinks past them, once it ends.

use std::time::{Duration, Instant};

use crate::btree::node::{ValueRef, overflow_pages};
use crate::btree::read::{NodeView, node};
use crate::db::{Db, KeyspaceId};
use crate::error::Result;
use crate::page::PageId;

/// How a defragmentation runs.
#[derive(Debug, Clone, Copy)]
pub struct DefragConfig {
    /// Keys touched per step (each moves its path: a few pages).
    pub keys_per_step: usize,
    /// Stop when the file is within this fraction above its live size (0.05: 5%).
    pub slack: f64,
    /// Pause between steps, leaving the writer lock to others.
    pub pause: Duration,
    /// Give up after this many passes without the file shrinking.
    pub max_idle_passes: u32,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig { keys_per_step: 32, slack: 0.02, pause: Duration::ZERO, max_idle_passes: 3 }
    }
}

/// What a defragmentation did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DefragReport {
    pub file_before: u64,
    pub file_after: u64,
    /// Bytes of pages in use at the end (dbSizeInUse).
    pub in_use_after: u64,
    /// Write steps taken.
    pub steps: u64,
    /// The longest a single step held the writer.
    pub longest_step: Duration,
}

/// Bytes cut from the file per truncation step.
const TRUNCATE_CHUNK: u64 = 8 << 20;

/// A page to move and how to reach it.
struct Target {
    ks: KeyspaceId,
    key: Vec<u8>,
    overflow: bool,
    page: PageId,
}

impl Db {
    /// Lists reachable pages at or above `boundary`, highest first.
    fn targets(&self, boundary: u64) -> Result<Vec<Target>> {
        let r = self.read();
        let pager = &self.shared.pager;
        let mut out = Vec::new();
        for (i, ks) in r.snapshot().keyspaces.iter().enumerate() {
            if ks.root.0 == 0 {
                continue;
            }
            // (page, a key that leads to it)
            let mut stack: Vec<(PageId, Vec<u8>)> = vec![(ks.root, Vec::new())];
            while let Some((id, key)) = stack.pop() {
                match node(pager, id)? {
                    NodeView::Branch(b) => {
                        if id.0 >= boundary {
                            out.push(Target { ks: KeyspaceId(i), key: key.clone(), overflow: false, page: id });
                        }
                        for c in 0..b.len() {
                            let k = if c == 0 { key.clone() } else { b.key(c).to_vec() };
                            stack.push((b.child(c), k));
                        }
                    }
                    NodeView::Leaf(l) => {
                        if id.0 >= boundary && !l.is_empty() {
                            out.push(Target { ks: KeyspaceId(i), key: l.key(0).to_vec(), overflow: false, page: id });
                        }
                        for e in 0..l.len() {
                            if let ValueRef::Overflow { page, len } = l.value(e)
                                && page.0 + overflow_pages(len, pager.page_size()) > boundary
                            {
                                out.push(Target { ks: KeyspaceId(i), key: l.key(e).to_vec(), overflow: true, page });
                            }
                        }
                    }
                }
            }
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.page));
        Ok(out)
    }

    /// Frees the tail: lowers the page count past free pages at the end, records it durably, then truncates the
    /// file to it (which also gives back the slack that growth added past the page count).
    fn shrink(&self) -> Result<()> {
        let mut w = self.write()?;
        let before = w.writer().alloc.page_count();
        let after = w.writer().alloc.trim_tail();
        if after < before {
            // The meta naming the smaller page count is durable before the file is cut below the old one.
            w.commit_durable()?;
        } else {
            drop(w);
        }
        // Cut the file in chunks, each under the writer lock (so nothing grows the file meanwhile) but short: a
        // large truncation frees many blocks (and issues discards), and one long cut would stall the writer.
        loop {
            let w = self.shared.writer.lock();
            // Never below what the newest meta (durable or not) or the allocator needs.
            let floor = w.alloc.page_count().max(w.latest.page_count) * self.shared.pager.page_size() as u64;
            let len = self.shared.pager.file_len();
            if len <= floor {
                return Ok(());
            }
            let cut = len.saturating_sub(TRUNCATE_CHUNK).max(floor);
            self.shared.pager.truncate(cut.div_ceil(self.shared.pager.page_size() as u64))?;
            parking_lot::MutexGuard::unlock_fair(w);
        }
    }

    /// Shrinks the file toward its live size in bounded steps while reads and writes go on.
    ///
    /// # Durability
    /// Every step is a durable commit; a crash at any point leaves a valid store.
    pub fn defrag(&self, config: DefragConfig) -> Result<DefragReport> {
        let page = self.shared.pager.page_size() as u64;
        let mut report = DefragReport { file_before: self.stats().file_size, ..DefragReport::default() };
        let mut idle = 0;
        let mut last_size = u64::MAX;
        loop {
            self.shrink()?;
            let stats = self.stats();
            let live_pages = stats.page_count - stats.free_pages - stats.pending_pages;
            let target_pages = ((live_pages as f64) * (1.0 + config.slack)).ceil() as u64 + 2;
            if stats.file_size <= target_pages * page || idle >= config.max_idle_passes {
                break;
            }
            if stats.file_size >= last_size {
                idle += 1;
            } else {
                idle = 0;
            }
            last_size = stats.file_size;
            let targets = self.targets(target_pages)?;
            if targets.is_empty() {
                // Nothing reachable above the target: only pending pages remain; a later pass frees them.
                idle += 1;
                continue;
            }
            for chunk in targets.chunks(config.keys_per_step.max(1)) {
                let started = Instant::now();
                let mut w = self.write()?;
                for t in chunk {
                    w.relocate(t.ks, &t.key, t.overflow)?;
                }
                w.commit_durable()?;
                report.longest_step = report.longest_step.max(started.elapsed());
                report.steps += 1;
                if !config.pause.is_zero() {
                    std::thread::sleep(config.pause);
                }
            }
        }
        self.shrink()?;
        let stats = self.stats();
        report.file_after = stats.file_size;
        report.in_use_after = stats.in_use;
        Ok(report)
    }
}
