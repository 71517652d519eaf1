//! `server`: the library behind the `ferrokv` binary: etcd's v3 gRPC API over Raft, on the `wal` and `mvcc` crates.
//!
//! Work in progress (issue 5). What works: static clusters of 1, 3 or 5 members (`transport`: Raft messages over
//! TCP, never blocking the Raft loop; followers' proposals and read indexes reach the leader through Raft) serving
//! KV (Range with every option, RangeStream, Put, DeleteRange, Txn, Compact), Watch (historical and live events,
//! prefix and range, prev_kv, filters, cancel, progress notifications and requests, compacted start revisions),
//! Lease (grant, revoke, keep-alive, time-to-live with keys, list; expiry decided by the leader and applied through
//! Raft), Maintenance (Status, Defragment, Hash, HashKV, Alarm, Snapshot, MoveLeader), Cluster (MemberList) and
//! `/metrics`, `/health`; every write goes through Raft (the `raft` crate) and our WAL and is applied to mvcc
//! exactly once; the Raft log is compacted every `--snapshot-count` entries. Not yet: sending Raft snapshots to a
//! member that fell behind the compacted log, membership changes.
//!
//! # Reading the source
//! `config` (flags) → `server` (wiring) → `grpc::*` (services) → `raft_node` (the Ready loop, the WAL, `transport`) →
//! `apply`
//! (entries onto mvcc) ↔ `proposals` (who waits for which entry).

pub mod apply;
pub mod bench;
pub mod bootstrap;
pub mod client_conn;
pub mod cluster_cmd;
pub mod config;
pub mod error;
pub mod grpc;
pub mod lease;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod proposals;
pub mod proto;
pub mod raft_node;
pub mod request;
pub mod server;
pub mod snapshot;
pub mod transport;
