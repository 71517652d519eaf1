//! `server`: the library behind the `ferrokv` binary: etcd's v3 gRPC API over Raft, on the `wal` and `mvcc` crates.
//!
//! What works: clusters of 1, 3 or 5 members (`transport`: Raft messages over TCP, never blocking the Raft loop;
//! followers' proposals and read indexes reach the leader through Raft) serving KV (Range with every option,
//! RangeStream, Put, DeleteRange, Txn, Compact), Watch, Lease, Maintenance (Status, Defragment, Hash, HashKV, Alarm,
//! Snapshot, MoveLeader), Cluster (membership through Raft configuration changes: `membership`, `bootstrap`,
//! `grpc::cluster`) and `/metrics`, `/health`; every write goes through Raft (the `raft` crate) and our WAL and is
//! applied to mvcc exactly once; the Raft log is compacted every `--snapshot-count` entries and a member behind it
//! catches up by snapshot (`snapshot`). `bench` (etcd's benchmark tool) and `cluster_cmd` (local clusters) are
//! subcommands of the same binary. Not yet: TLS, authentication.
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
