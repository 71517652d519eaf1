//! `wal`: the segmented, group-commit write-ahead log that will hold ferrokv's Raft log.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace so that the layout is fixed from the
//! start. It exports nothing and claims nothing. The design it will follow is in `shared/STYLE.md` and issue 3.
