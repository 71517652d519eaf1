//! Identifiers the WAL stores and hands out. Each is a newtype so an index can never be passed as a term.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A Raft log index. Entries in the WAL are contiguous in index once truncations are applied.
    RaftIndex
);
id!(
    /// A Raft term.
    Term
);
id!(
    /// A segment's sequence number: segment files are named by it and replayed in its order.
    SegmentSeq
);

impl RaftIndex {
    /// The next index.
    pub fn next(self) -> RaftIndex {
        RaftIndex(self.0 + 1)
    }
}

/// Raft's hard state: what a member must remember across restarts besides its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: Term,
    pub vote: u64,
    pub commit: RaftIndex,
}

/// Marks that a snapshot covering the log up to `index` (at `term`) is stored elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotMarker {
    pub index: RaftIndex,
    pub term: Term,
}

/// One Raft log entry as the WAL stores it: the index and term it needs to order and truncate the log, and the
/// caller's opaque bytes (the server puts the encoded Raft entry there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: RaftIndex,
    pub term: Term,
    pub data: Vec<u8>,
}
