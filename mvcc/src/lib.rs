//! `mvcc`: the copy-on-write B+tree page file with etcd's multi-version model on top.
//!
//! Not implemented yet: this crate is an empty placeholder in the workspace so that the layout is fixed from the
//! start. It exports nothing and claims nothing. The design it will follow is in `shared/STYLE.md` and issue 4.
