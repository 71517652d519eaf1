//! Free-space tracking: which pages a commit may write.
//!
//! **Design.** Free space is kept in memory only and rebuilt at open from the pages reachable from the two meta
//! pages (open reads every page anyway, to verify it and to rebuild the key index). A commit therefore spends
//! nothing on free-space metadata: its cost is the pages it changed. bbolt's whole-freelist rewrite per commit,
//! a known pain on large databases, has no counterpart here.
//!
//! **Invariants** (checked by [`Allocator::check`]):
//! 1. Free extents are disjoint, coalesced, inside `2..page_count`, and disjoint from every pending run.
//! 2. A run freed by transaction T (still reachable from snapshots before T) moves from pending to free only once
//!    `T <= safe`, where `safe` is the oldest snapshot any reader holds and the older of the two on-disk metas.
//!    So a commit never overwrites a page that a reader or either meta slot can still reach.
//! 3. Allocation is first-fit from the lowest address, which keeps live data near the head of the file and lets
//!    defragmentation shrink it.
//! 4. *Young runs.* A run written by transaction B and freed by transaction D is reachable exactly from the
//!    snapshots `B <= M < D`. [`Allocator::alloc_in`] remembers B for runs written after the newest durable meta
//!    (`born`; older entries are dropped by [`Allocator::forget_born_up_to`], since that meta lies in every later
//!    interval). Such a run, once freed, waits in `fresh` until its freeing commit is published; then
//!    [`Allocator::release_fresh`] frees it at once if no protected snapshot (reader, meta on disk, meta being
//!    synced, latest commit) lies in `B..D`, and otherwise hands it to `pending` like any other run. So a page
//!    rewritten by every commit between two syncs (a hot key's leaf, the top of a tree) is reused at the next
//!    commit instead of taking a fresh page each time: the sync then writes back a few pages, not hundreds.
//!    Later readers and metas are all `>= D`, so the decision, once made, stays right.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::page::layout::{PageId, TxnId};

/// The allocator's state; owned by the single writer.
#[derive(Debug, Clone, Default)]
pub struct Allocator {
    /// start → length, in pages.
    free: BTreeMap<u64, u64>,
    /// Runs freed by each transaction, oldest first.
    pending: VecDeque<(TxnId, Vec<(PageId, u64)>)>,
    /// Pages 0..page_count are part of the file's structure.
    page_count: u64,
    /// Run start → (transaction that wrote it, length), for runs written after the newest durable meta.
    born: HashMap<u64, (TxnId, u64)>,
    /// Young runs freed by a commit not yet released: (freeing txn, run, length, writing txn).
    fresh: Vec<(TxnId, PageId, u64, TxnId)>,
}

impl Allocator {
    /// An allocator for a file of `page_count` pages, all of them in use.
    pub fn new(page_count: u64) -> Self {
        Allocator { page_count: page_count.max(2), ..Allocator::default() }
    }

    /// High-water mark, in pages.
    pub fn page_count(&self) -> u64 {
        self.page_count
    }

    /// Free pages ready for reuse.
    pub fn free_pages(&self) -> u64 {
        self.free.values().sum()
    }

    /// Pages freed but not yet reusable.
    pub fn pending_pages(&self) -> u64 {
        self.pending.iter().flat_map(|(_, runs)| runs.iter().map(|r| r.1)).sum::<u64>()
            + self.fresh.iter().map(|r| r.2).sum::<u64>()
    }

    /// Marks a run free at once (used when rebuilding at open).
    pub fn free_now(&mut self, id: PageId, n: u64) {
        let (mut start, mut len) = (id.0, n);
        if let Some((&s, &l)) = self.free.range(..start).next_back()
            && s + l == start
        {
            self.free.remove(&s);
            start = s;
            len += l;
        }
        if let Some(&l) = self.free.get(&(start + len)) {
            self.free.remove(&(start + len));
            len += l;
        }
        self.free.insert(start, len);
    }

    /// Records that transaction `txn` freed a run (invariants 2 and 4 decide when it is reused).
    pub fn free_later(&mut self, txn: TxnId, id: PageId, n: u64) {
        if let Some((born, len)) = self.born.remove(&id.0)
            && len == n
        {
            self.fresh.push((txn, id, n, born));
            return;
        }
        self.pend(txn, id, n);
    }

    /// Adds a run to `pending`, kept in transaction order (the freeing commit is almost always the newest).
    fn pend(&mut self, txn: TxnId, id: PageId, n: u64) {
        let at = self.pending.iter().rposition(|(t, _)| *t <= txn);
        match at {
            Some(i) if self.pending[i].0 == txn => self.pending[i].1.push((id, n)),
            Some(i) => self.pending.insert(i + 1, (txn, vec![(id, n)])),
            None => self.pending.push_front((txn, vec![(id, n)])),
        }
    }

    /// Moves every pending run freed by a transaction `<= safe` into the free set.
    pub fn release(&mut self, safe: TxnId) {
        while self.pending.front().is_some_and(|(t, _)| *t <= safe) {
            let Some((_, runs)) = self.pending.pop_front() else { break };
            for (id, n) in runs {
                self.free_now(id, n);
            }
        }
    }

    /// Frees each young run whose freeing commit is published, unless `protected(born, died)` says a snapshot in
    /// `born..died` can still reach it; those wait in `pending` (invariant 4). Returns the pages freed at once.
    pub fn release_fresh(&mut self, protected: impl Fn(TxnId, TxnId) -> bool) -> u64 {
        let mut freed = 0;
        for (died, id, n, born) in std::mem::take(&mut self.fresh) {
            if protected(born, died) {
                self.pend(died, id, n);
            } else {
                self.free_now(id, n);
                freed += n;
            }
        }
        freed
    }

