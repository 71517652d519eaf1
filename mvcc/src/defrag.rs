//! Online defragmentation: gives free space back to the file system while reads and writes go on.
//!
//! No stop-the-world copy. Each step is an ordinary copy-on-write commit:
//! 1. From a read snapshot, list every reachable page (overflow runs included) at or above the target size, with
//!    a key that leads to it.
//! 2. A write transaction "touches" a bounded number of those keys: the path to each is materialized and
//!    written, at commit, into the lowest free pages (the allocator is first-fit); overflow values are rewritten.
//!    A page is only touched when it can land lower: a tree page when a free page lies below it, an overflow run
//!    when a free extent below its start holds it whole. So a step never grows the file for nothing (a reader
//!    pinning old pages leaves fewer free pages, and then fewer moves, not more file).
//!    The commit is durable; the old pages become free once no reader can reach them.
//! 3. When the tail of the file is free, a meta-only durable commit records the smaller page count, and then the
//!    file is truncated to it. A crash at any point leaves a valid store: every step is a commit, and the file is
//!    cut only below what the durable meta needs.
//!
//! **Bound.** A defragmentation makes at most [`DefragConfig::max_passes`] passes of steps 1–3, and a pass at
//! most `ceil(page_count / keys_per_step)` write steps (each touching `keys_per_step` keys; a pass lists each
//! reachable page or run at most once), so at most `max_passes × ceil(page_count / keys_per_step)` steps in all,
//! plus the truncation cuts. It ends early when the file is within `slack` of its live size, plus two pages
//! ([`DefragOutcome::Reached`]); when asked to stop ([`DefragOutcome::Stopped`], checked before every step);
//! or when passes stop making the file smaller ([`DefragOutcome::Stalled`]). Passes first list only the tree
//! pages above the target (and every overflow run); after one such pass leaves the file no smaller, they list
//! every tree page, so that moving them down joins small free extents into ones that hold the runs above; two
//! of those without progress end it. Readers and concurrent writers cannot make it run longer, only stop sooner.
//!
//! **Target.** With no reader pinning old pages and no overflow runs, it reaches the target. Overflow runs need
//! a free extent that holds them whole; where the free space below a run stays split into smaller extents, the
//! file may end above the target, by less than the pages of the overflow runs (the worst case: every free
//! extent just below a run one page too small for it). The server logs such an ending with the figures.
//!
//! The writer waits at most one step (a bounded number of keys, default 32, or one 8 MiB cut of the file);
//! readers never wait. A reader that holds an old snapshot keeps the pages it can reach: they are freed, and the
//! file shrinks past them, once it ends.

use std::sync::atomic::{AtomicBool, Ordering};
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
    /// At most this many passes (see the module header's bound).
    pub max_passes: u32,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig { keys_per_step: 32, slack: 0.02, pause: Duration::ZERO, max_passes: 8 }
    }
}

/// Why a defragmentation ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefragOutcome {
    /// The file is within the slack of its live size.
    #[default]
    Reached,
    /// A pass did not make the file smaller: pages above the target are pinned by readers, or are overflow runs
    /// with no free extent below that holds them.
    Stalled,
    /// The pass limit was reached first.
    PassLimit,
    /// The caller asked it to stop.
    Stopped,
}

/// What a defragmentation did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DefragReport {
    pub file_before: u64,
    pub file_after: u64,
    /// Bytes of pages in use at the end (dbSizeInUse).
    pub in_use_after: u64,
    /// The size it aimed for: the live size plus the slack.
    pub target: u64,
    /// Passes made.
    pub passes: u32,
    /// Write steps taken.
    pub steps: u64,
    /// Pages (tree pages and overflow runs) that could not move lower when their turn came.
    pub unmoved: u64,
    /// The longest a single step held the writer.
    pub longest_step: Duration,
    pub outcome: DefragOutcome,
}

/// Bytes cut from the file per truncation step.
const TRUNCATE_CHUNK: u64 = 8 << 20;

/// A page to move and how to reach it.
struct Target {
    ks: KeyspaceId,
    key: Vec<u8>,
    /// The pages of the overflow run that starts at `page`, if the target is one.
    run: Option<u64>,
    page: PageId,
}

/// Where a store's live pages are: what [`Db::layout`] reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Pages the file's structure spans (the meta pages included).
    pub page_count: u64,
    /// Every reachable B+tree page.
    pub tree_pages: Vec<u64>,
    /// Every overflow run: (first page, pages).
    pub runs: Vec<(u64, u64)>,
    /// Free pages ready for reuse, and pages freed but still reachable by a reader or the durable meta.
    pub free: u64,
    pub pending: u64,
}

impl Layout {
    /// Pages in use: the two meta pages, the tree pages and the runs.
    pub fn live(&self) -> u64 {
        2 + self.tree_pages.len() as u64 + self.runs.iter().map(|r| r.1).sum::<u64>()
    }
}

