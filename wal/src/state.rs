//! The log's logical state, and the one set of rules for how each record changes it.
//!
//! The same [`LogState::apply`] runs when a record is appended (to validate it) and when it is replayed (to rebuild
//! the state), so a log the writer accepted is always a log the reader accepts.
//!
//! **Invariants**
//! 1. Live entries are contiguous: an entry must have index `next` (or start the log when `next` is unset).
//! 2. A truncate from `f` requires `f <= next` and `f > snapshot index`; afterwards `next = f`.
//! 3. A snapshot marker at `s` with `s + 1 >= next` restarts the log after it: `next = s + 1`.

use crate::record::Decoded;
use crate::types::{HardState, RaftIndex, SnapshotMarker};

/// What the records so far amount to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    /// The index the next entry must have; `None` until the first entry or snapshot marker.
    pub next: Option<RaftIndex>,
    /// Index of the first live entry still in the log, if any entry is live.
    pub first: Option<RaftIndex>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<SnapshotMarker>,
    pub metadata: Option<Vec<u8>>,
}

/// Why a record cannot follow the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// An entry whose index is not `next` (1).
    NonContiguous { expected: RaftIndex, got: RaftIndex },
    /// A truncate outside the live log (2).
    BadTruncate { from: RaftIndex },
}

impl LogState {
    /// The last live entry's index, if any.
    pub fn last(&self) -> Option<RaftIndex> {
        match (self.first, self.next) {
            (Some(first), Some(next)) if next > first => Some(RaftIndex(next.0 - 1)),
            _ => None,
        }
    }

    /// Applies one record (see the module invariants).
    pub fn apply(&mut self, record: &Decoded) -> Result<(), Violation> {
        match record {
            Decoded::Entry(e) => self.try_entry(e.index)?,
            Decoded::Truncate(from) => self.try_truncate(*from)?,
            Decoded::Snapshot(s) => self.on_snapshot(*s),
            Decoded::HardState(h) => self.hard_state = Some(*h),
            Decoded::Metadata(m) => self.metadata = Some(m.clone()),
            Decoded::Seal => {}
        }
        Ok(())
    }

    /// A copy of the index bookkeeping only (no metadata bytes), for validating a batch before applying it.
    pub fn clone_indexes(&self) -> LogState {
        LogState { next: self.next, first: self.first, hard_state: None, snapshot: self.snapshot, metadata: None }
    }

    /// Invariant 1.
    pub fn try_entry(&mut self, index: RaftIndex) -> Result<(), Violation> {
        if let Some(expected) = self.next
            && index != expected
        {
            return Err(Violation::NonContiguous { expected, got: index });
        }
        self.on_entry(index);
        Ok(())
    }

    /// Records an entry already known to be valid.
    pub fn on_entry(&mut self, index: RaftIndex) {
        if self.last().is_none() {
            self.first = Some(index);
        }
        self.next = Some(index.next());
    }

    /// Invariant 2.
    pub fn try_truncate(&mut self, from: RaftIndex) -> Result<(), Violation> {
        let floor = self.snapshot.map_or(RaftIndex(0), |s| s.index);
        match self.next {
            Some(next) if from <= next && from > floor => {
                self.on_truncate(from);
                Ok(())
            }
            _ => Err(Violation::BadTruncate { from }),
        }
    }

    /// Records a truncation already known to be valid.
    pub fn on_truncate(&mut self, from: RaftIndex) {
        self.next = Some(from);
        if self.first.is_some_and(|f| from <= f) {
            self.first = None;
        }
    }

    /// Invariant 3.
    pub fn on_snapshot(&mut self, s: SnapshotMarker) {
        if self.next.is_none_or(|next| s.index.next() >= next) {
            self.next = Some(s.index.next());
            self.first = None;
        }
        self.snapshot = Some(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Entry, Term};

    fn entry(i: u64) -> Decoded {
        Decoded::Entry(Entry { index: RaftIndex(i), term: Term(1), data: vec![] })
    }

    #[test]
    fn entries_truncates_and_snapshots() {
        let mut s = LogState::default();
        s.apply(&entry(5)).unwrap();
        s.apply(&entry(6)).unwrap();
        assert_eq!((s.first, s.last()), (Some(RaftIndex(5)), Some(RaftIndex(6))));
        assert_eq!(s.apply(&entry(8)), Err(Violation::NonContiguous { expected: RaftIndex(7), got: RaftIndex(8) }));
        s.apply(&Decoded::Truncate(RaftIndex(6))).unwrap();
        assert_eq!(s.last(), Some(RaftIndex(5)));
        assert_eq!(s.apply(&Decoded::Truncate(RaftIndex(7))), Err(Violation::BadTruncate { from: RaftIndex(7) }));
        s.apply(&Decoded::Truncate(RaftIndex(5))).unwrap();
        assert_eq!((s.first, s.last()), (None, None));
        s.apply(&entry(5)).unwrap();
        // A snapshot ahead of the log restarts it; one behind it leaves the entries alone.
        s.apply(&Decoded::Snapshot(SnapshotMarker { index: RaftIndex(3), term: Term(1) })).unwrap();
        assert_eq!(s.last(), Some(RaftIndex(5)));
        assert_eq!(s.apply(&Decoded::Truncate(RaftIndex(3))), Err(Violation::BadTruncate { from: RaftIndex(3) }));
        s.apply(&Decoded::Snapshot(SnapshotMarker { index: RaftIndex(100), term: Term(2) })).unwrap();
        assert_eq!((s.first, s.last(), s.next), (None, None, Some(RaftIndex(101))));
        s.apply(&entry(101)).unwrap();
        assert_eq!(s.first, Some(RaftIndex(101)));
    }
}
