//! `server`: the `ferrokv` binary's library: etcd's v3 gRPC API over Raft, on `wal` and `mvcc`.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace so that the layout is fixed from the
//! start. It exports nothing, ships no binary and claims nothing. The design it will follow is in `shared/STYLE.md`
//! and issue 5.
