//! `server`: the library behind the `ferrokv` binary: etcd's v3 gRPC API over Raft, on the `wal` and `mvcc` crates.
//!
//! What works: clusters of 1, 3 or 5 members (`consensus::transport`: Raft messages over TCP, never blocking the Raft loop;
//! followers' proposals and read indexes reach the leader through Raft) serving KV (Range with every option,
//! RangeStream, Put, DeleteRange, Txn, Compact), Watch, Lease, Maintenance (Status, Defragment, Hash, HashKV, Alarm,
//! Snapshot, MoveLeader), Cluster (membership through Raft configuration changes: `apply::membership`,
//! `consensus::bootstrap`, `api::cluster`) and `/metrics`, `/health`; every write goes through Raft (the `raft` crate) and our WAL and is
//! applied to mvcc exactly once; the Raft log is compacted every `--snapshot-count` entries and a member behind it
//! catches up by snapshot (`consensus::snapshot`). `tools::bench` (etcd's benchmark tool) and `tools::cluster` (local clusters) are
//! subcommands of the same binary. Client and peer TLS (rustls) as etcd configures it; etcd's flags, `ETCD_*`
//! variables and config file (`config`); the quota and etcd's NOSPACE and CORRUPT alarms (`apply::alarm`,
//! `api::quota`, `api::corrupt`). Not yet: authentication.
//!
//! # Reading the source
//! `config` (etcd's flags, variables and config file) → `server` (wiring) → `api` (the etcd API surface: gRPC services, the HTTP endpoints, the client
//! connection shim) → `proposals` (who waits for which entry) → `consensus` (the Raft node and its Ready loop over
//! the WAL, the peer transport, snapshot transfer, bootstrap) → `apply` (committed entries onto mvcc: kv, leases,
//! the membership registry). `tools` holds the operator subcommands (`bench`, `cluster`).

pub mod accept;
pub mod api;
pub mod apply;
pub mod backup;
pub mod config;
pub mod consensus;
pub mod error;
pub mod failpoints;
pub mod logging;
pub mod metrics;
pub mod proposals;
pub mod proto;
pub mod read;
pub mod request;
pub mod server;
pub mod tools;
