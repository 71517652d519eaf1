//! `server`: the library behind the `ferrokv` binary: etcd's v3 gRPC API over Raft, on the `wal` and `mvcc` crates.
//!
//! Work in progress (issue 5). What works: a single-member cluster serving the KV service (Range with every
//! option, Put, DeleteRange, Txn, Compact), Watch (historical and live events, prefix and range, prev_kv,
//! filters, cancel, progress requests, compacted start revisions), Lease (grant, revoke, keep-alive, time-to-live
//! with keys, list; expiry decided by the leader and applied through Raft), Maintenance (Status, Defragment, Hash, HashKV,
//! Alarm) and Cluster (MemberList), with every write going through Raft (the `raft` crate) and our WAL, applied to
//! mvcc exactly once; the Raft log is compacted every `--snapshot-count` entries. Not yet: MoveLeader, periodic progress notifications, multi-member clusters
//! (peer transport), /metrics.
//!
//! # Reading the source
//! `config` (flags) → `server` (wiring) → `grpc::*` (services) → `raft_node` (the Ready loop, the WAL) → `apply`
//! (entries onto mvcc) ↔ `proposals` (who waits for which entry).

pub mod apply;
pub mod config;
pub mod error;
pub mod grpc;
pub mod lease;
pub mod metrics;
pub mod proposals;
pub mod proto;
pub mod raft_node;
pub mod request;
pub mod server;