    /// Forgets the birth of runs written by transactions `<= durable`: that meta reaches them until they are
    /// freed, so they can no longer be released early (invariant 4).
    pub fn forget_born_up_to(&mut self, durable: TxnId) {
        self.born.retain(|_, (b, _)| *b > durable);
    }

    /// Allocates `n` contiguous pages for transaction `txn` to write, remembering the birth (invariant 4).
    pub fn alloc_in(&mut self, txn: TxnId, n: u64) -> PageId {
        let id = self.alloc(n);
        self.born.insert(id.0, (txn, n));
        id
    }

    /// Allocates `n` contiguous pages: the lowest free run that fits, else the end of the file.
    pub fn alloc(&mut self, n: u64) -> PageId {
        if let Some((&start, &len)) = self.free.iter().find(|&(_, &len)| len >= n) {
            self.free.remove(&start);
            if len > n {
                self.free.insert(start + n, len - n);
            }
            return PageId(start);
        }
        let id = PageId(self.page_count);
        self.page_count += n;
        id
    }

    /// Where [`Allocator::alloc`] would put a run of `n` pages now, if a free extent holds it.
    pub fn lowest_fit(&self, n: u64) -> Option<u64> {
        self.free.iter().find(|&(_, &len)| len >= n).map(|(&start, _)| start)
    }

    /// Gives free pages at the end of the file back: lowers `page_count` past any trailing free extent.
    pub fn trim_tail(&mut self) -> u64 {
        while let Some((&s, &l)) = self.free.iter().next_back() {
            if s + l != self.page_count {
                break;
            }
            self.free.remove(&s);
            self.page_count = s;
        }
        self.page_count
    }

    /// The lowest free page, if any.
    pub fn first_free(&self) -> Option<u64> {
        self.free.keys().next().copied()
    }

    /// Verifies invariant 1; returns a description of the first breach.
    pub fn check(&self) -> Result<(), String> {
        let mut end = 2;
        for (&s, &l) in &self.free {
            if l == 0 || s < end || s + l > self.page_count {
                return Err(format!("free extent {s}+{l} overlaps, is empty or lies outside 2..{}", self.page_count));
            }
            if s == end && end != 2 {
                return Err(format!("free extent {s} is not coalesced with its predecessor"));
            }
            end = s + l;
        }
        // Whether any page of the run `s..s + n` lies in a free extent.
        let is_free = |s: u64, n: u64| self.free.range(..s + n).next_back().is_some_and(|(&f, &l)| f + l > s);
        let fresh = self.fresh.iter().map(|&(t, id, n, _)| (t, id, n));
        for (t, id, n) in self.pending.iter().flat_map(|(t, runs)| runs.iter().map(|&(id, n)| (*t, id, n))).chain(fresh)
        {
            if is_free(id.0, n) {
                return Err(format!("run {id}+{n} freed by txn {t} is also free"));
            }
        }
        if let Some((s, (b, n))) = self.born.iter().find(|&(&s, &(_, n))| is_free(s, n)) {
            return Err(format!("run {s}+{n} written by txn {b} is also free"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_coalescing_and_tail_trim() {
        let mut a = Allocator::new(2);
        let p: Vec<PageId> = (0..6).map(|_| a.alloc(1)).collect();
        assert_eq!(p.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2, 3, 4, 5, 6, 7]);
        a.free_later(TxnId(5), PageId(3), 1);
        a.free_later(TxnId(5), PageId(4), 1);
        a.free_later(TxnId(6), PageId(7), 1);
        assert_eq!(a.alloc(1), PageId(8), "pending pages are not reused");
        a.release(TxnId(5));
        a.check().unwrap();
        assert_eq!(a.free_pages(), 2);
        assert_eq!(a.alloc(2), PageId(3), "the coalesced run 3..5 fits two pages");
        a.release(TxnId(6));
        a.free_later(TxnId(7), PageId(8), 1);
        a.release(TxnId(7));
        assert_eq!(a.trim_tail(), 7, "7 and 8 were free at the end");
        a.check().unwrap();
    }

    #[test]
    fn young_runs_are_freed_at_once_unless_protected() {
        let mut a = Allocator::new(2);
        let old = a.alloc(1);
        let young = a.alloc_in(TxnId(5), 1);
        let run = a.alloc_in(TxnId(6), 2);
        let durable = a.alloc_in(TxnId(3), 1);
        a.forget_born_up_to(TxnId(4));
        for (id, n) in [(old, 1), (young, 1), (run, 2), (durable, 1)] {
            a.free_later(TxnId(8), id, n);
        }
        assert_eq!(a.pending_pages(), 5);
        // One protected snapshot, at 5: it reaches what 5 wrote and 8 freed, not what 6 wrote.
        let at_five = |born: TxnId, died: TxnId| born <= TxnId(5) && TxnId(5) < died;
        assert_eq!(a.release_fresh(at_five), 2, "the run written at 6 is free at once");
        assert_eq!(a.alloc(2), run, "and reused by the next commit");
        assert_eq!(a.pending_pages(), 3, "the page written at 5, the old one and the durable one wait");
        a.check().unwrap();
        a.release(TxnId(8));
        assert_eq!(a.free_pages(), 3);
        a.check().unwrap();
    }
}
