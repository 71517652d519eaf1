//! The operator tools that ship in the `ferrokv` binary: `bench` (etcd's benchmark tool), `cluster` (local
//! clusters of ferrokv or etcd) and `snapshot` (etcd's `snapshot status` and `snapshot restore`).

pub mod bench;
pub mod cluster;
pub mod cluster_docker;
pub mod restore;
pub mod snapshot;