impl Db {
    /// Visits every reachable page of the current snapshot: `(keyspace, page, a key that leads to it, run length
    /// if it starts an overflow run)`.
    fn walk(&self, mut visit: impl FnMut(KeyspaceId, PageId, &[u8], Option<u64>)) -> Result<()> {
        let r = self.read();
        let pager = &self.shared.pager;
        for (i, ks) in r.snapshot().keyspaces.iter().enumerate() {
            if ks.root.0 == 0 {
                continue;
            }
            // (page, a key that leads to it; empty: the keyspace's first key)
            let mut stack: Vec<(PageId, Vec<u8>)> = vec![(ks.root, Vec::new())];
            while let Some((id, key)) = stack.pop() {
                match node(pager, id)? {
                    NodeView::Branch(b) => {
                        visit(KeyspaceId(i), id, &key, None);
                        for c in 0..b.len() {
                            let k = if c == 0 { key.clone() } else { b.key(c).to_vec() };
                            stack.push((b.child(c), k));
                        }
                    }
                    NodeView::Leaf(l) => {
                        visit(KeyspaceId(i), id, if l.is_empty() { &key } else { l.key(0) }, None);
                        for e in 0..l.len() {
                            if let ValueRef::Overflow { page, len } = l.value(e) {
                                visit(KeyspaceId(i), page, l.key(e), Some(overflow_pages(len, pager.page_size())));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Where the live pages of the current snapshot are (a diagnostic: it reads every tree page).
    pub fn layout(&self) -> Result<Layout> {
        let mut layout = Layout::default();
        self.walk(|_, page, _, run| match run {
            Some(n) => layout.runs.push((page.0, n)),
            None => layout.tree_pages.push(page.0),
        })?;
        let stats = self.stats();
        (layout.page_count, layout.free, layout.pending) = (stats.page_count, stats.free_pages, stats.pending_pages);
        Ok(layout)
    }

    /// What a pass may move, highest first: tree pages at or above `boundary`, and every overflow run (a run
    /// below the boundary that moves lower joins smaller free extents into ones that hold larger runs).
    fn targets(&self, boundary: u64) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        self.walk(|ks, page, key, run| {
            if run.is_some() || page.0 >= boundary {
                out.push(Target { ks, key: key.to_vec(), run, page });
            }
        })?;
        out.sort_by_key(|t| std::cmp::Reverse(t.page));
        Ok(out)
    }

    /// Frees the tail: lowers the page count past free pages at the end, records it durably, then truncates the
    /// file to it (which also gives back the slack that growth added past the page count).
    fn shrink(&self) -> Result<()> {
        let mut w = self.write()?;
        w.release_unpinned();
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

    /// Shrinks the file toward its live size in bounded steps while reads and writes go on; ends within the
    /// module header's bound, sooner if `stop` is set (checked before every step).
    ///
    /// # Durability
    /// Every step is a durable commit; a crash at any point leaves a valid store.
    pub fn defrag(&self, config: DefragConfig, stop: &AtomicBool) -> Result<DefragReport> {
        let page = self.shared.pager.page_size() as u64;
        let mut report = DefragReport { file_before: self.stats().file_size, ..DefragReport::default() };
        let (mut smallest, mut idle, mut wide) = (u64::MAX, 0, false);
        crate::failpoints::DEFRAG_BEFORE_COPY.eval();
        report.outcome = loop {
            if stop.load(Ordering::Relaxed) {
                break DefragOutcome::Stopped;
            }
            self.shrink()?;
            let stats = self.stats();
            let live_pages = stats.page_count - stats.free_pages - stats.pending_pages;
            let target_pages = ((live_pages as f64) * (1.0 + config.slack)).ceil() as u64 + 2;
            report.target = target_pages * page;
            if stats.file_size <= report.target {
                break DefragOutcome::Reached;
            }
            if stats.file_size < smallest {
                (smallest, idle) = (stats.file_size, 0);
            } else if report.passes > 0 {
                idle += 1;
            }
            if idle >= 2 || (idle == 1 && !wide) {
                if wide {
                    break DefragOutcome::Stalled;
                }
                // A pass over the pages above the target left the file no smaller: free pages lie among the tree
                // pages below it, in extents too small for the runs above. From now on every tree page moves down,
                // joining them (and two such passes without progress end it).
                (wide, idle) = (true, 0);
            }
            if report.passes >= config.max_passes {
                break DefragOutcome::PassLimit;
            }
            report.passes += 1;
            let targets = self.targets(if wide { 0 } else { target_pages })?;
            for chunk in targets.chunks(config.keys_per_step.max(1)) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let mut w = self.write()?;
                let mut moved = 0;
                for t in chunk {
                    if w.relocate(t.ks, &t.key, t.run, t.page)? {
                        moved += 1;
                    } else {
                        report.unmoved += 1;
                    }
                }
                if moved == 0 {
                    continue; // dropping the transaction discards it
                }
                w.commit_durable()?;
                report.longest_step = report.longest_step.max(started.elapsed());
                report.steps += 1;
                if !config.pause.is_zero() {
                    std::thread::sleep(config.pause);
                }
            }
        };
        crate::failpoints::DEFRAG_BEFORE_RENAME.eval();
        self.shrink()?;
        let stats = self.stats();
        report.file_after = stats.file_size;
        report.in_use_after = stats.in_use;
        Ok(report)
    }
}
