//! `server`: the library behind the `ferrokv` binary: etcd's v3 gRPC API over Raft, on the `wal` and `mvcc` crates.
//!
//! Work in progress (issue 5). What exists so far: the etcd v3 API definitions (`proto`), generated without a
//! system protoc, and the command line (`config`: etcd's flags and `ETCD_*` variables, validated). The services,
//! Raft and the binary are not implemented yet; nothing here serves requests.

pub mod config;
pub mod proto;
